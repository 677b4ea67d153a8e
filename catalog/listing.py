"""`ls`, `find` and `export`: the files of a version, and where content lives."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from sneakernet.catalog import durable
from sneakernet.catalog.db import Catalog, sql_path
from sneakernet.catalog.errors import NotFoundError, SourceError
from sneakernet.catalog.hashing import ChangedWhileReading, NotRegularFile, hash_file
from sneakernet.catalog.refs import VersionRef, parse_ref, resolve

_HEX = re.compile(r"[0-9a-fA-F]{32}")
LS_FETCH = 10_000


@dataclass(frozen=True, slots=True)
class FileRow:
    path: str
    kind: str
    size: int
    mtime_ns: int
    hash: str | None
    status: str
    codec: str | None
    width: int | None
    height: int | None
    fps: float | None
    duration: float | None
    broken: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Holder:
    dataset: str
    version: int
    path: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class FindResult:
    hash: str
    holders: list[Holder]

    def to_dict(self) -> dict:
        return {"hash": self.hash, "holders": [h.to_dict() for h in self.holders]}


def ls(catalog: Catalog, ref: VersionRef | str, pattern: str | None = None) -> Iterator[FileRow]:
    """Stream the entries of a version, optionally only those matching a glob."""
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    with catalog.read() as con:
        version = resolve(con, ref)
        sql = (
            "SELECT path, kind, size, mtime_ns, hash, status, codec, width, height, fps,"
            " duration, broken FROM api.files WHERE dataset = ? AND version = ?"
        )
        params: list = [ref.dataset, version]
        if pattern:
            sql += " AND path GLOB ?"
            params.append(pattern)
        cursor = con.execute(sql + " ORDER BY path", params)
        while rows := cursor.fetchmany(LS_FETCH):
            for row in rows:
                yield FileRow(*row)


def find(catalog: Catalog, what: str) -> FindResult:
    """Every dataset version holding the content named by a hash or a local file."""
    digest = _content_hash(what)
    with catalog.read() as con:
        rows = con.execute(
            "SELECT dataset, version, path FROM entries WHERE hash = ?"
            " ORDER BY dataset, version, path",
            [digest],
        ).fetchall()
    return FindResult(digest, [Holder(*row) for row in rows])


def _content_hash(what: str) -> str:
    if _HEX.fullmatch(what) and not os.path.exists(what):
        return what.lower()
    path = Path(what)
    if not path.exists():
        raise NotFoundError(
            "neither a 32-digit content hash nor an existing file",
            path=what,
            hint="give an XXH3-128 hash (as `xxhsum -H2` prints) or a file to look for",
        )
    if not path.is_file():
        raise SourceError("not a regular file", path=what, hint="find looks up one file's content")
    try:
        return hash_file(str(path.resolve())).hash
    except OSError as exc:
        raise SourceError(f"cannot read file ({exc.strerror})", path=what) from exc
    except ChangedWhileReading as exc:  # being written, or a /proc-like file (size 0, bytes)
        raise SourceError("the file changed while it was read", path=what,
                          hint="look it up again once it is no longer being written") from exc
    except NotRegularFile as exc:  # swapped for something else since the check above
        raise SourceError("not a regular file", path=what,
                          hint="find looks up one file's content") from exc


def export(catalog: Catalog, ref: VersionRef | str, out: Path | str) -> int:
    """Write a version's full manifest (files joined with media) to a Parquet file.

    Atomic: the file appears whole under its name or not at all; an existing file
    there is replaced only by a finished export.
    """
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    out = Path(out)
    _check_export_target(catalog, out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with catalog.read() as con:
            version = resolve(con, ref)
            with _writing(out):
                # COPY takes no bound parameters; the dataset name is checked by parse_ref.
                con.execute(
                    "COPY (SELECT * FROM api.files"
                    f" WHERE dataset = '{ref.dataset}' AND version = {int(version)}"
                    f" ORDER BY path) TO {sql_path(tmp)} (FORMAT parquet, COMPRESSION zstd)"
                )
            count = con.execute(
                "SELECT count(*) FROM entries WHERE dataset = ? AND version = ?",
                [ref.dataset, version],
            ).fetchone()[0]
        with _writing(out):
            durable.fsync_path(tmp)
            durable.rename_durably(tmp, out)
    finally:
        with suppress(FileNotFoundError):
            tmp.unlink()  # gone after the rename; left by a failure otherwise
    return int(count)


@contextmanager
def _writing(out: Path) -> Iterator[None]:
    """A failed write of the export (a full disk, a read-only folder) as one clear line."""
    try:
        yield
    except (duckdb.IOException, duckdb.PermissionException, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
        raise SourceError(f"cannot write the export ({reason})", path=str(out),
                          hint="check the folder's free space and permissions") from exc


def _check_export_target(catalog: Catalog, out: Path) -> None:
    if out.exists() and not out.is_file():
        raise SourceError("export target exists and is not a file", path=str(out))
    if not out.parent.is_dir():
        raise SourceError("the export's folder does not exist", path=str(out.parent),
                          hint="create the folder first")
    for kept in (catalog.path, Path(f"{catalog.path}.wal")):
        # Replacing the catalog with its own export would drop every other version.
        if out.exists() and kept.exists() and os.path.samefile(out, kept):
            raise SourceError("export target is the catalog itself", path=str(out),
                              hint="write the export to a new .parquet file")
