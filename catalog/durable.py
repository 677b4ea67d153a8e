"""Making a finished file and its name survive a power cut.

A file written under a temporary name is fsynced, renamed over its final
name, and then its folder is fsynced: the rename is a change to the folder,
and without that second fsync a crash can bring back the old name (or none).
Every writer of a whole file (drive metadata, manifests, exports, reports)
ends through `rename_durably`.
"""

from __future__ import annotations

import os
from pathlib import Path

_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def fsync_dir(path: Path | str) -> None:
    fd = os.open(path, _DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: Path | str) -> None:
    """fsync a file this process wrote and closed (e.g. one DuckDB or Arrow wrote)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rename_durably(tmp: Path | str, final: Path | str) -> None:
    """Rename an fsynced `tmp` over `final`, then fsync the folder that holds the name."""
    os.replace(tmp, final)
    fsync_dir(Path(final).parent)
