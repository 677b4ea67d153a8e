"""Planning a shipment: what goes on which drive, decided before a byte is copied.

The selected versions' entries are exported from the catalog once, then
planned in a private DuckDB file in a work folder (so the catalog is not held
and memory stays flat): identical content is carried once, folders are kept
together on one drive where they fit (first fit, in dataset/version/folder
order), and every name is checked against the target file system.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from sneakernet.catalog.db import Catalog, sql_path
from sneakernet.catalog.errors import SourceError, UsageError
from sneakernet.catalog.fstype import filesystem_type
from sneakernet.catalog.refs import VersionRef, parse_ref, resolve
from sneakernet.transfer import fsnames
from sneakernet.transfer.charts import human_bytes
from sneakernet.transfer.errors import NoSpaceError
from sneakernet.transfer.fsio import free_bytes

MAX_LISTED_PROBLEMS = 200
RESERVE_FIXED = 64 << 10  # metadata on every drive: a fixed part ...
RESERVE_PER_ENTRY = 256  # ... and the shipment index, which every drive carries

INDEX_COLUMNS = (
    "dataset, version, path, kind, size, mtime_ns, mode, hash, link_target, is_video, status,"
    " error, drive_number, drive_path, carried"
)


@dataclass(frozen=True, slots=True)
class DriveTarget:
    path: Path
    label: str
    fs_type: str
    free: int
    block: int = 4096  # allocation unit: a 1-byte file takes a whole cluster


@dataclass(slots=True)
class PlannedDrive:
    number: int
    target: DriveTarget
    files: int = 0
    bytes: int = 0


@dataclass(slots=True)
class Plan:
    versions: list[dict]
    drives: list[PlannedDrive]
    index: Path  # Parquet, the shipment index (drive-v1-columns.json shipment.parquet)
    entries: int = 0
    carried_files: int = 0
    carried_bytes: int = 0
    carried_alloc: int = 0  # carried bytes rounded up to whole clusters: what the drives lose
    duplicate_files: int = 0
    duplicate_bytes: int = 0
    not_carried: int = 0  # files the scan could not read: recorded, no bytes to ship
    problems: list[fsnames.NameProblem] = field(default_factory=list)
    problem_count: int = 0
    error_count: int = 0

    def to_dict(self) -> dict:
        return {
            "versions": [{k: v for k, v in ver.items() if k != "root"} for ver in self.versions],
            "drives": [
                {
                    "number": d.number,
                    "path": str(d.target.path),
                    "label": d.target.label,
                    "fs_type": d.target.fs_type,
                    "free": d.target.free,
                    "files": d.files,
                    "bytes": d.bytes,
                }
                for d in self.drives
            ],
            "entries": self.entries,
            "carried_files": self.carried_files,
            "carried_bytes": self.carried_bytes,
            "duplicate_files": self.duplicate_files,
            "duplicate_bytes": self.duplicate_bytes,
            "not_carried": self.not_carried,
            "problems": [
                {"path": p.path, "message": p.message, "error": p.error} for p in self.problems
            ],
            "problem_count": self.problem_count,
            "error_count": self.error_count,
        }


def describe_target(
    path: Path, *, fs_type: str | None = None, capacity: int | None = None
) -> DriveTarget:
    if not path.is_dir():
        raise SourceError(
            "drive is not a mounted folder",
            path=str(path),
            hint="mount the drive and give its mount point",
        )
    if not os.access(path, os.W_OK):
        raise SourceError(
            "drive is not writable", path=str(path), hint="check the mount options and permissions"
        )
    label = path.resolve().name or str(path)
    free = free_bytes(path)
    info = os.statvfs(path)
    if capacity is not None:  # use at most this much of the drive (a reserve, or a demo)
        free = min(free, capacity)
    block = max(info.f_bsize, info.f_frsize, 512)
    return DriveTarget(path, label, fs_type or filesystem_type(path), free, block)


def select_versions(catalog: Catalog, refs: list[str], out: Path) -> list[dict]:
    """Resolve the refs and export their entries to `out` (Parquet), in one read."""
    if not refs:
        raise UsageError(
            "nothing to pack", hint="name at least one dataset version, e.g. roadcam@7"
        )
    parsed: list[VersionRef] = [parse_ref(text) for text in refs]
    with catalog.read() as con:
        chosen: list[tuple[str, int]] = []
        for ref in parsed:
            key = (ref.dataset, resolve(con, ref))
            if key not in chosen:
                chosen.append(key)
        con.execute("CREATE TEMP TABLE chosen (dataset VARCHAR, version INTEGER)")
        con.executemany("INSERT INTO chosen VALUES (?, ?)", chosen)
        rows = con.execute(
            "SELECT v.dataset, v.version, v.label, v.created_at::VARCHAR, v.root, v.files, v.bytes"
            " FROM versions v JOIN chosen USING (dataset, version) ORDER BY dataset, version"
        ).fetchall()
        con.execute(
            f"COPY (SELECT e.* FROM entries e JOIN chosen USING (dataset, version))"
            f" TO {sql_path(out)} (FORMAT parquet)"
        )
    keys = ("dataset", "version", "label", "created_at", "root", "files", "bytes")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def make_plan(catalog: Catalog, refs: list[str], targets: list[DriveTarget], work: Path) -> Plan:
    """Plan a shipment of `refs` onto `targets`; NoSpaceError if it cannot fit."""
    versions = select_versions(catalog, refs, work / "selected.parquet")
    con = duckdb.connect(str(work / "plan.duckdb"), config={"memory_limit": "256MB"})
    try:
        plan = Plan(
            versions,
            [PlannedDrive(i + 1, t) for i, t in enumerate(targets)],
            work / "index.parquet",
        )
        _load(con, work / "selected.parquet", max(t.block for t in targets))
        _figures(con, plan)
        _check_fit(plan)
        _assign(con, plan)
        _write_index(con, plan)
        _check_names(con, plan)
    finally:
        con.close()
    return plan


def _load(con: duckdb.DuckDBPyConnection, selected: Path, block: int) -> None:
    con.execute(
        f"""CREATE TABLE sel AS
        SELECT *,
               (size + {block} - 1) // {block} * {block} AS alloc,
               dataset || '/' || version || '/' || path AS own_path,
               dataset || '/' || version || '/' || regexp_extract(path, '^(.*)/', 1) AS folder,
               kind = 'file' AND hash IS NOT NULL AND row_number() OVER (
                   PARTITION BY kind = 'file' AND hash IS NOT NULL, hash
                   ORDER BY dataset, version, path) = 1 AS carried
        FROM read_parquet({sql_path(selected)})"""
    )


def _figures(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    row = con.execute(
        """SELECT count(*),
                  count(*) FILTER (carried), coalesce(sum(size) FILTER (carried), 0),
                  count(*) FILTER (kind = 'file' AND hash IS NOT NULL AND NOT carried),
                  coalesce(sum(size) FILTER (kind = 'file' AND hash IS NOT NULL
                                            AND NOT carried), 0),
                  count(*) FILTER (kind = 'file' AND hash IS NULL),
                  coalesce(sum(alloc) FILTER (carried), 0)
           FROM sel"""
    ).fetchall()[0]
    (
        plan.entries,
        plan.carried_files,
        plan.carried_bytes,
        plan.duplicate_files,
        plan.duplicate_bytes,
        plan.not_carried,
        plan.carried_alloc,
    ) = row


def reserve_per_drive(plan: Plan) -> int:
    return RESERVE_FIXED + RESERVE_PER_ENTRY * plan.entries


def _check_fit(plan: Plan) -> None:
    usable = sum(max(0, d.target.free - reserve_per_drive(plan)) for d in plan.drives)
    if plan.carried_alloc > usable:
        raise NoSpaceError(
            f"the shipment needs {human_bytes(plan.carried_alloc)} on disk but the drives given "
            f"hold {human_bytes(usable)} (after {human_bytes(reserve_per_drive(plan))} per drive "
            f"for metadata): {human_bytes(plan.carried_alloc - usable)} more is needed",
            hint="add another --to drive, or pack fewer versions; nothing was written",
        )


def _assign(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    room = [max(0, d.target.free - reserve_per_drive(plan)) for d in plan.drives]
    folders: list[tuple[str, int]] = []
    files: list[tuple[str, int]] = []
    for folder, size in _rows(
        con, "SELECT folder, sum(alloc) FROM sel WHERE carried GROUP BY folder ORDER BY folder"
    ):
        drive = _first_fit(room, size)
        if drive is not None:
            folders.append((folder, drive + 1))
            continue
        for own_path, file_size in _rows(
            con,
            "SELECT own_path, alloc FROM sel WHERE carried AND folder = ? ORDER BY own_path",
            [folder],
        ):
            drive = _first_fit(room, file_size)
            if drive is None:
                raise NoSpaceError(
                    f"{own_path} ({human_bytes(file_size)}) fits on none of the drives given "
                    f"(the most room left is {human_bytes(max(room))})",
                    hint="add a bigger --to drive; nothing was written",
                )
            files.append((own_path, drive + 1))
    con.register("folder_drive", _pairs(folders, "folder"))
    con.register("file_drive", _pairs(files, "own_path"))
    con.execute(
        """CREATE TABLE carried AS
        SELECT s.hash, s.own_path, s.size, coalesce(fd.drive, dd.drive) AS drive
        FROM sel s LEFT JOIN folder_drive fd USING (folder) LEFT JOIN file_drive dd USING (own_path)
        WHERE s.carried"""
    )
    for number, count, size in con.execute(
        "SELECT drive, count(*), sum(size) FROM carried GROUP BY drive"
    ).fetchall():
        plan.drives[number - 1].files, plan.drives[number - 1].bytes = count, int(size)


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> Iterator[tuple]:
    cursor = con.cursor()
    cursor.execute(sql, params or [])
    while chunk := cursor.fetchmany(10000):
        yield from chunk


def _column_rows(
    con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None
) -> Iterator[tuple]:
    """_rows through Arrow: a column at a time into Python, a third of the cost per row."""
    reader = con.cursor().sql(sql, params=params).to_arrow_reader(65536)
    for batch in reader:
        yield from zip(*(column.to_pylist() for column in batch.columns), strict=True)


def _first_fit(room: list[int], size: int) -> int | None:
    for index, free in enumerate(room):
        if size <= free:
            room[index] -= size
            return index
    return None


def _pairs(rows: list[tuple[str, int]], key: str) -> pa.Table:
    return pa.table(
        {
            key: pa.array([r[0] for r in rows], pa.string()),
            "drive": pa.array([r[1] for r in rows], pa.int32()),
        }
    )


def _write_index(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    con.execute(
        f"""COPY (
            SELECT s.dataset, s.version, s.path, s.kind, s.size, s.mtime_ns, s.mode, s.hash,
                   s.link_target, s.is_video, s.status, s.error,
                   c.drive AS drive_number, c.own_path AS drive_path, s.carried
            FROM sel s LEFT JOIN carried c
              ON s.kind = 'file' AND s.hash IS NOT NULL AND c.hash = s.hash
            ORDER BY s.dataset, s.version, s.path
        ) TO {sql_path(plan.index)} (FORMAT parquet)"""
    )


def _check_names(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    fs_of = {d.number: d.target.fs_type for d in plan.drives}
    # Only the names fsnames.check_path would not pass on sight reach Python: the
    # same test, in SQL (a call per path cost ~5 us, 5 s for a million files).
    for own_path, size, drive, raw in _column_rows(
        con,
        "SELECT c.own_path, c.size, c.drive, s.raw_path IS NOT NULL FROM carried c"
        " JOIN sel s USING (own_path)"
        " WHERE s.raw_path IS NOT NULL OR strlen(c.own_path) > ? OR c.size > ?"
        " OR strlen(c.own_path) <> length(c.own_path) OR regexp_matches(c.own_path, ?)"
        " ORDER BY own_path",
        [fsnames.MAX_COMPONENT, fsnames.FAT32_MAX_FILE, fsnames.SUSPECT_PATTERN],
    ):
        if raw:  # the readable form escapes the bad bytes; the escapes are not the problem
            found = [fsnames.NameProblem(own_path, "name is not valid UTF-8", True)]
        else:
            found = fsnames.check_path(own_path, size, fs_of[drive])
        if found:  # nearly every name is fine: no call for them (a million rows)
            _add_problems(plan, found)
    for drive, paths in _rows(
        con,
        "SELECT drive, list(own_path ORDER BY own_path) FROM carried"
        " GROUP BY drive, lower(own_path) HAVING count(*) > 1",
    ):
        _add_problems(plan, [fsnames.case_collision(paths[1], paths[0], fs_of[drive])])


def _add_problems(plan: Plan, found: list[fsnames.NameProblem]) -> None:
    plan.problem_count += len(found)
    plan.error_count += sum(1 for problem in found if problem.error)
    room = MAX_LISTED_PROBLEMS - len(plan.problems)
    if room > 0:
        plan.problems.extend(found[:room])

