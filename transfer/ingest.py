"""`ingest`: copy verified drives into the site's store and register their versions.

Each file is hashed while it is copied off the drive and compared with the
manifest before it gets its name under STORE/<dataset>/<version>/. Content
the store already holds becomes a hard link. Nothing existing is replaced.
A version is registered in the catalog (with its media metadata and where it
came from) once every one of its files is in the store, so drives of one
shipment may arrive on different days.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from sneakernet.catalog.db import Catalog, sql_path
from sneakernet.catalog.errors import SourceError
from sneakernet.catalog.hashcache import store_cached_hashes
from sneakernet.catalog.progress import ProgressEvent, ProgressFn, report
from sneakernet.transfer import custody
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer import drivemanifests as manifests
from sneakernet.transfer.errors import DriveError
from sneakernet.transfer.packdrive import FileProblem
from sneakernet.transfer.placement import Placer, store_lock, store_unwritable
from sneakernet.transfer.registration import register_complete_versions, remember_drive

PROGRESS_SECONDS = 0.05
PROGRESS_BYTES = 1 << 20


@dataclass(slots=True)
class DriveIngest:
    root: str
    label: str = ""
    number: int = 0
    of: int = 0
    shipment: str = ""
    copied_files: int = 0
    copied_bytes: int = 0
    linked_files: int = 0
    present_files: int = 0
    reused_bytes: int = 0  # of copies an interrupted run left half-way, continued not redone
    waiting_files: int = 0  # their bytes are on another drive of the shipment
    seconds: float = 0.0
    problems: list[FileProblem] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__slots__ if k != "problems"}
        data["problems"] = [p.to_dict() for p in self.problems]
        return data


@dataclass(slots=True)
class IngestResult:
    store: str
    drives: list[DriveIngest] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)  # dataset@version now in the catalog
    waiting: list[dict] = field(default_factory=list)  # versions still missing files
    seconds: float = 0.0

    @property
    def problems(self) -> list[FileProblem]:
        return [p for d in self.drives for p in d.problems]

    def to_dict(self) -> dict:
        return {
            "store": self.store,
            "seconds": round(self.seconds, 3),
            "registered": self.registered,
            "waiting": self.waiting,
            "drives": [d.to_dict() for d in self.drives],
            "problems": [p.to_dict() for p in self.problems],
        }


def ingest(
    catalog: Catalog, drives: list[Path], store: Path, *, progress: ProgressFn | None = None
) -> IngestResult:
    started = time.monotonic()
    store = _check_store(store)
    result = IngestResult(str(store))
    infos = [_open_drive(root) for root in drives]
    for root, info in zip(drives, infos, strict=True):
        with tempfile.TemporaryDirectory(prefix="sneakernet-ingest-") as tmp:
            outcome = _ingest_drive(catalog, root, info, store, Path(tmp), progress)
            result.drives.append(outcome)
            blocked = {"@".join(p.path.split("/")[:2]) for p in outcome.problems}
            registered, waiting = register_complete_versions(
                catalog, info, store, Path(tmp), blocked
            )
            outcome.problems += _version_clashes(waiting)
        result.registered += [r for r in registered if r not in result.registered]
        result.waiting = waiting
        with catalog.write() as con:  # the site read in the same transaction, as verify does
            event = custody.new_event(
                info.shipment_id,
                "ingested",
                drive_id=info.drive_id,
                site=custody.site_in(con),
                details={
                    "files": outcome.copied_files + outcome.linked_files + outcome.present_files,
                    "bytes": outcome.copied_bytes,
                    "seconds": round(outcome.seconds, 3),
                    "problems": len(outcome.problems),
                    "store": str(store),
                },
            )
            custody.insert_events(con, [event])
    result.seconds = time.monotonic() - started
    return result


def _version_clashes(waiting: list[dict]) -> list[FileProblem]:
    """A version the catalog already holds with other files is a problem, not a wait:
    no later drive can register it (the receive service must not call the drive done)."""
    return [
        FileProblem(
            w["version"].replace("@", "/", 1),
            "clash",
            f"{w['clash']}; this shipment's files are in the store but the version is not "
            f"registered (compare them: sneakernet versions {w['version'].split('@')[0]})",
        )
        for w in waiting
        if "clash" in w
    ]


def _check_store(store: Path) -> Path:
    if not store.is_dir():
        raise SourceError(
            "the store is not a folder",
            path=str(store),
            hint="create it first (mkdir), or give the right --store",
        )
    real = Path(os.path.realpath(store))
    # Asked before any drive is read, and without writing (a refused drive leaves the
    # store as it was): may we write in the folder where our work folder is, or will be?
    work = real / fmt.PARTIAL_DIR
    folder = next(p for p in (work, work.parent, real) if p.is_dir())
    if not os.access(folder, os.W_OK | os.X_OK):
        raise store_unwritable(store, "no write permission, or a read-only mount")
    return real


def _open_drive(root: Path) -> fmt.DriveInfo:
    """A drive fit to ingest from: sealed, seal intact, names it carries well-formed."""
    info = fmt.read_drive(root)
    if not info.sealed:
        raise DriveError(
            "the drive was never sealed: its pack did not finish",
            path=str(root),
            hint="run the same `sneakernet pack` again at the sending site",
        )
    seal, broken = fmt.check_seal(root)
    if broken:
        raise DriveError(
            f"the drive's seal is broken: {broken[0]}",
            path=str(root),
            hint="the manifests were edited or damaged; nothing was ingested. "
            "Ask the sending site to re-pack this drive",
        )
    manifests.declared_versions(info)
    return fmt.DriveInfo(root, info.doc, seal)


def _ingest_drive(
    catalog: Catalog,
    root: Path,
    info: fmt.DriveInfo,
    store: Path,
    work: Path,
    progress: ProgressFn | None,
) -> DriveIngest:
    started = time.monotonic()
    outcome = DriveIngest(str(root), info.label, info.number, info.of, info.shipment_name)
    index = manifests.export_drive(info, work)[fmt.INDEX_FILE]
    remember_drive(catalog, root, info, index)
    con = duckdb.connect(str(work / "ingest.duckdb"), config={"memory_limit": "256MB"})
    try:
        _stage(con, catalog, index, store)
        _, bytes_total = con.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM todo WHERE drive_number = ?",
            [info.number],
        ).fetchall()[0]
        done = [0, 0]  # files, bytes
        shown = [0.0, 0]  # when progress was last reported, and at how many bytes

        def show() -> None:
            report(progress, ProgressEvent("ingest", done[0], None, done[1], int(bytes_total),
                                           label=info.label))

        def tick(n_bytes: int) -> None:
            # Called as bytes are read, mid-file too: a stop request (raised from
            # `progress`) need not wait for a 50 GB file to finish. Reported every
            # PROGRESS_SECONDS or PROGRESS_BYTES, whichever comes first: an event per
            # tiny file costs more than its copy, yet a stop lands within a MiB.
            done[1] += n_bytes
            if progress is None:
                return
            now = time.monotonic()
            if now - shown[0] >= PROGRESS_SECONDS or done[1] - shown[1] >= PROGRESS_BYTES:
                shown[0], shown[1] = now, done[1]
                show()

        with store_lock(store):
            placer = Placer(catalog, root, store, outcome, on_bytes=tick)
            try:
                for passes in ("carried", "others"):
                    cursor = con.cursor()
                    cursor.execute(_PASS_SQL[passes], [info.number])
                    while rows := cursor.fetchmany(2048):
                        for row in rows:
                            read = placer.place(row, own_drive=row[4] == info.number)
                            done[0] += 1
                            tick(read)
                show()
            finally:
                placer.flush()  # hashes of what is in the store, kept even when stopped
    finally:
        con.close()
        outcome.seconds = time.monotonic() - started
    return outcome


_PASS_SQL = {
    # The copies this drive carries first, so that duplicates can link to them.
    "carried": "SELECT dataset, version, path, hash, drive_number, drive_path, size, mtime_ns,"
    " store_copy FROM todo WHERE carried AND drive_number = ? ORDER BY drive_path",
    "others": "SELECT dataset, version, path, hash, drive_number, drive_path, size, mtime_ns,"
    " store_copy FROM todo WHERE NOT (carried AND drive_number = ?)"
    " ORDER BY dataset, version, path",
}


def _stage(con: duckdb.DuckDBPyConnection, catalog: Catalog, index: Path, store: Path) -> None:
    """The files to place, each with a copy the store may already hold (for a hard link)."""
    con.execute(
        f"CREATE TABLE idx AS SELECT * FROM read_parquet({sql_path(index)})"
        " WHERE kind = 'file' AND hash IS NOT NULL"
    )
    with catalog.read() as cat:
        cur = cat.cursor()  # registered tables and relations live on one connection
        cur.register("wanted", con.cursor().sql("SELECT DISTINCT hash FROM idx").to_arrow_table())
        known = cur.sql(
            """WITH stores AS (
                   SELECT dataset, version, root FROM versions WHERE origin = 'ingest'
                   UNION SELECT dataset, version, root FROM version_copies)
               SELECT DISTINCT ON (e.hash) e.hash, s.root || '/' || e.path AS store_copy
               FROM entries e JOIN stores s USING (dataset, version)
               JOIN wanted w ON w.hash = e.hash
               WHERE e.kind = 'file' AND e.status = 'ok'
                 AND (s.root = ? OR starts_with(s.root, ?))""",
            params=[str(store), str(store) + "/"],
        ).to_arrow_table()
    con.register("known", known)
    con.execute(
        "CREATE TABLE todo AS SELECT idx.*, known.store_copy FROM idx LEFT JOIN known USING (hash)"
    )


def is_regular(path: Path) -> os.stat_result | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


__all__ = ["DriveIngest", "IngestResult", "ingest", "is_regular", "store_cached_hashes"]
