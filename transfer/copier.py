"""The verified copy: the one way pack and ingest put a file somewhere.

The source is hashed while it is read; the copy goes to a temporary name, is
fsynced and (for pack) read back from the device rather than the page cache;
only when both hashes equal the expected one is the copy given its final
name, and never over an existing file. A temporary file left by a killed run
is continued: its prefix is hashed from the device, not copied again.

Many files go through a batching.Batch, which makes them durable, reads them
back and names them together, behind the copying.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from dataclasses import dataclass
from pathlib import Path

import xxhash

from sneakernet.catalog.durable import fsync_dir
from sneakernet.catalog.hashing import aligned_buffer
from sneakernet.transfer.fsio import READ_FLAGS, drop_from_cache
from sneakernet.transfer.pump import ProgressBytes, SourceMismatch, Windows, pump

BUFFER_SIZE = 1 << 20
_WRITE_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_LINK_FALLBACK = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK)


class CopyCorrupt(Exception):
    """The copy read back from the target differs from what was written."""


@dataclass(frozen=True, slots=True)
class CopyResult:
    copied: int  # bytes written by this call
    reused: int  # bytes of a previous partial copy kept


def start_copy(
    src_fd: int,
    tmp: Path | str,
    *,
    size: int,
    digest: str,
    buffer: memoryview,
    on_bytes: ProgressBytes | None = None,
    mtime_ns: int | None = None,
    mode: int | None = None,
    windows: Windows | None = None,
) -> tuple[int, CopyResult]:
    """A verified copy up to its fsync: returns the open temporary file and result.

    The bytes written hash to `digest` (else SourceMismatch, the temporary file
    removed); they are not yet durable nor read back. `mtime_ns` and `mode` are
    set on the copy. OSError leaves the temporary file for a later run.
    `windows` is told each time another `windows.every` bytes of a fresh copy
    are written (a continued copy is read back whole, after its fsync).
    """
    if size < len(buffer):
        made = _start_small(src_fd, tmp, size, digest, buffer, on_bytes, mtime_ns, mode)
        if made is not None:
            return made
        os.lseek(src_fd, 0, os.SEEK_SET)  # a killed run left its copy: continue it below
    before = os.fstat(src_fd)
    if before.st_size != size:
        raise SourceMismatch(f"size is {before.st_size} bytes, expected {size}")
    try:
        out, fresh = os.open(tmp, _WRITE_FLAGS | os.O_EXCL, 0o644), True
    except FileExistsError:  # left by a killed run: continue it
        out, fresh = _reopen_leftover(tmp), False
    if windows is not None and fresh:
        windows.start(out)
    else:
        windows = None
    try:
        reused, hasher = (0, xxhash.xxh3_128()) if fresh else _resume_prefix(out, size)
        if reused:
            os.lseek(src_fd, reused, os.SEEK_SET)
            os.lseek(out, reused, os.SEEK_SET)
        copied = pump(src_fd, out, size - reused, hasher, buffer, on_bytes, windows)
        after = os.fstat(src_fd)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise SourceMismatch("changed while it was being copied")
        if hasher.hexdigest() != digest:
            if not reused:
                raise SourceMismatch(f"content hash is {hasher.hexdigest()}, expected {digest}")
            # The kept prefix may be what differs: start over once, from scratch.
            os.ftruncate(out, 0)
            hasher = xxhash.xxh3_128()
            os.lseek(src_fd, 0, os.SEEK_SET)
            os.lseek(out, 0, os.SEEK_SET)
            copied, reused = pump(src_fd, out, size, hasher, buffer, on_bytes), 0
            if hasher.hexdigest() != digest:
                raise SourceMismatch(f"content hash is {hasher.hexdigest()}, expected {digest}")
        if mode is not None:
            os.fchmod(out, mode)
        if mtime_ns is not None:
            os.utime(out, ns=(mtime_ns, mtime_ns))
    except BaseException as exc:
        if windows is not None:  # its reads of `out` end before `out` is closed
            windows.cancel()
        os.close(out)
        if isinstance(exc, SourceMismatch):
            unlink_quietly(tmp)
        raise
    return out, CopyResult(copied, reused)


def _start_small(
    src_fd: int,
    tmp: Path | str,
    size: int,
    digest: str,
    buffer: memoryview,
    on_bytes: ProgressBytes | None,
    mtime_ns: int | None,
    mode: int | None,
) -> tuple[int, CopyResult] | None:
    """start_copy of a file that fits the buffer, in as few system calls as can be.

    Per file they are most of a small file's cost: the whole source is read
    (and one byte more, which must not come) and hashed before the temporary
    file is created, so a changed source leaves nothing to remove and needs no
    fstat. None when a killed run left a temporary file: start_copy continues it.
    """
    view = memoryview(buffer)
    n = os.readv(src_fd, [view[: size + 1]])
    if 0 < n < size:  # a short read is allowed; one more says whether the file ended
        n += os.readv(src_fd, [view[n : size + 1]])
    if n != size:
        now = os.fstat(src_fd).st_size
        raise SourceMismatch(f"size is {now} bytes, expected {size}" if now != size
                             else "changed while it was being copied")
    data = view[:size]
    got = xxhash.xxh3_128_hexdigest(data)
    if got != digest:
        raise SourceMismatch(f"content hash is {got}, expected {digest}")
    try:
        out = os.open(tmp, _WRITE_FLAGS | os.O_EXCL, 0o644)
    except FileExistsError:
        return None
    try:
        while data:
            data = data[os.write(out, data) :]
        if mode is not None:
            os.fchmod(out, mode)
        if mtime_ns is not None:
            os.utime(out, ns=(mtime_ns, mtime_ns))
    except BaseException:
        os.close(out)
        raise
    if on_bytes is not None and size:
        try:
            on_bytes(size)  # may raise a stop request: the copy stays for the next run
        except BaseException:
            os.close(out)
            raise
    return out, CopyResult(size, 0)


def _reopen_leftover(tmp: Path | str) -> int:
    """A killed run's temporary file, for writing: it may already carry its final,
    read-only mode (set before the batch names it), which only root could write."""
    try:
        return os.open(tmp, _WRITE_FLAGS, 0o644)
    except PermissionError:
        fd = os.open(tmp, READ_FLAGS)
        try:
            os.fchmod(fd, 0o600)  # ours: made by an earlier run in our own partial folder
        finally:
            os.close(fd)
        return os.open(tmp, _WRITE_FLAGS, 0o644)


def unlink_quietly(path: str | os.PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _resume_prefix(out: int, size: int) -> tuple[int, xxhash.xxh3_128]:
    """Hash what a killed run already wrote (read from the device), or start empty."""
    hasher = xxhash.xxh3_128()
    have = os.fstat(out).st_size
    if have == 0:
        return 0, hasher
    if have > size:
        os.ftruncate(out, 0)
        return 0, hasher
    drop_from_cache(out)
    return hash_range(out, 0, have, hasher, aligned_buffer(BUFFER_SIZE)), hasher


def check_readback(
    out: int, size: int, digest: str, buffer: memoryview, *, dropped: bool = False,
    start: int = 0, hasher: xxhash.xxh3_128 | None = None,
) -> None:
    """Read the whole (durable) copy back from the device; CopyCorrupt unless it matches.

    `dropped`: the caller already dropped the copy from the page cache (and may
    have asked the device for it since, with POSIX_FADV_WILLNEED). `start` and
    `hasher`: the bytes before `start` were read back already, into `hasher`.
    """
    if not dropped:
        drop_from_cache(out, start)
    if hasher is None:
        hasher = xxhash.xxh3_128()
    offset = hash_range(out, start, size, hasher, buffer)
    if offset != size or hasher.hexdigest() != digest:
        raise CopyCorrupt(
            f"read back {offset} bytes hashing to {hasher.hexdigest()}, expected {digest}"
        )


def hash_range(fd: int, start: int, end: int, hasher: xxhash.xxh3_128, buffer: memoryview) -> int:
    """Feed bytes start..end of `fd` to `hasher`; returns where the file ended (<= end)."""
    view = memoryview(buffer)
    offset = start
    while offset < end:
        n = os.preadv(fd, [view[: min(len(view), end - offset)]], offset)
        if n == 0:
            break
        hasher.update(view[:n])
        offset += n
    return offset


_RENAME_NOREPLACE = 1  # linux/fs.h
_AT_FDCWD = -100
_libc_renameat2 = None


def _rename_noreplace(tmp: str, final: str) -> bool:
    """One atomic renameat2(RENAME_NOREPLACE); False where the kernel, libc or file system
    lacks it (the caller falls back to link and unlink).

    One call instead of two, and a killed run never leaves the copy under both names.
    """
    global _libc_renameat2
    if _libc_renameat2 is None:
        try:
            _libc_renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
            _libc_renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                        ctypes.c_char_p, ctypes.c_uint]
        except (OSError, AttributeError):
            _libc_renameat2 = False
    if not _libc_renameat2:
        return False
    if _libc_renameat2(_AT_FDCWD, os.fsencode(tmp), _AT_FDCWD, os.fsencode(final),
                       _RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.EEXIST:
        raise FileExistsError(errno.EEXIST, "exists", final)
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), final)


def name_no_replace(tmp: str, final: str) -> None:
    if _rename_noreplace(tmp, final):
        return
    try:
        os.link(tmp, final)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "exists", final) from exc
        if exc.errno not in _LINK_FALLBACK:
            raise
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, "exists", final) from exc
        os.rename(tmp, final)
    else:
        os.unlink(tmp)


def link_no_replace(existing: Path, final: Path, *, durable: bool = True) -> None:
    """Make `final` a hard link to `existing`; FileExistsError if the name is taken.

    `durable=False` leaves the folder's fsync to the caller (see sync_names).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    os.link(existing, final)
    if durable:
        fsync_dir(final.parent)
