"""The drive format, version 1: the one module that writes and reads drive metadata.

A drive carries its data in a browsable tree `<dataset>/<version>/<path>` and,
under `.sneakernet/`, what it is (drive.json), what it carries (manifest.parquet),
what the whole shipment carries (shipment.parquet, media.parquet) and a seal
over all of them. `MANIFEST.xxh128` at the root lets `xxhsum -c` check the
data with no sneakernet installed. The contracts are in schemas/
(drive-v1.schema.json, drive-v1-columns.json); readers reject anything else.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import metadata, resources
from pathlib import Path

import jsonschema
import xxhash

from sneakernet.transfer.errors import DriveError
from sneakernet.transfer.fsio import READ_FLAGS, atomic_write

FORMAT_VERSION = 1
META_DIR = ".sneakernet"
DRIVE_FILE = f"{META_DIR}/drive.json"
INDEX_FILE = f"{META_DIR}/shipment.parquet"
MANIFEST_FILE = f"{META_DIR}/manifest.parquet"
MEDIA_FILE = f"{META_DIR}/media.parquet"
SEAL_FILE = f"{META_DIR}/seal.json"
CUSTODY_FILE = f"{META_DIR}/custody.jsonl"
PARTIAL_DIR = f"{META_DIR}/partial"
PLAIN_MANIFEST = "MANIFEST.xxh128"
README_FILE = "README-SNEAKERNET.txt"
SEALED_FILES = (DRIVE_FILE, INDEX_FILE, MANIFEST_FILE, MEDIA_FILE, PLAIN_MANIFEST)
# Names at the drive root that are ours, not data (data lives under <dataset>/).
OWN_NAMES = frozenset({META_DIR, PLAIN_MANIFEST, README_FILE})
MAX_METADATA_JSON = 4 << 20  # a drive.json bigger than this is not ours


def tool_version() -> str:
    try:
        return metadata.version("sneakernet")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class DriveInfo:
    """drive.json, validated."""

    root: Path
    doc: dict
    seal: str | None = None  # set once the seal was checked

    @property
    def drive_id(self) -> str:
        return self.doc["drive"]["id"]

    @property
    def shipment_id(self) -> str:
        return self.doc["shipment"]["id"]

    @property
    def shipment_name(self) -> str:
        return self.doc["shipment"]["name"]

    @property
    def number(self) -> int:
        return self.doc["drive"]["number"]

    @property
    def of(self) -> int:
        return self.doc["drive"]["of"]

    @property
    def sealed(self) -> bool:
        return self.doc["state"] == "sealed"

    @property
    def label(self) -> str:
        return self.doc["drive"]["label"]

    def describe(self, target: object) -> None:
        """Copy who this drive is (shipment, ids, N of M, label) onto a result object."""
        target.shipment, target.shipment_id = self.shipment_name, self.shipment_id
        target.drive_id, target.number, target.of = self.drive_id, self.number, self.of
        target.label = self.label


# --- contracts -------------------------------------------------------------------------


@cache
def schema_doc(name: str) -> dict:
    return json.loads(resources.files("sneakernet.schemas").joinpath(name).read_text("utf-8"))


def _validator(definition: str | None = None) -> jsonschema.protocols.Validator:
    schema = schema_doc("drive-v1.schema.json")
    if definition is not None:
        schema = {**schema["$defs"][definition], "$defs": schema["$defs"]}
    return jsonschema.Draft202012Validator(schema)


def _validate(doc: object, where: Path, definition: str | None = None) -> None:
    errors = sorted(_validator(definition).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        at = "/".join(str(part) for part in first.absolute_path) or "top level"
        raise DriveError(
            f"malformed drive metadata ({at}: {first.message[:200]})",
            path=str(where),
            hint="the drive was not written by this sneakernet format, or was edited",
        )


# --- drive.json ------------------------------------------------------------------------


def new_drive_doc(
    *,
    drive_id: str,
    label: str,
    number: int,
    of: int,
    shipment: dict,
    versions: list[dict],
    files: int = 0,
    size: int = 0,
    state: str = "packing",
) -> dict:
    return {
        "format": "sneakernet-drive",
        "format_version": FORMAT_VERSION,
        "state": state,
        "drive": {
            "id": drive_id,
            "label": label,
            "number": number,
            "of": of,
            "files": files,
            "bytes": size,
        },
        "shipment": shipment,
        "tool": {"name": "sneakernet", "version": tool_version(), "host": socket.gethostname()},
        "versions": versions,
    }


def write_drive_doc(root: Path, doc: dict) -> None:
    _validate(doc, root / DRIVE_FILE)
    (root / META_DIR).mkdir(exist_ok=True)
    atomic_write(root / DRIVE_FILE, json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n")


def is_drive(root: Path) -> bool:
    return (root / DRIVE_FILE).is_file()


def read_drive(root: Path) -> DriveInfo:
    """Read and validate drive.json; a DriveError says why the drive cannot be used."""
    if not root.is_dir():
        raise DriveError("not a folder", path=str(root), hint="give the drive's mount point")
    meta = root / META_DIR
    if meta.is_symlink() or not meta.is_dir():
        raise DriveError(
            "not a sneakernet drive (no .sneakernet folder)",
            path=str(root),
            hint="give the mount point of a drive written by `sneakernet pack`",
        )
    data = read_metadata_bytes(root, DRIVE_FILE)
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DriveError(
            f"drive.json is not valid JSON ({exc})", path=str(root / DRIVE_FILE)
        ) from exc
    version = doc.get("format_version") if isinstance(doc, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise DriveError(
            f"drive format {doc['format_version']} is newer than this sneakernet reads "
            f"({FORMAT_VERSION})",
            path=str(root),
            hint="upgrade sneakernet on this machine",
        )
    _validate(doc, root / DRIVE_FILE)
    # What JSON Schema cannot say: drive N of M, each version once.
    info = DriveInfo(root, doc)
    pairs = [(v["dataset"], v["version"]) for v in doc["versions"]]
    twice = len(pairs) - len(set(pairs))
    if info.number > info.of or twice:
        why = f"drive {info.number} of {info.of}" if twice == 0 else "a version listed twice"
        raise DriveError(
            f"malformed drive metadata ({why})",
            path=str(root / DRIVE_FILE),
            hint="the drive was not written by this sneakernet format, or was edited",
        )
    return info


def read_metadata_bytes(root: Path, name: str, limit: int = MAX_METADATA_JSON) -> bytes:
    """A small metadata file of the drive, opened without following symlinks."""
    try:
        fd = os.open(root / name, READ_FLAGS)
    except FileNotFoundError as exc:
        raise DriveError(f"the drive has no {name}", path=str(root)) from exc
    except OSError as exc:
        raise DriveError(f"cannot read {name} ({exc.strerror})", path=str(root / name)) from exc
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DriveError(f"{name} is not a regular file", path=str(root / name))
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise DriveError(f"{name} is larger than {limit} bytes", path=str(root / name))
    return data


# --- the seal --------------------------------------------------------------------------


def _hash_metadata_file(path: Path) -> dict:
    hasher = xxhash.xxh3_128()
    size = 0
    fd = os.open(path, READ_FLAGS)
    with os.fdopen(fd, "rb", buffering=0) as handle:
        # A device node (a /dev/zero twin) on a hostile drive would be read forever.
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
            size += len(chunk)
    return {"size": size, "xxh128": hasher.hexdigest()}


def _seal_of(files: dict) -> str:
    canonical = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
    return xxhash.xxh3_128_hexdigest(canonical)


def write_seal(root: Path) -> str:
    files = {name: _hash_metadata_file(root / name) for name in SEALED_FILES}
    doc = {
        "format": "sneakernet-seal",
        "format_version": FORMAT_VERSION,
        "algorithm": "xxh128",
        "files": files,
        "seal": _seal_of(files),
    }
    atomic_write(root / SEAL_FILE, json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n")
    return doc["seal"]


def check_seal(root: Path) -> tuple[str | None, list[str]]:
    """(the seal, what breaks it). An empty list means every sealed file is intact."""
    try:
        doc = json.loads(read_metadata_bytes(root, SEAL_FILE))
        _validate(doc, root / SEAL_FILE, "seal")
    except (DriveError, ValueError) as exc:
        return None, [f"seal.json was edited or damaged: {exc}"]
    problems = []
    if set(doc["files"]) != set(SEALED_FILES):
        problems.append("seal lists other files than format 1 seals")
    if _seal_of(doc["files"]) != doc["seal"]:
        problems.append("seal.json was edited: its seal does not match its file list")
    for name in SEALED_FILES:
        recorded = doc["files"].get(name)
        try:
            found = _hash_metadata_file(root / name)
        except OSError as exc:
            problems.append(f"{name}: cannot read ({exc.strerror})")
            continue
        if recorded is not None and found != recorded:
            what = "truncated or extended" if found["size"] != recorded["size"] else "edited"
            problems.append(f"{name}: {what} since the drive was sealed")
    return doc["seal"], problems


# --- the plain manifest and the README -------------------------------------------------


def plain_manifest_line(digest: str, drive_path: str) -> str | None:
    """One `xxhsum -c` line, or None for a name xxhsum 0.8 cannot express (a line break)."""
    if "\n" in drive_path or "\r" in drive_path:
        return None
    return f"{digest}  {drive_path}\n"


def readme_text(info: dict, unlisted: int) -> str:
    shipment, drive = info["shipment"], info["drive"]
    lines = [
        "This drive was written by sneakernet (drive format 1).",
        "",
        f"Shipment: {shipment['name']} ({shipment['id']})",
        f"From site: {shipment['from_site'] or '(not given)'}   "
        f"To site: {shipment['to_site'] or '(not given)'}",
        f"Drive {drive['number']} of {drive['of']}, label {drive['label']!r}, id {drive['id']}",
        f"Files on this drive: {drive['files']} ({drive['bytes']} bytes)",
        "",
        "Data is in <dataset>/<version>/<path>. To check it without sneakernet:",
        "",
        "    cd <this drive> && xxhsum -c MANIFEST.xxh128",
        "",
        "With sneakernet: `sneakernet verify <this drive>`; `sneakernet ingest` copies it",
        "into a store. .sneakernet/ holds the Parquet manifests and the seal.",
    ]
    if unlisted:
        lines += [
            "",
            f"{unlisted} file(s) with a line break in their name are not in",
            "MANIFEST.xxh128 (xxhsum cannot express them); sneakernet verify checks them.",
        ]
    return "\n".join(lines) + "\n"


# --- custody log -----------------------------------------------------------------------


def append_custody(root: Path, event: dict) -> None:
    """Append one event to the drive's custody log, durably."""
    _validate(event, root / CUSTODY_FILE, "custody_event")
    line = json.dumps(event, sort_keys=True, ensure_ascii=True).encode() + b"\n"
    fd = os.open(root / CUSTODY_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_custody(root: Path) -> list[dict]:
    """The drive's custody events; lines that are not valid events are skipped."""
    try:
        data = read_metadata_bytes(root, CUSTODY_FILE, limit=64 << 20)
    except DriveError:
        return []
    events = []
    validator = _validator("custody_event")
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if validator.is_valid(event):
            events.append(event)
    return events

