"""The verified copy: the one way pack and ingest put a file somewhere.

The source is hashed while it is read; the copy goes to a temporary name, is
fsynced and (for pack) read back from the device rather than the page cache;
only when both hashes equal the expected one is the copy given its final
name, and never over an existing file. A temporary file left by a killed run
is continued: its prefix is hashed from the device, not copied again.

Many small files go through a `Batch`: each is copied to its temporary name
(`start_copy`), then the whole batch is made durable with one `syncfs` (one
journal commit instead of one per file), read back, named, and the names made
durable with one more. A batch is finished in a background thread (one per
drive) while the next one is copied, so the device writes and reads back while
the CPU copies. The rule is the same as for one file: nothing gets its final
name before its bytes are durable and (for pack) proven from the device.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import xxhash

from sneakernet.transfer.fsio import drop_from_cache, fsync_dir

BUFFER_SIZE = 1 << 20
SYNC_EVERY = 1 << 30  # a power cut loses at most this much of a long copy's prefix
BATCH_FILES = 256  # copies made durable together (open descriptors: two batches' worth)
BATCH_BYTES = 128 << 20  # ... and their bytes: dirty data waiting for one sync
PREFETCH_MAX = 8 << 20  # read-back of files up to this size is queued up front (WILLNEED)
_WRITE_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_LINK_FALLBACK = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK)


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
    out, result = start_copy(
        src_fd, tmp, size=size, digest=digest, buffer=buffer, on_bytes=on_bytes
    )
    try:
        os.fsync(out)
        if readback:
            check_readback(out, size, digest, buffer)
    except CopyCorrupt:
        os.close(out)
        out = -1
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if out >= 0:
            os.close(out)
    return result


def start_copy(
    src_fd: int,
    tmp: Path | str,
    *,
    size: int,
    digest: str,
    buffer: bytearray,
    on_bytes: ProgressBytes | None = None,
    mtime_ns: int | None = None,
    mode: int | None = None,
) -> tuple[int, CopyResult]:
    """The copy of copy_verified up to its fsync: returns the open temporary file and result.

    The bytes written hash to `digest` (else SourceMismatch, the temporary file
    removed); they are not yet durable nor read back. `mtime_ns` and `mode` are
    set on the copy. OSError leaves the temporary file for a later run.
    """
    before = os.fstat(src_fd)
    if before.st_size != size:
        raise SourceMismatch(f"size is {before.st_size} bytes, expected {size}")
    try:
        out, fresh = os.open(tmp, _WRITE_FLAGS | os.O_EXCL, 0o644), True
    except FileExistsError:  # left by a killed run: continue it
        out, fresh = os.open(tmp, _WRITE_FLAGS, 0o644), False
    try:
        reused, hasher = (0, xxhash.xxh3_128()) if fresh else _resume_prefix(out, size)
        if reused:
            os.lseek(src_fd, reused, os.SEEK_SET)
            os.lseek(out, reused, os.SEEK_SET)
        copied = _pump(src_fd, out, size - reused, hasher, buffer, on_bytes)
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
            copied, reused = _pump(src_fd, out, size, hasher, buffer, on_bytes), 0
            if hasher.hexdigest() != digest:
                raise SourceMismatch(f"content hash is {hasher.hexdigest()}, expected {digest}")
        if mode is not None:
            os.fchmod(out, mode)
        if mtime_ns is not None:
            os.utime(out, ns=(mtime_ns, mtime_ns))
    except SourceMismatch:
        os.close(out)
        _unlink(tmp)
        raise
    except BaseException:
        os.close(out)
        raise
    return out, CopyResult(copied, reused)


def _unlink(path: str | os.PathLike) -> None:
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
    if count < len(view):  # the common small file: one read, one write, one read for EOF
        n = os.readv(src, [view[: count + 1]])
        if n > count:
            raise SourceMismatch("is longer than recorded")
        if n < count and os.readv(src, [view[n : count + 1]]) + n != count:
            raise SourceMismatch(f"ended after {n} of {count} bytes")
        if count:
            chunk = view[:count]
            hasher.update(chunk)
            while chunk:
                chunk = chunk[os.write(out, chunk) :]
            if on_bytes is not None:
                on_bytes(count)
        return count
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


def check_readback(
    out: int, size: int, digest: str, buffer: bytearray, *, dropped: bool = False
) -> None:
    """Read the whole (durable) copy back from the device; CopyCorrupt unless it matches.

    `dropped`: the caller already dropped the copy from the page cache (and may
    have asked the device for it since, with POSIX_FADV_WILLNEED).
    """
    if not dropped:
        drop_from_cache(out)
    hasher = xxhash.xxh3_128()
    view = memoryview(buffer)
    offset = 0
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


def place(tmp: Path, final: Path, *, durable: bool = True) -> None:
    """Give a verified temporary file its final name, never replacing an existing file.

    A hard link fails atomically if the name exists; file systems without
    hard links (exFAT, FAT32) get an existence check and a rename instead.
    Raises FileExistsError when the name is taken. `durable=False` leaves the
    folder's fsync to the caller (a Batch syncs the file system once).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    _name(str(tmp), str(final))
    if durable:
        fsync_dir(final.parent)


def _name(tmp: str, final: str) -> None:
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


# --- many files, one sync --------------------------------------------------------------

_libc_syncfs = None


def syncfs(fd: int) -> bool:
    """Flush the whole file system holding `fd` (data and metadata); False if unsupported.

    Linux reports writeback errors of any file of the file system here (5.8+).
    """
    global _libc_syncfs
    if _libc_syncfs is None:
        try:
            _libc_syncfs = ctypes.CDLL(None, use_errno=True).syncfs
            _libc_syncfs.argtypes = [ctypes.c_int]
        except (OSError, AttributeError):
            _libc_syncfs = False
    if not _libc_syncfs or not _kernel_reports_syncfs_errors():
        return False
    if _libc_syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return True


def _kernel_reports_syncfs_errors() -> bool:
    """syncfs returns writeback errors since Linux 5.8; before, fall back to fsync per file."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 8)


@dataclass(slots=True)
class Pending:
    """A copy written to its temporary name, waiting for its batch's sync and read-back."""

    fd: int
    tmp: str
    final: str
    size: int
    digest: str
    result: CopyResult
    token: object  # the caller's, given back with the outcome
    error: BaseException | None = None  # None once placed under its final name


class Batch:
    """Copies made durable, read back and named together; finished in a background thread.

    `add` pending copies; when `full`, `submit` hands them to the finisher (at
    most one batch in flight) and returns the previous batch's outcomes. `drain`
    waits for the last. `close` (always call it) closes the descriptors of
    copies never finished; their temporary files stay for a re-run to continue.
    """

    def __init__(self, folder: Path, *, readback: bool, background: bool = True) -> None:
        self.folder, self.readback = folder, readback
        self.pending: list[Pending] = []
        self.bytes = 0
        self._buffer = bytearray(BUFFER_SIZE)
        self._made: set[str] = set()
        self._pool = ThreadPoolExecutor(1, "sneakernet-sync") if background else None
        self._inflight: Future | None = None
        self._lock = threading.Lock()

    @property
    def full(self) -> bool:
        return len(self.pending) >= BATCH_FILES or self.bytes >= BATCH_BYTES

    def add(self, item: Pending) -> None:
        self.pending.append(item)
        self.bytes += item.size

    def submit(self) -> list[Pending]:
        """Start finishing the pending copies; the outcomes of the batch before them."""
        done = self._wait()
        items, self.pending, self.bytes = self.pending, [], 0
        if items:
            if self._pool is None:
                return done + self._finish(items)
            self._inflight = self._pool.submit(self._finish, items)
        return done

    def drain(self) -> list[Pending]:
        """Finish everything pending; the outcomes of every batch not yet returned."""
        done = self.submit()
        return done + self._wait()

    def close(self) -> None:
        try:
            self._wait()
        except BaseException:  # closing after an error, which is already on its way up
            pass
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            for item in self.pending:
                os.close(item.fd)
            self.pending = []

    def _wait(self) -> list[Pending]:
        future, self._inflight = self._inflight, None
        return future.result() if future is not None else []

    def _finish(self, items: list[Pending]) -> list[Pending]:
        try:
            self._make_durable(items)
            if self.readback:
                self._read_back(items)
        finally:
            for item in items:
                os.close(item.fd)
        named = []
        for item in items:
            if item.error is None:
                try:
                    self._place(item)
                    named.append(item)
                except OSError as exc:
                    item.error = exc
            elif isinstance(item.error, CopyCorrupt):
                _unlink(item.tmp)
        if named:
            self._sync_names(named)
        return items

    def _make_durable(self, items: list[Pending]) -> None:
        if len(items) > 1:
            try:
                if syncfs(items[0].fd):
                    return
            except OSError:
                pass  # find out which file it was, one fsync at a time
        for item in items:
            try:
                os.fsync(item.fd)
            except OSError as exc:
                item.error = exc

    def _read_back(self, items: list[Pending]) -> None:
        small = [i for i in items if i.error is None and 0 < i.size <= PREFETCH_MAX]
        for item in small:
            drop_from_cache(item.fd)
        if len(small) > 1 and hasattr(os, "POSIX_FADV_WILLNEED"):
            for item in small:  # the device reads them all at once: one queue, not one by one
                os.posix_fadvise(item.fd, 0, 0, os.POSIX_FADV_WILLNEED)
        for item in items:
            if item.error is None:
                try:
                    dropped = 0 < item.size <= PREFETCH_MAX
                    check_readback(item.fd, item.size, item.digest, self._buffer, dropped=dropped)
                except (CopyCorrupt, OSError) as exc:
                    item.error = exc

    def _place(self, item: Pending) -> None:
        parent = os.path.dirname(item.final)
        if parent not in self._made:
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)
        _name(item.tmp, item.final)

    def _sync_names(self, items: list[Pending]) -> None:
        parents = [os.path.dirname(i.final) for i in items]
        for parent, exc in sync_names(self.folder, parents):
            for item in items:
                if os.path.dirname(item.final) == parent:
                    item.error = exc


def sync_names(folder: Path, parents: list[str]) -> list[tuple[str, OSError]]:
    """Make new names in `parents` durable: one syncfs of `folder`'s file system, or an
    fsync of each folder. Returns the folders whose fsync failed, with the error."""
    if len(parents) > 1:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            if syncfs(fd):
                return []
        except OSError:
            pass  # find out which folder it was, one fsync at a time
        finally:
            os.close(fd)
    failed = []
    for parent in dict.fromkeys(parents):
        try:
            fsync_dir(Path(parent))
        except OSError as exc:
            failed.append((parent, exc))
    return failed
