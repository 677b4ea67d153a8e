"""A report dict as one self-contained HTML page.

Everything on the page comes from the dict: the summary, the problems, the
charts (inline SVG from `transfer.charts`), and the dict itself as an inert
JSON data block, so a page found on a drive years later still gives its exact
numbers to a script. The page runs no script and its Content-Security-Policy
forbids loading anything, so opening it never reaches the network.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from sneakernet.transfer.charts import (
    NO_VALUE,
    esc,
    format_value,
    human_bytes,
    human_duration,
    svg,
)

_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_STYLE = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1f2933; background: #fff; margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #52606d; margin: 0; }
table { border-collapse: collapse; margin: 4px 0; }
th, td { text-align: left; vertical-align: top; padding: 3px 10px 3px 0;
         border-bottom: 1px solid #e4e7eb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.path { word-break: break-all; font-family: ui-monospace, Menlo, Consolas, monospace; }
.ok { color: #2f7d32; } .bad { color: #b3261e; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 12px 28px; }
figure { margin: 0; max-width: 100%; } figcaption { font-weight: 600; margin: 8px 0 4px; }
svg.chart { max-width: 100%; height: auto; display: block; }
details { margin: 4px 0 0; color: #52606d; }
"""
_SHOWN_ITEMS = 50  # items of a list inside a summary; the JSON block holds them all


def render_html(report: Mapping[str, Any]) -> str:
    title = str(report.get("title") or "sneakernet report")
    problems = list(report.get("problems") or [])
    total = int(report.get("problems_total") or len(problems))
    charts = list(report.get("charts") or [])
    body = [
        f"<header><h1><bdi>{esc(title)}</bdi></h1>",
        f'<p class="meta">{esc(report.get("kind", ""))} report · generated'
        f' {esc(report.get("generated_at", ""))} by {esc(report.get("generator", ""))}</p>'
        "</header>",
        '<section id="summary"><h2>Summary</h2>',
        _mapping(report.get("summary") or {}),
        "</section>",
        _problems(problems, total),
        '<section id="charts"><h2>Charts</h2><div class="charts">',
        *(_figure(c) for c in charts),
        "</div></section>" if charts else "<p>No charts.</p></div></section>",
        f'<script type="application/json" id="sneakernet-report">{_data_block(report)}</script>',
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="{esc(report.get("generator", ""))}">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{''.join(body)}\n</body></html>\n"
    )


def _data_block(report: Mapping[str, Any]) -> str:
    """The report as JSON that cannot end the <script> element or start a comment."""
    text = json.dumps(report, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _problems(problems: list[Any], total: int) -> str:
    if not total:
        return '<section id="problems"><h2>Problems</h2><p class="ok">None.</p></section>'
    outcomes = Counter(str(p.get("outcome", "")) for p in problems if isinstance(p, Mapping))
    counts = ", ".join(f"{n:,} {esc(outcome)}" for outcome, n in outcomes.most_common())
    shown = f"; the first {len(problems):,} are listed" if len(problems) < total else ""
    rows = "".join(_problem_row(p) for p in problems if isinstance(p, Mapping))
    return (
        f'<section id="problems"><h2>Problems</h2><p class="bad">{total:,} problem(s)'
        f"{': ' + counts if counts else ''}{shown}.</p>"
        "<table><thead><tr><th>path</th><th>outcome</th><th>detail</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _problem_row(problem: Mapping[str, Any]) -> str:
    extra = [f"{k}: {_plain(v)}" for k, v in problem.items()
             if k not in ("path", "outcome", "detail")]
    detail = "; ".join(x for x in [_plain(problem.get("detail")), *extra] if x)
    return (
        f'<tr><td class="path"><bdi>{esc(problem.get("path", ""))}</bdi></td>'
        f'<td class="bad">{esc(problem.get("outcome", ""))}</td>'
        f"<td><bdi>{esc(detail)}</bdi></td></tr>"
    )


def _figure(chart: Mapping[str, Any]) -> str:
    unit = str(chart.get("unit", ""))
    rows = "".join(
        f'<tr><td><bdi>{esc(p.get("label", ""))}</bdi></td>'
        f'<td class="num">{esc(format_value(p.get("value"), unit))}</td>'
        f'<td class="num">{esc(_plain(p.get("value")))}</td></tr>'
        for p in chart.get("points", [])
    )
    return (
        f'<figure id="chart-{esc(chart.get("id", ""))}"><figcaption><bdi>'
        f"{esc(chart.get('title', ''))}</bdi></figcaption>{svg(chart)}"
        f"<details><summary>numbers</summary><table>{rows}</table></details></figure>"
    )


def _mapping(values: Mapping[str, Any]) -> str:
    if not values:
        return f"<p>{NO_VALUE}</p>"
    rows = "".join(
        f"<tr><th><bdi>{esc(str(key).replace('_', ' '))}</bdi></th>{_cell(str(key), value)}</tr>"
        for key, value in values.items()
    )
    return f"<table>{rows}</table>"


def _cell(key: str, value: Any) -> str:
    """A summary value: nested mappings as tables, figures with units the key implies."""
    if isinstance(value, Mapping):
        return f"<td>{_mapping(value)}</td>"
    if isinstance(value, list):
        if value and all(isinstance(v, Mapping) for v in value):
            inner = "".join(_mapping(v) for v in value[:_SHOWN_ITEMS])
        else:
            inner = esc(", ".join(_plain(v) for v in value[:_SHOWN_ITEMS]))
        more = f" … and {len(value) - _SHOWN_ITEMS:,} more" if len(value) > _SHOWN_ITEMS else ""
        return f"<td>{inner}{more}</td>"
    if isinstance(value, bool) or value is None:
        return f"<td>{_plain(value) or NO_VALUE}</td>"
    if isinstance(value, int | float):
        return f'<td class="num">{esc(_with_unit(key, value))}</td>'
    return f"<td><bdi>{esc(value)}</bdi></td>"


def _with_unit(key: str, value: float) -> str:
    exact = f"{value:,}" if isinstance(value, int) else f"{value:,.6g}"
    if key.endswith("bytes") and value >= 1024:
        return f"{exact} ({human_bytes(value)})"
    if key.endswith("hours"):
        return f"{value:,.3f} ({human_duration(value * 3600)})"
    if key.endswith("seconds"):
        return f"{exact} ({human_duration(value)})" if value >= 60 else exact
    if key.endswith(("bytes_per_second", "throughput")):
        return f"{exact} ({human_bytes(value)}/s)"
    return exact


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
