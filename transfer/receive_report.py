"""The receiving service's report of one drive: JSON always, HTML when the report module is here.

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

REPORTS_DIR = f"{fmt.META_DIR}/reports"
FORMAT = "sneakernet-receive-report"
FORMAT_VERSION = 1
# The shipment name comes off an untrusted drive: only these characters reach a file name.
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def write_report(store: Path, root: Path, outcome: dict) -> tuple[str, str | None]:
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
        path = folder / f"{base}-{n}.json"
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "written_at": now.isoformat(timespec="seconds"),
        **outcome,
        "report": str(path),
    }
    atomic_write(path, json.dumps(doc, indent=2, default=str, ensure_ascii=True).encode() + b"\n")
    return str(path), _write_html(doc, path.with_suffix(".html"))


def _write_html(doc: dict, path: Path) -> str | None:
    """The HTML report too, when this sneakernet has the report module (it is optional)."""
    try:
        from sneakernet.transfer import report as reports
    except ImportError:
        return None
    make, write = getattr(reports, "transfer_report", None), getattr(reports, "write_html", None)
    if make is None or write is None:
        return None
    kind = "ingest" if doc.get("ingest") else "verify"
    part = doc.get("ingest") or doc.get("verify") or {}
    problems = part.get("problems") or part.get("findings") or []
    summary = {k: v for k, v in doc.items() if k not in ("verify", "ingest")}
    try:
        write(make(kind, summary, problems), path)
    except Exception:  # a nicety written elsewhere must never fail a receive; JSON is the record
        return None
    return str(path)
