"""A dataset on a file server: scan and rescan vs find, xargs xxhsum and cat over a slow mount.

    python bench/scan_nas.py [--files 5000] [--delay-ms 0.5] [--runs 1] [--json]

The tree (1-64 KiB files) is served through bench/_slowfs.py, a FUSE passthrough
that waits `--delay-ms` on every request with the CPU free, as a request to an
NFS or SMB server waits a round trip; kernel caches are off, so every stat and
open reaches the "server". sneakernet reads such a mount with several walk
threads and parallel readers (catalog/fstype.py); the row "as a local disk" is
the same scan forced to read it the local way, i.e. sneakernet before it knew.

No bar in the issues: the figures say what a NAS user gets. Peers: `find -printf`
(a stat walk, one C process), `find | xargs xxhsum -H2` (one C process) and the
same with `xargs -P 16` (16 C processes, the most a careful script would do);
`cat` of every file (serial) is the ceiling for a one-at-a-time reader.
Needs root, /dev/fuse and fusepy (installed with pip, with libfuse2 from apt).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

SLOWFS = Path(__file__).resolve().parent / "_slowfs.py"


def fuse_ready() -> str | None:
    """Why this machine cannot mount the slow file system, or None when it can."""
    if os.geteuid() != 0 or not Path("/dev/fuse").exists():
        return "needs root and /dev/fuse"
    if not c.ensure_pip("fuse", "fusepy"):
        return "fusepy not installable"
    try:
        subprocess.run([sys.executable, "-c", "import fuse"], check=True, capture_output=True)
    except subprocess.CalledProcessError:  # fusepy loads libfuse.so.2 when imported
        for package in ("libfuse2t64", "libfuse2"):
            c.run(["apt-get", "install", "-y", "-qq", package], check=False)
        probe = subprocess.run([sys.executable, "-c", "import fuse"], capture_output=True)
        if probe.returncode:
            return "libfuse2 not installable"
    return None


class SlowMount:
    def __init__(self, source: Path, mountpoint: Path, delay_ms: float) -> None:
        self.mountpoint = mountpoint
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(SLOWFS), str(source), str(mountpoint), "--delay-ms",
             str(delay_ms)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not os.path.ismount(mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"slow mount failed: {self.proc.stderr.read().decode()[-500:]}")
            time.sleep(0.05)

    def close(self) -> None:
        subprocess.run(["umount", str(self.mountpoint)], check=False, capture_output=True)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main() -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.set_defaults(runs=1)
    p.add_argument("--files", type=int, default=5000)
    p.add_argument("--folders", type=int, default=50)
    p.add_argument("--delay-ms", type=float, default=0.5, help="wait on every request")
    args = p.parse_args()

    from sneakernet.catalog import fstype
    from sneakernet.catalog.db import Catalog
    from sneakernet.catalog.scan import default_workers, scan

    rep = c.Report(f"scan_nas: {args.files:,} files of 1-64 KiB behind a mount that waits "
                   f"{args.delay_ms} ms a request")
    why_not = fuse_ready()
    if why_not:
        rep.skip("the whole bench", why_not)
        rep.print(args.json)
        return 0
    with c.work_dir(args, "nas") as work:
        source = work / "tree"
        files, total = c.make_small_tree(source, args.files, folders=args.folders)
        mount = SlowMount(source, work / "mnt", args.delay_ms)
        try:
            root = mount.mountpoint
            profile = fstype.read_profile(root, default_workers())
            rep.info.update(files=files, bytes=total, runs=args.runs, reading=profile.to_dict())

            def add(what: str, secs: float, **extra: object) -> None:
                rep.row(what, secs, files_s=files / secs, MB_s=total / secs / 1e6, **extra)

            r = c.q(root)
            figures = {}
            for name, cmd in [
                ("find -printf (stat walk)", f"find {r} -type f -printf '%s %T@ %i\\n'"),
                ("find | xargs cat (serial)", f"find {r} -type f -print0 | xargs -0 cat"),
                ("find | xargs xxhsum -H2", f"find {r} -type f -print0 | xargs -0 xxhsum -H2"),
                ("find | xargs -P 16 xxhsum -H2",
                 f"find {r} -type f -print0 | xargs -0 -P 16 -n 64 xxhsum -H2"),
            ]:
                if "xxhsum" in cmd and not c.ensure_apt("xxhsum", "xxhash"):
                    rep.skip(name, "xxhsum not installable")
                    continue
                figures[name], _ = c.time_cmd(cmd + " > /dev/null", args.runs, shell=True,
                                              name=name)
                add(name, figures[name])

            catalog = work / "catalog.duckdb"
            as_local = fstype.ReadProfile(profile.filesystem, False, 1, default_workers())
            for label, reading in (("as a local disk", as_local), ("as a file server", profile)):
                first, res = c.best_of(
                    lambda reading=reading: scan(Catalog(catalog), root, "nas", reading=reading),
                    args.runs, setup=lambda: c.fresh_catalog(catalog), name=f"scan {label}")
                assert res.hashed_files == files, res
                add(f"sneakernet scan, library, {label}", first, inside=c.phases(res.phase_seconds))
                again, res = c.best_of(
                    lambda reading=reading: scan(Catalog(catalog), root, "nas", reading=reading),
                    args.runs, name=f"rescan {label}")
                assert not res.changed, res
                add(f"sneakernet rescan, library, {label}", again,
                    inside=c.phases(res.phase_seconds))
                figures[f"scan {label}"], figures[f"rescan {label}"] = first, again

            cli = [*c.sneakernet_cmd(), "--catalog", str(catalog), "scan", str(root),
                   "--dataset", "nas", "--json"]
            cli_s, proc = c.time_cmd(cli, args.runs, setup=lambda: c.fresh_catalog(catalog),
                                     name="scan (CLI)")
            add("sneakernet scan, CLI", cli_s, inside=c.cli_inside(proc.stdout))
            figures["scan CLI"] = cli_s
        finally:
            mount.close()

    def ratio(name: str, a: str, b: str) -> None:
        if a in figures and b in figures:
            rep.row(name + " (info)", None, ratio=round(figures[a] / figures[b], 2))

    ratio("scan as a file server vs as a local disk",
          "scan as a local disk", "scan as a file server")
    ratio("rescan as a file server vs as a local disk",
          "rescan as a local disk", "rescan as a file server")
    ratio("CLI scan vs find | xargs xxhsum", "find | xargs xxhsum -H2", "scan CLI")
    ratio("CLI scan vs find | xargs -P 16 xxhsum", "find | xargs -P 16 xxhsum -H2", "scan CLI")
    ratio("CLI scan vs xargs cat", "find | xargs cat (serial)", "scan CLI")
    ratio("rescan vs find -printf", "find -printf (stat walk)", "rescan as a file server")
    rep.notes.append("each figure is the best of --runs; every scan reads through the slow mount")
    rep.print(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
