"""`stats`: what a version holds: files, bytes, hours of video, frames, problems."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import UsageError
from sneakernet.catalog.refs import VersionRef, parse_ref, resolve

GROUPINGS = {
    "codec": "m.codec",
    "resolution": "CASE WHEN m.width IS NOT NULL THEN m.width || 'x' || m.height END",
    "fps": "round(m.fps, 3)::VARCHAR",
    "container": "m.container",
    "ext": "nullif(lower(regexp_extract(e.path, '\\.([^./]+)$', 1)), '')",
}

_MEASURES = """
    count(*) AS files,
    coalesce(sum(e.size), 0) AS bytes,
    count(m.hash) FILTER (m.ok) AS video_files,
    coalesce(sum(m.duration) FILTER (m.ok), 0) / 3600.0 AS video_hours,
    coalesce(sum(m.frames) FILTER (m.ok), 0) AS frames,
    count(*) FILTER (NOT m.ok) AS broken_files,
    count(*) FILTER (e.status <> 'ok') AS unread_files
"""


@dataclass(frozen=True, slots=True)
class Group:
    key: str | None
    files: int
    bytes: int
    video_files: int
    video_hours: float
    frames: int
    broken_files: int
    unread_files: int


@dataclass(slots=True)
class Stats:
    dataset: str
    version: int
    total: Group
    symlinks: int
    duplicate_files: int  # files whose content appears earlier in the same version
    duplicate_bytes: int
    by: str | None = None
    groups: list[Group] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _sum_groups(groups: list[Group]) -> Group:
    """The total of a grouping: every measure is a sum or a count, so groups add up."""
    return Group(None, *(sum(getattr(g, f) for g in groups) for f in Group.__slots__[1:]))


def stats(catalog: Catalog, ref: VersionRef | str, *, by: str | None = None) -> Stats:
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    if by is not None and by not in GROUPINGS:
        raise UsageError(f"cannot group by {by!r}", hint=f"use one of {', '.join(GROUPINGS)}")
    with catalog.read() as con:
        version = resolve(con, ref)
        where = "e.dataset = ? AND e.version = ? AND e.kind = 'file'"
        params = [ref.dataset, version]
        base = f"FROM entries e LEFT JOIN media m ON m.hash = e.hash AND e.is_video WHERE {where}"
        symlinks = con.execute(
            "SELECT count(*) FROM entries WHERE dataset = ? AND version = ? AND kind = 'symlink'",
            params,
        ).fetchone()[0]
        dup_files, dup_bytes = con.execute(
            "SELECT duplicate_files, duplicate_bytes FROM versions"
            " WHERE dataset = ? AND version = ?",
            params,
        ).fetchone()
        groups: list[Group] = []
        if by is None:
            total = Group(None, *con.execute(f"SELECT {_MEASURES} {base}", params).fetchone())
        else:
            rows = con.execute(
                f"SELECT {GROUPINGS[by]} AS key, {_MEASURES} {base}"
                " GROUP BY key ORDER BY bytes DESC, key",
                params,
            ).fetchall()
            groups = [Group(*row) for row in rows]
            total = _sum_groups(groups)
    return Stats(ref.dataset, version, total, symlinks, int(dup_files), int(dup_bytes), by, groups)
