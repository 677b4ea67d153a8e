"""The drive format's Parquet files: their exact columns, their writer, their checked reader.

Part of the drive format (with driveformat.py, which holds drive.json, the
seal and the custody log); the columns are the contract in
schemas/drive-v1-columns.json. Every row read off a drive is checked here:
paths are plain relative paths, rows belong to the versions drive.json
declares, carried copies sit at <dataset>/<version>/<path>.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sneakernet.catalog import durable
from sneakernet.catalog.db import sql_path
from sneakernet.catalog.errors import SneakernetError
from sneakernet.catalog.refs import check_dataset_name
from sneakernet.transfer.driveformat import (
    DRIVE_FILE,
    FORMAT_VERSION,
    INDEX_FILE,
    MANIFEST_FILE,
    MEDIA_FILE,
    DriveInfo,
    schema_doc,
)
from sneakernet.transfer.errors import DriveError
from sneakernet.transfer.fsio import unsafe_relative_path

_AUDIO = pa.list_(
    pa.struct(
        [
            ("stream", pa.int32()),
            ("codec", pa.string()),
            ("channels", pa.int32()),
            ("sample_rate", pa.int32()),
        ]
    )
)
_TYPES = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "list<struct<stream: int32, codec: string, channels: int32, sample_rate: int32>>": _AUDIO,
}


@cache
def arrow_schema(file: str) -> pa.Schema:
    """The exact Arrow schema of one of the drive's Parquet files."""
    columns = schema_doc("drive-v1-columns.json")["files"][file]["columns"]
    return pa.schema([(name, _TYPES[kind]) for name, kind, _ in columns])




class ManifestWriter:
    """Writes one of the drive's Parquet files with its exact contract schema, atomically."""

    def __init__(self, root: Path, name: str):
        self.path = root / name
        self.schema = arrow_schema(name)
        self._tmp = self.path.with_name(self.path.name + ".sneakernet-tmp")
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        table = table.select(self.schema.names)
        if not table.schema.equals(self.schema):  # cast only when needed: it loads
            table = table.cast(self.schema)  # pyarrow.compute, ~80 ms of a fresh process
        self._writer.write_table(table)

    def abort(self) -> None:
        self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def close(self) -> None:
        self._writer.close()
        durable.fsync_path(self._tmp)
        durable.rename_durably(self._tmp, self.path)


def read_manifest(
    root: Path,
    name: str,
    batch_rows: int = 65536,
    versions: frozenset[tuple[str, int]] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream one of the drive's Parquet files, checking its schema and every row's paths.

    With `versions` (those drive.json declares), every row must belong to one of them.
    """
    path = root / name
    if path.is_symlink() or not path.is_file():
        if os.path.lexists(path):  # a link or special file: never followed, never opened
            raise DriveError(f"{name} is not a regular file", path=str(path))
        raise DriveError(f"the drive has no {name}", path=str(root))
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DriveError(f"{name} is not a readable Parquet file ({exc})", path=str(path)) from exc
    expected = arrow_schema(name)
    if not parquet.schema_arrow.equals(expected):
        raise DriveError(
            f"{name} does not have the columns of drive format {FORMAT_VERSION}",
            path=str(path),
            hint="the drive was written by another tool or edited",
        )
    try:
        for batch in parquet.iter_batches(batch_size=batch_rows):
            _check_paths(batch, path)
            if versions is not None and "dataset" in batch.schema.names:
                _check_versions(batch, path, versions)
            yield batch
    except (OSError, pa.ArrowException) as exc:
        raise DriveError(f"{name} is damaged ({exc})", path=str(path)) from exc


def _check_versions(
    batch: pa.RecordBatch, where: Path, versions: frozenset[tuple[str, int]]
) -> None:
    pairs = zip(batch.column("dataset").to_pylist(), batch.column("version").to_pylist(),
                strict=True)
    for pair in set(pairs):
        if pair not in versions:
            raise DriveError(
                f"hostile manifest: rows of {str(pair[0])[:100]!r} version {pair[1]} which "
                "drive.json does not declare",
                path=str(where),
            )


def declared_versions(info: DriveInfo) -> frozenset[tuple[str, int]]:
    """The (dataset, version) pairs drive.json declares, each name checked."""
    declared = set()
    for version in info.doc["versions"]:
        try:
            check_dataset_name(version["dataset"])
        except SneakernetError as exc:
            raise DriveError(
                f"hostile drive: bad dataset name {version['dataset'][:100]!r}",
                path=str(info.root / DRIVE_FILE),
            ) from exc
        declared.add((version["dataset"], version["version"]))
    return frozenset(declared)


def export_drive(info: DriveInfo, work: Path) -> dict[str, Path]:
    """Check all of the drive's Parquet files, row by row, and copy them to `work`.

    verify and ingest both start here, so one accepts exactly what the other does.
    """
    versions = declared_versions(info)
    out = {}
    for name in (INDEX_FILE, MANIFEST_FILE, MEDIA_FILE):
        out[name] = work / Path(name).name
        with pq.ParquetWriter(out[name], arrow_schema(name)) as writer:
            for batch in read_manifest(info.root, name, versions=versions):
                if name == INDEX_FILE:
                    _check_drive_numbers(batch, info)
                writer.write_batch(batch)
    _check_unique(info, out, work)
    return out


# What names one row: listed twice, a path would be placed once yet registered twice
# (once with a hash its bytes were never checked against).
_KEYS = {INDEX_FILE: "dataset, version, path", MANIFEST_FILE: "drive_path"}


def _check_unique(info: DriveInfo, out: dict[str, Path], work: Path) -> None:
    con = duckdb.connect(config={"memory_limit": "128MB", "temp_directory": str(work)})
    try:
        for name, key in _KEYS.items():
            row = con.execute(
                f"SELECT {key} FROM read_parquet({sql_path(out[name])})"
                " GROUP BY ALL HAVING count(*) > 1 LIMIT 1"
            ).fetchone()
            if row:
                twice = "/".join(str(part) for part in row)
                raise DriveError(
                    f"hostile manifest: {twice[:200]!r} is listed twice",
                    path=str(info.root / name),
                )
    finally:
        con.close()


def _check_drive_numbers(batch: pa.RecordBatch, info: DriveInfo) -> None:
    numbers = {n for n in batch.column("drive_number").to_pylist() if n is not None}
    if any(not 1 <= n <= info.of for n in numbers):
        raise DriveError(
            f"hostile manifest: a drive number outside 1..{info.of}", path=str(info.root)
        )
    rows = zip(batch.column("carried").to_pylist(), batch.column("drive_path").to_pylist(),
               batch.column("dataset").to_pylist(), batch.column("version").to_pylist(),
               batch.column("path").to_pylist(), strict=True)
    for carried, drive_path, dataset, version, path in rows:
        if carried and drive_path != f"{dataset}/{version}/{path}":
            raise DriveError(
                f"hostile manifest: carried copy {str(drive_path)[:200]!r} is not "
                "<dataset>/<version>/<path>",
                path=str(info.root / INDEX_FILE),
            )


def _check_paths(batch: pa.RecordBatch, where: Path) -> None:
    names = batch.schema.names
    for column in ("drive_path", "path"):
        if column not in names:
            continue
        for value in batch.column(column).to_pylist():
            if value is None:
                continue
            why = unsafe_relative_path(value)
            if why:
                raise DriveError(
                    f"hostile manifest: {why} ({value[:200]!r})",
                    path=str(where),
                    hint="this drive is refused; nothing was written",
                )
    if "drive_path" in names and "dataset" in names and "carried" not in names:
        _check_layout(batch, where)


def _check_layout(batch: pa.RecordBatch, where: Path) -> None:
    rows = zip(
        batch.column("drive_path").to_pylist(),
        batch.column("dataset").to_pylist(),
        batch.column("version").to_pylist(),
        batch.column("path").to_pylist(),
        strict=True,
    )
    for drive_path, dataset, version, path in rows:
        if drive_path != f"{dataset}/{version}/{path}":
            raise DriveError(
                f"hostile manifest: {drive_path[:200]!r} is not <dataset>/<version>/<path>",
                path=str(where),
            )
