"""The command line as a user meets it: help, errors, exit statuses, the demo."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path

import pytest
import typer

from sneakernet.catalog import errors
from sneakernet.cli.app import _register_commands, app
from sneakernet.cli.exits import ExitStatus

REPO = Path(__file__).resolve().parent.parent


def _commands() -> dict[str, typer.models.CommandInfo]:
    _register_commands()
    return {c.name: c for c in app.registered_commands}


def test_every_command_has_help_and_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    commands = _commands()
    assert {"scan", "stats", "diff", "ls", "find", "query", "export", "demo"} <= set(commands)
    for name, info in commands.items():
        assert info.callback.__doc__, f"{name} has no help text"
        assert re.search(rf"sneakernet {name}\b", readme), f"{name} is not in README.md"


def test_every_error_maps_to_a_documented_exit_status():
    readme = (REPO / "README.md").read_text()
    for status in ExitStatus:
        assert re.search(rf"\|\s*{int(status)}\s*\|", readme), f"exit {status} not documented"
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.SneakernetError):
            ExitStatus(cls.exit_code)


def test_help_runs(cli):
    top = cli("--help")
    assert top.returncode == 0 and "scan" in top.stdout
    for name in _commands():
        sub = cli(name, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "Usage" in sub.stdout


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["stats", "nosuch"], ExitStatus.NOT_FOUND, "no dataset named 'nosuch'"),
        (["stats", "bad/name"], ExitStatus.USAGE, "invalid dataset name"),
        (["scan", "/no/such/folder", "--dataset", "x"], ExitStatus.SOURCE, "does not exist"),
        (["diff", "a@1"], ExitStatus.USAGE, "Missing argument"),
        (["query", "SELEC nonsense"], ExitStatus.USAGE, "query failed"),
        (["frobnicate"], ExitStatus.USAGE, "No such command"),
    ],
)
def test_errors_are_one_clear_line(cli, catalog, args, status, message):
    proc = cli(*args, catalog=catalog)
    assert proc.returncode == status, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_debug_shows_traceback(cli, catalog):
    proc = cli("--debug", "stats", "nosuch", catalog=catalog)
    assert proc.returncode == ExitStatus.NOT_FOUND and "Traceback" in proc.stderr


def test_catalog_from_environment(cli, tmp_path, sample_tree):
    env_catalog = tmp_path / "env" / "cat.duckdb"
    env = {**os.environ, "SNEAKERNET_CATALOG": str(env_catalog)}
    assert cli("scan", sample_tree, "--dataset", "roadcam", env=env).returncode == 0
    assert env_catalog.exists()


def test_a_label_with_nothing_to_record_is_said_not_dropped(cli, catalog, sample_tree):
    assert cli("scan", sample_tree, "--dataset", "roadcam", catalog=catalog).returncode == 0
    again = cli("scan", sample_tree, "--dataset", "roadcam", "--label", "june", "--json",
                catalog=catalog)
    assert again.returncode == 0 and json.loads(again.stdout)["changed"] is False
    assert "label 'june' not used" in again.stderr


def test_default_catalog_under_xdg_data_home(cli, tmp_path, sample_tree):
    env = {k: v for k, v in os.environ.items() if k != "SNEAKERNET_CATALOG"}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    assert cli("scan", sample_tree, "--dataset", "roadcam", env=env).returncode == 0
    assert (tmp_path / "xdg" / "sneakernet" / "catalog.duckdb").exists()


def test_demo_runs_end_to_end(cli, tmp_path):
    proc = cli("demo", "--dir", tmp_path / "demo", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "roadcam@2 recorded" in proc.stdout
    for word in ("moved", "added", "removed", "modified", "h264", "hevc"):
        assert word in proc.stdout
    assert "both drives: whole" in proc.stdout and "verify again: caught" in proc.stdout
    assert "registered roadcam@2" in proc.stdout and "the same as at site A" in proc.stdout
    again = cli("demo", "--dir", tmp_path / "demo")
    assert again.returncode == ExitStatus.SOURCE and "already holds a demo" in again.stderr


def test_packages_cover_every_top_level_folder():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = config["package-dir"]
    for package in config["packages"]:
        assert (REPO / dirs[package] / "__init__.py").exists()
    folders = {p.name for p in REPO.iterdir() if (p / "__init__.py").exists()}
    assert folders == set(dirs.values())
    assert not (REPO / "tests" / "__init__.py").exists()
    assert not (REPO / "conftest.py").exists()


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in readme and "test-command" in ci
