"""`sneakernet metrics`: figures of a real catalog, read back by Prometheus' own parser."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.scan import scan
from sneakernet.catalog.stats import stats
from sneakernet.transfer.metrics import FAMILIES, metrics

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "bench" / "grafana" / "sneakernet-dashboard.json"
ODD_NAME = 'nov "east"\\west\nline'  # every character the label syntax must escape
# The text format, strictly: comments, then `name{label="value",...} number`.
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
_LINE = re.compile(
    r"# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* gauge|"
    rf"[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{{{_LABEL}(?:,{_LABEL})*\}})? "
    r"(?:[-+]?[0-9]+(?:\.[0-9]*)?(?:e[-+]?[0-9]+)?|NaN|[-+]Inf)"
)


def _ok(outcome: str, files: int, nbytes: int, seconds: float, **bad: int) -> str:
    """A verify event's details, as verify writes them (see transfer/metrics.py)."""
    counts = {k: bad.get(k, 0) for k in ("missing", "corrupt", "extra", "unreadable")}
    return json.dumps({"outcome": outcome, "files": files, "bytes": nbytes, "seconds": seconds,
                       "ok": files - sum(counts.values()), **counts})


T = {n: datetime(2025, 3, n, 12, 0, tzinfo=UTC) for n in range(1, 8)}


@pytest.fixture(scope="module")
def shipping_catalog(sample_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """Two datasets and three shipments in every state of interest; the tests only read it."""
    catalog = Catalog(tmp_path_factory.mktemp("shipping") / "catalog.duckdb", timeout=30)
    scan(catalog, sample_master, "roadcam")
    scan(catalog, sample_master, "mirror")
    with catalog.write() as con:
        con.executemany("INSERT INTO shipments VALUES (?, ?, 'paris', 'lyon', ?, 10, 1000, ?)", [
            ("s-1", ODD_NAME, 2, T[1]), ("s-2", "dec", 1, T[1]), ("s-3", "jan", 1, T[1])])
        con.executemany("INSERT INTO drives VALUES (?, ?, ?, NULL, 10, 1000, NULL, NULL)", [
            ("d-1", "s-1", 1), ("d-2", "s-1", 2), ("d-3", "s-2", 1)])
        con.executemany(
            "INSERT INTO events (event_id, shipment_id, drive_id, happened_at, event, details)"
            " VALUES (?, ?, ?, ?, ?, ?)", [
                ("e1", "s-1", None, T[1], "planned", None),
                ("e2", "s-1", None, T[2], "packed", None),
                ("e3", "s-1", "d-1", T[3], "verified", _ok("ok", 10, 600, 2.0)),
                ("e4", "s-1", "d-2", T[4], "verified", _ok("ok", 5, 400, 0.5)),
                ("e5", "s-1", "d-1", T[5], "verified",
                 _ok("problems", 10, 500, 4.0, missing=1, corrupt=2)),
                ("e6", "s-2", None, T[2], "packed", None),
                # A drive of a shipment this catalog never heard of, with details that
                # are not JSON: still reported, with what can be known.
                ("e7", "s-9", "d-9", T[6], "verified", "{not json"),
            ])
    return catalog


def _families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _by(samples: list, *keys: str) -> dict:
    return {tuple(s.labels[k] for k in keys): s.value for s in samples}


def test_metrics_parse_and_match_the_catalog(shipping_catalog):
    text = metrics(shipping_catalog)
    assert text.endswith("\n")
    for line in text.splitlines():
        assert _LINE.fullmatch(line), line
    families = _families(text)
    assert set(families) == set(FAMILIES)
    roadcam = stats(shipping_catalog, "roadcam").total
    for name, figure in (("bytes", roadcam.bytes), ("files", roadcam.files),
                         ("video_hours", roadcam.video_hours)):
        assert _by(families[f"sneakernet_dataset_{name}"], "dataset") == {
            ("mirror",): figure, ("roadcam",): figure}
    assert _by(families["sneakernet_shipments"], "state") == {
        ("verified",): 1, ("packed",): 1, ("none",): 1}

    ok = _by(families["sneakernet_last_verify_ok"], "shipment", "drive")
    assert ok == {(ODD_NAME, "1"): 0, (ODD_NAME, "2"): 1}  # d-1's latest verify is e5
    at = _by(families["sneakernet_last_verify_timestamp_seconds"], "drive_id")
    assert at == {("d-1",): T[5].timestamp(), ("d-2",): T[4].timestamp(),
                  ("d-9",): T[6].timestamp()}
    rate = _by(families["sneakernet_last_verify_bytes_per_second"], "drive_id")
    assert rate == {("d-1",): 125.0, ("d-2",): 800.0}
    assert _by(families["sneakernet_last_verify_bytes"], "drive_id") == {
        ("d-1",): 500, ("d-2",): 400}
    problems = _by(families["sneakernet_last_verify_problem_files"], "drive_id", "outcome")
    assert problems[("d-1", "missing")] == 1 and problems[("d-1", "corrupt")] == 2
    assert problems[("d-2", "missing")] == 0 and ("d-9", "missing") not in problems
    unknown = next(s for s in families["sneakernet_last_verify_timestamp_seconds"]
                   if s.labels["drive_id"] == "d-9")
    assert unknown.labels == {"shipment": "s-9", "shipment_id": "s-9", "drive": "d-9",
                              "drive_id": "d-9"}


def test_empty_catalog_gives_only_help_and_type(catalog):
    text = metrics(catalog)
    assert all(line.startswith("# ") for line in text.splitlines())
    assert {f.name for f in text_string_to_metric_families(text)} == set(FAMILIES)


def test_cli_out_writes_the_textfile_atomically(shipping_catalog, cli, tmp_path):
    printed = cli("metrics", catalog=shipping_catalog, check=True).stdout
    textfile = tmp_path / "collector" / "sneakernet.prom"
    textfile.parent.mkdir()
    textfile.write_text("old\n")
    proc = cli("metrics", "--out", textfile, catalog=shipping_catalog, check=True)
    assert proc.stdout == "" and textfile.read_text() == printed
    assert [p.name for p in textfile.parent.iterdir()] == ["sneakernet.prom"]
    samples = json.loads(cli("metrics", "--json", catalog=shipping_catalog, check=True).stdout)
    assert len(samples) == sum(len(s) for s in _families(printed).values())
    assert {"name": "sneakernet_shipments", "labels": {"state": "packed"}, "value": 1} in samples


def test_dashboard_asks_only_for_metrics_we_write():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            exprs.extend(v for k, v in node.items() if k == "expr")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(dashboard["panels"])
    used = {name for e in exprs for name in re.findall(r"\bsneakernet_[a-z_]+", e)}
    assert used <= set(FAMILIES), used - set(FAMILIES)
    assert {"sneakernet_dataset_bytes", "sneakernet_shipments", "sneakernet_last_verify_ok",
            "sneakernet_last_verify_bytes_per_second"} <= used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
