"""A video that changes or vanishes between its hashing and its probe.

Media rows are keyed by content hash and shared by every dataset, so a probe that
read other bytes (or none) must store nothing: otherwise one race leaves wrong
metadata, or a false "broken", on that content in every later scan, everywhere.
The race is made real by a writer that acts just before the probe opens the file.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from sneakernet.catalog import probe as prober
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.query import run_query
from sneakernet.catalog.scan import scan

TARGET = "cam1/clip_h264.mp4"


def _identity(path: Path) -> prober.Identity:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev


def test_probe_with_an_identity_answers_only_for_that_file(sample_tree: Path) -> None:
    clip = sample_tree / TARGET
    assert prober.probe(clip, _identity(clip)).ok
    size, mtime_ns, inode, device = _identity(clip)
    for wrong in ((size + 1, mtime_ns, inode, device), (size, mtime_ns + 1, inode, device),
                  (size, mtime_ns, inode + 1, device)):
        with pytest.raises(prober.NotTheHashedFile, match="changed since it was hashed"):
            prober.probe(clip, wrong)
    gone = sample_tree / "gone.mp4"
    with pytest.raises(prober.NotTheHashedFile, match="cannot open"):
        prober.probe(gone, (size, mtime_ns, inode, device))
    assert not prober.probe(gone).ok  # without an identity: a plain answer, as before


def _before_probing(monkeypatch: pytest.MonkeyPatch, target: Path,
                    act: Callable[[Path], None]) -> None:
    """Run `act` on `target` just before the scan's probe of it opens it, once."""
    real = prober.probe
    done = []

    def racing(path, *rest):
        if not done and os.fsencode(path) == os.fsencode(target):
            done.append(path)
            act(target)
        return real(path, *rest)

    monkeypatch.setattr(prober, "probe", racing)


def _codec_of(catalog: Catalog, dataset: str, path: str) -> tuple:
    sql = (f"SELECT hash, codec, broken FROM files WHERE dataset = '{dataset}' "
           f"AND path = '{path}' ORDER BY version DESC LIMIT 1")
    return run_query(catalog, sql).rows[0]


def test_a_video_rewritten_before_its_probe_lends_its_new_metadata_to_no_hash(
    sample_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pristine = tmp_path / "pristine"
    shutil.copytree(sample_tree, pristine)
    hevc = (sample_tree / "cam1/clip_hevc.mkv").read_bytes()
    catalog = Catalog(tmp_path / "cat.duckdb")
    _before_probing(monkeypatch, sample_tree / TARGET, lambda p: p.write_bytes(hevc))

    first = scan(catalog, sample_tree, "field")

    h264_hash = _codec_of(catalog, "field", TARGET)[0]
    assert [(p.path, p.kind) for p in first.problems if p.kind == "changing"] == [
        (TARGET, "changing")]
    monkeypatch.undo()
    scan(catalog, pristine, "copy")  # the original bytes, in another dataset
    assert _codec_of(catalog, "copy", TARGET) == (h264_hash, "h264", False)
    again = scan(catalog, sample_tree, "field")  # the rewrite is read as what it is
    assert again.version == 2
    assert _codec_of(catalog, "field", TARGET)[1:] == ("hevc", False)


def test_a_video_deleted_before_its_probe_is_not_cached_as_broken(
    sample_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pristine = tmp_path / "pristine"
    shutil.copytree(sample_tree, pristine)
    catalog = Catalog(tmp_path / "cat.duckdb")
    _before_probing(monkeypatch, sample_tree / TARGET, Path.unlink)

    first = scan(catalog, sample_tree, "field")

    assert any(p.path == TARGET and p.kind == "changing" and "cannot open" in p.message
               for p in first.problems)
    monkeypatch.undo()
    scan(catalog, pristine, "copy")
    assert _codec_of(catalog, "copy", TARGET)[1:] == ("h264", False)
