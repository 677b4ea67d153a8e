"""When a drive fills up mid-pack: move what it could not take to the new drives given.

Files already verified on the full drive stay there; the rest of its plan
goes, first fit, to the empty drives added on the re-run, which become
drives N+1... of the shipment.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import UsageError
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer import shipment as ship
from sneakernet.transfer.errors import NoSpaceError
from sneakernet.transfer.plan import RESERVE_FIXED, RESERVE_PER_ENTRY, DriveTarget


def full_drive_numbers(catalog: Catalog, shipment_id: str) -> set[int]:
    """Drives whose latest pack event says they filled up."""
    with catalog.read() as con:
        rows = con.execute(
            """SELECT d.number, arg_max(e.event, e.happened_at)
               FROM drives d JOIN events e USING (drive_id)
               WHERE d.shipment_id = ? AND e.event IN ('planned', 'drive-full', 'packed')
               GROUP BY d.number""",
            [shipment_id],
        ).fetchall()
    return {number for number, event in rows if event == "drive-full"}


def reassign_full_drives(
    catalog: Catalog,
    record: ship.ShipmentRecord,
    mounts: dict[int, Path],
    fresh: list[DriveTarget],
) -> tuple[ship.ShipmentRecord, dict[int, Path]]:
    """Move the unpacked files of full drives onto `fresh` drives; returns the new mounts."""
    full = full_drive_numbers(catalog, record.shipment_id)
    if fresh and not full:
        raise UsageError(
            f"shipment {record.name!r} has no full drive, so {fresh[0].path} is not needed",
            hint="re-run with the shipment's drives only",
        )
    if not fresh:
        return record, {}
    leftovers = [
        item
        for number in sorted(full)
        for item in _unpacked(catalog, record, number, mounts[number])
    ]
    reserve = RESERVE_FIXED + RESERVE_PER_ENTRY * record.files
    room = [max(0, t.free - reserve) for t in fresh]
    moves: list[tuple[str, int]] = []
    for drive_path, size in leftovers:
        index = next((i for i, free in enumerate(room) if size <= free), None)
        if index is None:
            need = sum(size for _, size in leftovers) - sum(t.free - reserve for t in fresh)
            raise NoSpaceError(
                f"the new drives cannot take what the full drive(s) left: {max(need, size)} "
                "more bytes are needed",
                hint="give more or bigger --to drives; nothing was moved",
            )
        room[index] -= size
        moves.append((drive_path, record.drives + index + 1))
    new_mounts = {record.drives + i + 1: t.path for i, t in enumerate(fresh)}
    with catalog.write() as con:
        for number, target in zip(new_mounts, fresh, strict=True):
            ship.add_drive(
                con, record.shipment_id, ship.new_id(), number, target.label, target.path
            )
        ship.move_files(con, record.shipment_id, moves)
    for number in full:
        _drop_partials(mounts[number])
    return ship.get_shipment(catalog, record.shipment_id), new_mounts


def _unpacked(
    catalog: Catalog, record: ship.ShipmentRecord, number: int, root: Path
) -> list[tuple[str, int]]:
    with catalog.read() as con:
        rows = con.execute(
            "SELECT drive_path, size FROM shipment_entries WHERE shipment_id = ? AND carried"
            " AND drive_number = ? ORDER BY drive_path",
            [record.shipment_id, number],
        ).fetchall()
    return [(path, size) for path, size in rows if not _on_drive(root / path, size)]


def _on_drive(path: Path, size: int) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == size


def _drop_partials(root: Path) -> None:
    """Our own temporary copies on a full drive: they only take the space it lacks."""
    partial = root / fmt.PARTIAL_DIR
    if partial.is_dir() and not partial.is_symlink():
        for entry in os.scandir(partial):
            if entry.name.endswith(".part") and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
