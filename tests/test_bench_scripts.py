"""The bench scripts still run: they are not part of the suite, so nothing else would notice.

catalog_10m writes straight into the catalog's tables (no scan), so a schema
migration can break it silently: session 4's v2 columns on `versions` did, and
it went unnoticed until the next measurement. The others are checked as far as
their command line; running them needs peers (apt, pip) and minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def test_there_are_bench_scripts_to_check():
    assert {"scan_big.py", "scan_small.py", "catalog_10m.py", "transfer_big.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_parses_its_command_line(script):
    proc = subprocess.run([sys.executable, str(BENCH / script), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


def test_catalog_10m_builds_a_catalog_of_the_current_schema_and_answers(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "catalog_10m.py"), "--versions", "2", "--entries", "2000",
         "--runs", "1", "--json", "--work", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["info"]["entries"] == 4000
    rows = {row["what"]: row for row in report["rows"]}
    assert rows["stats big@2"]["library_s"] > 0 and rows["stats big@2"]["CLI_s"] > 0
    # Bars are figures, not assertions: a loaded CI machine may miss them (speed is
    # measured in bench/, never asserted in tests). That they are computed is the check.
    assert report["bars"] and all(bar["measured"] > 0 for bar in report["bars"])
