"""Shared parts of the transfer benchmarks (pack, verify, ingest against cp -a, xxhsum, cat).

Where the destinations live (`--drive-fs`): the "drive", the store and the
peers' copy targets are
- `disk`:  folders on the same disk as the data (ext4 on virtio here); pack's
           fsync and its read-back from the device cost real I/O, which the
           `cp -a && xxhsum -c` bar does not pay (it checks page cache);
- `tmpfs`: a tmpfs mounted for the run (else a folder in /dev/shm): the drive
           is page cache itself, fsync/syncfs cost nothing and DONTNEED keeps
           tmpfs pages, so the ratios measure sneakernet's own cost against
           the peers' with every byte in page cache, as the bars ask.
The source tree and the catalogs stay on disk in both modes (warm in cache).
Every timed run starts from an empty destination, no dirty pages left by the
previous run (`sync`, untimed) and the data it reads warm in page cache
(`_common.prewarm`).

The peers, with the source tree's `xxhsum -H2` manifest made once, untimed:
- pack:   `cp -a SRC DST/ && cd DST && xxhsum -c MANIFEST` (the bar), and a fair
          variant `cp -a; sync; drop the copy from cache; xxhsum -c` doing what
          pack does (durable copy, read back from the device), for information;
- verify: `cat` of the drive's files to /dev/null (the read ceiling);
- ingest: `cp -a DRIVE/DATASET STORE/ && cd STORE && xxhsum -c DRIVE/MANIFEST.xxh128`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import _common as c

DROP_CACHE = (
    "import os, sys\n"
    "for p in sys.stdin.buffer.read().split(b'\\0'):\n"
    "    if p:\n"
    "        fd = os.open(p, os.O_RDONLY)\n"
    "        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)\n"
    "        os.close(fd)\n"
)


def drop_cmd(folder: Path) -> str:
    """A shell command dropping every file under `folder` from the page cache."""
    return f"find {c.q(folder)} -type f -print0 | {c.q(sys.executable)} -c {c.q(DROP_CACHE)}"


def reset(path: Path) -> None:
    """An empty folder at `path` (what was there is removed), then no dirty pages left."""
    if path.exists():
        subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.sync()


def xxh_manifest(parent: Path, name: str, out: Path) -> None:
    """`xxhsum -H2` of every file under parent/name, paths relative to `parent` (untimed)."""
    c.run(f"cd {c.q(parent)} && find {c.q(name)} -type f -print0 | LC_ALL=C sort -z"
          f" | xargs -0 xxhsum -H2 > {c.q(out)}", shell=True)


def scanned_catalog(work: Path, root: Path, dataset: str) -> Path:
    """A catalog holding one scan of `root` as `dataset` (made once, reused with --work)."""
    from sneakernet.catalog.db import Catalog
    from sneakernet.catalog.scan import scan

    base = work / "base.duckdb"
    marker = work / ".base.snbench"
    files, size = c.tree_size(root)
    want = f"{root} {dataset} {files} {size}"
    if base.exists() and marker.exists() and marker.read_text() == want:
        return base
    c.fresh_catalog(base)
    c.note(f"scanning {root} into {base} (untimed)")
    started = time.perf_counter()
    result = scan(Catalog(base), root, dataset)
    c.note(f"scanned {result.files:,} files in {time.perf_counter() - started:.1f} s")
    marker.write_text(want)
    return base


def copy_catalog(base: Path, to: Path) -> Path:
    for p in to.parent.glob(to.name + "*"):
        p.unlink()
    shutil.copyfile(base, to)
    return to


_runs = 0


def lib_pack(catalog: Path, ref: str, drive: Path) -> object:
    from sneakernet.catalog.db import Catalog
    from sneakernet.transfer.pack import pack

    global _runs
    _runs += 1
    result = pack(Catalog(catalog), [ref], [drive], shipment=f"bench-{os.getpid()}-{_runs}",
                  to_site="B")
    if not result.sealed or result.problems:
        raise RuntimeError(f"pack did not finish cleanly: {result.to_dict()['problems'][:5]}")
    return result


def lib_verify(drive: Path) -> object:
    from sneakernet.transfer.verify import verify

    result = verify([drive])
    if not result.whole:
        d = result.drives[0]
        raise RuntimeError(f"verify found problems: {d.counts} {d.error} {d.findings[:5]}")
    return result


def lib_ingest(catalog: Path, drive: Path, store: Path) -> object:
    from sneakernet.catalog.db import Catalog
    from sneakernet.transfer.ingest import ingest

    result = ingest(Catalog(catalog), [drive], store)
    if result.problems or not result.registered:
        raise RuntimeError(f"ingest did not finish cleanly: {result.to_dict()['problems'][:5]}")
    return result


def cli(catalog: Path, *argv: str) -> list[str]:
    return [*c.sneakernet_cmd(), "--catalog", str(catalog), *argv, "--json"]


def shell(cmd: str) -> Callable[[], object]:
    def once() -> object:
        return c.run(cmd, shell=True)

    return once


def command(argv: list[str]) -> Callable[[], object]:
    def once() -> object:
        return c.run(argv)

    return once


@dataclass
class Case:
    what: str
    setup: Callable[[], object]
    fn: Callable[[], object]
    best: float = float("inf")
    kept: object = None


def interleaved(cases: list[Case], runs: int) -> None:
    """Best of `runs` for each case, the cases taking turns in every round.

    On a shared machine the load changes by the minute; taking turns gives the
    peers and sneakernet the same conditions, which the ratios need.
    """
    for r in range(max(1, runs)):
        for case in cases:
            case.setup()
            started = time.perf_counter()
            got = case.fn()
            elapsed = time.perf_counter() - started
            if elapsed < case.best:
                case.best, case.kept = elapsed, got
            c.note(f"{case.what}: run {r + 1}/{runs}: {elapsed:.3f} s")


def run_and_add(cases: list[Case], runs: int, add: Callable[..., None]) -> object:
    """Run peers, then the library case, then the CLI case (last); add their rows.

    Returns the library's outcome of its first drive (with its copy seconds).
    """
    interleaved(cases, runs)
    *peers, lib, cmd = cases
    for case in peers:
        add(case)
    d = lib.kept.drives[0]
    add(lib, inside=f"copy {d.seconds:.3f} s, rest {lib.kept.seconds - d.seconds:.3f} s")
    add(cmd)
    return d


def parser(description: str):
    """_common.parser with --no-peers and --drive-fs."""
    p = c.parser(description)
    p.add_argument("--no-peers", dest="peers", action="store_false",
                   help="skip the rsync and rclone rows")
    p.add_argument("--drive-fs", choices=("disk", "tmpfs", "both"), default="both",
                   help="where the drive, the store and the peers' copies live: folders on "
                   "the work folder's disk, a tmpfs (all in page cache), or both in turn "
                   "[default: both]")
    return p


def modes(args) -> list[str]:
    return ["disk", "tmpfs"] if args.drive_fs == "both" else [args.drive_fs]


@contextmanager
def destinations(mode: str, work: Path, nbytes: int) -> Iterator[Path]:
    """The folder holding the drive, the store and the peers' copies for `mode`.

    tmpfs: mounted for the run with room for three copies of the data (the
    drive, the store and a peer's copy live at once), unmounted at the end; if
    mounting is refused (not root, no CAP_SYS_ADMIN), a folder in /dev/shm.
    """
    if mode == "disk":
        yield work
        return
    size = 3 * nbytes + (512 << 20)
    point = work / "tmpfs"
    point.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                             capture_output=True, text=True).returncode == 0
    if mounted:
        where = point
    else:
        c.note(f"cannot mount a tmpfs at {point}; using /dev/shm instead")
        where = Path(tempfile.mkdtemp(prefix="snbench-", dir="/dev/shm"))
    c.note(f"tmpfs destinations in {where}")
    try:
        yield where
    finally:
        if mounted:
            subprocess.run(["umount", str(point)], check=False)
        else:
            subprocess.run(["chmod", "-R", "u+w", str(where)], check=False)
            shutil.rmtree(where, ignore_errors=True)


def ensure_peers(args) -> None:
    if args.peers:
        c.ensure_apt("rsync")
        c.ensure_apt("rclone")
    if not c.ensure_apt("xxhsum", "xxhash"):
        raise SystemExit("xxhsum is needed for the peers")


def compare_all(rep: c.Report, args, work: Path, src: Path, dataset: str,
                nbytes: int, nfiles: int) -> None:
    """compare_transfer in each mode of --drive-fs, rows and bars labelled by mode."""
    for mode in modes(args):
        with destinations(mode, work, nbytes) as dest:
            compare_transfer(rep, args, work, dest, mode, src, dataset, nbytes, nfiles)


def compare_transfer(rep: c.Report, args, work: Path, dest: Path, mode: str, src: Path,
                     dataset: str, nbytes: int, nfiles: int) -> None:
    """Time pack, verify and ingest of `src` and their peers; add rows and bars to `rep`.

    The drive, the store and the peers' copies go under `dest`; the catalogs
    and the source stay in `work`. Rows and bars start with `[mode]`.
    """
    runs = args.runs
    base = scanned_catalog(work, src, dataset)
    ref = f"{dataset}@1"
    manifest = work / "src.xxh128"
    xxh_manifest(src.parent, src.name, manifest)
    pack_cat, drive, peer = work / "pack.duckdb", dest / "drive", dest / "peer"
    recv_cat, store = work / "recv.duckdb", dest / "store"
    tag = f"[{mode}] "

    def add(case: Case, **extra: object) -> None:
        rep.row(case.what, case.best, MB_s=nbytes / case.best / 1e6,
                files_s=nfiles / case.best, **extra)

    # --- pack and its peers ------------------------------------------------------------
    def peer_setup() -> None:
        reset(peer)
        c.prewarm([src])

    def pack_setup() -> None:
        reset(drive)
        copy_catalog(base, pack_cat)
        c.prewarm([src])

    cp = f"cp -a {c.q(src)} {c.q(peer)}/"
    check = f"cd {c.q(peer)} && xxhsum -c -q {c.q(manifest)}"
    peers = [
        Case(tag + "cp -a && xxhsum -H2 -c (pack bar)", peer_setup, shell(f"{cp} && {check}")),
        Case(tag + "cp -a alone (info)", peer_setup, shell(cp)),
        Case(tag + "cp -a; sync; xxhsum -c (info)", peer_setup,
             shell(f"{cp} && sync && {check}")),
        Case(tag + "cp -a; sync; drop from cache; xxhsum -c (info: pack's work)", peer_setup,
             shell(f"{cp} && sync && {drop_cmd(peer)} && {check}")),
    ]
    if args.peers and c.have("rsync"):
        peers.append(Case(tag + "rsync -a && xxhsum -c (info)", peer_setup,
                          shell(f"rsync -a {c.q(src)} {c.q(peer)}/ && {check}")))
    if args.peers and c.have("rclone"):
        peers.append(Case(tag + "rclone copy (info: md5 of the copy checked)", peer_setup,
                          shell(f"rclone copy --transfers 1 {c.q(src)} {c.q(peer / src.name)}")))
    lib = Case(tag + "sneakernet pack, library", pack_setup, lambda: lib_pack(pack_cat, ref, drive))
    # The CLI runs last in each round: its drive stays, sealed, for verify and ingest.
    cmd = Case(tag + "sneakernet pack, CLI", pack_setup,
               command(cli(pack_cat, "pack", ref, "--to", str(drive), "--shipment", "bench")))
    d = run_and_add([*peers, lib, cmd], runs, add)
    bar = peers[0].best
    rep.bar(tag + "pack vs cp -a && xxhsum -c (library)", bar / lib.best, 1.0)
    rep.bar(tag + "pack vs cp -a && xxhsum -c (CLI)", bar / cmd.best, 1.0)
    rep.bar(tag + "pack vs cp -a; sync; drop; xxhsum -c (library, info)",
            peers[3].best / lib.best, 1.0)
    rep.info[tag + "pack result"] = json.dumps({k: v for k, v in d.to_dict().items()
                                          if k in ("files", "copied_files", "copied_bytes")})

    # --- verify ------------------------------------------------------------------------
    def warm_drive() -> None:
        c.prewarm([drive])

    cat = Case(tag + "find | xargs cat > /dev/null (the drive's files)", warm_drive, shell(
        f"find {c.q(drive)} -type f -not -path '*/.sneakernet/*' -print0"
        " | xargs -0 cat > /dev/null"))
    xv = Case(tag + "xxhsum -c MANIFEST.xxh128 on the drive (info)", warm_drive,
              shell(f"cd {c.q(drive)} && xxhsum -c -q MANIFEST.xxh128"))
    lib = Case(tag + "sneakernet verify, library", warm_drive, lambda: lib_verify(drive))
    cmd = Case(tag + "sneakernet verify, CLI", warm_drive,
               command(cli(pack_cat, "verify", str(drive))))
    interleaved([cat, xv, lib, cmd], runs)
    for case in (cat, xv, lib, cmd):
        add(case)
    rep.bar(tag + "verify vs cat (library)", cat.best / lib.best, 0.8)
    rep.bar(tag + "verify vs cat (CLI)", cat.best / cmd.best, 0.8)

    # --- ingest ------------------------------------------------------------------------
    plain = drive / "MANIFEST.xxh128"

    def ipeer_setup() -> None:
        reset(peer)
        warm_drive()

    def ingest_setup() -> None:
        reset(store)
        c.fresh_catalog(recv_cat)
        warm_drive()

    icp = f"cp -a {c.q(drive / dataset)} {c.q(peer)}/"
    icheck = f"cd {c.q(peer)} && xxhsum -c -q {c.q(plain)}"
    ipeers = [
        Case(tag + "cp -a && xxhsum -c (ingest bar)", ipeer_setup, shell(f"{icp} && {icheck}")),
        Case(tag + "cp -a; sync; xxhsum -c (info)", ipeer_setup,
             shell(f"{icp} && sync && {icheck}")),
    ]
    lib = Case(tag + "sneakernet ingest, library", ingest_setup,
               lambda: lib_ingest(recv_cat, drive, store))
    cmd = Case(tag + "sneakernet ingest, CLI", ingest_setup,
               command(cli(recv_cat, "ingest", str(drive), "--store", str(store))))
    run_and_add([*ipeers, lib, cmd], runs, add)
    rep.bar(tag + "ingest vs cp -a && xxhsum -c (library)", ipeers[0].best / lib.best, 1.0)
    rep.bar(tag + "ingest vs cp -a && xxhsum -c (CLI)", ipeers[0].best / cmd.best, 1.0)
    rep.bar(tag + "ingest vs cp -a; sync; xxhsum -c (library, info)",
            ipeers[1].best / lib.best, 1.0)

    if mode == "tmpfs":
        rep.notes.append(
            "[tmpfs] the drive, the store and the peers' copies are on a tmpfs: fsync and "
            "syncfs cost nothing and pack's read-back (DONTNEED, then read) reads page cache, "
            "so these ratios are sneakernet's own cost against the peers'")
        return
    rep.notes += [
        "[disk] pack fsyncs every copy and reads it back from the device (posix_fadvise DONTNEED) "
        "before it gets its final name; `cp -a && xxhsum -c` does neither (it checks the page "
        "cache); the 'pack's work' row does both with cp and xxhsum",
        "[disk] ingest fsyncs every file before it gets its name in the store; cp -a does not",
        "[disk] drives and the store are folders on the same disk as the source here",
        "each timed run starts empty, after `sync` (untimed), with its input warm in page cache;"
        " the cases of each phase take turns in every round, best of --runs",
    ]
