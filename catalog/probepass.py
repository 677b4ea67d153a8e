"""The probe phase of a scan: video metadata for content the catalog has not seen.

Media rows are keyed by content hash, so a clip copied into three datasets
is probed once, and a rescan probes only new content.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sneakernet.catalog.db import Catalog, sql_path
from sneakernet.catalog.media import PROBE_VERSION, MediaInfo
from sneakernet.catalog.progress import ProgressEvent, ProgressFn, report
from sneakernet.catalog.walk import Problem

FLUSH_SECONDS = 2.0
_AUDIO_TYPE = pa.list_(
    pa.struct(
        [
            ("stream", pa.int32()),
            ("codec", pa.string()),
            ("channels", pa.int32()),
            ("sample_rate", pa.int32()),
        ]
    )
)
MEDIA_FIELDS = (
    ("ok", pa.bool_()),
    ("error", pa.string()),
    ("container", pa.string()),
    ("codec", pa.string()),
    ("profile", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("pix_fmt", pa.string()),
    ("bit_depth", pa.int32()),
    ("fps", pa.float64()),
    ("vfr", pa.bool_()),
    ("duration", pa.float64()),
    ("frames", pa.int64()),
    ("bit_rate", pa.int64()),
    ("rotation", pa.int32()),
    ("creation_time", pa.string()),
)
MEDIA_SCHEMA = pa.schema(
    [("hash", pa.string()), ("probe_version", pa.int32()), *MEDIA_FIELDS, ("audio", _AUDIO_TYPE)]
)


def list_unprobed(con: duckdb.DuckDBPyConnection, entries_file: Path, todo_file: Path) -> int:
    """Write one path per video content hash lacking current media metadata."""
    # One whole row per hash (DISTINCT ON): the path and the identity it was hashed with
    # must be the same file's.
    con.execute(
        "COPY (SELECT DISTINCT ON (hash) hash, path, raw_path, size, mtime_ns, inode, device"
        f" FROM read_parquet({sql_path(entries_file)}) e"
        " WHERE e.kind = 'file' AND e.status = 'ok' AND e.is_video"
        " AND NOT EXISTS (SELECT 1 FROM media m WHERE m.hash = e.hash"
        f" AND m.probe_version = {PROBE_VERSION}) ORDER BY hash, path)"
        f" TO {sql_path(todo_file)} (FORMAT parquet)"
    )
    return pq.ParquetFile(todo_file).metadata.num_rows


def probe_all(
    catalog: Catalog,
    root: Path,
    todo_file: Path,
    *,
    total: int,
    workers: int,
    progress: ProgressFn | None,
) -> tuple[int, list[Problem]]:
    """Probe every file listed in `todo_file`; store results in short transactions.

    Returns the files probed and the problems: files that changed between their
    hashing and their probe, whose content gets no media row (the next scan reads
    them again).
    """
    # PyAV and its codecs take ~0.1 s to load: a scan with no new video never pays it.
    from sneakernet.catalog import probe as prober

    def probe_one(task: tuple[bytes, prober.Identity]) -> MediaInfo | str:
        try:
            return prober.probe(*task)
        except prober.NotTheHashedFile as exc:
            return str(exc)

    base = os.fsencode(root).rstrip(b"/")
    done = 0
    pending: list[tuple[str, MediaInfo]] = []
    problems: list[Problem] = []
    flushed = time.monotonic()
    with ThreadPoolExecutor(workers, thread_name_prefix="sneakernet-probe") as pool:
        try:
            for batch in pq.ParquetFile(todo_file).iter_batches(batch_size=256):
                cols = batch.to_pydict()
                identities = zip(cols["size"], cols["mtime_ns"], cols["inode"], cols["device"],
                                 strict=True)
                tasks = [
                    (base + b"/" + (raw if raw is not None else path.encode("utf-8")), identity)
                    for path, raw, identity in zip(
                        cols["path"], cols["raw_path"], identities, strict=True)
                ]
                for path, digest, info in zip(
                    cols["path"], cols["hash"], pool.map(probe_one, tasks), strict=True
                ):
                    if isinstance(info, str):
                        problems.append(Problem(path, "changing", f"{info}; video metadata "
                                                "not recorded, the next scan reads it again"))
                    else:
                        pending.append((digest, info))
                    done += 1
                    report(progress, ProgressEvent("probe", done, total))
                if time.monotonic() - flushed > FLUSH_SECONDS:
                    store_media(catalog, pending)
                    pending, flushed = [], time.monotonic()
        finally:
            store_media(catalog, pending)
    return done, problems


def store_media(catalog: Catalog, rows: list[tuple[str, MediaInfo]]) -> None:
    if not rows:
        return
    table = media_table(rows)
    with catalog.write() as con:
        con.register("fresh", table)
        con.execute("INSERT OR REPLACE INTO media BY NAME SELECT * FROM fresh")
        con.unregister("fresh")


def media_table(rows: list[tuple[str, MediaInfo]]) -> pa.Table:
    columns: dict[str, list] = {"hash": [], "probe_version": [], "audio": []}
    for name, _ in MEDIA_FIELDS:
        columns[name] = []
    for digest, info in rows:
        columns["hash"].append(digest)
        columns["probe_version"].append(PROBE_VERSION)
        for name, _ in MEDIA_FIELDS:
            columns[name].append(getattr(info, name))
        columns["audio"].append(
            [
                {
                    "stream": a.index,
                    "codec": a.codec,
                    "channels": a.channels,
                    "sample_rate": a.sample_rate,
                }
                for a in info.audio
            ]
        )
    return pa.Table.from_pydict(columns, schema=MEDIA_SCHEMA)


def broken_videos(con: duckdb.DuckDBPyConnection, entries_file: Path) -> list[Problem]:
    """Every file of this scan whose content probed as broken, with the reason."""
    rows = con.execute(
        f"SELECT e.path, m.error FROM read_parquet({sql_path(entries_file)}) e"
        " JOIN media m ON m.hash = e.hash WHERE e.is_video AND NOT m.ok ORDER BY e.path"
    ).fetchall()
    return [Problem(path, "broken-video", error or "broken") for path, error in rows]
