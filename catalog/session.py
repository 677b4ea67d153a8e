"""Short write sessions on a catalog for a scan: attach the file, not a new DuckDB.

Opening a catalog with `duckdb.connect` builds a whole DuckDB instance (its
function catalog, ICU, Parquet, JSON) every time: about 20 ms to open and a few
more to close on these machines, whatever the file holds. A scan opens the
catalog for a moment several times (label check, plan, cache flushes, commit),
and a rescan of an unchanged tree is little else. So the scan keeps one
in-memory DuckDB instance per process and only ATTACHes the catalog file for
each short transaction, DETACHing it right after: about 1.5 ms. The file lock
is the same as a `connect`'s and is released at DETACH, so other processes wait
exactly as long as before, no longer.

Same contract as `Catalog.write()`: one transaction committed on success,
retries while another process holds the file, the schema checked (created or
upgraded) on the way in, the same errors.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from sneakernet.catalog import db
from sneakernet.catalog.db import Catalog, sql_path

# A second holder of the file in this process (a Catalog.write() elsewhere) is a
# lock conflict like another process's, so it is waited for too.
_BUSY = re.compile(
    f"{db._LOCK_MESSAGE.pattern}|Unique file handle conflict", re.IGNORECASE
)

_instance: duckdb.DuckDBPyConnection | None = None
_instance_pid = 0
_guard = threading.Lock()
_path_locks: dict[str, threading.Lock] = {}
_aliases = itertools.count()


def _shared_instance() -> duckdb.DuckDBPyConnection:
    global _instance, _instance_pid
    with _guard:
        if _instance is None or _instance_pid != os.getpid():  # a forked child makes its own
            _instance = duckdb.connect(":memory:", config=db._config())
            _instance_pid = os.getpid()
        return _instance


def close_shared() -> None:
    """Drop the shared instance and its buffer pool; the next session makes a new one.

    For long-running callers (the watcher): between scans the pool would
    otherwise keep the last scan's peak resident.
    """
    global _instance
    with _guard:
        if _instance is not None and _instance_pid == os.getpid():
            _instance.close()
        _instance = None


def _path_lock(path: str) -> threading.Lock:
    with _guard:
        return _path_locks.setdefault(path, threading.Lock())


@contextmanager
def write(catalog: Catalog) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection on `catalog` inside one transaction, committed on success."""
    path = os.path.realpath(catalog.path)
    # One attachment of a file per process at a time: sessions of this process queue here.
    with _path_lock(path):
        con = _shared_instance().cursor()
        try:
            alias = _attach(con, catalog)
            try:
                yield from _transaction(con, catalog)
            finally:
                con.execute("USE memory")
                con.execute(f"DETACH {alias}")
        finally:
            con.close()


def _transaction(
    con: duckdb.DuckDBPyConnection, catalog: Catalog
) -> Iterator[duckdb.DuckDBPyConnection]:
    db._check_or_migrate(con, catalog.path, read_only=False)
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        db._rollback_quietly(con)
        raise


def _attach(con: duckdb.DuckDBPyConnection, catalog: Catalog) -> str:
    """ATTACH the catalog file (created if missing) and make it the default database."""
    catalog.create_if_missing()  # whole or not at all, never by ATTACH itself
    alias = f"sneakernet_catalog_{next(_aliases)}"
    statement = f"ATTACH {sql_path(catalog.path)} AS {alias} (READ_WRITE)"
    deadline = time.monotonic() + catalog.timeout
    delay = 0.005
    while True:
        try:
            con.execute(statement)
            break
        except duckdb.Error as exc:
            if not _BUSY.search(str(exc)):
                raise db._open_error(catalog.path, exc) from exc
            if time.monotonic() >= deadline:
                raise db._busy_error(catalog.path, exc, catalog.timeout) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
    try:
        con.execute(f"USE {alias}")
    except BaseException:
        con.execute(f"DETACH {alias}")
        raise
    return alias
