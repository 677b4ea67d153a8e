"""`demo`: the whole job on sample clips made on the spot, in a folder of its own.

It needs nothing from the user: PyAV encodes a small dataset (several codecs
and containers, one broken file), which is scanned, changed, and scanned again.
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
from sneakernet.catalog.probe import is_video_name
from sneakernet.catalog.progress import ProgressFn
from sneakernet.catalog.scan import ScanResult, scan
from sneakernet.catalog.stats import Stats, stats

DATASET = "roadcam"


@dataclass(slots=True)
class DemoResult:
    folder: Path
    catalog: Path
    first: ScanResult
    second: ScanResult
    stats: Stats
    diff: DiffResult


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
    )


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
