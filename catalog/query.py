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
            if len(con.extract_statements(sql)) > 1:  # only the last one's rows would show
                raise UsageError("query takes one SQL statement",
                                 hint="run each statement as its own query")
            cursor = con.execute(sql)
        except duckdb.Error as exc:
            raise UsageError(
                f"query failed: {str(exc).splitlines()[0]}",
                hint="views: datasets, versions, files, media (see README, 'Querying')",
            ) from exc
        if cursor.description is None:
            return QueryResult([], [], False)
        columns = unique_names([d[0] for d in cursor.description])
        rows = cursor.fetchmany(limit + 1)
    return QueryResult(columns, rows[:limit], len(rows) > limit)


def unique_names(names: list[str]) -> list[str]:
    """Column names made unique as DuckDB does in a subquery (`a`, `a_1`, `a_2`).

    A row is a JSON object keyed by column: `SELECT a.path, b.path ...` kept only the
    second path in `query --json`, the first one silently gone.
    """
    taken = set(names)
    seen: set[str] = set()
    unique = []
    for name in names:
        if name in seen:
            n = 1
            while f"{name}_{n}" in taken:
                n += 1
            name = f"{name}_{n}"
            taken.add(name)
        seen.add(name)
        unique.append(name)
    return unique
