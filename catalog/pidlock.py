"""Locks that die with their process: an exclusive flock on a file holding the pid.

Used for one scan per dataset, one watcher per dataset and one ingest per store.
A lock held elsewhere is not waited for: the caller says who holds it and stops.
"""

from __future__ import annotations

import fcntl
import os


def take(fd: int) -> str | None:
    """Lock the open file `fd` without waiting and write our pid in it.

    Returns None when the lock is ours, else the holder's pid as it wrote it.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return None
