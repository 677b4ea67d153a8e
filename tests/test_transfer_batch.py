"""Pack, verify and ingest of many small files through batched syncs (copier.Batch).

The batch makes copies durable together, reads them back, then names them: these
tests hold it to the one-file rules (final name only after the bytes are proven,
never over an existing file, partial copies continued, corrupt copies not named).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.scan import scan
from sneakernet.transfer import copier
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer.ingest import ingest
from sneakernet.transfer.pack import pack
from sneakernet.transfer.verify import verify


def _tree(root: Path, files: int) -> dict[str, bytes]:
    made = {}
    for i in range(files):
        rel = f"cam{i % 3}/day{i % 7}/clip{i:04d}.bin"
        data = (f"{i}:" * (i % 50 + 1)).encode() if i % 11 else b""
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        made[rel] = data
    # The same content twice: carried once, linked on ingest.
    (root / "dup").mkdir()
    (root / "dup" / "again.bin").write_bytes(made["cam1/day1/clip0001.bin"])
    made["dup/again.bin"] = made["cam1/day1/clip0001.bin"]
    return made


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(copier, "BATCH_FILES", 16)


def _scanned(tmp_path: Path, files: int) -> tuple[Catalog, Path, dict[str, bytes]]:
    root = tmp_path / "src"
    made = _tree(root, files)
    catalog = Catalog(tmp_path / "a.duckdb")
    scan(catalog, root, "ds")
    return catalog, root, made


def _drive_files(drive: Path) -> dict[str, bytes]:
    return {
        p.relative_to(drive / "ds" / "1").as_posix(): p.read_bytes()
        for p in (drive / "ds" / "1").rglob("*")
        if p.is_file()
    }


def test_pack_verify_ingest_many_small_files(tmp_path, small_batches):
    catalog, _, made = _scanned(tmp_path, 100)
    drive = tmp_path / "drive"
    drive.mkdir()
    result = pack(catalog, ["ds@1"], [drive], shipment="s1")
    assert result.sealed and not result.problems
    carried = len(set(made.values()))  # duplicates (the empty files too) are carried once
    assert result.drives[0].copied_files == carried
    assert not (drive / fmt.PARTIAL_DIR).exists(), "pack removes its emptied temp folder"
    on_drive = _drive_files(drive)
    assert set(on_drive.values()) == set(made.values()) and len(on_drive) == carried
    assert all(made[k] == v for k, v in on_drive.items())
    checked = verify([drive])
    assert checked.whole and checked.drives[0].counts["ok"] == carried

    store = tmp_path / "store"
    store.mkdir()
    got = ingest(Catalog(tmp_path / "b.duckdb"), [drive], store)
    assert got.registered == ["ds@1"] and not got.problems
    d = got.drives[0]
    assert (d.copied_files, d.linked_files) == (carried, len(made) - carried)
    for rel, data in made.items():
        path = store / "ds" / "1" / rel
        assert path.read_bytes() == data
        assert path.stat().st_mode & 0o222 == 0
    assert not list((store / fmt.PARTIAL_DIR).iterdir())


def test_pack_continues_partial_copies_and_skips_placed_files(tmp_path, small_batches):
    catalog, _, made = _scanned(tmp_path, 40)
    drive = tmp_path / "drive"
    drive.mkdir()
    first = pack(catalog, ["ds@1"], [drive], shipment="s1")
    assert first.sealed
    # Undo the seal and leave the drive as a killed run would: some files named,
    # one partial copy half written, one missing.
    with catalog.write() as con:
        con.execute("UPDATE drives SET seal = NULL")
    doc = fmt.read_drive(drive).doc
    doc["state"] = "packing"
    fmt.write_drive_doc(drive, doc)
    name = "cam2/day2/clip0002.bin"
    placed = drive / "ds" / "1" / name
    digest = copier.xxhash.xxh3_128(made[name]).hexdigest()
    os.chmod(placed, 0o644)
    placed.unlink()
    (drive / fmt.PARTIAL_DIR).mkdir(exist_ok=True)
    (drive / fmt.PARTIAL_DIR / f"{digest}.part").write_bytes(made[name][:5])
    (drive / "ds" / "1" / "cam0/day0/clip0000.bin").unlink()
    again = pack(catalog, ["ds@1"], [drive])
    assert again.resumed and again.sealed and not again.problems
    d = again.drives[0]
    assert d.copied_files == 2 and d.reused_bytes == 5
    assert placed.read_bytes() == made[name]
    assert verify([drive]).whole


def test_corrupt_read_back_is_never_named(tmp_path, small_batches, monkeypatch):
    catalog, _, _ = _scanned(tmp_path, 30)
    drive = tmp_path / "drive"
    drive.mkdir()
    real = copier.check_readback
    bad = "cam1/day4/clip0004.bin"

    def flaky(out, size, digest, buffer, *, dropped=False):
        if os.readlink(f"/proc/self/fd/{out}").endswith(".part") and size == len(
            ("4:" * 5).encode()
        ):
            raise copier.CopyCorrupt("simulated bad sector")
        return real(out, size, digest, buffer, dropped=dropped)

    monkeypatch.setattr(copier, "check_readback", flaky)
    result = pack(catalog, ["ds@1"], [drive], shipment="s1")
    assert [(p.path, p.outcome) for p in result.problems] == [(f"ds/1/{bad}", "corrupt-copy")]
    assert not result.sealed
    assert not (drive / "ds" / "1" / bad).exists()
    assert not list((drive / fmt.PARTIAL_DIR).iterdir())  # the corrupt copy was removed
    monkeypatch.setattr(copier, "check_readback", real)
    again = pack(catalog, ["ds@1"], [drive])
    assert again.sealed and not again.problems and verify([drive]).whole


def test_batch_never_names_over_an_existing_file(tmp_path):
    folder = tmp_path / "partial"
    folder.mkdir()
    batch = copier.Batch(folder, readback=True)
    items = []
    for i, data in enumerate([b"one", b"two", b"three"]):
        src = tmp_path / f"src{i}"
        src.write_bytes(data)
        fd = os.open(src, os.O_RDONLY)
        digest = copier.xxhash.xxh3_128(data).hexdigest()
        tmp = folder / f"{digest}.part"
        out, result = copier.start_copy(
            fd, tmp, size=len(data), digest=digest, buffer=bytearray(1 << 16)
        )
        os.close(fd)
        items.append(copier.Pending(out, tmp, tmp_path / "dst" / f"f{i}", len(data), digest,
                                    result, i))
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "f1").write_bytes(b"somebody else's")
    try:
        for item in items:
            batch.add(item)
        done = batch.drain()
    finally:
        batch.close()
    assert [type(i.error) for i in done] == [type(None), FileExistsError, type(None)]
    assert (tmp_path / "dst" / "f1").read_bytes() == b"somebody else's"
    assert (tmp_path / "dst" / "f2").read_bytes() == b"three"
