"""The receiving service's report of one drive, as JSON and HTML (the report format, kind receive).

Reports live in the store (`STORE/.sneakernet/reports/`), next to what they
describe, named `<shipment>-drive<N>-<UTC time>.json` so a folder listing reads
as a history. Written through a temporary name, fsynced, renamed.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer.fsio import atomic_write
from sneakernet.transfer.report import transfer_report, write_html

REPORTS_DIR = f"{fmt.META_DIR}/reports"
# The shipment name comes off an untrusted drive: only these characters reach a file name.
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def write_report(store: Path, root: Path, outcome: dict) -> tuple[str, str]:
    """Write the report of one drive's receive; (the JSON path, the HTML path or None)."""
    folder = store / REPORTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    name = _UNSAFE_NAME.sub("_", outcome.get("shipment") or f"unknown-{root.name}")[:80]
    base = f"{name.lstrip('.') or 'unknown'}-drive{outcome.get('number') or 0}-"
    base += now.strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{base}.json"
    n = 1
    while path.exists():  # the same drive twice in one second (a quick restart)
        n += 1
        # '_' sorts after the '.' of the first one's '.json' ('-2' sorted before it), so
        # the listing still reads as the history and the last name is the latest report.
        path = folder / f"{base}_{n:02d}.json"
    part = outcome.get("ingest") or outcome.get("verify") or {}
    problems = part.get("problems") or part.get("findings") or []
    report = transfer_report(
        "receive", {**outcome, "report": str(path)}, problems,
        title=f"receive of {outcome.get('shipment') or root.name} drive {outcome.get('number')}",
    )
    atomic_write(path, json.dumps(report, indent=2, ensure_ascii=True).encode() + b"\n")
    html = path.with_suffix(".html")
    write_html(report, html)
    return str(path), str(html)
