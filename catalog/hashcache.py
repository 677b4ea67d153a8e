"""The hash cache: (device, inode, size, mtime_ns) -> content hash, so unchanged files
are not read again (by a rescan, an ingest's store scan, the watcher)."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from sneakernet.catalog import session
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.hashing import HASHER, FileHash

# A hash cache row: (device, inode, size, mtime_ns, hash).
CacheRow = tuple[int, int, int, int, str]


def save_found(catalog: Catalog, found: list[FileHash]) -> None:
    """`store_found` in a transaction of its own (nothing to do for no hashes)."""
    if found:
        with session.write(catalog) as con:
            store_found(con, found)


def store_found(con: duckdb.DuckDBPyConnection, found: list[FileHash]) -> None:
    """Upsert what a hash pass read into the hash cache, inside the caller's transaction."""
    if not found:
        return
    # Transposed in C: building a tuple per file first cost ~1 us a file, on the
    # thread the readers share the GIL with.
    digest, size, mtime_ns, inode, device = zip(*found, strict=True)
    _store_cache_table(con, _cache_table(device, inode, size, mtime_ns, digest))


def store_cached_hashes(catalog: Catalog, rows: list[CacheRow]) -> None:
    """Upsert (device, inode, size, mtime_ns, hash) rows into the hash cache."""
    if not rows:
        return
    with session.write(catalog) as con:
        store_cache_rows(con, rows)


def store_cache_rows(con: duckdb.DuckDBPyConnection, rows: list[CacheRow]) -> None:
    """`store_cached_hashes` inside the caller's transaction."""
    if not rows:
        return
    device, inode, size, mtime_ns, digest = zip(*rows, strict=True)
    _store_cache_table(con, _cache_table(device, inode, size, mtime_ns, digest))


def _cache_table(
    device: Sequence[int], inode: Sequence[int], size: Sequence[int], mtime_ns: Sequence[int],
    digest: Sequence[str],
) -> pa.Table:
    return pa.table(
        {
            "device": pa.array(device, pa.uint64()),
            "inode": pa.array(inode, pa.uint64()),
            "size": pa.array(size, pa.int64()),
            "mtime_ns": pa.array(mtime_ns, pa.int64()),
            "hash": pa.array(digest, pa.string()),
        }
    )


def _store_cache_table(con: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    con.register("fresh", table)
    try:
        con.execute(
            "DELETE FROM hash_cache USING fresh"
            " WHERE hash_cache.device = fresh.device AND hash_cache.inode = fresh.inode"
        )
        con.execute(
            "INSERT INTO hash_cache SELECT DISTINCT ON (device, inode)"
            " device, inode, size, mtime_ns, ?, hash FROM fresh",
            [HASHER],
        )
    finally:
        con.unregister("fresh")
