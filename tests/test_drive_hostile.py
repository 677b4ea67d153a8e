"""verify and ingest against hostile drives: links out, special files, tampered, lying or
malformed metadata, broken seals, clashes in the store (DESIGN promises 1-4 and 7).

Every drive starts as a copy of a real, sealed pack of the sample dataset and is then
damaged. Where a manifest is edited it is re-sealed with driveformat.write_seal, so that
only the check under test can catch the damage. The CLI runs in subprocesses where the
exit status and the error line are the point; elsewhere the library is called.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import SourceError
from sneakernet.catalog.scan import scan
from sneakernet.transfer import batching, fsio
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer import drivemanifests as manifests
from sneakernet.transfer.errors import DriveError
from sneakernet.transfer.ingest import ingest
from sneakernet.transfer.pack import pack
from sneakernet.transfer.verify import verify

sys.path.insert(0, str(Path(__file__).parent))  # tests/ is not a package
from transfer_fixtures import (
    EXIT_DRIVE,
    EXIT_NO_SPACE,
    EXIT_PROBLEMS,
    EXIT_SOURCE,
    assert_error_line,
    assert_verify_refused,
    copy_drive,
    data_files,
    flip_byte,
    in_thread,
    make_golden,
    rewrite_parquet,
    run_cli,
    run_cli_many,
    set_column,
    snapshot,
    versions_of,
    without_root_read_powers,
    xxh,
)

NOTES = "roadcam/1/notes.txt"
PRORES = "roadcam/1/cam3/clip_prores.mov"


@pytest.fixture(scope="module")
def golden(sample_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_golden(sample_master, tmp_path_factory)


@pytest.fixture
def drive(golden: Path, tmp_path: Path) -> Path:
    return copy_drive(golden, tmp_path / "drive")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """The receiving site's store, alone in its folder (so a write beside it shows)."""
    path = tmp_path / "site" / "store"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def site_b(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "site-b.duckdb", timeout=30)


def store_files(store: Path) -> list[str]:
    """Data files in the store (its own .sneakernet/ work folder left out)."""
    return sorted(
        p.relative_to(store).as_posix()
        for p in store.rglob("*")
        if not p.is_dir() and not p.relative_to(store).as_posix().startswith(fmt.META_DIR)
    )


def assert_refused_untouched(drive: Path, store: Path, catalog: Catalog, *needles: str) -> str:
    """ingest raises DriveError, the store is as it was and nothing is registered."""
    before = snapshot(store.parent)
    with pytest.raises(DriveError) as caught:
        ingest(catalog, [drive], store)
    for needle in needles:
        assert needle in str(caught.value), (needle, str(caught.value))
    assert snapshot(store.parent) == before
    assert versions_of(catalog) == []
    return str(caught.value)


def verify_one(drive: Path):
    return verify([drive]).drives[0]


def findings(report) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for f in report.findings:
        found.setdefault(f.path, []).append((f.outcome, f.detail))
    return found


# --------------------------------------------------------------------------- good drive, xxhsum


def test_golden_drive_is_well_formed(drive):
    """The contract the damage below is measured against: the golden drive is well formed."""
    for name in (fmt.MANIFEST_FILE, fmt.INDEX_FILE, fmt.MEDIA_FILE):
        assert pq.read_schema(drive / name).equals(manifests.arrow_schema(name))
    assert fmt.check_seal(drive)[1] == []


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def test_drive_json_times_are_rfc3339_as_the_schema_says(drive):
    shipment = json.loads((drive / fmt.DRIVE_FILE).read_text())["shipment"]
    for key in ("created_at", "sealed_at"):
        assert _RFC3339.fullmatch(shipment[key]), (key, shipment[key])


def test_good_drive_verifies_ingests_and_passes_xxhsum(drive, store, site_b):
    check = subprocess.run(["xxhsum", "-c", fmt.PLAIN_MANIFEST], cwd=drive, capture_output=True)
    assert check.returncode == 0, check
    report = verify_one(drive)
    assert report.whole and report.counts["ok"] == len(data_files(drive)) == 10
    result = ingest(site_b, [drive], store)
    assert result.registered == ["roadcam@1"] and not result.problems
    for path in data_files(drive):
        assert xxh(store / path) == xxh(drive / path)
        assert os.stat(store / path).st_mode & 0o222 == 0  # read-only


def test_an_ext4_lost_and_found_does_not_spoil_a_users_verify(drive, tmp_path):
    """Every ext4 drive has a lost+found only root may read: a user's verify of a whole
    drive said 'NOT whole; 1 unreadable lost+found', exit 3."""
    found, locked = drive / "lost+found", drive / "roadcam" / "locked"  # locked still counts
    for folder in (found, locked):
        folder.mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(folder, 54321, 54321)  # not ours, as root's lost+found is not a user's
    preexec = without_root_read_powers if os.geteuid() == 0 else None
    probe = subprocess.run(["ls", found], capture_output=True, preexec_fn=preexec)
    if probe.returncode == 0:
        pytest.skip("cannot make a folder unreadable here")
    proc = run_cli("--catalog", tmp_path / "v.duckdb", "verify", drive, "--json",
                   preexec_fn=preexec)
    assert proc.returncode == EXIT_PROBLEMS, proc
    [report] = json.loads(proc.stdout)["drives"]
    assert report["counts"]["ok"] == 10 and report["seal_ok"]
    assert [(f["path"], f["outcome"]) for f in report["findings"]] == [
        ("roadcam/locked", "unreadable")]


def test_a_drive_given_through_a_link_to_its_mount_point_is_read(drive, store, site_b, tmp_path):
    """The mount point as typed (/media/usb -> /run/media/...) is the operator's word, not
    the drive's: every file was 'unreadable' to verify and 'corrupt' to ingest."""
    os.symlink(drive, tmp_path / "usb")
    report = verify_one(tmp_path / "usb")
    assert report.whole and report.counts["ok"] == 10
    result = ingest(site_b, [tmp_path / "usb"], store)
    assert result.registered == ["roadcam@1"] and not result.problems


def test_bit_flip_in_a_data_file_fails_xxhsum_verify_and_ingest(drive, store, site_b):
    flip_byte(drive / PRORES, 1000)
    check = subprocess.run(["xxhsum", "-c", fmt.PLAIN_MANIFEST], cwd=drive, capture_output=True)
    assert check.returncode != 0 and f"{PRORES}: FAILED".encode() in check.stdout
    report = verify_one(drive)
    assert findings(report)[PRORES][0][0] == "corrupt" and report.counts["ok"] == 9
    result = ingest(site_b, [drive], store)
    assert [(p.path, p.outcome) for p in result.problems] == [(PRORES, "corrupt")]
    assert result.registered == [] and versions_of(site_b) == []
    assert not (store / PRORES).exists()
    assert list((store / fmt.PARTIAL_DIR).iterdir()) == []  # the bad copy was removed


# --------------------------------------------------------------------------- links and specials


@pytest.mark.parametrize("link", ["dataset_to_etc", "dataset_to_lookalike", "version_to_lookalike"])
def test_symlinked_data_folder_is_never_followed(drive, store, site_b, tmp_path, link):
    outside = tmp_path / "outside"
    shutil.copytree(drive / "roadcam", outside / "roadcam")  # right names, sizes and bytes
    if link == "version_to_lookalike":
        shutil.rmtree(drive / "roadcam" / "1")
        os.symlink(outside / "roadcam" / "1", drive / "roadcam" / "1")
    else:
        shutil.rmtree(drive / "roadcam")
        os.symlink("/etc" if link == "dataset_to_etc" else outside / "roadcam", drive / "roadcam")
    before_outside = snapshot(outside)
    report = verify_one(drive)
    assert report.error is None and report.seal_ok
    assert (report.counts["ok"], report.counts["missing"], report.counts["extra"]) == (0, 10, 1)
    assert report.bytes_read == 0
    result = ingest(site_b, [drive], store)
    assert {p.path for p in result.problems} == set(data_files(drive))
    assert result.registered == [] and versions_of(site_b) == []
    assert store_files(store) == [] and snapshot(outside) == before_outside
    if link == "dataset_to_lookalike":  # the CLI says so with exit 3, and no traceback
        cat = tmp_path / "cli.duckdb"
        ver, ing = run_cli_many(["--catalog", cat, "verify", drive],
                                ["--catalog", tmp_path / "cli2.duckdb", "ingest", drive,
                                 "--store", store])
        assert ver.returncode == ing.returncode == EXIT_PROBLEMS, (ver, ing)
        assert b"Traceback" not in ver.stderr + ing.stderr
        assert b"NOT whole" in ver.stdout and b"10 missing" in ver.stdout


def _link_notes_out(drive: Path, tmp_path: Path) -> Path:
    """notes.txt on the drive becomes a link to an outside file with its very bytes."""
    outside = tmp_path / "outside-notes.txt"
    shutil.copyfile(drive / NOTES, outside)
    os.unlink(drive / NOTES)
    os.symlink(outside, drive / NOTES)
    return outside


def test_drive_file_replaced_by_a_link_out_is_corrupt_and_not_followed(
    drive, store, site_b, tmp_path
):
    outside = _link_notes_out(drive, tmp_path)  # same size, same hash: only the rule catches it
    report = verify_one(drive)
    [(outcome, detail)] = findings(report)[NOTES]
    assert outcome == "corrupt" and "symlink" in detail and "not followed" in detail
    assert report.counts["ok"] == 9
    result = ingest(site_b, [drive], store)
    assert [p.path for p in result.problems] == [NOTES]
    assert not os.path.lexists(store / NOTES) and versions_of(site_b) == []
    assert outside.read_bytes() == (tmp_path / "drive").joinpath(NOTES).read_bytes()


@pytest.mark.parametrize("link", ["file", "folder"])
def test_ingest_says_a_symlink_on_the_drive_is_corrupt_as_verify_does(
    drive, store, site_b, tmp_path, link
):
    if link == "file":
        _link_notes_out(drive, tmp_path)
    else:
        shutil.copytree(drive / "roadcam" / "1" / "meta", tmp_path / "meta")
        shutil.rmtree(drive / "roadcam" / "1" / "meta")
        os.symlink(tmp_path / "meta", drive / "roadcam" / "1" / "meta")
    problems = ingest(site_b, [drive], store).problems
    assert problems and all(p.outcome == "corrupt" and "symlink" in p.detail for p in problems)


def _make_special(path: Path, kind: str) -> None:
    os.unlink(path)
    if kind == "fifo":
        os.mkfifo(path)  # no writer: a blocking open would hang
    else:
        try:
            os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 3))  # a /dev/null twin
        except PermissionError:
            pytest.skip("cannot make a device node here")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_special_file_on_the_drive_is_reported_without_blocking(drive, store, site_b, kind):
    _make_special(drive / NOTES, kind)
    os.mkfifo(drive / "roadcam" / "1" / "extra-pipe")
    report = in_thread(lambda: verify_one(drive))
    found = findings(report)
    assert ("missing", "not on the drive") in found[NOTES]
    assert found[NOTES][0][0] == "extra" and found["roadcam/1/extra-pipe"][0][0] == "extra"
    assert report.counts["ok"] == 9 and not report.whole
    result = in_thread(lambda: ingest(site_b, [drive], store))
    assert [p.path for p in result.problems] == [NOTES]
    assert not os.path.lexists(store / NOTES) and versions_of(site_b) == []


def test_device_node_as_drive_metadata_is_refused_without_reading_it_forever(golden, tmp_path):
    """A /dev/zero twin under a sealed name: hashing it for the seal never ended (the CLI
    runs in subprocesses so that a hang fails the test rather than blocking it)."""
    drives = []
    for i, name in enumerate((fmt.PLAIN_MANIFEST, fmt.MANIFEST_FILE)):
        drives.append(copy_drive(golden, tmp_path / f"d{i}"))
        os.unlink(drives[-1] / name)
        try:
            os.mknod(drives[-1] / name, stat.S_IFCHR | 0o644, os.makedev(1, 5))
        except PermissionError:
            pytest.skip("cannot make a device node here")
    store = tmp_path / "store"
    store.mkdir()
    ver, *ings = run_cli_many(
        ["--catalog", tmp_path / "v.duckdb", "verify", *drives],
        *(["--catalog", tmp_path / f"i{i}.duckdb", "ingest", d, "--store", store]
          for i, d in enumerate(drives)), timeout=20)
    assert ver.returncode in (EXIT_PROBLEMS, EXIT_DRIVE) and b"Traceback" not in ver.stderr
    assert (ver.stdout + ver.stderr).count(b"not a regular file") == 2, ver
    for ing in ings:
        assert_error_line(ing, EXIT_DRIVE, "not a regular file")
    assert list(store.iterdir()) == []


class _OpenRecorder:
    """Stands in for `os` inside transfer.fsio: notes every open() of a non-regular file."""

    def __init__(self) -> None:
        self.special: list[str] = []

    def __getattr__(self, name: str):
        return getattr(os, name)

    def open(self, path, flags, mode=0o777, *, dir_fd=None):
        try:
            info = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            info = None
        if info is not None and not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            self.special.append(os.fsdecode(path))
        return os.open(path, flags, mode, dir_fd=dir_fd)


def test_ingest_never_opens_a_special_file_on_the_drive(drive, store, site_b, monkeypatch):
    _make_special(drive / NOTES, "fifo")
    _make_special(drive / PRORES, "device")
    recorder = _OpenRecorder()
    monkeypatch.setattr(fsio, "os", recorder)
    in_thread(lambda: verify_one(drive))
    assert recorder.special == []  # verify walks first and never opens them
    in_thread(lambda: ingest(site_b, [drive], store))
    assert recorder.special == []


# --------------------------------------------------------------------------- hostile manifests

_HOSTILE_PATHS = [
    (fmt.MANIFEST_FILE, "drive_path", "../../outside/notes.txt"),
    (fmt.MANIFEST_FILE, "path", "/etc/passwd"),
    (fmt.MANIFEST_FILE, "drive_path", "roadcam\\1\\notes.txt"),
    (fmt.INDEX_FILE, "path", "../../../outside/notes.txt"),
    (fmt.INDEX_FILE, "drive_path", "/etc/passwd"),
    (fmt.INDEX_FILE, "path", "cam\\..\\..\\notes.txt"),
]


def _poison(drive: Path, name: str, column: str, value: str, *, reseal: bool = True) -> None:
    def change(table):
        return set_column(table, column, lambda row: value if row[column].endswith("notes.txt")
                          else row[column])

    rewrite_parquet(drive, name, change, reseal=reseal)


@pytest.mark.parametrize(("name", "column", "value"), _HOSTILE_PATHS)
def test_resealed_manifest_with_a_hostile_path_is_refused(drive, store, site_b, name, column,
                                                          value):
    _poison(drive, name, column, value)
    if name == fmt.MANIFEST_FILE:  # what verify reads
        report = verify_one(drive)
        assert report.seal_ok and report.error and "hostile manifest" in report.error
        assert repr(value) in report.error and name in report.error
    else:  # what ingest reads
        assert_refused_untouched(drive, store, site_b, "hostile manifest", repr(value), name)


def test_hostile_manifest_cli_exits_8_with_one_line(golden, tmp_path):
    for_verify = copy_drive(golden, tmp_path / "d1")
    _poison(for_verify, fmt.MANIFEST_FILE, "drive_path", "../../outside/notes.txt")
    for_ingest = copy_drive(golden, tmp_path / "d2")
    _poison(for_ingest, fmt.INDEX_FILE, "path", "../../../outside/notes.txt")
    store = tmp_path / "store"
    store.mkdir()
    ver, ing = run_cli_many(["--catalog", tmp_path / "a.duckdb", "verify", for_verify],
                            ["--catalog", tmp_path / "b.duckdb", "ingest", for_ingest,
                             "--store", store])
    assert_verify_refused(ver, "hostile manifest", "'../../outside/notes.txt'")
    assert_error_line(ing, EXIT_DRIVE, "hostile manifest", "'../../../outside/notes.txt'")
    assert list(store.iterdir()) == []


def test_hostile_path_without_a_new_seal_breaks_the_seal(drive, store, site_b):
    _poison(drive, fmt.MANIFEST_FILE, "drive_path", "../../outside/notes.txt", reseal=False)
    report = verify_one(drive)
    assert not report.seal_ok
    assert any(f.outcome == "seal" and fmt.MANIFEST_FILE in f.detail for f in report.findings)
    assert_refused_untouched(drive, store, site_b, "seal is broken", fmt.MANIFEST_FILE)


@pytest.mark.parametrize("dataset", ["..", "ABSOLUTE", "undeclared"])
def test_hostile_dataset_column_in_the_index_never_writes_outside_the_store(
    drive, store, site_b, tmp_path, dataset
):
    if dataset == "ABSOLUTE":
        dataset = str(tmp_path / "elsewhere")
    rewrite_parquet(drive, fmt.INDEX_FILE, lambda t: set_column(t, "dataset", lambda _: dataset))
    try:
        ingest(site_b, [drive], store)
        refused = False
    except DriveError:
        refused = True
    beside = [p.name for p in tmp_path.iterdir()
              if p.name not in ("drive", "site") and not p.name.startswith("site-b.duckdb")]
    assert beside == [] and [p.name for p in store.parent.iterdir()] == ["store"]
    assert store_files(store) == [] and refused


@pytest.mark.parametrize("lie", ["manifest_size", "index_size", "index_hash"])
def test_metadata_that_lies_about_a_file_is_caught(drive, store, site_b, lie):
    if lie == "manifest_size":
        rewrite_parquet(drive, fmt.MANIFEST_FILE, lambda t: set_column(
            t, "size", lambda r: r["size"] + (r["drive_path"] == NOTES)))
        report = verify_one(drive)
        [(outcome, detail)] = findings(report)[NOTES]
        size = (drive / NOTES).stat().st_size
        assert outcome == "corrupt" and f"size {size} bytes, manifest says {size + 1}" in detail
        return
    column = "size" if lie == "index_size" else "hash"
    rewrite_parquet(drive, fmt.INDEX_FILE, lambda t: set_column(
        t, column, lambda r: r[column] if r["path"] != "notes.txt"
        else (r["size"] + 1 if column == "size" else "0" * 32)))
    result = ingest(site_b, [drive], store)
    assert [(p.path, p.outcome) for p in result.problems] == [(NOTES, "corrupt")]
    assert result.registered == [] and not (store / NOTES).exists()


def _listed_twice(table: pa.Table, key: str, name: str, **change) -> pa.Table:
    rows = table.to_pylist()
    twin = [{**row, **change} for row in rows if row[key] == name]
    return pa.Table.from_pylist(rows + twin, schema=table.schema)


def test_a_path_listed_twice_is_refused_not_registered_twice(
    golden, drive, store, site_b, tmp_path, monkeypatch
):
    """The second row of a path in the index (another hash, not carried) found the first
    row's copy already named and took it as its own: the version was registered with the
    path twice, once under a hash its bytes never had. (Batches of one file: as in any
    dataset of more than a batch, the first copy is named before the twin comes.)"""
    monkeypatch.setattr(batching, "BATCH_FILES", 1)
    clip = "cam1/clip_h264.mp4"
    rewrite_parquet(drive, fmt.INDEX_FILE, lambda t: _listed_twice(
        t, "path", clip, hash="0" * 32, carried=False))
    assert_refused_untouched(drive, store, site_b, "listed twice", repr(f"roadcam/1/{clip}"))
    assert "listed twice" in verify_one(drive).error
    copy_of = copy_drive(golden, tmp_path / "other")
    rewrite_parquet(copy_of, fmt.MANIFEST_FILE, lambda t: _listed_twice(t, "drive_path", NOTES))
    report = verify_one(copy_of)  # it counted the file twice, 11 ok and whole
    assert not report.whole and "listed twice" in report.error and repr(NOTES) in report.error


# --------------------------------------------------------------------------- malformed metadata


def _set_doc(change):
    def edit(drive: Path) -> None:
        doc = json.loads((drive / fmt.DRIVE_FILE).read_text())
        change(doc)
        (drive / fmt.DRIVE_FILE).write_text(json.dumps(doc))
    return edit


def _raw_doc(data: bytes):
    def edit(drive: Path) -> None:
        (drive / fmt.DRIVE_FILE).write_bytes(data)
    return edit


def _meta_is_a_link(drive: Path) -> None:
    moved = drive.parent / (drive.name + "-meta")
    shutil.move(drive / fmt.META_DIR, moved)
    os.symlink(moved, drive / fmt.META_DIR)


def _no_drive_json(drive: Path) -> None:
    os.unlink(drive / fmt.DRIVE_FILE)


_BAD_DRIVES = {
    "newer": (_set_doc(lambda d: d.update(format_version=2)), "drive format 2 is newer"),
    "not_json": (_raw_doc(b'{"format": "sneakernet-drive", '), "not valid JSON"),
    "not_utf8": (_raw_doc(b"\xff\xfe{}"), "not valid JSON"),
    "wrong_type": (_set_doc(lambda d: d["drive"].update(number="1")), "drive/number"),
    "extra_key": (_set_doc(lambda d: d.update(evil=True)), "'evil' was unexpected"),
    "a_list": (_raw_doc(b"[1, 2, 3]"), "malformed drive metadata"),
    "huge": (_raw_doc(b'{"pad": "' + b"x" * (10 << 20) + b'"}'), "larger than"),
    "unsealed": (_set_doc(lambda d: d.update(state="packing")), "never sealed"),
    # (these two were whole to verify; ingest waited forever, or died with exit 1)
    "beyond_of": (_set_doc(lambda d: d["drive"].update(number=3)), "drive 3 of 1"),
    "version_twice": (_set_doc(lambda d: d.update(versions=d["versions"] * 2)),
                      "a version listed twice"),
    "meta_link": (_meta_is_a_link, "not a sneakernet drive"),
    "no_drive_json": (_no_drive_json, "has no .sneakernet/drive.json"),
}


def _bad_drive(golden: Path, folder: Path, case: str) -> Path:
    drive = copy_drive(golden, folder / case)
    _BAD_DRIVES[case][0](drive)
    if case != "no_drive_json":
        fmt.write_seal(drive)  # only the check under test may catch it
    return drive


def test_malformed_drive_json_is_refused_by_verify_and_ingest(golden, tmp_path):
    drives = {case: _bad_drive(golden, tmp_path / "drives", case) for case in _BAD_DRIVES}
    store = tmp_path / "site" / "store"
    store.mkdir(parents=True)
    shown = ("huge",)  # the CLI's error path is one for all drive errors: one case shows it
    ver, *ingests = run_cli_many(
        ["--catalog", tmp_path / "v.duckdb", "verify", *drives.values()],
        *(["--catalog", tmp_path / f"{case}.duckdb", "ingest", drives[case], "--store", store]
          for case in shown),
    )
    for case, ing in zip(shown, ingests, strict=True):
        assert_error_line(ing, EXIT_DRIVE, _BAD_DRIVES[case][1])
        assert versions_of(Catalog(tmp_path / f"{case}.duckdb")) == []
    assert ver.returncode == EXIT_DRIVE and b"Traceback" not in ver.stderr + ver.stdout
    lines = ver.stderr.decode().splitlines()
    for case, path in drives.items():
        needle = _BAD_DRIVES[case][1]
        [line] = [x for x in lines if x.startswith(f"error: cannot check {path}: ")]
        assert needle in line, (case, line)
        assert_refused_untouched(path, store, Catalog(tmp_path / "lib.duckdb"), needle)


def test_every_drive_refusal_says_what_to_do(golden, tmp_path):
    silent = {}
    drives = {case: _bad_drive(golden, tmp_path / "drives", case) for case in _BAD_DRIVES}
    drives["evil_name"] = copy_drive(golden, tmp_path / "drives" / "evil_name")
    _evil_dataset_name(drives["evil_name"])
    drives["index_truncated"] = copy_drive(golden, tmp_path / "drives" / "index_truncated")
    _truncate(drives["index_truncated"], fmt.INDEX_FILE)
    for case, drive in drives.items():
        try:
            ingest(Catalog(tmp_path / f"{case}.duckdb"), [drive], tmp_path)
        except DriveError as exc:
            if not exc.hint:
                silent[case] = str(exc)
    assert silent == {}


def test_missing_seal_is_reported_by_verify_and_refused_by_ingest(drive, store, site_b):
    os.unlink(drive / fmt.SEAL_FILE)
    report = verify_one(drive)
    assert not report.seal_ok and not report.whole and report.counts["ok"] == 10
    assert any("seal.json" in f.detail for f in report.findings if f.outcome == "seal")
    assert_refused_untouched(drive, store, site_b, "seal is broken", "seal.json")


def _edit_one_byte(drive: Path, name: str) -> None:
    path = drive / name
    data = path.read_bytes()
    if name.endswith(".parquet"):  # a letter of the footer's created_by: still readable
        offset = data.rindex(b"parquet-cpp-arrow") + 2
    elif name == fmt.DRIVE_FILE:  # a letter of the label: still valid drive metadata
        offset = data.index(b'"label": "') + len(b'"label": "')
    elif name == fmt.SEAL_FILE:  # a hex digit of the seal itself
        offset = data.index(b'"seal": "') + len(b'"seal": "')
    else:
        offset = 0
    flip_byte(path, offset)


_SEALED = [*fmt.SEALED_FILES, fmt.SEAL_FILE]


def test_one_byte_edit_of_any_sealed_file_breaks_the_seal(golden, tmp_path):
    drives = {}
    for i, name in enumerate(_SEALED):
        drives[name] = copy_drive(golden, tmp_path / f"d{i}")
        _edit_one_byte(drives[name], name)
    store = tmp_path / "site" / "store"
    store.mkdir(parents=True)
    ver, ing = run_cli_many(
        ["--catalog", tmp_path / "v.duckdb", "verify", *drives.values()],
        ["--catalog", tmp_path / "i.duckdb", "ingest", drives[fmt.MANIFEST_FILE],
         "--store", store],
    )
    assert ver.returncode == EXIT_PROBLEMS and b"Traceback" not in ver.stderr + ver.stdout
    text = ver.stdout.decode()
    blocks = _blocks_per_drive(text, f"{tmp_path}/d")
    assert len(blocks) == len(_SEALED), text
    for name, (head, found) in zip(_SEALED, blocks, strict=True):
        assert "seal BROKEN" in head and "10 ok" in head, (name, text)
        assert _seal_needle(name) in found, (name, text)
    assert_error_line(ing, EXIT_DRIVE, "seal is broken", fmt.MANIFEST_FILE)
    for name, path in drives.items():
        assert_refused_untouched(path, store, Catalog(tmp_path / "lib.duckdb"), "seal is broken",
                                 _seal_needle(name))


def _blocks_per_drive(text: str, prefix: str) -> list[tuple[str, str]]:
    """verify's human output: a head line per drive, then its indented findings."""
    blocks: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line.startswith(prefix):
            blocks.append((line, ""))
        elif blocks and line.startswith(" "):
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + line + "\n")
    return blocks


def _seal_needle(name: str) -> str:
    return "seal.json was edited" if name == fmt.SEAL_FILE else f"{name}: edited"


def _truncate(drive: Path, name: str) -> None:
    data = (drive / name).read_bytes()
    (drive / name).write_bytes(data[: len(data) // 2])
    fmt.write_seal(drive)


def _drop_column(drive: Path, name: str) -> None:
    rewrite_parquet(drive, name, lambda t: t.drop_columns([t.column_names[-1]]))


def _widen_int32(drive: Path, name: str) -> None:
    def change(table: pa.Table) -> pa.Table:
        index = next(i for i, f in enumerate(table.schema) if f.type == pa.int32())
        field = pa.field(table.schema.field(index).name, pa.int64())
        return table.set_column(index, field, table.column(index).cast(pa.int64()))

    rewrite_parquet(drive, name, change)


@pytest.mark.parametrize("damage", [_truncate, _drop_column, _widen_int32])
@pytest.mark.parametrize("name", [fmt.MANIFEST_FILE, fmt.INDEX_FILE, fmt.MEDIA_FILE])
def test_malformed_parquet_is_refused_by_its_reader(drive, store, site_b, name, damage):
    damage(drive, name)
    if name == fmt.MANIFEST_FILE:  # verify's
        report = verify_one(drive)
        assert report.seal_ok and report.error and name in report.error
        assert "not a readable Parquet file" in report.error or "columns" in report.error
    else:  # ingest's
        assert_refused_untouched(drive, store, site_b, name)


def _evil_dataset_name(drive: Path) -> None:
    _set_doc(lambda d: d["versions"][0].update(dataset="../evil"))(drive)
    fmt.write_seal(drive)


@pytest.mark.parametrize("damage", ["evil_name", "index_truncated", "index_hostile_path",
                                    "media_columns"])
def test_verify_refuses_what_ingest_refuses(drive, store, site_b, damage):
    if damage == "evil_name":
        _evil_dataset_name(drive)
    elif damage == "index_truncated":
        _truncate(drive, fmt.INDEX_FILE)
    elif damage == "index_hostile_path":
        _poison(drive, fmt.INDEX_FILE, "path", "../../../outside/notes.txt")
    else:
        _drop_column(drive, fmt.MEDIA_FILE)
    assert_refused_untouched(drive, store, site_b)
    assert verify_one(drive).error is not None


@pytest.mark.parametrize("damage", ["truncated", "columns", "hostile_path"])
def test_ingest_refuses_what_verify_refuses(drive, store, site_b, damage):
    if damage == "truncated":
        _truncate(drive, fmt.MANIFEST_FILE)
    elif damage == "columns":
        _drop_column(drive, fmt.MANIFEST_FILE)
    else:
        _poison(drive, fmt.MANIFEST_FILE, "drive_path", "../../outside/notes.txt")
    assert verify_one(drive).error is not None
    assert_refused_untouched(drive, store, site_b)


def test_evil_dataset_name_in_drive_json_is_refused_by_ingest(drive, store, site_b):
    _evil_dataset_name(drive)
    assert_refused_untouched(drive, store, site_b, "bad dataset name", "'../evil'")


# --------------------------------------------------------------------------- the store


@pytest.mark.parametrize("existing", ["same_size", "other_size", "link_out"])
def test_clash_in_the_store_keeps_the_store_file_and_registers_nothing(
    drive, store, tmp_path, existing
):
    target = store / NOTES
    target.parent.mkdir(parents=True)
    size = (drive / NOTES).stat().st_size
    if existing == "link_out":
        (tmp_path / "theirs.txt").write_bytes(b"t" * size)
        os.symlink(tmp_path / "theirs.txt", target)
    else:
        target.write_bytes(b"x" * (size if existing == "same_size" else size + 7))
    before = snapshot(store)
    cat = Catalog(tmp_path / "b.duckdb")
    if existing == "same_size":  # the CLI: exit 3, the clash in the report
        proc = run_cli("--catalog", cat.path, "ingest", drive, "--store", store, "--json")
        assert proc.returncode == EXIT_PROBLEMS and b"Traceback" not in proc.stderr, proc.stderr
        out = json.loads(proc.stdout)
    else:
        out = ingest(cat, [drive], store).to_dict()
    [problem] = out["problems"]
    assert (problem["path"], problem["outcome"]) == (NOTES, "clash")
    assert str(target) in problem["detail"] and str(drive / NOTES) in problem["detail"]
    assert snapshot(store)[NOTES] == before[NOTES]
    assert out["registered"] == [] and versions_of(cat) == []
    if existing == "link_out":
        assert (tmp_path / "theirs.txt").read_bytes() == b"t" * size


def test_a_file_where_a_store_folder_goes_is_a_clash_not_an_unreadable_drive(
    drive, store, site_b
):
    """STORE/roadcam/1 was a file: the files to go under its subfolders were 'unreadable:
    Not a directory', as if the drive were at fault."""
    (store / "roadcam").mkdir()
    (store / "roadcam" / "1").write_text("theirs")
    result = ingest(site_b, [drive], store)
    assert sorted((p.path, p.outcome) for p in result.problems) == [
        (path, "clash") for path in sorted(data_files(drive))]
    assert all(f"holds a different file at {store / 'roadcam' / '1'};" in p.detail
               for p in result.problems)
    assert (store / "roadcam" / "1").read_text() == "theirs"
    assert result.registered == [] and versions_of(site_b) == []


def test_duplicate_is_never_linked_to_a_clashing_store_file(tmp_path, store, site_b):
    source = tmp_path / "src"
    source.mkdir()
    (source / "notes.txt").write_text("the real notes\n")
    site_a = Catalog(tmp_path / "a.duckdb")
    scan(site_a, source, "roadcam")
    (source / "more.txt").write_text("more\n")
    scan(site_a, source, "roadcam")  # roadcam@2 carries notes.txt as a duplicate of @1's
    drive = tmp_path / "drive"
    drive.mkdir()
    assert pack(site_a, ["roadcam@1", "roadcam@2"], [drive]).sealed
    (store / "roadcam" / "1").mkdir(parents=True)
    (store / NOTES).write_text("THE FAKE NOTES\n")  # same size, other bytes
    result = ingest(site_b, [drive], store)
    assert [(p.path, p.outcome) for p in result.problems][:1] == [(NOTES, "clash")]
    copy = store / "roadcam" / "2" / "notes.txt"
    assert not copy.exists() or copy.read_text() == "the real notes\n"
    assert "roadcam@2" not in result.registered or copy.read_text() == "the real notes\n"


# The CLI with a store that fills up: writes to the copies being made (`*.part`) fail with
# ENOSPC once the budget (argv[1], bytes) is spent, as the kernel's would.
_FULL_STORE = """
import errno, os, sys
real, budget = os.write, [int(sys.argv.pop(1))]
def write(fd, data):
    if os.readlink(f"/proc/self/fd/{fd}").endswith(".part"):
        budget[0] -= len(data)
        if budget[0] < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(fd, data)
os.write = write
from sneakernet.cli.launch import main
main()
"""


def test_a_full_store_stops_ingest_with_exit_9_and_the_rerun_finishes(drive, store, site_b):
    """Every file after the store filled up was reported 'unreadable' (the drive blamed,
    its version 'corrupt on the drive'), exit 3, and ingest read on through the drive."""
    full = subprocess.run(
        [sys.executable, "-c", _FULL_STORE, str(400 << 10), "--catalog", site_b.path,
         "ingest", drive, "--store", store], capture_output=True, timeout=60)
    assert_error_line(full, EXIT_NO_SPACE, "the store is full", "No space left on device")
    assert b"unreadable" not in full.stdout and versions_of(site_b) == []
    placed = store_files(store)
    assert 0 < len(placed) < 10
    result = ingest(site_b, [drive], store)
    assert result.registered == ["roadcam@1"] and not result.problems
    assert result.drives[0].present_files == len(placed)  # kept, not copied again
    assert store_files(store) == sorted(data_files(drive))


def test_a_read_only_store_is_a_clear_error_not_an_internal_one(drive, store, tmp_path):
    """It was 'internal error: PermissionError ... .sneakernet' with exit 1 (a bug)."""
    store.chmod(0o555)
    preexec = without_root_read_powers if os.geteuid() == 0 else None
    try:
        probe = subprocess.run(["touch", store / "probe"], capture_output=True,
                               preexec_fn=preexec)
        if probe.returncode == 0:
            pytest.skip("cannot make a folder read-only here")
        proc = run_cli("--catalog", tmp_path / "b.duckdb", "ingest", drive, "--store", store,
                       preexec_fn=preexec)
    finally:
        store.chmod(0o755)
    assert_error_line(proc, EXIT_SOURCE, "cannot write to the store", str(store))
    assert list(store.iterdir()) == []


def test_ingest_needs_an_existing_store_folder(drive, tmp_path):
    proc = run_cli("--catalog", tmp_path / "a.duckdb", "ingest", drive, "--store",
                   tmp_path / "nope")
    assert_error_line(proc, EXIT_SOURCE, "the store is not a folder", str(tmp_path / "nope"))
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(SourceError, match="the store is not a folder"):
        ingest(Catalog(tmp_path / "b.duckdb"), [drive], tmp_path / "a-file")
    assert not (tmp_path / "nope").exists()
    assert (tmp_path / "a-file").read_text() == "not a folder"


def test_what_a_mac_or_windows_writes_on_a_drive_does_not_spoil_its_verify(drive, tmp_path):
    """Plugged into a Mac or a Windows laptop on the way, a drive gains index, trash
    and volume folders at its root and .DS_Store files where Finder looked: verify said
    'NOT whole' (all extra). Those are passed over; anything else extra still counts."""
    for name in (".Spotlight-V100/Store-V2/index", ".fseventsd/fseventsd-uuid",
                 ".Trashes/501/old.mov", "System Volume Information/IndexerVolumeGuid",
                 "$RECYCLE.BIN/desktop.ini", ".Trash-1000/files/x", ".DS_Store",
                 "roadcam/1/.DS_Store", "roadcam/1/.fseventsd/not-at-the-root"):
        (drive / name).parent.mkdir(parents=True, exist_ok=True)
        (drive / name).write_bytes(b"os")
    proc = run_cli("--catalog", tmp_path / "v.duckdb", "verify", drive, "--json")
    [report] = json.loads(proc.stdout)["drives"]
    assert [(f["path"], f["outcome"]) for f in report["findings"]] == [
        ("roadcam/1/.fseventsd/not-at-the-root", "extra")]
    (drive / "roadcam/1/.fseventsd/not-at-the-root").unlink()
    whole = run_cli("--catalog", tmp_path / "v.duckdb", "verify", drive, "--json")
    assert whole.returncode == 0, whole.stdout
    assert json.loads(whole.stdout)["drives"][0]["counts"]["ok"] == 10


def test_a_version_the_catalog_holds_with_other_files_is_a_problem_not_a_wait(
    drive, store, site_b, tmp_path
):
    """ingest exited 0 with 'waiting: ... a different roadcam@1': the receive service then
    called the drive done, and that version could never be registered by any drive."""
    local = tmp_path / "local-roadcam"
    local.mkdir()
    (local / "mine.txt").write_bytes(b"site B's own roadcam, scanned before the drive came")
    scan(site_b, local, "roadcam")
    proc = run_cli("--catalog", site_b.path, "ingest", drive, "--store", store, "--json")
    assert proc.returncode == EXIT_PROBLEMS, proc.stderr
    out = json.loads(proc.stdout)
    assert [(p["path"], p["outcome"]) for p in out["problems"]] == [("roadcam/1", "clash")]
    assert "already has a different roadcam@1" in out["problems"][0]["detail"]
    assert out["registered"] == [] and versions_of(site_b) == [("roadcam", 1)]
    assert sorted(store_files(store)) == sorted(data_files(drive))  # nothing lost
