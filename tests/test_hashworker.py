"""Helper processes of the hash pass (catalog/hashworker.py) in a hostile environment:
whatever a helper does, the scan hashes the chunk itself and never runs foreign code."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import xxhash

from sneakernet.catalog import hashpass, hashworker
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.scan import scan


def _tree(root: Path, files: int = 1200) -> Path:
    root.mkdir(parents=True)
    for i in range(files):
        (root / f"f{i}.bin").write_bytes(os.urandom(i % 2000))
    return root


def _assert_hashed(catalog: Catalog, root: Path) -> None:
    with catalog.read() as con:
        rows = con.execute("SELECT path, hash, status FROM entries WHERE dataset = 'ds'").fetchall()
    assert rows
    for path, digest, status in rows:
        assert status == "ok"
        assert digest == xxhash.xxh3_128_hexdigest((root / path).read_bytes())


def _helpers_asked(monkeypatch) -> list[int]:
    """Helpers from the first small file on; the size of each chunk a helper was asked."""
    monkeypatch.setattr(hashpass, "HELPER_MIN_FILES", 0)
    asked: list[int] = []
    real = hashworker.Helper.hash

    def spying(self, requests):
        asked.append(len(requests))
        return real(self, requests)

    monkeypatch.setattr(hashworker.Helper, "hash", spying)
    return asked


# What a sitecustomize (or a .pth file, or a wrapper) may write to a helper's stdout
# before its first frame: a banner (read as a length: MemoryError, or a wait for bytes
# that never come), or a length and data that are not an answer (TypeError).
_JUNK = {
    "banner": "print('hello from sitecustomize', flush=True)",
    "wrong_frame": (
        "import marshal, struct, sys\n"
        "data = marshal.dumps(7)\n"
        "sys.stdout.buffer.write(struct.pack('<Q', len(data)) + data)\n"
        "sys.stdout.buffer.flush()\n"
    ),
}


@pytest.mark.parametrize("junk", sorted(_JUNK))
def test_a_helper_that_writes_junk_leaves_the_scan_to_hash(tmp_path, monkeypatch, junk):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_JUNK[junk])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site),
                                                                   os.environ.get("PYTHONPATH")])))
    asked = _helpers_asked(monkeypatch)
    root = _tree(tmp_path / "tree")
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan(catalog, root, "ds", workers=2)
    assert asked, "no chunk was offered to a helper"
    assert result.hashed_files == 1200 and not result.problems
    _assert_hashed(catalog, root)


@pytest.mark.parametrize("answer", [7, [7], [(None, "vanished")], [("0" * 32, 1, 2, 3, "4")],
                                    [("a", 1), ("b", 2)]])
def test_an_answer_that_is_not_one_outcome_per_file_is_refused(answer):
    with pytest.raises(ValueError):
        hashworker._outcomes(answer, 1)


def test_a_helper_does_not_import_modules_from_the_working_folder(tmp_path, monkeypatch):
    """`python -m` puts the working folder first on sys.path: a scan run from inside a
    folder of Python code (often the very dataset) must not execute it."""
    marker = tmp_path / "imported"
    root = _tree(tmp_path / "tree")
    for name in ("struct", "threading", "typing", "xxhash", "mmap"):
        (root / f"{name}.py").write_text(
            f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\n"
            "raise ImportError('not the real module')\n"
        )
    monkeypatch.chdir(root)
    asked = _helpers_asked(monkeypatch)
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan(catalog, root, "ds", workers=2)
    assert asked and result.hashed_files == 1205 and not result.problems
    assert not marker.exists(), f"a helper imported {marker.read_text().split()}"
    _assert_hashed(catalog, root)


def test_a_helper_that_cannot_start_leaves_the_scan_to_hash(tmp_path, monkeypatch):
    """sys.executable may be None or '' in an embedded interpreter."""
    monkeypatch.setattr(hashpass, "HELPER_MIN_FILES", 0)
    root = _tree(tmp_path / "tree")
    for executable in (None, ""):
        monkeypatch.setattr(sys, "executable", executable)
        catalog = Catalog(tmp_path / f"cat{executable!r}.duckdb")
        result = scan(catalog, root, "ds", workers=2)
        assert result.hashed_files == 1200 and not result.problems
