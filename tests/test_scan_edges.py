"""scan at the edges of what a file system records: times the catalog cannot hold.

Real files in tmp_path and a real DuckDB catalog (tests/test_scan_hostile.py has the
names, links, special files, races and unusable catalogs).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.scan import scan

YEAR_2300 = 10_413_792_000  # seconds: past int64 nanoseconds (April 2262)
INT64_MAX = 2**63 - 1


def _far_future(path: Path) -> None:
    os.utime(path, (YEAR_2300, YEAR_2300))
    if path.stat().st_mtime_ns <= INT64_MAX:
        pytest.skip("this file system cannot keep a time past 2262")


def _entry(catalog: Catalog, path: str) -> tuple:
    with catalog.read() as con:
        return con.execute(
            "SELECT version, mtime_ns, hash FROM entries WHERE path = ?"
            " ORDER BY version DESC LIMIT 1", [path]
        ).fetchone()


def test_a_file_dated_past_2262_is_recorded_and_never_trusted_to_the_cache(tmp_path: Path):
    """One such file failed the whole scan with OverflowError (the catalog's BIGINT)."""
    root = tmp_path / "tree"
    root.mkdir()
    (root / "normal.txt").write_bytes(b"normal")
    future = root / "future.txt"
    future.write_bytes(b"first")
    _far_future(future)
    catalog = Catalog(tmp_path / "cat.duckdb")
    first = scan(catalog, root, "t")
    assert first.version == 1 and not first.problems
    _version, mtime_ns, digest = _entry(catalog, "future.txt")
    assert mtime_ns == INT64_MAX  # the nearest time the catalog can hold
    again = scan(catalog, root, "t")
    assert again.version is None and again.hashed_files == 1  # read again, not cached
    future.write_bytes(b"other")  # same size, and the same far-off time put back
    _far_future(future)
    changed = scan(catalog, root, "t")
    assert changed.version == 2
    assert _entry(catalog, "future.txt")[2] != digest
