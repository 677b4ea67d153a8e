"""Big files: sneakernet scan throughput vs cat (the read ceiling), xxhsum -H2 and b3sum.

    python bench/scan_big.py [--size-mib 512] [--count 4] [--runs 3] [--json]

Bars: first scan >= 0.8x cat and >= 1.5x xxhsum -H2 (throughput); rescan of an
unchanged tree >= 10x faster than the first scan. Data is pre-warmed in page
cache, so this measures the CPU side (read copies, hashing, catalog writes).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c


def main() -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=512, help="size of each file")
    p.add_argument("--count", type=int, default=4, help="number of files")
    p.add_argument("--workers", type=int, default=None, help="scan workers [default: sneakernet's]")
    args = p.parse_args()

    from sneakernet.catalog.db import Catalog
    from sneakernet.catalog.scan import default_workers, scan

    rep = c.Report(f"scan_big: {args.count} x {args.size_mib} MiB random files")
    with c.work_dir(args, "big") as work:
        root = work / "big"
        c.note(f"making {args.count} x {args.size_mib} MiB in {root}")
        files = c.make_random_files(root, args.count, args.size_mib * c.MiB)
        total = sum(f.stat().st_size for f in files)
        warm = lambda: c.prewarm(files)  # noqa: E731
        names = " ".join(c.q(f) for f in files)
        rep.info.update(bytes=total, runs=args.runs,
                        workers=args.workers or default_workers(), work=str(work))

        def add(what: str, secs: float, **extra: object) -> None:
            rep.row(what, secs, GB_s=c.gbps(total, secs), **extra)

        cat_s, _ = c.time_cmd(f"cat {names} > /dev/null", args.runs, shell=True, setup=warm,
                              name="cat")
        add("cat > /dev/null", cat_s)
        xxh_s = None
        if c.ensure_apt("xxhsum", "xxhash"):
            xxh_s, _ = c.time_cmd(f"xxhsum -H2 {names} > /dev/null", args.runs, shell=True,
                                  setup=warm, name="xxhsum")
            add("xxhsum -H2 (1 thread)", xxh_s)
        else:
            rep.skip("xxhsum", "not installable")
        if c.ensure_apt("b3sum"):
            b3_s, _ = c.time_cmd(f"b3sum {names} > /dev/null", args.runs, shell=True, setup=warm,
                                 name="b3sum")
            add("b3sum (info, all cores)", b3_s)
            b3_1, _ = c.time_cmd(f"b3sum --num-threads 1 --no-mmap {names} > /dev/null",
                                 args.runs, shell=True, setup=warm, name="b3sum-1")
            add("b3sum --num-threads 1 (info)", b3_1)
        else:
            rep.skip("b3sum", "not installable")

        catalog = work / "catalog.duckdb"
        results = []

        def lib_first() -> object:
            res = scan(Catalog(catalog), root, "big", workers=args.workers)
            results.append(res)
            return res

        lib_s, _ = c.best_of(lib_first, args.runs,
                             setup=c.both(warm, lambda: c.fresh_catalog(catalog)),
                             name="scan (library)")
        best = min(results, key=lambda r: r.seconds)
        assert best.hashed_files == args.count, best
        add("sneakernet scan, library", lib_s, inside=c.phases(best.phase_seconds))

        # Rescan, nothing changed: the catalog of the last first scan has the cache.
        re_results = []

        def lib_rescan() -> object:
            res = scan(Catalog(catalog), root, "big", workers=args.workers)
            re_results.append(res)
            return res

        re_s, _ = c.best_of(lib_rescan, args.runs, setup=warm, name="rescan (library)")
        rbest = min(re_results, key=lambda r: r.seconds)
        assert rbest.hashed_files == 0 and not rbest.changed, rbest
        rep.row("sneakernet rescan, library", re_s, inside=c.phases(rbest.phase_seconds))

        cli = [*c.sneakernet_cmd(), "--catalog", str(catalog), "scan", str(root),
               "--dataset", "big", "--json"]
        if args.workers:
            cli += ["--threads", str(args.workers)]
        fresh = c.both(warm, lambda: c.fresh_catalog(catalog))
        cli_s, proc = c.time_cmd(cli, args.runs, setup=fresh, name="scan (CLI)")
        add("sneakernet scan, CLI", cli_s, inside=c.cli_inside(proc.stdout))
        py_s, proc = c.time_cmd(c.fresh_process_scan_cmd(catalog, root, "big"), args.runs,
                                setup=fresh, name="scan (fresh python)")
        add("scan(), fresh python process (info)", py_s, inside=c.cli_inside(proc.stdout))
        cli_re_s, proc = c.time_cmd(cli, args.runs, setup=warm, name="rescan (CLI)")
        rep.row("sneakernet rescan, CLI", cli_re_s, inside=c.cli_inside(proc.stdout))
        import_s, _ = c.time_cmd([*c.sneakernet_cmd(), "--help"], args.runs, name="cli --help")
        rep.row("sneakernet --help (CLI start-up)", import_s)

        rep.bar("scan vs cat (library)", cat_s / lib_s, 0.8)
        rep.bar("scan vs cat (CLI)", cat_s / cli_s, 0.8)
        if xxh_s:
            rep.bar("scan vs xxhsum -H2 (library)", xxh_s / lib_s, 1.5)
            rep.bar("scan vs xxhsum -H2 (CLI)", xxh_s / cli_s, 1.5)
        rep.bar("rescan faster than first scan (library)", lib_s / re_s, 10)
        rep.bar("rescan faster than first scan (CLI)", cli_s / cli_re_s, 10)
        rep.notes.append("first scans use a fresh catalog each run (schema created untimed); "
                         "CLI times include interpreter start-up and imports")
    rep.print(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
