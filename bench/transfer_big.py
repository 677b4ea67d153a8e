"""Big files: sneakernet pack, verify and ingest vs cp -a + xxhsum -c, and cat.

    python bench/transfer_big.py [--size-mib 512] [--count 4] [--runs 3]
                                [--drive-fs disk|tmpfs|both] [--json]

Bars (throughput, data in page cache): pack >= 1.0x `cp -a && xxhsum -H2 -c` of
the copy; verify >= 0.8x `cat` of the drive's files; ingest >= 1.0x `cp -a &&
xxhsum -c`. Library and CLI both shown, each bar labelled with its mode.

`--drive-fs` says where the drive, the store and the peers' copies live: `disk`
(folders on the work folder's disk: pack and ingest pay for durable writes and
pack for its read-back from the device, which the bar's peer does not), `tmpfs`
(all of it page cache: what "data in page cache" asks, sneakernet's own cost
against the peers'), or `both` in turn, the default, so that the disk figures
are never left out of a report. See bench/_transfer.py for what each peer does.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
import _transfer as t


def main() -> int:
    p = t.parser(__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=512, help="size of each file")
    p.add_argument("--count", type=int, default=4, help="number of files")
    args = p.parse_args()
    t.ensure_peers(args)

    rep = c.Report(f"transfer_big: {args.count} x {args.size_mib} MiB random files")
    with c.work_dir(args, "tbig") as work:
        src = work / "big"
        c.note(f"making {args.count} x {args.size_mib} MiB in {src}")
        files = c.make_random_files(src, args.count, args.size_mib * c.MiB)
        total = sum(f.stat().st_size for f in files)
        rep.info.update(bytes=total, files=len(files), runs=args.runs, work=str(work))
        t.compare_all(rep, args, work, src, "big", total, len(files))
    rep.print(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
