"""How long-running verbs report progress without knowing who listens.

A verb takes `progress: ProgressFn | None` and calls it with a snapshot after
each unit of work; the CLI turns snapshots into a rich progress bar, tests
collect them, and `None` costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    phase: str  # e.g. "walk", "hash", "probe", "commit"
    files_done: int
    files_total: int | None
    bytes_done: int = 0
    bytes_total: int | None = None
    label: str = ""  # which drive or dataset, when a verb works on several


ProgressFn = Callable[[ProgressEvent], None]


def report(progress: ProgressFn | None, event: ProgressEvent) -> None:
    if progress is not None:
        progress(event)
