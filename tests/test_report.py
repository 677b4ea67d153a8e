"""Reports: the dict against the catalog and the tree, the schema, the HTML page, and the
page as a real browser renders it."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from sneakernet.catalog import samples
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import SourceError
from sneakernet.catalog.scan import scan
from sneakernet.catalog.stats import stats
from sneakernet.catalog.versions import list_versions
from sneakernet.cli.exits import ExitStatus
from sneakernet.transfer import charts, report
from sneakernet.transfer.report import chart, dataset_report, transfer_report, write_html

CHROMIUM = Path("/usr/bin/chromium")
# A name that would be markup, an entity, a line break and a right-to-left override
# if any of it reached the page unescaped.
HOSTILE = "<b>bold<i> & \u202eevil\nname.mp4"
CHART_IDS = [
    "hours-by-codec", "bytes-by-codec", "hours-by-resolution", "bytes-by-resolution",
    "hours-by-fps", "bytes-by-fps", "file-sizes", "growth-files", "growth-bytes",
    "growth-hours",
]
PAGE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "section",
    "table", "thead", "tbody", "tr", "th", "td", "bdi", "div", "figure", "figcaption",
    "details", "summary", "script", "svg", "g", "text", "rect", "line", "polyline", "circle",
}


@pytest.fixture(scope="module")
def built(sample_master: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Catalog]:
    """roadcam@1 is the sample; @2 adds a broken video with a hostile name and an empty file.

    Built once: the tests here only read it.
    """
    home = tmp_path_factory.mktemp("reported")
    tree = Path(shutil.copytree(sample_master, home / "roadcam"))
    catalog = Catalog(home / "catalog.duckdb", timeout=30)
    scan(catalog, tree, "roadcam")
    hostile = tree / "cam2" / HOSTILE
    hostile.write_bytes((tree / "cam1" / "clip_h264.mp4").read_bytes())
    samples.truncate_file(hostile, 0.4)
    (tree / "empty.txt").write_bytes(b"")
    scan(catalog, tree, "roadcam")
    return tree, catalog


@pytest.fixture
def versions_tree(built: tuple[Path, Catalog]) -> Path:
    return built[0]


@pytest.fixture
def catalog(built: tuple[Path, Catalog]) -> Catalog:
    return built[1]


def _schema() -> dict:
    text = resources.files("sneakernet.schemas").joinpath(report.SCHEMA_FILE).read_text()
    return json.loads(text)


def _validate(doc: dict) -> None:
    jsonschema.Draft202012Validator.check_schema(_schema())
    jsonschema.validate(doc, _schema(), cls=jsonschema.Draft202012Validator)


def _embedded(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="sneakernet-report">(.*?)</script>',
                      page, re.S)
    assert match, "the page does not embed its report"
    return json.loads(match.group(1))


def test_dataset_report_agrees_with_stats_and_the_tree(versions_tree, catalog):
    r = dataset_report(catalog, "roadcam")
    _validate(r)
    assert (r["format"], r["format_version"], r["kind"]) == ("sneakernet-report", 1, "dataset")
    total = stats(catalog, "roadcam@2")
    s = r["summary"]
    assert (s["dataset"], s["version"], s["versions"]) == ("roadcam", 2, 2)
    assert s["files"] == total.total.files and s["bytes"] == total.total.bytes
    assert s["video_hours"] == total.total.video_hours and s["frames"] == total.total.frames
    assert s["broken_videos"] == 2 and s["duplicate_files"] == total.duplicate_files
    by_id = {c["id"]: c for c in r["charts"]}
    assert list(by_id) == CHART_IDS

    def values(chart_id: str) -> list:
        return [p["value"] for p in by_id[chart_id]["points"]]

    for key in ("codec", "resolution", "fps"):
        assert sum(values(f"bytes-by-{key}")) == s["bytes"]
        assert math.isclose(sum(values(f"hours-by-{key}")), s["video_hours"], rel_tol=1e-9)
    assert {p["label"] for p in by_id["hours-by-codec"]["points"]} == {
        "h264", "hevc", "vp9", "mpeg4", "mjpeg", "ffv1", "prores"}

    sizes = [p.stat().st_size for p in versions_tree.rglob("*") if p.is_file()]
    powers = Counter(size.bit_length() - 1 for size in sizes)  # 0 bytes -> -1
    assert values("file-sizes") == [powers.get(p, 0)
                                    for p in range(min(powers), max(powers) + 1)]
    assert by_id["file-sizes"]["points"][0]["label"] == "0 B"
    history = list_versions(catalog, "roadcam")
    assert values("growth-files") == [v.files for v in history]
    assert values("growth-bytes") == [v.bytes for v in history]
    assert values("growth-hours")[-1] == s["video_hours"]

    assert r["problems_total"] == 2
    assert [(p["path"], p["outcome"]) for p in r["problems"]] == [
        ("broken/cut.mp4", "broken"), (f"cam2/{HOSTILE}", "broken")]
    assert all(p["detail"] for p in r["problems"])
    assert dataset_report(catalog, "roadcam@1")["problems_total"] == 1


def test_cli_json_is_the_page_s_own_numbers(versions_tree, catalog, cli, tmp_path):
    page = tmp_path / "report.html"
    proc = cli("report", "roadcam@2", page, "--json", catalog=catalog, check=True)
    printed = json.loads(proc.stdout)
    text = page.read_text(encoding="utf-8")
    assert _embedded(text) == printed
    _validate(printed)
    svgs = re.findall(r"<svg\b.*?</svg>", text, re.S)
    assert len(svgs) == len(printed["charts"]) == len(CHART_IDS)
    for element in svgs:  # each chart is well-formed XML too, so it survives copy and paste
        ET.fromstring(element)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    plain = cli("report", "roadcam", tmp_path / "again.html", catalog=catalog, check=True)
    assert "10 charts, 2 problem file(s)" in plain.stdout


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]


def test_names_stay_text_on_the_page(versions_tree, catalog, tmp_path):
    text = write_html(dataset_report(catalog, "roadcam"), tmp_path / "r.html").read_text()
    parser = _Tags()
    parser.feed(text)
    assert parser.tags <= PAGE_TAGS and not parser.handlers
    assert "<b>" not in text and "\u202e" not in text and text.count("<script") == 1
    assert "cam2/&lt;b&gt;bold&lt;i&gt; &amp; \\u202eevil\\nname.mp4" in text
    assert _embedded(text)["problems"][1]["path"] == f"cam2/{HOSTILE}"  # exact in the data


class Outcome(enum.Enum):
    OK = "ok"


@dataclasses.dataclass
class Drive:
    number: int
    mount: Path


def test_transfer_report_takes_any_summary(monkeypatch, tmp_path):
    monkeypatch.setattr(report, "MAX_PROBLEMS", 3)
    summary = {
        "shipment": "nov<east>", "outcome": Outcome.OK, "drives": [Drive(1, Path("/mnt/a"))],
        "started": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), "took": timedelta(seconds=90),
        "bytes": 2**41, "rate": Decimal("1.5"), "nan": math.nan, "inf": -math.inf,
        "tags": {"b", "a"}, "seal": b"\x01\xff", "odd name": "caf\udce9", 3: "int key",
        "nested": {"deeper": [1, 2.5, None, True]},
    }
    problems = ({"path": Path(f"cam/{i}.mp4"), "outcome": "corrupt", "detail": None,
                 "expected": "ab" * 16} for i in range(5))
    figures = [chart("rate", "Read rate", "bytes/s", "line", [("1", 5e8), ("2", math.nan)]),
               {"id": "x", "title": "t", "unit": "files", "kind": "bar",
                "points": [{"label": "<a>", "value": 3}]}]
    r = transfer_report("verify", summary, problems, figures, title="verify nov<east>")
    _validate(r)
    json.dumps(r, allow_nan=False)
    s = r["summary"]
    assert s["outcome"] == "ok" and s["drives"] == [{"number": 1, "mount": "/mnt/a"}]
    assert s["started"] == "2025-01-02T03:04:05+00:00" and s["took"] == 90.0
    assert s["nan"] is None and s["inf"] is None and s["tags"] == ["a", "b"]
    assert s["seal"] == "01ff" and s["odd name"] == "caf\\xe9" and s["3"] == "int key"
    assert r["problems_total"] == 5 and len(r["problems"]) == 3
    assert r["problems"][0] == {"path": "cam/0.mp4", "outcome": "corrupt", "detail": None,
                                "expected": "ab" * 16}
    assert r["charts"][0]["points"][1]["value"] is None
    page = write_html(r, tmp_path / "v.html").read_text()
    assert _embedded(page) == r
    assert "the first 3 are listed" in page and "nov&lt;east&gt;" in page
    with pytest.raises(ValueError, match="report kind"):
        transfer_report("scan", {}, [])
    with pytest.raises(ValueError, match="chart kind"):
        chart("x", "x", "files", "pie", [])


@pytest.mark.parametrize("kind", report.CHART_KINDS)
@pytest.mark.parametrize("values", [
    [], [None], [0], [7], [3, None, 5, 1e15, -2, 0.001] * 6, list(range(200)),
])
def test_charts_are_well_formed_svg(kind, values):
    c = chart("c", "T <&>", "bytes", kind, [(f"<{i}>\u202e\n", v) for i, v in enumerate(values)])
    element = ET.fromstring(charts.svg(c))
    assert element.tag.endswith("svg") and element.get("data-chart") == "c"
    text = "".join(element.itertext())
    assert "\u202e" not in text and "\n" not in text


def test_many_categories_end_in_one_others_bar():
    points = [(f"codec{i:02}", float(i)) for i in range(30)]
    top = report._top(points)
    assert len(top) == report.MAX_BARS and top[0] == ("codec29", 29.0)
    assert top[-1] == ("(11 others)", float(sum(range(11))))


def test_write_html_replaces_whole_files_only(tmp_path):
    r = transfer_report("pack", {"files": 1}, [])
    target = tmp_path / "r.html"
    target.write_text("old")
    write_html(r, target)
    assert _embedded(target.read_text()) == r
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary left behind
    with pytest.raises(SourceError, match="folder does not exist"):
        write_html(r, tmp_path / "no" / "r.html")
    with pytest.raises(SourceError, match="is a folder"):
        write_html(r, tmp_path)


def test_cli_report_errors(versions_tree, catalog, cli, tmp_path):
    missing = cli("report", "nosuch", tmp_path / "r.html", catalog=catalog)
    assert missing.returncode == ExitStatus.NOT_FOUND and "no dataset named" in missing.stderr
    nowhere = cli("report", "roadcam", tmp_path / "no" / "r.html", catalog=catalog)
    assert nowhere.returncode == ExitStatus.SOURCE and "Traceback" not in nowhere.stderr


def _chromium(page: Path, scratch: Path) -> tuple[str, list[str]]:
    """The DOM after Chromium rendered `page`, and the console messages it logged."""
    proc = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={scratch}", "--enable-logging=stderr", "--v=0",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines()
               if ":CONSOLE" in line or "Uncaught" in line]
    return proc.stdout, console


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")
def test_page_renders_in_headless_chromium(versions_tree, catalog, tmp_path):
    r = dataset_report(catalog, "roadcam")
    page = write_html(r, tmp_path / "roadcam report.html")
    dom, console = _chromium(page, tmp_path / "profile")
    assert console == []
    assert len(re.findall(r'<svg [^>]*class="chart chart-', dom)) == len(r["charts"])
    assert "<rect" in dom and "<polyline" in dom and "<circle" in dom
    assert re.search(r"<bdi>cam2/&lt;b&gt;bold&lt;i&gt; &amp; \\u202eevil\\nname\.mp4</bdi>", dom)
    assert "<b>" not in dom

    # The control: a page that fetches and throws is caught, so the silence above means
    # something (and the page's policy is what stops the fetch).
    bad = tmp_path / "bad.html"
    bad.write_text(page.read_text().replace(
        "</body>", '<img src="http://127.0.0.1:9/x.png"><script>nosuch()</script></body>'))
    _, console = _chromium(bad, tmp_path / "profile2")
    assert any("Content Security Policy" in line for line in console)
