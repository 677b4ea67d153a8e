"""Finishing a packed drive: its manifests, its plain manifest, its README and its seal.

Runs once every file of the shipment is on its drive. Each file is written
through a temporary name and renamed; the seal is written last, so a drive
with a seal is a drive whose metadata was completely written.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from sneakernet.catalog.durable import rename_durably
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer import drivemanifests as manifests
from sneakernet.transfer.fsio import atomic_write
from sneakernet.transfer.shipment import INDEX_SQL, ShipmentRecord

SEAL_MEMORY = "160MB"

_MANIFEST_SQL = """
SELECT se.drive_path, se.size, e.mtime_ns, se.hash, se.dataset, se.version, se.path,
       m.container, m.codec, m.width, m.height, m.fps, m.duration, m.frames
FROM shipment_entries se
JOIN entries e USING (dataset, version, path)
LEFT JOIN media m ON m.hash = se.hash AND e.is_video
WHERE se.shipment_id = ? AND se.carried AND se.drive_number = ?
ORDER BY se.drive_path"""

_MEDIA_SQL = """
SELECT * EXCLUDE (rn) FROM (
    SELECT m.*, row_number() OVER (PARTITION BY m.hash) AS rn FROM media m
    WHERE m.hash IN (SELECT hash FROM shipment_entries WHERE shipment_id = ?))
WHERE rn = 1"""

_VERSIONS_SQL = """
SELECT v.dataset, v.version, v.label, v.created_at::VARCHAR, v.files, v.bytes
FROM shipment_versions sv JOIN versions v USING (dataset, version)
WHERE sv.shipment_id = ? ORDER BY v.dataset, v.version"""


def shipment_versions(con: duckdb.DuckDBPyConnection, shipment_id: str) -> list[dict]:
    keys = ("dataset", "version", "label", "created_at", "files", "bytes")
    rows = con.execute(_VERSIONS_SQL, [shipment_id]).fetchall()
    return [dict(zip(keys, row, strict=True)) for row in rows]


def shipment_doc(record: ShipmentRecord, sealed_at: str | None) -> dict:
    return {
        "id": record.shipment_id,
        "name": record.name,
        "from_site": record.from_site,
        "to_site": record.to_site,
        "created_at": record.created_at,
        "sealed_at": sealed_at,
        "files": record.files,
        "bytes": record.bytes,
    }


def seal_drive(
    con: duckdb.DuckDBPyConnection,
    record: ShipmentRecord,
    root: Path,
    drive_id: str,
    number: int,
    label: str,
) -> str:
    """Write the finished metadata of drive `number` and seal it; returns the seal.

    `con` is a read connection to the catalog, shared by the drives of one pack
    (each new connection costs tens of milliseconds).
    """
    # The index of a million-file shipment is sorted in the catalog's memory,
    # which comes on top of a process that already holds Arrow and DuckDB:
    # a smaller budget (DuckDB spills the rest) keeps the peak flat.
    con.execute(f"SET memory_limit = '{SEAL_MEMORY}'")
    _write_parquet(con, root, fmt.INDEX_FILE, INDEX_SQL, [record.shipment_id])
    files, size, unlisted = _write_manifests(con, root, record.shipment_id, number)
    _write_parquet(con, root, fmt.MEDIA_FILE, _MEDIA_SQL, [record.shipment_id])
    versions = shipment_versions(con, record.shipment_id)
    doc = fmt.new_drive_doc(
        drive_id=drive_id,
        label=label,
        number=number,
        of=record.drives,
        shipment=shipment_doc(record, fmt.now_iso()),
        versions=versions,
        files=files,
        size=size,
        state="sealed",
    )
    atomic_write(root / fmt.README_FILE, fmt.readme_text(doc, unlisted).encode())
    fmt.write_drive_doc(root, doc)
    return fmt.write_seal(root)


def _write_parquet(
    con: duckdb.DuckDBPyConnection, root: Path, name: str, sql: str, params: list
) -> None:
    writer = manifests.ManifestWriter(root, name)
    try:
        for batch in con.cursor().sql(sql, params=params).to_arrow_reader(65536):
            writer.write(batch)
    except BaseException:
        writer.abort()
        raise
    writer.close()


def _write_manifests(
    con: duckdb.DuckDBPyConnection, root: Path, shipment_id: str, number: int
) -> tuple[int, int, int]:
    """manifest.parquet and MANIFEST.xxh128 in one pass; (files, bytes, names xxhsum can't take)."""
    writer = manifests.ManifestWriter(root, fmt.MANIFEST_FILE)
    files = size = unlisted = 0
    lines: list[str] = []
    plain_tmp = root / (fmt.PLAIN_MANIFEST + ".sneakernet-tmp")
    with open(plain_tmp, "w", encoding="utf-8", newline="\n") as plain:
        for batch in (
            con.cursor().sql(_MANIFEST_SQL, params=[shipment_id, number]).to_arrow_reader(65536)
        ):
            writer.write(batch)
            paths = batch.column("drive_path").to_pylist()
            digests = batch.column("hash").to_pylist()
            for sizes in batch.column("size").to_pylist():
                size += sizes
            files += len(paths)
            for digest, path in zip(digests, paths, strict=True):
                line = fmt.plain_manifest_line(digest, path)
                if line is None:
                    unlisted += 1
                else:
                    lines.append(line)
            plain.write("".join(lines))
            lines.clear()
        plain.flush()
        os.fsync(plain.fileno())
    writer.close()
    rename_durably(plain_tmp, root / fmt.PLAIN_MANIFEST)
    return files, size, unlisted
