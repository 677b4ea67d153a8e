"""Will these names survive the target file system? Checked before a byte is copied.

Shipping drives are often exFAT or NTFS (they must open on every laptop), and
those refuse names that Linux allows. On such a drive a bad name is an error
in the plan; on a Linux file system it is a warning, since the drive may
still be read on Windows at the other end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FAT32_MAX_FILE = (4 << 30) - 1
MAX_COMPONENT = 255
MAX_PATH_BYTES = 4095
WINDOWS_FS = frozenset({"exfat", "vfat", "msdos", "fat", "ntfs", "ntfs3", "fuseblk"})
CASE_INSENSITIVE_FS = WINDOWS_FS
_ILLEGAL = re.compile(r'[:?*"<>|\x00-\x1f\\]')
_RESERVED = re.compile(r"(?i)(CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])(\..*)?")
# Anything _check_component could object to in a short ASCII path: an illegal
# character, a name ending in a dot or a space, a name that may be reserved.
# The same in RE2 syntax too (DuckDB's regexp_matches), for plan's bulk check.
SUSPECT_PATTERN = r'[:?*"<>|\x00-\x1f\\]|[. ](?:/|$)|(?i:(?:^|/)(?:CON|PRN|AUX|NUL|COM|LPT))'
_SUSPECT = re.compile(SUSPECT_PATTERN)


@dataclass(frozen=True, slots=True)
class NameProblem:
    path: str
    message: str
    error: bool  # False: a warning that does not stop the pack


def portable(fs_type: str) -> bool:
    return fs_type in WINDOWS_FS


def check_path(path: str, size: int, fs_type: str) -> list[NameProblem]:
    """What is wrong with one drive path on `fs_type` (an empty list if nothing)."""
    if len(path) <= MAX_COMPONENT and path.isascii() and not _SUSPECT.search(path):
        # The common case, without a look at each name: no name can be too long
        # (in bytes or UTF-16 units) when the whole path is 255 ASCII characters.
        if size > FAT32_MAX_FILE and fs_type in ("vfat", "msdos", "fat"):
            return [NameProblem(path, _FAT32_TOO_BIG, True)]
        return []
    strict = portable(fs_type)
    problems = []
    encoded = path.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_PATH_BYTES:
        problems.append(NameProblem(path, f"path is {len(encoded)} bytes long (limit 4095)", True))
    for part in path.split("/"):
        problems.extend(_check_component(path, part, strict))
    if size > FAT32_MAX_FILE and fs_type in ("vfat", "msdos", "fat"):
        problems.append(NameProblem(path, _FAT32_TOO_BIG, True))
    return problems


_FAT32_TOO_BIG = "file is over FAT32's 4 GiB limit (reformat the drive as exFAT)"


def _check_component(path: str, part: str, strict: bool) -> list[NameProblem]:
    problems = []
    if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT:
        problems.append(NameProblem(path, f"name {part[:40]!r}... is over 255 bytes", True))
    if len(part.encode("utf-16-le", "surrogatepass")) // 2 > MAX_COMPONENT:
        problems.append(NameProblem(path, "name is over 255 UTF-16 units (exFAT/NTFS)", strict))
    if "\\" in part:  # a path separator to Windows, and refused by every drive reader
        problems.append(NameProblem(path, "name holds a backslash, which no drive can carry", True))
    bad = sorted(set(_ILLEGAL.findall(part)) - {"\\"})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        problems.append(NameProblem(path, f"name holds {shown}, illegal on exFAT/NTFS", strict))
    if part.endswith((".", " ")):
        problems.append(
            NameProblem(path, "name ends with a dot or a space, illegal on exFAT/NTFS", strict)
        )
    if _RESERVED.fullmatch(part):
        problems.append(NameProblem(path, f"{part!r} is a reserved name on Windows", strict))
    return problems


def case_collision(path: str, other: str, fs_type: str) -> NameProblem:
    return NameProblem(
        path,
        f"collides with {other!r} when case is ignored (as on exFAT/NTFS)",
        fs_type in CASE_INSENSITIVE_FS,
    )


WAY_OUT = (
    "rename the files at the source and scan again, or pack to a drive formatted "
    "ext4/XFS/APFS (names are then only warnings)"
)
