"""The shape of a fast scan: what a rescan skips, how the catalog is held, how the walk reads.

Speed itself is measured in bench/; these tests pin the behaviour that makes it
fast and check that the short cuts give the same answers as the long way.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import xxhash

from sneakernet.catalog import hashpass, hashworker, samples, walk
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.scan import scan


def _tree(root: Path, files: int = 30) -> Path:
    for i in range(files):
        folder = root / f"d{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:03}.bin").write_bytes(os.urandom(100 + i))
    os.symlink("d0/f000.bin", root / "link")
    return root


def _rows(catalog: Catalog, dataset: str) -> dict[str, tuple]:
    with catalog.read() as con:
        return {
            r[0]: r[1:]
            for r in con.execute(
                "SELECT path, kind, size, hash, status, link_target FROM entries"
                " WHERE dataset = ? AND version = (SELECT max(version) FROM versions"
                " WHERE dataset = ?)",
                [dataset, dataset],
            ).fetchall()
        }


def _forbid(*_args, **_kwargs):
    raise AssertionError("an unchanged rescan must not get here")


def test_unchanged_rescan_neither_plans_nor_reads(tmp_path: Path, monkeypatch):
    root = _tree(tmp_path / "tree")
    catalog = Catalog(tmp_path / "cat.duckdb")
    first = scan(catalog, root, "ds")
    monkeypatch.setattr(hashpass, "plan", _forbid)
    monkeypatch.setattr(hashpass, "_hash_one", _forbid)
    monkeypatch.setattr(hashworker, "hash_file", _forbid)
    again = scan(catalog, root, "ds")
    assert again.version is None and again.previous == first.version == 1
    assert (again.files, again.symlinks, again.bytes) == (first.files, 1, first.bytes)
    assert again.reused_files == again.files and again.hashed_files == 0
    assert not again.problems


@pytest.mark.parametrize("change", ["content", "touch", "new", "gone", "relink"])
def test_any_change_takes_the_full_path_with_its_exact_answer(tmp_path: Path, change: str):
    root = _tree(tmp_path / "tree")
    catalog = Catalog(tmp_path / "cat.duckdb")
    scan(catalog, root, "ds")
    target = root / "d1" / "f001.bin"
    if change == "content":  # same size, other bytes
        target.write_bytes(os.urandom(target.stat().st_size))
    elif change == "touch":  # same bytes, new mtime: no new version
        os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    elif change == "new":
        (root / "d2" / "extra.bin").write_bytes(b"extra")
    elif change == "gone":
        target.unlink()
    else:
        (root / "link").unlink()
        os.symlink("d1/f001.bin", root / "link")
    again = scan(catalog, root, "ds")
    assert again.changed == (change != "touch")
    rows = _rows(catalog, "ds")
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()}
    assert set(rows) == on_disk
    for path, (kind, _size, digest, status, _link) in rows.items():
        assert status == "ok"
        if kind == "file":
            assert digest == xxhash.xxh3_128_hexdigest((root / path).read_bytes())
    assert rows["link"][4] == os.readlink(root / "link")


def test_entry_that_was_not_read_fine_is_read_again(tmp_path: Path, monkeypatch):
    root = _tree(tmp_path / "tree")
    catalog = Catalog(tmp_path / "cat.duckdb")
    real = hashpass._hash_one

    def changing_once(path, buffer, expected):
        if os.fsdecode(path).endswith("f005.bin"):
            return None, "changing", "changed while being read; not recorded with a hash"
        return real(path, buffer, expected)

    monkeypatch.setattr(hashpass, "_hash_one", changing_once)
    scan(catalog, root, "ds")
    assert _rows(catalog, "ds")["d1/f005.bin"][3] == "changing"
    monkeypatch.setattr(hashpass, "_hash_one", real)
    again = scan(catalog, root, "ds")  # the tree did not change, the entry did
    assert again.version == 2 and again.hashed_files == 1
    row = _rows(catalog, "ds")["d1/f005.bin"]
    assert row[3] == "ok" and row[2] == xxhash.xxh3_128_hexdigest(
        (root / "d1" / "f005.bin").read_bytes()
    )


def test_unchanged_rescan_reports_broken_videos_as_the_first_scan_did(tmp_path: Path):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "zero.mp4").write_bytes(b"")
    (root / "text.mkv").write_text("not a matroska file\n" * 10)
    samples.write_clip(root / "good.mp4", samples.ClipSpec("good.mp4", "libx264", frames=5))
    catalog = Catalog(tmp_path / "cat.duckdb")
    first = scan(catalog, root, "vids")
    again = scan(catalog, root, "vids")
    assert again.version is None and again.probed_files == 0
    broken = sorted((p.path, p.message) for p in first.problems if p.kind == "broken-video")
    assert [path for path, _ in broken] == ["text.mkv", "zero.mp4"]
    assert sorted((p.path, p.message) for p in again.problems) == broken


def test_scan_opens_no_duckdb_instance_per_transaction(tmp_path: Path, monkeypatch):
    """Each transaction of a scan attaches the catalog file to one per-process DuckDB."""
    root = _tree(tmp_path / "tree")
    catalog = Catalog(tmp_path / "cat.duckdb")
    catalog.ensure_schema()
    monkeypatch.setattr(Catalog, "_connect", _forbid)
    assert scan(catalog, root, "ds").version == 1
    (root / "d0" / "new.bin").write_bytes(b"new")
    assert scan(catalog, root, "ds").version == 2
    assert scan(catalog, root, "ds").version is None


def test_scan_waits_for_a_catalog_held_elsewhere_in_this_process(tmp_path: Path):
    root = _tree(tmp_path / "tree")
    catalog = Catalog(tmp_path / "cat.duckdb", timeout=30)
    catalog.ensure_schema()
    held = threading.Event()

    def hold() -> None:
        with catalog.write():
            held.set()
            time.sleep(0.5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    started = time.monotonic()
    result = scan(catalog, root, "ds")
    holder.join()
    assert result.version == 1
    assert time.monotonic() - started >= 0.3  # it waited for the holder, then went on


def test_walk_reads_big_folders_in_chunks_and_finds_everything(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(walk, "CHUNK_ENTRIES", 3)
    root = tmp_path / "tree"
    for i in range(40):
        folder = root / "a" / ("b" if i % 3 else "c") / ("deep" if i % 5 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}").write_bytes(b"x" * i)
    os.symlink("a/b", root / "to_b")
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan(catalog, root, "ds")
    rows = _rows(catalog, "ds")
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*")
               if p.is_symlink() or p.is_file()}
    assert set(rows) == on_disk and result.files == 40 and result.symlinks == 1
    assert rows["to_b"][0] == "symlink" and rows["to_b"][4] == "a/b"
    assert result.bytes == sum(range(40))


def test_walk_rows_match_lstat_across_batches_links_and_raw_names(tmp_path: Path, monkeypatch):
    """Sparse columns (kind, raw_path, link_target) land on the right rows after batching."""
    import pyarrow.parquet as pq

    monkeypatch.setattr(walk, "CHUNK_ENTRIES", 4)
    monkeypatch.setattr(walk, "BATCH_ROWS", 5)
    root = tmp_path / "tree"
    expected: dict[bytes, tuple] = {}
    for d in range(6):
        folder = root / f"d{d}"
        folder.mkdir(parents=True)
        for i in range(7):
            name = f"f{i}".encode() + (b"\xff" if (d + i) % 4 == 0 else b"")
            path = os.fsencode(folder) + b"/" + name
            if (d + i) % 3 == 0:
                os.symlink(b"../target" + name, path)
            else:
                with open(path, "wb") as f:
                    f.write(b"x" * (d * 10 + i))
            st = os.lstat(path)
            link = os.fsdecode(os.readlink(path)) if (d + i) % 3 == 0 else None
            expected[f"d{d}/".encode() + name] = (
                "symlink" if link else "file", st.st_size, st.st_mtime_ns, st.st_mode,
                st.st_ino, st.st_dev, link,
            )
    result = walk.walk_to_parquet(root, tmp_path / "walk.parquet")
    rows = pq.read_table(tmp_path / "walk.parquet").to_pylist()
    got = {
        (r["raw_path"] if r["raw_path"] is not None else r["path"].encode()): (
            r["kind"], r["size"], r["mtime_ns"], r["mode"], r["inode"], r["device"],
            None if r["link_target"] is None else os.fsencode(r["link_target"]).decode(
                "utf-8", "backslashreplace"),
        )
        for r in rows
    }
    shown = {k: (*v[:6], None if v[6] is None else os.fsencode(v[6]).decode(
        "utf-8", "backslashreplace")) for k, v in expected.items()}
    assert got == shown
    assert result.files == sum(v[0] == "file" for v in expected.values())
    assert result.symlinks == len(expected) - result.files


def test_small_files_are_read_one_chunk_at_a_time(tmp_path: Path, monkeypatch):
    """Small files: one reader thread at a time (two contend for the GIL and lose)."""
    root = tmp_path / "tree"
    root.mkdir()
    for i in range(40):
        (root / f"f{i:02}").write_bytes(os.urandom(1000 + i))
    monkeypatch.setattr(hashpass, "CHUNK_FILES", 2)
    active, peak, guard = [0], [0], threading.Lock()
    real = hashpass._hash_one

    def counting(path, buffer, expected):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.002)
        try:
            return real(path, buffer, expected)
        finally:
            with guard:
                active[0] -= 1

    monkeypatch.setattr(hashpass, "_hash_one", counting)
    result = scan(Catalog(tmp_path / "cat.duckdb"), root, "ds", workers=4)
    assert result.hashed_files == 40 and peak[0] == 1
    rows = _rows(Catalog(tmp_path / "cat.duckdb"), "ds")
    assert all(
        rows[name][2] == xxhash.xxh3_128_hexdigest((root / name).read_bytes()) for name in rows
    )
    monkeypatch.setattr(hashpass, "SERIAL_MEAN_BYTES", 0)  # as if they were big: in parallel
    peak[0] = 0
    scan(Catalog(tmp_path / "cat.duckdb"), root, "ds", workers=4, rehash=True)
    assert peak[0] > 1


def _small_tree(root: Path, files: int) -> Path:
    names = ["plain", "sp ace", "new\nline", "ünï", "日本"]
    for i in range(files):
        folder = root / f"d{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{names[i % len(names)]}-{i}.bin").write_bytes(os.urandom(i % 3000))
    raw = os.fsencode(root / "d0") + b"/bad-\xff\xfe.bin"
    with open(raw, "wb") as f:
        f.write(b"raw name")
    return root


def _entries(catalog: Catalog, dataset: str) -> dict:
    with catalog.read() as con:
        return {
            (r[0], r[1]): r[2:]
            for r in con.execute(
                "SELECT path, raw_path, kind, size, hash, status FROM entries WHERE dataset = ?",
                [dataset],
            ).fetchall()
        }


def test_helper_processes_hash_small_files_as_the_threads_do(tmp_path: Path, monkeypatch):
    root = _small_tree(tmp_path / "tree", 1500)
    alone = Catalog(tmp_path / "alone.duckdb")
    monkeypatch.setattr(hashpass, "HELPER_MIN_FILES", 10**9)
    scan(alone, root, "ds")
    helped_files: list[int] = []
    real = hashworker.Helper.hash

    def spying(self, requests):
        helped_files.append(len(requests))
        return real(self, requests)

    monkeypatch.setattr(hashpass, "HELPER_MIN_FILES", 0)
    monkeypatch.setattr(hashworker.Helper, "hash", spying)
    helped = Catalog(tmp_path / "helped.duckdb")
    result = scan(helped, root, "ds", workers=2)
    assert result.hashed_files == 1501 and not result.problems
    assert sum(helped_files) >= 128, helped_files  # a helper really hashed chunks
    assert _entries(helped, "ds") == _entries(alone, "ds")
    for (path, raw), (_kind, _size, digest, _status) in _entries(helped, "ds").items():
        name = os.fsencode(root) + b"/" + (raw if raw is not None else path.encode())
        assert digest == xxhash.xxh3_128_hexdigest(Path(os.fsdecode(name)).read_bytes())


def test_a_helper_answers_for_files_that_are_not_what_the_walk_saw(tmp_path: Path):
    from sneakernet.catalog.hashworker import Helper

    good = tmp_path / "good.bin"
    good.write_bytes(b"abc")
    grown = tmp_path / "grown.bin"
    grown.write_bytes(b"0123456789")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    raw = os.fsencode(tmp_path) + b"/\xff.bin"
    with open(raw, "wb") as f:
        f.write(b"raw")
    st = good.stat()
    helper = Helper()
    try:
        answers = helper.hash([
            (str(good), 3, st.st_mtime_ns),
            (str(grown), 4, 0),  # read as it is now, with its real size
            (str(tmp_path / "gone.bin"), 5, 0),
            (str(fifo), 0, 0),
            (str(tmp_path), 0, 0),
            (raw, 3, os.stat(raw).st_mtime_ns),
        ])
    finally:
        helper.close()
    assert answers[0][0].hash == xxhash.xxh3_128_hexdigest(b"abc")
    assert answers[1][0].size == 10
    assert answers[1][0].hash == xxhash.xxh3_128_hexdigest(b"0123456789")
    assert answers[2] == (None, "vanished", "deleted before it could be read")
    assert answers[3][:2] == (None, "vanished")
    assert answers[4][0] is None and answers[4][1] in ("vanished", "unreadable")
    assert answers[5][0].hash == xxhash.xxh3_128_hexdigest(b"raw")


def test_a_helper_killed_mid_scan_leaves_the_scan_to_hash_the_rest(tmp_path: Path, monkeypatch):
    import signal

    root = _small_tree(tmp_path / "tree", 1500)
    real = hashworker.Helper.hash
    killed: list[int] = []

    def killed_after_first(self, requests):
        answer = real(self, requests)
        if not killed and self.pid is not None:
            killed.append(self.pid)
            os.kill(self.pid, signal.SIGKILL)
        return answer

    monkeypatch.setattr(hashpass, "HELPER_MIN_FILES", 0)
    monkeypatch.setattr(hashworker.Helper, "hash", killed_after_first)
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan(catalog, root, "ds", workers=2)
    assert killed and result.hashed_files == 1501 and not result.problems
    for (path, raw), (_kind, _size, digest, status) in _entries(catalog, "ds").items():
        name = os.fsencode(root) + b"/" + (raw if raw is not None else path.encode())
        assert status == "ok"
        assert digest == xxhash.xxh3_128_hexdigest(Path(os.fsdecode(name)).read_bytes())


def test_a_helper_ends_when_its_scan_is_killed(tmp_path: Path):
    import signal
    import subprocess
    import sys

    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from sneakernet.catalog.hashworker import Helper; h = Helper();"
         " print(h.pid, flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    assert _running(pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid), "the helper outlived its scan"


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has ended; only its reaping is left
