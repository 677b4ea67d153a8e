"""A big catalog: stats/versions/datasets latency over 10,000,000 entries.

    python bench/catalog_10m.py [--versions 10] [--entries 1000000] [--runs 3] [--json]

The catalog is generated with DuckDB SQL straight into the tables of
schemas/catalog.sql (no scan): dataset "big", N versions x M entries (10% .mp4,
1% of files changing per version, 0.1% symlinks), media rows for every .mp4
content hash (1% broken). Then `stats big@N`, `stats big@N --by codec`,
`versions big` and `datasets` are timed through the library and the CLI.
Bar: stats answers in under a second.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

CODECS = "['h264', 'hevc', 'prores', 'vp9', 'av1', 'mpeg4']"
CONTAINERS = "['mov', 'mov', 'mov', 'matroska', 'matroska', 'avi']"


# How each entries column is made from the generator's i, chg, kind, video, path, size,
# mtime_ns. The catalog schema evolves: columns are matched by name at run time.
ENTRY_EXPRS = {
    "dataset": "'big'",
    "version": "{v}",
    "path": "path",
    "raw_path": "NULL",
    "kind": "kind",
    "size": "size",
    "mtime_ns": "mtime_ns",
    "mode": "33188",
    "inode": "i + 1",
    "device": "2049",
    "hash": "CASE WHEN kind = 'file' THEN md5(i::VARCHAR || ':' || chg) END",
    "link_target": "CASE WHEN kind = 'symlink' THEN 'target' END",
    "is_video": "video",
    "status": "'ok'",
    "error": "NULL",
}


def _entry_columns(con) -> tuple[list[str], dict[str, str]]:
    rows = con.execute(
        "SELECT column_name, is_nullable FROM duckdb_columns()"
        " WHERE schema_name = 'main' AND table_name = 'entries' ORDER BY column_index"
    ).fetchall()
    unknown = [name for name, nullable in rows if name not in ENTRY_EXPRS and not nullable]
    if unknown:
        raise SystemExit(f"catalog_10m: entries has new NOT NULL columns {unknown}; "
                         "add them to ENTRY_EXPRS")
    cols = [name for name, _ in rows if name in ENTRY_EXPRS]
    return cols, dict(ENTRY_EXPRS)


def build(path: Path, versions: int, entries: int) -> None:
    import duckdb

    from sneakernet.catalog.db import Catalog

    for p in path.parent.glob(path.name + "*"):
        p.unlink()
    Catalog(path).ensure_schema()
    con = duckdb.connect(str(path))
    try:
        cols, exprs = _entry_columns(con)
        con.execute("INSERT INTO datasets (name, created_at) VALUES ('big', now())")
        for v in range(1, versions + 1):
            started = time.perf_counter()
            # chg: the version in which file i last changed (1% of files change per version).
            con.execute(
                f"""
                INSERT INTO entries ({", ".join(cols)})
                SELECT {", ".join(exprs[c].format(v=v) for c in cols)}
                FROM (
                    SELECT i, chg,
                           CASE WHEN i % 1000 = 999 THEN 'symlink' ELSE 'file' END AS kind,
                           i % 10 = 0 AS video,
                           printf('cam%02d/day%03d/f%07d.%s', i % 20, (i // 2000) % 365, i,
                                  CASE WHEN i % 10 = 0 THEN 'mp4' ELSE 'jpg' END) AS path,
                           CASE WHEN i % 10 = 0 THEN 50000000 + (i * 7919 + chg) % 450000000
                                ELSE 200000 + (i * 7919 + chg) % 4000000 END AS size,
                           1700000000000000000 + i * 1000 + chg AS mtime_ns
                    FROM (SELECT range AS i,
                                 CASE WHEN range % 100 < {v} - 1 THEN {v} ELSE 1 END AS chg
                          FROM range({entries}))
                )
                ORDER BY path
                """
            )
            files, size = con.execute(
                "SELECT count(*) FILTER (kind = 'file'), sum(size) FILTER (kind = 'file')"
                " FROM entries WHERE dataset = 'big' AND version = ?", [v]).fetchone()
            dup_files, dup_bytes = con.execute(
                "SELECT coalesce(sum(n - 1), 0), coalesce(sum((n - 1) * s), 0) FROM ("
                " SELECT count(*) AS n, any_value(size) AS s FROM entries WHERE dataset = 'big'"
                " AND version = ? AND kind = 'file' GROUP BY hash HAVING count(*) > 1)", [v]
            ).fetchone()
            # Columns by name: migrations add columns to versions (v2: provenance).
            con.execute("INSERT INTO versions (dataset, version, label, created_at, origin, root,"
                        " host, files, bytes, duplicate_files, duplicate_bytes)"
                        " VALUES ('big', ?, ?, now(), 'scan', '/data/big', 'bench', ?, ?, ?, ?)",
                        [v, f"v{v}" if v % 5 == 0 else None, files, size, dup_files, dup_bytes])
            c.note(f"version {v}: {files:,} files in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        con.execute(
            f"""
            INSERT INTO media (hash, probe_version, ok, error, container, codec, profile, width,
                               height, pix_fmt, bit_depth, fps, vfr, duration, frames, bit_rate,
                               rotation, creation_time, audio)
            SELECT hash, 1, k % 100 <> 0, CASE WHEN k % 100 = 0 THEN 'ends early' END,
                   {CONTAINERS}[k % 6 + 1], {CODECS}[k % 6 + 1], 'Main',
                   [1920, 3840, 1280][k % 3 + 1], [1080, 2160, 720][k % 3 + 1], 'yuv420p', 8,
                   [25.0, 29.97, 30.0, 50.0][k % 4 + 1], false, 60 + k % 600,
                   (60 + k % 600) * 25, 20000000, 0, NULL,
                   [{{'stream': 1, 'codec': 'aac', 'channels': 2, 'sample_rate': 48000}}]
            FROM (SELECT DISTINCT hash, (hash(hash) % 1000003)::BIGINT AS k FROM entries
                  WHERE dataset = 'big' AND path LIKE '%.mp4' AND hash IS NOT NULL)
            """
        )
        c.note(f"media rows in {time.perf_counter() - started:.1f} s")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def main() -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--versions", type=int, default=10)
    p.add_argument("--entries", type=int, default=1_000_000, help="entries per version")
    args = p.parse_args()

    from sneakernet.catalog import stats as stats_mod
    from sneakernet.catalog import versions as versions_mod
    from sneakernet.catalog.db import Catalog

    latest = f"big@{args.versions}"
    rep = c.Report(f"catalog_10m: {args.versions} versions x {args.entries:,} entries")
    with c.work_dir(args, "cat10m") as work:
        path = work / "catalog.duckdb"
        started = time.perf_counter()
        build(path, args.versions, args.entries)
        build_s = time.perf_counter() - started
        import duckdb

        con = duckdb.connect(str(path), read_only=True)
        n_entries, n_media = con.execute(
            "SELECT (SELECT count(*) FROM entries), (SELECT count(*) FROM media)").fetchone()
        con.close()
        rep.info.update(entries=n_entries, media_rows=n_media, build_seconds=round(build_s, 1),
                        catalog_file_MB=round(path.stat().st_size / 1e6, 1), runs=args.runs,
                        work=str(work))
        c.prewarm([path])
        cat = Catalog(path)
        queries = {
            f"stats {latest}": lambda: stats_mod.stats(cat, latest),
            f"stats {latest} --by codec": lambda: stats_mod.stats(cat, latest, by="codec"),
            "stats big@1 --by resolution": lambda: stats_mod.stats(cat, "big@1", by="resolution"),
            "versions big": lambda: versions_mod.list_versions(cat, "big"),
            "datasets": lambda: versions_mod.list_datasets(cat),
        }
        cli_args = {
            f"stats {latest}": ["stats", latest],
            f"stats {latest} --by codec": ["stats", latest, "--by", "codec"],
            "stats big@1 --by resolution": ["stats", "big@1", "--by", "resolution"],
            "versions big": ["versions", "big"],
            "datasets": ["datasets"],
        }
        timings = {}
        for name, fn in queries.items():
            lib_s, _ = c.best_of(fn, args.runs, name=f"{name} (library)")
            cli_s, _ = c.time_cmd([*c.sneakernet_cmd(), "--catalog", str(path),
                                   *cli_args[name], "--json"], args.runs, name=f"{name} (CLI)")
            timings[name] = (lib_s, cli_s)
            rep.row(name, None, library_s=lib_s, CLI_s=cli_s)
        start_s, _ = c.time_cmd([*c.sneakernet_cmd(), "--help"], args.runs, name="--help")
        rep.row("sneakernet --help (CLI start-up)", None, CLI_s=start_s)
        for name, (lib_s, cli_s) in timings.items():
            if name.startswith("stats"):
                rep.bar(f"{name}, library", lib_s, 1.0, higher_is_better=False, unit=" s")
                rep.bar(f"{name}, CLI", cli_s, 1.0, higher_is_better=False, unit=" s")
    rep.print(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
