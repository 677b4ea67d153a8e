"""`sneakernet receive`: the receiving service, run by systemd or by hand."""

from __future__ import annotations

import json as jsonlib
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from sneakernet.cli.app import State
from sneakernet.cli.catalog_cmds import JsonOpt
from sneakernet.cli.exits import ExitStatus
from sneakernet.cli.render import safe_text
from sneakernet.cli.signals import stop_on_signals


def register(app: typer.Typer) -> None:
    app.command("receive")(receive_cmd)


def receive_cmd(
    mounts: Annotated[
        Path, typer.Option("--mounts", help="The folder drives get mounted under, e.g. /media/in.")
    ],
    store: Annotated[Path, typer.Option("--store", help="The site's store folder.")],
    poll: Annotated[
        float, typer.Option(help="Seconds between rescans of the mounts folder.", min=0.1)
    ] = 3.0,
    settle: Annotated[
        float,
        typer.Option(help="Seconds a drive's metadata must stay unchanged before it is read.",
                     min=0.0),
    ] = 2.0,
    once: Annotated[
        bool, typer.Option(help="Handle the drives there now, then exit (for cron and tests).")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Run the receiving service: verify and ingest each drive mounted under --mounts.

    Logs one line per step (--json: one JSON object per line) and writes a report per
    drive under STORE/.sneakernet/reports/. SIGTERM stops it cleanly (exit 0); the
    drive in hand resumes on the next start. With --once, exit 3 when a drive needs
    attention (rejected, refused, incomplete, or files with problems).
    """
    from sneakernet.transfer.receive import receive

    printer = _json_line if json else _text_line
    stop = threading.Event()
    with stop_on_signals(stop.set) as received:
        result = receive(
            State.catalog(), mounts, store, stop=stop, poll=poll, once=once, settle=settle,
            log=printer,
        )
    if signal.SIGINT in received:
        raise typer.Exit(ExitStatus.INTERRUPTED)
    if once and not result.stopped and result.needs_attention:
        raise typer.Exit(ExitStatus.PROBLEMS)


def _text_line(notice) -> None:
    if notice.shipment:
        where = f"drive {notice.drive}/{notice.of} of {notice.shipment}"
    else:
        where = notice.path if notice.kind != "report" else ""
    line = f"{notice.at} {notice.kind:<10} {safe_text(where)}: {safe_text(notice.message)}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()  # a pipe (journald, a test) sees each line as it happens


def _json_line(notice) -> None:
    sys.stdout.write(jsonlib.dumps(notice.to_dict(), default=str, ensure_ascii=True) + "\n")
    sys.stdout.flush()
