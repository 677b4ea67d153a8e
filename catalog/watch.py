"""`watch`: keep a dataset's hashes and video metadata current while files land,
and record a version once the folder has been quiet for a while.

The watcher is a cache warmer plus a snapshotter. watchdog (inotify on Linux)
marks changed paths dirty; a path is read once it has had no event for the
settle interval and its mtime is at least that old (or its size and mtime
did not move between two looks), so a file still being written is not hashed
half-written. Hashes go to the catalog's hash cache, and video metadata to
`media` by content hash, in short transactions at most once a second.

A snapshot is a real `scan`: with the cache warm it reads nothing, and
because it walks the tree, the version is right even if an event was missed
(inotify can overflow its queue). So the events only decide *when* to read,
never *what the version holds*.
"""

from __future__ import annotations

import ctypes
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
from watchdog.observers.api import BaseObserver

from sneakernet.catalog import session
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import CatalogBusyError, SourceError
from sneakernet.catalog.hashcache import store_cached_hashes
from sneakernet.catalog.hashing import FileHash
from sneakernet.catalog.media import MediaInfo, is_video_name
from sneakernet.catalog.probepass import store_media
from sneakernet.catalog.progress import ProgressEvent, ProgressFn, report
from sneakernet.catalog.refs import check_dataset_name
from sneakernet.catalog.scan import (
    DatasetLockedError,
    ScanResult,
    check_root,
    default_workers,
    scan,
)
from sneakernet.catalog.watch_events import DirtyPaths
from sneakernet.catalog.watch_setup import WatchLock, identity, start_observer
from sneakernet.catalog.watch_work import (
    Hashed,
    Probed,
    Sig,
    Workers,
    cached,
    hash_settled,
    probe_unchanged,
    sig_of,
    unprobed,
)

DEFAULT_SETTLE = 2.0
FLUSH_SECONDS = 1.0  # the longest a hash waits before it reaches the catalog
IDLE_CHECK_SECONDS = 30.0  # an idle watcher wakes this often, only to see the root is there
BATCH = 5000  # paths settled, looked up and queued per turn of the loop
RETRY_SECONDS = 5.0  # after the catalog or the dataset was busy


@dataclass(slots=True)
class WatchStats:
    events: int = 0  # changes heard
    hashed_files: int = 0  # read by the watcher
    hashed_bytes: int = 0
    reused_files: int = 0  # settled paths the cache already knew (moves, renames, touches)
    probed_files: int = 0
    dropped_files: int = 0  # gone, replaced or unreadable by the time they were read
    snapshots: int = 0
    versions: list[int] = field(default_factory=list)  # recorded by this watcher

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class WatchNotice:
    """Something the watcher tells whoever runs it (the CLI prints one line each)."""

    kind: str  # "caught-up", "snapshot", "deferred"
    events: int  # changes heard so far (for a scan: before it began)
    scan: ScanResult | None = None
    message: str = ""


NoticeFn = Callable[[WatchNotice], None]


class WatchStopped(Exception):
    """Raised inside a scan's progress callback when the watcher is asked to stop."""


class Watcher:
    """Watch `root` as `dataset`. Use as a context manager: the observer runs inside it.

        with Watcher(catalog, root, "roadcam", snapshot_after=60) as w:
            w.catch_up()  # a scan, with events already being heard
            w.run()       # until w.stop() (safe from another thread)
    """

    def __init__(
        self,
        catalog: Catalog,
        root: Path | str,
        dataset: str,
        *,
        settle: float = DEFAULT_SETTLE,
        snapshot_after: float | None = None,
        workers: int | None = None,
        notify: NoticeFn | None = None,
    ) -> None:
        check_dataset_name(dataset)
        self.catalog = catalog
        self.root = check_root(Path(root), "watch")
        self.dataset = dataset
        self.settle = settle
        self.snapshot_after = snapshot_after
        self.workers = workers or default_workers()
        self.notify = notify
        self.stats = WatchStats()
        self._stop = threading.Event()
        self._root_id = identity(self.root)
        catalog_prefix = os.path.realpath(catalog.path)
        self._dirty = DirtyPaths(os.fsdecode(self.root), [catalog_prefix])
        self._results: deque[object] = deque()
        self._in_flight = 0
        # Hashes not yet stored, one per (device, inode): a file rewritten within one
        # flush must leave its newest hash, and the cache keeps one row per inode.
        self._cache_rows: dict[tuple[int, int], tuple[Sig, str]] = {}
        self._media_rows: list[tuple[str, MediaInfo]] = []
        self._videos: dict[str, tuple[str, FileHash]] = {}  # new video content to probe
        self._seen: dict[str, Sig] = {}  # path -> sig at the last look, when it was too fresh
        self._flushed = time.monotonic()
        self._snapshot_events = 0  # events heard when the last snapshot began
        self._not_before = 0.0  # no snapshot before this (after a busy dataset)
        self._observer: BaseObserver | None = None
        self._workers: Workers | None = None
        self._lock = WatchLock(catalog, dataset)

    # -- life cycle -------------------------------------------------------

    def __enter__(self) -> Watcher:
        self._lock.acquire()
        try:
            self.catalog.ensure_schema()  # a bad catalog fails now, before any reading
            self._workers = Workers(self.workers, self._deliver)
            self._observer = start_observer(self._dirty, self.root)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop hearing events, keep every finished hash, release the dataset."""
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None
        if self._workers is not None:
            self._workers.close()
            self._workers = None
            self._take_results()
            self._flush(final=True)
        self._lock.release()

    def stop(self) -> None:
        """Ask `catch_up` or `run` to return soon. Safe from any thread, not from a signal handler
        (cli/signals.py relays signals to a thread that calls it)."""
        self._stop.set()
        self._dirty.wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def events_heard(self) -> int:
        return self._dirty.events

    def catch_up(self, progress: ProgressFn | None = None) -> ScanResult | None:
        """Scan once, so the cache and the version start from the tree as it is now.

        Events heard meanwhile are handled by `run`. None when stopped first.
        """
        events = self._snapshot_events = self._dirty.events
        result = self._scan(progress)
        if result is not None:
            self._notice("caught-up", result, events=events)
        return result

    def run(self) -> WatchStats:
        """Handle events until `stop()`; return what was done."""
        dirty = self._dirty
        while not self._stop.is_set():
            dirty.wake.clear()  # before looking: a later event wakes the wait below
            now = time.monotonic()
            self._check_root()
            self._take_results()
            self._settle(now)
            if now - self._flushed >= FLUSH_SECONDS:
                self._flush()
            if self._snapshot_due(now):
                self._snapshot()
                continue
            dirty.wake.wait(self._sleep(now))
        self.stats.events = dirty.events
        return self.stats

    # -- the loop's steps -------------------------------------------------

    def _deliver(self, result: object) -> None:
        self._results.append(result)  # deque appends are atomic; only the loop pops
        self._dirty.wake.set()

    def _take_results(self) -> None:
        while self._results:
            result = self._results.popleft()
            self._in_flight -= 1
            if isinstance(result, Hashed):
                self._hashed(result)
            elif isinstance(result, Probed):
                if result.info is not None:
                    self._media_rows.append((result.digest, result.info))
                    self.stats.probed_files += 1
            elif isinstance(result, Exception):
                raise result

    def _hashed(self, result: Hashed) -> None:
        if result.outcome == "changed":
            self._dirty.requeue(result.path)
        elif result.outcome == "gone":
            self.stats.dropped_files += 1
        elif result.found is not None:
            found = result.found
            key = (found.device, found.inode)
            older = self._cache_rows.get(key)
            if older is None or older[0].mtime_ns <= found.mtime_ns:
                self._cache_rows[key] = (result.sig, found.hash)
            self.stats.hashed_files += 1
            self.stats.hashed_bytes += found.size
            if is_video_name(result.path):
                self._videos.setdefault(found.hash, (result.path, found))

    def _settle(self, now: float) -> None:
        """Stat the paths that have been quiet long enough; queue the unknown ones to hash."""
        wall = time.time()
        ready: list[tuple[str, Sig]] = []
        for path in self._dirty.take_settled(now, self.settle, BATCH):
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                st = None  # gone again: the snapshot's walk says so
            if st is None or not stat.S_ISREG(st.st_mode):
                self._seen.pop(path, None)
                continue  # gone, or a folder, link or FIFO: nothing to read
            sig = sig_of(st)
            # mtime as old as the settle interval, or no change between two looks
            # (a clock skewed into the future, writes that send no event).
            if wall - st.st_mtime_ns / 1e9 >= self.settle or self._seen.pop(path, None) == sig:
                ready.append((path, sig))
            else:
                self._seen[path] = sig
                self._dirty.requeue(path)
        if not ready:
            return
        try:
            known = cached(self.catalog, [sig for _, sig in ready])
        except CatalogBusyError:
            known = set()  # reading again is slower, never wrong
        known.update(sig for sig, _ in self._cache_rows.values())  # not yet stored
        assert self._workers is not None
        for path, sig in ready:
            if sig in known:
                self.stats.reused_files += 1
                continue
            self._in_flight += 1
            self._workers.submit(hash_settled, path, sig, self._stop)

    def _flush(self, *, final: bool = False) -> None:
        """Store finished hashes and media; queue new videos for probing."""
        self._flushed = time.monotonic()
        try:
            if self._cache_rows:
                rows = [(*sig, digest) for sig, digest in self._cache_rows.values()]
                store_cached_hashes(self.catalog, rows)
                self._cache_rows = {}
            if self._media_rows:
                store_media(self.catalog, self._media_rows)
                self._media_rows = []
            if self._videos and not final:
                self._probe_new_videos()
        except CatalogBusyError as exc:
            if final:
                raise
            self._notice("deferred", message=f"catalog busy, will retry: {exc}")

    def _probe_new_videos(self) -> None:
        videos, self._videos = self._videos, {}
        assert self._workers is not None
        for digest in unprobed(self.catalog, set(videos)):
            path, found = videos[digest]
            self._in_flight += 1
            self._workers.submit(probe_unchanged, path, found)

    def _busy(self) -> bool:
        return bool(len(self._dirty) or self._in_flight)

    def _snapshot_due(self, now: float) -> bool:
        deadline = self._snapshot_deadline()
        if deadline is None or now < deadline:
            return False
        if self._cache_rows or self._media_rows or self._videos:
            self._flush()  # may queue probes: the snapshot waits for them
        return not self._busy()

    def _snapshot_deadline(self) -> float | None:
        if self.snapshot_after is None or self._dirty.events == self._snapshot_events:
            return None
        if self._busy():
            return None  # the loop wakes when the work is done
        return max(self._dirty.last_event + self.snapshot_after, self._not_before)

    def _snapshot(self) -> None:
        events = self._snapshot_events = self._dirty.events
        result = self._scan(None)
        if result is not None:
            self.stats.snapshots += 1
            self._notice("snapshot", result, events=events)

    def _scan(self, progress: ProgressFn | None) -> ScanResult | None:
        def checked(event: ProgressEvent) -> None:
            if self._stop.is_set():
                raise WatchStopped
            report(progress, event)

        _release_memory()  # the scan's peak stacks on whatever the heap still holds
        try:
            result = scan(
                self.catalog, self.root, self.dataset, workers=self.workers, progress=checked
            )
        except WatchStopped:
            return None
        except (DatasetLockedError, CatalogBusyError) as exc:
            self._not_before = time.monotonic() + RETRY_SECONDS
            self._snapshot_events = -1  # still owed
            self._notice("deferred", message=f"{exc}; will try again")
            return None
        if result.version is not None:
            self.stats.versions.append(result.version)
        _release_memory()
        return result

    def _sleep(self, now: float) -> float:
        """Seconds until the next thing to do; results and new events wake earlier."""
        deadlines = [now + IDLE_CHECK_SECONDS]
        due = self._dirty.next_due(self.settle)
        if due is not None:
            deadlines.append(due)
        if self._cache_rows or self._media_rows or self._videos:
            deadlines.append(self._flushed + FLUSH_SECONDS)
        snapshot = self._snapshot_deadline()
        if snapshot is not None:
            deadlines.append(snapshot)
        return max(0.01, min(deadlines) - now)  # never a spin, even on a deadline just missed

    def _check_root(self) -> None:
        if self._dirty.root_gone or identity(self.root) != self._root_id:
            raise SourceError(
                "the watched folder was deleted, renamed or unmounted",
                path=os.fsdecode(self.root),
                hint="start watch again on the folder's new path",
            )

    def _notice(
        self, kind: str, result: ScanResult | None = None, *, message: str = "",
        events: int | None = None,
    ) -> None:
        self.stats.events = self._dirty.events
        if self.notify is not None:
            heard = self._dirty.events if events is None else events
            self.notify(WatchNotice(kind, heard, result, message))


def _release_memory() -> None:
    """Hand a scan's freed memory back to the system.

    A scan's peak is brief, but Arrow's pool and glibc's heap keep freed pages
    mapped; a watcher lives for weeks and should idle at its own size.
    """
    session.close_shared()  # DuckDB's buffer pool would keep the scan's peak resident
    pa.default_memory_pool().release_unused()
    with suppress(OSError, AttributeError):  # not glibc: its allocator keeps its own counsel
        ctypes.CDLL(None).malloc_trim(0)
