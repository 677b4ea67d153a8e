"""Packing one drive: copy each planned file with hash-on-read and read-back.

One worker per drive, so each physical drive sees one sequential writer. A
file already at its final name on the drive was verified before it got that
name, so a re-run skips it; a temporary file left by a killed run is
continued (copier.copy_verified).
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from sneakernet.transfer import copier
from sneakernet.transfer import driveformat as fmt
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


def pack_drive(
    root: Path, files: Path, outcome: DriveOutcome, tick: Tick, stop: threading.Event
) -> DriveOutcome:
    started = time.monotonic()
    partial = root / fmt.PARTIAL_DIR
    partial.mkdir(parents=True, exist_ok=True)
    buffer = bytearray(copier.BUFFER_SIZE)
    try:
        for batch in pq.ParquetFile(files).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                if stop.is_set():
                    raise Interrupted
                if not _pack_one(root, partial, row, outcome, buffer, tick, stop):
                    return outcome
    finally:
        outcome.seconds = time.monotonic() - started
    return outcome


def _pack_one(
    root: Path,
    partial: Path,
    row: dict,
    outcome: DriveOutcome,
    buffer: bytearray,
    tick: Tick,
    stop: threading.Event,
) -> bool:
    """Put one file on the drive; False when the drive is full and packing it must stop."""
    final = root / row["drive_path"]
    try:
        info = os.lstat(final)
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISREG(info.st_mode) and info.st_size == row["size"]:
            outcome.present_files += 1
            tick(1, row["size"])
            return True
        outcome.problems.append(
            FileProblem(
                row["drive_path"], "clash", "the drive already holds something else at this path"
            )
        )
        return True
    source = os.path.join(row["root"] or "", row["path"])
    try:
        src = os.open(source, READ_FLAGS)
    except FileNotFoundError:
        outcome.problems.append(FileProblem(row["drive_path"], "missing-source", source))
        return True
    except OSError as exc:
        outcome.problems.append(
            FileProblem(row["drive_path"], "unreadable", f"{source}: {exc.strerror}")
        )
        return True
    tmp = partial / f"{row['hash']}.part"

    def on_bytes(n: int) -> None:
        if stop.is_set():
            raise Interrupted
        tick(0, n)

    try:
        result = copier.copy_verified(
            src,
            tmp,
            size=row["size"],
            digest=row["hash"],
            buffer=buffer,
            readback=True,
            on_bytes=on_bytes,
        )
        os.utime(tmp, ns=(row["mtime_ns"], row["mtime_ns"]))
        copier.place(tmp, final)
    except copier.SourceMismatch as exc:
        outcome.problems.append(
            FileProblem(
                row["drive_path"], "changed", f"the source changed since it was scanned: {exc}"
            )
        )
        return True
    except copier.CopyCorrupt as exc:
        outcome.problems.append(FileProblem(row["drive_path"], "corrupt-copy", str(exc)))
        return True
    except FileExistsError:
        outcome.problems.append(
            FileProblem(
                row["drive_path"], "clash", "the drive already holds something else at this path"
            )
        )
        return True
    except OSError as exc:
        if exc.errno in _FULL:
            outcome.full = True
            outcome.full_detail = f"{exc.strerror} while writing {row['drive_path']}"
            return False
        outcome.problems.append(FileProblem(row["drive_path"], "io-error", f"{exc.strerror}"))
        return True
    finally:
        os.close(src)
    outcome.copied_files += 1
    outcome.copied_bytes += result.copied
    outcome.reused_bytes += result.reused
    tick(1, result.reused)
    return True
