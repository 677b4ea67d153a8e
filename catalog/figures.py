"""Read-only figures for reports and dashboards that `stats` does not give.

Each helper takes an open connection (from `Catalog.read()`), so a report asks
all its questions of one consistent view, and returns small dataclasses: the
callers (`transfer.report`, `transfer.metrics`) shape them. Each row maps onto its
dataclass as DuckDB returns it (BIGINT and HUGEINT as int, DOUBLE as float). Every query
aggregates in DuckDB; nothing here brings a file list into Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb


@dataclass(frozen=True, slots=True)
class SizeBucket:
    power: int  # files of size in [2**power, 2**(power + 1)); -1 holds the empty files
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class VersionFigures:
    version: int
    label: str | None
    created_at: str
    files: int
    bytes: int
    video_hours: float


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    outcome: str  # 'broken' (video that does not decode), 'unreadable' or 'changing'
    detail: str | None


@dataclass(frozen=True, slots=True)
class DatasetFigures:
    dataset: str
    version: int
    files: int
    bytes: int
    video_hours: float
    versions: int


@dataclass(frozen=True, slots=True)
class VerifyFigures:
    shipment_id: str
    shipment: str | None  # the shipment's name, when the catalog knows the shipment
    drive_id: str
    drive_number: int | None
    happened_at: float  # seconds since the epoch
    details: str | None  # the event's JSON text, parsed by the caller


def size_buckets(con: duckdb.DuckDBPyConnection, dataset: str, version: int) -> list[SizeBucket]:
    """Regular files of a version counted per power-of-two size bucket, smallest first."""
    # floor(log2()) in floating point can round a size just below 2**k up to k;
    # the correction compares against the exact integer power.
    rows = con.execute(
        "SELECT CASE WHEN size > 0 AND size < (1::HUGEINT << greatest(p, 0)) THEN p - 1"
        " ELSE p END AS power,"
        " count(*), sum(size) FROM ("
        "  SELECT size, CASE WHEN size > 0 THEN floor(log2(size))::INTEGER ELSE -1 END AS p"
        "  FROM entries WHERE dataset = ? AND version = ? AND kind = 'file')"
        " GROUP BY power ORDER BY power",
        [dataset, version],
    ).fetchall()
    return [SizeBucket(*row) for row in rows]


def growth(con: duckdb.DuckDBPyConnection, dataset: str) -> list[VersionFigures]:
    """Files, bytes and video hours of every version of a dataset, oldest first."""
    rows = con.execute(
        "SELECT v.version, v.label, strftime(v.created_at, '%Y-%m-%dT%H:%M:%S%z'), v.files,"
        " v.bytes, coalesce(h.seconds, 0.0) / 3600.0"
        " FROM versions v LEFT JOIN ("
        "  SELECT e.version, sum(m.duration) FILTER (m.ok) AS seconds"
        "  FROM entries e JOIN media m ON m.hash = e.hash AND e.is_video"
        "  WHERE e.dataset = ? AND e.kind = 'file' GROUP BY e.version) h USING (version)"
        " WHERE v.dataset = ? ORDER BY v.version",
        [dataset, dataset],
    ).fetchall()
    return [VersionFigures(*row) for row in rows]


def problems(
    con: duckdb.DuckDBPyConnection, dataset: str, version: int, limit: int
) -> tuple[list[Problem], int]:
    """The first `limit` problem files of a version by path, and how many there are in all."""
    # One pass over the version: the window counts every problem before LIMIT keeps a few.
    rows = con.execute(
        "SELECT e.path,"
        " CASE WHEN e.status <> 'ok' THEN e.status ELSE 'broken' END AS outcome,"
        " CASE WHEN e.status <> 'ok' THEN e.error ELSE m.error END AS detail,"
        " count(*) OVER () AS total"
        " FROM entries e LEFT JOIN media m ON m.hash = e.hash AND e.is_video"
        " WHERE e.dataset = ? AND e.version = ? AND e.kind = 'file'"
        " AND (e.status <> 'ok' OR NOT m.ok)"
        " ORDER BY e.path LIMIT ?",
        [dataset, version, limit],
    ).fetchall()
    return [Problem(*row[:3]) for row in rows], int(rows[0][3]) if rows else 0


def latest_versions(con: duckdb.DuckDBPyConnection) -> list[DatasetFigures]:
    """Every dataset's latest version: files, bytes, video hours, and how many versions."""
    rows = con.execute(
        "WITH latest AS (SELECT dataset, max(version) AS version, count(*) AS versions"
        "  FROM versions GROUP BY dataset),"
        " hours AS (SELECT e.dataset, sum(m.duration) FILTER (m.ok) / 3600.0 AS h"
        "  FROM entries e JOIN latest l USING (dataset, version)"
        "  JOIN media m ON m.hash = e.hash AND e.is_video WHERE e.kind = 'file'"
        "  GROUP BY e.dataset)"
        " SELECT l.dataset, l.version, v.files, v.bytes, coalesce(hours.h, 0.0), l.versions"
        " FROM latest l JOIN versions v USING (dataset, version)"
        " LEFT JOIN hours USING (dataset) ORDER BY l.dataset"
    ).fetchall()
    return [DatasetFigures(*row) for row in rows]


def shipment_states(con: duckdb.DuckDBPyConnection) -> list[tuple[str | None, int]]:
    """How many shipments are in each state (the latest event; None before any event)."""
    rows = con.execute(
        "SELECT state, count(*) FROM api.shipments GROUP BY state ORDER BY state NULLS FIRST"
    ).fetchall()
    return [(state, int(n)) for state, n in rows]


def last_verifies(con: duckdb.DuckDBPyConnection) -> list[VerifyFigures]:
    """The latest 'verified' event of every drive, with its shipment's name when known."""
    rows = con.execute(
        "WITH last AS (SELECT drive_id, arg_max(event_id, happened_at) AS event_id"
        "  FROM events WHERE event = 'verified' AND drive_id IS NOT NULL GROUP BY drive_id)"
        " SELECT e.shipment_id, s.name, e.drive_id, d.number, epoch(e.happened_at), e.details"
        " FROM last JOIN events e USING (event_id)"
        " LEFT JOIN shipments s ON s.shipment_id = e.shipment_id"
        " LEFT JOIN drives d ON d.drive_id = e.drive_id"
        " ORDER BY s.name, e.shipment_id, d.number, e.drive_id"
    ).fetchall()
    return [VerifyFigures(*row) for row in rows]
