"""Pack, verify and ingest of many small files through batched syncs (copier.Batch).

The batch makes copies durable together, reads them back, then names them: these
tests hold it to the one-file rules (final name only after the bytes are proven,
never over an existing file, partial copies continued, corrupt copies not named).
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest
import xxhash

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.scan import scan
from sneakernet.transfer import batching, copier, pump
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer.ingest import ingest
from sneakernet.transfer.pack import pack
from sneakernet.transfer.verify import verify


def _tree(root: Path, files: int) -> dict[str, bytes]:
    made = {}
    for i in range(files):
        rel = f"cam{i % 3}/day{i % 7}/clip{i:04d}.bin"
        data = (f"{i}:" * (i % 50 + 1)).encode() if i % 11 else b""
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        made[rel] = data
    # The same content twice: carried once, linked on ingest.
    (root / "dup").mkdir()
    (root / "dup" / "again.bin").write_bytes(made["cam1/day1/clip0001.bin"])
    made["dup/again.bin"] = made["cam1/day1/clip0001.bin"]
    return made


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(batching, "BATCH_FILES", 16)


def _scanned(tmp_path: Path, files: int) -> tuple[Catalog, Path, dict[str, bytes]]:
    root = tmp_path / "src"
    made = _tree(root, files)
    catalog = Catalog(tmp_path / "a.duckdb")
    scan(catalog, root, "ds")
    return catalog, root, made


def _drive_files(drive: Path) -> dict[str, bytes]:
    return {
        p.relative_to(drive / "ds" / "1").as_posix(): p.read_bytes()
        for p in (drive / "ds" / "1").rglob("*")
        if p.is_file()
    }


def test_pack_verify_ingest_many_small_files(tmp_path, small_batches):
    catalog, _, made = _scanned(tmp_path, 100)
    drive = tmp_path / "drive"
    drive.mkdir()
    result = pack(catalog, ["ds@1"], [drive], shipment="s1")
    assert result.sealed and not result.problems
    carried = len(set(made.values()))  # duplicates (the empty files too) are carried once
    assert result.drives[0].copied_files == carried
    assert not (drive / fmt.PARTIAL_DIR).exists(), "pack removes its emptied temp folder"
    on_drive = _drive_files(drive)
    assert set(on_drive.values()) == set(made.values()) and len(on_drive) == carried
    assert all(made[k] == v for k, v in on_drive.items())
    checked = verify([drive])
    assert checked.whole and checked.drives[0].counts["ok"] == carried

    store = tmp_path / "store"
    store.mkdir()
    got = ingest(Catalog(tmp_path / "b.duckdb"), [drive], store)
    assert got.registered == ["ds@1"] and not got.problems
    d = got.drives[0]
    assert (d.copied_files, d.linked_files) == (carried, len(made) - carried)
    for rel, data in made.items():
        path = store / "ds" / "1" / rel
        assert path.read_bytes() == data
        assert path.stat().st_mode & 0o222 == 0
    assert not list((store / fmt.PARTIAL_DIR).iterdir())


def test_pack_continues_partial_copies_and_skips_placed_files(tmp_path, small_batches):
    catalog, _, made = _scanned(tmp_path, 40)
    drive = tmp_path / "drive"
    drive.mkdir()
    first = pack(catalog, ["ds@1"], [drive], shipment="s1")
    assert first.sealed
    # Undo the seal and leave the drive as a killed run would: some files named,
    # one partial copy half written, one missing.
    with catalog.write() as con:
        con.execute("UPDATE drives SET seal = NULL")
    doc = fmt.read_drive(drive).doc
    doc["state"] = "packing"
    fmt.write_drive_doc(drive, doc)
    name = "cam2/day2/clip0002.bin"
    placed = drive / "ds" / "1" / name
    digest = copier.xxhash.xxh3_128(made[name]).hexdigest()
    os.chmod(placed, 0o644)
    placed.unlink()
    (drive / fmt.PARTIAL_DIR).mkdir(exist_ok=True)
    (drive / fmt.PARTIAL_DIR / f"{digest}.part").write_bytes(made[name][:5])
    (drive / "ds" / "1" / "cam0/day0/clip0000.bin").unlink()
    again = pack(catalog, ["ds@1"], [drive])
    assert again.resumed and again.sealed and not again.problems
    d = again.drives[0]
    assert d.copied_files == 2 and d.reused_bytes == 5
    assert placed.read_bytes() == made[name]
    assert verify([drive]).whole


def test_corrupt_read_back_is_never_named(tmp_path, small_batches, monkeypatch):
    catalog, _, _ = _scanned(tmp_path, 30)
    drive = tmp_path / "drive"
    drive.mkdir()
    real = copier.check_readback
    bad = "cam1/day4/clip0004.bin"

    def flaky(out, size, digest, buffer, *, dropped=False):
        if os.readlink(f"/proc/self/fd/{out}").endswith(".part") and size == len(
            ("4:" * 5).encode()
        ):
            raise copier.CopyCorrupt("simulated bad sector")
        return real(out, size, digest, buffer, dropped=dropped)

    monkeypatch.setattr(copier, "check_readback", flaky)
    result = pack(catalog, ["ds@1"], [drive], shipment="s1")
    assert [(p.path, p.outcome) for p in result.problems] == [(f"ds/1/{bad}", "corrupt-copy")]
    assert not result.sealed
    assert not (drive / "ds" / "1" / bad).exists()
    assert not list((drive / fmt.PARTIAL_DIR).iterdir())  # the corrupt copy was removed
    monkeypatch.setattr(copier, "check_readback", real)
    again = pack(catalog, ["ds@1"], [drive])
    assert again.sealed and not again.problems and verify([drive]).whole


def test_batch_never_names_over_an_existing_file(tmp_path):
    folder = tmp_path / "partial"
    folder.mkdir()
    batch = batching.Batch(folder, readback=True)
    items = []
    for i, data in enumerate([b"one", b"two", b"three"]):
        src = tmp_path / f"src{i}"
        src.write_bytes(data)
        fd = os.open(src, os.O_RDONLY)
        digest = copier.xxhash.xxh3_128(data).hexdigest()
        tmp = folder / f"{digest}.part"
        out, result = copier.start_copy(
            fd, tmp, size=len(data), digest=digest, buffer=bytearray(1 << 16)
        )
        os.close(fd)
        items.append(batching.Pending(out, tmp, tmp_path / "dst" / f"f{i}", len(data), digest,
                                    result, i))
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "f1").write_bytes(b"somebody else's")
    try:
        for item in items:
            batch.add(item)
        done = batch.drain()
    finally:
        batch.close()
    assert [type(i.error) for i in done] == [type(None), FileExistsError, type(None)]
    assert (tmp_path / "dst" / "f1").read_bytes() == b"somebody else's"
    assert (tmp_path / "dst" / "f2").read_bytes() == b"three"


@pytest.fixture
def small_windows(monkeypatch):
    """Big files read back in windows of 1 MiB, so that a few MiB make several windows."""
    monkeypatch.setattr(batching, "WINDOW", 1 << 20)


def _big_source(tmp_path: Path, mib: int = 6) -> tuple[Catalog, bytes]:
    root = tmp_path / "src"
    root.mkdir()
    data = os.urandom(mib << 20)
    (root / "big.bin").write_bytes(data)
    (root / "small.bin").write_bytes(b"small")
    catalog = Catalog(tmp_path / "a.duckdb")
    scan(catalog, root, "ds")
    return catalog, data


def test_big_copy_is_read_back_in_windows_while_written(tmp_path, small_windows, monkeypatch):
    catalog, data = _big_source(tmp_path)
    pushed: list[tuple[int, int]] = []
    real = batching._push

    def counting(fd, start, length):
        pushed.append((start, length))
        real(fd, start, length)

    monkeypatch.setattr(batching, "_push", counting)
    drive = tmp_path / "drive"
    drive.mkdir()
    result = pack(catalog, ["ds@1"], [drive], shipment="s1")
    assert result.sealed and not result.problems
    # Windows cover the file from its start, in order; the last MiB is read after the fsync.
    assert [start for start, _ in pushed] == [i << 20 for i in range(5)]
    assert (drive / "ds" / "1" / "big.bin").read_bytes() == data
    assert verify([drive]).whole


def test_corrupt_window_keeps_the_big_file_from_counting_as_packed(
    tmp_path, small_windows, monkeypatch
):
    catalog, data = _big_source(tmp_path)
    real = batching._push

    def bad_sector(fd, start, length):
        real(fd, start, length)
        if start == 2 << 20:  # the device hands back other bytes than were written
            os.pwrite(fd, b"\xff" * 16, start + 100)

    monkeypatch.setattr(batching, "_push", bad_sector)
    drive = tmp_path / "drive"
    drive.mkdir()
    result = pack(catalog, ["ds@1"], [drive], shipment="s1")
    assert [(p.path, p.outcome) for p in result.problems] == [("ds/1/big.bin", "corrupt-copy")]
    assert not result.sealed and result.drives[0].copied_files == 1  # small.bin only
    assert not (drive / "ds" / "1" / "big.bin").exists()
    assert not list((drive / fmt.PARTIAL_DIR).iterdir())  # the corrupt copy was removed
    monkeypatch.setattr(batching, "_push", real)
    again = pack(catalog, ["ds@1"], [drive])
    assert again.sealed and not again.problems and verify([drive]).whole
    assert (drive / "ds" / "1" / "big.bin").read_bytes() == data


def test_write_error_in_a_window_is_an_io_error_not_a_packed_file(
    tmp_path, small_windows, monkeypatch
):
    catalog, _ = _big_source(tmp_path)

    def failing(fd, start, length):
        if start:
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(batching, "_push", failing)
    drive = tmp_path / "drive"
    drive.mkdir()
    result = pack(catalog, ["ds@1"], [drive], shipment="s1")
    assert [(p.path, p.outcome) for p in result.problems] == [("ds/1/big.bin", "io-error")]
    assert not result.sealed and not (drive / "ds" / "1" / "big.bin").exists()


@pytest.mark.parametrize("renameat2", [True, False], ids=["renameat2", "link-and-unlink"])
def test_naming_never_replaces_either_way(tmp_path, monkeypatch, renameat2):
    if not renameat2:  # a kernel, libc or file system without RENAME_NOREPLACE
        monkeypatch.setattr(copier, "_libc_renameat2", False)
    tmp, final, other = tmp_path / "a.part", tmp_path / "a", tmp_path / "b.part"
    tmp.write_bytes(b"ours")
    final.write_bytes(b"theirs")
    with pytest.raises(FileExistsError):
        copier.name_no_replace(str(tmp), str(final))
    assert final.read_bytes() == b"theirs" and tmp.read_bytes() == b"ours"
    other.write_bytes(b"new")
    copier.name_no_replace(str(other), str(tmp_path / "b"))
    assert (tmp_path / "b").read_bytes() == b"new" and not other.exists()


@pytest.fixture(params=["two threads", "one loop"])
def pump_kind(request, monkeypatch):
    """Big copies through the reader/writer pair, or the one loop of mid-sized files."""
    monkeypatch.setattr(pump, "PIPE_MIN", 0 if request.param == "two threads" else 1 << 40)


def test_disk_full_mid_big_copy_leaves_a_prefix_the_rerun_continues(
    tmp_path, monkeypatch, pump_kind
):
    """ENOSPC (on the writer thread too) reaches the caller; the file holds a true prefix."""
    data = os.urandom(5 << 20)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    digest = copier.xxhash.xxh3_128(data).hexdigest()
    tmp = tmp_path / f"{digest}.part"
    real_write = os.write
    budget = {"left": 2 << 20}

    def write_until_full(fd: int, chunk) -> int:
        if os.readlink(f"/proc/self/fd/{fd}") == str(tmp):
            if budget["left"] < len(chunk):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            budget["left"] -= len(chunk)
        return real_write(fd, chunk)

    monkeypatch.setattr(os, "write", write_until_full)
    fd = os.open(src, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as caught:
            copier.start_copy(fd, tmp, size=len(data), digest=digest,
                              buffer=bytearray(copier.BUFFER_SIZE))
    finally:
        os.close(fd)
    assert caught.value.errno == errno.ENOSPC
    kept = tmp.read_bytes()
    assert len(kept) == 2 << 20 and data.startswith(kept)
    monkeypatch.setattr(os, "write", real_write)
    fd = os.open(src, os.O_RDONLY)
    try:
        out, result = copier.start_copy(fd, tmp, size=len(data), digest=digest,
                                        buffer=bytearray(copier.BUFFER_SIZE))
        os.close(out)
    finally:
        os.close(fd)
    assert (result.reused, result.copied) == (2 << 20, 3 << 20)
    assert tmp.read_bytes() == data


def test_big_source_cut_short_while_copied_is_refused_and_its_copy_removed(tmp_path, pump_kind):
    data = os.urandom(4 << 20)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    digest = copier.xxhash.xxh3_128(data).hexdigest()
    tmp = tmp_path / f"{digest}.part"

    def truncate_source(n: int) -> None:  # someone cuts the source after the first MiB
        os.truncate(src, 1 << 20)

    fd = os.open(src, os.O_RDONLY)
    try:
        with pytest.raises(copier.SourceMismatch, match="ended after"):
            copier.start_copy(fd, tmp, size=len(data), digest=digest,
                              buffer=bytearray(copier.BUFFER_SIZE), on_bytes=truncate_source)
    finally:
        os.close(fd)
    assert not tmp.exists()


def test_drive_full_while_windows_are_read_back_stops_cleanly(tmp_path, small_windows, monkeypatch):
    catalog, data = _big_source(tmp_path)
    drive = tmp_path / "drive"
    drive.mkdir()
    real_write = os.write
    budget = {"left": 3 << 20}

    def write_until_full(fd: int, chunk) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".part") and len(chunk) > 100:
            if budget["left"] < len(chunk):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            budget["left"] -= len(chunk)
        return real_write(fd, chunk)

    monkeypatch.setattr(os, "write", write_until_full)
    first = pack(catalog, ["ds@1"], [drive], shipment="s1")
    assert first.drives[0].full and not first.sealed
    assert not (drive / "ds" / "1" / "big.bin").exists()
    [part] = (drive / fmt.PARTIAL_DIR).iterdir()
    assert data.startswith(part.read_bytes()) and part.stat().st_size == 3 << 20
    monkeypatch.setattr(os, "write", real_write)
    again = pack(catalog, ["ds@1"], [drive])
    assert again.sealed and again.drives[0].reused_bytes == 3 << 20
    assert verify([drive]).whole


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a step as another user")
def test_a_leftover_read_only_temporary_file_is_continued_by_its_owner():
    """A run killed after giving a copy its final read-only mode, before naming it:
    the next run (not root) must still open that file and continue it."""
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    tmp_path = Path(tempfile.mkdtemp(prefix="sneakernet-leftover-"))  # pytest's is root-only
    try:
        tmp_path.chmod(0o755)
        _continue_as(nobody, tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _continue_as(nobody: pwd.struct_passwd, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    src.chmod(0o644)
    partial = tmp_path / "partial"
    partial.mkdir()
    os.chown(partial, nobody.pw_uid, nobody.pw_gid)
    tmp = partial / "copy.tmp"
    tmp.write_bytes(data[: 1 << 20])
    os.chown(tmp, nobody.pw_uid, nobody.pw_gid)
    tmp.chmod(0o444)

    digest = xxhash.xxh3_128_hexdigest(data)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # no exec: the interpreter may live where that user cannot reach
        status = 1
        try:
            os.close(read)
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            fd = os.open(src, os.O_RDONLY)
            out, result = copier.start_copy(fd, tmp, size=len(data), digest=digest,
                                     buffer=bytearray(1 << 20))
            os.close(out)
            os.write(write, f"{result.reused} {result.copied}".encode())
            status = 0
        except BaseException as exc:
            os.write(write, repr(exc).encode())
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as said:
        told = said.read()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, told
    assert told.split() == [str(1 << 20), str(2 << 20)]
    assert tmp.read_bytes() == data


def test_a_stop_raised_after_a_small_copy_closes_its_file(tmp_path):
    """The progress callback may raise (a service's stop); the copy's descriptor must not
    leak, and its temporary file stays for the next run to continue."""
    data = os.urandom(40 << 10)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    tmp = tmp_path / "copy.tmp"

    def stop(_: int) -> None:
        raise KeyboardInterrupt

    fd = os.open(src, os.O_RDONLY)
    before = len(os.listdir("/proc/self/fd"))
    try:
        with pytest.raises(KeyboardInterrupt):
            copier.start_copy(fd, tmp, size=len(data), digest=xxhash.xxh3_128_hexdigest(data),
                              buffer=bytearray(1 << 20), on_bytes=stop)
    finally:
        os.close(fd)
    assert len(os.listdir("/proc/self/fd")) == before - 1
    assert tmp.read_bytes() == data
