"""A million tiny files: wall time and peak memory of CLI pack and verify.

    python bench/transfer_million.py [--files 1000000] [--per-folder 1000] [--json]

Files are half empty, half a few bytes (bench/_common.make_tiny_tree), scanned
once with the CLI, packed by the CLI to a folder "drive", then that drive is
verified by the CLI. Each command runs as a subprocess under /usr/bin/time -v
(else getrusage of a helper) for its peak RSS. Bars: pack and verify peak RSS
< 500 MB. `--files 200000` for a quicker run. The empty files share one hash,
so about half the files are carried (the rest are duplicates, listed only).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
import _transfer as t

RSS_BAR_MB = 500


def main() -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.set_defaults(runs=1)
    p.add_argument("--files", type=int, default=1_000_000)
    p.add_argument("--per-folder", type=int, default=1000)
    args = p.parse_args()

    rep = c.Report(f"transfer_million: {args.files:,} empty or tiny files, CLI pack and verify")
    with c.work_dir(args, "tmillion") as work:
        root = work / "tiny"
        c.note(f"making {args.files:,} files in {root}")
        started = time.perf_counter()
        total = c.make_tiny_tree(root, args.files, per_folder=args.per_folder)
        make_s = time.perf_counter() - started
        c.note(f"made (or found) them in {make_s:.1f} s")
        catalog, drive = work / "catalog.duckdb", work / "drive"
        rep.info.update(files=args.files, bytes=total, make_seconds=round(make_s, 1),
                        work=str(work))

        def once(what: str, cmd: list[str], ok=(0,)) -> tuple[c.Peak, dict]:
            c.note(f"{what}: running {' '.join(cmd)}")
            peak = c.run_with_peak_rss(cmd)
            if peak.returncode not in ok:
                raise RuntimeError(f"{what} failed ({peak.returncode}): {peak.stderr[-2000:]}")
            c.note(f"{what}: {peak.seconds:.1f} s, peak RSS {peak.max_rss_bytes / 1e6:.0f} MB")
            rep.info["peak RSS from"] = peak.source
            return peak, json.loads(peak.stdout)

        c.fresh_catalog(catalog)
        scan, data = once("scan (CLI)", t.cli(catalog, "scan", str(root), "--dataset", "tiny"))
        rep.row("scan (CLI, info)", scan.seconds, files_s=args.files / scan.seconds,
                peak_RSS_MB=scan.max_rss_bytes / 1e6)
        t.reset(drive)
        pack, data = once("pack (CLI)", t.cli(catalog, "pack", "tiny@1", "--to", str(drive),
                                              "--shipment", "million"))
        d = data["drives"][0]
        assert data["sealed"] and not data["problems"], data["problems"][:5]
        rep.row("pack (CLI)", pack.seconds, files_s=args.files / pack.seconds,
                carried=d["copied_files"], peak_RSS_MB=pack.max_rss_bytes / 1e6,
                inside=f"copy {d['seconds']:.1f} s of {data['seconds']:.1f} s in pack()")
        c.prewarm([drive])
        ver, data = once("verify (CLI)", t.cli(catalog, "verify", str(drive)))
        assert data["whole"], data["drives"][0]["counts"]
        rep.row("verify (CLI)", ver.seconds, files_s=d["copied_files"] / ver.seconds,
                peak_RSS_MB=ver.max_rss_bytes / 1e6,
                ok=data["drives"][0]["counts"]["ok"])
        rep.bar("pack peak RSS", pack.max_rss_bytes / 1e6, RSS_BAR_MB, higher_is_better=False,
                unit=" MB")
        rep.bar("verify peak RSS", ver.max_rss_bytes / 1e6, RSS_BAR_MB, higher_is_better=False,
                unit=" MB")
        rep.notes.append("files/s of verify counts the files on the drive (the carried ones)")
    rep.print(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
