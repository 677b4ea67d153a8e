"""Exit statuses: one number per kind of outcome, documented in README.md."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0  # done, nothing to report
    ERROR = 1  # an internal error (a bug): rerun with --debug and report it
    USAGE = 2  # bad arguments or options
    PROBLEMS = 3  # finished, but files are unreadable, missing, corrupt or extra (see report)
    NOT_FOUND = 4  # no such dataset, version, file or hash
    BUSY = 5  # the catalog or dataset stayed locked by another process
    CATALOG = 6  # the catalog file is unusable (newer schema, not a catalog)
    SOURCE = 7  # the folder or file given cannot be used
    DRIVE = 8  # a drive is not a sneakernet drive, or is malformed, tampered or hostile
    NO_SPACE = 9  # the shipment does not fit, or a drive, the store or scan's disk filled up
    PLAN_REFUSED = 10  # names or sizes the target drives cannot hold; nothing was written
    INTERRUPTED = 130  # stopped by Ctrl-C; rerun to finish, finished work is kept
