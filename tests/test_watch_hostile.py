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
from transfer_fixtures import read_denier
from watch_fixtures import (
    QUIET,
    Lines,
    fresh_files,
    latest_files,
    wait_for,
    wait_settled,
    watch_process,
    watching,
)


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

    def swapping(path, *identity):
        os.unlink(path)
        if swap == "fifo":
            os.mkfifo(path)
        else:
            os.symlink(fifo, path)
        return real(path, *identity)

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


def test_a_file_made_readable_again_is_heard_and_recorded(tmp_path, catalog):
    """chmod and touch change no bytes and send no write event, only an attribute one:
    a watcher deaf to those kept a version saying 'unreadable' for a file it could read."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "plain.bin").write_bytes(b"p" * 100)
    secret = root / "secret.bin"
    secret.write_bytes(b"s" * 100)
    secret.chmod(0o000)
    preexec = read_denier(secret)
    proc = watch_process(catalog, root, "--settle", "0.2", "--snapshot-after", "0.3",
                         preexec_fn=preexec)
    out = Lines(proc)
    try:
        wait_for(lambda: out.events("watching"), 60, "the watcher to start")
        caught_up = out.events("caught-up")[0]["scan"]
        assert [p["kind"] for p in caught_up["problems"]] == ["unreadable"]
        secret.chmod(0o644)
        wait_for(lambda: out.events("snapshot"), 10, "a snapshot after the chmod")
        proc.terminate()
        err = out.finish(proc)
        assert proc.returncode == 0, err
    finally:
        out.finish(proc, timeout=0)
    snapshot = out.events("snapshot")[-1]["scan"]
    assert snapshot["problems"] == [] and snapshot["files"] == 2
    assert latest_files(catalog) == fresh_files(tmp_path, root)


def test_a_file_dated_past_2262_is_recorded_as_scan_records_it(tmp_path, catalog, sample_master):
    """Its mtime in ns overflows the catalog's BIGINT: the watcher must keep the time the
    catalog can hold (as scan does), not fail every flush of its hashes."""
    root = tmp_path / "root"
    root.mkdir()
    with watching(catalog, root, snapshot_after=QUIET) as (watcher, notices):
        for name, data in (("future.bin", b"f" * 100),
                           ("future.mp4", (sample_master / "cam1/clip_h264.mp4").read_bytes())):
            (root / name).write_bytes(data)
            os.utime(root / name, (10_413_792_000, 10_413_792_000))  # the year 2300
        if (root / "future.bin").stat().st_mtime_ns < 2**63:
            pytest.skip("this file system cannot keep a time past 2262")
        wait_settled(watcher, notices)
    assert latest_files(catalog) == fresh_files(tmp_path, root)
    assert {row[0]: row[6] for row in latest_files(catalog)}["future.mp4"] == "h264"


def test_negative_thread_count_is_a_usage_error(tmp_path, catalog):
    proc = watch_process(catalog, tmp_path, "--threads", "-1")
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    assert "threads" in err and "internal error" not in err
