"""Errors of the moving verbs: drives that cannot be used, shipments that do not fit."""

from __future__ import annotations

from sneakernet.catalog.errors import CatalogBusyError, SneakernetError


class DriveError(SneakernetError):
    """A drive cannot be used: not a sneakernet drive, malformed, tampered or hostile."""

    exit_code = 8
    DEFAULT_HINT = (
        "the drive is refused and nothing was written from it; check the mount point, or ask "
        "the sending site to pack it again"
    )

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None):
        super().__init__(message, path=path, hint=hint or self.DEFAULT_HINT)


class NoSpaceError(SneakernetError):
    """The shipment does not fit on the drives given, or a drive (packing) or the store
    (ingesting) filled up."""

    exit_code = 9


class StoreBusyError(CatalogBusyError):
    """Another process is ingesting into the same store (the receive service retries later)."""


class DriveBusyError(CatalogBusyError):
    """Another pack is writing the same drive."""
