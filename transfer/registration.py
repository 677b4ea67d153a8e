"""What the receiving catalog learns from a drive: the shipment, its history, its versions.

A version is registered with the version number it has at the sending site,
its entries as they were scanned there (so stats and diff answer the same),
its media metadata, and its provenance (shipment and site), once all its
files are in the store.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sneakernet.catalog.db import Catalog, sql_path
from sneakernet.catalog.versions import ENTRY_SCHEMA, commit_entries, same_entries
from sneakernet.transfer import custody
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer.shipment import find_shipment


def remember_drive(
    catalog: Catalog, root: Path, info: fmt.DriveInfo, index: Path | None = None
) -> None:
    """Record the drive's shipment, the drive, its custody log and (given the shipment
    index) which drive carries which content."""
    with catalog.write() as con:
        remember_drive_in(con, root, info, index)


def remember_drive_in(
    con: duckdb.DuckDBPyConnection, root: Path, info: fmt.DriveInfo, index: Path | None = None
) -> None:
    """`remember_drive` inside the caller's transaction."""
    shipment = info.doc["shipment"]
    if find_shipment(con, info.shipment_id) is None:
        con.execute(
            "INSERT INTO shipments VALUES (?, ?, ?, ?, ?, ?, ?, ?::TIMESTAMPTZ)",
            [
                info.shipment_id,
                shipment["name"],
                shipment["from_site"],
                shipment["to_site"],
                info.of,
                shipment["files"],
                shipment["bytes"],
                shipment["created_at"],
            ],
        )
        con.executemany(
            "INSERT INTO shipment_versions VALUES (?, ?, ?)",
            [[info.shipment_id, v["dataset"], v["version"]] for v in info.doc["versions"]],
        )
    known = con.execute(
        "SELECT count(*) FROM shipment_entries WHERE shipment_id = ?", [info.shipment_id]
    ).fetchall()[0][0]
    if index is not None and not known:
        con.execute(
            f"INSERT INTO shipment_entries SELECT ?, dataset, version, path, hash, size,"
            f" drive_number, drive_path, carried FROM read_parquet({sql_path(index)})",
            [info.shipment_id],
        )
    con.execute(
        "INSERT OR IGNORE INTO drives VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
        [
            info.drive_id,
            info.shipment_id,
            info.number,
            info.label,
            info.doc["drive"]["files"],
            info.doc["drive"]["bytes"],
            str(root),
        ],
    )
    con.execute(
        "UPDATE drives SET last_mount = ?, seal = coalesce(?, seal) WHERE drive_id = ?",
        [str(root), info.seal, info.drive_id],
    )
    custody.insert_events(con, fmt.read_custody(root))


def register_complete_versions(
    catalog: Catalog, info: fmt.DriveInfo, store: Path, work: Path, blocked: set[str]
) -> tuple[list[str], list[dict]]:
    """Register every version of the shipment whose files are all, and rightly, in the store.

    `blocked` names versions (dataset@version) with a clash or a corrupt file.
    """
    index = work / Path(fmt.INDEX_FILE).name  # as manifests.export_drive left them
    registered, waiting = [], []
    site = info.doc["shipment"]["from_site"]
    for version in info.doc["versions"]:
        dataset, number = version["dataset"], version["version"]
        name = f"{dataset}@{number}"
        entries = work / f"entries-{dataset}-{number}.parquet"
        if name in blocked:
            waiting.append(
                {
                    "version": name,
                    "missing_files": 0,
                    "problem": "a file of it is corrupt on the drive or clashes in the store",
                }
            )
            continue
        missing = _entries_in_store(index, dataset, number, store, entries)
        if missing:
            waiting.append({"version": name, "missing_files": missing})
            continue
        root = str(store / dataset / str(number))
        with catalog.write() as con:
            state = _known(con, dataset, number, entries)
            if state == "clash":
                clash = f"the catalog already has a different {name}"
                waiting.append({"version": name, "missing_files": 0, "clash": clash})
                continue
            fresh = con.execute(
                "INSERT OR IGNORE INTO version_copies VALUES (?, ?, ?, ?, now()) RETURNING 1",
                [dataset, number, root, info.shipment_id],
            ).fetchall()
            if state == "same":  # known here already: only the store copy is new, if any
                if fresh:
                    registered.append(name)
                continue
            commit_entries(
                con,
                dataset,
                entries,
                origin="ingest",
                root=root,
                version=number,
                only_if_changed=False,
            )
            con.execute(
                "UPDATE versions SET shipment_id = ?, source_site = ?"
                " WHERE dataset = ? AND version = ?",
                [info.shipment_id, site, dataset, number],
            )
            con.execute(
                f"INSERT OR IGNORE INTO media BY NAME SELECT * FROM read_parquet("
                f"{sql_path(work / Path(fmt.MEDIA_FILE).name)})"
            )
        registered.append(name)
    return registered, waiting


def _known(con: duckdb.DuckDBPyConnection, dataset: str, number: int, entries: Path) -> str:
    """'new', 'same' (the catalog has this version with these very files) or 'clash'."""
    row = con.execute(
        "SELECT 1 FROM versions WHERE dataset = ? AND version = ?", [dataset, number]
    ).fetchall()
    if not row:
        return "new"
    return "same" if same_entries(con, dataset, number, entries) else "clash"


def _entries_in_store(index: Path, dataset: str, number: int, store: Path, out: Path) -> int:
    """Write the version's entries (with store inodes) to `out`; how many files are missing."""
    con = duckdb.connect(config={"memory_limit": "128MB"})
    missing = 0
    try:
        cursor = con.execute(
            f"SELECT path, kind, size, mtime_ns, mode, hash, link_target, is_video, status, error"
            f" FROM read_parquet({sql_path(index)}) WHERE dataset = ? AND version = ?"
            f" ORDER BY path",
            [dataset, number],
        )
        base = store / dataset / str(number)
        with pq.ParquetWriter(out, ENTRY_SCHEMA) as writer:
            while rows := cursor.fetchmany(8192):
                batch, gaps = _entry_rows(rows, str(base))
                missing += gaps
                writer.write_table(pa.Table.from_pydict(batch, schema=ENTRY_SCHEMA))
    finally:
        con.close()
    return missing


_NAMES = ("path", "kind", "size", "mtime_ns", "mode", "hash", "link_target", "is_video",
          "status", "error")


def _entry_rows(rows: list[tuple], base: str) -> tuple[dict[str, list], int]:
    """The rows as ENTRY_SCHEMA columns, with each file's store inode; how many are missing.

    Columns, not a dict per row: this runs once per file of every ingested version.
    """
    columns: dict[str, list] = {name: list(values) for name, values in
                                zip(_NAMES, zip(*rows, strict=True), strict=True)}
    inodes: list[int | None] = []
    devices: list[int | None] = []
    missing = 0
    lstat, is_reg = os.lstat, stat.S_ISREG
    for path, kind, size, digest in zip(columns["path"], columns["kind"], columns["size"],
                                        columns["hash"], strict=True):
        inode = device = None
        if kind == "file" and digest is not None:
            try:
                info = lstat(f"{base}/{path}")
            except OSError:
                info = None
            if info is None or not is_reg(info.st_mode) or info.st_size != size:
                missing += 1
            else:
                inode, device = info.st_ino, info.st_dev
        inodes.append(inode)
        devices.append(device)
    columns["raw_path"] = [None] * len(rows)
    columns["inode"], columns["device"] = inodes, devices
    return columns, missing
