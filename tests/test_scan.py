"""scan: versions, incremental rescans, media metadata, and the JSON summary."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import xxhash

from sneakernet.catalog import samples
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import UsageError
from sneakernet.catalog.scan import scan
from sneakernet.catalog.stats import stats


def _entries(catalog: Catalog, version: int) -> dict[str, tuple]:
    with catalog.read() as con:
        rows = con.execute(
            "SELECT path, kind, size, hash, status FROM entries"
            " WHERE dataset = 'roadcam' AND version = ?",
            [version],
        ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_first_scan_records_every_file_with_media(sample_tree: Path, catalog: Catalog):
    result = scan(catalog, sample_tree, "roadcam")
    on_disk = {p.relative_to(sample_tree).as_posix() for p in sample_tree.rglob("*") if p.is_file()}
    assert result.version == 1 and result.previous is None
    assert set(_entries(catalog, 1)) == on_disk
    assert result.files == len(on_disk) == result.hashed_files
    assert result.bytes == sum((sample_tree / p).stat().st_size for p in on_disk)
    with catalog.read() as con:
        codecs = dict(con.execute(
            "SELECT path, codec FROM api.files WHERE is_video AND NOT broken").fetchall())
        broken = con.execute("SELECT path, media_error FROM api.files WHERE broken").fetchall()
    assert {"h264", "hevc", "vp9", "mpeg4", "mjpeg", "ffv1", "prores"} <= set(codecs.values())
    assert [p for p, _ in broken] == ["broken/cut.mp4"] and broken[0][1]
    assert [p.path for p in result.problems if p.kind == "broken-video"] == ["broken/cut.mp4"]


def test_rescan_unchanged_reads_nothing_and_records_no_version(sample_tree, catalog):
    scan(catalog, sample_tree, "roadcam")
    again = scan(catalog, sample_tree, "roadcam")
    assert again.version is None and again.previous == 1
    assert again.hashed_files == 0 and again.probed_files == 0
    assert again.reused_files == again.files > 0


def test_rescan_reads_only_changed_files(sample_tree, catalog):
    scan(catalog, sample_tree, "roadcam")
    notes = sample_tree / "notes.txt"
    notes.write_text("changed\n")
    samples.write_clip(sample_tree / "new.mkv", samples.ClipSpec("new.mkv", "ffv1", seed=7))
    result = scan(catalog, sample_tree, "roadcam", label="second")
    assert result.version == 2
    assert result.hashed_files == 2 and result.probed_files == 1
    assert _entries(catalog, 2)["notes.txt"][2] == samples_hash(notes)
    # version 1 is immutable: it still has the old notes and no new.mkv
    assert "new.mkv" not in _entries(catalog, 1)
    assert _entries(catalog, 1)["notes.txt"][2] != _entries(catalog, 2)["notes.txt"][2]


def test_touch_without_content_change_is_not_a_new_version(sample_tree, catalog):
    scan(catalog, sample_tree, "roadcam")
    os.utime(sample_tree / "notes.txt", ns=(1, 1_000_000_000))
    result = scan(catalog, sample_tree, "roadcam")
    assert result.hashed_files == 1  # mtime moved, so it was read again ...
    assert result.version is None  # ... but its bytes are the same


def test_rehash_reads_everything(sample_tree, catalog):
    first = scan(catalog, sample_tree, "roadcam")
    again = scan(catalog, sample_tree, "roadcam", rehash=True)
    assert again.hashed_files == first.files and again.version is None


def test_identical_content_probed_once_across_datasets(sample_tree, catalog, tmp_path):
    scan(catalog, sample_tree, "roadcam")
    other = tmp_path / "copy"
    shutil.copytree(sample_tree, other)
    result = scan(catalog, other, "nightcam")
    assert result.version == 1
    assert result.hashed_files == result.files  # different inodes: read
    assert result.probed_files == 0  # same content: media metadata reused


def test_same_content_twice_in_one_dataset(tmp_path, catalog):
    root = tmp_path / "d"
    root.mkdir()
    for name in ("a.bin", "b.bin", "c.bin"):
        (root / name).write_bytes(b"same bytes")
    (root / "d.bin").write_bytes(b"other")
    scan(catalog, root, "dups")
    s = stats(catalog, "dups")
    assert (s.duplicate_files, s.duplicate_bytes) == (2, 20)


def test_label_must_be_unique(sample_tree, catalog):
    scan(catalog, sample_tree, "roadcam", label="nov")
    (sample_tree / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="already names roadcam@1"):
        scan(catalog, sample_tree, "roadcam", label="nov")


def test_cli_scan_json_summary(sample_tree, catalog, cli_json):
    data = cli_json("scan", sample_tree, "--dataset", "roadcam", catalog=catalog)
    assert data["version"] == 1 and data["changed"] is True
    assert data["files"] == sum(1 for p in sample_tree.rglob("*") if p.is_file())
    assert {p["kind"] for p in data["problems"]} == {"broken-video"}
    again = cli_json("scan", sample_tree, "--dataset", "roadcam", catalog=catalog)
    assert again["changed"] is False and again["hashed_files"] == 0


def test_progress_events_cover_phases(sample_tree, catalog):
    events = []
    scan(catalog, sample_tree, "roadcam", progress=events.append)
    phases = [e.phase for e in events]
    assert {"walk", "hash", "probe", "commit"} <= set(phases)
    last_hash = [e for e in events if e.phase == "hash"][-1]
    assert last_hash.files_done == last_hash.files_total
    assert last_hash.bytes_done == last_hash.bytes_total


def samples_hash(path: Path) -> str:
    return xxhash.xxh3_128_hexdigest(path.read_bytes())
