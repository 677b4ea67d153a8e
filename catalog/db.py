"""The DuckDB catalog: where it lives, how it is opened, its schema.

DuckDB lets one process write a database file, or several read it, never
both at once. So a connection here is held only for one short piece of work
and closed again: a long scan opens the catalog for a moment every so often,
and a `stats` in another terminal waits at most that moment. Opening retries
while another process holds the lock.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path

import duckdb

from sneakernet.catalog.errors import CatalogBusyError, CatalogFormatError, SneakernetError

SCHEMA_VERSION = 2
# File i upgrades a catalog from version i to i + 1.
SCHEMA_FILES = ("catalog.sql", "catalog_v2.sql")
DEFAULT_TIMEOUT = 60.0
MEMORY_LIMIT = "384MB"

_LOCK_MESSAGE = re.compile(r"Could not set lock|Conflicting lock", re.IGNORECASE)
_PID = re.compile(r"PID (\d+)")


def sql_path(path: Path | str) -> str:
    """A file path as a quoted SQL literal, for the statements (COPY, read_parquet
    in COPY) that take no bound parameters."""
    return "'" + str(path).replace("'", "''") + "'"


def default_catalog_path() -> Path:
    """`$SNEAKERNET_CATALOG`, else `$XDG_DATA_HOME/sneakernet/catalog.duckdb`."""
    explicit = os.environ.get("SNEAKERNET_CATALOG")
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "sneakernet" / "catalog.duckdb"


def schema_statements(filename: str) -> list[str]:
    text = resources.files("sneakernet.schemas").joinpath(filename).read_text("utf-8")
    return [part.strip() for part in text.split(";;") if _has_sql(part)]


def _has_sql(part: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in part.splitlines())


class Catalog:
    """A handle on one catalog file. Cheap to create; opens nothing until used."""

    def __init__(self, path: Path | str | None = None, *, timeout: float = DEFAULT_TIMEOUT):
        self.path = Path(path).expanduser() if path is not None else default_catalog_path()
        self.timeout = timeout

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection inside one transaction, committed on success."""
        con = self._connect(read_only=False)
        try:
            con.execute("BEGIN TRANSACTION")
            yield con
            con.execute("COMMIT")
        except BaseException:
            _rollback_quietly(con)
            raise
        finally:
            con.close()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection; several processes may read at once.

        A missing catalog is created, an older one upgraded, first: both need
        the write lock, so they cost a second open only when they happen.
        """
        try:
            con = self._connect(read_only=True)
        except _NeedsUpgrade:
            self.ensure_schema()
            con = self._connect(read_only=True)
        try:
            yield con
        finally:
            con.close()

    def ensure_schema(self) -> None:
        """Create the catalog, or upgrade an older one, before first use."""
        self._connect(read_only=False).close()

    def create_if_missing(self) -> None:
        """Bring a new catalog file into being whole, or not at all.

        Two processes meeting a missing catalog at once (a watcher and a scan,
        two receive services) would otherwise both create it, and one reads
        the other's half-written file ("not a valid DuckDB database file").
        So it is built under a private name and hard-linked into place: the
        first link wins, a later one finds the file there and drops its own.
        """
        _check_path_text(self.path)
        if self.path.exists():
            return
        fresh = self.path.with_name(f".{self.path.name}.new-{os.getpid()}-{threading.get_ident()}")
        try:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                con = duckdb.connect(str(fresh), config=_config())
            except (OSError, duckdb.Error) as exc:  # a read-only folder, a file as a folder
                raise CatalogFormatError(
                    f"cannot create the catalog ({_first_line(exc)})",
                    path=str(self.path),
                    hint="check the folder's permissions, or point --catalog elsewhere",
                ) from exc
            try:
                _check_or_migrate(con, fresh, read_only=False)
            finally:
                con.close()
            _link_into_place(fresh, self.path)
        finally:
            for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
                with suppress(FileNotFoundError, NotADirectoryError):
                    leftover.unlink()

    def _connect(self, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        self.create_if_missing()
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only, config=_config())
                break
            except duckdb.IOException as exc:
                if not _LOCK_MESSAGE.search(str(exc)):
                    raise _open_error(self.path, exc) from exc
                if time.monotonic() >= deadline:
                    raise _busy_error(self.path, exc, self.timeout) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            except duckdb.Error as exc:
                raise _open_error(self.path, exc) from exc
        try:
            _check_or_migrate(con, self.path, read_only=read_only)
        except BaseException:
            con.close()
            raise
        return con


def _check_path_text(path: Path) -> None:
    """DuckDB takes file names as UTF-8 text: other bytes failed as `std::bad_cast`."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise CatalogFormatError(
            "the catalog's path is not valid UTF-8",
            path=os.fsencode(path).decode("utf-8", "backslashreplace"),
            hint="point --catalog at a path whose names are UTF-8 text",
        ) from None


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _link_into_place(fresh: Path, path: Path) -> None:
    try:
        os.link(fresh, path)
    except FileExistsError:
        pass  # another process created it first; theirs is as good as ours
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
        # A file system without hard links: a rename that will not replace is
        # the best left; the window between the check and the rename is tiny.
        if not path.exists():
            os.rename(fresh, path)


def _config() -> dict[str, str | bool]:
    # No extension is fetched or loaded behind our back: a catalog is a plain DuckDB file.
    return {
        "memory_limit": MEMORY_LIMIT,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }


def _check_or_migrate(con: duckdb.DuckDBPyConnection, path: Path, *, read_only: bool) -> None:
    found = _schema_version(con, path)
    if found == SCHEMA_VERSION:
        return
    if found > SCHEMA_VERSION:
        raise CatalogFormatError(
            f"catalog schema version {found} is newer than this sneakernet understands "
            f"({SCHEMA_VERSION})",
            path=str(path),
            hint="upgrade sneakernet, or point --catalog at another file",
        )
    if read_only:
        # Upgrading needs the write lock; a reader must not silently skip it.
        raise _NeedsUpgrade(
            f"catalog schema version {found} needs an upgrade to {SCHEMA_VERSION}",
            path=str(path),
            hint="run any sneakernet command that writes (e.g. scan) to upgrade it",
        )
    _migrate(con, found)


def _schema_version(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    try:  # the common case, answered without listing tables
        rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        row = rows[0] if rows else None  # fetchall: DuckDB 2 refuses work beside an open result
    except duckdb.CatalogException:
        row = None
    if row is not None and str(row[0]).isdigit():
        return int(row[0])
    tables = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "meta" not in tables:
        if tables:
            raise CatalogFormatError(
                "not a sneakernet catalog (a DuckDB file with other tables)",
                path=str(path),
                hint="point --catalog at a new or existing sneakernet catalog file",
            )
        return 0
    rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    row = rows[0] if rows else None
    if row is None or not str(row[0]).isdigit():
        raise CatalogFormatError("catalog has no valid schema_version", path=str(path))
    return int(row[0])


class _NeedsUpgrade(CatalogFormatError):
    """An older schema met by a read-only connection; Catalog.read upgrades and retries."""


def _migrate(con: duckdb.DuckDBPyConnection, found: int) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        for step in range(found, SCHEMA_VERSION):
            for statement in schema_statements(SCHEMA_FILES[step]):
                con.execute(statement)
        con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
        )
        con.execute("COMMIT")
    except BaseException:
        _rollback_quietly(con)
        raise


def _rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    with suppress(duckdb.Error):
        con.execute("ROLLBACK")


def _busy_error(path: Path, exc: Exception, timeout: float) -> CatalogBusyError:
    match = _PID.search(str(exc))
    holder = f" (held by process {match.group(1)})" if match else ""
    return CatalogBusyError(
        f"catalog stayed locked for {timeout:.0f} s{holder}",
        path=str(path),
        hint="wait for the other sneakernet command to finish, or raise --timeout",
    )


def _open_error(path: Path, exc: Exception) -> SneakernetError:
    return CatalogFormatError(
        f"cannot open catalog ({exc.__class__.__name__}: {str(exc).splitlines()[0]})",
        path=str(path),
        hint="check the path; a corrupt catalog can be rebuilt by scanning the datasets again",
    )
