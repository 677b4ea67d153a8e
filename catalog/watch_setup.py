"""What a watch needs before it starts: a folder, a duration, a lock, an observer."""

from __future__ import annotations

import errno
import os
import re
import tempfile
from contextlib import suppress
from pathlib import Path

import xxhash
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from sneakernet.catalog import pidlock
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import SneakernetError, SourceError, UsageError
from sneakernet.catalog.scan import DatasetLockedError
from sneakernet.catalog.watch_events import EVENT_FILTER

_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h)?)+")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


def parse_duration(text: str, option: str = "duration") -> float:
    """Seconds in `30s`, `5m`, `1h30m`, `500ms` or a bare number of seconds."""
    cleaned = text.strip().lower()
    if not cleaned or not _DURATION.fullmatch(cleaned):
        raise UsageError(
            f"{option}: cannot read {text!r} as a duration",
            hint="write a number with a unit, e.g. 30s, 5m, 1h30m (a bare number is seconds)",
        )
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(cleaned))




def identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a folder, or None when it is gone: a renamed root keeps its inode
    but no longer answers to its path."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def start_observer(handler: FileSystemEventHandler, root: Path) -> BaseObserver:
    """watchdog's native observer (inotify on Linux) on the whole tree, started."""
    observer = Observer()
    try:
        observer.schedule(handler, os.fsdecode(root), recursive=True, event_filter=EVENT_FILTER)
        observer.start()
    except OSError as exc:
        raise _observer_error(root, exc) from exc
    return observer


def _observer_error(root: Path, exc: OSError) -> SneakernetError:
    if exc.errno in (errno.ENOSPC, errno.EMFILE):  # inotify's per-user limits
        return SourceError(
            f"cannot watch this many folders ({exc.strerror or exc})",
            path=os.fsdecode(root),
            hint="raise fs.inotify.max_user_watches and max_user_instances (sysctl)",
        )
    return SourceError(f"cannot watch the folder ({exc.strerror or exc})", path=os.fsdecode(root))


class WatchLock:
    """One watcher per dataset and catalog; the lock dies with its process.

    It lives in the temp folder, not beside the catalog: a catalog inside the
    watched folder must not add a lock file to the dataset's versions. The
    file is removed on release, so after taking the lock we check that the
    name still points at the file we locked (a releaser may have just removed it).
    """

    def __init__(self, catalog: Catalog, dataset: str) -> None:
        key = xxhash.xxh3_64_hexdigest(os.fsencode(os.path.realpath(catalog.path)))
        name = f"sneakernet-{os.getuid()}-watch-{key}-{dataset}.lock"
        self.path = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / name
        self.dataset = dataset
        self._fd: int | None = None

    def acquire(self) -> None:
        while self._fd is None:
            try:  # no symlink followed: the name is predictable in a shared /tmp
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                             0o600)
            except OSError as exc:
                raise SourceError(
                    f"cannot create the watch lock ({exc.strerror or exc})",
                    path=str(self.path),
                    hint="remove that file if it is not a plain file of yours",
                ) from exc
            holder = pidlock.take(fd)
            if holder is not None:
                os.close(fd)
                raise DatasetLockedError(
                    f"dataset {self.dataset!r} is already watched by process {holder}",
                    hint="stop that watcher first; one watcher per dataset",
                )
            if identity(self.path) != _fd_identity(fd):
                os.close(fd)  # removed or replaced since we opened it: try again
                continue
            self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with suppress(OSError):
                self.path.unlink()  # while still locked: nobody holds the name after us
            os.close(self._fd)
            self._fd = None


def _fd_identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino
