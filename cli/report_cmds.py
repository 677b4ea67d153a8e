"""Commands that show the catalog to people and dashboards: report, metrics.

pack, verify and ingest take `--report FILE.html` through `ReportOpt` and
`save_report`, so the option reads and behaves the same on every command.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from sneakernet.cli.app import State
from sneakernet.cli.render import out, print_json, safe_text

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ReportOpt = Annotated[
    Path | None,
    typer.Option(
        "--report",
        help="Also write a self-contained HTML report (summary, problems, charts) to this file.",
        dir_okay=False,
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
    app.command("metrics")(metrics_cmd)


def save_report(report: Mapping[str, Any], path: Path | None, *, quiet: bool = False) -> None:
    """Write `report` as HTML when --report was given, and say where (unless quiet, e.g.
    under --json, whose stdout is for the JSON)."""
    if path is None:
        return
    from sneakernet.transfer.report import write_html

    written = write_html(report, path)
    if not quiet:
        out.print(f"report written to {safe_text(str(written))}", markup=False)


def report_cmd(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@LABEL.")],
    target: Annotated[Path, typer.Argument(help="The HTML file to write.", dir_okay=False)],
    json: JsonOpt = False,
) -> None:
    """Write one self-contained HTML report of a version: summary, problems, charts.

    The page needs no network and opens from a USB stick; --json prints the same figures.
    """
    from sneakernet.transfer.report import dataset_report

    report = dataset_report(State.catalog(), ref)
    save_report(report, target, quiet=True)
    if json:
        print_json(report)
        return
    problems = report["problems_total"]
    out.print(f"{report['title']}: report written to {safe_text(str(target))} "
              f"({len(report['charts'])} charts, {problems:,} problem file(s))", markup=False)


def metrics_cmd(
    target: Annotated[
        Path | None,
        typer.Option("--out", help="Write to this file atomically (for node_exporter's "
                     "textfile collector) instead of printing.", dir_okay=False),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Print the catalog's figures in Prometheus text format, for dashboards.

    Per dataset: bytes, files, video hours; shipments per state; each drive's last verify.
    """
    from sneakernet.transfer import metrics
    from sneakernet.transfer.atomic import write_text_atomic

    samples = metrics.collect(State.catalog())
    if target is not None:
        write_text_atomic(target, metrics.exposition(samples))
    if json:
        print_json([s.to_dict() for s in samples])
    elif target is None:
        sys.stdout.write(metrics.exposition(samples))
