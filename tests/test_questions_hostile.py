"""The question commands (stats, versions, diff, find, query, export) and the catalog
file against hostile input: odd refs, markup and odd values in data, names that share
a readable form, files that change while read, full disks, unusable catalog paths.

Real files in tmp_path, a real DuckDB catalog, the real CLI in a subprocess where the
behaviour is the CLI's (exit status, one clear error line, what reaches the terminal).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import UsageError
from sneakernet.catalog.refs import parse_ref
from sneakernet.catalog.scan import scan

CLI = [sys.executable, "-m", "sneakernet.cli"]
EXIT_OK, EXIT_USAGE, EXIT_CATALOG, EXIT_SOURCE = 0, 2, 6, 7
MAX_VERSION = 2**31 - 1  # versions.version is an INTEGER


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SNEAKERNET_CATALOG"}
    env["COLUMNS"] = "200"
    return env


def run_cli(*args: str | os.PathLike, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=60, env=_env(), **kwargs)


def run_cli_many(*argvs: list) -> list[subprocess.CompletedProcess]:
    """Several CLI runs at once (each is mostly interpreter start-up); results in order."""
    procs = [subprocess.Popen([*CLI, *map(str, argv)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env())
             for argv in argvs]
    done = []
    for argv, proc in zip(argvs, procs, strict=True):
        out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    return done


def one_error_line(proc: subprocess.CompletedProcess, status: int) -> str:
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: "), lines
    assert lines[1].startswith("hint: "), lines
    return lines[0]


@pytest.fixture
def small(tmp_path: Path) -> tuple[Catalog, Path]:
    """A catalog holding `small@1`: two text files."""
    root = tmp_path / "small"
    root.mkdir()
    (root / "a.txt").write_text("alpha\n")
    (root / "b.txt").write_text("beta\n")
    catalog = Catalog(tmp_path / "cat.duckdb")
    scan(catalog, root, "small")
    return catalog, root


# --------------------------------------------------------------------------- refs


@pytest.mark.parametrize("ref", [
    "small@\u00b3",  # superscript three: str.isdigit() says yes, int() says no
    "small@\u0661",  # Arabic-Indic one: int() reads it as 1, a version nobody typed
    "small@" + "9" * 5000,  # longer than int() converts
    f"small@{MAX_VERSION + 1}",  # no INTEGER version can be that
])
def test_refs_with_odd_digits_are_refused_as_usage_errors(ref: str):
    with pytest.raises(UsageError):
        parse_ref(ref)


def test_the_largest_version_number_still_parses():
    assert parse_ref(f"small@{MAX_VERSION}").version == MAX_VERSION
    assert parse_ref("small@007").version == 7


def test_negative_thread_count_is_a_usage_error(small, tmp_path: Path):
    catalog, root = small
    with pytest.raises(UsageError, match="threads"):
        scan(catalog, root, "small", rehash=True, workers=-1)
