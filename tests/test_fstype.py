"""Reading by file system: a file server gets parallel walks and reads, same version.

The parallel paths (several walk threads, every reader on its own chunk of small
files) run here on a real local tree by handing scan the file-server profile; the
speed they buy on a slow server is measured by bench/scan_nas.py on a FUSE mount
that waits on every request.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from sneakernet.catalog import fstype
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.query import run_query
from sneakernet.catalog.scan import ScanResult, scan

sys.path.insert(0, str(Path(__file__).parent))  # tests/ is not a package
from transfer_fixtures import xxh

FILE_SERVER = fstype.ReadProfile("nfs4", True, walk_workers=8, read_workers=16)


@pytest.mark.parametrize("fs_type", ["nfs", "nfs4", "cifs", "smb3", "9p", "fuse", "fuse.sshfs",
                                     "fuse.rclone", "ceph", "virtiofs"])
def test_file_servers_are_remote(fs_type: str) -> None:
    assert fstype.is_remote(fs_type)


@pytest.mark.parametrize("fs_type", ["ext4", "xfs", "btrfs", "zfs", "tmpfs", "exfat", "vfat",
                                     "ntfs3", "fuseblk", "overlay", "unknown"])
def test_local_file_systems_are_not(fs_type: str) -> None:
    assert not fstype.is_remote(fs_type)


def test_a_local_folder_is_read_as_local(tmp_path: Path) -> None:
    profile = fstype.read_profile(tmp_path, local_workers=3)
    assert profile.filesystem not in ("", "unknown")
    assert (profile.remote, profile.walk_workers, profile.read_workers) == (False, 1, 3)
    assert fstype.read_profile(tmp_path, 3, workers=5).read_workers == 5


def test_the_mount_point_holding_a_path_is_found() -> None:
    if not Path("/proc/self/mounts").exists():
        pytest.skip("no /proc/self/mounts")
    assert fstype.filesystem_type("/proc/self") == "proc"
    assert fstype.filesystem_type(Path("/proc/self/mounts")) == "proc"


def _hostile_tree(root: Path, sample_tree: Path) -> None:
    root.mkdir()
    (root / "videos").symlink_to(sample_tree, target_is_directory=True)  # recorded, not followed
    crowd = root / "crowd"  # more entries than one walk chunk (4,096): read in several parts
    crowd.mkdir()
    for i in range(4500):
        (crowd / f"f{i:05}").write_bytes(b"x" * (i % 7))
    for d in range(12):
        sub = root / "small" / f"d{d:02}" / "deeper"
        sub.mkdir(parents=True)
        for i in range(40):
            (sub / f"c{i:03}.bin").write_bytes(os.urandom(1000 + 97 * i))
    (root / "big.bin").write_bytes(os.urandom(3 << 20))
    (root / "naïve name\nwith newline").write_bytes(b"unicode")
    (root / os.fsdecode(b"bad-\xff-utf8")).write_bytes(b"raw bytes")
    (root / "loop").symlink_to(root)
    os.mkfifo(root / "pipe")
    shutil.copytree(sample_tree, root / "clips")  # real clips, and a broken one


def _files(catalog: Catalog) -> list[tuple]:
    rows = run_query(catalog, "SELECT * EXCLUDE (dataset) FROM files ORDER BY path").rows
    return sorted(rows, key=repr)


def _problems(result: ScanResult) -> list[tuple[str, str]]:
    return sorted((p.path, p.kind) for p in result.problems)


def test_read_as_a_file_server_the_version_is_the_same(tmp_path: Path, sample_tree: Path) -> None:
    root = tmp_path / "tree"
    _hostile_tree(root, sample_tree)
    local, server = Catalog(tmp_path / "local.duckdb"), Catalog(tmp_path / "server.duckdb")

    by_local = scan(local, root, "ds", workers=2)
    by_server = scan(server, root, "ds", reading=FILE_SERVER)

    assert by_server.reading == FILE_SERVER.to_dict()
    assert by_local.reading["remote"] is False
    assert by_server.hashed_files == by_local.hashed_files == by_local.files > 4900
    assert _problems(by_server) == _problems(by_local)
    assert ("pipe", "skipped") in _problems(by_server)
    assert any(kind == "broken-video" for _path, kind in _problems(by_server))
    assert _files(server) == _files(local)
    digests = dict(run_query(server, "SELECT path, hash FROM files").rows)
    for name in ("big.bin", "small/d07/deeper/c039.bin", "crowd/f04499"):
        assert digests[name] == xxh(root / name)
    assert digests["videos"] is None  # the link itself, never its folder


def test_a_rescan_read_as_a_file_server_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    for d in range(6):
        (root / f"d{d}").mkdir(parents=True)
        for i in range(300):
            (root / f"d{d}" / f"{i}.bin").write_bytes(os.urandom(200 + i))
    catalog = Catalog(tmp_path / "cat.duckdb")
    first = scan(catalog, root, "ds", reading=FILE_SERVER)
    again = scan(catalog, root, "ds", reading=FILE_SERVER)
    (root / "d3" / "7.bin").write_bytes(b"changed")
    third = scan(catalog, root, "ds", reading=FILE_SERVER)
    assert (first.version, again.version, again.reused_files) == (1, None, 1800)
    assert (third.version, third.hashed_files) == (2, 1)
