"""pack -> verify -> ingest on real files: the round trip, faults on the drive, a full drive."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import NotFoundError
from sneakernet.catalog.listing import ls
from sneakernet.catalog.scan import scan
from sneakernet.catalog.stats import stats
from sneakernet.catalog.versions import list_versions
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer.errors import NoSpaceError
from sneakernet.transfer.ingest import ingest
from sneakernet.transfer.pack import pack
from sneakernet.transfer.verify import verify
from sneakernet.transfer.whereis import whereis

SPLIT = 400 << 10  # the sample's carried bytes (~497 KiB) need both drives at this size


@pytest.fixture
def site_a(sample_tree: Path, tmp_path: Path) -> Catalog:
    catalog = Catalog(tmp_path / "site-a.duckdb", timeout=30)
    (sample_tree / "cam1" / "copy_of_h264.mp4").write_bytes(
        (sample_tree / "cam1" / "clip_h264.mp4").read_bytes()
    )
    scan(catalog, sample_tree, "roadcam")
    return catalog


@pytest.fixture
def drives(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "d1", tmp_path / "d2"]
    for path in paths:
        path.mkdir()
    return paths


@pytest.fixture
def packed(site_a: Catalog, drives: list[Path]):
    result = pack(site_a, ["roadcam"], drives, shipment="to-b", to_site="B", capacity=SPLIT)
    assert result.sealed and not result.problems
    return result


def _data_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "roadcam").rglob("*") if p.is_file())


def test_round_trip_answers_the_same_at_the_other_site(site_a, drives, packed, tmp_path):
    assert all(d.files for d in packed.drives), "both drives carry part of the shipment"
    report = verify(drives)
    assert report.whole, report.to_dict()
    site_b, store = Catalog(tmp_path / "site-b.duckdb"), tmp_path / "store"
    store.mkdir()
    result = ingest(site_b, drives, store)
    assert result.registered == ["roadcam@1"] and not result.problems
    for by in (None, "codec", "resolution", "fps"):
        assert stats(site_b, "roadcam@1", by=by).to_dict() == stats(
            site_a, "roadcam@1", by=by
        ).to_dict()
    [a], [b] = list_versions(site_a, "roadcam"), list_versions(site_b, "roadcam")
    assert (a.version, a.files, a.bytes) == (b.version, b.files, b.bytes)
    assert b.origin == "ingest"
    # Identical content is carried once and stored once (a hard link), read-only.
    original = store / "roadcam" / "1" / "cam1" / "clip_h264.mp4"
    copy = store / "roadcam" / "1" / "cam1" / "copy_of_h264.mp4"
    assert os.stat(original).st_ino == os.stat(copy).st_ino
    assert sum(1 for p in _data_files(drives[0]) + _data_files(drives[1])
               if p.name in ("clip_h264.mp4", "copy_of_h264.mp4")) == 1
    for path in (store / "roadcam").rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0, path
    # A later scan of the store at site B reads nothing and records the same version.
    rescan = scan(site_b, store / "roadcam" / "1", "roadcam")
    assert rescan.version is None and rescan.hashed_files == 0


def test_whereis_knows_every_copy_without_the_drives(site_a, drives, packed, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    ingest(site_a, drives, store)  # one catalog that packed and ingested: sees all copies
    for drive in drives:
        os.rename(drive, drive.with_name(drive.name + "-unplugged"))
    copies = whereis(site_a, "roadcam@1", "cam1/clip_h264.mp4")
    kinds = sorted(c.kind for c in copies)
    assert kinds == ["drive", "folder", "store"]
    assert all(c.complete for c in copies)
    whole = whereis(site_a, "roadcam@1")
    drive_files = sum(c.files for c in whole if c.kind == "drive")
    folder = next(c for c in whole if c.kind == "folder")
    assert drive_files == folder.total_files == folder.files


def test_verify_reports_each_fault_exactly(drives, packed):
    d1 = drives[0]
    files = _data_files(d1)
    assert len(files) >= 4
    flipped, cut, gone = files[0], files[1], files[2]
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(data)
    os.truncate(cut, cut.stat().st_size - 1)
    gone.unlink()
    (d1 / "roadcam" / "1" / "stray.bin").write_bytes(b"not shipped")
    rel = {p: p.relative_to(d1).as_posix() for p in (flipped, cut, gone)}

    full = verify([d1]).drives[0]
    found = {(f.outcome, f.path) for f in full.findings}
    assert found == {("corrupt", rel[flipped]), ("corrupt", rel[cut]), ("missing", rel[gone]),
                     ("extra", "roadcam/1/stray.bin")}
    assert full.counts["ok"] == len(files) - 3 and full.seal_ok and not full.whole

    fast = verify([d1], fast=True).drives[0]
    assert {(f.outcome, f.path) for f in fast.findings} == found - {("corrupt", rel[flipped])}


def test_a_corrupt_file_is_named_and_the_rest_still_ingested(drives, packed, tmp_path):
    d2_file = _data_files(drives[1])[0]
    data = bytearray(d2_file.read_bytes())
    data[100] ^= 0x80
    d2_file.write_bytes(data)
    store = tmp_path / "store"
    store.mkdir()
    result = ingest(Catalog(tmp_path / "b.duckdb"), drives, store)
    bad = d2_file.relative_to(drives[1]).as_posix()
    assert [(p.outcome, p.path) for p in result.problems] == [("corrupt", bad)]
    assert not (store / bad.split("/", 2)[0] / "1" / bad.split("/", 2)[2]).exists()
    assert result.registered == [] and result.waiting[0]["version"] == "roadcam@1"
    placed = {p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()}
    assert {p.relative_to(drives[0]).as_posix() for p in _data_files(drives[0])} <= placed


def test_drives_arriving_on_different_days(drives, packed, tmp_path):
    site_b, store = Catalog(tmp_path / "b.duckdb"), tmp_path / "store"
    store.mkdir()
    first = ingest(site_b, [drives[0]], store)
    assert first.registered == [] and first.waiting[0]["missing_files"] > 0
    with pytest.raises(NotFoundError):  # not a version until all its files are in the store
        list_versions(site_b, "roadcam")
    second = ingest(site_b, [drives[1]], store)
    assert second.registered == ["roadcam@1"]
    assert second.drives[0].copied_files == len(_data_files(drives[1]))


def test_rerunning_a_finished_pack_or_ingest_copies_nothing(site_a, drives, packed, tmp_path):
    again = pack(site_a, ["roadcam"], drives, capacity=SPLIT)
    assert again.resumed and again.sealed and again.shipment == "to-b"
    store = tmp_path / "store"
    store.mkdir()
    site_b = Catalog(tmp_path / "b.duckdb")
    ingest(site_b, drives, store)
    twice = ingest(site_b, drives, store)
    assert sum(d.copied_files + d.linked_files for d in twice.drives) == 0
    assert twice.registered == [] and not twice.problems


def test_a_full_drive_stops_cleanly_and_the_rest_goes_to_a_new_drive(
    site_a, drives, tmp_path, monkeypatch
):
    real_write = os.write
    budget = {"left": 150 << 10}

    def write_until_full(fd: int, data) -> int:
        """ENOSPC from the write syscall once drive 1 has taken 150 KiB."""
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.startswith(str(drives[0]) + "/roadcam") or "/d1/.sneakernet/partial/" in target:
            if budget["left"] < len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            budget["left"] -= len(data)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write_until_full)
    first = pack(site_a, ["roadcam"], drives, shipment="to-b", capacity=SPLIT)
    assert [d.number for d in first.full_drives] == [1] and not first.sealed
    assert "No space left" in first.full_drives[0].full_detail
    on_d1 = {p.relative_to(drives[0]) for p in _data_files(drives[0])}
    monkeypatch.setattr(os, "write", real_write)

    d3 = tmp_path / "d3"
    d3.mkdir()
    second = pack(site_a, ["roadcam"], [*drives, d3], capacity=SPLIT)
    assert second.sealed and not second.problems
    by_number = {d.number: d for d in second.drives}
    assert by_number[1].present_files == len(on_d1) and by_number[1].copied_files == 0
    assert by_number[3].copied_files > 0
    assert fmt.read_drive(d3).of == 3 and fmt.read_drive(drives[0]).of == 3
    assert verify([*drives, d3]).whole
    store = tmp_path / "store"
    store.mkdir()
    assert ingest(Catalog(tmp_path / "b.duckdb"), [*drives, d3], store).registered == ["roadcam@1"]


def test_a_shipment_that_does_not_fit_is_refused_before_writing(site_a, drives, cli):
    proc = cli("pack", "roadcam", "--to", drives[0], "--drive-size", "100K", catalog=site_a)
    assert proc.returncode == 9, proc.stderr
    assert "more is needed" in proc.stderr and "Traceback" not in proc.stderr
    assert list(drives[0].iterdir()) == []


def test_ls_answers_the_same_at_both_sites(site_a, drives, packed, tmp_path):
    site_b, store = Catalog(tmp_path / "b.duckdb"), tmp_path / "store"
    store.mkdir()
    ingest(site_b, drives, store)

    def rows(catalog: Catalog) -> list[tuple]:
        return [(r.path, r.kind, r.size, r.hash, r.codec, r.frames if hasattr(r, "frames") else 0)
                for r in ls(catalog, "roadcam@1")]

    assert rows(site_b) == rows(site_a)


def test_the_plan_counts_whole_clusters_not_bytes(tmp_path):
    """200 ten-byte files are 2 KB of data but 800 KiB of 4 KiB clusters on the drive."""
    root = tmp_path / "tiny"
    root.mkdir()
    for i in range(200):
        (root / f"{i:03}.txt").write_bytes(f"{i:010}".encode())
    catalog = Catalog(tmp_path / "c.duckdb")
    scan(catalog, root, "tiny")
    drive = tmp_path / "d"
    drive.mkdir()
    with pytest.raises(NoSpaceError, match="on disk"):
        pack(catalog, ["tiny"], [drive], capacity=400 << 10)
    assert list(drive.iterdir()) == []
    assert pack(catalog, ["tiny"], [drive], capacity=1 << 20).sealed


def test_transfer_commands_write_reports_with_their_own_figures(
    site_a, drives, packed, tmp_path, cli
):
    import json
    import re

    flipped = _data_files(drives[0])[0]
    data = bytearray(flipped.read_bytes())
    data[10] ^= 1
    flipped.write_bytes(data)
    page = tmp_path / "verify.html"
    proc = cli("verify", *drives, "--json", "--report", page, catalog=site_a)
    assert proc.returncode == 3, proc.stderr
    printed = json.loads(proc.stdout)
    embedded = re.search(r'id="sneakernet-report">(.*?)</script>', page.read_text(), re.S)
    report = json.loads(embedded.group(1))
    assert report["kind"] == "verify" and report["summary"]["whole"] is False
    assert report["summary"]["corrupt"] == 1 == sum(d["counts"]["corrupt"]
                                                    for d in printed["drives"])
    assert [p["path"] for p in report["problems"]] == [flipped.relative_to(drives[0]).as_posix()]


def test_the_custody_log_travels_on_the_drives(site_a, drives, packed, tmp_path, cli):
    import json

    name = packed.shipment
    assert cli("mark", name, "shipped", "--note", "DHL 1234", *[a for d in drives
               for a in ("--drive", d)], catalog=site_a).returncode == 0
    site_b = Catalog(tmp_path / "b.duckdb")
    assert cli("verify", *drives, catalog=site_b).returncode == 0
    history = json.loads(cli("shipment", name, "--json", catalog=site_b, check=True).stdout)
    seen = [(e["event"], e["drive"], e["note"]) for e in history["events"]]
    for number in (1, 2):
        for event in ("planned", "packed", "verified"):
            assert (event, number, None) in seen
    assert seen.count(("shipped", None, "DHL 1234")) + seen.count(("shipped", 1, "DHL 1234")) >= 1
    assert all(d["seal"] for d in history["drives"])
    listed = json.loads(cli("shipments", "--json", catalog=site_b, check=True).stdout)
    assert [(s["name"], s["state"]) for s in listed] == [(name, "verified")]


def test_verify_on_a_memory_file_system_reads_on_two_threads(drives, packed):
    """tmpfs refuses RWF_NOWAIT; verify must neither lose a fault nor fall back to one
    thread there (there is no device to protect)."""
    import shutil
    import tempfile

    from sneakernet.catalog.fstype import filesystem_type
    from sneakernet.transfer.verify import _Checker

    if not Path("/dev/shm").is_dir() or filesystem_type(Path("/dev/shm")) != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        drive = Path(shm) / "d1"
        shutil.copytree(drives[0], drive)
        checker = _Checker(drive)
        try:
            assert checker.free_reads and checker.threads == 2
        finally:
            checker.close()
        assert verify([drive]).drives[0].whole
        files = _data_files(drive)
        data = bytearray(files[-1].read_bytes())
        data[-1] ^= 0x80
        files[-1].write_bytes(data)
        report = verify([drive]).drives[0]
        assert {(f.outcome, f.path) for f in report.findings} == {
            ("corrupt", files[-1].relative_to(drive).as_posix())
        }
        assert report.counts["ok"] == len(files) - 1
