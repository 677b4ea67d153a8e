"""`diff`: what changed between two versions: added, removed, modified, moved."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.refs import VersionRef, parse_ref, resolve

# Paths are the identity; a removed path and an added path with the same
# content pair up as a move (the n-th removed copy with the n-th added copy).
# Whether a row moved is asked of that pairing, not of its readable path: two
# names can share one (a file named `a\xff` in text and one whose name holds
# the byte 0xff), and a path test took the removal of one for the other's move.
_DIFF_SQL = """
WITH a AS (SELECT path, raw_path, kind, size, hash, link_target FROM entries
           WHERE dataset = $da AND version = $va),
     b AS (SELECT path, raw_path, kind, size, hash, link_target FROM entries
           WHERE dataset = $db AND version = $vb),
     j AS (SELECT a.path AS a_path, b.path AS b_path, a.size AS a_size, b.size AS b_size,
                  a.hash AS a_hash, b.hash AS b_hash, a.kind AS a_kind, b.kind AS b_kind,
                  a.link_target AS a_link, b.link_target AS b_link
           FROM a FULL OUTER JOIN b
             ON a.path = b.path AND a.raw_path IS NOT DISTINCT FROM b.raw_path),
     gone AS (SELECT *, row_number() OVER (PARTITION BY a_hash ORDER BY a_path) AS n
              FROM j WHERE b_path IS NULL),
     came AS (SELECT *, row_number() OVER (PARTITION BY b_hash ORDER BY b_path) AS n
              FROM j WHERE a_path IS NULL),
     moved AS (SELECT 'moved' AS change, came.b_path AS path, gone.a_path AS old_path,
                      came.b_size AS size, gone.a_size AS old_size,
                      came.b_hash AS hash, gone.a_hash AS old_hash
               FROM gone JOIN came ON gone.a_hash = came.b_hash AND gone.n = came.n)
SELECT * FROM moved
UNION ALL
SELECT 'removed', a_path, NULL, NULL, a_size, NULL, a_hash FROM gone
  WHERE NOT EXISTS (SELECT 1 FROM came WHERE came.b_hash = gone.a_hash AND came.n = gone.n)
UNION ALL
SELECT 'added', b_path, NULL, b_size, NULL, b_hash, NULL FROM came
  WHERE NOT EXISTS (SELECT 1 FROM gone WHERE gone.a_hash = came.b_hash AND gone.n = came.n)
UNION ALL
SELECT 'modified', b_path, NULL, b_size, a_size, b_hash, a_hash FROM j
  WHERE a_path IS NOT NULL AND b_path IS NOT NULL
    AND (a_hash IS DISTINCT FROM b_hash OR a_kind <> b_kind
         OR a_link IS DISTINCT FROM b_link OR a_size <> b_size)
ORDER BY 2, 1
"""

CHANGE_KINDS = ("added", "removed", "modified", "moved")


@dataclass(frozen=True, slots=True)
class Change:
    change: str  # added, removed, modified, moved
    path: str  # the path in the newer version (the old one for removed)
    old_path: str | None  # for moved: where it was
    size: int | None
    old_size: int | None
    hash: str | None
    old_hash: str | None


@dataclass(slots=True)
class DiffResult:
    old: str
    new: str
    changes: list[Change] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if c.change == kind)

    @property
    def counts(self) -> dict[str, int]:
        return {kind: self.count(kind) for kind in CHANGE_KINDS}

    def to_dict(self) -> dict:
        return {
            "old": self.old,
            "new": self.new,
            "counts": self.counts,
            "changes": [asdict(c) for c in self.changes],
        }


def diff(catalog: Catalog, old: VersionRef | str, new: VersionRef | str) -> DiffResult:
    old = parse_ref(old) if isinstance(old, str) else old
    new = parse_ref(new) if isinstance(new, str) else new
    with catalog.read() as con:
        va, vb = resolve(con, old), resolve(con, new)
        rows = con.execute(
            _DIFF_SQL, {"da": old.dataset, "va": va, "db": new.dataset, "vb": vb}
        ).fetchall()
    return DiffResult(
        f"{old.dataset}@{va}", f"{new.dataset}@{vb}", [Change(*row) for row in rows]
    )
