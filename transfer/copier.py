"""The verified copy: the one way pack and ingest put a file somewhere.

The source is hashed while it is read; the copy goes to a temporary name, is
fsynced and (for pack) read back from the device rather than the page cache;
only when both hashes equal the expected one is the copy given its final
name, and never over an existing file. A temporary file left by a killed run
is continued: its prefix is hashed from the device, not copied again.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import xxhash

from sneakernet.transfer.fsio import drop_from_cache, fsync_dir

BUFFER_SIZE = 1 << 20
SYNC_EVERY = 1 << 30  # a power cut loses at most this much of a long copy's prefix
_WRITE_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class SourceMismatch(Exception):
    """The source's bytes are not the expected ones (changed since the scan, or corrupt)."""


class CopyCorrupt(Exception):
    """The copy read back from the target differs from what was written."""


@dataclass(frozen=True, slots=True)
class CopyResult:
    copied: int  # bytes written by this call
    reused: int  # bytes of a previous partial copy kept


ProgressBytes = Callable[[int], None]


def copy_verified(
    src_fd: int,
    tmp: Path,
    *,
    size: int,
    digest: str,
    buffer: bytearray,
    readback: bool,
    on_bytes: ProgressBytes | None = None,
) -> CopyResult:
    """Copy `size` bytes from `src_fd` to `tmp`, proving they hash to `digest`.

    Raises SourceMismatch or CopyCorrupt (the temporary file is then removed),
    or OSError from the file system (ENOSPC, EIO: the temporary file is kept
    so that a later run can continue it).
    """
    before = os.fstat(src_fd)
    if before.st_size != size:
        raise SourceMismatch(f"size is {before.st_size} bytes, expected {size}")
    out = os.open(tmp, _WRITE_FLAGS, 0o644)
    try:
        reused, hasher = _resume_prefix(out, size)
        written_hasher = hasher.copy()
        os.lseek(src_fd, reused, os.SEEK_SET)
        os.lseek(out, reused, os.SEEK_SET)
        copied = _pump(src_fd, out, size - reused, written_hasher, buffer, on_bytes)
        after = os.fstat(src_fd)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise SourceMismatch("changed while it was being copied")
        if written_hasher.hexdigest() != digest:
            if reused:  # the kept prefix may be what differs: start over once, from scratch
                os.ftruncate(out, 0)
                return copy_verified_fresh(
                    src_fd, tmp, out, size, digest, buffer, readback, on_bytes
                )
            raise SourceMismatch(f"content hash is {written_hasher.hexdigest()}, expected {digest}")
        os.fsync(out)
        if readback:
            _check_readback(out, reused, size, hasher, digest, buffer)
    except (SourceMismatch, CopyCorrupt):
        os.close(out)
        out = -1
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if out >= 0:
            os.close(out)
    return CopyResult(copied, reused)


def copy_verified_fresh(
    src_fd: int,
    tmp: Path,
    out: int,
    size: int,
    digest: str,
    buffer: bytearray,
    readback: bool,
    on_bytes: ProgressBytes | None,
) -> CopyResult:
    """The second attempt after a continued copy did not match: everything from byte 0."""
    hasher = xxhash.xxh3_128()
    os.lseek(src_fd, 0, os.SEEK_SET)
    os.lseek(out, 0, os.SEEK_SET)
    copied = _pump(src_fd, out, size, hasher, buffer, on_bytes)
    if hasher.hexdigest() != digest:
        raise SourceMismatch(f"content hash is {hasher.hexdigest()}, expected {digest}")
    os.fsync(out)
    if readback:
        _check_readback(out, 0, size, xxhash.xxh3_128(), digest, buffer)
    return CopyResult(copied, 0)


def _resume_prefix(out: int, size: int) -> tuple[int, xxhash.xxh3_128]:
    """Hash what a killed run already wrote (read from the device), or start empty."""
    hasher = xxhash.xxh3_128()
    have = os.fstat(out).st_size
    if have == 0 or have > size:
        os.ftruncate(out, 0)
        return 0, hasher
    drop_from_cache(out)
    view = memoryview(bytearray(BUFFER_SIZE))
    offset = 0
    while offset < have:
        n = os.preadv(out, [view[: min(BUFFER_SIZE, have - offset)]], offset)
        if n == 0:
            break
        hasher.update(view[:n])
        offset += n
    return offset, hasher


def _pump(
    src: int,
    out: int,
    count: int,
    hasher: xxhash.xxh3_128,
    buffer: bytearray,
    on_bytes: ProgressBytes | None,
) -> int:
    view = memoryview(buffer)
    done = since_sync = 0
    while done < count:
        n = os.readv(src, [view[: min(len(view), count - done)]])
        if n == 0:
            raise SourceMismatch(f"ended after {done} of {count} bytes")
        chunk = view[:n]
        hasher.update(chunk)
        while chunk:
            chunk = chunk[os.write(out, chunk) :]
        done += n
        since_sync += n
        if since_sync >= SYNC_EVERY:
            os.fdatasync(out)
            since_sync = 0
        if on_bytes is not None:
            on_bytes(n)
    if os.readv(src, [view[:1]]):
        raise SourceMismatch("is longer than recorded")
    return done


def _check_readback(
    out: int, start: int, size: int, hasher: xxhash.xxh3_128, digest: str, buffer: bytearray
) -> None:
    drop_from_cache(out)
    view = memoryview(buffer)
    offset = start
    while offset < size:
        n = os.preadv(out, [view[: min(len(view), size - offset)]], offset)
        if n == 0:
            break
        hasher.update(view[:n])
        offset += n
    if offset != size or hasher.hexdigest() != digest:
        raise CopyCorrupt(
            f"read back {offset} bytes hashing to {hasher.hexdigest()}, expected {digest}"
        )


def place(tmp: Path, final: Path) -> None:
    """Give a verified temporary file its final name, never replacing an existing file.

    A hard link fails atomically if the name exists; file systems without
    hard links (exFAT, FAT32) get an existence check and a rename instead.
    Raises FileExistsError when the name is taken.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(tmp, final)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "exists", str(final)) from exc
        if exc.errno not in (
            errno.EPERM,
            errno.ENOTSUP,
            errno.EOPNOTSUPP,
            errno.EXDEV,
            errno.EMLINK,
        ):
            raise
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, "exists", str(final)) from exc
        os.rename(tmp, final)
    else:
        os.unlink(tmp)
    fsync_dir(final.parent)


def link_no_replace(existing: Path, final: Path) -> None:
    """Make `final` a hard link to `existing`; FileExistsError if the name is taken."""
    final.parent.mkdir(parents=True, exist_ok=True)
    os.link(existing, final)
    fsync_dir(final.parent)
