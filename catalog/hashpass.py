"""The hash phase of a scan: read every file the cache cannot vouch for.

Input is the walk joined with the hash cache (a Parquet "plan"); output is the
version's entries (another Parquet file). New hashes reach the catalog's hash
cache every couple of seconds in a short transaction, so a scan killed at any
point loses at most those seconds of hashing.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sneakernet.catalog import hashcache
from sneakernet.catalog.db import Catalog, sql_path
from sneakernet.catalog.errors import CatalogBusyError
from sneakernet.catalog.hashing import (
    BUFFER_SIZE,
    HASHER,
    FileHash,
    aligned_buffer,
    trusted_mtime_sql,
)
from sneakernet.catalog.hashworker import HelperPool, Outcome, hash_one
from sneakernet.catalog.media import VIDEO_EXTENSIONS
from sneakernet.catalog.progress import ProgressEvent, ProgressFn, report
from sneakernet.catalog.versions import ENTRY_SCHEMA
from sneakernet.catalog.walk import WALK_SCHEMA, Problem

CHUNK_FILES = 128
CHUNK_BYTES = 32 << 20
# Chunks of files this small on average are read by one thread at a time. Each such
# file is a few short syscalls, each dropping and taking the GIL: two threads at it
# measured slower than one (100,000 files of 1-64 KiB: hash phase 4.4 s and 7.2 s of
# CPU with two, 3.3-4.0 s and 4.3 s with one), while big reads overlap well.
SERIAL_MEAN_BYTES = BUFFER_SIZE
# ... and, once a pass has this many small files to read, the threads that find that
# one thread busy hand their chunks to helper processes (catalog/hashworker.py):
# starting one costs ~50 ms, about what 4,000 small files take.
HELPER_MIN_FILES = 4096
HELPED_CHUNK_FILES = 512  # fewer round trips to a helper (1,024: 2.1 s, 128: 2.6 s per 100,000)
CACHE_FLUSH_SECONDS = 5.0  # a kill loses at most this much hashing
CACHE_FLUSH_ROWS = 100_000
# A periodic flush that finds the catalog held (a long query in another process) does
# not wait: its rows wait for the next try, up to this many (~50 MB), then it waits.
CACHE_HOLD_ROWS = 2 * CACHE_FLUSH_ROWS

_hash_one = hash_one  # looked up here on every file: tests wrap it


def plan(
    con: duckdb.DuckDBPyConnection, walk_file: Path, plan_file: Path, *, rehash: bool
) -> None:
    """Join the walk with the hash cache: a cached hash means 'do not read again'."""
    cached = "NULL::VARCHAR" if rehash else "c.hash"
    # is_video in SQL: a per-name check in the walk's Python loop costs ~4 us a file.
    exts = ", ".join(f"'{ext}'" for ext in sorted(VIDEO_EXTENSIONS))
    is_video = f"(w.kind = 'file' AND regexp_extract(lower(w.path), '\\.[^./]+$') IN ({exts}))"
    # is_file and to_read are decided here, not with pyarrow.compute in the hash pass:
    # importing that module costs a fresh process ~50 ms.
    con.execute(
        f"COPY (SELECT w.*, {is_video} AS is_video, {cached} AS cached,"
        " coalesce(w.kind = 'file', false) AS is_file,"
        f" coalesce(w.kind = 'file' AND {cached} IS NULL, false) AS to_read"
        f" FROM read_parquet({sql_path(walk_file)}) w"
        " LEFT JOIN hash_cache c ON w.kind = 'file' AND c.hasher = ?"
        " AND c.device = w.device AND c.inode = w.inode"
        " AND c.size = w.size AND c.mtime_ns = w.mtime_ns"
        f" AND {trusted_mtime_sql('w.mtime_ns')})"
        f" TO {sql_path(plan_file)} (FORMAT parquet, COMPRESSION zstd)",
        [HASHER],
    )


@dataclass(slots=True)
class HashStats:
    hashed_files: int = 0
    hashed_bytes: int = 0
    reused_files: int = 0
    problems: list[Problem] = field(default_factory=list)


class _Meter:
    """Bytes hashed so far, shared by the workers, for the progress bar only.

    No lock: a lost update between two threads costs a progress figure, never
    a result, and a lock per file is measurable on small files.
    """

    def __init__(self) -> None:
        self.bytes = 0

    def add(self, n: int) -> None:
        self.bytes += n


# A file to read: (row in its batch, absolute path, (size, mtime_ns) and (inode, device)
# as the walk saw them).
_Task = tuple[int, str | bytes, tuple[int, int], tuple[int, int]]
# What came of it: (row, FileHash, whether it is exactly as walked (the common case: the
# batch's columns stand), None, None), or (row, None, False, status, message).
_Result = tuple[int, FileHash | None, bool, str | None, str | None]


class HashPass:
    """Reads the files of a plan the cache cannot vouch for, in worker threads.

    The main thread does as little Python per file as it can: the GIL is shared,
    and every microsecond it holds it is one the readers wait for. Columns stay
    Arrow; only the rows that were read are touched one by one. `serial_small`
    is False on a file server (fstype.ReadProfile.remote): there a small file's
    open and reads wait on the network, not the CPU, so every thread reads its
    own chunk and no helper process is started.
    """

    def __init__(
        self,
        catalog: Catalog,
        root: Path,
        *,
        workers: int,
        serial_small: bool = True,
        files_total: int,
        bytes_total: int,
        progress: ProgressFn | None,
    ) -> None:
        self.catalog = catalog
        self.root = os.fsdecode(root).rstrip("/") or "/"
        self.workers = workers
        self.serial_small = serial_small
        self.files_total = files_total
        self.bytes_total = bytes_total
        self.progress = progress
        self.stats = HashStats()
        self._meter = _Meter()
        self._files_done = 0
        self._fresh: list[FileHash] = []
        self._unkept: set[Future] = set()  # chunks whose hashes are not in _fresh yet
        self._flushed_at = time.monotonic()
        self._local = threading.local()
        self._small_files = threading.Lock()
        self._small_seen = 0  # small files handed to the workers so far
        self._helpers = HelperPool(most=workers - 1 if serial_small else 0)

    def run(self, plan_file: Path, entries_file: Path) -> HashStats:
        pending: deque[tuple[pa.RecordBatch, list[Future]]] = deque()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sneakernet-hash")
        finished = False
        try:
            with pq.ParquetWriter(entries_file, ENTRY_SCHEMA, compression="zstd") as writer:
                for batch in pq.ParquetFile(plan_file).iter_batches(batch_size=8192):
                    to_read = batch.column("to_read")
                    if not to_read.true_count:  # the usual rescan batch: no Python per row
                        writer.write_table(self._cached_table(batch))
                        continue
                    pending.append((batch, self._submit(pool, batch, to_read)))
                    if len(pending) > 1:
                        writer.write_table(self._finish(*pending.popleft()))
                while pending:
                    writer.write_table(self._finish(*pending.popleft()))
            finished = True
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for future in self._unkept:  # interrupted: chunks done meanwhile are kept too
                if future.done() and not future.cancelled() and not future.exception():
                    self._fresh.extend(_found(future.result()))
            self._helpers.close()
            if not finished:
                self._flush_cache()
        return self.stats

    def unsaved(self) -> list[FileHash]:
        """The hashes of a finished pass not in the cache yet, for the caller's commit.

        Storing them in the commit's own transaction saves a catalog session (~10 ms,
        a twentieth of a 2 GiB scan); the caller stores them on its failure path too.
        """
        fresh, self._fresh = self._fresh, []
        return fresh

    def _cached_table(self, batch: pa.RecordBatch) -> pa.Table:
        files = batch.column("is_file").true_count
        self.stats.reused_files += files
        self._files_done += files
        self._report()
        return _entries(batch, batch.column("cached"), None, None)

    def _submit(
        self, pool: ThreadPoolExecutor, batch: pa.RecordBatch, to_read: pa.Array
    ) -> list[Future]:
        rows = [row for row, read in enumerate(to_read.to_pylist()) if read]

        def picked(name: str) -> list:
            values = batch.column(name).to_pylist()
            return values if len(rows) == len(values) else [values[row] for row in rows]

        paths = [
            f"{self.root}/{path}" if raw is None else os.fsencode(self.root) + b"/" + raw
            for path, raw in zip(picked("path"), picked("raw_path"), strict=True)
        ]
        sizes = picked("size")
        tasks: list[_Task] = list(
            zip(
                rows,
                paths,
                zip(sizes, picked("mtime_ns"), strict=True),
                zip(picked("inode"), picked("device"), strict=True),
                strict=True,
            )
        )
        futures: list[Future] = []
        start = chunk_bytes = 0
        most = CHUNK_FILES if self._small_seen < HELPER_MIN_FILES else HELPED_CHUNK_FILES
        for i, size in enumerate(sizes):
            chunk_bytes += size
            if i + 1 - start >= most or chunk_bytes >= CHUNK_BYTES:
                futures.append(self._submit_chunk(pool, tasks[start : i + 1], chunk_bytes))
                start, chunk_bytes = i + 1, 0
        if start < len(tasks):
            futures.append(self._submit_chunk(pool, tasks[start:], chunk_bytes))
        self._unkept.update(futures)
        return futures

    def _submit_chunk(
        self, pool: ThreadPoolExecutor, chunk: list[_Task], chunk_bytes: int
    ) -> Future:
        small = self.serial_small and chunk_bytes < SERIAL_MEAN_BYTES * len(chunk)
        if small:
            self._small_seen += len(chunk)
        return pool.submit(self._hash_chunk, chunk, small)

    def _hash_chunk(self, chunk: list[_Task], small: bool) -> list[_Result]:
        if not small:
            return self._hash_files(chunk)
        helpers_pay = self.workers > 1 and self._small_seen >= HELPER_MIN_FILES
        if not self._small_files.acquire(blocking=not helpers_pay):
            outcomes = self._helpers.hash([(path, *seen) for _row, path, seen, _id in chunk])
            if outcomes is not None:
                return self._results(chunk, outcomes)
            self._small_files.acquire()
        try:
            return self._hash_files(chunk)
        finally:
            self._small_files.release()

    def _hash_files(self, chunk: list[_Task]) -> list[_Result]:
        buffer = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = aligned_buffer()
        return self._results(chunk, [_hash_one(task[1], buffer, task[2]) for task in chunk])

    def _results(self, chunk: list[_Task], outcomes: list[Outcome]) -> list[_Result]:
        results: list[_Result] = []
        done = 0
        for (row, _path, expected, identity), (found, problem, message) in zip(
            chunk, outcomes, strict=True
        ):
            if found is not None:
                done += found.size
                same = (found.size, found.mtime_ns) == expected and (
                    found.inode, found.device
                ) == identity
                results.append((row, found, same, None, None))
            else:
                results.append((row, None, False, problem, message))
        self._meter.add(done)
        return results

    def _finish(self, batch: pa.RecordBatch, futures: list[Future]) -> pa.Table:
        results: list[_Result] = []
        waiting = set(futures)
        while waiting:
            done, waiting = wait(waiting, timeout=0.25, return_when=FIRST_COMPLETED)
            for future in done:
                part = future.result()
                results.extend(part)
                self._files_done += len(part)
                self._fresh.extend(_found(part))  # cached at once: an interruption keeps them
                self._unkept.discard(future)
            self._report()
        table = self._assemble(batch, results)
        if (
            time.monotonic() - self._flushed_at > CACHE_FLUSH_SECONDS
            or len(self._fresh) >= CACHE_FLUSH_ROWS
        ):
            self._flush_cache(wait=len(self._fresh) >= CACHE_HOLD_ROWS)
        return table

    def _assemble(self, batch: pa.RecordBatch, results: list[_Result]) -> pa.Table:
        hashes: list[str | None] = batch.column("cached").to_pylist()
        status: list[str] | None = None
        errors: list[str | None] | None = None
        moved: dict[int, FileHash] = {}  # read as something other than walked
        drop: list[int] = []
        read = 0
        for row, found, same, problem, message in results:
            if found is not None:
                hashes[row] = found.hash
                read += 1
                self.stats.hashed_bytes += found.size
                if not same:
                    moved[row] = found
                continue
            self.stats.problems.append(Problem(batch.column("path")[row].as_py(), str(problem),
                                               str(message)))
            if problem == "vanished":
                drop.append(row)
                continue
            if status is None or errors is None:
                status, errors = ["ok"] * batch.num_rows, [None] * batch.num_rows
            status[row], errors[row] = str(problem), message
        self.stats.hashed_files += read
        self.stats.reused_files += batch.column("is_file").true_count - len(results)
        if moved:
            batch = _restat(batch, moved)
        table = _entries(batch, pa.array(hashes, pa.string()), status, errors)
        return _without_rows(table, drop) if drop else table

    def _report(self) -> None:
        report(
            self.progress,
            ProgressEvent(
                "hash", self._files_done, self.files_total, self._meter.bytes, self.bytes_total
            ),
        )

    def _flush_cache(self, *, wait: bool = True) -> None:
        """Store the hashes read so far; without `wait`, only if the catalog is free now.

        A scan must not die because another process reads the catalog for a while:
        the hashes wait in memory (bounded by CACHE_HOLD_ROWS) and go with the commit.
        """
        catalog = self.catalog if wait else Catalog(self.catalog.path, timeout=0)
        self._flushed_at = time.monotonic()
        try:
            hashcache.save_found(catalog, self._fresh)
        except CatalogBusyError:
            if wait:
                raise
            return
        self._fresh = []


def _found(part: list[_Result]) -> Iterator[FileHash]:
    return (found for _row, found, _same, _problem, _message in part if found is not None)


def _without_rows(table: pa.Table, rows: list[int]) -> pa.Table:
    """`table` less the given rows (files that vanished), by slices: no pyarrow.compute."""
    parts, start = [], 0
    for row in sorted(rows):
        parts.append(table.slice(start, row - start))
        start = row + 1
    parts.append(table.slice(start))
    return pa.concat_tables(parts)


def _entries(
    batch: pa.RecordBatch,
    hashes: pa.Array,
    status: list[str] | None,
    errors: list[str | None] | None,
) -> pa.Table:
    """The plan batch as entry rows: its walk columns, the hashes, status and error."""
    n = batch.num_rows
    columns = [batch.column(f.name) for f in WALK_SCHEMA]
    columns += [
        batch.column("is_video"),
        hashes,
        pa.array(status if status is not None else ["ok"] * n, pa.string()),
        pa.array(errors, pa.string()) if errors is not None else pa.nulls(n, pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=ENTRY_SCHEMA)


def _restat(batch: pa.RecordBatch, moved: dict[int, FileHash]) -> pa.RecordBatch:
    """Rows whose file was read as other than walked take the size, mtime and identity read."""
    columns = {name: batch.column(name).to_pylist()
               for name in ("size", "mtime_ns", "inode", "device")}
    for row, found in moved.items():
        columns["size"][row], columns["mtime_ns"][row] = found.size, found.mtime_ns
        columns["inode"][row], columns["device"][row] = found.inode, found.device
    for name, values in columns.items():
        index = batch.schema.get_field_index(name)
        batch = batch.set_column(index, name, pa.array(values, batch.schema.field(name).type))
    return batch
