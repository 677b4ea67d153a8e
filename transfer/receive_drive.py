"""Receiving one drive: log its arrival, verify it, ingest it or reject it, write a report.

The receiving service (`transfer/receive.py`) hands each drive that appears
under its mounts folder to `DriveReceiver.receive`, one at a time. Every step
is a custody event in the catalog and, when the drive is writable, in the
drive's own custody log, so the drive carries its history back to the sender.
A drive pulled out mid-way is recorded as `incomplete`; ingest is resumable,
so handing the same drive in again later finishes the job.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.progress import ProgressEvent, ProgressFn
from sneakernet.transfer import custody
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer import drivemanifests as manifests
from sneakernet.transfer.errors import DriveError, NoSpaceError
from sneakernet.transfer.ingest import IngestResult, ingest
from sneakernet.transfer.receive_report import write_report
from sneakernet.transfer.registration import remember_drive
from sneakernet.transfer.verify import DriveReport, verify

_DOING = {"verify": "verifying", "ingest": "ingesting"}


class StopRequested(KeyboardInterrupt):
    """The service was asked to stop; raised from a progress callback between files.

    A KeyboardInterrupt on purpose: verify stops its reader threads only for that
    family (any other exception would wait for them to read the whole drive).
    """


class DriveGone(Exception):
    """The drive's folder vanished or now holds something else (pulled out, unmounted)."""


@dataclass(slots=True)
class Notice:
    """One line of the service's log: what happened, to which drive."""

    kind: str  # received, verified, ingested, rejected, incomplete, skipped, refused, ...
    message: str
    path: str = ""
    shipment: str | None = None
    drive: int | None = None
    of: int | None = None
    details: dict = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}


LogFn = Callable[[Notice], None]


@dataclass(slots=True)
class DriveOutcome:
    root: str
    outcome: str = "refused"  # ingested, rejected, incomplete, skipped, refused
    reason: str | None = None
    shipment: str | None = None
    shipment_id: str | None = None
    drive_id: str | None = None
    number: int | None = None
    of: int | None = None
    label: str | None = None
    events: list[str] = field(default_factory=list)  # custody events recorded, in order
    drive_log: bool = True  # False when the drive's own custody log could not be written
    verify: dict | None = None
    ingest: dict | None = None
    report: str | None = None
    seconds: float = 0.0

    @property
    def needs_attention(self) -> bool:
        problems = bool(self.ingest and self.ingest["problems"])
        return self.outcome in ("rejected", "refused", "incomplete") or problems

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__slots__}
        data["needs_attention"] = self.needs_attention
        return data


class DriveReceiver:
    """Takes one drive at a time through received -> verified -> ingested (or rejected)."""

    def __init__(
        self,
        catalog: Catalog,
        store: Path,
        *,
        stop: threading.Event,
        log: LogFn,
        progress: ProgressFn | None = None,
        progress_every: float = 30.0,
    ) -> None:
        self.catalog, self.store, self.stop, self.log = catalog, store, stop, log
        self.progress, self.progress_every = progress, progress_every
        self.site = custody.site_name(catalog)

    def receive(self, root: Path, *, new_arrival: bool) -> DriveOutcome:
        """Handle the drive at `root`; `new_arrival` when it appeared while the service ran.

        Raises StopRequested (after recording where it stopped) when asked to stop.
        """
        started = time.monotonic()
        out = DriveOutcome(str(root))
        try:
            self._receive(root, out, new_arrival)
        except StopRequested:
            self._finish(root, out, started)
            raise
        self._finish(root, out, started)
        return out

    def _finish(self, root: Path, out: DriveOutcome, started: float) -> None:
        out.seconds = round(time.monotonic() - started, 3)
        if out.outcome != "skipped":
            doc = {"store": str(self.store), "site": self.site, **out.to_dict()}
            out.report, html = write_report(self.store, root, doc)
            self._say(out, "report", out.report, {"html": html} if html else {})

    def _receive(self, root: Path, out: DriveOutcome, new_arrival: bool) -> None:
        try:
            info = fmt.read_drive(root)
            ident = _identity(root)
        except (DriveError, OSError) as exc:
            self._refuse(root, out, exc)
            return
        info.describe(out)
        events = custody.drive_events(self.catalog, info.drive_id)
        if self._already_ingested(root, out, events):
            return
        if new_arrival or _needs_received(events):
            self._event(root, info, out, "received", {"mount": str(root), "label": info.label})
            self._say(out, "received", f"label {info.label!r}, mounted at {root}")
        report = self._verify(root, info, ident, out)
        if report is None:
            return
        if not report.whole:
            self._reject(root, info, out, report)
            return
        self._ingest(root, info, ident, out)

    # --- the steps ---------------------------------------------------------------------

    def _already_ingested(self, root: Path, out: DriveOutcome, events: list[dict]) -> bool:
        """Ingested into this store with no problem before, and the store still holds it."""
        done = [
            e
            for e in events
            if e["event"] == "ingested"
            and (e["details"] or {}).get("problems") == 0
            and (e["details"] or {}).get("store") == str(self.store)
        ]
        if not done:
            return False
        try:
            missing = _missing_in_store(root, self.store)
        except (DriveError, OSError):
            return False  # cannot tell: go through the steps, they say what is wrong
        if missing:
            self._say(
                out, "resuming", f"ingested before, but the store lacks {missing:,} of its files"
            )
            return False
        out.outcome = "skipped"
        out.reason = f"already ingested into {self.store} at {done[-1]['at']}"
        self._say(out, "skipped", out.reason)
        return True

    def _verify(
        self, root: Path, info: fmt.DriveInfo, ident: tuple, out: DriveOutcome
    ) -> DriveReport | None:
        try:
            result = verify([root], progress=self._checker(root, ident, "verify", watch=False))
        except StopRequested:
            self._incomplete(root, info, out, "verify", "stopped", "the service was stopped")
            raise
        except OSError as exc:
            self._cut_short(root, info, ident, out, "verify", exc)
            return None
        report = result.drives[0]
        out.verify = report.to_dict()
        if not _present(root, ident):
            self._incomplete(root, info, out, "verify", "pulled", "the drive went away")
            return None
        custody.log_verify(self.catalog, result)
        self._copy_to_drive(root, info, out, "verified")
        counts = ", ".join(f"{v:,} {k}" for k, v in report.counts.items() if v or k == "ok")
        state = "whole" if report.whole else "NOT whole"
        self._say(out, "verified", f"{state}; seal {'ok' if report.seal_ok else 'BROKEN'}; "
                  f"{counts}", {"counts": report.counts, "seconds": round(report.seconds, 3)})
        return report

    def _reject(
        self, root: Path, info: fmt.DriveInfo, out: DriveOutcome, report: DriveReport
    ) -> None:
        if report.seal_ok and report.error is None:
            # The metadata is as the sender sealed it (only data is damaged): the catalog
            # learns the shipment and its history, so `sneakernet shipments` lists it as
            # rejected until someone sees to it.
            with tempfile.TemporaryDirectory(prefix="sneakernet-receive-") as tmp:
                index = manifests.export_drive(info, Path(tmp))[fmt.INDEX_FILE]
                remember_drive(self.catalog, root, info, index)
        findings = sum(v for k, v in report.counts.items() if k != "ok")
        details = {"findings": findings, "seal_ok": report.seal_ok, "error": report.error,
                   **{k: v for k, v in report.counts.items() if k != "ok"}}
        self._event(root, info, out, "rejected", details)
        out.outcome = "rejected"
        out.reason = report.error or f"{findings:,} files missing, corrupt, extra or unreadable"
        self._say(out, "rejected", f"not ingested: {out.reason}", details)

    def _ingest(self, root: Path, info: fmt.DriveInfo, ident: tuple, out: DriveOutcome) -> None:
        try:
            result = ingest(
                self.catalog,
                [root],
                self.store,
                progress=self._checker(root, ident, "ingest", watch=True),
            )
        except StopRequested:
            self._incomplete(root, info, out, "ingest", "stopped", "the service was stopped")
            raise
        except DriveError as exc:
            if not _present(root, ident):
                self._incomplete(root, info, out, "ingest", "pulled", "the drive went away")
                return
            # Something verify does not judge (a hostile dataset name, say): refused whole.
            reason = str(exc) + (f" ({exc.hint})" if exc.hint else "")
            self._event(root, info, out, "rejected", {"error": reason})
            out.outcome, out.reason = "rejected", reason
            self._say(out, "rejected", f"not ingested: {reason}")
            return
        except (DriveGone, OSError, NoSpaceError) as exc:  # a full store: fix it, mount again
            self._cut_short(root, info, ident, out, "ingest", exc)
            return
        out.ingest = result.to_dict()
        if result.problems and not _present(root, ident):
            # It went away after the last file was read: ingest logged what it saw, but the
            # drive is not done; it resumes when it comes back.
            self._incomplete(root, info, out, "ingest", "pulled", "the drive went away")
            return
        self._copy_to_drive(root, info, out, "ingested")
        out.outcome = "ingested"
        self._say(out, "ingested", _ingest_line(result), {
            "registered": result.registered, "waiting": result.waiting,
            "problems": len(result.problems)})

    def _cut_short(
        self, root: Path, info: fmt.DriveInfo, ident: tuple, out: DriveOutcome, stage: str,
        exc: Exception,
    ) -> None:
        """A step ended by the drive going away, or by an error of the file system."""
        if isinstance(exc, DriveGone) or not _present(root, ident):
            self._incomplete(root, info, out, stage, "pulled", "the drive went away")
            return
        text = f"{exc.strerror or exc}: {exc.filename}" if isinstance(exc, OSError) else str(exc)
        self._incomplete(root, info, out, stage, "error", text)

    def _incomplete(
        self, root: Path, info: fmt.DriveInfo, out: DriveOutcome, stage: str, why: str,
        text: str,
    ) -> None:
        out.outcome, out.reason = "incomplete", f"{text} while {_DOING[stage]}"
        self._event(root, info, out, "incomplete", {"stage": stage, "reason": why, "note": text})
        hint = {
            "pulled": "it resumes when the drive is back",
            "stopped": "it resumes when the service starts again",
        }.get(why, "fix that, then mount the drive again or restart the service")
        self._say(out, "incomplete", f"{out.reason}; {hint}", {"stage": stage, "reason": why})

    def _refuse(self, root: Path, out: DriveOutcome, exc: Exception) -> None:
        out.outcome = "refused"
        text = str(exc) if not isinstance(exc, OSError) else (exc.strerror or str(exc))
        hint = getattr(exc, "hint", None)
        out.reason = text + (f" ({hint})" if hint else "")
        self._say(out, "refused", f"not a usable sneakernet drive: {out.reason}")

    # --- events, progress, reports -----------------------------------------------------

    def _event(
        self, root: Path, info: fmt.DriveInfo, out: DriveOutcome, name: str, details: dict
    ) -> None:
        event = custody.new_event(
            info.shipment_id, name, drive_id=info.drive_id, site=self.site, details=details
        )
        custody.record(self.catalog, event)
        out.events.append(name)
        self._append(root, out, event)

    def _copy_to_drive(self, root: Path, info: fmt.DriveInfo, out: DriveOutcome, name: str) -> None:
        """Put the event a verb logged in the catalog only on the drive too (same event_id)."""
        found = [e for e in custody.drive_events(self.catalog, info.drive_id) if e["event"] == name]
        if found:
            out.events.append(name)
            self._append(root, out, found[-1])

    def _append(self, root: Path, out: DriveOutcome, event: dict) -> None:
        if not out.drive_log:
            return
        try:
            fmt.append_custody(root, event)
        except (OSError, DriveError):
            out.drive_log = False  # a read-only or pulled drive: the catalog has the event

    def _checker(self, root: Path, ident: tuple, phase: str, *, watch: bool) -> ProgressFn:
        """The progress callback: where a stop takes effect, and a pulled drive is noticed."""
        noted = time.monotonic()

        def check(event: ProgressEvent) -> None:
            nonlocal noted
            if self.stop.is_set():
                raise StopRequested
            # After every file (two stats, next to an open, a copy and an fsync): ingest
            # counts a file it cannot read as a problem and goes on, so a pulled drive must
            # be caught here, before it turns every file left into an "unreadable".
            if watch and not _present(root, ident):
                raise DriveGone(str(root))
            now = time.monotonic()
            if now - noted >= self.progress_every:
                noted = now
                total = f" of {event.bytes_total:,}" if event.bytes_total else ""
                self.log(Notice("progress", f"{phase}: {event.files_done:,} files, "
                                f"{event.bytes_done:,}{total} bytes", str(root)))
            if self.progress is not None:
                self.progress(event)

        return check

    def _say(self, out: DriveOutcome, kind: str, message: str, details: dict | None = None) -> None:
        self.log(Notice(kind, message, out.root, out.shipment, out.number, out.of, details or {}))



def _identity(root: Path) -> tuple[int, int]:
    st = os.stat(root)
    return st.st_dev, st.st_ino


def _present(root: Path, ident: tuple) -> bool:
    """The same folder still holds the drive (a pulled drive or an unmount changes this)."""
    try:
        return _identity(root) == ident and os.path.isfile(root / fmt.DRIVE_FILE)
    except OSError:
        return False


def _needs_received(events: list[dict]) -> bool:
    """A drive found at start-up arrived anew unless the catalog already knows it is here.

    It is here if it was received and has not been pulled out since (a restart of the
    service, or a stop mid-ingest, is not a new arrival).
    """
    steps = [e for e in events if e["event"] in ("received", "incomplete")]
    if not any(e["event"] == "received" for e in steps):
        return True
    last = steps[-1]
    return last["event"] == "incomplete" and (last["details"] or {}).get("reason") == "pulled"


def _missing_in_store(root: Path, store: Path) -> int:
    """How many files the drive carries that are not in the store (by name and size)."""
    missing = 0
    for batch in manifests.read_manifest(root, fmt.MANIFEST_FILE):
        columns = batch.select(["dataset", "version", "path", "size"]).to_pydict()
        for dataset, version, path, size in zip(*columns.values(), strict=True):
            try:
                info = os.lstat(store / dataset / str(version) / path)
            except OSError:
                missing += 1
                continue
            if not stat.S_ISREG(info.st_mode) or info.st_size != size:
                missing += 1
    return missing


def _ingest_line(result: IngestResult) -> str:
    d = result.drives[0]
    text = (f"copied {d.copied_files:,} files ({d.copied_bytes:,} bytes), linked "
            f"{d.linked_files:,}, {d.present_files:,} already in the store, "
            f"{d.waiting_files:,} on other drives")
    if result.problems:
        text += f"; {len(result.problems):,} PROBLEMS (see the report)"
    for name in result.registered:
        text += f"; registered {name}"
    for w in result.waiting:
        text += f"; {w['version']} waits for {w.get('missing_files', 0):,} files"
    return text
