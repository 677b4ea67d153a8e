"""`pack`: copy dataset versions onto drives, every byte checked, then seal the drives.

A fresh pack plans (refusing before any write if it does not fit or a name
will not survive the target file system), records the plan in the catalog
and marks each drive. A re-run of the same command finds the marked drives,
takes the plan from the catalog and carries on; files whose drive filled up
move to any new drive given. When every file is on its drive, each drive is
sealed (sealing.py).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import SneakernetError, UsageError
from sneakernet.catalog.progress import ProgressEvent, ProgressFn, report
from sneakernet.transfer import custody
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer import shipment as ship
from sneakernet.transfer.errors import DriveError
from sneakernet.transfer.marking import (
    adopt,
    check_fresh,
    check_same_versions,
    drive_facts,
    mark_drives,
    mark_unmarked,
)
from sneakernet.transfer.packdrive import (
    DriveOutcome,
    FileProblem,
    Interrupted,
    drive_lock,
    pack_drive,
)
from sneakernet.transfer.plan import DriveTarget, Plan, describe_target, make_plan
from sneakernet.transfer.replan import reassign_full_drives
from sneakernet.transfer.sealing import seal_drive, shipment_versions


class PlanRefused(SneakernetError):
    """The plan found names or sizes the target file systems cannot hold."""

    exit_code = 10

    def __init__(self, plan: Plan):
        first = next((p for p in plan.problems if p.error), None)
        super().__init__(
            f"{plan.error_count} name(s) cannot be written to the drives"
            + (f", e.g. {first.path!r}: {first.message}" if first else ""),
            hint="see `sneakernet pack --dry-run --json` for the full list; rename the files at "
            "the source and scan again, or use drives formatted ext4/XFS; nothing was written",
        )
        self.plan = plan


@dataclass(slots=True)
class PackResult:
    shipment: str
    shipment_id: str
    from_site: str | None
    to_site: str | None
    resumed: bool
    drives: list[DriveOutcome] = field(default_factory=list)
    plan: Plan | None = None
    sealed: bool = False
    seconds: float = 0.0

    @property
    def problems(self) -> list[FileProblem]:
        return [p for d in self.drives for p in d.problems]

    @property
    def full_drives(self) -> list[DriveOutcome]:
        return [d for d in self.drives if d.full]

    def to_dict(self) -> dict:
        return {
            "shipment": self.shipment,
            "shipment_id": self.shipment_id,
            "from_site": self.from_site,
            "to_site": self.to_site,
            "resumed": self.resumed,
            "sealed": self.sealed,
            "seconds": round(self.seconds, 3),
            "plan": self.plan.to_dict() if self.plan else None,
            "drives": [d.to_dict() for d in self.drives],
            "problems": [p.to_dict() for p in self.problems],
        }


def pack(
    catalog: Catalog,
    refs: list[str],
    drives: list[Path],
    *,
    shipment: str | None = None,
    to_site: str | None = None,
    from_site: str | None = None,
    fs_type: str | None = None,
    capacity: int | None = None,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
) -> PackResult:
    """Pack `refs` onto `drives` (or resume the shipment those drives were marked for)."""
    started = time.monotonic()
    targets = _targets(drives, fs_type, capacity)
    marked = _marked_drives(targets)
    locks = contextlib.ExitStack()
    with locks, tempfile.TemporaryDirectory(prefix="sneakernet-pack-") as tmp:
        work = Path(tmp)
        if not marked and adopt(catalog, targets, shipment):
            marked = _marked_drives(targets)
        if marked:
            result, mounts = _resume(catalog, marked, targets, shipment, refs)
        else:
            result, mounts = _start(
                catalog,
                refs,
                targets,
                work,
                shipment=shipment,
                to_site=to_site,
                from_site=from_site,
                dry_run=dry_run,
            )
            if dry_run:
                return result
        if result.sealed:  # a re-run after the pack finished: nothing to do
            result.seconds = time.monotonic() - started
            return result
        for root in mounts.values():  # held through the copies and the seal
            locks.enter_context(drive_lock(root))
        _copy_all(catalog, result, mounts, work, progress)
        if not result.problems and not result.full_drives:
            _seal_all(catalog, result, mounts)
        else:
            for outcome in result.full_drives:
                _log(catalog, result, "drive-full", mounts[outcome.number], outcome)
    result.seconds = time.monotonic() - started
    return result


def _targets(drives: list[Path], fs_type: str | None, capacity: int | None) -> list[DriveTarget]:
    if not drives:
        raise UsageError("no drive given", hint="pass --to MOUNT_POINT once per drive")
    seen: set[str] = set()
    for path in drives:
        real = os.path.realpath(path)
        if real in seen:
            raise UsageError("the same drive is given twice", path=str(path))
        seen.add(real)
    return [describe_target(path, fs_type=fs_type, capacity=capacity) for path in drives]


def _marked_drives(targets: list[DriveTarget]) -> dict[Path, fmt.DriveInfo]:
    return {t.path: fmt.read_drive(t.path) for t in targets if fmt.is_drive(t.path)}


def _start(
    catalog: Catalog,
    refs: list[str],
    targets: list[DriveTarget],
    work: Path,
    *,
    shipment: str | None,
    to_site: str | None,
    from_site: str | None,
    dry_run: bool,
) -> tuple[PackResult, dict[int, Path]]:
    plan = make_plan(catalog, refs, targets, work)
    check_fresh([t.path for t in targets], plan.versions)
    name = shipment or _default_name(plan)
    if dry_run:
        site = from_site or custody.site_name(catalog)
        return PackResult(name, "", site, to_site, resumed=False, plan=plan), {}
    if plan.error_count:
        raise PlanRefused(plan)
    drive_ids = [ship.new_id() for _ in plan.drives]
    # One connection records the plan and reads back what marking the drives needs.
    with catalog.write() as con:
        site = from_site or custody.site_in(con)
        record = ship.create(
            con, plan, name=name, from_site=site, to_site=to_site, drive_ids=drive_ids
        )
        known = drive_facts(con, record.shipment_id)
    result = PackResult(name, "", site, to_site, resumed=False, plan=plan)
    # The catalog knows the plan before any drive is marked: a kill in between leaves
    # a recorded shipment with unmarked drives, which a re-run adopts (_adopt).
    mounts = {d.number: d.target.path for d in plan.drives}
    mark_drives(catalog, record, mounts, plan.versions, known)
    result.shipment_id = record.shipment_id
    result.drives = [
        DriveOutcome(d.number, d.target.label, str(d.target.path)) for d in plan.drives
    ]
    return result, mounts


def _default_name(plan: Plan) -> str:
    datasets = "+".join(dict.fromkeys(v["dataset"] for v in plan.versions))
    return f"{datasets}-{datetime.now(UTC):%Y-%m-%d-%H%M}"


def _resume(
    catalog: Catalog,
    marked: dict[Path, fmt.DriveInfo],
    targets: list[DriveTarget],
    shipment: str | None,
    refs: list[str],
) -> tuple[PackResult, dict[int, Path]]:
    ids = {info.shipment_id for info in marked.values()}
    if len(ids) > 1:
        raise UsageError(
            "the drives given belong to different shipments", hint="pack one shipment at a time"
        )
    [shipment_id] = ids
    with catalog.read() as con:
        record = ship.find_shipment(con, shipment_id)
        known = ship.drives_of(con, shipment_id) if record else []
        versions = shipment_versions(con, shipment_id)
    if record is None:
        any_drive = next(iter(marked))
        raise DriveError(
            f"the drive belongs to shipment {marked[any_drive].shipment_name!r}, which this "
            "catalog did not pack",
            path=str(any_drive),
            hint="use an empty drive, or the catalog that packed it (--catalog)",
        )
    if shipment is not None and shipment not in (record.name, record.shipment_id):
        raise UsageError(
            f"the drives are marked for shipment {record.name!r}, not {shipment!r}",
            hint="drop --shipment to resume it, or use empty drives",
        )
    with catalog.read() as con:
        check_same_versions(con, refs, record, versions)
    by_id = {info.drive_id: path for path, info in marked.items()}
    unmarked = [t.path for t in targets if t.path not in marked]
    by_id.update(mark_unmarked(catalog, record, known, set(by_id), unmarked, versions))
    missing = [d for d in known if d.drive_id not in by_id and d.seal is None]
    if missing:
        raise UsageError(
            f"drive {missing[0].number} ({missing[0].label}) of shipment {record.name!r} is not "
            "among the drives given",
            hint="give every drive of the shipment with --to",
        )
    mounts = {d.number: by_id[d.drive_id] for d in known if d.drive_id in by_id}
    taken = set(by_id.values())
    fresh = [t for t in targets if t.path not in taken]
    check_fresh([t.path for t in fresh], versions)
    record, new_mounts = reassign_full_drives(catalog, record, mounts, fresh)
    if new_mounts:
        mark_drives(catalog, record, new_mounts, versions)
        mounts.update(new_mounts)
    with catalog.read() as con:
        known = ship.drives_of(con, shipment_id)
    result = PackResult(record.name, shipment_id, record.from_site, record.to_site, resumed=True)
    result.sealed = all(d.seal for d in known)
    result.drives = [
        DriveOutcome(d.number, d.label or "", str(mounts[d.number]))
        for d in known
        if d.number in mounts
    ]
    return result, mounts


def _copy_all(
    catalog: Catalog,
    result: PackResult,
    mounts: dict[int, Path],
    work: Path,
    progress: ProgressFn | None,
) -> None:
    files: dict[int, Path] = {}
    for outcome in result.drives:
        files[outcome.number] = work / f"drive-{outcome.number}.parquet"
        outcome.files, outcome.bytes = ship.export_drive_files(
            catalog, result.shipment_id, outcome.number, files[outcome.number]
        )
    done = {o.number: [0, 0] for o in result.drives}
    lock = threading.Lock()
    stop = threading.Event()

    def ticker(number: int):
        def tick(n_files: int, n_bytes: int) -> None:
            with lock:
                done[number][0] += n_files
                done[number][1] += n_bytes

        return tick

    with ThreadPoolExecutor(max_workers=max(1, len(result.drives))) as pool:
        futures: dict[Future, DriveOutcome] = {
            pool.submit(pack_drive, mounts[o.number], files[o.number], o, ticker(o.number), stop): o
            for o in result.drives
        }
        try:
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for outcome in result.drives:
                    with lock:
                        n_files, n_bytes = done[outcome.number]
                    report(
                        progress,
                        ProgressEvent(
                            "pack",
                            n_files,
                            outcome.files,
                            n_bytes,
                            outcome.bytes,
                            label=outcome.label,
                        ),
                    )
                for future in finished:
                    future.result()
        except (KeyboardInterrupt, Interrupted):
            stop.set()
            wait(set(futures))
            raise KeyboardInterrupt from None


def _seal_all(catalog: Catalog, result: PackResult, mounts: dict[int, Path]) -> None:
    # One read connection for every drive's metadata and one write for their seals
    # and `packed` events: a catalog connection costs tens of milliseconds.
    seals: dict[int, str] = {}
    with catalog.read() as con:
        record = ship.find_shipment(con, result.shipment_id)
        known = {d.number: d for d in ship.drives_of(con, result.shipment_id)}
        for outcome in result.drives:
            drive = known[outcome.number]
            seals[outcome.number] = seal_drive(
                con,
                record,
                mounts[outcome.number],
                drive.drive_id,
                outcome.number,
                drive.label or outcome.label,
            )
    events = {
        o.number: _event(result, "packed", known[o.number].drive_id, o) for o in result.drives
    }
    with catalog.write() as con:
        con.executemany(
            "UPDATE drives SET seal = ?, last_mount = ? WHERE drive_id = ?",
            [[seals[n], str(mounts[n]), known[n].drive_id] for n in seals],
        )
        custody.insert_events(con, list(events.values()))
    for outcome in result.drives:
        outcome.sealed = True
        root = mounts[outcome.number]
        with contextlib.suppress(OSError):  # our temp folder, empty once every copy is placed
            (root / fmt.PARTIAL_DIR).rmdir()
        fmt.append_custody(root, events[outcome.number])
    result.sealed = True


def _event(result: PackResult, event: str, drive_id: str, outcome: DriveOutcome) -> dict:
    details = {
        "files": outcome.files,
        "bytes": outcome.bytes or outcome.copied_bytes,
        "copied_files": outcome.copied_files,
        "copied_bytes": outcome.copied_bytes,
        "seconds": round(outcome.seconds, 3),
    }
    if outcome.full:
        details["detail"] = outcome.full_detail
    return custody.new_event(
        result.shipment_id, event, drive_id=drive_id, site=result.from_site, details=details
    )


def _log(
    catalog: Catalog,
    result: PackResult,
    event: str,
    root: Path,
    outcome: DriveOutcome,
) -> None:
    with catalog.read() as con:
        drive_id = next(
            d.drive_id
            for d in ship.drives_of(con, result.shipment_id)
            if d.number == outcome.number
        )
    custody.record(catalog, _event(result, event, drive_id, outcome), [root])
