"""Walking a dataset folder: one lstat per entry, links recorded, never followed.

The walk streams its rows into a Parquet file in batches, so a million-file
tree costs the memory of one batch, a few folder chunks in flight and the set
of visited folders.
"""

from __future__ import annotations

import itertools
import os
import stat
import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISDIR, S_ISLNK, S_ISREG

import pyarrow as pa
import pyarrow.parquet as pq

from sneakernet.catalog.fstype import LOCAL_WALK_WORKERS
from sneakernet.catalog.hashing import clamp_mtime_ns

BATCH_ROWS = 16384
WALK_WORKERS = LOCAL_WALK_WORKERS  # see fstype: more only where each stat waits on a server
CHUNK_ENTRIES = 4096  # a folder of a million files is read a chunk at a time
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

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


_INT_FIELDS = [WALK_SCHEMA.field(name) for name in ("size", "mtime_ns", "mode", "inode", "device")]
_INT_CODES = ("q", "q", "i", "Q", "Q")  # the same types as _INT_FIELDS, for array.array


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
    workers: int = WALK_WORKERS,
) -> WalkResult:
    """Walk `root`, writing one row per regular file and symlink to `out`.

    The walk is an lstat per entry, and on these machines the syscall is most of
    its cost: each folder is opened once and its entries stat-ed by name in it
    (fstatat, no path lookup from the root), in a reader thread while this
    one turns the rows into Arrow and Parquet. Rows are kept as columns
    (no tuple per row for the garbage collector to trace) and leave in
    batches, in no particular order; problems are sorted by path.
    """
    result = WalkResult()
    walker = _Walker(str(root), {os.path.realpath(p) for p in exclude}, result)
    batch = _Columns()
    with (
        pq.ParquetWriter(out, WALK_SCHEMA, compression="zstd") as writer,
        ThreadPoolExecutor(workers, thread_name_prefix="sneakernet-walk") as pool,
    ):
        todo: deque[_Job] = deque([_Job(str(root), "")])
        running: set[Future] = set()
        try:
            while todo or running:
                while todo and len(running) < 2 * workers:  # bounded: a few chunks in flight
                    running.add(pool.submit(walker.read, todo.popleft()))
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    part = future.result()
                    if part.rest is not None:
                        todo.appendleft(part.rest)  # finish an open folder first
                    todo.extend(part.folders)
                    batch.extend(part.columns)
                if len(batch) >= BATCH_ROWS:
                    writer.write_table(batch.table())
                    batch = _Columns()
                    if on_batch:
                        on_batch(result)
        finally:  # interrupted: close the folders still open
            for future in running:
                if not future.cancel() and future.exception() is None:
                    todo.append(future.result().rest or _Job("", ""))
            for job in todo:
                job.close()
        writer.write_table(batch.table())
    result.problems.sort(key=lambda p: p.path)
    return result


class _Columns:
    """One batch of walk rows, column by column (ints and strings: nothing for the GC).

    Almost every row is a regular file with a UTF-8 name, so the columns that are
    the same for all of those (kind, raw_path, link_target) are kept sparse, by row,
    and filled in once per batch: appends are most of the walk's Python per entry.
    """

    __slots__ = ("dense", "links", "raw")

    def __init__(self) -> None:
        # path, then size, mtime_ns, mode, inode, device as machine ints: no int object
        # per row lives until the batch is written, and Arrow takes their memory as is
        self.dense: tuple[list | array, ...] = ([], *(array(code) for code in _INT_CODES))
        self.raw: dict[int, bytes] = {}  # exact bytes of names that are not UTF-8
        self.links: dict[int, str] = {}  # the symlinks' rows, with their targets

    def __len__(self) -> int:
        return len(self.dense[0])

    def extend(self, other: _Columns) -> None:
        offset = len(self)
        for mine, theirs in zip(self.dense, other.dense, strict=True):
            mine.extend(theirs)
        self.raw.update((row + offset, raw) for row, raw in other.raw.items())
        self.links.update((row + offset, link) for row, link in other.links.items())

    def table(self) -> pa.Table:
        n = len(self)
        path, size, mtime_ns, mode, inode, device = self.dense
        kind: list[str] = ["file"] * n
        raw: list[bytes | None] = [None] * n
        link: list[str | None] = [None] * n
        for row, target in self.links.items():
            kind[row], link[row] = "symlink", target
        for row, name in self.raw.items():
            raw[row] = name
        ints = [pa.Array.from_buffers(f.type, n, [None, pa.py_buffer(col)])
                for col, f in zip((size, mtime_ns, mode, inode, device), _INT_FIELDS, strict=True)]
        columns = [pa.array(path, pa.string()), pa.array(raw, pa.binary()),
                   pa.array(kind, pa.string()), *ints, pa.array(link, pa.string())]
        return pa.Table.from_arrays(columns, schema=WALK_SCHEMA)


@dataclass(slots=True)
class _Job:
    """A folder to read, or the rest of one whose first chunks were read."""

    folder: str
    rel: str
    fd: int = -1  # the open folder: entries are stat-ed by name relative to it (fstatat)
    entries: Iterator[os.DirEntry] | None = None

    def close(self) -> None:
        if self.entries is not None:
            self.entries.close()  # type: ignore[attr-defined]
            self.entries = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(slots=True)
class _Part:
    columns: _Columns
    folders: list[_Job]
    rest: _Job | None


class _Walker:
    def __init__(self, root: str, excluded: set[str], result: WalkResult) -> None:
        self.root = root
        self.excluded = excluded
        self.excluded_names = {os.path.basename(p) for p in excluded}
        self.result = result
        self.visited: set[tuple[int, int]] = set()
        self.lock = threading.Lock()

    def read(self, job: _Job) -> _Part:
        columns, folders = _Columns(), []
        if job.entries is None:
            try:
                # O_NOFOLLOW: a folder swapped for a symlink since its parent was read is refused
                job.fd = os.open(job.folder, _FOLDER_FLAGS)
                info = os.fstat(job.fd)
                with self.lock:
                    seen = (info.st_dev, info.st_ino) in self.visited
                    self.visited.add((info.st_dev, info.st_ino))
                if seen:  # a bind mount looping back into the tree
                    job.close()
                    return _Part(columns, folders, None)
                job.entries = os.scandir(job.fd)
            except OSError as exc:
                job.close()
                self._problem(Problem(_shown(job.rel) or ".", "unreadable-folder", _reason(exc)))
                return _Part(columns, folders, None)
        rest = None
        try:
            chunk = list(itertools.islice(job.entries, CHUNK_ENTRIES))
            rest = job if len(chunk) == CHUNK_ENTRIES else None
            self._visit(chunk, job, columns, folders)
        finally:
            if rest is None:
                job.close()
        return _Part(columns, folders, rest)

    def _visit(
        self, chunk: list[os.DirEntry], job: _Job, columns: _Columns, folders: list[_Job]
    ) -> None:
        path_, size_, mtime_, mode_, inode_, device_ = (col.append for col in columns.dense)
        row = len(columns)
        rel, fd = job.rel, job.fd
        folder = job.folder.rstrip("/")  # "" for the root folder "/": children are "/name"
        prefix = f"{rel}/" if rel else ""
        names = [entry.name for entry in chunk]
        if not self.excluded_names.isdisjoint(names):  # one check a chunk, not one a name
            kept = [(e, n) for e, n in zip(chunk, names, strict=True)
                    if f"{folder}/{n}" not in self.excluded]
            chunk, names = [e for e, _ in kept], [n for _, n in kept]
        try:  # one check for the whole chunk: almost every name is plain text
            "/".join(names).encode("utf-8")
            plain = True
        except UnicodeEncodeError:
            plain = False
        files = symlinks = size_total = 0
        problems: list[Problem] = []
        for entry, name in zip(chunk, names, strict=True):
            try:
                st = entry.stat(follow_symlinks=False)
                mode = st.st_mode
                if S_ISREG(mode):
                    files += 1
                    size_total += st.st_size
                elif S_ISDIR(mode):
                    folders.append(_Job(f"{folder}/{name}", prefix + name))
                    continue
                elif S_ISLNK(mode):
                    columns.links[row] = display_name(os.readlink(name, dir_fd=fd))[0]
                    symlinks += 1
                else:
                    problems.append(Problem(_shown(prefix + name), "skipped", _special(mode)))
                    continue
            except FileNotFoundError:
                problems.append(Problem(_shown(prefix + name), "vanished", "gone during scan"))
                continue
            except OSError as exc:
                problems.append(Problem(_shown(prefix + name), "unreadable", _reason(exc)))
                continue
            if plain:
                path_(prefix + name)
            else:
                shown, raw = display_name(prefix + name)
                path_(shown)
                if raw is not None:
                    columns.raw[row] = raw
            size_(st.st_size)
            try:
                mtime_(st.st_mtime_ns)
            except OverflowError:  # past 2262 or before 1677: see hashing.clamp_mtime_ns
                mtime_(clamp_mtime_ns(st.st_mtime_ns))
            mode_(mode)
            inode_(st.st_ino)
            device_(st.st_dev)
            row += 1
        with self.lock:
            self.result.files += files
            self.result.symlinks += symlinks
            self.result.bytes += size_total
            self.result.problems.extend(problems)

    def _problem(self, problem: Problem) -> None:
        with self.lock:
            self.result.problems.append(problem)


def _special(mode: int) -> str:
    what = next((name for test, name in _SPECIAL_KINDS if test(mode)), "not a regular file")
    return f"{what}, not recorded"


def _shown(rel: str) -> str:
    return display_name(rel)[0]


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__
