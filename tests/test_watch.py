"""`watch`: a real watchdog observer on real files; the CLI as a real process.

The bar: bursts of 2,000 new files, files modified while being written, a
folder renamed, files deleted; afterwards the watched catalog's latest
version equals a fresh scan, a scan reads nothing, and `stats` from another
process answered within 2 s throughout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sneakernet.catalog import watch_work
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import SourceError, UsageError
from sneakernet.catalog.scan import DatasetLockedError, scan
from sneakernet.catalog.watch import Watcher
from sneakernet.catalog.watch_setup import parse_duration
from sneakernet.cli.exits import ExitStatus

sys.path.insert(0, str(Path(__file__).parent))  # tests/ is not a package
from watch_fixtures import (
    QUIET,
    Lines,
    fresh_files,
    latest_files,
    wait_for,
    wait_settled,
    watch_process,
    watching,
    write_tree,
)

# -- the library ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("90", 90), ("1.5M", 90)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5x", "-5s", "5 s", "s", "1e3", "5m3x"])
def test_bad_durations_are_refused(text):
    with pytest.raises(UsageError, match="cannot read"):
        parse_duration(text, "--snapshot-after")


def test_folder_renamed_reuses_every_hash(tmp_path, catalog):
    root = tmp_path / "root"
    write_tree(root / "cam", folders=3, per_folder=40)
    with watching(catalog, root, snapshot_after=QUIET) as (watcher, notices):
        os.rename(root / "cam", root / "camera")
        os.rename(root / "camera" / "f01", root / "camera" / "f01-renamed")
        wait_settled(watcher, notices)
        assert watcher.stats.hashed_files == 0  # moved, not new: the cache knew them all
        assert watcher.stats.reused_files >= 120
        assert notices[-1].scan.hashed_files == 0
    latest = latest_files(catalog)
    assert len(latest) == 120 and all(p[0].startswith("camera/") for p in latest)
    assert latest == fresh_files(tmp_path, root)


def test_growing_file_is_never_hashed_half_written(tmp_path, catalog, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    sizes: list[int] = []
    real = watch_work.hash_file

    def recording(path, *args, **kwargs):
        found = real(path, *args, **kwargs)
        if os.fsdecode(path).endswith("growing.bin"):
            sizes.append(found.size)
        return found

    monkeypatch.setattr(watch_work, "hash_file", recording)
    # A settle far above the gap between writes: a loaded machine must not make a pause.
    with watching(catalog, root, settle=1.0, snapshot_after=QUIET) as (watcher, notices):
        with open(root / "growing.bin", "wb") as fh:
            for _ in range(25):  # 1.25 s of writes, 0.05 s apart
                fh.write(os.urandom(8192))
                fh.flush()
                time.sleep(0.05)
                assert not sizes, "hashed while still being written"
        wait_settled(watcher, notices)
    assert sizes == [25 * 8192]
    assert latest_files(catalog) == fresh_files(tmp_path, root)


def test_files_deleted_or_replaced_while_hashed_are_dropped(tmp_path, catalog, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    real = watch_work.hash_file

    def hostile(path, *args, **kwargs):
        name = os.path.basename(os.fsdecode(path))
        if name == "victim.bin":
            os.unlink(path)
        elif name == "swapped.bin":
            os.unlink(path)
            os.mkdir(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(watch_work, "hash_file", hostile)
    with watching(catalog, root, snapshot_after=QUIET) as (watcher, notices):
        for name in ("victim.bin", "swapped.bin", "keeper.bin"):
            (root / name).write_bytes(os.urandom(4096))
        wait_settled(watcher, notices)
        assert watcher.stats.dropped_files == 2
        assert watcher.stats.hashed_files == 1
    assert {row[0] for row in latest_files(catalog)} == {"keeper.bin"}
    assert latest_files(catalog) == fresh_files(tmp_path, root)


def test_odd_names_and_a_video_are_caught(tmp_path, catalog, sample_master):
    root = tmp_path / "root"
    root.mkdir()
    clip = sample_master / "cam1" / "clip_h264.mp4"
    with watching(catalog, root) as (watcher, _notices):  # no snapshots: cache and media only
        (root / "ünïcödé \u2013 日本.bin").write_bytes(b"u" * 100)
        (root / "new\nline.bin").write_bytes(b"n" * 100)
        fd = os.open(os.fsencode(root) + b"/bad\xff.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"b" * 100)
        os.close(fd)
        shutil.copyfile(clip, root / "clip\n.mp4")
        wait_for(lambda: watcher.stats.probed_files == 1, 10, "the clip to be probed")
    # Stopped: every hash and the media row are in the catalog, so a scan reads nothing.
    again = scan(catalog, root, "d")
    assert (again.hashed_files, again.probed_files) == (0, 0)
    latest = latest_files(catalog)
    assert latest == fresh_files(tmp_path, root)
    assert {row[0] for row in latest} == {
        "ünïcödé \u2013 日本.bin", "new\nline.bin", "bad\\xff.bin", "clip\n.mp4"
    }
    assert any(row[6] == "h264" and row[7] and not row[8] for row in latest)


def test_catalog_inside_the_folder_does_not_feed_back(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    inside = Catalog(root / "catalog.duckdb")
    with watching(inside, root, snapshot_after=0.2) as (watcher, notices):
        (root / "a.bin").write_bytes(b"a")
        wait_settled(watcher, notices)
        snapshots = watcher.stats.snapshots
        time.sleep(1.0)  # writing the catalog must not look like a change to the dataset
        assert watcher.stats.snapshots == snapshots
    assert {row[0] for row in latest_files(inside)} == {"a.bin"}


def test_one_watcher_per_dataset_and_a_vanished_root_ends_the_watch(tmp_path, catalog):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(SourceError, match="was deleted, renamed"), \
            watching(catalog, root):
        with pytest.raises(DatasetLockedError, match="already watched"), \
                Watcher(catalog, root, "d"):
            pass
        os.rename(root, tmp_path / "elsewhere")
        (tmp_path / "elsewhere" / "x").write_bytes(b"x")  # heard: the watch follows the inode
        time.sleep(0.5)  # idle, it would notice within IDLE_CHECK_SECONDS


# -- the command line -----------------------------------------------------

_STATS_PROBER = """
import sys, time
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.stats import stats
catalog = Catalog(sys.argv[1], timeout=30)
while True:
    started = time.monotonic()
    s = stats(catalog, "d")
    print(f"{time.monotonic() - started:.3f} {s.total.files}", flush=True)
    time.sleep(0.05)
"""


def _write_slowly(paths: list[Path], chunks: int, gap: float) -> None:
    """Many files written at once, a chunk each in turn: all 'being written' for a while."""
    handles = [open(p, "wb") for p in paths]  # noqa: SIM115
    try:
        for _ in range(chunks):
            for fh in handles:
                fh.write(os.urandom(4096))
                fh.flush()
            time.sleep(gap)
    finally:
        for fh in handles:
            fh.close()


def test_cli_watch_survives_bursts_renames_and_deletes(tmp_path, catalog, cli, sample_master):
    root = tmp_path / "root"
    write_tree(root / "seed", folders=1, per_folder=50)
    proc = watch_process(catalog, root, "--settle", "0.5", "--snapshot-after", "1s")
    out = Lines(proc)
    prober = None
    try:
        wait_for(lambda: out.events("watching"), 60, "the watcher to start")
        prober = subprocess.Popen([sys.executable, "-c", _STATS_PROBER, str(catalog.path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        answers = Lines(prober)
        wait_for(lambda: answers.lines, 30, "the first stats answer")
        write_tree(root / "a", folders=5, per_folder=100)  # burst 1: 500 files
        slow = [root / "b" / f"slow{i:02d}.bin" for i in range(20)]
        (root / "b").mkdir()
        writer = threading.Thread(target=_write_slowly, args=(slow, 8, 0.15))
        writer.start()  # 20 files being written for ~1.2 s, through the bursts below
        write_tree(root / "b", folders=4, per_folder=120)  # burst 2: 480 files
        time.sleep(0.3)
        os.rename(root / "a", root / "a-renamed")  # maybe while a/ is being hashed
        write_tree(root / "c", folders=5, per_folder=100)  # burst 3: 500 files
        for i in range(0, 100, 2):
            (root / "c" / "f01" / f"{i:04d}.bin").unlink()
        for i in range(30):  # rewritten in place, new content
            (root / "b" / "f00" / f"{i:04d}.bin").write_bytes(os.urandom(3000))
        writer.join()
        time.sleep(0.3)
        write_tree(root / "d", folders=5, per_folder=100)  # burst 4: 500 files
        for clip in ("cam1/clip_h264.mp4", "cam2/clip_vp9.webm", "broken/cut.mp4"):
            shutil.copyfile(sample_master / clip, root / "d" / Path(clip).name)
        shutil.rmtree(root / "c" / "f02")
        stats_now = cli("stats", "d", catalog=catalog, timeout=30)
        assert stats_now.returncode == 0, stats_now.stderr
        want = fresh_files(tmp_path, root)
        assert len(want) == 50 + 2000 + 3 - 50 - 100
        reader = Catalog(catalog.path, timeout=30)

        def caught_up() -> bool:
            return bool(out.events("snapshot")) and latest_files(reader) == want

        wait_for(caught_up, 30, "the watched catalog to equal a fresh scan")
        proc.send_signal(signal.SIGINT)
        err = out.finish(proc)
        assert proc.returncode == ExitStatus.INTERRUPTED, err
        assert "Traceback" not in err
    finally:
        out.finish(proc, timeout=0)
        if prober is not None:
            answers.finish(prober, timeout=0)
    waits = [float(line.split()[0]) for line in answers.lines]
    assert len(waits) >= 10 and max(waits) < 2.0, f"stats waited up to {max(waits):.2f} s"
    stopped = out.events("stopped")[0]["watch"]
    assert stopped["hashed_files"] >= 1500  # the watcher read them, not the snapshots
    assert out.events("snapshot")[-1]["scan"]["hashed_files"] == 0
    again = json.loads(cli("scan", root, "--dataset", "d", "--json", catalog=catalog,
                           check=True).stdout)
    assert (again["version"], again["hashed_files"], again["probed_files"]) == (None, 0, 0)


def test_cli_sigterm_keeps_hashes_and_exits_0(tmp_path, catalog, cli):
    root = tmp_path / "root"
    root.mkdir()
    proc = watch_process(catalog, root, "--settle", "0.2")
    out = Lines(proc)
    try:
        wait_for(lambda: out.events("watching"), 60, "the watcher to start")
        write_tree(root, folders=2, per_folder=25)
        time.sleep(0.8)  # settled and hashed; maybe not yet flushed
        proc.send_signal(signal.SIGTERM)
        err = out.finish(proc)
    finally:
        out.finish(proc, timeout=0)
    assert proc.returncode == ExitStatus.OK, err
    hashed = out.events("stopped")[0]["watch"]["hashed_files"]
    assert hashed > 0
    with catalog.read() as con:  # every hash the watcher made was stored before it exited
        assert con.execute("SELECT count(*) FROM hash_cache").fetchone()[0] == hashed
    again = json.loads(cli("scan", root, "--dataset", "d", "--json", catalog=catalog,
                           check=True).stdout)
    assert again["hashed_files"] == 50 - hashed and again["files"] == 50


def test_cli_bad_duration(tmp_path, catalog, cli):
    proc = cli("watch", tmp_path, "--dataset", "d", "--snapshot-after", "soon", catalog=catalog)
    assert proc.returncode == ExitStatus.USAGE
    assert "--snapshot-after: cannot read 'soon'" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_missing_folder(tmp_path, catalog, cli):
    proc = cli("watch", tmp_path / "nope", "--dataset", "d", catalog=catalog)
    assert proc.returncode == ExitStatus.SOURCE and "folder to watch does not exist" in proc.stderr
