"""Walking a dataset folder: one lstat per entry, links recorded, never followed.

The walk streams its rows into a Parquet file in batches, so a million-file
tree costs the memory of one batch plus the set of visited folders.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

BATCH_ROWS = 16384

WALK_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("raw_path", pa.binary()),
        ("kind", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("mode", pa.int32()),
        ("inode", pa.uint64()),
        ("device", pa.uint64()),
        ("link_target", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class Problem:
    """Something about one path that the user should hear about."""

    path: str
    kind: str  # unreadable-folder, unreadable, skipped, vanished, changing, broken-video
    message: str


@dataclass(slots=True)
class WalkResult:
    files: int = 0
    symlinks: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def display_name(name: str) -> tuple[str, bytes | None]:
    """Readable text for a file name, plus its exact bytes if the text is not exact."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(name)
        return raw.decode("utf-8", "backslashreplace"), raw
    return name, None


def walk_to_parquet(
    root: Path,
    out: Path,
    *,
    exclude: Iterable[Path] = (),
    on_batch: Callable[[WalkResult], None] | None = None,
) -> WalkResult:
    """Walk `root`, writing one row per regular file and symlink to `out`."""
    result = WalkResult()
    excluded = {os.path.realpath(p) for p in exclude}
    rows: list[tuple] = []
    with pq.ParquetWriter(out, WALK_SCHEMA, compression="zstd") as writer:
        for row in _walk(str(root), result, excluded):
            rows.append(row)
            if len(rows) >= BATCH_ROWS:
                writer.write_table(_to_table(rows))
                rows.clear()
                if on_batch:
                    on_batch(result)
        writer.write_table(_to_table(rows))
    return result


def _walk(root: str, result: WalkResult, excluded: set[str]) -> Iterable[tuple]:
    visited: set[tuple[int, int]] = set()
    stack: list[tuple[str, str]] = [(root, "")]
    while stack:
        folder, rel = stack.pop()
        try:
            info = os.stat(folder, follow_symlinks=False)
            if (info.st_dev, info.st_ino) in visited:
                continue  # a bind mount looping back into the tree
            visited.add((info.st_dev, info.st_ino))
            entries = list(os.scandir(folder))
        except OSError as exc:
            result.problems.append(
                Problem(_shown(rel) or ".", "unreadable-folder", _reason(exc))
            )
            continue
        for entry in entries:
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            if entry.path in excluded:
                continue
            try:
                yield from _visit(entry, child_rel, result, stack)
            except FileNotFoundError:
                result.problems.append(Problem(_shown(child_rel), "vanished", "gone during scan"))
            except OSError as exc:
                result.problems.append(Problem(_shown(child_rel), "unreadable", _reason(exc)))


def _visit(entry: os.DirEntry, rel: str, result: WalkResult, stack: list) -> Iterable[tuple]:
    st = entry.stat(follow_symlinks=False)
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        stack.append((entry.path, rel))
        return
    path, raw = display_name(rel)
    if stat.S_ISREG(mode):
        result.files += 1
        result.bytes += st.st_size
        yield path, raw, "file", st.st_size, st.st_mtime_ns, mode, st.st_ino, st.st_dev, None
    elif stat.S_ISLNK(mode):
        result.symlinks += 1
        target, _ = display_name(os.readlink(entry.path))
        yield path, raw, "symlink", st.st_size, st.st_mtime_ns, mode, st.st_ino, st.st_dev, target
    else:
        what = next((name for test, name in _SPECIAL_KINDS if test(mode)), "not a regular file")
        result.problems.append(Problem(path, "skipped", f"{what}, not recorded"))


def _shown(rel: str) -> str:
    return display_name(rel)[0]


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def _to_table(rows: list[tuple]) -> pa.Table:
    """Rows to an Arrow table; transposing with zip runs in C, unlike per-column appends."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in WALK_SCHEMA]
    return pa.table(
        [pa.array(col, type=f.type) for col, f in zip(columns, WALK_SCHEMA, strict=True)],
        schema=WALK_SCHEMA,
    )
