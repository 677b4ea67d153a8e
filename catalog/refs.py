"""Names of datasets and versions as users type them: `roadcam`, `roadcam@3`, `roadcam@nov`."""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb

from sneakernet.catalog.errors import NotFoundError, UsageError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ :+-]{0,127}")
LATEST = "latest"
MAX_VERSION = 2**31 - 1  # versions.version is an INTEGER


@dataclass(frozen=True, slots=True)
class VersionRef:
    dataset: str
    version: int | None = None  # a number
    label: str | None = None  # or a label; neither means the latest

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.dataset}@{self.version}"
        return f"{self.dataset}@{self.label}" if self.label else self.dataset


def check_dataset_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"invalid dataset name {name!r}",
            hint="use letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    return name


def check_label(label: str) -> str:
    if not _LABEL.fullmatch(label) or label.isdigit() or label == LATEST:
        raise UsageError(
            f"invalid version label {label!r}",
            hint="a label starts with a letter or digit, is not a plain number nor 'latest'",
        )
    return label


def parse_ref(text: str) -> VersionRef:
    name, sep, rest = text.partition("@")
    check_dataset_name(name)
    if not sep or rest == LATEST:
        return VersionRef(name)
    # ASCII digits only: str.isdigit() also takes U+00B3 (which int() refuses) and U+0661 (an
    # Arabic-Indic 1); labels are ASCII, so anything else is refused as a label.
    if rest.isascii() and rest.isdigit():
        return VersionRef(name, version=_version_number(rest))
    return VersionRef(name, label=check_label(rest))


def _version_number(digits: str) -> int:
    # Checked by length first: int() refuses strings of over 4,300 digits with a ValueError.
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(MAX_VERSION)) or int(significant) > MAX_VERSION:
        shown = digits if len(digits) <= 24 else f"{digits[:20]}..."
        raise UsageError(
            f"version number {shown} is too large", hint=f"versions are numbered 1 to {MAX_VERSION}"
        )
    return int(significant)


def resolve(con: duckdb.DuckDBPyConnection, ref: VersionRef) -> int:
    """The version number a ref names, or NotFoundError saying what exists."""
    if ref.version is not None:
        row = con.execute(
            "SELECT version FROM versions WHERE dataset = ? AND version = ?",
            [ref.dataset, ref.version],
        ).fetchone()
    elif ref.label is not None:
        row = con.execute(
            "SELECT version FROM versions WHERE dataset = ? AND label = ?",
            [ref.dataset, ref.label],
        ).fetchone()
    else:
        row = con.execute(
            "SELECT max(version) FROM versions WHERE dataset = ?", [ref.dataset]
        ).fetchone()
        row = row if row and row[0] is not None else None
    if row is None:
        raise _not_found(con, ref)
    return int(row[0])


def _not_found(con: duckdb.DuckDBPyConnection, ref: VersionRef) -> NotFoundError:
    known = con.execute(
        "SELECT string_agg(version::VARCHAR, ', ' ORDER BY version) FROM versions"
        " WHERE dataset = ?",
        [ref.dataset],
    ).fetchone()
    if not known or known[0] is None:
        return NotFoundError(
            f"no dataset named {ref.dataset!r} in the catalog",
            hint="see `sneakernet datasets`, or scan it first",
        )
    return NotFoundError(
        f"{ref} does not exist", hint=f"{ref.dataset} has versions {known[0]}"
    )
