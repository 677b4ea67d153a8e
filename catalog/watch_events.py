"""What a watcher has heard: which paths changed, and when they last did.

watchdog calls `DirtyPaths` from its own thread for every event; the handler
only records the path and the time, so a burst of thousands of events costs a
dict update each and nothing waits on the disk or the catalog. The watcher's
loop later takes the paths that have been quiet for the settle interval.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict

from watchdog import events
from watchdog.events import (
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MOVED,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

# Attribute changes (chmod, touch): no byte changes, but a file or folder made readable
# again, or a new mtime, changes what a scan records. watchdog 6+ reports them as these
# classes (no longer as modifications); older versions have neither.
_ATTRIBUTE_EVENTS = [
    getattr(events, name) for name in ("FileAttribEvent", "DirAttribEvent") if hasattr(events, name)
]

# Only events that say "something changed". Opens and read-only closes are left out:
# our own hashing and probing open files, and hearing that would never settle.
# DirModifiedEvent is left out too: every file event already says it.
EVENT_FILTER = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,  # closed after writing
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
    *_ATTRIBUTE_EVENTS,
]


class DirtyPaths(FileSystemEventHandler):
    """Paths with events not yet handled, oldest last event first.

    An OrderedDict keyed by path, moved to the end on every event, keeps the
    paths in order of their last event: taking the settled ones is a walk from
    the front that stops at the first path still moving, never a scan of all.
    """

    def __init__(self, root: str, exclude: list[str]) -> None:
        self.root = root
        self._exclude = tuple(exclude)
        self._lock = threading.Lock()
        self._paths: OrderedDict[str, float] = OrderedDict()
        self.wake = threading.Event()
        self.events = 0  # every change heard, files and folders
        self.last_event = time.monotonic()
        self.root_gone = False

    def __len__(self) -> int:
        return len(self._paths)

    def on_any_event(self, event: FileSystemEvent) -> None:
        moved = event.event_type == EVENT_TYPE_MOVED
        path = os.fsdecode(event.dest_path if moved else event.src_path)
        if event.is_directory:
            # A new or moved folder has nothing to read itself; watchdog follows with
            # one event per file inside it. The root deleted ends the watch (a rename
            # of the root sends nothing: the loop notices that by stat).
            if path == self.root and event.event_type == EVENT_TYPE_DELETED:
                self.root_gone = True
            self._add(None)
        elif not path.startswith(self._exclude):  # the catalog's own files, if inside
            self._add(path)

    def requeue(self, path: str) -> None:
        """Look at `path` again after another settle interval (not a new change)."""
        self._add(path, heard=False)

    def _add(self, path: str | None, *, heard: bool = True) -> None:
        now = time.monotonic()
        with self._lock:
            was_idle = not self._paths
            if path is not None:
                self._paths[path] = now
                self._paths.move_to_end(path)
            if heard:
                self.events += 1
                self.last_event = now
        if was_idle:  # otherwise the loop already sleeps until the oldest path settles
            self.wake.set()

    def take_settled(self, now: float, settle: float, limit: int) -> list[str]:
        """Remove and return up to `limit` paths whose last event is `settle` seconds old."""
        taken: list[str] = []
        with self._lock:
            while self._paths and len(taken) < limit:
                path, when = next(iter(self._paths.items()))
                if now - when < settle:
                    break
                self._paths.popitem(last=False)
                taken.append(path)
        return taken

    def next_due(self, settle: float) -> float | None:
        """When the oldest waiting path will have settled (monotonic seconds), if any."""
        with self._lock:
            if not self._paths:
                return None
            return next(iter(self._paths.values())) + settle
