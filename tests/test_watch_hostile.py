"""`watch` against a hostile tree: files swapped for FIFOs or links at the worst moment.

Real folders, a real DuckDB catalog, a real watchdog observer. Where a swap must
land between two steps of the watcher, the step is wrapped to make the swap (a
real FIFO, a real symlink) and then run for real.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import suppress
from pathlib import Path

import pytest

from sneakernet.catalog import watch_work

sys.path.insert(0, str(Path(__file__).parent))  # tests/ is not a package
from watch_fixtures import QUIET, fresh_files, latest_files, wait_settled, watching


@pytest.mark.parametrize("swap", ["fifo", "symlink-to-fifo"])
def test_video_swapped_for_a_fifo_before_its_probe_does_not_stall_the_watcher(
    tmp_path, catalog, sample_master, monkeypatch, swap
):
    """A probe that opened a FIFO would wait for a writer forever: the watcher, counting
    that probe as work in flight, would never record a version again."""
    root = tmp_path / "root"
    root.mkdir()
    fifo = tmp_path / "outside.fifo"
    os.mkfifo(fifo)
    real = watch_work.probe

    def swapping(path):
        os.unlink(path)
        if swap == "fifo":
            os.mkfifo(path)
        else:
            os.symlink(fifo, path)
        return real(path)

    monkeypatch.setattr(watch_work, "probe", swapping)
    try:
        with watching(catalog, root, snapshot_after=QUIET) as (watcher, notices):
            shutil.copyfile(sample_master / "cam1" / "clip_h264.mp4", root / "clip.mp4")
            (root / "plain.bin").write_bytes(b"p" * 100)
            wait_settled(watcher, notices)
            assert watcher.stats.probed_files == 0  # its answer was not of the bytes hashed
    finally:
        for stuck in (root / "clip.mp4", fifo):  # a probe blocked in open() is let go
            with suppress(OSError):
                os.close(os.open(stuck, os.O_WRONLY | os.O_NONBLOCK))
    assert latest_files(catalog) == fresh_files(tmp_path, root)
    kinds = {row[0]: row[2] for row in latest_files(catalog)}
    assert kinds.get("plain.bin") == "file" and kinds.get("clip.mp4") != "file"
