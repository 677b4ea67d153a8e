"""Kill -9 at any point, and two processes on one catalog."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import xxhash

from sneakernet.catalog.db import SCHEMA_VERSION, Catalog
from sneakernet.catalog.progress import ProgressEvent
from sneakernet.catalog.scan import scan
from sneakernet.catalog.stats import stats


def _make_tree(root: Path, files: int, size: int) -> None:
    for i in range(files):
        folder = root / f"d{i % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05d}.bin").write_bytes(os.urandom(size))


def _assert_consistent(catalog: Catalog) -> list[int]:
    """Every visible version is whole: its entry count is the count it was committed with."""
    with catalog.read() as con:
        rows = con.execute(
            "SELECT v.version, v.files, count(e.path) FILTER (e.kind = 'file')"
            " FROM versions v LEFT JOIN entries e USING (dataset, version)"
            " GROUP BY ALL ORDER BY 1"
        ).fetchall()
    for version, committed, present in rows:
        assert committed == present, f"version {version}: {present} of {committed} entries"
    return [r[0] for r in rows]


def _scan_process(catalog: Catalog, root: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sneakernet.cli", "--catalog", str(catalog.path),
         "scan", str(root), "--dataset", "big", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_kill_9_at_any_point_leaves_a_consistent_catalog(tmp_path, catalog):
    root = tmp_path / "big"
    _make_tree(root, files=1500, size=48 * 1024)
    t0 = time.monotonic()
    probe_run = Catalog(tmp_path / "timing.duckdb")
    scan(probe_run, root, "big")
    full = time.monotonic() - t0 + 0.6  # plus interpreter start-up in a subprocess
    for fraction in (0.1, 0.3, 0.5, 0.7, 0.9, 1.0):
        proc = _scan_process(catalog, root)
        time.sleep(full * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        versions = _assert_consistent(catalog)
        assert versions in ([], [1])
        if versions:
            break
    with catalog.read() as con:
        cached_before = con.execute("SELECT count(*) FROM hash_cache").fetchone()[0]
    final = scan(catalog, root, "big")
    assert _assert_consistent(catalog) == [1]
    with catalog.read() as con:
        recorded = dict(con.execute("SELECT path, hash FROM entries WHERE version = 1").fetchall())
    assert len(recorded) == 1500
    for path, digest in recorded.items():
        assert digest == xxhash.xxh3_128_hexdigest((root / path).read_bytes())
    # Hashes the killed runs had saved are not computed again.
    assert final.hashed_files == 1500 - cached_before


def test_interrupted_scan_keeps_hashes(tmp_path, catalog):
    root = tmp_path / "big"
    _make_tree(root, files=600, size=16 * 1024)
    seen = []

    def stop_midway(event: ProgressEvent) -> None:
        seen.append(event)
        if event.phase == "hash" and event.files_done >= 128:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan(catalog, root, "big", progress=stop_midway)
    assert _assert_consistent(catalog) == []
    with catalog.read() as con:
        cached = con.execute("SELECT count(*) FROM hash_cache").fetchone()[0]
    # Workers may finish chunks already under way before the interrupt lands; all of
    # what they hashed is kept, and none of it is read again.
    assert 128 <= cached <= 600
    again = scan(catalog, root, "big")
    assert again.version == 1 and again.reused_files == cached
    assert again.hashed_files == 600 - cached


def test_interrupted_commit_keeps_every_hash(tmp_path, catalog):
    """The last hashes travel in the commit's transaction; a rollback must not lose them."""
    root = tmp_path / "big"
    _make_tree(root, files=300, size=4 * 1024)

    def stop_at_commit(event: ProgressEvent) -> None:
        if event.phase == "commit":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan(catalog, root, "big", progress=stop_at_commit)
    assert _assert_consistent(catalog) == []
    with catalog.read() as con:
        assert con.execute("SELECT count(*) FROM hash_cache").fetchone()[0] == 300
    again = scan(catalog, root, "big")
    assert (again.version, again.hashed_files, again.reused_files) == (1, 0, 300)


def test_interrupt_as_the_hash_pass_ends_keeps_every_hash(tmp_path, catalog, monkeypatch):
    """A Ctrl-C while the pass shuts its helpers and threads down, after its last batch:
    the hashes not flushed yet (they were kept for the commit) are stored all the same."""
    from sneakernet.catalog import hashpass, hashworker

    root = tmp_path / "big"
    _make_tree(root, files=300, size=4 * 1024)
    real_close = hashworker.HelperPool.close

    def interrupted_close(self) -> None:
        real_close(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(hashpass, "HELPER_MIN_FILES", 0)
    monkeypatch.setattr(hashworker.HelperPool, "close", interrupted_close)
    with pytest.raises(KeyboardInterrupt):
        scan(catalog, root, "big", workers=2)
    assert _assert_consistent(catalog) == []
    with catalog.read() as con:
        assert con.execute("SELECT count(*) FROM hash_cache").fetchone()[0] == 300
    monkeypatch.setattr(hashworker.HelperPool, "close", real_close)
    again = scan(catalog, root, "big")
    assert (again.version, again.hashed_files, again.reused_files) == (1, 0, 300)


def test_ctrl_c_on_the_cli_keeps_the_catalog_whole(tmp_path, catalog):
    """Ctrl-C at different moments: 130 with a message, or done; never a half version.

    A Ctrl-C that lands inside a DuckDB or Arrow call may end the process at
    once (DuckDB's own interrupt handling); the transaction makes that as safe
    as kill -9, which is all this test accepts besides the two clean outcomes.
    """
    root = tmp_path / "big"
    _make_tree(root, files=6000, size=1024)
    outcomes, pids = [], []
    for delay in (0.2, 0.6, 1.0, 1.5):
        proc = _scan_process(catalog, root)
        pids.append(proc.pid)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, 130, -signal.SIGINT), err
        assert "Traceback" not in err and "Exception ignored" not in err
        outcomes.append(proc.returncode)
        assert _assert_consistent(catalog) in ([], [1])
    assert 130 in outcomes, outcomes
    final = scan(catalog, root, "big")
    for pid in pids:  # work folders of the interrupted runs were cleaned up
        assert not list(Path(tempfile.gettempdir()).glob(f"sneakernet-scan-{pid}-*"))
    assert _assert_consistent(catalog) == [1]
    assert final.files == 6000


def test_stats_answers_while_a_scan_runs(tmp_path, catalog):
    small = tmp_path / "small"
    _make_tree(small, files=50, size=1024)
    scan(catalog, small, "small")
    root = tmp_path / "big"
    _make_tree(root, files=3000, size=64 * 1024)
    proc = _scan_process(catalog, root)
    worst = 0.0
    answers = 0
    reader = Catalog(catalog.path, timeout=10)
    while proc.poll() is None:
        t = time.monotonic()
        s = stats(reader, "small")
        worst = max(worst, time.monotonic() - t)
        assert s.total.files == 50
        _assert_consistent(reader)
        answers += 1
    _out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert answers >= 3
    assert worst < 2.0, f"a reader waited {worst:.2f} s"
    cli = subprocess.run(
        [sys.executable, "-m", "sneakernet.cli", "--catalog", str(catalog.path), "stats", "big"],
        capture_output=True, text=True, timeout=60,
    )
    assert cli.returncode == 0 and "3,000 files" in cli.stdout


_OPEN_AT_ONCE = """
import sys, time
from sneakernet.catalog.db import SCHEMA_VERSION, Catalog
start, path, mode = float(sys.argv[1]), sys.argv[2], sys.argv[3]
time.sleep(max(0.0, start - time.time()))
catalog = Catalog(path, timeout=30)
from sneakernet.catalog import session
opened = {"read": catalog.read, "write": catalog.write, "session": lambda: session.write(catalog)}
with opened[mode]() as con:
    print(con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()[0][0])
"""


def test_processes_meeting_a_missing_catalog_all_open_it(tmp_path):
    """The first use of a catalog by several processes at once (a watcher and a scan
    started together) must not hand any of them a half-created file."""
    for attempt in range(2):
        path = tmp_path / f"new{attempt}" / "catalog.duckdb"
        start = time.time() + 1.5  # every process is up and waiting by then
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _OPEN_AT_ONCE, str(start), str(path), mode],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for mode in ("read", "write", "session") * 2
        ]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert out.strip() == str(SCHEMA_VERSION)
        leftovers = sorted(p.name for p in path.parent.iterdir())
        assert leftovers == ["catalog.duckdb"], leftovers


_HOLD = ("import duckdb, sys; con = duckdb.connect(sys.argv[1], read_only=True); "
         "print('held', flush=True); sys.stdin.read()")


def _scan_while_another_process_reads(catalog: Catalog, root: Path, monkeypatch):
    """scan(), its hash pass run while a reader in another process holds the catalog
    (a long `query` or `export`), which lets go as the pass ends."""
    from sneakernet.catalog import hashpass

    real_run = hashpass.HashPass.run

    def run_while_held(self, plan_file: Path, entries_file: Path):
        holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(catalog.path)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            return real_run(self, plan_file, entries_file)
        finally:
            holder.stdin.close()
            holder.wait(timeout=30)

    monkeypatch.setattr(hashpass, "CACHE_FLUSH_SECONDS", -1)  # a flush after every batch
    monkeypatch.setattr(hashpass.HashPass, "run", run_while_held)
    return scan(catalog, root, "t")


def test_a_reader_holding_the_catalog_does_not_stop_a_scan(tmp_path, monkeypatch):
    """Each periodic flush of hashes waited --timeout for the reader, then ended the scan
    with 'catalog stayed locked' (exit 5): a long query elsewhere killed a long scan."""
    root = tmp_path / "tree"
    _make_tree(root, files=9000, size=64)  # two batches of the plan: two flushes
    catalog = Catalog(tmp_path / "cat.duckdb", timeout=1)
    result = _scan_while_another_process_reads(catalog, root, monkeypatch)
    assert (result.version, result.hashed_files) == (1, 9000)
    with catalog.read() as con:
        assert con.execute("SELECT count(*) FROM hash_cache").fetchone()[0] == 9000


def test_hashes_held_back_by_a_busy_catalog_are_bounded(tmp_path, monkeypatch):
    from sneakernet.catalog import hashpass
    from sneakernet.catalog.errors import CatalogBusyError

    root = tmp_path / "tree"
    _make_tree(root, files=9000, size=64)
    catalog = Catalog(tmp_path / "cat.duckdb", timeout=0.5)
    monkeypatch.setattr(hashpass, "CACHE_HOLD_ROWS", 1)  # memory bound reached at once: wait
    with pytest.raises(CatalogBusyError):
        _scan_while_another_process_reads(catalog, root, monkeypatch)
    assert _assert_consistent(catalog) == []
