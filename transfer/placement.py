"""Putting one file of a drive into the store: copy, link, or confirm it is there.

Every file becomes visible under its final name only after its bytes were
proven equal to the manifest: copied from the drive with hash-on-read, linked
to a store file that was proven so when it was placed, or re-hashed in place
when an earlier, interrupted run already put it there.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sneakernet.catalog import pidlock
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import SourceError
from sneakernet.catalog.hashcache import store_cached_hashes
from sneakernet.catalog.hashing import aligned_buffer, hash_file
from sneakernet.transfer import batching, copier
from sneakernet.transfer import driveformat as fmt
from sneakernet.transfer.errors import DriveError, NoSpaceError, StoreBusyError
from sneakernet.transfer.fsio import FolderCache, folder_names
from sneakernet.transfer.packdrive import FileProblem

FLUSH_SECONDS = 5.0
_NOT_A_FILE = (errno.ELOOP, errno.ENOTDIR, errno.EINVAL)
_FULL = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY = 0o444


class Placer:
    def __init__(
        self,
        catalog: Catalog,
        drive: Path,
        store: Path,
        outcome,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self.catalog, self.drive, self.store, self.outcome = catalog, drive, store, outcome
        self.on_bytes = on_bytes  # called as bytes are read, so a stop need not wait a file
        self.partial = store / fmt.PARTIAL_DIR
        try:
            self.partial.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # what ingest's check of the store could not foresee
            raise store_unwritable(store, exc.strerror or str(exc)) from exc
        self.buffer = aligned_buffer(copier.BUFFER_SIZE)
        self.cache_rows: list[tuple[int, int, int, int, str]] = []
        self.flushed = time.monotonic()
        self.batch = batching.Batch(self.partial, readback=False, keep_stat=True)
        self.waiting: set[str] = set()  # targets of copies in a batch not yet finished
        self.waiting_hashes: set[str] = set()  # ... and their content (one temporary name each)
        self.linked: list[str] = []  # folders of links whose names are not yet durable
        self.store_text, self.partial_text = str(store), str(self.partial)
        # The drive's files come in path order. Its mount point as given may be a link (it
        # is the operator's word, not the drive's); links under it are never followed.
        self.folders = FolderCache(Path(os.path.realpath(drive)), listed=True)
        # The names in the store folder targets go to now: one listing per folder, not
        # a look-up per file (targets come grouped by folder, and each comes once).
        self.listed_folder: str | None = None
        self.listed: set[str] | None = None
        # Store files whose bytes this run proved (copied, or re-hashed): safe to link to.
        self.proven: dict[str, str] = {}

    def place(self, row: tuple, *, own_drive: bool) -> int:
        """Place one entry; returns the bytes read for it not yet passed to `on_bytes`.

        Copies finish in batches (made durable together, then named): `flush`
        finishes the last one.
        """
        dataset, version, path, digest, _, drive_path, size, mtime_ns, store_copy = row
        target = f"{self.store_text}/{dataset}/{version}/{path}"
        if not _inside(self.store_text, target):
            self._problem(drive_path, "hostile", f"{target} is outside the store; not written")
            return 0
        if self._exists(target):
            return self._confirm(Path(target), digest, size, mtime_ns, drive_path)
        own_copy = f"{self.store_text}/{drive_path}"
        if self.waiting and (store_copy in self.waiting or own_copy in self.waiting):
            self._finish(self.batch.drain())  # link to it once it has its name
        source = self._linkable(store_copy, size)
        if source is None and own_copy != target:  # (the target was just found absent)
            source = self._proven_copy(own_copy, digest, size)
        if source is not None:
            try:
                copier.link_no_replace(Path(source), Path(target), durable=False)
            except FileExistsError:
                return self._clash(Path(target), drive_path)
            except OSError as exc:
                self._check_store_room(exc, drive_path)
                raise
            self.outcome.linked_files += 1
            self.linked.append(os.path.dirname(target))
            if len(self.linked) >= batching.BATCH_FILES:
                self._sync_links()
            return 0
        if not own_drive:
            self.outcome.waiting_files += 1
            return 0
        return self._copy(target, digest, size, mtime_ns, drive_path)

    def _exists(self, target: str) -> bool:
        """Whether something (anything: a file, a link, a folder) already has this name.

        From the folder's listing taken when its first target came: what a run
        puts there later has other names, and a name taken meanwhile by someone
        else still makes the rename or link fail (a clash), never a replace.
        """
        folder, _, name = target.rpartition("/")
        if folder != self.listed_folder:
            self.listed_folder, self.listed = folder, folder_names(folder)
        if self.listed is None:  # not listed (too big, or unreadable): ask for this name
            return os.path.lexists(target)
        return name in self.listed

    def _copy(self, target: str, digest: str, size: int, mtime_ns: int, drive_path: str) -> int:
        if digest in self.waiting_hashes:  # its temporary name is taken until that batch ends
            self._finish(self.batch.drain())
        try:
            src = self.folders.open(drive_path)
        except OSError as exc:
            self._check_drive_present()
            if exc.errno in _NOT_A_FILE:  # as verify words it: never followed, never opened
                self._problem(drive_path, "corrupt", "not a regular file on the drive (a symlink "
                              "or special file, not followed)")
            else:
                self._problem(drive_path, "unreadable", exc.strerror or str(exc))
            return 0
        tmp = f"{self.partial_text}/{digest}.part"
        try:
            out, result = copier.start_copy(
                src,
                tmp,
                size=size,
                digest=digest,
                buffer=self.buffer,
                mtime_ns=mtime_ns,
                mode=READ_ONLY,
                on_bytes=self.on_bytes,
            )
        except copier.SourceMismatch as exc:
            self._check_drive_present()
            self._problem(drive_path, "corrupt", f"the drive's copy {exc}; not ingested")
            return 0
        except OSError as exc:
            self._check_store_room(exc, drive_path)
            self._check_drive_present()
            self._problem(drive_path, "unreadable", exc.strerror or str(exc))
            return 0
        finally:
            os.close(src)
        self.batch.add(batching.Pending(out, tmp, target, size, digest, result, drive_path))
        self.waiting.add(target)
        self.waiting_hashes.add(digest)
        if self.batch.full:
            self._finish(self.batch.submit())
        return 0 if self.on_bytes else size

    def _finish(self, items: list[batching.Pending]) -> None:
        """Record each copy a batch finished: named in the store, or why not."""
        for item in items:
            self.waiting.discard(item.final)
            self.waiting_hashes.discard(item.digest)
            exc = item.error
            if exc is None:
                self.outcome.copied_files += 1
                self.outcome.copied_bytes += item.result.copied
                self.outcome.reused_bytes += item.result.reused
                self._remember(item.final, item.digest, item.stat)
            elif isinstance(exc, FileExistsError | NotADirectoryError):  # a file in the way
                Path(item.tmp).unlink(missing_ok=True)
                self._clash(Path(item.final), item.token)
            else:
                self._check_store_room(exc, item.token)
                self._check_drive_present()
                self._problem(item.token, "unreadable", getattr(exc, "strerror", None) or str(exc))

    def _confirm(self, target: Path, digest: str, size: int, mtime_ns: int, drive_path: str) -> int:
        """A file already at the target: ours from an earlier run, or a clash.

        Ours is read-only with the manifest's size and mtime: a file placed only
        after its hash was proven, so it is not read again (re-reading every
        earlier drive's files on each new drive would cost hours). Anything else
        of the right size is re-hashed before it is accepted.
        """
        info = os.lstat(target)
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            return self._clash(target, drive_path)
        ours = info.st_mode & 0o222 == 0 and info.st_mtime_ns == mtime_ns
        if ours:
            self.outcome.present_files += 1
            self.proven[str(target)] = digest
            return 0
        if _hash_of(target) != digest:
            return self._clash(target, drive_path)
        self.outcome.present_files += 1
        self._remember(target, digest)
        return size

    def _check_store_room(self, exc: BaseException, drive_path: str) -> None:
        """A full store is not a bad file: stop the ingest rather than blame every file left
        on the drive (each reported 'unreadable', its version 'corrupt on the drive')."""
        if isinstance(exc, OSError) and exc.errno in _FULL:
            raise NoSpaceError(
                f"the store is full ({exc.strerror}) while copying {drive_path}",
                path=str(self.store),
                hint="free space in the store and run the same command again; files already "
                "in the store are kept and not copied again",
            ) from exc

    def _check_drive_present(self) -> None:
        """A read that failed because the drive went away is not a bad file: stop the ingest."""
        if not (self.drive / fmt.DRIVE_FILE).is_file():
            raise DriveError(
                "the drive went away during ingest", path=str(self.drive),
                hint="plug it back in and run the same command; files already in the store "
                "are kept and not copied again",
            )

    def _proven_copy(self, candidate: str, digest: str, size: int) -> str | None:
        """The carried copy in the store, if its bytes are proven to be `digest`.

        It may be a clash (someone else's file at that path), so it is linked to
        only when this run placed it or its hash is checked now.
        """
        if self.proven.get(candidate) == digest:
            return candidate
        if self._linkable(candidate, size) is None or _hash_of(Path(candidate)) != digest:
            return None
        self.proven[candidate] = digest
        return candidate

    def _linkable(self, candidate: str | None, size: int) -> str | None:
        if not candidate:
            return None
        try:
            info = os.lstat(candidate)
        except OSError:
            return None
        return candidate if stat.S_ISREG(info.st_mode) and info.st_size == size else None

    def _clash(self, target: Path, drive_path: str) -> int:
        in_the_way = _in_the_way(self.store, target)
        self._problem(
            target.relative_to(self.store).as_posix(),
            "clash",
            f"the store already holds a different file at {in_the_way}; it was not replaced "
            f"by {self.drive / drive_path}",
        )
        return 0

    def _problem(self, path: str, outcome: str, detail: str) -> None:
        self.outcome.problems.append(FileProblem(path, outcome, detail))

    def _remember(
        self, target: Path | str, digest: str, info: os.stat_result | None = None
    ) -> None:
        """`target` proven to hold `digest`; `info`: its stat, if known (the same inode)."""
        self.proven[str(target)] = digest
        if info is None:
            info = os.lstat(target)
        self.cache_rows.append((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, digest))
        if time.monotonic() - self.flushed > FLUSH_SECONDS:
            self._flush_cache()

    def flush(self) -> None:
        """Finish the copies in flight; new store files go into the hash cache.

        (So a later scan of the store reads nothing.)
        """
        try:
            self._finish(self.batch.drain())
        finally:
            self.folders.close()
            self.batch.close()
            self.batch = batching.Batch(self.partial, readback=False, keep_stat=True)
        self._sync_links()
        self._flush_cache()

    def _sync_links(self) -> None:
        linked, self.linked = self.linked, []
        for parent, exc in batching.sync_names(self.store, linked):
            where = os.path.relpath(parent, self.store)
            self._problem(where, "unreadable", f"cannot make its new links durable: {exc}")

    def _flush_cache(self) -> None:
        if self.cache_rows:
            store_cached_hashes(self.catalog, self.cache_rows)
            self.cache_rows = []
        self.flushed = time.monotonic()


@contextmanager
def store_lock(store: Path) -> Iterator[None]:
    """One ingest into a store at a time. Two (the receive service and a hand-typed ingest
    of the same drive) wrote the same temporary copies, named by content, each taking the
    other's for a killed run's leftover: spurious 'No such file' problems, no version
    registered, a read-only copy made writable. The lock dies with its process."""
    path = store / fmt.META_DIR / "ingest.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise store_unwritable(store, exc.strerror or str(exc)) from exc
    try:
        holder = pidlock.take(fd)
        if holder is not None:
            raise StoreBusyError(
                f"process {holder} is ingesting into this store", path=str(store),
                hint="wait for it to finish, then run the same command again",
            )
        yield
    finally:
        os.close(fd)


def store_unwritable(store: Path, why: str) -> SourceError:
    return SourceError(
        f"cannot write to the store ({why})",
        path=str(store),
        hint="check its permissions and mount options; nothing was copied",
    )


def _in_the_way(store: Path, target: Path) -> Path:
    """What keeps `target` from being placed: a file where one of its folders goes (from
    the store down), else the target itself."""
    for folder in reversed(target.parents):
        if folder.is_relative_to(store) and folder != store and os.path.lexists(folder) and (
            not folder.is_dir()
        ):
            return folder
    return target


def _inside(store: str, target: str) -> bool:
    """A second line of defence behind the manifest checks: never write outside the store."""
    if "/." not in target and "//" not in target:  # no `..` can hide in it: the common case
        return target.startswith(store + "/")
    return os.path.commonpath([store, os.path.normpath(target)]) == store


def _hash_of(path: Path) -> str:
    return hash_file(str(path)).hash
