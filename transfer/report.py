"""Reports: one JSON-able dict per dataset or transfer, and the HTML made from it.

The dict is the report (format `sneakernet-report`, described by
`schemas/report-v1.schema.json`); `--json` prints it and the HTML is rendered
from it alone (`transfer.report_html`), so both carry the same numbers.

pack, verify and ingest call `transfer_report(kind, summary, problems, charts)`
with their result dicts; `dataset_report(catalog, ref)` describes a version.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any

from sneakernet.catalog import figures
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.refs import VersionRef, parse_ref, resolve
from sneakernet.catalog.stats import Stats, stats

FORMAT = "sneakernet-report"
FORMAT_VERSION = 1
SCHEMA_FILE = "report-v1.schema.json"  # in sneakernet.schemas
KINDS = ("dataset", "pack", "verify", "ingest", "receive")
CHART_KINDS = ("bar", "histogram", "line")
# A report stays a readable page, and its memory flat, however many files went
# wrong: the first problems are listed, the rest only counted.
MAX_PROBLEMS = 10_000
MAX_BARS = 20  # categories beyond these are summed into one "(N others)" bar
_MAX_DEPTH = 32  # nesting beyond this in a summary is shown as text (and cycles end)


def dataset_report(catalog: Catalog, ref: VersionRef | str) -> dict:
    """A version's figures: summary, problem files, and charts by codec, resolution, fps,
    file size and across versions."""
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    with catalog.read() as con:
        number = resolve(con, ref)
        info = con.execute(
            "SELECT label, strftime(created_at, '%Y-%m-%dT%H:%M:%S%z'), origin, root, host,"
            " shipment_id, source_site FROM versions WHERE dataset = ? AND version = ?",
            [ref.dataset, number],
        ).fetchone()
        buckets = figures.size_buckets(con, ref.dataset, number)
        history = figures.growth(con, ref.dataset)
        problems, problem_count = figures.problems(con, ref.dataset, number, MAX_PROBLEMS)
    # The number, not the ref: "latest" must not move between these reads.
    exact = VersionRef(ref.dataset, version=number)
    by = {key: stats(catalog, exact, by=key) for key in ("codec", "resolution", "fps")}
    whole = stats(catalog, exact)  # the totals `sneakernet stats` prints, to the last digit
    label, created_at, origin, root, host, shipment_id, source_site = info
    summary = {
        "dataset": ref.dataset, "version": number, "label": label, "created_at": created_at,
        "origin": origin, "root": root, "host": host, "shipment_id": shipment_id,
        "source_site": source_site, "versions": len(history),
        "files": whole.total.files, "bytes": whole.total.bytes,
        "video_files": whole.total.video_files, "video_hours": whole.total.video_hours,
        "frames": whole.total.frames, "broken_videos": whole.total.broken_files,
        "unread_files": whole.total.unread_files, "symlinks": whole.symlinks,
        "duplicate_files": whole.duplicate_files, "duplicate_bytes": whole.duplicate_bytes,
    }
    charts = [
        *_grouped_charts(by["codec"], "codec"),
        *_grouped_charts(by["resolution"], "resolution"),
        *_grouped_charts(by["fps"], "fps"),
        chart("file-sizes", "Files by size", "files", "histogram", _size_points(buckets)),
    ]
    for measure, unit, title in (("files", "files", "Files per version"),
                                 ("bytes", "bytes", "Bytes per version"),
                                 ("video_hours", "hours", "Video hours per version")):
        points = [(f"@{v.version}", getattr(v, measure)) for v in history]
        charts.append(chart(f"growth-{unit}", title, unit, "line", points))
    return _envelope(
        "dataset", f"{ref.dataset}@{number}", summary,
        [dataclasses.asdict(p) for p in problems], charts, problem_count,
    )


def transfer_report(
    kind: str,
    summary: Mapping[str, Any],
    problems: Iterable[Mapping[str, Any] | Any],
    charts: Iterable[Mapping[str, Any]] | None = None,
    *,
    title: str | None = None,
) -> dict:
    """A report of one pack, verify, ingest or receive run.

    `summary` may hold any values (numbers, text, paths, datetimes, dataclasses,
    nested dicts and lists): they are made JSON-able. Each problem is a mapping
    (or a dataclass or an object with `to_dict`) with `path`, `outcome`
    (corrupt, missing, extra, unreadable, ...) and `detail`; other keys are kept.
    `problems` is read only up to MAX_PROBLEMS and then only counted, so a
    generator keeps memory flat. Charts are made with `chart()`.
    """
    if kind not in KINDS[1:]:
        raise ValueError(f"report kind must be one of {', '.join(KINDS[1:])}, not {kind!r}")
    kept: list[dict] = []
    total = 0
    for problem in problems:
        total += 1
        if total <= MAX_PROBLEMS:
            kept.append(_problem(problem))
    made = [chart(c["id"], c["title"], c["unit"], c["kind"], _pairs(c["points"]))
            for c in (charts or ())]
    return _envelope(kind, title or f"{kind} report", to_jsonable(dict(summary)), kept, made,
                     total)


def chart(
    chart_id: str, title: str, unit: str, kind: str, points: Iterable[tuple[Any, Any]]
) -> dict:
    """One chart: `points` are (label, value) pairs; values that are not finite numbers
    become null (drawn as gaps)."""
    if kind not in CHART_KINDS:
        raise ValueError(f"chart kind must be one of {', '.join(CHART_KINDS)}, not {kind!r}")
    return {
        "id": _text(chart_id), "title": _text(title), "unit": _text(unit), "kind": kind,
        "points": [{"label": _text(label), "value": _number(value)} for label, value in points],
    }


def write_html(report: Mapping[str, Any], path: Path | str) -> Path:
    """Write the report as one self-contained HTML file (temp name, fsync, rename)."""
    from sneakernet.transfer.atomic import write_text_atomic
    from sneakernet.transfer.report_html import render_html

    return write_text_atomic(path, render_html(report))


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """`value` as plain JSON types: dict (text keys), list, str, int, float (finite), bool,
    None. Whatever has no JSON form becomes its text."""
    if _depth > _MAX_DEPTH:
        return _text(value)
    deeper = _depth + 1
    if value is None or isinstance(value, bool | int):
        return int(value) if isinstance(value, enum.Enum) else value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, float | Decimal | Fraction):
        return _number(value)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, deeper)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, PurePath):
        return _text(str(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name), deeper)
                for f in dataclasses.fields(value)}
    if callable(getattr(value, "to_dict", None)) and not isinstance(value, type):
        return to_jsonable(value.to_dict(), deeper)
    if isinstance(value, Mapping):
        return {_key(k): to_jsonable(v, deeper) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((to_jsonable(v, deeper) for v in value), key=repr)
    if isinstance(value, list | tuple | range) or _is_iterator(value):
        return [to_jsonable(v, deeper) for v in value]
    return _text(value)


def _envelope(kind: str, title: str, summary: dict, problems: list[dict], charts: list[dict],
              problem_count: int) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "title": _text(title),
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "generator": f"sneakernet {_version()}",
        "summary": summary,
        "problems": problems,
        "problems_total": problem_count,
        "charts": charts,
    }


def _grouped_charts(s: Stats, name: str) -> list[dict]:
    def label(key: str | None) -> str:
        if key is None:
            return "(not video)"
        return f"{float(key):g}" if name == "fps" else key

    hours = [(label(g.key), g.video_hours) for g in s.groups if g.video_files]
    size = [(label(g.key), g.bytes) for g in s.groups]
    return [
        chart(f"hours-by-{name}", f"Video hours by {name}", "hours", "bar", _top(hours)),
        chart(f"bytes-by-{name}", f"Bytes by {name}", "bytes", "bar", _top(size)),
    ]


def _top(points: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The largest MAX_BARS - 1 categories, and the rest summed into one."""
    ordered = sorted(points, key=lambda p: (-p[1], p[0]))
    if len(ordered) <= MAX_BARS:
        return ordered
    rest = ordered[MAX_BARS - 1:]
    return [*ordered[: MAX_BARS - 1], (f"({len(rest)} others)", sum(v for _, v in rest))]


def _size_points(buckets: list[figures.SizeBucket]) -> list[tuple[str, int]]:
    """Every bucket from the smallest to the largest size present, empty ones included,
    so the histogram's x axis is even."""
    if not buckets:
        return []
    files = {b.power: b.files for b in buckets}
    powers = range(min(files), max(files) + 1)
    return [(_size_range(p), files.get(p, 0)) for p in powers]


def _size_range(power: int) -> str:
    """The bucket [2**power, 2**(power + 1)) as "512 B-1 KiB" or "1-2 KiB" (an en dash);
    -1 is the bucket of empty files."""
    if power < 0:
        return "0 B"
    low, low_unit = _binary(2**power)
    high, high_unit = _binary(2 ** (power + 1))
    start = f"{low}" if low_unit == high_unit else f"{low} {low_unit}"
    return f"{start}\u2013{high} {high_unit}"


def _binary(n: int) -> tuple[int, str]:
    """A power of two in the largest binary unit that keeps it whole: (512, B), (2, GiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return n, unit
        n //= 1024
    return n, "EiB"


def _problem(problem: Any) -> dict:
    item = to_jsonable(problem)
    if not isinstance(item, dict):
        item = {"detail": item}
    item["path"] = _text(item.get("path") or "")
    item["outcome"] = _text(item.get("outcome") or "unknown")
    detail = item.get("detail")
    item["detail"] = None if detail is None else _text(detail)
    return item


def _pairs(points: Iterable[Any]) -> list[tuple[Any, Any]]:
    """Chart points given as {label, value} mappings or as (label, value) pairs."""
    return [(p.get("label"), p.get("value")) if isinstance(p, Mapping) else tuple(p)
            for p in points]


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or value is None:
        return None if value is None else int(value)
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    """Text that encodes as UTF-8: a name read with surrogateescape shows its odd bytes
    as \\xNN, the way the catalog writes such paths."""
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _key(key: Any) -> str:
    return _text(key.value if isinstance(key, enum.Enum) else key)


def _is_iterator(value: Any) -> bool:
    return hasattr(value, "__next__") and hasattr(value, "__iter__")


def _version() -> str:
    try:
        return metadata.version("sneakernet")
    except metadata.PackageNotFoundError:
        return "unknown"
