"""The catalog's figures in the Prometheus text exposition format (version 0.0.4).

For node_exporter's textfile collector: `sneakernet metrics --out
/var/lib/node_exporter/textfile/sneakernet.prom` from cron, then the Grafana
dashboard in bench/grafana/. Every metric is a gauge: these are states of the
catalog read at one moment, not counters of this process.

Verify figures come from the custody log: the latest `verified` event of each
drive, whose `details` JSON holds {"outcome": "ok"|"problems", "files",
"bytes", "seconds", "ok", "missing", "corrupt", "extra", "unreadable"}.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sneakernet.catalog import figures
from sneakernet.catalog.db import Catalog
from sneakernet.transfer.atomic import write_text_atomic

# name -> help text, in the order they are written.
FAMILIES = {
    "sneakernet_dataset_bytes": "Bytes of regular files in the dataset's latest version.",
    "sneakernet_dataset_files": "Regular files in the dataset's latest version.",
    "sneakernet_dataset_video_hours": "Hours of decodable video in the dataset's latest version.",
    "sneakernet_dataset_versions": "Versions of the dataset in the catalog.",
    "sneakernet_dataset_latest_version": "Number of the dataset's latest version.",
    "sneakernet_shipments": "Shipments per state (the latest custody event; none before any).",
    "sneakernet_last_verify_ok": "1 if the drive's latest verify found every file ok, else 0.",
    "sneakernet_last_verify_timestamp_seconds": "When the drive was last verified (Unix time).",
    "sneakernet_last_verify_files": "Files checked by the drive's latest verify.",
    "sneakernet_last_verify_bytes": "Bytes read by the drive's latest verify.",
    "sneakernet_last_verify_seconds": "How long the drive's latest verify took.",
    "sneakernet_last_verify_bytes_per_second": "Read throughput of the drive's latest verify.",
    "sneakernet_last_verify_problem_files": "Files the drive's latest verify found not ok.",
}
PROBLEM_OUTCOMES = ("missing", "corrupt", "extra", "unreadable")
_VERIFY_FIGURES = {
    "sneakernet_last_verify_files": "files",
    "sneakernet_last_verify_bytes": "bytes",
    "sneakernet_last_verify_seconds": "seconds",
}


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def to_dict(self) -> dict:
        return {"name": self.name, "labels": dict(self.labels), "value": self.value}


def collect(catalog: Catalog) -> list[Sample]:
    """Every sample, read from the catalog in one read-only connection."""
    with catalog.read() as con:
        datasets = figures.latest_versions(con)
        states = figures.shipment_states(con)
        verifies = figures.last_verifies(con)
    samples: list[Sample] = []
    for d in datasets:
        labels = (("dataset", d.dataset),)
        samples += [
            Sample("sneakernet_dataset_bytes", labels, d.bytes),
            Sample("sneakernet_dataset_files", labels, d.files),
            Sample("sneakernet_dataset_video_hours", labels, d.video_hours),
            Sample("sneakernet_dataset_versions", labels, d.versions),
            Sample("sneakernet_dataset_latest_version", labels, d.version),
        ]
    samples += [Sample("sneakernet_shipments", (("state", state or "none"),), n)
                for state, n in states]
    for v in verifies:
        samples += _verify_samples(v)
    return samples


def metrics(catalog: Catalog) -> str:
    """The catalog's figures as Prometheus text, HELP and TYPE lines included."""
    return exposition(collect(catalog))


def write_metrics(catalog: Catalog, path: Path | str) -> Path:
    """Write the figures for the textfile collector: temporary name, fsync, rename."""
    return write_text_atomic(path, metrics(catalog))


def exposition(samples: list[Sample]) -> str:
    by_name: dict[str, list[Sample]] = {name: [] for name in FAMILIES}
    for s in samples:
        by_name[s.name].append(s)
    lines = []
    for name, help_text in FAMILIES.items():
        lines += [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} gauge"]
        for s in by_name[name]:
            labels = ",".join(f'{key}="{_escape_label(value)}"' for key, value in s.labels)
            lines.append(f"{name}{{{labels}}} {_format(s.value)}" if labels
                         else f"{name} {_format(s.value)}")
    return "\n".join(lines) + "\n"


def _verify_samples(v: figures.VerifyFigures) -> list[Sample]:
    """A verify event's figures; a malformed or partial `details` gives what it can."""
    labels = (
        ("shipment", v.shipment or v.shipment_id),
        ("shipment_id", v.shipment_id),
        ("drive", str(v.drive_number) if v.drive_number is not None else v.drive_id),
        ("drive_id", v.drive_id),
    )
    details = _details(v.details)
    out = [Sample("sneakernet_last_verify_timestamp_seconds", labels, v.happened_at)]
    outcome = details.get("outcome")
    if isinstance(outcome, str):
        out.append(Sample("sneakernet_last_verify_ok", labels, 1 if outcome == "ok" else 0))
    for name, key in _VERIFY_FIGURES.items():
        value = _figure(details.get(key))
        if value is not None:
            out.append(Sample(name, labels, value))
    nbytes, seconds = _figure(details.get("bytes")), _figure(details.get("seconds"))
    if nbytes is not None and seconds:
        out.append(Sample("sneakernet_last_verify_bytes_per_second", labels, nbytes / seconds))
    for outcome_name in PROBLEM_OUTCOMES:
        value = _figure(details.get(outcome_name))
        if value is not None:
            out.append(Sample("sneakernet_last_verify_problem_files",
                              (*labels, ("outcome", outcome_name)), value))
    return out


def _details(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _figure(value: Any) -> float | None:
    """A count or measure from the details: a finite, non-negative number, else nothing."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _format(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    # The text format escapes exactly these three in label values; the rest is UTF-8.
    text = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
