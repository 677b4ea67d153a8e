"""`receive`: a long-running service that ingests every sneakernet drive mounted under a folder.

It watches the mounts folder (inotify through watchdog) and also rescans it
every few seconds, because mounting a file system over an existing folder
makes no inotify event. A subfolder holding a sealed drive whose metadata has
stayed unchanged for a moment is handed to `DriveReceiver` (verify, then
ingest or reject, events, report), one drive at a time in arrival order: one
reader per drive, and a store written by one ingest at a time.

A drive that leaves (pulled out, unmounted, renamed away) and comes back is a
new arrival, even under another folder name; ingest resumes where it stopped.
The caller stops the service by setting `stop` (the CLI does on SIGTERM): the
current file finishes or stays a partial, and the drive is logged incomplete.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import (
    CatalogBusyError,
    CatalogFormatError,
    SneakernetError,
    SourceError,
)
from sneakernet.catalog.progress import ProgressFn
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer.errors import DriveError
from sneakernet.transfer.receive_drive import (
    DriveOutcome,
    DriveReceiver,
    LogFn,
    Notice,
    StopRequested,
)

SETTLE_SECONDS = 2.0
WAKE_EVENTS = frozenset({"created", "deleted", "moved"})


@dataclass(slots=True)
class ReceiveResult:
    mounts: str
    store: str
    drives: list[DriveOutcome] = field(default_factory=list)
    stopped: bool = False  # ended by `stop`, not because --once ran out of drives
    seconds: float = 0.0

    @property
    def needs_attention(self) -> list[DriveOutcome]:
        return [d for d in self.drives if d.needs_attention]

    def to_dict(self) -> dict:
        return {
            "mounts": self.mounts,
            "store": self.store,
            "stopped": self.stopped,
            "seconds": round(self.seconds, 3),
            "drives": [d.to_dict() for d in self.drives],
            "needs_attention": len(self.needs_attention),
        }


@dataclass(slots=True)
class _Slot:
    """What one entry of the mounts folder is, as last seen."""

    name: str
    key: tuple[int, int]  # (device, inode) of the folder: a new mount is a new slot
    order: int
    new_arrival: bool  # appeared while the service ran (not there at start-up)
    kind: str = ""  # ignored, unsealed, drive
    why: str = ""
    fingerprint: tuple | None = None
    stable_since: float = 0.0
    handled: bool = False
    retry_at: float = 0.0


def receive(
    catalog: Catalog,
    mounts: Path,
    store: Path,
    *,
    stop: threading.Event | None = None,
    poll: float = 3.0,
    once: bool = False,
    settle: float = SETTLE_SECONDS,
    log: LogFn | None = None,
    progress: ProgressFn | None = None,
) -> ReceiveResult:
    """Ingest each drive that appears under `mounts` into `store` until `stop` is set.

    With `once`, handle the drives there now and return. Per-drive trouble (a bad
    drive, a busy catalog) is logged and the service carries on; a store or mounts
    folder that cannot be used ends it with a SneakernetError.
    """
    started = time.monotonic()
    mounts, store = _folder(mounts, "mounts folder"), _folder(store, "store")
    stop = stop or threading.Event()
    say = log or (lambda notice: None)
    result = ReceiveResult(str(mounts), str(store))
    receiver = DriveReceiver(catalog, store, stop=stop, log=say, progress=progress)
    watcher = _Mounts(mounts, settle, say)
    wake = threading.Event()
    observer = None if once else _watch(mounts, wake, say, poll)
    say(Notice("started", f"watching {mounts} for drives; store {store}", str(mounts)))
    try:
        while not stop.is_set():
            slot = watcher.next_ready()
            if slot is not None:
                _handle(receiver, watcher, slot, result, say)
                continue  # rescan at once: drives may have come or gone meanwhile
            if once and not watcher.settling():
                break
            _sleep(stop, wake, min(poll, settle) if watcher.settling() else poll)
    except StopRequested:
        pass  # the drive in hand was logged incomplete; its partial file is kept
    finally:
        if observer is not None:
            observer.stop()
    result.stopped = stop.is_set()
    result.seconds = time.monotonic() - started
    say(Notice("stopped", f"{len(result.drives)} drive(s) handled", str(mounts),
               details={"needs_attention": len(result.needs_attention)}))
    return result


def _handle(
    receiver: DriveReceiver, watcher: _Mounts, slot: _Slot, result: ReceiveResult, say: LogFn
) -> None:
    path = watcher.root / slot.name
    try:
        outcome = receiver.receive(path, new_arrival=slot.new_arrival)
    except CatalogBusyError as exc:
        # Another process holds the catalog: try this drive again after a while.
        slot.retry_at = time.monotonic() + 30
        slot.new_arrival = False  # its `received` may be logged already
        say(Notice("error", f"{exc}; trying again in 30 s", str(path)))
        return
    except SneakernetError as exc:
        if isinstance(exc, SourceError | CatalogFormatError):  # no store or catalog to go on
            raise
        slot.handled = True
        say(Notice("error", f"{exc}" + (f" ({exc.hint})" if exc.hint else ""), str(path)))
        return
    slot.handled = True
    result.drives.append(outcome)


class _Mounts:
    """The entries of the mounts folder and what each one is, kept up to date by rescans."""

    def __init__(self, root: Path, settle: float, say: LogFn) -> None:
        self.root, self.settle, self.say = root, settle, say
        self.slots: dict[str, _Slot] = {}
        self.arrivals = 0
        self.started = False

    def next_ready(self) -> _Slot | None:
        """Rescan, then the earliest-arrived drive that is sealed, settled and not handled."""
        self._rescan()
        now = time.monotonic()
        ready = [
            s
            for s in self.slots.values()
            if s.kind == "drive" and not s.handled and now >= s.retry_at
            and now - s.stable_since >= self.settle
        ]
        return min(ready, key=lambda s: s.order) if ready else None

    def settling(self) -> bool:
        """Whether a drive is waiting for its metadata to stay still (or for a retry)."""
        return any(s.kind == "drive" and not s.handled for s in self.slots.values())

    def _rescan(self) -> None:
        try:
            names = sorted(os.listdir(self.root))
        except OSError as exc:
            raise SourceError(
                f"cannot read the mounts folder ({exc.strerror})",
                path=str(self.root),
                hint="check that it exists and is readable, then start the service again",
            ) from exc
        # Hidden entries (.Trash-1000 and the like) are never mount points.
        names = [n for n in names if not n.startswith(".")]
        for gone in set(self.slots) - set(names):
            slot = self.slots.pop(gone)
            if slot.kind == "drive":
                self.say(Notice("gone", "the drive went away", str(self.root / gone)))
        for name in names:
            self._look(name)
        self.started = True

    def _look(self, name: str) -> None:
        path = self.root / name
        try:
            st = os.lstat(path)
        except OSError:
            return  # went away between listdir and lstat; the next rescan drops it
        key = (st.st_dev, st.st_ino)
        slot = self.slots.get(name)
        if slot is None or slot.key != key:
            self.arrivals += 1
            slot = _Slot(name, key, self.arrivals, new_arrival=self.started)
            self.slots[name] = slot
        if stat.S_ISLNK(st.st_mode):
            self._set(slot, "ignored", "a symbolic link: drives are mounted folders, links "
                      "are not followed", None)
        elif not stat.S_ISDIR(st.st_mode):
            self._set(slot, "ignored", "not a folder", None)
        elif not fmt.is_drive(path):
            self._set(slot, "ignored", "not a sneakernet drive (no .sneakernet/drive.json)", None)
        else:
            fingerprint = _fingerprint(path)
            if fingerprint == slot.fingerprint:
                return
            kind, why = _drive_state(path)
            self._set(slot, kind, why, fingerprint)

    def _set(self, slot: _Slot, kind: str, why: str, fingerprint: tuple | None) -> None:
        changed = (kind, why) != (slot.kind, slot.why)
        if fingerprint != slot.fingerprint:
            slot.stable_since = time.monotonic()
            slot.handled = False  # its metadata changed: what it carries may have too
        slot.kind, slot.why, slot.fingerprint = kind, why, fingerprint
        if changed and kind != "drive":
            notice = "waiting" if kind == "unsealed" else "ignored"
            self.say(Notice(notice, why, str(self.root / slot.name)))


def _drive_state(path: Path) -> tuple[str, str]:
    try:
        info = fmt.read_drive(path)
    except (DriveError, OSError):
        return "drive", ""  # the receiver refuses it with the reason, and reports it
    if not info.sealed:
        return "unsealed", "a drive not sealed yet (its pack did not finish); read once sealed"
    return "drive", ""


def _fingerprint(path: Path) -> tuple:
    """What changes when the drive's metadata is still being written (or was replaced)."""
    marks = []
    for name in (fmt.DRIVE_FILE, fmt.SEAL_FILE):
        try:
            st = os.lstat(path / name)
            marks.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            marks.append(None)
    return tuple(marks)


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise SourceError(
            f"the {what} is not a folder", path=str(path), hint="create it first, or fix the path"
        )
    return Path(os.path.realpath(path))


def _sleep(stop: threading.Event, wake: threading.Event, seconds: float) -> None:
    """Until the next rescan: `seconds`, or sooner when the folder changed or stop is set."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and not wake.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        stop.wait(min(left, 0.2))
    wake.clear()


def _watch(mounts: Path, wake: threading.Event, say: LogFn, poll: float):
    """An inotify watch that wakes the rescan early; rescans alone work when it cannot run."""
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        class _Wake(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                # Only entries coming and going: our own reads would wake us forever.
                if event.event_type in WAKE_EVENTS:
                    wake.set()

        observer = Observer()
        observer.daemon = True
        observer.schedule(_Wake(), str(mounts), recursive=False)
        observer.start()
    except (ImportError, OSError) as exc:
        say(Notice("note", f"not watching for changes ({exc}); rescanning every {poll:g} s",
                   str(mounts)))
        return None
    return observer
