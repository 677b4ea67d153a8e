"""scan at the edges: times the catalog cannot hold, a work folder with no room left.

Real files in tmp_path and a real DuckDB catalog (tests/test_scan_hostile.py has the
names, links, special files, races and unusable catalogs).
"""

from __future__ import annotations

import os
import subprocess
import sys
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


def _in_small_tmpfs(folder: Path) -> list[str]:
    """A command prefix that runs the rest with a 12 KiB tmpfs mounted on `folder` (a
    private mount namespace: nothing to unmount), so writes there fail with ENOSPC."""
    prefix = ["unshare", "--map-root-user", "--mount", "sh", "-c",
              'mount -t tmpfs -o size=12k tmpfs "$0" && exec "$@"', str(folder)]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        probe = None
    if probe is None or probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs in a private namespace here")
    return prefix


def test_a_full_work_folder_is_said_clearly(tmp_path: Path):
    """Arrow's OSError (errno 28) from the walk's work file was an "internal error"."""
    root = tmp_path / "tree"
    root.mkdir()
    for i in range(2000):  # a walk file bigger than 12 KiB
        (root / f"clip-{i:05}.txt").write_text(str(i))
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "TMPDIR": str(work)}
    env.pop("SNEAKERNET_CATALOG", None)
    proc = subprocess.run(
        [*_in_small_tmpfs(work), sys.executable, "-m", "sneakernet.cli",
         "--catalog", str(tmp_path / "cat.duckdb"), "scan", str(root), "-d", "t"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    lines = proc.stderr.splitlines()
    assert proc.returncode == 9, proc.stderr
    assert len(lines) == 2 and lines[0].startswith("error: no space left"), lines
    assert str(work) in lines[0] and lines[1].startswith("hint: ")


def test_a_video_dated_past_2262_gets_its_metadata(tmp_path: Path, sample_master: Path):
    """The probe checks the file is still the one hashed, by the time the catalog keeps."""
    root = tmp_path / "tree"
    root.mkdir()
    clip = root / "clip.mp4"
    clip.write_bytes((sample_master / "cam1" / "clip_h264.mp4").read_bytes())
    _far_future(clip)
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan(catalog, root, "t")
    assert result.probed_files == 1 and not result.problems
    with catalog.read() as con:
        assert con.execute("SELECT codec, broken FROM api.files").fetchall() == [("h264", False)]
