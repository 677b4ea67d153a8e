"""pack against hostile sources: names the drive cannot hold, files over FAT32's limit,
names with any characters, sources that change, vanish or cannot be read after the
scan, and shipments that do not fit (DESIGN promises 1, 2, 3 and 7).

Real trees in tmp_path, real catalogs and packs; the CLI in subprocesses where the exit
status and the error line are the point.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import SourceError, UsageError
from sneakernet.catalog.scan import scan
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer import fsnames
from sneakernet.transfer.errors import NoSpaceError
from sneakernet.transfer.ingest import ingest
from sneakernet.transfer.pack import PlanRefused, pack
from sneakernet.transfer.verify import verify

sys.path.insert(0, str(Path(__file__).parent))  # tests/ is not a package
from transfer_fixtures import (
    EXIT_DRIVE,
    EXIT_NO_SPACE,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_REFUSED,
    assert_error_line,
    data_files,
    read_denier,
    run_cli,
    run_cli_many,
    versions_of,
)

GiB = 1 << 30


def make_tree(root: Path, names: list[str]) -> Path:
    """A tree with one small file per name, each with its own bytes."""
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"file {i}: {name!r}\n".encode())
    return root


def scanned(tmp_path: Path, root: Path, dataset: str) -> Catalog:
    catalog = Catalog(tmp_path / "site-a.duckdb", timeout=30)
    scan(catalog, root, dataset)
    return catalog


def empty_drive(path: Path) -> Path:
    path.mkdir()
    return path


def shipments(catalog: Catalog) -> int:
    with catalog.read() as con:
        return con.execute("SELECT count(*) FROM shipments").fetchone()[0]


def clone(catalog: Catalog, path: Path) -> Catalog:
    """A copy of a catalog file, so that two CLI runs need not wait for each other."""
    shutil.copyfile(catalog.path, path)
    return Catalog(path, timeout=30)


# --------------------------------------------------------------------------- names

_EXFAT_ILLEGAL = ["a:b.mp4", "con.txt", "trailing.", "x?y", "A.mp4", "a.mp4"]


def test_names_illegal_on_exfat_refuse_the_plan_and_write_nothing(tmp_path):
    root = make_tree(tmp_path / "src", [*_EXFAT_ILLEGAL, "fine/ok.txt"])
    catalog = scanned(tmp_path, root, "names")
    plan = pack(catalog, ["names"], [empty_drive(tmp_path / "dry")], fs_type="exfat",
                dry_run=True).plan
    flagged = {p.path.removeprefix("names/1/"): p for p in plan.problems}
    assert set(flagged) == {"a:b.mp4", "con.txt", "trailing.", "x?y", "a.mp4"}
    assert all(p.error for p in plan.problems) and plan.error_count == 5
    assert "collides with 'names/1/A.mp4'" in flagged["a.mp4"].message
    exfat = empty_drive(tmp_path / "exfat")
    refused = run_cli("--catalog", catalog.path, "pack", "names", "--to", exfat,
                      "--assume-fs", "exfat")
    assert_error_line(refused, EXIT_REFUSED, "5 name(s) cannot be written")
    assert list(exfat.iterdir()) == [] and shipments(catalog) == 0
    ext4 = empty_drive(tmp_path / "ext4")  # on a Linux file system they are warnings
    result = pack(catalog, ["names"], [ext4], fs_type="ext4")
    assert result.sealed and not result.problems
    assert len(result.plan.problems) == 5 and not any(p.error for p in result.plan.problems)
    report = verify([ext4]).drives[0]
    assert report.whole and report.counts["ok"] == 7  # both A.mp4 and a.mp4 on ext4


_NAMES_TO_CHECK = [
    "a:b", "q?", 'quo"te', "lt<", "gt>", "pi|pe", "tab\tname", "new\nline", "COM1",
    "lpt9.txt", "Nul", "aux.tar.gz", "trail ", "dot.", "ünï:x", "日本.", "conX", "console",
    "sub/CON/inner.txt", "sub. /x", "Ω" * 120, "x" * 250 + ".mp4", "d" * 200 + "/" + "e" * 200,
    "fine/ok.txt", "naïve.txt", "\x7fdel",
]


def test_plan_flags_exactly_what_check_path_flags_for_every_name(tmp_path):
    """The plan checks only the names SQL cannot pass on sight; that must lose nothing."""
    root = make_tree(tmp_path / "src", _NAMES_TO_CHECK)
    catalog = scanned(tmp_path, root, "odd")
    for fs_type in ("exfat", "ext4", "vfat"):
        plan = pack(catalog, ["odd"], [empty_drive(tmp_path / f"d-{fs_type}")],
                    fs_type=fs_type, dry_run=True).plan
        expected = []
        for name in _NAMES_TO_CHECK:
            expected += fsnames.check_path(f"odd/1/{name}", len(f"file : {name!r}\n") + 2,
                                           fs_type)
        got = {(p.path, p.message, p.error) for p in plan.problems}
        assert got == {(p.path, p.message, p.error) for p in expected}, fs_type
        assert len(expected) > 15


def _refuse_raw_name(tmp_path: Path) -> PlanRefused:
    root = make_tree(tmp_path / "src", ["ok.txt"])
    (root / "ok.txt").rename(os.fsdecode(bytes(root) + b"/bad\xff.txt"))
    catalog = scanned(tmp_path, root, "raw")
    drive = empty_drive(tmp_path / "drive")
    with pytest.raises(PlanRefused) as caught:
        pack(catalog, ["raw"], [drive], fs_type="ext4")
    assert list(drive.iterdir()) == []
    return caught.value


def test_name_that_is_not_utf8_is_refused_even_on_ext4(tmp_path):
    refused = _refuse_raw_name(tmp_path)
    errors = [p.message for p in refused.plan.problems if p.error]
    assert errors == ["name is not valid UTF-8"]


def test_plan_refusal_names_an_error_not_a_warning(tmp_path):
    assert "not valid UTF-8" in str(_refuse_raw_name(tmp_path))


def test_every_name_pack_ships_is_a_name_verify_accepts(tmp_path):
    root = make_tree(tmp_path / "src", ["back\\slash.txt", "ok.txt"])
    catalog = scanned(tmp_path, root, "slash")
    drive = empty_drive(tmp_path / "drive")
    try:
        pack(catalog, ["slash"], [drive], fs_type="ext4")
    except PlanRefused:
        assert list(drive.iterdir()) == []
        return
    report = verify([drive]).drives[0]
    assert report.error is None and report.whole


def test_file_over_4gib_is_refused_for_fat32(tmp_path):
    limit = fsnames.FAT32_MAX_FILE
    assert fsnames.check_path("d/1/big.bin", limit, "vfat") == []
    [problem] = fsnames.check_path("d/1/big.bin", limit + 2, "vfat")
    assert problem.error and "4 GiB" in problem.message
    assert fsnames.check_path("d/1/big.bin", limit + 2, "exfat") == []
    if shutil.disk_usage(tmp_path).free < 5 * GiB:
        pytest.skip("the plan must see room for a 4 GiB file on the drive")
    # Scanning a real 4 GiB+1 sparse file hashes 4 GiB of zeros (16 s here): the catalog
    # entry of a small file is given that size instead. The plan reads no source bytes.
    root = make_tree(tmp_path / "src", ["big.bin", "small.txt"])
    catalog = scanned(tmp_path, root, "big")
    with catalog.write() as con:
        con.execute("UPDATE entries SET size = ? WHERE path = 'big.bin'", [4 * GiB + 1])
    dry, real = empty_drive(tmp_path / "dry"), empty_drive(tmp_path / "real")
    planned, refused = run_cli_many(
        ["--catalog", catalog.path, "pack", "big", "--to", dry, "--assume-fs", "vfat",
         "--dry-run", "--json"],
        ["--catalog", clone(catalog, tmp_path / "b.duckdb").path, "pack", "big", "--to", real,
         "--assume-fs", "vfat"],
    )
    assert planned.returncode == EXIT_OK, planned.stderr
    problems = json.loads(planned.stdout)["plan"]["problems"]
    assert [(p["path"], p["error"]) for p in problems] == [("big/1/big.bin", True)]
    assert "FAT32" in problems[0]["message"]
    assert_error_line(refused, EXIT_REFUSED, "big/1/big.bin", "FAT32")
    assert list(dry.iterdir()) == list(real.iterdir()) == []


_ODD_NAMES = [
    "café.txt",  # NFC
    unicodedata.normalize("NFD", "café.txt"),  # the same on screen, other bytes
    "line\nbreak.txt",
    "tab\there.txt",
    "bell\x07.txt",
    "esc\x1b[31mred.txt",
    "emoji🎥.txt",
    " leading space",
    "-rf",
    ".hidden",
    "日本語/ファイル.txt",
]


def _tree_bytes(root: Path) -> dict[bytes, bytes]:
    found = {}
    for folder, _dirs, files in os.walk(bytes(root)):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, bytes(root))] = handle.read()
    return found


def test_odd_names_round_trip_through_pack_verify_ingest(tmp_path):
    root = make_tree(tmp_path / "src", _ODD_NAMES)
    catalog = scanned(tmp_path, root, "odd")
    drive = empty_drive(tmp_path / "drive")
    result = pack(catalog, ["odd"], [drive], fs_type="ext4")
    assert result.sealed and not result.problems
    assert verify([drive]).drives[0].whole
    store = tmp_path / "store"
    store.mkdir()
    site_b = Catalog(tmp_path / "site-b.duckdb")
    assert ingest(site_b, [drive], store).registered == ["odd@1"]
    assert _tree_bytes(store / "odd" / "1") == _tree_bytes(root)  # names and bytes, exactly
    with catalog.read() as a, site_b.read() as b:
        sql = "SELECT path, size, hash FROM entries WHERE dataset = 'odd' ORDER BY path"
        assert a.execute(sql).fetchall() == b.execute(sql).fetchall()
    # the plain manifest leaves out the one name xxhsum cannot express, and says so
    listed = data_files(drive)
    assert sorted(listed) == sorted(f"odd/1/{n}" for n in _ODD_NAMES if "\n" not in n)
    readme = (drive / fmt.README_FILE).read_text("utf-8")
    assert "1 file(s) with a line break in their name are not in" in readme
    check = subprocess.run(["xxhsum", "-c", fmt.PLAIN_MANIFEST], cwd=drive, capture_output=True)
    assert check.returncode == 0, check
    assert check.stdout.count(b": OK\n") == len(_ODD_NAMES) - 1


# --------------------------------------------------------------------------- sources

NOTES, SHOOT = "notes.txt", "meta/shoot.json"
HEVC, VP9, MPEG4 = "cam1/clip_hevc.mkv", "cam2/clip_vp9.webm", "cam2/clip_mpeg4.avi"


def _spoil_sources(root: Path, outside: Path) -> None:
    """Five ways for a scanned source file to be something else by pack time."""
    data = bytearray((root / NOTES).read_bytes())
    data[0] ^= 0x20  # same size, other bytes
    (root / NOTES).write_bytes(bytes(data))
    with open(root / SHOOT, "a") as handle:  # other size
        handle.write(" ")
    os.unlink(root / HEVC)  # gone
    shutil.copyfile(root / VP9, outside)  # a link out to the very same bytes
    os.unlink(root / VP9)
    os.symlink(outside, root / VP9)
    os.unlink(root / MPEG4)
    os.mkfifo(root / MPEG4)  # no writer: a blocking open would hang


def test_sources_changed_after_the_scan_are_reported_not_shipped(sample_tree, tmp_path):
    catalog = scanned(tmp_path, sample_tree, "roadcam")
    _spoil_sources(sample_tree, tmp_path / "outside.webm")
    drive = empty_drive(tmp_path / "drive")
    proc = run_cli("--catalog", catalog.path, "pack", "roadcam", "--to", drive, "--json")
    assert proc.returncode == EXIT_PROBLEMS and b"Traceback" not in proc.stderr, proc.stderr
    found = {p["path"].removeprefix("roadcam/1/"): p for p in json.loads(proc.stdout)["problems"]}
    assert {k: p["outcome"] for k, p in found.items()} == {
        NOTES: "changed", SHOOT: "changed", HEVC: "missing-source", VP9: "unreadable",
        MPEG4: "changed",
    }
    assert "content hash is" in found[NOTES]["detail"] and "size is" in found[SHOOT]["detail"]
    for name in found:  # none shipped, no partial copy left
        assert not os.path.lexists(drive / "roadcam" / "1" / name), name
    assert list((drive / fmt.PARTIAL_DIR).iterdir()) == []
    doc = json.loads((drive / fmt.DRIVE_FILE).read_text())
    assert doc["state"] == "packing"
    assert not (drive / fmt.SEAL_FILE).exists() and not (drive / fmt.PLAIN_MANIFEST).exists()
    shipped = [p for p in (drive / "roadcam").rglob("*") if p.is_file()]
    assert len(shipped) == 10 - len(found)
    # the unsealed drive is refused at the other end, with nothing written
    store = tmp_path / "store"
    store.mkdir()
    ing = run_cli("--catalog", tmp_path / "b.duckdb", "ingest", drive, "--store", store)
    assert_error_line(ing, EXIT_DRIVE, "never sealed")
    assert "never sealed" in verify([drive]).drives[0].error
    assert list(store.iterdir()) == [] and versions_of(Catalog(tmp_path / "b.duckdb")) == []


def test_a_drive_already_holding_a_version_folder_is_refused_before_writing(tmp_path):
    """A foreign file of the right size at a planned name (a drive reused from an older
    shipment) was taken as copied by an earlier run: never read, sealed as the catalogued
    content, and only the receiving site's verify found it corrupt."""
    root = make_tree(tmp_path / "src", ["notes.txt", "clip.bin"])
    catalog = scanned(tmp_path, root, "roadcam")
    drive = empty_drive(tmp_path / "drive")
    foreign = drive / "roadcam" / "1" / "notes.txt"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"x" * (root / "notes.txt").stat().st_size)
    with pytest.raises(SourceError, match="already holds roadcam/1") as caught:
        pack(catalog, ["roadcam"], [drive], shipment="reused")
    assert caught.value.hint and "nothing was written" in caught.value.hint
    assert sorted(p.relative_to(drive).as_posix() for p in drive.rglob("*")) == [
        "roadcam", "roadcam/1", "roadcam/1/notes.txt"]
    assert shipments(catalog) == 0


def test_a_drive_inside_the_source_or_holding_it_is_refused(tmp_path):
    """A drive holding the dataset (its data kept on the drive itself) got the copies
    written into the dataset's own folder (roadcam/1/... inside roadcam/) and was sealed
    though its verify could never be whole (the sources were extras); a drive inside the
    dataset put the copies and .sneakernet/ into it, for its next scan to pick up."""
    media = tmp_path / "media"
    root = make_tree(media / "roadcam", ["a.txt", "sub/b.txt"])
    catalog = scanned(tmp_path, root, "roadcam")
    inside = empty_drive(root / "drive")
    before = sorted(p.relative_to(media).as_posix() for p in media.rglob("*"))
    for drive in (media, inside):
        with pytest.raises(SourceError, match="one inside the other"):
            pack(catalog, ["roadcam"], [drive], shipment="overlap")
    assert sorted(p.relative_to(media).as_posix() for p in media.rglob("*")) == before
    assert shipments(catalog) == 0


def test_packing_other_versions_onto_a_sealed_drive_is_refused_not_called_done(tmp_path):
    """`pack roadcam@2 --to d1` with d1 still sealed for an older shipment of roadcam@1
    took it for a re-run of that shipment: exit 0, 'shipment first packed and sealed',
    and roadcam@2 was never packed."""
    root = make_tree(tmp_path / "src", ["a.txt"])
    catalog = scanned(tmp_path, root, "roadcam")
    drive = empty_drive(tmp_path / "drive")
    assert pack(catalog, ["roadcam@1"], [drive], shipment="first").sealed
    make_tree(root, ["a.txt", "b.txt"])
    scan(catalog, root, "roadcam")
    with pytest.raises(UsageError, match=r"marked for shipment 'first' of roadcam@1, not of "
                                         r"roadcam@2"):
        pack(catalog, ["roadcam@2"], [drive])
    assert pack(catalog, ["roadcam@1"], [drive]).sealed  # the same command: still a re-run


def test_unreadable_source_is_reported_unreadable(tmp_path):
    root = make_tree(tmp_path / "src", ["secret.bin", "open.txt"])
    catalog = scanned(tmp_path, root, "perm")
    secret = root / "secret.bin"
    secret.chmod(0)
    drive = empty_drive(tmp_path / "drive")
    try:
        preexec = read_denier(secret)
        proc = run_cli("--catalog", catalog.path, "pack", "perm", "--to", drive, "--json",
                       preexec_fn=preexec)
    finally:
        secret.chmod(0o644)
    assert proc.returncode == EXIT_PROBLEMS and b"Traceback" not in proc.stderr, proc.stderr
    [problem] = json.loads(proc.stdout)["problems"]
    assert (problem["path"], problem["outcome"]) == ("perm/1/secret.bin", "unreadable")
    assert "Permission denied" in problem["detail"] and str(secret) in problem["detail"]
    assert (drive / "perm" / "1" / "open.txt").read_bytes() == (root / "open.txt").read_bytes()
    assert not (drive / "perm" / "1" / "secret.bin").exists()
    assert not (drive / fmt.SEAL_FILE).exists()


# --------------------------------------------------------------------------- space


def test_shipment_that_does_not_fit_exits_9_and_writes_nothing(sample_master, tmp_path):
    catalog = scanned(tmp_path, sample_master, "roadcam")
    small = empty_drive(tmp_path / "small")
    three = [empty_drive(tmp_path / f"d{i}") for i in range(3)]
    too_small = run_cli("--catalog", catalog.path, "pack", "roadcam", "--to", small,
                        "--drive-size", "200K")
    assert_error_line(too_small, EXIT_NO_SPACE, "more is needed")
    # 3 x 300K holds the 497 KiB in total, but the 271 KiB ProRes clip fits on no drive
    with pytest.raises(NoSpaceError, match=r"clip_prores\.mov .* fits on none"):
        pack(catalog, ["roadcam"], three, capacity=300 << 10)
    for folder in (small, *three):
        assert list(folder.iterdir()) == [], folder
    assert shipments(catalog) == 0
