"""Errors of the moving verbs: drives that cannot be used, shipments that do not fit."""

from __future__ import annotations

from sneakernet.catalog.errors import SneakernetError


class DriveError(SneakernetError):
    """A drive cannot be used: not a sneakernet drive, malformed, tampered or hostile."""

    exit_code = 8


class NoSpaceError(SneakernetError):
    """The shipment does not fit on the drives given, or a drive filled up while packing."""

    exit_code = 9
