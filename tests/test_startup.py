"""The CLI's fixed cost: what `--help` and usage errors load, and values converted without pydantic.

The benchmarks compare `sneakernet scan` and `sneakernet verify` with `cat`, so
start-up counts. DuckDB, Arrow and PyAV load only inside the commands that use
them; rich.console only when something is printed through it; pydantic (typer's
converter) only for values typer has to word an error about.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

from sneakernet.cli.app import _GLOBAL_WITH_VALUE, _command_named, _register_commands, app
from sneakernet.cli.coercion import _PlainParam, use_plain_coercion

HEAVY = ("duckdb", "pyarrow", "av")
TYPER_EXTRAS = ("pydantic", "rich.console")

# Runs the real entry point, then lists on stderr the watched modules it loaded.
_PROBE = """
import atexit, sys
watched = sys.argv.pop(1).split(",")
atexit.register(lambda: sys.__stderr__.write(
    "LOADED:" + ",".join(m for m in watched if m in sys.modules) + "\\n"))
from sneakernet.cli.launch import main
main()
"""


def _loaded(*args: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, set[str]]:
    watched = ",".join(HEAVY + TYPER_EXTRAS)
    cmd = [sys.executable, "-c", _PROBE, watched, "--catalog", str(tmp_path / "c.duckdb"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("LOADED:"))
    return proc, {m for m in line.removeprefix("LOADED:").split(",") if m}


def _command_names() -> list[str]:
    _register_commands()
    return sorted(c.name for c in app.registered_commands)


@pytest.mark.parametrize("args", [["--help"], *[[name, "--help"] for name in _command_names()]])
def test_help_loads_no_heavy_library(args, tmp_path):
    proc, loaded = _loaded(*args, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not loaded & set(HEAVY), f"{args} imported {loaded}"
    assert not loaded & set(TYPER_EXTRAS), (
        f"{args} imported {loaded}: typer's converter or rich came back "
        "(see cli/coercion.py and cli/render.py)"
    )
    assert not (tmp_path / "c.duckdb").exists()


@pytest.mark.parametrize(
    "args",
    [["scan"], ["scan", "/some/where"], ["verify"], ["frobnicate"], ["diff", "a@1"],
     ["pack", "x@1"], ["stats", "x", "--by"]],
)
def test_usage_errors_load_no_heavy_library(args, tmp_path):
    proc, loaded = _loaded(*args, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert not loaded & set(HEAVY + TYPER_EXTRAS), f"{args} imported {loaded}"


def test_a_malformed_value_gets_typers_own_message(tmp_path):
    proc, loaded = _loaded("--timeout", "soon", "datasets", tmp_path=tmp_path)
    assert proc.returncode == 2
    assert "Invalid value for '--timeout'" in proc.stderr
    assert not loaded & set(HEAVY)


def _params() -> dict[tuple[str, str], typer.core.TyperOption]:
    group = typer.main.get_command(app)
    found = {("", p.name): p for p in group.params}
    for name, command in group.commands.items():
        found.update({(name, p.name): p for p in command.params})
    return found


# (command, parameter): inputs the plain converter takes itself, or hands to typer.
_VALUES = {
    ("", "timeout"): ["60", "0.5", "1e3", ".5", "5.", "+2", "-0.0", 60.0, 7, "1_0", " 5", "inf",
                      "x", "", "١٢"],
    ("scan", "threads"): ["4", "007", "-1", "+3", 4, "1.0", "1.5", "x", " 2", "١٢"],
    ("scan", "dataset"): ["roadcam", "", "a b"],
    ("scan", "path"): ["/tmp", "relative/dir", "", Path("/tmp")],
    ("verify", "drives"): [("/tmp", "d2"), ["a"], ()],
    ("verify", "report"): ["/tmp/report.html", "/tmp"],
    ("pack", "to"): [("/tmp",), ("a", "b")],
    ("pack", "refs"): [("a@1", "b"), ()],
    ("receive", "poll"): ["0.1", "3", "0.01", "-1"],
    ("receive", "settle"): ["0", "2.5", "-0.5"],
}


@pytest.mark.parametrize("key", list(_VALUES))
def test_plain_conversion_matches_typers(key, monkeypatch):
    """For every input, the plain converter returns what typer's pydantic one does, or
    raises the same error."""
    from typer._coercion import build_runtime_param

    monkeypatch.setattr(typer.core, "build_runtime_param", build_runtime_param)  # undone after
    use_plain_coercion()
    param = _params()[key]
    plain = param.get_runtime_param()
    assert isinstance(plain, _PlainParam), key
    reference = build_runtime_param(param.type_descriptor)
    ctx = typer.main.get_command(app).make_context("sneakernet", ["--help"],
                                                   resilient_parsing=True)
    for value in _VALUES[key]:
        try:
            want = reference.coerce(value, param=param, ctx=ctx)
        except Exception as exc:  # the error itself is compared below
            with pytest.raises(type(exc)) as got:
                plain.coerce(value, param=param, ctx=ctx)
            assert str(got.value) == str(exc), (key, value)
            continue
        got = plain.coerce(value, param=param, ctx=ctx)
        assert got == want and type(got) is type(want), (key, value, got, want)
        if isinstance(want, list):
            assert [type(x) for x in got] == [type(x) for x in want], (key, value)


def test_the_command_word_is_found_past_the_global_options():
    group = typer.main.get_command(app)
    takes_value = {opt for p in group.params if not getattr(p, "is_flag", False) for opt in p.opts}
    assert takes_value == set(_GLOBAL_WITH_VALUE), "update _GLOBAL_WITH_VALUE in cli/app.py"
    assert _command_named(["--catalog", "scan", "verify", "x"]) == "verify"
    assert _command_named(["--catalog=c", "--timeout", "5", "--debug", "scan", "-d", "x"]) == "scan"
    assert _command_named(["--", "ls"]) == "ls"
    assert _command_named(["--help"]) is None
    assert _command_named(["--catalog"]) is None


def test_stats_groupings_in_the_help_are_the_librarys():
    from sneakernet.catalog.stats import GROUPINGS
    from sneakernet.cli.catalog_cmds import STATS_GROUPINGS

    assert tuple(GROUPINGS) == STATS_GROUPINGS
