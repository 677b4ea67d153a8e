"""File-system primitives the moving verbs share: durable writes, safe paths.

Everything written to a drive or a store goes through a temporary name, is
fsynced, then renamed, and the folder is fsynced so the rename survives a
power cut. Paths read from a drive are untrusted: they are checked to be
plain relative paths and opened without following symlinks.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from sneakernet.catalog.durable import rename_durably

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
READ_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
TMP_SUFFIX = ".sneakernet-tmp"


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary name, fsync, rename, fsync the folder."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    rename_durably(tmp, path)


def drop_from_cache(fd: int, start: int = 0, length: int = 0) -> None:
    """Ask the kernel to forget the file's cached pages (from `start`, `length` bytes or
    to the end), so the next read hits the device."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)


def unsafe_relative_path(text: str) -> str | None:
    """Why `text` is not a plain relative path inside a tree, or None if it is.

    Rejects what a hostile manifest could use to reach outside: absolute
    paths, `..`, empty or `.` components, backslashes (a Windows separator),
    NUL bytes.
    """
    if not text:
        return "empty path"
    if "\x00" in text:
        return "NUL byte in path"
    if text.startswith("/"):
        return "absolute path"
    if "\\" in text:
        return "backslash in path"
    # An empty, `.` or `..` component starts the path or follows a `/`, or leaves it
    # ending in one: most paths show none of the three and need no split (this runs
    # for every path of every manifest read).
    if text[0] != "." and "/." not in text and "//" not in text and text[-1] != "/":
        return None
    parts = text.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "'..', '.' or empty component in path"
    return None


def _open_parent(root: Path, parts: tuple[str, ...]) -> int:
    """A descriptor of the folder holding `parts[-1]`, reached without following symlinks.

    Each folder is opened with O_NOFOLLOW relative to the previous one, so a
    symlinked folder on a hostile drive cannot lead outside it.
    """
    return _open_folder(root, parts[:-1])


def _open_folder(root: Path, parts: tuple[str, ...]) -> int:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW
    dir_fd = os.open(root, flags)
    try:
        for part in parts:
            next_fd = os.open(part, flags, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
    except BaseException:
        os.close(dir_fd)
        raise
    return dir_fd


def open_inside(root: Path, relative: str) -> int:
    """Open `root/relative` for reading without following any symlink on the way.

    Raises OSError (ELOOP for a symlink, ENOTDIR, ENOENT, EINVAL for a non-file).
    """
    parts = PurePosixPath(relative).parts
    dir_fd = _open_parent(root, parts)
    try:
        # Look before opening: a FIFO or device node on a hostile drive is never opened.
        if not stat.S_ISREG(os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(root / relative))
        fd = os.open(parts[-1], READ_FLAGS, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(root / relative))
    return fd


class FolderCache:
    """open_inside for many paths in order: the folder of the last file is kept open.

    Paths of one folder come together in a sorted manifest, so each folder is
    reached once (one O_NOFOLLOW open per component, as open_inside does)
    rather than once per file. `listed`: the folder's regular files are also
    read once from its listing (d_type), instead of a stat per file before it
    is opened; a name the listing does not show as a regular file is looked at
    as before. close() when done.
    """

    def __init__(self, root: Path, *, listed: bool = False) -> None:
        self.root = root
        self.folder: str | None = None
        self.fd = -1
        self.listed = listed
        self.regular: set[str] | None = None  # the open folder's regular files, if listed

    def open(self, relative: str) -> int:
        """Like open_inside(root, relative); the path must be a checked relative path."""
        folder, _, name = relative.rpartition("/")
        if folder != self.folder:
            self.close()
            self.fd = _open_folder(self.root, PurePosixPath(folder).parts if folder else ())
            self.folder = folder
            if self.listed:
                self.regular = regular_names(self.fd)
        # Look before opening: a FIFO or device node on a hostile drive is never opened.
        listed = self.regular is not None and name in self.regular
        if not listed and not stat.S_ISREG(
            os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode
        ):
            raise OSError(errno.EINVAL, "not a regular file", str(self.root / relative))
        fd = os.open(name, READ_FLAGS, dir_fd=self.fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped in between: still refused
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file", str(self.root / relative))
        return fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.folder, self.regular = -1, None, None


LISTING_MAX = 1 << 16  # names kept from one folder's listing; a bigger folder is not kept


def regular_names(folder: int | str) -> set[str] | None:
    """The names of the regular files in `folder` (a path or descriptor), symlinks not
    followed; None if it has more than LISTING_MAX entries (memory stays flat) or cannot
    be listed (a folder one may enter but not read: its files are looked at one by one)."""
    names: set[str] = set()
    try:
        with os.scandir(folder) as entries:
            for count, entry in enumerate(entries):
                if count >= LISTING_MAX:
                    return None
                if entry.is_file(follow_symlinks=False):
                    names.add(entry.name)
    except OSError:
        return None
    return names


def folder_names(folder: str) -> set[str] | None:
    """Every name in `folder` (an empty set if there is no such folder); None if it cannot
    be listed or has more than LISTING_MAX entries: the caller then asks name by name."""
    names: set[str] = set()
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if len(names) >= LISTING_MAX:
                    return None
                names.add(entry.name)
    except FileNotFoundError:
        return names
    except OSError:
        return None
    return names


def free_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


