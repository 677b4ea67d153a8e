"""`sneakernet receive`: the receiving service, run by systemd or by hand."""

from __future__ import annotations

import json as jsonlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated

import typer

from sneakernet.cli.app import State
from sneakernet.cli.catalog_cmds import JsonOpt
from sneakernet.cli.exits import ExitStatus
from sneakernet.cli.render import safe_text


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
    with _stop_on_signals() as (stop, received):
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


@contextmanager
def _stop_on_signals() -> Iterator[tuple[threading.Event, list[int]]]:
    """SIGTERM and SIGINT ask the service to stop at the next safe point.

    The library notices the event between files, so no write is cut in half. A second
    Ctrl-C stops at once (the partial file is kept).

    The handler takes no lock: it runs on the main thread, between any two bytecodes,
    and the main thread holds `stop`'s lock for a moment inside every `stop.wait()`, so
    a `stop.set()` there could wait for ever on its own thread (a SIGTERM then went
    unheard). Nor may it start a thread (`Thread.start` takes threading's own locks,
    which the main thread holds while it starts the copy and verify threads). It writes
    a byte to a pipe, and a relay thread sets the event.
    """
    stop = threading.Event()
    received: list[int] = []
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def relay() -> None:
        while os.read(read_end, 64):  # a byte per signal; b"" once write_end is closed
            stop.set()

    def on_signal(signum: int, frame: object) -> None:
        if signum == signal.SIGINT and signal.SIGINT in received:
            raise KeyboardInterrupt
        received.append(signum)
        with suppress(BlockingIOError):  # a full pipe already holds a wake-up
            os.write(write_end, b"!")

    relayer = threading.Thread(target=relay, name="sneakernet-signals", daemon=True)
    relayer.start()
    try:
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield stop, received
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        os.close(write_end)
        relayer.join()  # every signal relayed: `stop` is set if one came
        os.close(read_end)
