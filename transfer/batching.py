"""Many copies made durable, read back and named together, behind the copying.

Small files: each is copied to its temporary name (copier.start_copy), then a
whole batch is made durable with one `syncfs` (one journal commit instead of
one per file), read back, named, and the names made durable with one more. A
batch is finished in a background thread (one per drive) while the next one
is copied, so the device writes and reads back while the CPU copies.

Big files: a fresh copy is read back in windows while it is written (ReadBack),
on the same thread, so a big file is not copied first and read back after; only
its last window is read after its fsync. The rule is the one of a single file:
nothing gets its final name before its bytes are durable and (for pack) proven
from the device.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import xxhash

from sneakernet.catalog.durable import fsync_dir
from sneakernet.catalog.hashing import aligned_buffer
from sneakernet.transfer import copier
from sneakernet.transfer.copier import CopyCorrupt, CopyResult
from sneakernet.transfer.fsio import drop_from_cache

BATCH_FILES = 256  # copies made durable together (open descriptors: two batches' worth)
BATCH_BYTES = 128 << 20  # ... and their bytes: dirty data waiting for one sync
PREFETCH_MAX = 8 << 20  # read-back of files up to this size is queued up front (WILLNEED)
WINDOW = 32 << 20  # a big copy is read back this much at a time while it is written
_SYNC_RANGE = 1 | 2 | 4  # SYNC_FILE_RANGE_WAIT_BEFORE | _WRITE | _WAIT_AFTER

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
    windows: ReadBack | None = None  # its read-back so far, if it was read while written
    stat: os.stat_result | None = None  # of the copy, when the batch keeps it (keep_stat)


class Batch:
    """Copies made durable, read back and named together; finished in a background thread.

    `add` pending copies; when `full`, `submit` hands them to the finisher (at
    most one batch in flight) and returns the previous batch's outcomes. `drain`
    waits for the last. `close` (always call it) closes the descriptors of
    copies never finished; their temporary files stay for a re-run to continue.
    """

    def __init__(
        self, folder: Path, *, readback: bool, background: bool = True, keep_stat: bool = False
    ) -> None:
        # keep_stat: each copy's fstat is taken before it is closed, on the batch's
        # thread, for a caller that records its inode (no lstat per file afterwards).
        self.folder, self.readback, self.keep_stat = folder, readback, keep_stat
        self.pending: list[Pending] = []
        self.bytes = 0
        self._buffer = aligned_buffer(copier.BUFFER_SIZE)
        self._made: set[str] = set()
        self._pool = ThreadPoolExecutor(1, "sneakernet-sync") if background else None
        self._inflight: Future | None = None
        self._lock = threading.Lock()

    def windows(self, size: int) -> ReadBack | None:
        """A ReadBack for a copy of `size` bytes, if it is big enough to be read in windows."""
        if self._pool is None or not self.readback or size < 2 * WINDOW:
            return None
        return ReadBack(self._pool, self._buffer)

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
            if self.keep_stat:
                for item in items:
                    if item.error is None:
                        try:
                            item.stat = os.fstat(item.fd)
                        except OSError as exc:
                            item.error = exc
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
                copier.unlink_quietly(item.tmp)
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
                    if item.windows is not None and item.windows.fd >= 0:
                        item.windows.finish(item.size, item.digest)
                        continue
                    dropped = 0 < item.size <= PREFETCH_MAX
                    copier.check_readback(
                        item.fd, item.size, item.digest, self._buffer, dropped=dropped
                    )
                except (CopyCorrupt, OSError) as exc:
                    item.error = exc

    def _place(self, item: Pending) -> None:
        parent = os.path.dirname(item.final)
        if parent not in self._made:
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)
        copier.name_no_replace(item.tmp, item.final)

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


class ReadBack:
    """The read-back of one big fresh copy, a window at a time, while it is written.

    Each window, once written, is pushed to the device and waited for
    (sync_file_range; fdatasync where that is missing), dropped from the page
    cache and read back on the batch's thread, while the copying thread writes
    the next. `finish`, after the file's fsync, reads the rest and compares.
    Windows run in order on one thread, before the batch holding the copy.
    """

    def __init__(self, pool: ThreadPoolExecutor, buffer: memoryview) -> None:
        self.every = WINDOW
        self.fd = -1
        self.done = 0  # bytes read back so far
        self.hasher = xxhash.xxh3_128()
        self._pool, self._buffer = pool, buffer
        self._futures: list[Future] = []

    def start(self, out: int) -> None:
        self.fd = out

    def written(self, end: int) -> None:
        self._futures.append(self._pool.submit(self._window, end))

    def cancel(self) -> None:
        """Wait for the windows in flight (their outcome no longer matters)."""
        for future in self._futures:
            with contextlib.suppress(Exception):  # the copy failed: its error is on its way
                future.result()
        self.fd = -1

    def finish(self, size: int, digest: str) -> None:
        """After the fsync: the rest read back; CopyCorrupt (or OSError) unless all matches."""
        for future in self._futures:
            future.result()
        copier.check_readback(self.fd, size, digest, self._buffer, start=self.done,
                              hasher=self.hasher)

    def _window(self, end: int) -> None:
        start = self.done
        _push(self.fd, start, end - start)
        drop_from_cache(self.fd, start, end - start)
        self.done = copier.hash_range(self.fd, start, end, self.hasher, self._buffer)
        if self.done != end:
            raise CopyCorrupt(f"read back {self.done} bytes of the first {end}")


_libc_sync_range = None


def _push(fd: int, start: int, length: int) -> None:
    """Write bytes start..start+length of `fd` to the device and wait for them."""
    global _libc_sync_range
    if _libc_sync_range is None:
        try:
            _libc_sync_range = ctypes.CDLL(None, use_errno=True).sync_file_range
            _libc_sync_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                         ctypes.c_uint]
        except (OSError, AttributeError):
            _libc_sync_range = False
    if _libc_sync_range:
        if _libc_sync_range(fd, start, length, _SYNC_RANGE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL, errno.ESPIPE, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code))  # a write error: never swallowed
    os.fdatasync(fd)  # no sync_file_range for this file: the whole file, then
