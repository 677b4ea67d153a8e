"""`scan`: index a dataset folder into the catalog as a new version.

Phases: walk (stat everything), plan (ask the hash cache what is known),
hash (read the rest), probe (video metadata for new content), commit (one
transaction). Work in progress lives in a private temp folder as Parquet, so
memory stays flat and the catalog is only held for moments.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from sneakernet.catalog import (
    fstype,
    hashcache,
    hashpass,
    pidlock,
    probepass,
    rescan,
    session,
)
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import SneakernetError, SourceError, UsageError
from sneakernet.catalog.hashing import FileHash
from sneakernet.catalog.progress import ProgressEvent, ProgressFn, report
from sneakernet.catalog.refs import check_dataset_name, check_label
from sneakernet.catalog.versions import CommitResult, check_label_free, commit_entries
from sneakernet.catalog.walk import Problem, WalkResult, display_name, walk_to_parquet


@dataclass(slots=True)
class ScanResult:
    dataset: str
    root: str
    version: int | None  # the version recorded, or None when nothing changed
    previous: int | None
    files: int = 0
    symlinks: int = 0
    bytes: int = 0
    hashed_files: int = 0
    hashed_bytes: int = 0
    reused_files: int = 0
    probed_files: int = 0
    seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)
    reading: dict = field(default_factory=dict)  # the ReadProfile: file system, threads
    problems: list[Problem] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.version is not None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["changed"] = self.changed
        return data


class DatasetLockedError(SneakernetError):
    exit_code = 5


class ScanNoSpaceError(SneakernetError):
    exit_code = 9  # ExitStatus.NO_SPACE


def default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def scan(
    catalog: Catalog,
    root: Path | str,
    dataset: str,
    *,
    label: str | None = None,
    rehash: bool = False,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    reading: fstype.ReadProfile | None = None,
) -> ScanResult:
    """Scan `root` as `dataset`; record a version if anything changed.

    `reading` says how to read `root` (threads, serial small files); by default it
    follows `root`'s file system (fstype.read_profile).
    """
    check_dataset_name(dataset)
    if label is not None:
        check_label(label)  # a malformed label is refused before the catalog is touched
    if workers is not None and workers < 0:  # ThreadPoolExecutor's ValueError was a "bug"
        raise UsageError(f"cannot read with {workers} threads", hint="give --threads 1 or more")
    root = check_root(Path(root))
    profile = reading or fstype.read_profile(root, default_workers(), workers)
    with session.write(catalog) as con:  # a bad catalog or label fails now, not after the walk
        check_label_free(con, dataset, label)
    started = time.monotonic()
    result = ScanResult(dataset, os.fsdecode(root), None, None, reading=profile.to_dict())
    _remove_stale_work_folders()
    with (
        _no_space_said_clearly(catalog),
        _dataset_lock(catalog, dataset),
        tempfile.TemporaryDirectory(prefix=f"{_WORK_PREFIX}{os.getpid()}-") as tmp,
    ):
        work = Path(tmp)
        with _timed(result, "walk"):
            walked = _walk(catalog, root, work / "walk.parquet", progress, profile.walk_workers)
        result.files, result.symlinks, result.bytes = walked.files, walked.symlinks, walked.bytes
        result.problems.extend(walked.problems)
        with _timed(result, "plan"), session.write(catalog) as con:
            same = None if rehash else rescan.unchanged(
                con, dataset, work / "walk.parquet", walked=walked.files + walked.symlinks
            )
            if same is None:
                hashpass.plan(con, work / "walk.parquet", work / "plan.parquet", rehash=rehash)
        if same is not None:  # the usual rescan: nothing to hash, probe or record
            result.previous, result.reused_files = same.version, walked.files
            result.problems.extend(same.problems)
            result.seconds = time.monotonic() - started
            return result
        hashing = hashpass.HashPass(
            catalog,
            root,
            workers=profile.read_workers,
            serial_small=not profile.remote,
            files_total=walked.files,
            bytes_total=walked.bytes,
            progress=progress,
        )
        entries, todo = work / "entries.parquet", work / "probe.parquet"

        def commit(con: duckdb.DuckDBPyConnection) -> CommitResult:
            report(progress, ProgressEvent("commit", 0, None))
            result.problems.extend(probepass.broken_videos(con, entries))
            return commit_entries(
                con, dataset, entries, origin="scan", root=result.root, label=label
            )

        # The last hashes, the probe list and (nothing new to probe: the usual rescan)
        # the commit share one transaction. A pass that fails midway stores what it
        # read itself; from the moment it has read everything (its own shutdown
        # included) until that transaction commits, a failure stores them here.
        unsaved: list[FileHash] = []
        try:
            with _timed(result, "hash"):
                hashed = hashing.run(work / "plan.parquet", entries)
            result.hashed_files, result.hashed_bytes = hashed.hashed_files, hashed.hashed_bytes
            result.reused_files = hashed.reused_files
            result.problems.extend(hashed.problems)
            unsaved = hashing.unsaved()
            with _timed(result, "commit"), session.write(catalog) as con:
                hashcache.store_found(con, unsaved)
                to_probe = probepass.list_unprobed(con, entries, todo)
                committed = None if to_probe else commit(con)
        except BaseException:
            _keep_hashes(catalog, unsaved + hashing.unsaved())  # rolled back with the rest
            raise
        if committed is None:
            with _timed(result, "probe"):
                result.probed_files, raced = probepass.probe_all(
                    catalog, root, todo, total=to_probe, workers=workers or default_workers(),
                    progress=progress,
                )
            result.problems.extend(raced)
            with _timed(result, "commit"), session.write(catalog) as con:
                committed = commit(con)
    result.version, result.previous = committed.version, committed.previous
    result.files = committed.files
    result.bytes = committed.bytes
    result.seconds = time.monotonic() - started
    return result


@contextmanager
def _no_space_said_clearly(catalog: Catalog) -> Iterator[None]:
    """A full disk under the work files (TMPDIR) or the catalog, said as such.

    It ended the scan as "internal error: OSError: [Errno 28] ..." from Arrow or
    DuckDB: a bug report for what is the machine's state.
    """
    try:
        yield
    except (OSError, duckdb.Error) as exc:
        text = str(exc)
        if getattr(exc, "errno", None) not in _NO_SPACE and not any(
            os.strerror(code) in text for code in _NO_SPACE
        ):
            raise
        raise ScanNoSpaceError(
            f"no space left for the scan's work files ({tempfile.gettempdir()})"
            f" or the catalog ({os.path.abspath(catalog.path.parent)})",
            hint="free some space there (or set TMPDIR to a folder with room) and run the"
            " same command again",
        ) from exc


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _keep_hashes(catalog: Catalog, found: list[FileHash]) -> None:
    """Store hashes on a failure path, best effort: the failure itself is what is raised."""
    with suppress(Exception):  # whatever stops this (not a second Ctrl-C) must not hide that
        hashcache.save_found(catalog, found)


def check_root(root: Path, verb: str = "scan") -> Path:
    """The dataset's top folder, resolved; SourceError if `verb` cannot use it."""
    try:
        resolved = root.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise SourceError(
            f"folder to {verb} does not exist", path=str(root), hint="check the path"
        ) from exc
    if not resolved.is_dir():
        raise SourceError(
            "not a folder", path=str(root), hint=f"{verb} takes a dataset's top folder"
        )
    if not os.access(resolved, os.R_OK | os.X_OK):
        raise SourceError("folder is not readable", path=str(root), hint="check its permissions")
    shown, raw = display_name(str(resolved))
    if raw is not None:  # the catalog keeps a version's folder as text (its files' names
        raise SourceError(  # may be any bytes): pack could not find the files again
            "the folder's path is not valid UTF-8",
            path=shown,
            hint="rename the folder (names inside it may be any bytes)",
        )
    return resolved


def _walk(
    catalog: Catalog, root: Path, out: Path, progress: ProgressFn | None, workers: int
) -> WalkResult:
    exclude = [catalog.path, Path(f"{catalog.path}.wal")]
    exclude += catalog.path.parent.glob(f"{catalog.path.name}.scan-*.lock")

    def on_batch(walked: WalkResult) -> None:
        report(progress, ProgressEvent("walk", walked.files, None, walked.bytes, None))

    result = walk_to_parquet(root, out, exclude=exclude, on_batch=on_batch, workers=workers)
    on_batch(result)
    return result


_WORK_PREFIX = "sneakernet-scan-"


def _remove_stale_work_folders() -> None:
    """Work folders of scans that were killed (their process is gone) are removed."""
    base = Path(tempfile.gettempdir())
    for folder in base.glob(f"{_WORK_PREFIX}*-*"):
        pid = folder.name.removeprefix(_WORK_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _timed(result: ScanResult, phase: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        result.phase_seconds[phase] = round(time.monotonic() - started, 4)


def _lock_path(catalog: Catalog, dataset: str) -> Path:
    return catalog.path.parent / f"{catalog.path.name}.scan-{dataset}.lock"


@contextmanager
def _dataset_lock(catalog: Catalog, dataset: str) -> Iterator[None]:
    """One scan per dataset at a time; the lock dies with its process."""
    path = _lock_path(catalog, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        holder = pidlock.take(fd)
        if holder is not None:
            raise DatasetLockedError(
                f"dataset {dataset!r} is being scanned by process {holder}",
                hint="wait for that scan to finish",
            )
        yield
    finally:
        os.close(fd)
