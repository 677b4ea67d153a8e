"""`sneakernet watch`: keep a dataset current while files land; one line per snapshot."""

from __future__ import annotations

import json as jsonlib
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sneakernet.cli import render
from sneakernet.cli.app import State
from sneakernet.cli.exits import ExitStatus
from sneakernet.cli.render import human_bytes, out, safe_text
from sneakernet.cli.signals import stop_on_signals

if TYPE_CHECKING:
    from sneakernet.catalog.scan import ScanResult
    from sneakernet.catalog.watch import Watcher, WatchNotice


def register(app: typer.Typer) -> None:
    app.command("watch")(watch_cmd)


def watch_cmd(
    path: Annotated[Path, typer.Argument(help="The dataset's top folder.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name, e.g. roadcam.")],
    snapshot_after: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Record a version once the folder has been quiet this long (30s, 5m, 1h). "
            "Without it the watcher only keeps hashes and video metadata current.",
        ),
    ] = None,
    settle: Annotated[
        str,
        typer.Option(metavar="DURATION", help="Read a file once it has not changed this long."),
    ] = "2s",
    catch_up: Annotated[
        bool,
        typer.Option(help="Scan once at start (reads only what the catalog does not know)."),
    ] = True,
    threads: Annotated[int | None, typer.Option(help="Reader threads [default: cores].")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object per line.")] = False,
) -> None:
    """Watch a dataset folder: hash and probe files as they appear, change, move or vanish.

    A file is read once it has been still for --settle. With --snapshot-after, a version is
    recorded (a scan that reads nothing new) whenever the folder has been quiet that long.
    Stop with Ctrl-C (exit 130) or SIGTERM (exit 0); finished hashes are kept.
    """
    from sneakernet.catalog.watch import Watcher
    from sneakernet.catalog.watch_setup import parse_duration

    quiet = parse_duration(snapshot_after, "--snapshot-after") if snapshot_after else None
    still = parse_duration(settle, "--settle")
    show = _Printer(json)
    watcher = Watcher(State.catalog(), path, dataset, settle=still, snapshot_after=quiet,
                      workers=threads, notify=show.notice)
    with stop_on_signals(watcher.stop) as received, watcher:
        if catch_up:
            with render.progress_bar(sys.stderr.isatty() and not json) as progress:
                watcher.catch_up(progress)
        if not watcher.stopping:
            show.watching(watcher)
            watcher.run()
    show.stopped(watcher)
    if received and received[-1] == signal.SIGINT:
        raise typer.Exit(ExitStatus.INTERRUPTED)


class _Printer:
    """One line per happening: text for people, JSON lines (flushed at once) for scripts."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def notice(self, notice: WatchNotice) -> None:
        data: dict = {"event": notice.kind, "events": notice.events}
        if notice.scan is not None:
            data["scan"] = notice.scan.to_dict()
        if notice.message:
            data["message"] = notice.message
        if self.as_json:
            self._json(data)
        elif notice.scan is not None:
            self._text(_scan_line(notice.scan, notice.kind))
            for p in notice.scan.problems[:10]:
                out.print(f"    {p.kind:<17} {safe_text(p.path)}: {p.message}", markup=False)
            if len(notice.scan.problems) > 10:
                out.print(f"    ... {len(notice.scan.problems) - 10} more problem(s)")
        else:
            self._text(safe_text(notice.message))

    def watching(self, watcher: Watcher) -> None:
        after = watcher.snapshot_after
        if self.as_json:
            self._json({"event": "watching", "path": str(watcher.root), "dataset": watcher.dataset,
                        "settle": watcher.settle, "snapshot_after": after})
            return
        when = f"a version after {after:g} s of quiet" if after is not None else "no versions"
        self._text(f"watching {safe_text(str(watcher.root))} as {watcher.dataset} "
                   f"(settle {watcher.settle:g} s, {when}); Ctrl-C to stop")

    def stopped(self, watcher: Watcher) -> None:
        s = watcher.stats
        if self.as_json:
            self._json({"event": "stopped", "watch": s.to_dict()})
            return
        self._text(f"stopped: read {s.hashed_files:,} files ({human_bytes(s.hashed_bytes)}), "
                   f"reused {s.reused_files:,} cached hashes, probed {s.probed_files:,} videos, "
                   f"{s.snapshots} snapshot(s); hashes are kept")

    def _json(self, data: dict) -> None:
        sys.stdout.write(jsonlib.dumps(data, default=str, ensure_ascii=True) + "\n")
        sys.stdout.flush()

    def _text(self, line: str) -> None:
        out.print(f"{time.strftime('%H:%M:%S')} {line}", markup=False)
        sys.stdout.flush()


def _scan_line(result: ScanResult, kind: str) -> str:
    head = (f"{result.dataset}@{result.version} recorded" if result.version is not None
            else f"{result.dataset}: nothing changed since version {result.previous}")
    if kind == "caught-up":
        head += " (catch-up)"
    problems = f", {len(result.problems)} problem(s)" if result.problems else ""
    return (f"{head}: {result.files:,} files, {human_bytes(result.bytes)}; "
            f"scan read {result.hashed_files:,}, probed {result.probed_files:,}{problems}")
