"""`query`: read-only SQL over the documented views in schema `api`."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import UsageError

DEFAULT_ROW_LIMIT = 100_000


@dataclass(slots=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple]
    truncated: bool

    def to_dict(self) -> dict:
        return {
            "columns": self.columns,
            "rows": [dict(zip(self.columns, row, strict=True)) for row in self.rows],
            "truncated": self.truncated,
        }


def run_query(catalog: Catalog, sql: str, *, limit: int = DEFAULT_ROW_LIMIT) -> QueryResult:
    """Run one statement read-only; the connection cannot write files or the catalog."""
    with catalog.read() as con:
        con.execute("SET search_path = 'api,main'")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        try:
            cursor = con.execute(sql)
        except duckdb.Error as exc:
            raise UsageError(
                f"query failed: {str(exc).splitlines()[0]}",
                hint="views: datasets, versions, files, media (see README, 'Querying')",
            ) from exc
        if cursor.description is None:
            return QueryResult([], [], False)
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchmany(limit + 1)
    return QueryResult(columns, rows[:limit], len(rows) > limit)
