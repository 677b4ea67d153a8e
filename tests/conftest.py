"""Shared fixtures: real sample clips (encoded once per session), real catalogs, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sneakernet.catalog import samples
from sneakernet.catalog.db import Catalog


@pytest.fixture(scope="session")
def sample_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("master") / "roadcam"
    samples.write_sample_dataset(root)
    return root


@pytest.fixture
def sample_tree(sample_master: Path, tmp_path: Path) -> Path:
    """A private copy of the sample dataset, safe to change."""
    root = tmp_path / "roadcam"
    shutil.copytree(sample_master, root)
    return root


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "catalog.duckdb", timeout=30)


def run_cli(*args: str | os.PathLike, catalog: Catalog | None = None, check: bool = False,
            timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run the real `sneakernet` CLI in a subprocess."""
    cmd = [sys.executable, "-m", "sneakernet.cli"]
    if catalog is not None:
        cmd += ["--catalog", str(catalog.path)]
    cmd += [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def cli_json(*args: str | os.PathLike, catalog: Catalog | None = None) -> object:
    proc = run_cli(*args, "--json", catalog=catalog, check=True)
    return json.loads(proc.stdout)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(name="cli_json")
def _cli_json():
    return cli_json
