"""Whole files reach their final name durably: the file is fsynced, renamed, and then
the folder holding the name is fsynced (else a power cut can undo the rename).

A power cut cannot be real here, so the order of the real system calls is watched
instead: os.fsync and os.replace are wrapped, and still do their work.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pyarrow as pa
import pytest

from sneakernet.catalog import listing
from sneakernet.catalog.scan import scan
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer import drivemanifests
from sneakernet.transfer.atomic import write_text_atomic
from sneakernet.transfer.fsio import atomic_write


@pytest.fixture
def syscalls(monkeypatch) -> list[tuple[str, object]]:
    calls: list[tuple[str, object]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        calls.append(("fsync-dir" if stat.S_ISDIR(info.st_mode) else "fsync-file", info.st_ino))
        real_fsync(fd)

    def replace(src, dst, **kw) -> None:
        real_replace(src, dst, **kw)
        calls.append(("replace", os.stat(dst).st_ino))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return calls


def _durably_named(calls: list[tuple[str, object]], final: Path) -> bool:
    """The file was fsynced, then renamed to `final`, then `final`'s folder was fsynced."""
    file_ino, dir_ino = final.stat().st_ino, final.parent.stat().st_ino
    synced, renamed = ("fsync-file", file_ino), ("replace", file_ino)
    if synced not in calls or renamed not in calls:
        return False
    after_rename = calls[calls.index(renamed) + 1 :]
    return calls.index(synced) < calls.index(renamed) and ("fsync-dir", dir_ino) in after_rename


def test_a_drive_manifest_is_named_durably(tmp_path, syscalls):
    (tmp_path / fmt.META_DIR).mkdir()
    writer = drivemanifests.ManifestWriter(tmp_path, fmt.MEDIA_FILE)
    writer.write(pa.Table.from_pylist([], schema=writer.schema))
    writer.close()
    assert _durably_named(syscalls, writer.path), syscalls


def test_an_export_is_named_durably(sample_tree, catalog, tmp_path, syscalls):
    scan(catalog, sample_tree, "roadcam")
    out = tmp_path / "out" / "roadcam.parquet"
    out.parent.mkdir()
    listing.export(catalog, "roadcam", out)
    assert _durably_named(syscalls, out), syscalls


def test_drive_metadata_and_reports_are_named_durably(tmp_path, syscalls):
    atomic_write(tmp_path / "drive.json", b"{}\n")
    write_text_atomic(tmp_path / "report.html", "<html></html>\n")
    assert _durably_named(syscalls, tmp_path / "drive.json"), syscalls
    assert _durably_named(syscalls, tmp_path / "report.html"), syscalls
