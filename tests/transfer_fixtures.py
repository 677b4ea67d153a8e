"""Helpers shared by test_drive_hostile.py and test_pack_hostile.py (imported by them only).

A real pack of the sample dataset made once per session (the "golden" drive), which
each test copies and then damages; the real CLI in subprocesses; and the tools to
re-write a drive's Parquet files and re-seal them, so that only the check under test
can catch the damage.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.scan import scan
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer.pack import pack

CLI = [sys.executable, "-m", "sneakernet.cli"]
EXIT_OK, EXIT_PROBLEMS, EXIT_SOURCE, EXIT_DRIVE, EXIT_NO_SPACE, EXIT_REFUSED = 0, 3, 7, 8, 9, 10


# --------------------------------------------------------------------------- the CLI


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SNEAKERNET_CATALOG"}
    env["COLUMNS"] = "200"
    return env


def run_cli_many(*argvs: list, timeout: float = 60, preexec_fn=None):
    """Several real CLI runs at once (each is mostly interpreter start-up); in order."""
    procs = [
        subprocess.Popen([*CLI, *map(str, argv)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=_env(), preexec_fn=preexec_fn)
        for argv in argvs
    ]
    done = []
    for argv, proc in zip(argvs, procs, strict=True):
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for hung in procs:  # none is left behind, busy, after the test fails
                hung.kill()
                hung.communicate()
            pytest.fail(f"{argv} did not finish within {timeout} s")
        done.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    return done


def run_cli(*args, timeout: float = 60, preexec_fn=None) -> subprocess.CompletedProcess:
    return run_cli_many(list(args), timeout=timeout, preexec_fn=preexec_fn)[0]


def assert_error_line(proc: subprocess.CompletedProcess, status: int, *needles: str) -> str:
    """Exit `status`; stderr is 'error: ...' (optionally one 'hint: ...'); no traceback."""
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == status, (proc.returncode, proc.stdout[-2000:], stderr)
    assert "Traceback" not in stderr and b"Traceback" not in proc.stdout, stderr
    lines = stderr.splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("error: "), lines
    assert len(lines) == 1 or lines[1].startswith("hint: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def assert_verify_refused(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """verify's refusal of a drive: exit 8, an 'error: cannot check <drive>: <why>' line and a
    hint on stderr, no traceback."""
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == EXIT_DRIVE, (proc.returncode, proc.stdout, stderr)
    assert b"Traceback" not in proc.stderr + proc.stdout
    [line] = [x for x in stderr.splitlines() if x.startswith("error: cannot check ")]
    assert any(x.startswith("hint: ") for x in stderr.splitlines()), stderr
    for needle in needles:
        assert needle in line, (needle, line)
    return line


# --------------------------------------------------------------------------- drives


def make_golden(sample_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sealed drive carrying roadcam@1 (the sample dataset); tests copy it, never change it."""
    base = tmp_path_factory.mktemp("golden")
    catalog = Catalog(base / "site-a.duckdb")
    scan(catalog, sample_master, "roadcam")
    drive = base / "drive"
    drive.mkdir()
    result = pack(catalog, ["roadcam@1"], [drive], shipment="to-b", to_site="B")
    assert result.sealed and not result.problems
    return drive


def copy_drive(golden: Path, dest: Path) -> Path:
    shutil.copytree(golden, dest, symlinks=True)
    return dest


def data_files(drive: Path) -> list[str]:
    """The drive paths of the data files on a drive (its MANIFEST.xxh128 order)."""
    lines = (drive / fmt.PLAIN_MANIFEST).read_text("utf-8").splitlines()
    return [line.split("  ", 1)[1] for line in lines]


def rewrite_parquet(drive: Path, name: str, change: Callable[[pa.Table], pa.Table],
                    *, reseal: bool = True) -> None:
    """Re-write one of the drive's Parquet files; re-seal so only other checks can object."""
    table = change(pq.read_table(drive / name))
    pq.write_table(table, drive / name)
    if reseal:
        fmt.write_seal(drive)


def set_column(table: pa.Table, column: str, change: Callable) -> pa.Table:
    """`table` with `change(row)` as the value of `column` in every row (row is a dict)."""
    index = table.schema.get_field_index(column)
    field = table.schema.field(index)
    values = [change(row) for row in table.to_pylist()]
    return table.set_column(index, field, pa.array(values, field.type))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def snapshot(folder: Path) -> dict[str, object]:
    """Every name under `folder`: file bytes, link target, or None for a folder."""
    found: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_symlink():
            found[key] = ("link", os.readlink(path))
        elif path.is_file():
            found[key] = path.read_bytes()
        else:
            found[key] = None
    return found


def versions_of(catalog: Catalog) -> list[tuple[str, int]]:
    if not catalog.path.exists():
        return []
    with catalog.read() as con:
        return con.execute("SELECT dataset, version FROM versions ORDER BY ALL").fetchall()


def xxh(path: str | bytes | os.PathLike) -> str:
    with open(path, "rb") as handle:
        return xxhash.xxh3_128_hexdigest(handle.read())


def in_thread(call: Callable, *, timeout: float = 30):
    """call(), failing the test (instead of hanging it) if it does not return in time."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{call} did not return within {timeout} s (blocked on a special file?)")
    if "error" in box:
        raise box["error"]
    return box["result"]


# --------------------------------------------------------------------------- permissions

_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _PR_CAPBSET_DROP = 1, 2, 24


def without_root_read_powers() -> None:
    """preexec_fn: drop the capabilities that let root read a chmod 000 file (as in
    test_scan_hostile.py), so EACCES is real for the child even when tests run as root."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def read_denier(probe: Path):
    """The preexec_fn that makes `probe` (chmod 000) unreadable to a child, or skip."""
    preexec = without_root_read_powers if os.geteuid() == 0 else None
    try:
        cat = subprocess.run(["cat", str(probe)], capture_output=True, preexec_fn=preexec)
    except subprocess.SubprocessError:
        pytest.skip("cannot drop root's read capabilities here")
    if cat.returncode == 0:
        pytest.skip("cannot make a file unreadable here")
    return preexec
