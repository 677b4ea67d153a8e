"""A shipment in the catalog: its drives, its file list, and what is left to pack.

The catalog holds the plan of a shipment being packed (so a re-run picks it
up) and, once it is sealed or received, the record of which drive carries
which content (so `whereis` answers without the drives).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from sneakernet.catalog.db import Catalog, sql_path
from sneakernet.catalog.errors import NotFoundError, UsageError
from sneakernet.transfer.plan import Plan


@dataclass(frozen=True, slots=True)
class ShipmentRecord:
    shipment_id: str
    name: str
    from_site: str | None
    to_site: str | None
    drives: int
    files: int
    bytes: int
    created_at: str


@dataclass(frozen=True, slots=True)
class DriveRecord:
    drive_id: str
    number: int
    label: str | None
    seal: str | None


def new_id() -> str:
    return uuid.uuid4().hex


def find_shipment(con: duckdb.DuckDBPyConnection, name_or_id: str) -> ShipmentRecord | None:
    rows = con.execute(
        "SELECT shipment_id, name, from_site, to_site, drives, files, bytes,"
        " strftime(created_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ')"
        " FROM shipments WHERE name = ? OR shipment_id = ? ORDER BY created_at",
        [name_or_id, name_or_id],
    ).fetchall()
    if len(rows) > 1:
        ids = ", ".join(row[0] for row in rows)
        raise UsageError(
            f"{len(rows)} shipments are named {name_or_id!r}",
            hint=f"name one by its id: {ids}",
        )
    return ShipmentRecord(*rows[0]) if rows else None


def get_shipment(catalog: Catalog, name_or_id: str) -> ShipmentRecord:
    with catalog.read() as con:
        found = find_shipment(con, name_or_id)
    if found is None:
        raise NotFoundError(
            f"no shipment named {name_or_id!r} in the catalog", hint="see `sneakernet shipments`"
        )
    return found


def drives_of(con: duckdb.DuckDBPyConnection, shipment_id: str) -> list[DriveRecord]:
    rows = con.execute(
        "SELECT drive_id, number, label, seal FROM drives WHERE shipment_id = ? ORDER BY number",
        [shipment_id],
    ).fetchall()
    return [DriveRecord(*row) for row in rows]


def create(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    *,
    name: str,
    from_site: str | None,
    to_site: str | None,
    drive_ids: list[str],
) -> ShipmentRecord:
    """Record a planned shipment (inside the caller's transaction)."""
    if find_shipment(con, name) is not None:
        raise UsageError(
            f"a shipment named {name!r} already exists",
            hint="choose another --shipment name, or give that shipment's drives to resume it",
        )
    record = ShipmentRecord(
        new_id(),
        name,
        from_site,
        to_site,
        len(plan.drives),
        plan.entries,
        plan.carried_bytes,
        datetime.now(UTC).isoformat(timespec="seconds"),
    )
    con.execute(
        "INSERT INTO shipments VALUES (?, ?, ?, ?, ?, ?, ?, ?::TIMESTAMPTZ)",
        [
            record.shipment_id,
            name,
            from_site,
            to_site,
            record.drives,
            record.files,
            record.bytes,
            record.created_at,
        ],
    )
    con.executemany(
        "INSERT INTO shipment_versions VALUES (?, ?, ?)",
        [[record.shipment_id, v["dataset"], v["version"]] for v in plan.versions],
    )
    con.executemany(
        "INSERT INTO drives VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
        [
            [
                drive_ids[d.number - 1],
                record.shipment_id,
                d.number,
                d.target.label,
                d.files,
                d.bytes,
                str(d.target.path),
            ]
            for d in plan.drives
        ],
    )
    con.execute(
        f"INSERT INTO shipment_entries SELECT ?, dataset, version, path, hash, size,"
        f" drive_number, drive_path, carried FROM read_parquet({sql_path(plan.index)})",
        [record.shipment_id],
    )
    return record


def add_drive(
    con: duckdb.DuckDBPyConnection,
    shipment_id: str,
    drive_id: str,
    number: int,
    label: str,
    mount: Path,
) -> None:
    con.execute(
        "INSERT INTO drives VALUES (?, ?, ?, ?, 0, 0, NULL, ?)",
        [drive_id, shipment_id, number, label, str(mount)],
    )
    con.execute("UPDATE shipments SET drives = ? WHERE shipment_id = ?", [number, shipment_id])


def move_files(
    con: duckdb.DuckDBPyConnection, shipment_id: str, moves: list[tuple[str, int]]
) -> None:
    """Carry the content at these drive paths on other drives (after a drive filled up)."""
    con.executemany(
        "UPDATE shipment_entries SET drive_number = ? WHERE shipment_id = ? AND drive_path = ?",
        [[number, shipment_id, drive_path] for drive_path, number in moves],
    )
    con.execute(
        """UPDATE drives SET files = f.n, bytes = f.b FROM (
             SELECT drive_number, count(*) AS n, sum(size) AS b FROM shipment_entries
             WHERE shipment_id = ? AND carried GROUP BY drive_number) f
           WHERE drives.shipment_id = ? AND drives.number = f.drive_number""",
        [shipment_id, shipment_id],
    )


def export_drive_files(
    catalog: Catalog, shipment_id: str, number: int, out: Path
) -> tuple[int, int]:
    """The files drive `number` must carry, with their source path, to Parquet.

    Returns how many files and bytes that is.
    """
    with catalog.read() as con:
        con.execute(
            f"""COPY (
                SELECT se.drive_path, se.size, se.hash, e.mtime_ns, v.root, se.path
                FROM shipment_entries se
                JOIN versions v USING (dataset, version)
                JOIN entries e USING (dataset, version, path)
                WHERE se.shipment_id = ? AND se.carried AND se.drive_number = ?
                ORDER BY se.drive_path
            ) TO {sql_path(out)} (FORMAT parquet)""",
            [shipment_id, number],
        )
        files, size = con.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM shipment_entries"
            " WHERE shipment_id = ? AND carried AND drive_number = ?",
            [shipment_id, number],
        ).fetchall()[0]
        return int(files), int(size)


INDEX_SQL = """
SELECT se.dataset, se.version, se.path, e.kind, se.size, e.mtime_ns, e.mode, se.hash,
       e.link_target, e.is_video, e.status, e.error, se.drive_number, se.drive_path, se.carried
FROM shipment_entries se JOIN entries e USING (dataset, version, path)
WHERE se.shipment_id = ? ORDER BY se.dataset, se.version, se.path"""
