"""stats, diff, ls, find, query, export: answers checked against the files on disk."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import xxhash

from sneakernet.catalog import listing
from sneakernet.catalog.diff import diff
from sneakernet.catalog.errors import NotFoundError, UsageError
from sneakernet.catalog.query import run_query
from sneakernet.catalog.scan import scan
from sneakernet.catalog.stats import GROUPINGS, stats
from sneakernet.catalog.versions import list_datasets, list_versions


@pytest.fixture
def two_versions(sample_tree: Path, catalog):
    scan(catalog, sample_tree, "roadcam")
    (sample_tree / "notes.txt").write_text("edited\n")  # modified
    shutil.move(sample_tree / "cam1", sample_tree / "cam1-renamed")  # moved (every file in it)
    (sample_tree / "meta" / "shoot.json").unlink()  # removed
    (sample_tree / "added.bin").write_bytes(os.urandom(1000))  # added
    (sample_tree / "dup-of-notes.txt").write_text("edited\n")  # added, same content as notes
    scan(catalog, sample_tree, "roadcam")
    return sample_tree


def test_stats_totals_match_the_tree(sample_tree, catalog):
    scan(catalog, sample_tree, "roadcam")
    s = stats(catalog, "roadcam")
    files = [p for p in sample_tree.rglob("*") if p.is_file()]
    assert s.version == 1 and s.total.files == len(files)
    assert s.total.bytes == sum(p.stat().st_size for p in files)
    assert s.total.broken_files == 1
    assert s.total.video_files == 7 and s.total.frames == 7 * 25
    assert s.total.video_hours == pytest.approx(7 * 1.0 / 3600, rel=0.02)


@pytest.mark.parametrize("by", sorted(GROUPINGS))
def test_stats_groups_add_up(sample_tree, catalog, by):
    scan(catalog, sample_tree, "roadcam")
    s = stats(catalog, "roadcam@1", by=by)
    ungrouped = stats(catalog, "roadcam@1").total
    assert s.total.files == ungrouped.files == sum(g.files for g in s.groups)
    assert s.total.bytes == ungrouped.bytes == sum(g.bytes for g in s.groups)
    assert s.total.frames == ungrouped.frames > 0
    assert s.total.broken_files == ungrouped.broken_files == 1
    assert len({g.key for g in s.groups}) == len(s.groups) > 1


def test_stats_rejects_unknown_grouping_and_version(sample_tree, catalog):
    scan(catalog, sample_tree, "roadcam")
    with pytest.raises(UsageError):
        stats(catalog, "roadcam", by="colour")
    with pytest.raises(NotFoundError, match="roadcam@9 does not exist") as missing:
        stats(catalog, "roadcam@9")
    assert missing.value.hint == "roadcam has versions 1"
    with pytest.raises(NotFoundError, match="no dataset named"):
        stats(catalog, "nightcam")


def test_diff_finds_exactly_the_changes(two_versions, catalog):
    d = diff(catalog, "roadcam@1", "roadcam@2")
    by_kind = {k: sorted(c.path for c in d.changes if c.change == k) for k in d.counts}
    moved_from = sorted(c.old_path for c in d.changes if c.change == "moved")
    cam1 = sorted(p.name for p in (two_versions / "cam1-renamed").iterdir())
    assert by_kind["modified"] == ["notes.txt"]
    assert by_kind["removed"] == ["meta/shoot.json"]
    assert by_kind["added"] == ["added.bin", "dup-of-notes.txt"]
    assert by_kind["moved"] == [f"cam1-renamed/{n}" for n in cam1]
    assert moved_from == [f"cam1/{n}" for n in cam1]
    assert diff(catalog, "roadcam@2", "roadcam@2").changes == []


def test_diff_across_datasets(two_versions, catalog, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(two_versions, copy)
    scan(catalog, copy, "mirror")
    assert diff(catalog, "roadcam@2", "mirror@1").changes == []


def test_versions_and_datasets(two_versions, catalog):
    rows = list_versions(catalog, "roadcam")
    assert [r.version for r in rows] == [1, 2]
    assert all(r.origin == "scan" and r.root == str(two_versions) for r in rows)
    (ds,) = list_datasets(catalog)
    assert (ds.dataset, ds.versions, ds.latest, ds.files) == ("roadcam", 2, 2, rows[1].files)


def test_ls_with_glob(sample_tree, catalog):
    scan(catalog, sample_tree, "roadcam")
    rows = list(listing.ls(catalog, "roadcam", "cam1/*"))
    expected = sorted(f"cam1/{p.name}" for p in (sample_tree / "cam1").iterdir())
    assert [r.path for r in rows] == expected
    assert all(r.hash and r.codec for r in rows)


def test_find_by_hash_and_by_file(two_versions, catalog):
    notes = two_versions / "notes.txt"
    digest = xxhash.xxh3_128_hexdigest(notes.read_bytes())
    by_file = listing.find(catalog, str(notes))
    by_hash = listing.find(catalog, digest.upper())
    assert by_file.hash == by_hash.hash == digest
    assert {(h.version, h.path) for h in by_hash.holders} == {
        (2, "notes.txt"), (2, "dup-of-notes.txt")}
    with pytest.raises(NotFoundError):
        listing.find(catalog, "no-such-file-or-hash")


def test_query_reads_views(two_versions, catalog):
    r = run_query(catalog, "SELECT version, count(*) AS n FROM files GROUP BY 1 ORDER BY 1")
    assert r.columns == ["version", "n"] and [row[0] for row in r.rows] == [1, 2]


@pytest.mark.parametrize("sql", [
    "DELETE FROM entries",
    "CREATE TABLE x (a INT)",
    "COPY (SELECT 1) TO '/tmp/sneakernet-should-not-exist.csv'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SET enable_external_access = true",
])
def test_query_cannot_write_or_reach_out(sample_tree, catalog, sql):
    scan(catalog, sample_tree, "roadcam")
    before = catalog.path.read_bytes()
    with pytest.raises(UsageError):
        run_query(catalog, sql)
    assert not Path("/tmp/sneakernet-should-not-exist.csv").exists()
    assert catalog.path.read_bytes() == before


def test_export_writes_full_manifest(two_versions, catalog, tmp_path):
    out = tmp_path / "out" / "roadcam.parquet"
    out.parent.mkdir()
    count = listing.export(catalog, "roadcam@2", out)
    table = pq.read_table(out)
    assert table.num_rows == count == sum(1 for p in two_versions.rglob("*") if p.is_file())
    assert {"path", "hash", "size", "codec", "width", "frames", "duration"} <= set(
        table.column_names)
    assert [p.name for p in out.parent.iterdir()] == ["roadcam.parquet"]  # no temp left


def test_cli_answers_in_json(two_versions, catalog, cli_json, cli):
    s = cli_json("stats", "roadcam@2", "--by", "resolution", catalog=catalog)
    assert s["version"] == 2 and s["by"] == "resolution"
    d = cli_json("diff", "roadcam@1", "roadcam@2", catalog=catalog)
    assert d["counts"]["modified"] == 1 and d["counts"]["removed"] == 1
    v = cli_json("versions", "roadcam", catalog=catalog)
    assert [x["version"] for x in v] == [1, 2]
    q = cli_json("query", "SELECT count(*) AS n FROM versions", catalog=catalog)
    assert q["rows"] == [{"n": 2}]
    found = cli_json("find", str(two_versions / "notes.txt"), catalog=catalog)
    assert len(found["holders"]) == 2
    absent = "0" * 32
    for fmt in ([], ["--json"]):  # a script tests the status, whichever output it reads
        proc = cli("find", absent, *fmt, catalog=catalog)
        assert proc.returncode == 4, (fmt, proc.stdout, proc.stderr)
    assert json.loads(cli("find", absent, "--json", catalog=catalog).stdout)["holders"] == []
    rows = cli_json("ls", "roadcam", "*.txt", catalog=catalog)
    assert sorted(r["path"] for r in rows) == ["dup-of-notes.txt", "notes.txt"]
    assert cli_json("datasets", catalog=catalog)[0]["dataset"] == "roadcam"
