"""The one exception family for "cannot proceed".

Per-file problems (an unreadable file, a broken video) are data in result
objects, never exceptions. These are for the whole command: each carries the
path it concerns and a hint saying what the user can do about it.
"""

from __future__ import annotations


class SneakernetError(Exception):
    """Base of every error sneakernet raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.hint = hint

    def __str__(self) -> str:
        text = self.message
        if self.path:
            text = f"{text}: {self.path}"
        return text


class UsageError(SneakernetError):
    """The arguments name something malformed (a bad version ref, a bad option value)."""

    exit_code = 2


class NotFoundError(SneakernetError):
    """A dataset, version, path or hash that the catalog does not know."""

    exit_code = 4


class CatalogBusyError(SneakernetError):
    """Another process held the catalog longer than we were willing to wait."""

    exit_code = 5


class CatalogFormatError(SneakernetError):
    """The catalog file is from a newer sneakernet, or is not a sneakernet catalog."""

    exit_code = 6


class SourceError(SneakernetError):
    """The folder to scan is missing, not a folder, or unreadable."""

    exit_code = 7
