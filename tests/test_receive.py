"""`sneakernet receive` as the service runs it: a subprocess, drives "mounted" by renaming
folders into its mounts folder, stopped with SIGTERM, restarted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.scan import scan
from sneakernet.catalog.stats import stats
from sneakernet.catalog.versions import list_versions
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer.custody import shipment_history
from sneakernet.transfer.pack import pack
from sneakernet.transfer.receive import receive
from sneakernet.transfer.receive_report import write_report

SPLIT = 400 << 10  # as in test_transfer.py: the sample needs both drives at this size
BIG = 64 << 20
SMALL_FILES = 30
TIMEOUT = 30


class Service:
    """`sneakernet receive --json` in a subprocess, its JSON lines collected as they come."""

    def __init__(self, catalog: Catalog, mounts: Path, store: Path, *extra: str):
        cmd = [sys.executable, "-m", "sneakernet.cli", "--catalog", str(catalog.path), "receive",
               "--mounts", str(mounts), "--store", str(store), "--json", "--poll", "0.5",
               "--settle", "0.2", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[dict] = []
        self.errors: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # stderr drained as it comes: a full pipe would block the service's exit
        self._err_reader = threading.Thread(target=self._read_errors, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def _read_errors(self) -> None:
        for line in self.proc.stderr:
            self.errors.append(line)

    def wait_for(self, want: Callable[[dict], bool], what: str) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if want(line):
                    return line
            if self.proc.poll() is not None:
                self._reader.join(5)
                for line in self.lines:
                    if want(line):
                        return line
                self._err_reader.join(5)
                pytest.fail(f"exited {self.proc.returncode} before {what}: "
                            f"{self.lines}\n{''.join(self.errors)}")
            time.sleep(0.01)
        pytest.fail(f"no {what} within {TIMEOUT} s: {self.lines}")

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"no exit within 15 s of SIGTERM; last lines {self.lines[-3:]}, "
                        f"stderr {''.join(self.errors)[-2000:]!r}")
        self._reader.join(5)
        self._err_reader.join(5)
        return code, "".join(self.errors)


def _kinds(lines: list[dict], kind: str) -> list[dict]:
    return [line for line in lines if line["kind"] == kind]


def _run_once(catalog: Catalog, mounts: Path, store: Path) -> tuple[int, list[dict], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "sneakernet.cli", "--catalog", str(catalog.path), "receive",
         "--mounts", str(mounts), "--store", str(store), "--once", "--json", "--settle", "0"],
        capture_output=True, text=True, timeout=120,
    )
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def _events(catalog: Catalog, shipment: str) -> Counter:
    return Counter((e["event"], e["drive"]) for e in shipment_history(catalog, shipment)["events"])


def _reports(store: Path) -> list[dict]:
    """The summaries of the receive reports (report format, kind receive) in the store."""
    folder = store / ".sneakernet" / "reports"
    reports = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    assert all(r["format"] == "sneakernet-report" and r["kind"] == "receive" for r in reports)
    return [r["summary"] for r in reports]


@pytest.fixture(scope="module")
def shipment_master(sample_master: Path, tmp_path_factory) -> tuple[Catalog, list[Path]]:
    """Site A's catalog and the two sealed drives of shipment `to-b`, packed once."""
    base = tmp_path_factory.mktemp("receive-sample")
    catalog = Catalog(base / "site-a.duckdb", timeout=30)
    scan(catalog, sample_master, "roadcam")
    drives = [base / "d1", base / "d2"]
    for drive in drives:
        drive.mkdir()
    result = pack(catalog, ["roadcam"], drives, shipment="to-b", to_site="B", capacity=SPLIT)
    assert result.sealed and all(d.files for d in result.drives)
    return catalog, drives


@pytest.fixture
def site_a(shipment_master) -> Catalog:
    return shipment_master[0]


@pytest.fixture
def two_drives(shipment_master, tmp_path: Path) -> list[Path]:
    """Fresh copies of the two drives, safe to damage and to move around."""
    copies = [tmp_path / "courier" / d.name for d in shipment_master[1]]
    for master, copy in zip(shipment_master[1], copies, strict=True):
        shutil.copytree(master, copy)
    return copies


@pytest.fixture
def site_b(tmp_path: Path) -> tuple[Catalog, Path, Path]:
    mounts, store = tmp_path / "media", tmp_path / "store"
    mounts.mkdir()
    store.mkdir()
    return Catalog(tmp_path / "site-b.duckdb", timeout=30), mounts, store


@pytest.fixture(scope="module")
def big_drive_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One drive carrying a 64 MiB file then small ones: a stop lands mid-ingest."""
    base = tmp_path_factory.mktemp("receive-big")
    root = base / "field" / "clips"
    root.mkdir(parents=True)
    block = os.urandom(1 << 20)
    with open(root / "a_big.bin", "wb") as big:
        for i in range(BIG >> 20):
            big.write(i.to_bytes(8, "little") + block[8:])
    for i in range(SMALL_FILES):
        (root / f"small_{i:03}.bin").write_bytes(os.urandom(16 << 10))
    catalog = Catalog(base / "a.duckdb")
    scan(catalog, base / "field", "field")
    drive = base / "drive"
    drive.mkdir()
    assert pack(catalog, ["field"], [drive], shipment="big").sealed
    return drive


@pytest.fixture
def big_drive(big_drive_master: Path, tmp_path: Path) -> Path:
    drive = tmp_path / "courier" / "big"
    shutil.copytree(big_drive_master, drive)
    return drive


def _mid_ingest(site_b, drive: Path, name: str) -> Service:
    """The service started, `drive` mounted as `name`, a file of it half-way into the store."""
    catalog, mounts, store = site_b
    service = Service(catalog, mounts, store)
    service.wait_for(lambda n: n["kind"] == "started", "start")
    os.rename(drive, mounts / name)
    folder = store / fmt.PARTIAL_DIR
    deadline = time.monotonic() + TIMEOUT
    while not (folder.is_dir() and any(p.stat().st_size >= 8 << 20 for p in folder.iterdir())):
        assert service.proc.poll() is None, f"exited before a partial file: {service.lines}"
        assert time.monotonic() < deadline, f"no partial file: {service.lines}"
        time.sleep(0.001)
    return service


# The service's own SIGTERM handler, in a process of its own, noticing the signal while
# the main thread holds the stop event's lock: Event.wait() holds it for a few bytecodes
# on every call (the idle loop calls it five times a second), so a signal landing there
# once left the service deaf to SIGTERM for good. Held open here, so it is not luck.
_SIGNAL_INSIDE_WAIT = r"""
import signal, threading
from sneakernet.cli.signals import stop_on_signals
stop = threading.Event()  # as receive_cmd gives the service
with stop_on_signals(stop.set) as received:
    assert isinstance(stop._cond, threading.Condition)
    with stop._cond:  # as inside stop.wait()
        signal.raise_signal(signal.SIGTERM)
        while not received:  # a backward jump: the handler runs here, the lock held
            pass
    assert stop.wait(10), "the stop event was never set"
print("stopped", received)
"""


def test_sigterm_noticed_inside_stop_wait_still_stops_the_service():
    try:
        proc = subprocess.run([sys.executable, "-c", _SIGNAL_INSIDE_WAIT], capture_output=True,
                              text=True, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("deadlocked: the SIGTERM handler waits for a lock its own thread holds "
                    "(no exit within 15 s)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["stopped", f"[{int(signal.SIGTERM)}]"]


def test_two_drives_arriving_at_different_times(site_a, two_drives, site_b):
    catalog, mounts, store = site_b
    service = Service(catalog, mounts, store)
    service.wait_for(lambda n: n["kind"] == "started", "start")

    os.rename(two_drives[0], mounts / "d1")
    first = service.wait_for(lambda n: n["kind"] == "ingested" and n["drive"] == 1, "drive 1")
    assert first["details"]["registered"] == [] and first["details"]["waiting"]
    time.sleep(1)  # another day: the service idles, rescanning
    os.rename(two_drives[1], mounts / "SHIPMENT-2")  # a mount point of another name
    second = service.wait_for(lambda n: n["kind"] == "ingested" and n["drive"] == 2, "drive 2")
    assert second["details"]["registered"] == ["roadcam@1"]
    code, stderr = service.stop()
    assert code == 0, stderr
    assert service.lines[-1]["kind"] == "stopped" and "Traceback" not in stderr

    [version] = list_versions(catalog, "roadcam")
    assert version.origin == "ingest"
    assert stats(catalog, "roadcam@1").to_dict() == stats(site_a, "roadcam@1").to_dict()
    events = _events(catalog, "to-b")
    for drive in (1, 2):
        for step in ("planned", "packed", "received", "verified", "ingested"):
            assert events[(step, drive)] == 1, (step, drive, events)
    assert not [e for e in events if e[0] in ("incomplete", "rejected")]
    reports = _reports(store)
    assert sorted((r["number"], r["outcome"]) for r in reports) == [(1, "ingested"),
                                                                    (2, "ingested")]
    assert all(r["verify"]["whole"] and r["ingest"]["problems"] == [] for r in reports)
    for name in ("d1", "SHIPMENT-2"):  # the drive carries its history back to the sender
        steps = [e["event"] for e in fmt.read_custody(mounts / name)]
        assert steps[-3:] == ["received", "verified", "ingested"], steps


def test_sigterm_mid_ingest_then_a_restart_finishes(big_drive, site_b):
    catalog, mounts, store = site_b
    service = _mid_ingest(site_b, big_drive, "big")
    stopped_at = time.monotonic()
    code, stderr = service.stop()
    assert code == 0 and time.monotonic() - stopped_at < 10, stderr
    [cut] = _kinds(service.lines, "incomplete")
    assert cut["details"] == {"stage": "ingest", "reason": "stopped"}
    assert not _kinds(service.lines, "ingested")
    assert _events(catalog, "big")[("ingested", 1)] == 0

    code, lines, stderr = _run_once(catalog, mounts, store)
    assert code == 0, stderr
    assert not _kinds(lines, "received"), "a restart is not a new arrival"
    [done] = _kinds(lines, "ingested")
    assert done["details"]["registered"] == ["field@1"]
    report = _reports(store)[-1]
    [drive] = report["ingest"]["drives"]
    # The stop landed inside the big file: its prefix is continued, not copied again.
    assert drive["reused_bytes"] >= 8 << 20, drive
    assert drive["present_files"] + drive["copied_files"] == 1 + SMALL_FILES

    code, lines, _ = _run_once(catalog, mounts, store)  # once more: nothing to do
    assert code == 0 and _kinds(lines, "skipped") and not _kinds(lines, "verified")
    events = _events(catalog, "big")
    assert (events[("received", 1)], events[("incomplete", 1)], events[("ingested", 1)]) == (
        1, 1, 1)
    assert sorted(os.listdir(store / "field" / "1" / "clips")) == sorted(
        os.listdir(mounts / "big" / "field" / "1" / "clips"))


def test_a_drive_pulled_mid_ingest_resumes_when_it_comes_back(big_drive, site_b, tmp_path):
    catalog, mounts, _ = site_b
    service = _mid_ingest(site_b, big_drive, "sdb1")
    os.rename(mounts / "sdb1", tmp_path / "on-the-desk")  # pulled out
    cut = service.wait_for(lambda n: n["kind"] == "incomplete", "incomplete")
    assert cut["details"] == {"stage": "ingest", "reason": "pulled"}
    os.rename(tmp_path / "on-the-desk", mounts / "sdc1")  # back, as another device
    done = service.wait_for(lambda n: n["kind"] == "ingested", "ingested")
    assert done["details"]["registered"] == ["field@1"] and done["details"]["problems"] == 0
    code, stderr = service.stop()
    assert code == 0, stderr
    events = _events(catalog, "big")
    assert (events[("received", 1)], events[("incomplete", 1)], events[("ingested", 1)]) == (
        2, 1, 1)


def test_a_corrupt_drive_is_rejected_and_strangers_are_ignored(two_drives, site_b, tmp_path):
    catalog, mounts, store = site_b
    victim = sorted(p for p in (two_drives[1] / "roadcam").rglob("*") if p.is_file())[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(data)
    rel = victim.relative_to(two_drives[1])
    for drive in two_drives:
        os.rename(drive, mounts / drive.name)
    (mounts / "holiday-photos").mkdir()
    (mounts / "holiday-photos" / "beach.jpg").write_bytes(b"jpeg")
    (mounts / "notes.txt").write_text("not a folder")
    (mounts / "root-link").symlink_to("/")
    forged = mounts / "forged" / ".sneakernet"
    forged.mkdir(parents=True)
    (forged / "drive.json").write_text('{"format": "sneakernet-drive", "state": "sealed"}')

    code, lines, stderr = _run_once(catalog, mounts, store)
    assert code == 3, stderr
    ignored = {Path(n["path"]).name: n["message"] for n in _kinds(lines, "ignored")}
    assert set(ignored) == {"holiday-photos", "notes.txt", "root-link"}
    assert "not a sneakernet drive" in ignored["holiday-photos"]
    [refused] = _kinds(lines, "refused")
    assert Path(refused["path"]).name == "forged" and "malformed" in refused["message"]
    [rejected] = _kinds(lines, "rejected")
    assert rejected["drive"] == 2 and rejected["details"]["corrupt"] == 1
    assert [n["drive"] for n in _kinds(lines, "ingested")] == [1]

    events = _events(catalog, "to-b")
    assert events[("rejected", 2)] == 1 and events[("ingested", 2)] == 0
    assert events[("packed", 2)] == 1, "the rejected drive's history is in the catalog too"
    shipments = json.loads(subprocess.run(
        [sys.executable, "-m", "sneakernet.cli", "--catalog", str(catalog.path), "shipments",
         "--json"], capture_output=True, text=True, check=True).stdout)
    assert [(s["name"], s["state"]) for s in shipments] == [("to-b", "rejected")]
    assert not (store / rel).exists()
    outcomes = sorted((r["outcome"], r["number"]) for r in _reports(store))
    assert outcomes == [("ingested", 1), ("refused", None), ("rejected", 2)]


def test_the_library_verb_alone_writes_json_and_html_reports(two_drives, site_b):
    """No CLI: `receive(once=True)` from Python; each drive gets a JSON and an HTML report."""
    catalog, mounts, store = site_b
    for drive in two_drives:
        os.rename(drive, mounts / drive.name)
    notices = []
    result = receive(catalog, mounts, store, once=True, settle=0, log=notices.append)
    assert [d.outcome for d in result.drives] == ["ingested", "ingested"]
    assert not result.needs_attention and not result.stopped
    pages = sorted((store / ".sneakernet" / "reports").glob("*.html"))
    embedded = [re.search(r'id="sneakernet-report">(.*?)</script>', p.read_text(), re.S)
                for p in pages]
    assert [json.loads(m.group(1))["summary"]["outcome"] for m in embedded] == [
        "ingested", "ingested"]
    assert [n.kind for n in notices if n.kind in ("received", "ingested")] == [
        "received", "ingested", "received", "ingested"]


def test_reports_of_one_drive_in_one_second_list_in_the_order_written(tmp_path):
    """A quick restart writes a drive's second report in the same second: it was named
    '<base>-2.json', which sorts before '<base>.json', so the listing (and this module's
    _reports()[-1], now and then) gave the older report as the latest."""
    outcome = {"shipment": "to-b", "number": 1, "ingest": None, "verify": None}
    for _ in range(3):  # the two calls fall in one second, unless a second boundary parts them
        written = [write_report(tmp_path, tmp_path, dict(outcome, step=i))[0] for i in range(3)]
        if len({re.sub(r"(_\d+|-\d+)?\.json$", "", p) for p in written}) == 1:
            break
    assert sorted(written) == written, written
