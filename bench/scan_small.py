"""Small files: sneakernet scan files/s vs xargs xxhsum, bagit and ascmhl (hashdeep for info).

    python bench/scan_small.py [--files 100000] [--folders 300] [--runs 3] [--json]

Bars: first scan >= 0.5x `find | xargs -0 xxhsum -H2`; >= 10x bagit and ascmhl
(files/s); rescan of an unchanged tree >= 10x faster than the first scan.
bagit moves files into data/ and ascmhl writes ascmhl/, so each of their runs
gets a fresh hard-linked copy of the tree (made untimed; same cached pages).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c


def main() -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--folders", type=int, default=300)
    p.add_argument("--workers", type=int, default=None, help="scan workers [default: sneakernet's]")
    p.add_argument("--peer-runs", type=int, default=1, help="runs of bagit and ascmhl")
    p.add_argument("--bagit-checksums", default="",
                   help="comma list, e.g. md5 or sha256 [default: bagit's own default]")
    args = p.parse_args()

    from sneakernet.catalog.db import Catalog
    from sneakernet.catalog.scan import default_workers, scan

    rep = c.Report(f"scan_small: {args.files:,} files of 1-64 KiB in {args.folders} folders")
    with c.work_dir(args, "small") as work:
        root = work / "tree"
        c.note(f"making {args.files:,} files in {root}")
        files, total = c.make_small_tree(root, args.files, folders=args.folders)
        warm = lambda: c.prewarm([root])  # noqa: E731
        rep.info.update(files=files, bytes=total, runs=args.runs,
                        workers=args.workers or default_workers(), work=str(work))

        def add(what: str, secs: float, **extra: object) -> None:
            rep.row(what, secs, files_s=files / secs, MB_s=total / secs / 1e6, **extra)

        find_s = None
        if c.ensure_apt("xxhsum", "xxhash"):
            find_s, _ = c.time_cmd(
                f"find {c.q(root)} -type f -print0 | xargs -0 xxhsum -H2 > /dev/null",
                args.runs, shell=True, setup=warm, name="find | xargs xxhsum")
            add("find | xargs -0 xxhsum -H2", find_s)
        else:
            rep.skip("xxhsum", "not installable")

        catalog = work / "catalog.duckdb"
        results = []

        def lib_first() -> object:
            res = scan(Catalog(catalog), root, "small", workers=args.workers)
            results.append(res)
            return res

        fresh = c.both(warm, lambda: c.fresh_catalog(catalog))
        lib_s, best = c.best_of(lib_first, args.runs, setup=fresh, name="scan (library)")
        assert best.hashed_files == files, best
        add("sneakernet scan, library", lib_s, inside=c.phases(best.phase_seconds))
        re_s, rbest = c.best_of(
            lambda: scan(Catalog(catalog), root, "small", workers=args.workers), args.runs,
            setup=warm, name="rescan (library)")
        assert rbest.hashed_files == 0 and not rbest.changed, rbest
        add("sneakernet rescan, library", re_s, inside=c.phases(rbest.phase_seconds))

        cli = [*c.sneakernet_cmd(), "--catalog", str(catalog), "scan", str(root),
               "--dataset", "small", "--json"]
        if args.workers:
            cli += ["--threads", str(args.workers)]
        cli_s, proc = c.time_cmd(cli, args.runs, setup=fresh, name="scan (CLI)")
        add("sneakernet scan, CLI", cli_s, inside=c.cli_inside(proc.stdout))
        py_s, proc = c.time_cmd(c.fresh_process_scan_cmd(catalog, root, "small"), args.runs,
                                setup=fresh, name="scan (fresh python)")
        add("scan(), fresh python process (info)", py_s, inside=c.cli_inside(proc.stdout))
        cli_re_s, proc = c.time_cmd(cli, args.runs, setup=warm, name="rescan (CLI)")
        add("sneakernet rescan, CLI", cli_re_s, inside=c.cli_inside(proc.stdout))

        if c.ensure_apt("hashdeep"):
            hd_s, _ = c.time_cmd(f"hashdeep -r -c md5 {c.q(root)} > /dev/null", args.peer_runs,
                                 shell=True, setup=warm, name="hashdeep")
            add("hashdeep -r -c md5 (info, all cores)", hd_s)
        else:
            rep.skip("hashdeep", "not installable")

        copy = work / "copy"
        bag_s = mhl_s = None
        if c.ensure_pip("bagit"):
            import bagit

            checksums = [x for x in args.bagit_checksums.split(",") if x] or list(
                bagit.DEFAULT_CHECKSUMS)
            bag_s, _ = c.best_of(
                lambda: bagit.make_bag(str(copy), checksums=checksums, processes=1),
                args.peer_runs, setup=c.both(lambda: c.hardlink_copy(root, copy), warm),
                name="bagit")
            add(f"bagit.make_bag ({'+'.join(checksums)}, 1 process)", bag_s)
        else:
            rep.skip("bagit", "not installable")
        if c.ensure_pip("ascmhl") and c.script_of("ascmhl"):
            mhl = [c.script_of("ascmhl"), "create", "-h", "xxh128", str(copy)]
            mhl_s, _ = c.time_cmd(mhl, args.peer_runs,
                                  setup=c.both(lambda: c.hardlink_copy(root, copy), warm),
                                  name="ascmhl")
            add("ascmhl create -h xxh128", mhl_s)
        else:
            rep.skip("ascmhl", "not installable")
        shutil.rmtree(copy, ignore_errors=True)

        if find_s:
            rep.bar("scan vs find|xargs xxhsum (library)", find_s / lib_s, 0.5)
            rep.bar("scan vs find|xargs xxhsum (CLI)", find_s / cli_s, 0.5)
        if bag_s:
            rep.bar("scan vs bagit (CLI)", bag_s / cli_s, 10)
        if mhl_s:
            rep.bar("scan vs ascmhl (CLI)", mhl_s / cli_s, 10)
        rep.bar("rescan faster than first scan (library)", lib_s / re_s, 10)
        rep.bar("rescan faster than first scan (CLI)", cli_s / cli_re_s, 10)
        rep.notes.append("first scans use a fresh catalog each run (schema created untimed); "
                         "CLI times include interpreter start-up and imports; "
                         "bagit runs in-process (no start-up), ascmhl as its CLI")
    rep.print(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
