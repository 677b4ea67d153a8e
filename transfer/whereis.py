"""`whereis`: every copy the catalog knows of a version or a file, drives need not be mounted.

Copies are found by content hash: source folders (scanned versions), stores
(ingested versions) and the drives of shipments (their recorded file lists).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import NotFoundError
from sneakernet.catalog.refs import parse_ref, resolve


@dataclass(frozen=True, slots=True)
class Copy:
    kind: str  # folder, store or drive
    where: str  # a folder, or "shipment NAME drive N (LABEL)"
    files: int  # of the asked-for content it holds
    bytes: int
    total_files: int
    path: str | None = None  # with a PATH question: the file's path there

    @property
    def complete(self) -> bool:
        return self.files == self.total_files

    def to_dict(self) -> dict:
        return {**asdict(self), "complete": self.complete}


_FOLDERS = """
WITH places AS (
    SELECT dataset, version, CASE origin WHEN 'ingest' THEN 'store' ELSE 'folder' END AS kind,
           root
    FROM versions WHERE root IS NOT NULL
    UNION SELECT dataset, version, 'store', root FROM version_copies)
SELECT kind, root, count(*), sum(size), min(path) FROM (
    SELECT DISTINCT ON (p.kind, p.root, w.hash) p.kind, p.root, w.hash, w.size, e.path
    FROM want w JOIN entries e ON e.hash = w.hash AND e.kind = 'file'
    JOIN places p USING (dataset, version))
GROUP BY ALL ORDER BY 1, 2"""

_DRIVES = """
SELECT 'drive', 'shipment ' || s.name || ' drive ' || d.number || ' of ' || s.drives
       || ' (' || coalesce(d.label, '?') || ')', count(*), sum(size), min(drive_path)
FROM (SELECT DISTINCT ON (se.shipment_id, se.drive_number, w.hash) se.shipment_id,
             se.drive_number, w.hash, w.size, se.drive_path
      FROM want w JOIN shipment_entries se ON se.hash = w.hash AND se.carried) c
JOIN drives d ON d.shipment_id = c.shipment_id AND d.number = c.drive_number
JOIN shipments s ON s.shipment_id = c.shipment_id
GROUP BY ALL ORDER BY 2"""


def whereis(catalog: Catalog, ref: str, path: str | None = None) -> list[Copy]:
    """Where the content of `ref` (or of one file in it) is held, most complete first."""
    parsed = parse_ref(ref)
    with catalog.read() as con:
        version = resolve(con, parsed)
        where = "dataset = ? AND version = ? AND kind = 'file' AND hash IS NOT NULL"
        params: list = [parsed.dataset, version]
        if path is not None:
            where += " AND path = ?"
            params.append(path.strip("/"))
        con.execute(
            f"CREATE TEMP TABLE want AS SELECT DISTINCT hash, size FROM entries WHERE {where}",
            params,
        )
        total = con.execute("SELECT count(*) FROM want").fetchall()[0][0]
        if path is not None and total == 0:
            raise NotFoundError(
                f"{parsed.dataset}@{version} has no file {path!r}",
                hint=f"see `sneakernet ls {parsed.dataset}@{version}`",
            )
        rows = con.execute(_FOLDERS).fetchall() + con.execute(_DRIVES).fetchall()
    copies = [
        Copy(kind, where_, files, int(size or 0), total, shown if path is not None else None)
        for kind, where_, files, size, shown in rows
    ]
    return sorted(copies, key=lambda c: (-c.files, c.kind, c.where))
