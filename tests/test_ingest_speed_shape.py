"""The shortcuts that make ingest of many small files fast keep ingest's rules.

Targets are checked against one listing per store folder, the drive's regular
files come from one listing per drive folder, and the hash cache takes each
copy's fstat on the batch's thread: a name taken after a listing is still a
clash (never replaced), a listing that lies cannot get a FIFO or a symlink
opened, folders too big to list fall back to a look-up per name, and the hash
cache holds the store files' own inodes.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.scan import scan
from sneakernet.transfer import fsio, placement
from sneakernet.transfer.fsio import FolderCache, unsafe_relative_path
from sneakernet.transfer.ingest import ingest
from sneakernet.transfer.pack import pack


@pytest.fixture
def small_drive(tmp_path: Path) -> Path:
    """A sealed drive carrying `small@1`: 3 folders of 5 small files each."""
    src = tmp_path / "src"
    for folder in range(3):
        (src / f"f{folder}").mkdir(parents=True)
        for n in range(5):
            (src / f"f{folder}" / f"{n}.bin").write_bytes(os.urandom(100 + 977 * n))
    site_a, drive = Catalog(tmp_path / "a.duckdb"), tmp_path / "drive"
    drive.mkdir()
    scan(site_a, src, "small")
    packed = pack(site_a, ["small@1"], [drive], shipment="s", to_site="B")
    assert packed.sealed and not packed.problems
    return drive


def _store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    store.mkdir()
    return store


def _plant(store: Path, relative: str, data: bytes) -> Path:
    path = store / "small" / "1" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_name_taken_after_the_folder_was_listed_is_a_clash_not_replaced(
    small_drive, tmp_path, monkeypatch
):
    store = _store(tmp_path)
    planted = _plant(store, "f1/2.bin", b"someone else's")
    # The listing misses it, as if it was made after the folder was listed.
    monkeypatch.setattr(placement, "folder_names", lambda folder: set())
    result = ingest(Catalog(tmp_path / "b.duckdb"), [small_drive], store)
    assert [(p.outcome, p.path) for p in result.problems] == [("clash", "small/1/f1/2.bin")]
    assert planted.read_bytes() == b"someone else's"
    assert result.drives[0].copied_files == 14 and not result.registered


@pytest.mark.parametrize("listing_max", [0, 2])
def test_folders_too_big_to_list_are_looked_up_name_by_name(
    small_drive, tmp_path, monkeypatch, listing_max
):
    monkeypatch.setattr(fsio, "LISTING_MAX", listing_max)
    store = _store(tmp_path)
    planted = _plant(store, "f0/4.bin", b"x")
    site_b = Catalog(tmp_path / "b.duckdb")
    result = ingest(site_b, [small_drive], store)
    assert [(p.outcome, p.path) for p in result.problems] == [("clash", "small/1/f0/4.bin")]
    assert planted.read_bytes() == b"x"
    planted.chmod(0o644)
    planted.unlink()
    again = ingest(site_b, [small_drive], store)  # the rest is in the store, proven
    assert again.registered == ["small@1"] and not again.problems
    assert again.drives[0].copied_files == 1 and again.drives[0].present_files == 14


def test_the_hash_cache_holds_the_store_files_inodes(small_drive, tmp_path):
    store = _store(tmp_path)
    site_b = Catalog(tmp_path / "b.duckdb")
    result = ingest(site_b, [small_drive], store)
    assert result.registered == ["small@1"]
    with site_b.read() as con:
        cached = {(d, i): (s, m, h) for d, i, s, m, h in con.execute(
            "SELECT device, inode, size, mtime_ns, hash FROM hash_cache").fetchall()}
    with site_b.read() as con:
        entries = dict(con.execute(
            "SELECT path, hash FROM entries WHERE dataset = 'small' AND kind = 'file'"
        ).fetchall())
    assert len(entries) == 15
    for path, digest in entries.items():
        info = os.lstat(store / "small" / "1" / path)
        assert info.st_mode & 0o222 == 0
        assert cached[(info.st_dev, info.st_ino)] == (info.st_size, info.st_mtime_ns, digest)


def test_a_listing_that_lies_still_gets_no_fifo_or_symlink_opened(tmp_path, monkeypatch):
    root = tmp_path / "drive"
    (root / "d").mkdir(parents=True)
    (root / "d" / "file").write_bytes(b"ok")
    os.mkfifo(root / "d" / "fifo")
    (root / "d" / "link").symlink_to(root / "d" / "file")
    honest = FolderCache(root, listed=True)
    try:
        assert honest.regular is None
        fd = honest.open("d/file")
        os.close(fd)
        assert honest.regular == {"file"}
        for name in ("fifo", "link"):
            with pytest.raises(OSError) as caught:
                honest.open(f"d/{name}")
            assert caught.value.errno == errno.EINVAL
    finally:
        honest.close()
    # Swapped after the listing: the open does not follow the link, the fstat refuses the FIFO.
    monkeypatch.setattr(fsio, "regular_names", lambda folder: {"file", "fifo", "link"})
    lied_to = FolderCache(root, listed=True)
    try:
        with pytest.raises(OSError) as caught:
            lied_to.open("d/fifo")
        assert caught.value.errno == errno.EINVAL
        with pytest.raises(OSError) as caught:
            lied_to.open("d/link")
        assert caught.value.errno == errno.ELOOP
    finally:
        lied_to.close()


@pytest.mark.parametrize(
    ("text", "unsafe"),
    [
        ("a/b.bin", False), (".hidden/x", False), ("a/.b", False), ("a/..b/c", False),
        ("a..b", False), ("a./b", False), ("a", False),
        ("", True), ("/a", True), ("a//b", True), ("a/", True), (".", True), ("..", True),
        ("./a", True), ("../a", True), ("a/.", True), ("a/..", True), ("a/./b", True),
        ("a/../b", True), ("a\\b", True), ("a\x00b", True),
    ],
)
def test_unsafe_relative_path_fast_path_agrees_with_the_split(text, unsafe):
    assert (unsafe_relative_path(text) is not None) == unsafe


def test_every_read_lands_in_a_page_aligned_buffer(tmp_path: Path, monkeypatch):
    """The kernel's page-cache copy into a buffer 8 or 16 bytes past a page boundary
    (malloc puts a big bytearray at 16) ran at a third of its speed here: scan, pack,
    verify and ingest read into buffers that start on a page."""
    import ctypes

    from sneakernet.catalog.hashing import aligned_buffer
    from sneakernet.transfer.verify import verify

    starts: list[int] = []

    def watching(real):
        def call(fd, buffers, *rest):
            view = memoryview(buffers[0])
            if view.nbytes >= 4096:  # a short read's continuation slices the same buffer
                starts.append(ctypes.addressof(ctypes.c_char.from_buffer(view)))
            return real(fd, buffers, *rest)

        return call

    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(9 << 20))  # the two-thread copy
    (src / "mid.bin").write_bytes(os.urandom(3 << 20))
    (src / "small.bin").write_bytes(os.urandom(5000))
    monkeypatch.setattr(os, "readv", watching(os.readv))
    monkeypatch.setattr(os, "preadv", watching(os.preadv))
    site_a, drive = Catalog(tmp_path / "a.duckdb"), tmp_path / "drive"
    drive.mkdir()
    assert scan(site_a, src, "d").hashed_files == 3
    assert pack(site_a, ["d@1"], [drive], shipment="s", to_site="B").sealed
    assert verify([drive]).whole
    done = ingest(Catalog(tmp_path / "b.duckdb"), [drive], _store(tmp_path))
    assert not done.problems and done.registered
    assert len(starts) > 20
    assert [hex(s) for s in starts if s % 4096] == []
    view = aligned_buffer(1 << 20)
    assert len(view) == 1 << 20 and not view.readonly
