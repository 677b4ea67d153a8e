"""Versions: committing a new immutable file list, and listing what exists.

A version becomes visible in one transaction together with all of its entries,
so a reader sees either the whole version or none of it.
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from sneakernet.catalog.db import Catalog, sql_path
from sneakernet.catalog.errors import UsageError
from sneakernet.catalog.refs import VersionRef, check_dataset_name, check_label, resolve
from sneakernet.catalog.walk import WALK_SCHEMA

# What makes two file lists different (see _differs): path, kind, size, hash,
# link target, status. mtime alone is not a change: a touched file with the
# same bytes is the same dataset.
ENTRY_COLUMNS = (
    "path, raw_path, kind, size, mtime_ns, mode, inode, device, hash, link_target, is_video,"
    " status, error"
)
# The rows commit_entries reads: a walk's columns plus what the hash pass found.
ENTRY_SCHEMA = pa.schema(
    [
        *WALK_SCHEMA,
        ("is_video", pa.bool_()),
        ("hash", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class CommitResult:
    version: int | None  # the new version, or None when nothing changed
    previous: int | None
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class VersionInfo:
    dataset: str
    version: int
    label: str | None
    created_at: str
    origin: str
    root: str | None
    host: str | None
    files: int
    bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    dataset: str
    versions: int
    latest: int | None
    files: int
    bytes: int
    updated_at: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def check_label_free(con: duckdb.DuckDBPyConnection, dataset: str, label: str | None) -> None:
    if label is None:
        return
    check_label(label)
    row = con.execute(
        "SELECT version FROM versions WHERE dataset = ? AND label = ?", [dataset, label]
    ).fetchone()
    if row:
        raise UsageError(
            f"label {label!r} already names {dataset}@{row[0]}",
            hint="labels name one version each; pick another label",
        )


def commit_entries(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    entries_file: Path,
    *,
    origin: str,
    root: str | None,
    label: str | None = None,
    version: int | None = None,
    only_if_changed: bool = True,
) -> CommitResult:
    """Record the entries in `entries_file` as a new version of `dataset`.

    Runs inside the caller's write transaction, so the version and its entries
    become visible together or not at all.
    """
    check_dataset_name(dataset)
    source = f"read_parquet({sql_path(entries_file)})"
    check_label_free(con, dataset, label)
    previous = _latest(con, dataset)
    files, size = con.execute(
        f"SELECT count(*) FILTER (kind = 'file'), coalesce(sum(size) FILTER (kind = 'file'), 0)"
        f" FROM {source}"
    ).fetchone()
    unchanged = previous is not None and not _differs(con, dataset, previous, source)
    if only_if_changed and unchanged:
        return CommitResult(None, previous, files, size)
    number = version if version is not None else (previous or 0) + 1
    now = datetime.now(UTC)
    con.execute("INSERT OR IGNORE INTO datasets VALUES (?, ?)", [dataset, now])
    con.execute(
        "INSERT INTO versions (dataset, version, label, created_at, origin, root, host, files,"
        " bytes, duplicate_files, duplicate_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [dataset, number, label, now, origin, root, socket.gethostname(), files, size,
         *_duplicates(con, source)],
    )
    con.execute(
        # No ORDER BY: sorting a million rows is the peak of a scan's memory.
        f"INSERT INTO entries SELECT ?, ?, {ENTRY_COLUMNS} FROM {source}",
        [dataset, number],
    )
    return CommitResult(number, previous, files, size)


def _duplicates(con: duckdb.DuckDBPyConnection, source: str) -> tuple[int, int]:
    row = con.execute(
        "SELECT coalesce(sum(n - 1), 0), coalesce(sum((n - 1) * s), 0) FROM ("
        f" SELECT count(*) AS n, any_value(size) AS s FROM {source}"
        " WHERE kind = 'file' AND hash IS NOT NULL GROUP BY hash HAVING count(*) > 1)"
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _latest(con: duckdb.DuckDBPyConnection, dataset: str) -> int | None:
    row = con.execute("SELECT max(version) FROM versions WHERE dataset = ?", [dataset]).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _differs(con: duckdb.DuckDBPyConnection, dataset: str, version: int, source: str) -> bool:
    """True when the new file list is not exactly the old one (one join; exact, no checksum)."""
    row = con.execute(
        "SELECT EXISTS (SELECT 1 FROM (SELECT * FROM entries WHERE dataset = ? AND version = ?) o"
        f" FULL OUTER JOIN {source} n"
        " ON n.path = o.path AND coalesce(n.raw_path, ''::BLOB) = coalesce(o.raw_path, ''::BLOB)"
        " WHERE o.path IS NULL OR n.path IS NULL OR n.kind <> o.kind OR n.size <> o.size"
        " OR n.hash IS DISTINCT FROM o.hash OR n.link_target IS DISTINCT FROM o.link_target"
        " OR n.status <> o.status)",
        [dataset, version],
    ).fetchone()
    return bool(row and row[0])


def same_entries(
    con: duckdb.DuckDBPyConnection, dataset: str, version: int, entries_file: Path
) -> bool:
    """Whether `entries_file` lists exactly the files of dataset@version (ingest's check)."""
    return not _differs(con, dataset, version, f"read_parquet({sql_path(entries_file)})")


def list_versions(catalog: Catalog, dataset: str) -> list[VersionInfo]:
    check_dataset_name(dataset)
    with catalog.read() as con:
        rows = con.execute(
            "SELECT dataset, version, label, strftime(created_at, '%Y-%m-%dT%H:%M:%S%z'),"
            " origin, root, host, files, bytes FROM versions WHERE dataset = ? ORDER BY version",
            [dataset],
        ).fetchall()
        if not rows:
            resolve(con, VersionRef(dataset))  # raises NotFoundError naming what exists
    return [VersionInfo(*row) for row in rows]


def list_datasets(catalog: Catalog) -> list[DatasetInfo]:
    with catalog.read() as con:
        rows = con.execute(
            "SELECT d.name, count(v.version), max(v.version),"
            " coalesce(arg_max(v.files, v.version), 0), coalesce(arg_max(v.bytes, v.version), 0),"
            " strftime(max(v.created_at), '%Y-%m-%dT%H:%M:%S%z')"
            " FROM datasets d LEFT JOIN versions v ON v.dataset = d.name"
            " GROUP BY d.name ORDER BY d.name"
        ).fetchall()
    return [DatasetInfo(*row) for row in rows]
