"""Moving the bytes of one big copy: read and hash on one thread, write on another.

Per MiB, writing (the page cache's pages, on tmpfs or any cache) costs about
as much as reading and hashing together, and a drive writes while the
source is read: with the two on their own threads (the system calls and the
hash release the GIL) a big copy takes about the time of the slower one,
not of both. Two buffers go round: one being written while the next is read.
Copies under PIPE_MIN (and continued small ones) keep to one loop on one thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Protocol

import xxhash

from sneakernet.catalog.hashing import aligned_buffer

SYNC_EVERY = 1 << 30  # a power cut loses at most this much of a long copy's prefix
PIPE_MIN = 8 << 20  # below this a second thread costs more than it saves: one loop
_spare = threading.local()  # each copying thread's second buffer, kept (new memory is slow)


class SourceMismatch(Exception):
    """The source's bytes are not the expected ones (changed since the scan, or corrupt)."""


class Windows(Protocol):
    """Who reads a big copy back while it is being written (batching.ReadBack)."""

    every: int  # bytes written between two calls of `written`

    def start(self, out: int) -> None: ...
    def written(self, end: int) -> None: ...
    def cancel(self) -> None: ...


ProgressBytes = Callable[[int], None]


def pump(
    src: int,
    out: int,
    count: int,
    hasher: xxhash.xxh3_128,
    buffer: memoryview,
    on_bytes: ProgressBytes | None,
    windows: Windows | None = None,
) -> int:
    """Copy `count` bytes from `src` to `out` (both at their offsets), hashing what is read.

    Raises SourceMismatch if the source ends early or goes on, OSError from
    either file; every byte read is written (or its error raised) before this
    returns, so the file holds exactly a prefix of the copy.
    """
    if count >= PIPE_MIN or windows is not None:
        spare = getattr(_spare, "buffer", None)
        if spare is None or len(spare) != len(buffer):
            spare = _spare.buffer = aligned_buffer(len(buffer))
        views = [memoryview(buffer), memoryview(spare)]
        return _two_threads((src, out, count), hasher, views, on_bytes, windows)
    view = memoryview(buffer)
    done = 0
    while done < count:
        n = os.readv(src, [view[: min(len(view), count - done)]])
        if n == 0:
            raise SourceMismatch(f"ended after {done} of {count} bytes")
        chunk = view[:n]
        hasher.update(chunk)
        while chunk:
            chunk = chunk[os.write(out, chunk) :]
        done += n
        if on_bytes is not None:
            on_bytes(n)
    if os.readv(src, [view[:1]]):
        raise SourceMismatch("is longer than recorded")
    return done


def _two_threads(
    job: tuple[int, int, int], hasher: xxhash.xxh3_128, views: list[memoryview],
    on_bytes: ProgressBytes | None, windows: Windows | None,
) -> int:
    """pump with the writing on a thread of its own; `job` is (src, out, count)."""
    src, out, count = job
    full: SimpleQueue = SimpleQueue()  # (buffer index, bytes) to write; None: no more
    free: SimpleQueue = SimpleQueue()  # buffer indexes to read into, or the writer's error
    for index in range(len(views)):
        free.put(index)
    writer = threading.Thread(
        target=_write, args=(out, count, views, full, free, windows), name="sneakernet-write"
    )
    writer.start()
    done = 0
    try:
        while done < count:
            index = free.get()
            if isinstance(index, BaseException):
                raise index
            view = views[index]
            n = os.readv(src, [view[: min(len(view), count - done)]])
            if n == 0:
                raise SourceMismatch(f"ended after {done} of {count} bytes")
            hasher.update(view[:n])
            full.put((index, n))
            done += n
            if on_bytes is not None:
                on_bytes(n)
        if os.readv(src, [memoryview(bytearray(1))]):
            raise SourceMismatch("is longer than recorded")
    finally:
        full.put(None)
        writer.join()
    while not free.empty():  # an error of the last writes
        index = free.get()
        if isinstance(index, BaseException):
            raise index
    return done


def _write(
    out: int,
    count: int,
    views: list[memoryview],
    full: SimpleQueue,
    free: SimpleQueue,
    windows: Windows | None,
) -> None:
    written = since_sync = 0
    next_window = windows.every if windows is not None else count + 1
    try:
        while (job := full.get()) is not None:
            index, n = job
            chunk = views[index][:n]
            while chunk:
                chunk = chunk[os.write(out, chunk) :]
            written += n
            since_sync += n
            if since_sync >= SYNC_EVERY:
                os.fdatasync(out)
                since_sync = 0
            if windows is not None and next_window <= written < count:
                windows.written(written)  # the last window is read after the fsync
                next_window = written + windows.every
            free.put(index)
    except BaseException as exc:  # handed to the reader, which raises it
        free.put(exc)
