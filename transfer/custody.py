"""The custody log: what happened to a shipment and its drives, when, where, by whom.

Events live in the catalog (table `events`) and, when the drive is at hand,
in the drive's own `.sneakernet/custody.jsonl`, so the receiving site reads
the sending site's history off the drive.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import UsageError
from sneakernet.transfer import driveformat

EVENTS = (
    "planned",
    "packed",
    "verified",
    "shipped",
    "received",
    "ingested",
    "drive-full",
    "incomplete",
    "note",
)


def site_name(catalog: Catalog | None = None) -> str:
    """This site's name: $SNEAKERNET_SITE, else the catalog's `site` setting, else the host."""
    explicit = os.environ.get("SNEAKERNET_SITE")
    if not explicit and catalog is not None and catalog.path.exists():
        with catalog.read() as con:
            return site_in(con)
    return explicit or socket.gethostname()


def site_in(con: duckdb.DuckDBPyConnection) -> str:
    """site_name, read through a catalog connection the caller already holds."""
    explicit = os.environ.get("SNEAKERNET_SITE")
    if explicit:
        return explicit
    row = con.execute("SELECT value FROM meta WHERE key = 'site'").fetchone()
    return row[0] if row else socket.gethostname()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def new_event(
    shipment_id: str,
    event: str,
    *,
    drive_id: str | None = None,
    site: str | None = None,
    note: str | None = None,
    details: dict | None = None,
) -> dict:
    return {
        "event_id": uuid.uuid4().hex,
        "shipment_id": shipment_id,
        "drive_id": drive_id,
        "event": event,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "site": site,
        "host": socket.gethostname(),
        "user": _user(),
        "note": note,
        "details": details,
    }


def insert_events(con: duckdb.DuckDBPyConnection, events: list[dict]) -> None:
    """Add events to the catalog inside the caller's transaction; known event_ids are skipped."""
    con.executemany(
        "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?::TIMESTAMPTZ, ?, ?, ?, ?, ?, ?)",
        [
            [
                e["event_id"],
                e["shipment_id"],
                e.get("drive_id"),
                e["at"],
                e["event"],
                e.get("site"),
                e.get("host"),
                e.get("user"),
                e.get("note"),
                json.dumps(e["details"]) if e.get("details") is not None else None,
            ]
            for e in events
        ],
    )


def record(catalog: Catalog, event: dict, drives: list[Path] = ()) -> None:
    """Log `event` in the catalog and on every drive given."""
    with catalog.write() as con:
        insert_events(con, [event])
    for root in drives:
        driveformat.append_custody(root, event)


_EVENT_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")


def mark(
    catalog: Catalog, shipment: str, event: str, *, note: str | None = None, drives: list[Path] = ()
) -> dict:
    """Record a manual step (shipped, received, ...) in the catalog and on the drives given."""
    from sneakernet.transfer.shipment import get_shipment

    if not _EVENT_NAME.fullmatch(event):
        raise UsageError(
            f"invalid event name {event!r}",
            hint="lowercase letters, digits and '-', e.g. shipped or received",
        )
    record = get_shipment(catalog, shipment)
    infos = [driveformat.read_drive(root) for root in drives]
    for root, info in zip(drives, infos, strict=True):
        if info.shipment_id != record.shipment_id:
            raise UsageError(
                f"the drive belongs to shipment {info.shipment_name!r}", path=str(root)
            )
    entry = new_event(record.shipment_id, event, site=site_name(catalog), note=note)
    record_event = dict(entry)
    with catalog.write() as con:
        insert_events(con, [record_event])
    for root, info in zip(drives, infos, strict=True):
        driveformat.append_custody(
            root, {**entry, "drive_id": info.drive_id, "event_id": uuid.uuid4().hex}
        )
    return entry


def log_verify(catalog: Catalog, result) -> None:
    """One `verified` event per checked drive, with the figures dashboards read.

    A drive this catalog has not seen is recorded first (its shipment, and the
    sending site's custody log read off it), so a verify on arrival starts the
    receiving site's history of the shipment. All of it in one transaction.
    """
    from sneakernet.transfer.registration import remember_drive_in

    checked = [drive for drive in result.drives if drive.shipment_id is not None]
    readable = []
    for drive in checked:
        if drive.error is None:
            info = driveformat.read_drive(Path(drive.root))
            seal = drive.seal if drive.seal_ok else None
            readable.append((Path(drive.root), driveformat.DriveInfo(info.root, info.doc, seal)))
    if not checked:
        return
    with catalog.write() as con:
        for root, info in readable:
            remember_drive_in(con, root, info)
        site = site_in(con)
        insert_events(con, [_verified_event(drive, result.fast, site) for drive in checked])


def _verified_event(drive, fast: bool, site: str) -> dict:
    details = {
        "outcome": "ok" if drive.whole else "problems",
        "files": drive.files,
        "bytes": drive.bytes,
        "seconds": round(drive.seconds, 3),
        "fast": fast,
        **drive.counts,
    }
    return new_event(
        drive.shipment_id, "verified", drive_id=drive.drive_id, site=site, details=details
    )


def list_shipments(catalog: Catalog) -> list[dict]:
    with catalog.read() as con:
        cursor = con.execute(
            "SELECT name, shipment_id, from_site, to_site, drives, files, bytes,"
            " created_at::VARCHAR AS created_at, state, updated_at::VARCHAR AS updated_at"
            " FROM api.shipments ORDER BY created_at"
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def shipment_history(catalog: Catalog, name: str) -> dict:
    from sneakernet.transfer.shipment import get_shipment

    record = get_shipment(catalog, name)
    with catalog.read() as con:
        drives = con.execute(
            "SELECT number, label, drive_id, files, bytes, seal, last_mount FROM drives"
            " WHERE shipment_id = ? ORDER BY number",
            [record.shipment_id],
        ).fetchall()
        events = con.execute(
            'SELECT e.happened_at::VARCHAR, e.event, d.number, e.site, e.host, e."user",'
            " e.note, e.details FROM events e LEFT JOIN drives d USING (drive_id)"
            " WHERE e.shipment_id = ? ORDER BY e.happened_at",
            [record.shipment_id],
        ).fetchall()
    drive_keys = ("number", "label", "drive_id", "files", "bytes", "seal", "last_mount")
    event_keys = ("at", "event", "drive", "site", "host", "user", "note", "details")
    return {
        "shipment": {
            "name": record.name,
            "shipment_id": record.shipment_id,
            "from_site": record.from_site,
            "to_site": record.to_site,
            "drives": record.drives,
            "files": record.files,
            "bytes": record.bytes,
            "created_at": record.created_at,
            "state": events[-1][1] if events else None,
        },
        "drives": [dict(zip(drive_keys, row, strict=True)) for row in drives],
        "events": [
            {
                **dict(zip(event_keys, row, strict=True)),
                "details": json.loads(row[7]) if row[7] else None,
            }
            for row in events
        ],
    }


# --- a drive's history, for the receiving service --------------------------------------


def drive_events(catalog: Catalog, drive_id: str) -> list[dict]:
    """The catalog's events of one drive, oldest first, in the form `new_event` makes.

    The receiving service reads them to decide whether a drive is done, and copies
    events that other verbs logged only in the catalog onto the drive with the same
    event_id, so reading the drive back later adds no duplicates.
    """
    with catalog.read() as con:
        rows = con.execute(
            "SELECT event_id, shipment_id, drive_id, event, epoch_ms(happened_at), site, host,"
            ' "user", note, details FROM events WHERE drive_id = ?'
            " ORDER BY happened_at, event_id",
            [drive_id],
        ).fetchall()
    keys = ("event_id", "shipment_id", "drive_id", "event", "at", "site", "host", "user", "note")
    events = []
    for row in rows:
        event = dict(zip(keys, row[:9], strict=True))
        event["at"] = datetime.fromtimestamp(row[4] / 1000, UTC).isoformat(timespec="milliseconds")
        event["details"] = json.loads(row[9]) if row[9] else None
        events.append(event)
    return events
