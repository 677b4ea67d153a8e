"""Content hashing: XXH3-128 over a file's bytes, read the lean way.

The per-file fixed cost (open, stat, close) dominates small files, so the
small path is one read of the whole file; big files stream through a reused
buffer with readv so nothing grows with the file. The xxhash module releases
the GIL while it hashes, so worker threads overlap reading and hashing.
"""

from __future__ import annotations

import mmap
import os
import stat
from typing import NamedTuple

import xxhash

HASHER = 1  # id of the function below (XXH3-128); stored with every cached hash
HASH_NAME = "xxh128"
HASH_HEX_DIGITS = 32
SMALL_FILE = 1 << 20
BUFFER_SIZE = 256 << 10  # fits L2; measured 3x faster than 4 MiB in a fresh process
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_OPEN_FLAGS |= getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in must not hang the open


def aligned_buffer(size: int = BUFFER_SIZE) -> memoryview:
    """A page-aligned, writable buffer for reading and writing file bytes.

    The kernel copies page-cache pages (page-aligned) to and from user memory
    with `rep movsb`. On this machine's AMD EPYC that copy runs at a third of
    its speed when the user buffer starts 8 or 16 bytes past a page boundary
    (the two addresses alias in the low 12 bits), which is where malloc puts a
    big bytearray; from offset 32 on, and at 0, it runs at full speed. 512 MiB
    from page cache into a 1 MiB buffer: 0.225-0.33 s at offsets 8 and 16,
    0.066-0.080 s at 0, 32, 64 ... 4080 (`bench/buffer_alignment.py`).
    Anonymous private mmap memory starts on a page.
    """
    return memoryview(mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS))


# A file's mtime in ns need not fit the catalog's BIGINT (nor Arrow's int64): one file
# whose clock said 2300 (ext4 keeps times up to 2446) failed the whole scan with an
# OverflowError. Such a time is kept as the nearest end of the range; a file showing an
# end is never trusted to the hash cache (hashpass.plan, rescan), since two such times
# would look the same.
MTIME_NS_MIN, MTIME_NS_MAX = -(2**63), 2**63 - 1


def clamp_mtime_ns(value: int) -> int:
    return max(MTIME_NS_MIN, min(MTIME_NS_MAX, value))


def trusted_mtime_sql(column: str) -> str:
    """SQL: `column` holds an mtime the hash cache may vouch for (not an end of the range)."""
    return f"{column} > {MTIME_NS_MIN} AND {column} < {MTIME_NS_MAX}"


class ChangedWhileReading(Exception):
    """The file's size or mtime moved while we read it: the hash is not trustworthy."""


class NotRegularFile(Exception):
    """The path is no longer a regular file (replaced by a FIFO, a device, a folder)."""


class FileHash(NamedTuple):
    """A tuple, not a frozen dataclass: one is made per file read, and its __init__ costs."""

    hash: str
    size: int
    mtime_ns: int
    inode: int
    device: int


def hash_bytes(data: bytes | memoryview) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def hash_file(
    path: str | bytes,
    buffer: memoryview | None = None,
    expected: tuple[int, int] | None = None,
) -> FileHash:
    """Hash one regular file, proving it did not change while it was read.

    `expected` is (size, mtime_ns) from a recent lstat: for a small file it
    saves a stat call on the hot path. If the file no longer matches it, the
    file is stat-ed and read again the careful way.
    Raises OSError for I/O problems, ChangedWhileReading, or NotRegularFile.
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        if expected is not None and expected[0] <= SMALL_FILE:
            before = None
            digest, read = _hash_small(fd, expected[0], buffer)
        else:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise NotRegularFile(path)
            if before.st_size <= SMALL_FILE:
                digest, read = _hash_small(fd, before.st_size, buffer)
            else:
                digest, read = _hash_stream(
                    fd, buffer if buffer is not None else aligned_buffer(), before.st_size
                )
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if before is None:
        if not stat.S_ISREG(after.st_mode):
            raise NotRegularFile(path)
        assert expected is not None
        size, mtime_ns = expected
        if read != size or after.st_size != size or (
            after.st_mtime_ns != mtime_ns and clamp_mtime_ns(after.st_mtime_ns) != mtime_ns
        ):
            return hash_file(path, buffer)  # not as the walk saw it: look again, carefully
        before = after
    if (
        read != before.st_size
        or after.st_size != before.st_size
        or after.st_mtime_ns != before.st_mtime_ns
    ):
        raise ChangedWhileReading(path)
    mtime_ns = before.st_mtime_ns
    if not MTIME_NS_MIN <= mtime_ns <= MTIME_NS_MAX:
        mtime_ns = clamp_mtime_ns(mtime_ns)
    return FileHash(digest, before.st_size, mtime_ns, before.st_ino, before.st_dev)


def _hash_small(fd: int, size: int, buffer: memoryview | None) -> tuple[str, int]:
    if buffer is not None and size < len(buffer):
        return _hash_into(fd, size, memoryview(buffer))
    # Asking for one byte more than expected tells a grown file from a whole one.
    data = os.read(fd, size + 1)
    if len(data) == size + 1:
        return "", len(data)  # grew while we looked: the caller sees the size mismatch
    if len(data) < size and data:
        return _hash_rest(fd, data, size)
    return xxhash.xxh3_128_hexdigest(data), len(data)


def _hash_into(fd: int, size: int, view: memoryview) -> tuple[str, int]:
    """`_hash_small` into the caller's buffer: no allocation (and no fresh pages) per file."""
    total = n = os.readv(fd, [view[: size + 1]])
    # Only a short read goes on: a read that ends at `size` needs no second call to see
    # EOF, the fstat after it tells a file that grew or was rewritten since (a syscall
    # less per file, about a tenth of a small file's cost here).
    while n and total < size:
        n = os.readv(fd, [view[total : size + 1]])
        total += n
    if total > size:
        return "", total  # grew while we looked: the caller sees the size mismatch
    return xxhash.xxh3_128_hexdigest(view[:total]), total


def _hash_rest(fd: int, head: bytes, size: int) -> tuple[str, int]:
    hasher = xxhash.xxh3_128(head)
    total = len(head)
    # Never read past size + 1: a file growing faster than we read must not hold the scan.
    while total <= size and (chunk := os.read(fd, min(BUFFER_SIZE, size + 1 - total))):
        hasher.update(chunk)
        total += len(chunk)
    return hasher.hexdigest(), total


def _hash_stream(fd: int, buffer: memoryview, size: int) -> tuple[str, int]:
    hasher = xxhash.xxh3_128()
    view = memoryview(buffer)
    total = 0
    readv = os.readv
    update = hasher.update
    # Stop one byte past the expected size: a growing file is reported, not chased.
    while total <= size and (n := readv(fd, [buffer])):
        update(view[:n])
        total += n
    return hasher.hexdigest(), total
