"""Packing one drive: copy each planned file with hash-on-read and read-back.

One worker per drive, so each physical drive sees one sequential writer. A
file already at its final name on the drive was verified before it got that
name, so a re-run skips it; a temporary file left by a killed run is
continued (copier.start_copy); a big one is read back while it is written
(batching.ReadBack).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from sneakernet.catalog.hashing import aligned_buffer
from sneakernet.transfer import batching, copier
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer.errors import DriveBusyError
from sneakernet.transfer.fsio import READ_FLAGS

_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True, slots=True)
class FileProblem:
    path: str
    outcome: str  # changed, missing-source, unreadable, corrupt-copy, clash
    detail: str

    def to_dict(self) -> dict:
        return {"path": self.path, "outcome": self.outcome, "detail": self.detail}


@dataclass(slots=True)
class DriveOutcome:
    number: int
    label: str
    path: str
    files: int = 0
    bytes: int = 0
    copied_files: int = 0
    copied_bytes: int = 0
    present_files: int = 0  # already on the drive, verified by an earlier run
    reused_bytes: int = 0  # of partial copies continued
    seconds: float = 0.0
    full: bool = False
    full_detail: str = ""
    sealed: bool = False
    problems: list[FileProblem] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__slots__ if k != "problems"}
        data["problems"] = [p.to_dict() for p in self.problems]
        return data


class Interrupted(Exception):
    """The user asked the pack to stop; files already on the drive are kept."""


Tick = Callable[[int, int], None]  # (files done delta, bytes done delta)


@contextmanager
def drive_lock(root: Path) -> Iterator[None]:
    """One pack writing a drive at a time. Two (the same command run twice) wrote the same
    temporary copies and metadata files: one died mid-seal ('internal error'), and the
    drive's seal could be taken over metadata the other was still writing. The lock is
    on the drive's .sneakernet folder itself (no file left on the drive) and dies with
    its process; where the file system has no flock, packing goes on without it."""
    fd = os.open(root / fmt.META_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DriveBusyError(
                "another sneakernet pack is writing this drive", path=str(root),
                hint="wait for it to finish; run the same command again if it stopped",
            ) from exc
        except OSError:
            pass
        yield
    finally:
        os.close(fd)


def pack_drive(
    root: Path, files: Path, outcome: DriveOutcome, tick: Tick, stop: threading.Event
) -> DriveOutcome:
    started = time.monotonic()
    partial = root / fmt.PARTIAL_DIR
    partial.mkdir(parents=True, exist_ok=True)
    buffer = aligned_buffer(copier.BUFFER_SIZE)
    batch = batching.Batch(partial, readback=True)
    there = _OnDrive(str(root))

    def on_bytes(n: int) -> None:
        if stop.is_set():
            raise Interrupted
        tick(0, n)

    try:
        for rows in pq.ParquetFile(files).iter_batches(batch_size=4096, columns=_COLUMNS):
            # Columns to lists, zipped: a dict per row costs more than the copy of a tiny file.
            columns = [rows.column(name).to_pylist() for name in _COLUMNS]
            for row in zip(*columns, strict=True):
                if stop.is_set():
                    raise Interrupted
                item = _pack_one(there, batch, row, outcome, buffer, tick, on_bytes)
                if item is _FULL_STOP:
                    _count(batch.drain(), outcome, tick)
                    return outcome
                if item is not None:
                    batch.add(item)
                    if batch.full:
                        _count(batch.submit(), outcome, tick)
        _count(batch.drain(), outcome, tick)
    finally:
        batch.close()
        outcome.seconds = time.monotonic() - started
    return outcome


_COLUMNS = ["drive_path", "size", "hash", "mtime_ns", "root", "path"]
_FULL_STOP = object()
_CLASH = "the drive already holds something else at this path"


class _OnDrive:
    """What a folder of the drive already holds, listed once per folder.

    The file list is in path order, so a folder's files come together; one
    listing answers "is it there already?" for all of them (on a fresh drive:
    one failed open per folder instead of a failed lstat per file).
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.folder: str | None = None
        self.names: frozenset[str] | set[str] = frozenset()

    def holds(self, drive_path: str) -> bool:
        folder, _, name = drive_path.rpartition("/")
        if folder != self.folder:
            try:
                self.names = set(os.listdir(f"{self.root}/{folder}" if folder else self.root))
            except (FileNotFoundError, NotADirectoryError):
                self.names = frozenset()
            self.folder = folder
        return name in self.names


def _pack_one(
    there: _OnDrive,
    batch: batching.Batch,
    row: tuple,
    outcome: DriveOutcome,
    buffer: memoryview,
    tick: Tick,
    on_bytes: Callable[[int], None],
) -> batching.Pending | object | None:
    """Copy one file to its temporary name on the drive.

    Returns the pending copy (for the batch to sync, read back and name), None
    when there is nothing to finish (already on the drive, or a problem was
    recorded), or _FULL_STOP when the drive is full and packing it must stop.
    """
    drive_path, size, digest, mtime_ns, root, path = row  # in the order of _COLUMNS
    final = f"{there.root}/{drive_path}"
    if there.holds(drive_path):
        try:
            info = os.lstat(final)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISREG(info.st_mode) and info.st_size == size:
                outcome.present_files += 1
                tick(1, size)
            else:
                outcome.problems.append(FileProblem(drive_path, "clash", _CLASH))
            return None
    source = f"{root}/{path}" if root else path  # catalog paths are relative
    try:
        src = os.open(source, READ_FLAGS)
    except FileNotFoundError:
        outcome.problems.append(FileProblem(drive_path, "missing-source", source))
        return None
    except OSError as exc:
        outcome.problems.append(FileProblem(drive_path, "unreadable", f"{source}: {exc.strerror}"))
        return None
    tmp = f"{batch.folder}/{digest}.part"
    windows = batch.windows(size)
    try:
        out, result = copier.start_copy(
            src,
            tmp,
            size=size,
            digest=digest,
            buffer=buffer,
            # Progress (and a stop request) within a file only for big ones; a small
            # file's bytes are counted with it when its batch is finished.
            on_bytes=on_bytes if size >= len(buffer) else None,
            mtime_ns=mtime_ns,
            windows=windows,
        )
    except copier.SourceMismatch as exc:
        outcome.problems.append(
            FileProblem(drive_path, "changed", f"the source changed since it was scanned: {exc}")
        )
        return None
    except OSError as exc:
        if exc.errno in _FULL:
            outcome.full = True
            outcome.full_detail = f"{exc.strerror} while writing {drive_path}"
            return _FULL_STOP
        outcome.problems.append(FileProblem(drive_path, "io-error", f"{exc.strerror}"))
        return None
    finally:
        os.close(src)
    return batching.Pending(out, tmp, final, size, digest, result, drive_path, windows=windows)


def _count(items: list[batching.Pending], outcome: DriveOutcome, tick: Tick) -> None:
    """Record the outcome of each copy a batch finished (named, or why not)."""
    files = ticked = 0
    for item in items:
        exc, drive_path = item.error, item.token
        if exc is None:
            outcome.copied_files += 1
            outcome.copied_bytes += item.result.copied
            outcome.reused_bytes += item.result.reused
            files += 1
            ticked += item.result.reused
            if item.size < copier.BUFFER_SIZE:  # its bytes were not counted while copying
                ticked += item.result.copied
        elif isinstance(exc, copier.CopyCorrupt):
            outcome.problems.append(FileProblem(drive_path, "corrupt-copy", str(exc)))
        elif isinstance(exc, FileExistsError):
            outcome.problems.append(FileProblem(drive_path, "clash", _CLASH))
        elif isinstance(exc, OSError) and exc.errno in _FULL:
            outcome.full = True
            outcome.full_detail = f"{exc.strerror} while writing {drive_path}"
        else:
            outcome.problems.append(FileProblem(drive_path, "io-error", f"{exc.strerror}"))
    if files or ticked:
        tick(files, ticked)
