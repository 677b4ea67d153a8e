"""Reports of pack, verify and ingest runs: their result objects in the report format.

The HTML and `--json` come from the same dict (transfer/report.py), so a
report shows exactly the figures the command printed.
"""

from __future__ import annotations

from sneakernet.transfer.ingest import IngestResult
from sneakernet.transfer.pack import PackResult
from sneakernet.transfer.report import chart, transfer_report
from sneakernet.transfer.verify import OUTCOMES, VerifyResult


def _rate(nbytes: int, seconds: float) -> float:
    return nbytes / seconds if seconds > 0 else 0.0


def pack_report(result: PackResult) -> dict:
    drives = result.drives
    summary = {
        "shipment": result.shipment, "shipment_id": result.shipment_id,
        "from_site": result.from_site, "to_site": result.to_site,
        "sealed": result.sealed, "resumed": result.resumed, "seconds": round(result.seconds, 3),
        "drives": len(drives), "files": sum(d.files for d in drives),
        "bytes": sum(d.bytes for d in drives),
        "copied_files": sum(d.copied_files for d in drives),
        "copied_bytes": sum(d.copied_bytes for d in drives),
        "already_on_drives": sum(d.present_files for d in drives),
        "full_drives": [d.number for d in drives if d.full],
    }
    charts = [
        chart("bytes-per-drive", "Bytes per drive", "bytes", "bar",
              [(f"drive {d.number} ({d.label})", d.bytes) for d in drives]),
        chart("throughput-per-drive", "Copy + read-back throughput per drive", "bytes/s", "bar",
              [(f"drive {d.number}", _rate(d.copied_bytes, d.seconds)) for d in drives]),
    ]
    return transfer_report("pack", summary, result.problems, charts,
                           title=f"pack of shipment {result.shipment}")


def verify_report(result: VerifyResult) -> dict:
    drives = result.drives
    summary = {
        "whole": result.whole, "fast": result.fast, "seconds": round(result.seconds, 3),
        "drives": len(drives), "files": sum(d.files for d in drives),
        "bytes": sum(d.bytes for d in drives), "bytes_read": sum(d.bytes_read for d in drives),
        **{outcome: sum(d.counts[outcome] for d in drives) for outcome in OUTCOMES},
        "seals_broken": sum(1 for d in drives if d.error is None and not d.seal_ok),
        "drives_unusable": [{"drive": d.root, "error": d.error} for d in drives if d.error],
    }
    problems = [f for d in drives for f in d.findings]
    charts = [
        chart("outcomes", "Files by outcome", "files", "bar",
              [(outcome, summary[outcome]) for outcome in OUTCOMES]),
        chart("throughput-per-drive", "Verify throughput per drive", "bytes/s", "bar",
              [(d.label or d.root, _rate(d.bytes_read, d.seconds)) for d in drives]),
    ]
    return transfer_report("verify", summary, problems, charts, title="drive verification")


def ingest_report(result: IngestResult) -> dict:
    drives = result.drives
    summary = {
        "store": result.store, "seconds": round(result.seconds, 3), "drives": len(drives),
        "copied_files": sum(d.copied_files for d in drives),
        "copied_bytes": sum(d.copied_bytes for d in drives),
        "linked_files": sum(d.linked_files for d in drives),
        "already_in_store": sum(d.present_files for d in drives),
        "waiting_files": sum(d.waiting_files for d in drives),
        "registered": result.registered, "waiting": result.waiting,
    }
    charts = [
        chart("files-per-drive", "Files copied per drive", "files", "bar",
              [(f"drive {d.number} ({d.label})", d.copied_files) for d in drives]),
        chart("bytes-per-drive", "Bytes copied per drive", "bytes", "bar",
              [(f"drive {d.number} ({d.label})", d.copied_bytes) for d in drives]),
    ]
    return transfer_report("ingest", summary, result.problems, charts,
                           title=f"ingest into {result.store}")
