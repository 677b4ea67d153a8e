"""A million tiny files: wall time and peak memory of a CLI scan (and of the rescan).

    python bench/scan_million.py [--files 1000000] [--per-folder 1000] [--json]

Files are half empty, half a few bytes, 1000 per folder, made with
os.open/os.write/os.close in a tight loop. The scan runs as a CLI subprocess
under /usr/bin/time -v (else getrusage of a helper) for its peak RSS.
Bar: peak RSS < 500 MB. `--files 200000` for a quicker run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

RSS_BAR_MB = 500


def main() -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.set_defaults(runs=1)
    p.add_argument("--files", type=int, default=1_000_000)
    p.add_argument("--per-folder", type=int, default=1000)
    p.add_argument("--no-rescan", action="store_true", help="skip the rescan")
    args = p.parse_args()

    rep = c.Report(f"scan_million: {args.files:,} empty or tiny files, CLI scan")
    with c.work_dir(args, "million") as work:
        root = work / "tiny"
        c.note(f"making {args.files:,} files in {root}")
        started = time.perf_counter()
        total = c.make_tiny_tree(root, args.files, per_folder=args.per_folder)
        make_s = time.perf_counter() - started
        c.note(f"made (or found) them in {make_s:.1f} s")
        catalog = work / "catalog.duckdb"
        cli = [*c.sneakernet_cmd(), "--catalog", str(catalog), "scan", str(root),
               "--dataset", "tiny", "--json"]
        rep.info.update(files=args.files, bytes=total, make_seconds=round(make_s, 1),
                        work=str(work))

        def once(what: str) -> c.Peak:
            c.note(f"{what}: running {' '.join(cli)}")
            peak = c.run_with_peak_rss(cli)
            if peak.returncode != 0:
                raise RuntimeError(f"scan failed ({peak.returncode}): {peak.stderr[-2000:]}")
            data = json.loads(peak.stdout)
            rep.row(what, peak.seconds, files_s=args.files / peak.seconds,
                    peak_RSS_MB=peak.max_rss_bytes / 1e6, hashed=data["hashed_files"],
                    inside=f"{data['seconds']:.1f} s in scan(): " + c.phases(data["phase_seconds"]))
            c.note(f"{what}: {peak.seconds:.1f} s, peak RSS {peak.max_rss_bytes / 1e6:.0f} MB")
            rep.info["peak RSS from"] = peak.source
            return peak

        firsts = []
        for _ in range(args.runs):
            c.fresh_catalog(catalog)
            firsts.append(once("first scan (CLI)"))
        first = min(firsts, key=lambda x: x.seconds)
        rescan = None if args.no_rescan else once("rescan, nothing changed (CLI)")
        rep.info["catalog_file_MB"] = round(catalog.stat().st_size / 1e6, 1)
        rep.bar("first scan peak RSS", max(f.max_rss_bytes for f in firsts) / 1e6, RSS_BAR_MB,
                higher_is_better=False, unit=" MB")
        if rescan is not None:
            rep.bar("rescan peak RSS", rescan.max_rss_bytes / 1e6, RSS_BAR_MB,
                    higher_is_better=False, unit=" MB")
            rep.bar("rescan faster than first scan", first.seconds / rescan.seconds, 10)
    rep.print(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
