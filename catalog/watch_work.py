"""The reading a watcher does: hash settled files, probe new videos, ask the catalog.

Reads run on a few daemon threads so the watcher's loop keeps hearing events
while a big file is read, and a stop never waits for a 50 GB file to be read
to its end (a daemon thread reading is simply dropped at exit; it writes
nothing). Only the loop thread opens the catalog.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import NamedTuple

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.hashing import (
    HASHER,
    ChangedWhileReading,
    FileHash,
    NotRegularFile,
    aligned_buffer,
    clamp_mtime_ns,
    hash_file,
)
from sneakernet.catalog.media import PROBE_VERSION, MediaInfo
from sneakernet.catalog.probe import NotTheHashedFile, probe


class Sig(NamedTuple):
    """What the hash cache is keyed on; two equal Sigs mean 'the same bytes'."""

    device: int
    inode: int
    size: int
    mtime_ns: int


def sig_of(st: os.stat_result) -> Sig:
    return Sig(st.st_dev, st.st_ino, st.st_size, clamp_mtime_ns(st.st_mtime_ns))


class Hashed(NamedTuple):
    path: str
    sig: Sig  # what the file looked like when it had settled
    found: FileHash | None  # None: see `outcome`
    outcome: str  # "ok", "changed" (look again later), "gone" (drop it), "skipped" (stopping)


class Probed(NamedTuple):
    digest: str
    info: MediaInfo | None  # None: the file changed or vanished while it was probed


class Workers:
    """A fixed set of daemon threads running tasks; each result goes to `deliver`."""

    def __init__(self, count: int, deliver: Callable[[object], None]) -> None:
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._deliver = deliver
        self._count = count
        for i in range(count):
            threading.Thread(target=self._work, name=f"sneakernet-watch-{i}", daemon=True).start()

    def submit(self, task: Callable[..., object], *args: object) -> None:
        self._tasks.put((task, args))

    def close(self) -> None:
        for _ in range(self._count):
            self._tasks.put(None)

    def _work(self) -> None:
        buffer = aligned_buffer()  # one per thread, reused for every file
        while (item := self._tasks.get()) is not None:
            task, args = item
            try:
                result = task(*args, buffer=buffer)
            except Exception as exc:  # a bug: the loop re-raises it where it can be reported
                result = exc
            self._deliver(result)


def hash_settled(path: str, sig: Sig, stopping: threading.Event, *, buffer: memoryview) -> Hashed:
    """Hash `path` if it still is the file that settled as `sig`."""
    if stopping.is_set():
        return Hashed(path, sig, None, "skipped")
    try:
        found = hash_file(path, buffer, (sig.size, sig.mtime_ns))
    except ChangedWhileReading:
        return Hashed(path, sig, None, "changed")
    except (NotRegularFile, OSError):  # deleted, replaced, unreadable: the scan will say
        return Hashed(path, sig, None, "gone")
    if Sig(found.device, found.inode, found.size, found.mtime_ns) != sig:
        # Written again since it settled: this hash is of a state we never saw quiet.
        return Hashed(path, sig, None, "changed")
    return Hashed(path, sig, found, "ok")


def probe_unchanged(path: str, found: FileHash, *, buffer: memoryview) -> Probed:
    """Probe a video, keeping the answer only if the file is still the bytes hashed."""
    del buffer  # PyAV reads with its own buffers
    try:
        info = probe(path, (found.size, found.mtime_ns, found.inode, found.device))
    except NotTheHashedFile:  # gone, swapped or written: nothing learnt about found.hash
        return Probed(found.hash, None)
    return Probed(found.hash, info)


def cached(catalog: Catalog, sigs: list[Sig]) -> set[Sig]:
    """The sigs whose hash the catalog's hash cache already has (moves, renames, touches)."""
    if not sigs:
        return set()
    columns = [list(column) for column in zip(*sigs, strict=True)]
    with catalog.read() as con:
        rows = con.execute(
            "SELECT s.device, s.inode, s.size, s.mtime_ns FROM (SELECT"
            " unnest(?::UBIGINT[]) AS device, unnest(?::UBIGINT[]) AS inode,"
            " unnest(?::BIGINT[]) AS size, unnest(?::BIGINT[]) AS mtime_ns) s"
            " JOIN hash_cache c USING (device, inode, size, mtime_ns) WHERE c.hasher = ?",
            [*columns, HASHER],
        ).fetchall()
    return {Sig(*row) for row in rows}


def unprobed(catalog: Catalog, digests: set[str]) -> set[str]:
    """The content hashes that have no current media row yet."""
    if not digests:
        return set()
    with catalog.read() as con:
        rows = con.execute(
            "SELECT m.hash FROM media m JOIN (SELECT unnest(?::VARCHAR[]) AS hash) w"
            " USING (hash) WHERE m.probe_version = ?",
            [sorted(digests), PROBE_VERSION],
        ).fetchall()
    return digests - {row[0] for row in rows}
