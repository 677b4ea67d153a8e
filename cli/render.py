"""Turning result objects into text: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID
    from rich.table import Table

    from sneakernet.catalog.progress import ProgressEvent, ProgressFn


class LazyConsole:
    """A rich Console made on the first print.

    Importing rich.console costs about as much as the rest of the CLI's start-up, and
    --help, usage errors and --json output never print through it.
    """

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            # No emoji codes and no markup from data: a file named "x:smile:" prints as itself.
            self._console = Console(stderr=self._stderr, highlight=False, soft_wrap=True,
                                    emoji=False)
        return self._console

    def print(self, *objects: Any, **options: Any) -> None:
        self.console.print(*objects, **options)


out = LazyConsole()
err = LazyConsole(stderr=True)


def human_bytes(n: int | float | None) -> str:
    from sneakernet.transfer import charts  # html and friends, only when there is text to show

    return "-" if n is None else charts.human_bytes(n)


def human_rate(nbytes: float, seconds: float) -> str:
    return f"{human_bytes(nbytes / seconds)}/s" if seconds > 0 else "-"


def print_json(data: Any) -> None:
    """Strict JSON (RFC 8259) on stdout, whatever values a query returns."""
    sys.stdout.write(_dumps(data) + "\n")


def print_json_array(items: Iterable[Any]) -> None:
    """`print_json(list(items))`, the same text, written an item at a time.

    `ls --json` of a million files built the whole list and its text first: about
    3.7 KB a row, gigabytes for a big dataset, where the table output streams.
    """
    write = sys.stdout.write
    first = True
    for item in items:  # json escapes newlines inside strings: each "\n" is indentation
        write(("[\n  " if first else ",\n  ") + _dumps(item).replace("\n", "\n  "))
        first = False
    write("[]\n" if first else "\n]\n")


def _dumps(data: Any) -> str:
    try:
        return json.dumps(data, indent=2, default=str, ensure_ascii=True, allow_nan=False)
    except (ValueError, TypeError):
        # A query's NaN or infinity (json would write NaN, which JSON parsers outside
        # Python refuse) or a MAP keyed by a date, decimal or blob (json refuses the key).
        return json.dumps(_jsonable(data), indent=2, default=str, ensure_ascii=True,
                          allow_nan=False)


_JSON_KEYS = (str, int, bool, type(None))


def _jsonable(value: Any) -> Any:
    """`value` with non-finite floats as null (as JavaScript's JSON.stringify writes them)
    and dict keys that JSON cannot hold as their text."""
    if isinstance(value, float):
        return value if _finite(value) else None
    if isinstance(value, dict):
        return {(k if isinstance(k, _JSON_KEYS) or _finite(k) else str(k)): _jsonable(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def table(*columns: str, title: str | None = None) -> Table:
    """A table whose text cells and headers print as they are, never as rich markup.

    Rich reads a plain str cell as markup: a file named `clip[red].mp4` lost its
    `[red]`, and a query column or path holding `[/]` crashed the command (MarkupError).
    """
    t = _plain_table_type()(title=title, title_justify="left", show_edge=False,
                            pad_edge=False)
    for name in columns:
        numeric = name.lower() in {"files", "bytes", "hours", "frames", "broken", "version",
                                   "versions", "latest", "size", "unread", "videos"}
        t.add_column(_plain(name), justify="right" if numeric else "left", overflow="fold")
    return t


def _plain(cell: Any) -> Any:
    from rich.text import Text

    return Text(safe_text(cell)) if isinstance(cell, str) else cell


@cache
def _plain_table_type() -> type[Table]:
    from rich.table import Table

    class PlainTable(Table):
        def add_row(self, *cells: Any, **options: Any) -> None:
            super().add_row(*(_plain(c) for c in cells), **options)

    return PlainTable


def safe_text(text: str | None) -> str:
    """A path with control characters shown as escapes, so a name cannot redraw the terminal."""
    if text is None:
        return "-"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


_PHASE_NAMES = {"walk": "walking", "hash": "hashing", "probe": "probing video", "commit": "saving",
                "pack": "packing", "verify": "verifying", "ingest": "ingesting"}


@contextmanager
def progress_bar(enabled: bool) -> Iterator[ProgressFn]:
    """A progress callback for library verbs: a rich bar on stderr when enabled.

    The bar measures bytes when the verb knows the total bytes (a 50 GB file
    moves the bar while it is read), else files. Enabled or not, the callback
    is where a Ctrl-C takes effect (see `_graceful_interrupt`).
    """
    with _graceful_interrupt() as check:
        if not enabled:
            yield lambda event: check()
            return
        with _bar() as draw:

            def update(event: ProgressEvent) -> None:
                check()
                draw(event)

            yield update


@contextmanager
def _graceful_interrupt() -> Iterator[Callable[[], None]]:
    """Ctrl-C stops work at the next progress point, not inside a write or a destructor.

    A second Ctrl-C stops at once.
    """
    requested = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    def check() -> None:
        if requested.is_set():
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield check
        return
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _bar() -> Iterator[ProgressFn]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
        console=err.console,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}
    started: dict[str, float] = {}
    last = [0.0]

    def update(event: ProgressEvent) -> None:
        key = f"{event.label}:{event.phase}"
        if key not in tasks:
            name = _PHASE_NAMES.get(event.phase, event.phase)
            label = f"{event.label} {name}" if event.label else name
            tasks[key] = bar.add_task(label, total=None, detail="")
            started[key] = time.monotonic()
        now = time.monotonic()
        final = event.files_total is not None and event.files_done >= event.files_total
        if now - last[0] < 0.1 and not final:
            return
        last[0] = now
        by_bytes = bool(event.bytes_total)
        bar.update(
            tasks[key],
            completed=event.bytes_done if by_bytes else event.files_done,
            total=event.bytes_total if by_bytes else event.files_total,
            detail=_detail(event, now - started[key]),
        )

    with bar:
        yield update


def _detail(event: ProgressEvent, elapsed: float) -> str:
    files = f"{event.files_done:,}" + (f"/{event.files_total:,}" if event.files_total else "")
    if not event.bytes_done:
        return f"{files} files"
    total = f"/{human_bytes(event.bytes_total)}" if event.bytes_total else ""
    rate = human_rate(event.bytes_done, elapsed)
    return f"{files} files  {human_bytes(event.bytes_done)}{total}  {rate}"
