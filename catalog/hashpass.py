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
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sneakernet.catalog import session
from sneakernet.catalog.db import Catalog, sql_path
from sneakernet.catalog.hashing import (
    BUFFER_SIZE,
    HASHER,
    ChangedWhileReading,
    FileHash,
    NotRegularFile,
    hash_file,
)
from sneakernet.catalog.probe import VIDEO_EXTENSIONS
from sneakernet.catalog.progress import ProgressEvent, ProgressFn, report
from sneakernet.catalog.walk import WALK_SCHEMA, Problem

ENTRY_SCHEMA = pa.schema(
    [
        *WALK_SCHEMA,
        ("is_video", pa.bool_()),
        ("hash", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
    ]
)
CHUNK_FILES = 128
CHUNK_BYTES = 32 << 20
CACHE_FLUSH_SECONDS = 5.0  # a kill loses at most this much hashing
CACHE_FLUSH_ROWS = 100_000
_RETRIES_WHEN_CHANGING = 2

# One result per file: (FileHash, None, None) or (None, status, message).
_Outcome = tuple[FileHash | None, str | None, str | None]


def plan(
    con: duckdb.DuckDBPyConnection, walk_file: Path, plan_file: Path, *, rehash: bool
) -> None:
    """Join the walk with the hash cache: a cached hash means 'do not read again'."""
    cached = "NULL::VARCHAR" if rehash else "c.hash"
    # is_video in SQL: a per-name check in the walk's Python loop costs ~4 us a file.
    exts = ", ".join(f"'{ext}'" for ext in sorted(VIDEO_EXTENSIONS))
    is_video = f"(w.kind = 'file' AND regexp_extract(lower(w.path), '\\.[^./]+$') IN ({exts}))"
    con.execute(
        f"COPY (SELECT w.*, {is_video} AS is_video, {cached} AS cached"
        f" FROM read_parquet({sql_path(walk_file)}) w"
        " LEFT JOIN hash_cache c ON w.kind = 'file' AND c.hasher = ?"
        " AND c.device = w.device AND c.inode = w.inode"
        " AND c.size = w.size AND c.mtime_ns = w.mtime_ns)"
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


class HashPass:
    def __init__(
        self,
        catalog: Catalog,
        root: Path,
        *,
        workers: int,
        files_total: int,
        bytes_total: int,
        progress: ProgressFn | None,
    ) -> None:
        self.catalog = catalog
        self.root = os.fsdecode(root).rstrip("/") or "/"
        self.workers = workers
        self.files_total = files_total
        self.bytes_total = bytes_total
        self.progress = progress
        self.stats = HashStats()
        self._meter = _Meter()
        self._files_done = 0
        self._cache_rows: list[tuple[int, int, int, int, str]] = []
        self._flushed_at = time.monotonic()
        self._local = threading.local()

    def run(self, plan_file: Path, entries_file: Path) -> HashStats:
        pending: deque[tuple[dict, list[Future]]] = deque()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sneakernet-hash")
        try:
            with pq.ParquetWriter(entries_file, ENTRY_SCHEMA, compression="zstd") as writer:
                for batch in pq.ParquetFile(plan_file).iter_batches(batch_size=8192):
                    if _all_cached(batch):  # the usual rescan batch: no Python per row
                        writer.write_table(self._cached_table(batch))
                        continue
                    columns = batch.to_pydict()
                    pending.append((columns, self._submit(pool, columns)))
                    if len(pending) > 1:
                        writer.write_table(self._finish(*pending.popleft()))
                while pending:
                    writer.write_table(self._finish(*pending.popleft()))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._flush_cache()
        return self.stats

    def _cached_table(self, batch: pa.RecordBatch) -> pa.Table:
        files = pc.sum(pc.equal(batch.column("kind"), "file")).as_py() or 0
        self.stats.reused_files += files
        self._files_done += files
        self._report()
        n = batch.num_rows
        columns = {f.name: batch.column(f.name) for f in WALK_SCHEMA}
        columns["is_video"] = batch.column("is_video")
        columns["hash"] = batch.column("cached")
        columns["status"] = pa.array(["ok"] * n, pa.string())
        columns["error"] = pa.nulls(n, pa.string())
        return pa.Table.from_pydict(columns, schema=ENTRY_SCHEMA)

    def _submit(self, pool: ThreadPoolExecutor, columns: dict) -> list[Future]:
        futures: list[Future] = []
        chunk: list[tuple[int, str | bytes, tuple[int, int]]] = []
        chunk_bytes = 0
        for i, (kind, cached, size, mtime_ns) in enumerate(
            zip(
                columns["kind"], columns["cached"], columns["size"], columns["mtime_ns"],
                strict=True,
            )
        ):
            if kind != "file" or cached is not None:
                continue
            path = self._abs_path(columns["path"][i], columns["raw_path"][i])
            chunk.append((i, path, (size, mtime_ns)))
            chunk_bytes += size
            if len(chunk) >= CHUNK_FILES or chunk_bytes >= CHUNK_BYTES:
                futures.append(pool.submit(self._hash_chunk, chunk))
                chunk, chunk_bytes = [], 0
        if chunk:
            futures.append(pool.submit(self._hash_chunk, chunk))
        return futures

    def _abs_path(self, path: str, raw: bytes | None) -> str | bytes:
        if raw is None:
            return f"{self.root}/{path}"
        return os.fsencode(self.root) + b"/" + raw

    def _hash_chunk(
        self, chunk: list[tuple[int, str | bytes, tuple[int, int]]]
    ) -> list[tuple[int, _Outcome]]:
        buffer = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = bytearray(BUFFER_SIZE)
        results = []
        done = 0
        for index, path, expected in chunk:
            outcome = _hash_one(path, buffer, expected)
            if outcome[0] is not None:
                done += outcome[0].size
            results.append((index, outcome))
        self._meter.add(done)
        return results

    def _finish(self, columns: dict, futures: list[Future]) -> pa.Table:
        outcomes: dict[int, _Outcome] = {}
        waiting = set(futures)
        while waiting:
            done, waiting = wait(waiting, timeout=0.25, return_when=FIRST_COMPLETED)
            for future in done:
                for index, outcome in future.result():
                    outcomes[index] = outcome
                    self._files_done += 1
                    found = outcome[0]
                    if found is not None:  # cached at once: an interruption keeps it
                        self._cache_rows.append(
                            (found.device, found.inode, found.size, found.mtime_ns, found.hash)
                        )
            self._report()
        table = self._assemble(columns, outcomes)
        if (
            time.monotonic() - self._flushed_at > CACHE_FLUSH_SECONDS
            or len(self._cache_rows) >= CACHE_FLUSH_ROWS
        ):
            self._flush_cache()
        return table

    def _assemble(self, columns: dict, outcomes: dict[int, _Outcome]) -> pa.Table:
        n = len(columns["path"])
        hashes: list[str | None] = list(columns["cached"])
        status = ["ok"] * n
        errors: list[str | None] = [None] * n
        keep = [True] * n
        for index, (found, problem, message) in outcomes.items():
            if found is not None:
                hashes[index] = found.hash
                for name, value in (("size", found.size), ("mtime_ns", found.mtime_ns)):
                    columns[name][index] = value
                columns["inode"][index], columns["device"][index] = found.inode, found.device
                self.stats.hashed_files += 1
                self.stats.hashed_bytes += found.size
                continue
            shown = columns["path"][index]
            self.stats.problems.append(Problem(shown, str(problem), str(message)))
            if problem == "vanished":
                keep[index] = False
            else:
                status[index], errors[index] = str(problem), message
        self.stats.reused_files += sum(
            1 for k, c in zip(columns["kind"], columns["cached"], strict=True)
            if k == "file" and c is not None
        )
        columns.pop("cached")
        columns.update(hash=hashes, status=status, error=errors)
        table = pa.Table.from_pydict(columns, schema=ENTRY_SCHEMA)
        return table if all(keep) else table.filter(pa.array(keep))

    def _report(self) -> None:
        report(
            self.progress,
            ProgressEvent(
                "hash", self._files_done, self.files_total, self._meter.bytes, self.bytes_total
            ),
        )

    def _flush_cache(self) -> None:
        rows, self._cache_rows = self._cache_rows, []
        self._flushed_at = time.monotonic()
        if rows:
            store_cached_hashes(self.catalog, rows)


def _all_cached(batch: pa.RecordBatch) -> bool:
    """Every regular file in the batch has a cached hash, so nothing needs reading."""
    is_file = pc.equal(batch.column("kind"), "file")
    uncached_files = pc.and_(is_file, pc.is_null(batch.column("cached")))
    return not pc.any(uncached_files).as_py()


def store_cached_hashes(catalog: Catalog, rows: list[tuple[int, int, int, int, str]]) -> None:
    """Upsert (device, inode, size, mtime_ns, hash) rows into the hash cache."""
    device, inode, size, mtime_ns, digest = (list(col) for col in zip(*rows, strict=True))
    table = pa.table(
        {
            "device": pa.array(device, pa.uint64()),
            "inode": pa.array(inode, pa.uint64()),
            "size": pa.array(size, pa.int64()),
            "mtime_ns": pa.array(mtime_ns, pa.int64()),
            "hash": pa.array(digest, pa.string()),
        }
    )
    with session.write(catalog) as con:
        con.register("fresh", table)
        con.execute(
            "DELETE FROM hash_cache USING fresh"
            " WHERE hash_cache.device = fresh.device AND hash_cache.inode = fresh.inode"
        )
        con.execute(
            "INSERT INTO hash_cache SELECT DISTINCT ON (device, inode)"
            " device, inode, size, mtime_ns, ?, hash FROM fresh",
            [HASHER],
        )
        con.unregister("fresh")


def _hash_one(path: str | bytes, buffer: bytearray, expected: tuple[int, int]) -> _Outcome:
    for attempt in range(_RETRIES_WHEN_CHANGING + 1):
        try:
            return hash_file(path, buffer, expected if attempt == 0 else None), None, None
        except ChangedWhileReading:
            continue
        except FileNotFoundError:
            return None, "vanished", "deleted before it could be read"
        except NotRegularFile:
            return None, "vanished", "replaced by something that is not a regular file"
        except OSError as exc:
            return None, "unreadable", exc.strerror or str(exc)
    return None, "changing", "changed while being read; not recorded with a hash"
