"""Charts of a report as inline SVG, drawn in Python.

No script, no chart library, no web font: the report opens from a USB stick
on a machine with no network, and a name in the data can only ever be text.
Every label passes through `esc`, which also shows control and bidi-override
characters as escapes, so a file named with U+202E cannot reverse what a
reader sees.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

WIDTH = 500  # two charts side by side on a laptop screen
_LABEL_CHARS = 22  # longer category labels are cut (the full one is in the tooltip)
_BAR_ROW = 22
_PLOT_TOP, _PLOT_HEIGHT, _PLOT_LEFT, _X_LABELS = 14, 180, 64, 92
_SLANT = 55  # degrees the x-axis labels lean
_INK, _FAINT, _FILL, _LINE = "#1f2933", "#d9dee3", "#3a7bbf", "#c0522b"
_COUNTS = {"", "files", "count", "frames", "videos", "versions", "drives"}
NO_VALUE = "\u2013"  # an en dash: shown where a figure is missing
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def svg(chart: Mapping[str, Any]) -> str:
    """The chart (a report's chart dict) as one <svg> element."""
    points = [(str(p["label"]), _value(p["value"])) for p in chart["points"]]
    unit = str(chart["unit"])
    if not any(v is not None for _, v in points):
        return _frame(chart, 40, f'<text x="8" y="24" fill="{_INK}">no data</text>')
    if chart["kind"] == "bar":
        return _bars(chart, points, unit)
    return _columns(chart, points, unit, line=chart["kind"] == "line")


def format_value(value: Any, unit: str) -> str:
    """A figure as people read it: 1.5 GiB, 2.3 h, 1,204 files."""
    number = _value(value)
    if number is None:
        return NO_VALUE
    if unit == "bytes":
        return human_bytes(number)
    if unit in ("bytes/s", "bytes per second"):
        return f"{human_bytes(number)}/s"
    if unit in ("hours", "seconds"):
        return human_duration(number * 3600 if unit == "hours" else number)
    text = f"{int(number):,}" if float(number).is_integer() else f"{number:,.4g}"
    return text if unit in _COUNTS else f"{text} {unit}"


def human_bytes(n: float) -> str:
    exponent = 0 if n < 1024 else min(int(math.log(n, 1024)), len(_UNITS) - 1)
    scaled = n / 1024**exponent
    return f"{n:.0f} B" if exponent == 0 else f"{scaled:.1f} {_UNITS[exponent]}"


def human_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    hours = seconds / 3600
    return f"{hours:,.1f} h" if hours < 1000 else f"{hours:,.0f} h"


def visible(text: str) -> str:
    """Control, format (bidi) and unpaired surrogate characters as \\n, \\u202e, ..."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def esc(value: Any) -> str:
    """Data as HTML/SVG text or attribute value: visible, then escaped."""
    return html.escape(visible(str(value)), quote=True)


def _value(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _frame(chart: Mapping[str, Any], height: float, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{esc(chart["kind"])}"'
        f' data-chart="{esc(chart["id"])}" viewBox="0 0 {WIDTH} {height:.0f}"'
        f' width="{WIDTH}" height="{height:.0f}" role="img" font-size="12"'
        f' font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif">'
        f"<title>{esc(chart['title'])}</title>{body}</svg>"
    )


def _short(label: str) -> str:
    label = visible(label)
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"


def _bars(chart: Mapping[str, Any], points: Sequence[tuple[str, float | None]],
          unit: str) -> str:
    """Horizontal bars: category names can be long (codecs, resolutions, file names)."""
    label_right, value_room = 150, 84
    left = label_right + 8
    room = WIDTH - left - value_room
    top = max(v for _, v in points if v is not None) or 1.0
    rows = []
    for i, (label, value) in enumerate(points):
        y = 6 + i * _BAR_ROW
        width = 0.0 if value is None else max(value, 0.0) / top * room
        shown = format_value(value, unit)
        rows.append(
            f"<g><title>{esc(label)}: {esc(shown)}</title>"
            f'<text x="{label_right}" y="{y + 15}" text-anchor="end" fill="{_INK}">'
            f"{html.escape(_short(label))}</text>"
            f'<rect x="{left}" y="{y + 3}" width="{width:.1f}" height="{_BAR_ROW - 6}"'
            f' fill="{_FILL}"/>'
            f'<text x="{left + width + 6:.1f}" y="{y + 15}" fill="{_INK}">{esc(shown)}</text></g>'
        )
    return _frame(chart, 12 + len(points) * _BAR_ROW, "".join(rows))


def _columns(chart: Mapping[str, Any], points: Sequence[tuple[str, float | None]],
             unit: str, *, line: bool) -> str:
    """Vertical columns (a histogram) or a line over evenly spaced categories."""
    top = _nice(max(v for _, v in points if v is not None), binary=unit == "bytes")
    room = WIDTH - _PLOT_LEFT - 12
    step = room / len(points)
    base = _PLOT_TOP + _PLOT_HEIGHT

    def y_of(value: float) -> float:
        return base - max(value, 0.0) / top * _PLOT_HEIGHT

    parts = [_axis(top, unit)]
    marks, run = [], []
    for i, (label, value) in enumerate(points):
        x = _PLOT_LEFT + (i + 0.5) * step
        tip = f"<title>{esc(label)}: {esc(format_value(value, unit))}</title>"
        if value is None:
            marks.append(_polyline(run))  # a gap in a line; no column in a histogram
            run = []
        elif line:
            run.append((x, y_of(value)))
            marks.append(f'<circle cx="{x:.1f}" cy="{y_of(value):.1f}" r="3.5" fill="{_LINE}">'
                         f"{tip}</circle>")
        else:
            width = max(step * 0.86, 1.0)
            marks.append(f'<rect x="{x - width / 2:.1f}" y="{y_of(value):.1f}"'
                         f' width="{width:.1f}" height="{base - y_of(value):.1f}"'
                         f' fill="{_FILL}">{tip}</rect>')
    marks.insert(0, _polyline(run))
    parts += marks
    # Slanted labels need ~14 px between neighbours; on a crowded axis show every n-th.
    every = max(1, math.ceil(14 / (step * math.sin(math.radians(_SLANT)))))
    for i, (label, _) in enumerate(points):
        if i % every == 0:
            x = _PLOT_LEFT + (i + 0.5) * step
            parts.append(f'<text transform="translate({x:.1f} {base + 14}) rotate(-{_SLANT})"'
                         f' text-anchor="end" fill="{_INK}">{html.escape(_short(label))}</text>')
    return _frame(chart, base + _X_LABELS, "".join(parts))


def _axis(top: float, unit: str) -> str:
    """Three grid lines (0, half, top) with their values."""
    lines = []
    for fraction in (0.0, 0.5, 1.0):
        y = _PLOT_TOP + _PLOT_HEIGHT * (1 - fraction)
        lines.append(
            f'<line x1="{_PLOT_LEFT}" x2="{WIDTH - 12}" y1="{y:.1f}" y2="{y:.1f}"'
            f' stroke="{_FAINT}"/>'
            f'<text x="{_PLOT_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{_INK}">'
            f"{esc(_tick(top * fraction, unit))}</text>"
        )
    return "".join(lines)


def _tick(value: float, unit: str) -> str:
    """An axis value in the few characters left of the plot: 2.5M rather than 2,500,000."""
    if unit in _COUNTS and value >= 10_000:
        for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if value >= scale:
                return f"{value / scale:g}{suffix}"
    return format_value(value, unit)


def _polyline(run: list[tuple[float, float]]) -> str:
    if len(run) < 2:
        return ""
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
    return f'<polyline points="{coords}" fill="none" stroke="{_LINE}" stroke-width="2"/>'


def _nice(top: float, *, binary: bool = False) -> float:
    """The axis' top: a round number at or above the largest value, whose half is round too
    (so a count axis reads 0, 2, 4 rather than 0, 2.5, 5; a bytes axis 0, 512 KiB, 1 MiB)."""
    if top <= 0:
        return 1.0
    if binary:
        power = 2.0 ** math.floor(math.log2(top))
        return next(m * power for m in (1, 1.5, 2) if m * power >= top)
    power = 10 ** math.floor(math.log10(top))
    return next(m * power for m in (1, 2, 4, 6, 8, 10) if m * power >= top)
