"""Marking drives for a shipment being packed, and adopting drives a killed pack left unmarked.

A drive is marked by its drive.json (state `packing`) and a `planned` event in
its custody log; a re-run of pack recognises its drives by that mark.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import SourceError, UsageError
from sneakernet.catalog.refs import parse_ref, resolve
from sneakernet.transfer import custody
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer import shipment as ship
from sneakernet.transfer.plan import DriveTarget
from sneakernet.transfer.sealing import shipment_doc


def check_fresh(paths: list[Path], versions: list[dict]) -> None:
    """Refuse a drive joining a shipment that already holds a folder of a version it is to carry.

    pack takes a file found at its final name on a marked drive as copied and read back by
    an earlier run, and does not read it again: a foreign file left there (a drive reused
    from an older shipment) would be sealed as the catalogued content, never checked.
    """
    for path in paths:
        for version in versions:
            _check_apart(path, version)
            folder = path / version["dataset"] / str(version["version"])
            if os.path.lexists(folder):
                raise SourceError(
                    f"the drive already holds {version['dataset']}/{version['version']}, which "
                    "this pack did not write",
                    path=str(folder),
                    hint="use an empty drive, or move that folder off it; nothing was written",
                )


def _check_apart(drive: Path, version: dict) -> None:
    """Refuse a drive inside a version's source folder, or holding it: the copies would land
    in the user's dataset (and its next scan), or its files would be extras on the drive."""
    root = version.get("root")  # (a fresh pack's versions carry their source folder)
    if not root:
        return
    real, source = os.path.realpath(drive), os.path.realpath(root)
    if os.path.commonpath([real, source]) in (real, source):
        raise SourceError(
            f"the drive and the source folder of {version['dataset']}@{version['version']} "
            f"({source}) are one inside the other",
            path=str(drive),
            hint="give a drive outside the dataset's folder, holding no dataset; nothing was "
            "written",
        )


def check_same_versions(
    con: duckdb.DuckDBPyConnection, refs: list[str], record: ship.ShipmentRecord,
    versions: list[dict],
) -> None:
    """Resuming is running the same command again: refuse drives marked (or sealed) for a
    shipment of other versions than the ones asked for, rather than call it packed."""
    have = {(v["dataset"], v["version"]) for v in versions}
    wanted = {(ref.dataset, resolve(con, ref)) for ref in map(parse_ref, refs)}
    if refs and wanted != have:
        names = ", ".join(f"{d}@{n}" for d, n in sorted(have))
        raise UsageError(
            f"the drives are marked for shipment {record.name!r} of {names}, not of "
            f"{', '.join(refs)}",
            hint=f"to resume that shipment run `pack {names.replace(',', '')}` with the same "
            "drives; for a new shipment use empty drives",
        )


def mark_drives(
    catalog: Catalog,
    record: ship.ShipmentRecord,
    mounts: dict[int, Path],
    versions: list[dict],
    known: tuple[dict[int, ship.DriveRecord], dict[int, int]] | None = None,
) -> None:
    """Write drive.json (state packing) and a `planned` event on each drive.

    `known`: the shipment's drives by number and the files planned for each,
    when the caller has them (a fresh pack just recorded them): else read.
    """
    versions = [{k: v for k, v in ver.items() if k != "root"} for ver in versions]
    if known is None:
        with catalog.read() as con:
            known = drive_facts(con, record.shipment_id)
    drives, planned = known
    events = []
    for number, root in mounts.items():
        drive = drives[number]
        doc = fmt.new_drive_doc(
            drive_id=drive.drive_id,
            label=drive.label or root.name,
            number=number,
            of=record.drives,
            shipment=shipment_doc(record, None),
            versions=versions,
            files=planned.get(number, 0),
        )
        fmt.write_drive_doc(root, doc)
        event = custody.new_event(
            record.shipment_id,
            "planned",
            drive_id=drive.drive_id,
            site=record.from_site,
            details={"files": planned.get(number, 0)},
        )
        fmt.append_custody(root, event)
        events.append(event)
    with catalog.write() as con:
        custody.insert_events(con, events)


def mark_unmarked(
    catalog: Catalog,
    record: ship.ShipmentRecord,
    known: list[ship.DriveRecord],
    marked_ids: set[str],
    given: list[Path],
    versions: list[dict],
) -> dict[str, Path]:
    """Drives a pack killed while marking its drives left unmarked, given again at the
    mount its plan recorded for them: marked now (as `adopt` does when none was).
    Returns them by drive id."""
    with catalog.read() as con:
        seen = dict(
            con.execute(
                "SELECT drive_id, last_mount FROM drives WHERE shipment_id = ?",
                [record.shipment_id],
            ).fetchall()
        )
    by_mount = {str(path): path for path in given}
    late = {
        d.number: by_mount[seen[d.drive_id]]
        for d in known
        if d.drive_id not in marked_ids and d.seal is None and seen.get(d.drive_id) in by_mount
    }
    if late:
        mark_drives(catalog, record, late, versions)
    return {d.drive_id: late[d.number] for d in known if d.number in late}


def drive_facts(
    con: duckdb.DuckDBPyConnection, shipment_id: str
) -> tuple[dict[int, ship.DriveRecord], dict[int, int]]:
    """The shipment's drives by number, and how many carried files each is planned to hold."""
    drives = {d.number: d for d in ship.drives_of(con, shipment_id)}
    planned = dict(
        con.execute(
            "SELECT drive_number, count(*) FROM shipment_entries WHERE shipment_id = ?"
            " AND carried GROUP BY ALL",
            [shipment_id],
        ).fetchall()
    )
    return drives, planned


def adopt(
    catalog: Catalog, targets: list[DriveTarget], shipment: str | None
) -> tuple[ship.ShipmentRecord, dict[int, Path]] | None:
    """A shipment recorded for exactly these (still unmarked) drives by a killed pack."""
    if shipment is None:
        return None
    with catalog.read() as con:
        record = ship.find_shipment(con, shipment)
        if record is None:
            return None
        known = ship.drives_of(con, record.shipment_id)
        mounts_seen = dict(
            con.execute(
                "SELECT number, last_mount FROM drives WHERE shipment_id = ?", [record.shipment_id]
            ).fetchall()
        )
        versions = con.execute(
            "SELECT v.dataset, v.version, v.label, v.created_at::VARCHAR, v.files, v.bytes"
            " FROM shipment_versions JOIN versions v USING (dataset, version)"
            " WHERE shipment_id = ?",
            [record.shipment_id],
        ).fetchall()
    given = {str(t.path): t.path for t in targets}
    if any(d.seal for d in known) or set(mounts_seen.values()) != set(given):
        return None
    mounts = {number: given[mount] for number, mount in mounts_seen.items()}
    keys = ("dataset", "version", "label", "created_at", "files", "bytes")
    mark_drives(catalog, record, mounts, [dict(zip(keys, v, strict=True)) for v in versions])
    return record, mounts
