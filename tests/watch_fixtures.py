"""Helpers shared by test_watch.py and test_watch_hostile.py (imported by them only).

A library watcher on a thread, the CLI watcher as a process with its JSON lines read
on a thread, and the comparison every watch test ends with: the watched catalog's
latest version against a fresh scan of the same tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.scan import scan
from sneakernet.catalog.watch import Watcher, WatchNotice

SETTLE = 0.3
QUIET = 0.4


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@contextmanager
def watching(catalog: Catalog, root: Path, **options) -> Iterator[tuple[Watcher, list]]:
    """A library watcher running on a thread; yields it and the notices it sent."""
    notices: list[WatchNotice] = []
    options.setdefault("settle", SETTLE)
    failure: list[BaseException] = []
    with Watcher(catalog, root, "d", notify=notices.append, workers=2, **options) as watcher:
        watcher.catch_up()

        def run() -> None:
            try:
                watcher.run()
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        try:
            yield watcher, notices
        finally:
            watcher.stop()
            thread.join(timeout=30)
    if failure:
        raise failure[0]


def wait_settled(watcher: Watcher, notices: list[WatchNotice], timeout: float = 15) -> None:
    """Until a snapshot began after every change heard (events arrive within moments)."""
    time.sleep(0.2)

    def settled() -> bool:
        snaps = [n for n in notices if n.kind == "snapshot"]
        return bool(snaps) and snaps[-1].events == watcher.events_heard

    wait_for(settled, timeout, "a snapshot after the last change")


def latest_files(catalog: Catalog) -> set[tuple]:
    with catalog.read() as con:
        return set(
            con.execute(
                "SELECT path, raw_path, kind, size, hash, status, codec, frames, broken"
                " FROM api.files WHERE dataset = 'd'"
                " AND version = (SELECT max(version) FROM versions WHERE dataset = 'd')"
            ).fetchall()
        )


def fresh_files(tmp_path: Path, root: Path) -> set[tuple]:
    fresh = Catalog(tmp_path / f"fresh-{time.monotonic_ns()}.duckdb")
    scan(fresh, root, "d")
    return latest_files(fresh)


def write_tree(root: Path, folders: int, per_folder: int, size: int = 2048) -> None:
    for f in range(folders):
        folder = root / f"f{f:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_folder):
            (folder / f"{i:04d}.bin").write_bytes(os.urandom(size))


class Lines:
    """Reads a process's stdout lines on a thread, so the test never blocks on them."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line)

    def finish(self, proc: subprocess.Popen, timeout: float = 30) -> str:
        """Wait for the process to end (killed if it must) and for its last lines;
        return its stderr."""
        if proc.stderr.closed:
            return ""
        if proc.poll() is None and timeout == 0:
            proc.kill()
        proc.wait(timeout=timeout or 30)
        self._thread.join(timeout=timeout or 30)
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        return err

    def events(self, kind: str) -> list[dict]:
        found = [json.loads(line) for line in list(self.lines) if line.startswith("{")]
        return [e for e in found if e["event"] == kind]


def watch_process(catalog: Catalog, root: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sneakernet.cli", "--catalog", str(catalog.path), "watch",
         str(root), "--dataset", "d", "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
    )
