"""`demo`: the whole job on sample clips made on the spot, in a folder of its own.

It needs nothing from the user: PyAV encodes a small dataset (several codecs
and containers, one broken file), which is scanned, changed, and scanned again,
then shipped: packed onto two folder "drives", verified, a flipped bit caught,
ingested into a second site's store and catalog.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sneakernet.catalog import samples
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.diff import DiffResult, diff
from sneakernet.catalog.errors import SourceError
from sneakernet.catalog.media import is_video_name
from sneakernet.catalog.progress import ProgressFn
from sneakernet.catalog.scan import ScanResult, scan
from sneakernet.catalog.stats import Stats, stats
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer.ingest import IngestResult, ingest
from sneakernet.transfer.pack import PackResult, pack
from sneakernet.transfer.plan import reserve_per_drive
from sneakernet.transfer.verify import VerifyResult, verify

DATASET = "roadcam"


@dataclass(slots=True)
class DemoResult:
    folder: Path
    catalog: Path
    first: ScanResult
    second: ScanResult
    stats: Stats
    diff: DiffResult
    shipment: ShipmentDemo


@dataclass(slots=True)
class ShipmentDemo:
    """The round trip: pack at site A, verify, a flipped bit caught, ingest at site B."""

    pack: PackResult
    verify: VerifyResult
    flipped: str  # the drive file whose bit was flipped
    tampered: VerifyResult
    ingest: IngestResult
    site_b_catalog: Path
    store: Path
    stats_at_b: Stats


def prepare_folder(folder: Path | None) -> Path:
    """A fresh temp folder, or the given one if it holds no demo data yet."""
    if folder is None:
        return Path(tempfile.mkdtemp(prefix="sneakernet-demo-"))
    folder = folder.expanduser().absolute()
    if (folder / DATASET).exists() or (folder / "catalog.duckdb").exists():
        raise SourceError(
            "this folder already holds a demo",
            path=str(folder),
            hint="give an empty or new --dir; the demo never overwrites anything",
        )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_demo(folder: Path | None = None, *, progress: ProgressFn | None = None) -> DemoResult:
    folder = prepare_folder(folder)
    root = folder / DATASET
    catalog = Catalog(folder / "catalog.duckdb")
    samples.write_sample_dataset(root)
    first = scan(catalog, root, DATASET, label="first-look", progress=progress)
    _change_dataset(root)
    second = scan(catalog, root, DATASET, progress=progress)
    return DemoResult(
        folder=folder,
        catalog=catalog.path,
        first=first,
        second=second,
        stats=stats(catalog, f"{DATASET}@{second.version}", by="codec"),
        diff=diff(catalog, f"{DATASET}@{first.version}", f"{DATASET}@{second.version}"),
        shipment=ship_to_site_b(catalog, folder, f"{DATASET}@{second.version}", progress),
    )


def ship_to_site_b(
    catalog: Catalog, folder: Path, ref: str, progress: ProgressFn | None
) -> ShipmentDemo:
    """Pack onto two folder "drives" (each too small for all of it), check, ingest."""
    drives = [folder / "drive1", folder / "drive2"]
    for drive in drives:
        drive.mkdir()
    planned = pack(catalog, [ref], drives, dry_run=True)
    assert planned.plan is not None
    half = planned.plan.carried_alloc * 6 // 10 + reserve_per_drive(planned.plan)
    packed = pack(catalog, [ref], drives, shipment="demo-to-site-b", from_site="A",
                  to_site="B", capacity=half, progress=progress)
    checked = verify(drives, progress=progress)
    victim = _largest_file(drives[0])
    _flip_bit(victim)
    tampered = verify([drives[0]], progress=progress)
    _flip_bit(victim)  # put it back, as a re-sent file would
    store, site_b = folder / "site-b-store", Catalog(folder / "site-b.duckdb")
    store.mkdir()
    ingested = ingest(site_b, drives, store, progress=progress)
    return ShipmentDemo(packed, checked, victim.relative_to(drives[0]).as_posix(), tampered,
                        ingested, site_b.path, store, stats(site_b, ref, by="codec"))


def _largest_file(drive: Path) -> Path:
    return max((p for p in drive.rglob("*") if p.is_file() and fmt.META_DIR not in p.parts
                and p.parent != drive), key=lambda p: p.stat().st_size)


def _flip_bit(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x01]))


def _change_dataset(root: Path) -> None:
    """A month of field work in miniature: one new clip, one edit, one move, one deletion."""
    samples.write_clip(
        root / "cam2" / "new_h264.mp4",
        samples.ClipSpec("cam2/new_h264.mp4", "libx264", seed=42, frames=50, audio=True),
    )
    with open(root / "notes.txt", "a", encoding="utf-8") as notes:
        notes.write("day 2: added cam2/new_h264.mp4\n")
    videos = sorted(p for p in root.rglob("*") if p.is_file() and _original_clip(p))
    moved, deleted = videos[0], videos[-1]
    (root / "archive").mkdir(exist_ok=True)
    shutil.move(moved, root / "archive" / moved.name)
    os.unlink(deleted)


def _original_clip(path: Path) -> bool:
    return is_video_name(path.name) and "broken" not in path.parts and "cam2" not in path.parts
