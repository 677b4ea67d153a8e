"""Small files: sneakernet pack, verify and ingest vs cp -a + xxhsum -c, and cat.

    python bench/transfer_small.py [--files 50000] [--runs 3] [--drive-fs disk|tmpfs|both] [--json]

Files of 1-64 KiB in 300 folders (bench/_common.make_small_tree): the fixed cost
per file (open, fsync, rename, a catalog row, Python per row) dominates. Bars
(data in page cache): pack >= 1.0x `cp -a && xxhsum -H2 -c` of the copy; verify
>= 0.8x `cat` of the drive's files; ingest >= 1.0x `cp -a && xxhsum -c`.

`--drive-fs disk|tmpfs|both` (default both, so the disk figures are always in
the report): the drive, the store and the peers' copies on the work folder's
disk, or on a tmpfs where fsync costs nothing and the read-back reads page
cache (sneakernet's own cost against the peers'). See bench/_transfer.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
import _transfer as t


def main() -> int:
    p = t.parser(__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=50_000)
    p.add_argument("--folders", type=int, default=300)
    args = p.parse_args()
    t.ensure_peers(args)

    rep = c.Report(f"transfer_small: {args.files:,} files of 1-64 KiB")
    with c.work_dir(args, "tsmall") as work:
        src = work / "small"
        c.note(f"making {args.files:,} files in {src}")
        files, total = c.make_small_tree(src, args.files, folders=args.folders)
        rep.info.update(bytes=total, files=files, runs=args.runs, work=str(work))
        t.compare_all(rep, args, work, src, "small", total, files)
    rep.print(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
