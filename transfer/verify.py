"""`verify`: prove a drive carries exactly what its manifest says, with no catalog needed.

The drive's tree is walked (links recorded, never followed) and compared with
its manifest in DuckDB: what is missing, what is extra, what has the wrong
size. The default then re-hashes every file; --fast stops at sizes and the
seal. Several drives are checked at once, one reader per drive.
"""

from __future__ import annotations

import errno
import os
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import xxhash

from sneakernet.catalog.db import sql_path
from sneakernet.catalog.fstype import filesystem_type
from sneakernet.catalog.hashing import aligned_buffer
from sneakernet.catalog.progress import ProgressEvent, ProgressFn, report
from sneakernet.catalog.walk import walk_to_parquet
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer import drivemanifests as manifests
from sneakernet.transfer.errors import DriveError
from sneakernet.transfer.fsio import FolderCache
from sneakernet.transfer.packdrive import FileProblem as Finding

OUTCOMES = ("ok", "missing", "corrupt", "extra", "unreadable")
MAX_LISTED = 100_000
BUFFER_SIZE = 1 << 20
# mkfs.ext4 makes it at the root, mode 0700 for root: a user's verify cannot look in.
# (Never a dataset's folder: dataset names have no '+'.) Files fsck put in it, when
# they can be seen, are reported as extra like any other.
LOST_FOUND = "lost+found"
# What an operating system writes onto any drive it mounts, at the root (macOS
# indexing, trash and event logs; Windows' volume information and recycle bin; a
# Linux desktop's trash): plugging a drive into the courier's laptop must not make
# it "NOT whole". Never a dataset's folder (dataset names do not start with '.' or
# '$' and have no spaces), so they are left out of the walk. Finder's .DS_Store may
# be in any folder it showed: not counted as extra (one the manifest lists is checked).
# Nothing is hidden from ingest by this: ingest takes only what the manifest lists.
OS_HOUSEKEEPING = (".Spotlight-V100", ".fseventsd", ".Trashes", ".TemporaryItems",
                   ".DocumentRevisions-V100", "System Volume Information", "$RECYCLE.BIN")
OS_HOUSEKEEPING_PREFIXES = (".Trash-",)  # .Trash-1000: the trash of the user with uid 1000
FINDER_FILE = ".DS_Store"


@dataclass(slots=True)
class DriveReport:
    root: str
    shipment: str | None = None
    shipment_id: str | None = None
    drive_id: str | None = None
    number: int | None = None
    of: int | None = None
    label: str | None = None
    seal: str | None = None
    seal_ok: bool = False
    error: str | None = None  # the drive could not be checked at all
    hint: str | None = None  # what to do about that
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    bytes_read: int = 0
    seconds: float = 0.0

    @property
    def whole(self) -> bool:
        return (
            self.error is None
            and self.seal_ok
            and not any(self.counts[k] for k in OUTCOMES if k != "ok")
        )

    def add(self, outcome: str, path: str, detail: str) -> None:
        if outcome in self.counts:
            self.counts[outcome] += 1
        if len(self.findings) < MAX_LISTED:
            self.findings.append(Finding(path, outcome, detail))

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__slots__ if k != "findings"}
        data["whole"] = self.whole
        data["findings"] = [f.to_dict() for f in self.findings]
        return data


@dataclass(slots=True)
class VerifyResult:
    fast: bool
    drives: list[DriveReport]
    seconds: float = 0.0

    @property
    def whole(self) -> bool:
        return all(d.whole for d in self.drives)

    def to_dict(self) -> dict:
        return {
            "fast": self.fast,
            "whole": self.whole,
            "seconds": round(self.seconds, 3),
            "drives": [d.to_dict() for d in self.drives],
        }


def verify(
    drives: list[Path], *, fast: bool = False, progress: ProgressFn | None = None
) -> VerifyResult:
    """Check each drive; per-file outcomes are data in the result, never exceptions."""
    started = time.monotonic()
    reports = [DriveReport(str(root)) for root in drives]
    done = {id(r): [0, 0, 0, 0] for r in reports}  # files done, files total, bytes, bytes total
    lock = threading.Lock()
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=max(1, len(drives))) as pool:
        futures = {
            pool.submit(_verify_drive, Path(r.root), r, fast, done[id(r)], lock, stop): r
            for r in reports
        }
        try:
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for r in reports:
                    with lock:
                        files, total, nbytes, btotal = done[id(r)]
                    report(
                        progress,
                        ProgressEvent(
                            "verify",
                            files,
                            total or None,
                            nbytes,
                            btotal or None,
                            label=r.label or r.root,
                        ),
                    )
                for future in finished:
                    future.result()
        except KeyboardInterrupt:
            stop.set()
            raise
    return VerifyResult(fast, reports, time.monotonic() - started)


def _verify_drive(
    root: Path,
    rep: DriveReport,
    fast: bool,
    done: list[int],
    lock: threading.Lock,
    stop: threading.Event,
) -> None:
    started = time.monotonic()
    try:
        info = fmt.read_drive(root)
        info.describe(rep)
        if not info.sealed:
            raise DriveError(
                "the drive was never sealed: its pack did not finish",
                hint="run the same `sneakernet pack` again at the sending site",
            )
        rep.seal, broken = fmt.check_seal(root)
        rep.seal_ok = not broken
        for why in broken:
            rep.add("seal", fmt.SEAL_FILE, why)
        with tempfile.TemporaryDirectory(prefix="sneakernet-verify-") as tmp:
            _compare(info, rep, fast, Path(tmp), done, lock, stop)
    except DriveError as exc:
        rep.error, rep.hint = str(exc), exc.hint
    finally:
        rep.seconds = time.monotonic() - started



def _compare(
    info: fmt.DriveInfo,
    rep: DriveReport,
    fast: bool,
    work: Path,
    done: list[int],
    lock: threading.Lock,
    stop: threading.Event,
) -> None:
    root = info.root
    manifest = manifests.export_drive(info, work)[fmt.MANIFEST_FILE]
    real = Path(os.path.realpath(root))
    walked = walk_to_parquet(real, work / "walk.parquet",
                             exclude=[real / fmt.META_DIR, *_os_housekeeping(real)])
    for problem in walked.problems:
        if problem.path == LOST_FOUND and problem.kind == "unreadable-folder":
            continue  # ext4's own, root's alone: every ext4 drive has one
        if problem.path.rsplit("/", 1)[-1] == FINDER_FILE:
            continue
        rep.add(
            "extra" if problem.kind == "skipped" else "unreadable", problem.path, problem.message
        )
    con = duckdb.connect(config={"memory_limit": "256MB"})
    try:
        con.execute(f"CREATE VIEW m AS SELECT * FROM read_parquet({sql_path(manifest)})")
        con.execute(
            f"CREATE VIEW w AS SELECT * FROM read_parquet({sql_path(work / 'walk.parquet')})"
            f" WHERE path NOT IN ('{fmt.PLAIN_MANIFEST}', '{fmt.README_FILE}')"
            f" AND NOT starts_with(path, '{fmt.META_DIR}/')"
        )
        rep.files, rep.bytes = con.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM m"
        ).fetchall()[0]
        with lock:
            done[1], done[3] = rep.files, (0 if fast else rep.bytes)
        _differences(con, rep)
        candidates = (
            "SELECT m.drive_path, m.size, m.hash FROM m JOIN w ON w.path = m.drive_path"
            " AND w.kind = 'file' AND w.size = m.size ORDER BY m.drive_path"
        )
        cursor = con.cursor()
        cursor.execute(candidates)
        checker = _Checker(real)  # the mount point given may be a link; nothing under it is
        try:
            while rows := cursor.fetchmany(4096):
                if stop.is_set():
                    return
                if fast:
                    rep.counts["ok"] += len(rows)
                else:
                    for drive_path, outcome, detail, nread in checker.check(rows):
                        rep.bytes_read += nread
                        if outcome == "ok":
                            rep.counts["ok"] += 1
                        else:
                            rep.add(outcome, drive_path, detail)
                with lock:
                    done[0] += len(rows)
                    done[2] += 0 if fast else sum(row[1] for row in rows)
        finally:
            checker.close()
    finally:
        con.close()


def _os_housekeeping(root: Path) -> list[Path]:
    """The root's entries an OS wrote by itself (see OS_HOUSEKEEPING): never walked."""
    try:
        names = os.listdir(root)
    except OSError:
        return []  # the walk reports an unreadable root itself
    return [root / name for name in names
            if name in OS_HOUSEKEEPING or name.startswith(OS_HOUSEKEEPING_PREFIXES)]


def _differences(con: duckdb.DuckDBPyConnection, rep: DriveReport) -> None:
    queries = (
        (
            "missing",
            "SELECT m.drive_path, 'not on the drive' FROM m ANTI JOIN w"
            " ON w.path = m.drive_path ORDER BY 1",
        ),
        (
            "corrupt",
            "SELECT m.drive_path, CASE WHEN w.kind <> 'file'"
            " THEN 'is a ' || w.kind || ' on the drive (not followed)'"
            " ELSE 'size ' || w.size || ' bytes, manifest says ' || m.size END"
            " FROM m JOIN w ON w.path = m.drive_path"
            " WHERE w.kind <> 'file' OR w.size <> m.size ORDER BY 1",
        ),
        (
            "extra",
            "SELECT w.path, 'not in the manifest'"
            " || CASE WHEN w.kind = 'symlink' THEN ' (a symlink, not followed)' ELSE '' END"
            f" FROM w ANTI JOIN m ON w.path = m.drive_path"
            f" WHERE w.path <> '{FINDER_FILE}' AND NOT ends_with(w.path, '/{FINDER_FILE}')"
            " ORDER BY 1",
        ),
    )
    for outcome, sql in queries:
        cursor = con.cursor()
        cursor.execute(sql)
        while rows := cursor.fetchmany(4096):
            for path, detail in rows:
                rep.add(outcome, path, detail)


THREADS = 2
CHUNK_FILES = 64  # files handed to a thread at once (in path order) ...
CHUNK_BYTES = 32 << 20  # ... and at most this many bytes, so big files spread too
_NOWAIT = getattr(os, "RWF_NOWAIT", None)
_WOULD_BLOCK = (errno.EAGAIN, errno.EOPNOTSUPP, errno.EINVAL)
# File systems with no device behind them: every read is a memory read, so both
# threads read freely. (tmpfs also refuses RWF_NOWAIT, which would otherwise send
# every read to the one-reader lock.)
_MEMORY_FS = frozenset({"tmpfs", "ramfs"})

Checked = tuple[str, str, str, int]  # drive path, outcome, detail, bytes read


class _Checker:
    """Hashes the files of a drive in two threads, yet with one reader of the device.

    A thread reads with RWF_NOWAIT, which only returns what the page cache
    already holds; at the first read that would go to the device it takes the
    drive's lock and keeps it to the end of its chunk. So cached data (a drive
    just packed, or read twice) is hashed on two cores (xxhash and reads release
    the GIL), while the drive itself still sees one sequential reader, which a
    rotational disk needs. Without RWF_NOWAIT (not Linux): one thread. On a
    memory file system (tmpfs): two threads and no lock.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.free_reads = filesystem_type(root) in _MEMORY_FS
        self.threads = THREADS if _NOWAIT is not None or self.free_reads else 1
        self.pool = ThreadPoolExecutor(self.threads, "sneakernet-verify")
        self.device = threading.Lock()
        self.local = threading.local()
        self.opened: list[FolderCache] = []

    def check(self, rows: list[tuple[str, int, str]]) -> list[Checked]:
        if self.threads == 1:
            return self._chunk(rows, nowait=False)
        chunks, chunk, size = [], [], 0
        for row in rows:
            chunk.append(row)
            size += row[1]
            if len(chunk) >= CHUNK_FILES or size >= CHUNK_BYTES:
                chunks.append(chunk)
                chunk, size = [], 0
        if chunk:
            chunks.append(chunk)
        return [found for part in self.pool.map(self._chunk, chunks) for found in part]

    def close(self) -> None:
        self.pool.shutdown()
        for folders in self.opened:
            folders.close()

    def _chunk(self, rows: list[tuple[str, int, str]], nowait: bool = True) -> list[Checked]:
        local = self.local
        if not hasattr(local, "folders"):
            local.folders = FolderCache(self.root)
            local.view = aligned_buffer(BUFFER_SIZE)
            self.opened.append(local.folders)
        holding = not nowait
        try:
            found = []
            for drive_path, size, digest in rows:
                result, holding = self._one(local, drive_path, size, digest, holding)
                found.append(result)
            return found
        finally:
            if holding and nowait:
                self.device.release()

    def _one(
        self, local, drive_path: str, size: int, digest: str, holding: bool
    ) -> tuple[Checked, bool]:
        """Hash one file; (the outcome, whether this thread now holds the device)."""
        try:
            fd = local.folders.open(drive_path)
        except OSError as exc:
            return (drive_path, "unreadable", exc.strerror or str(exc), 0), holding
        hasher = xxhash.xxh3_128()
        view = local.view
        total = 0
        try:
            while True:
                want = view[: size + 1 - total] if size - total < len(view) else view
                if holding or self.free_reads:
                    n = os.preadv(fd, [want], total)
                else:
                    try:
                        n = os.preadv(fd, [want], total, _NOWAIT)
                    except OSError as exc:
                        if exc.errno not in _WOULD_BLOCK:
                            raise
                        # Not in the page cache (or no RWF_NOWAIT here): the drive's turn.
                        self.device.acquire()
                        holding = True
                        n = os.preadv(fd, [want], total)
                if n == 0:
                    break
                hasher.update(view[:n])
                total += n
        except OSError as exc:
            return (drive_path, "unreadable", exc.strerror or str(exc), total), holding
        finally:
            os.close(fd)
        found = hasher.hexdigest()
        if total != size:
            return (drive_path, "corrupt", f"read {total} bytes, manifest says {size}", total), (
                holding
            )
        if found != digest:
            detail = f"content hash {found}, manifest says {digest}"
            return (drive_path, "corrupt", detail, total), holding
        return (drive_path, "ok", "", total), holding
