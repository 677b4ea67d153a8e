"""Video probing: sneakernet's in-process probe (PyAV) vs one ffprobe process per file.

    python bench/probe_videos.py [--clips 200] [--frames 25] [--runs 3] [--json]

Clips are real encodes from sneakernet.catalog.samples over a mix of codecs and
containers. Measured: files/s of probe() in a loop (one thread, and two threads
as a scan uses), of the probe phase of a real scan (fresh catalog, so every
clip is probed), and of ffprobe -show_streams -show_format per file, one at a
time and with xargs -P2. Bar: scan's probe phase >= 5x sequential ffprobe.
Note: probe() also counts frames (demuxing every packet for Matroska/WebM) and
checks the file is whole; this ffprobe command does neither.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

# (codec, extension, audio) combinations that write_clip supports.
MIX = (
    ("libx264", ".mp4", True),
    ("libx264", ".mov", False),
    ("libx264", ".mkv", True),
    ("libx265", ".mkv", False),
    ("libx265", ".mp4", False),
    ("libvpx-vp9", ".webm", True),
    ("libvpx-vp9", ".mkv", False),
    ("mpeg4", ".avi", True),
    ("mpeg4", ".mp4", False),
    ("mjpeg", ".mov", False),
    ("mjpeg", ".avi", False),
    ("ffv1", ".mkv", False),
    ("ffv1", ".nut", True),
    ("prores_ks", ".mov", False),
)


def _write(job: tuple[str, str, int, int, int, int]) -> str:
    from sneakernet.catalog.samples import ClipSpec, write_clip

    root, name, i, frames, width, height = job
    codec, ext, audio = MIX[i % len(MIX)]
    spec = ClipSpec(name + ext, codec, width=width, height=height, frames=frames, audio=audio,
                    seed=i, faststart=(ext in (".mp4", ".mov") and i % 2 == 0))
    return str(write_clip(Path(root) / spec.name, spec))


def make_clips(root: Path, count: int, frames: int, width: int, height: int) -> list[Path]:
    marker = root.parent / f".{root.name}.snbench-clips"
    want = f"{count} {frames} {width} {height}"
    if root.exists() and marker.exists() and marker.read_text() == want:
        return sorted(p for p in root.rglob("*") if p.is_file())
    if root.exists():
        import shutil

        shutil.rmtree(root)
    jobs = [(str(root), f"cam{i % 8}/clip{i:04d}", i, frames, width, height) for i in range(count)]
    with ProcessPoolExecutor(os.cpu_count() or 2) as pool:
        paths = [Path(p) for p in pool.map(_write, jobs, chunksize=4)]
    marker.write_text(want)
    return sorted(paths)


def main() -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--frames", type=int, default=25, help="frames per clip (25 fps)")
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--height", type=int, default=120)
    p.add_argument("--workers", type=int, default=None, help="scan workers [default: sneakernet's]")
    args = p.parse_args()

    from sneakernet.catalog.db import Catalog
    from sneakernet.catalog.probe import probe
    from sneakernet.catalog.scan import default_workers, scan

    workers = args.workers or default_workers()
    rep = c.Report(f"probe_videos: {args.clips} clips, {args.frames} frames "
                   f"{args.width}x{args.height}, {len(MIX)} codec/container mixes")
    with c.work_dir(args, "probe") as work:
        root = work / "clips"
        c.note(f"encoding {args.clips} clips in {root}")
        clips = make_clips(root, args.clips, args.frames, args.width, args.height)
        n = len(clips)
        total = sum(p.stat().st_size for p in clips)
        warm = lambda: c.prewarm([root])  # noqa: E731
        warm()
        rep.info.update(clips=n, bytes=total, runs=args.runs, workers=workers, work=str(work))

        def add(what: str, secs: float, files: int = n, **extra: object) -> None:
            rep.row(what, secs, files=files, files_s=files / secs, **extra)

        infos = [probe(p) for p in clips]  # warm PyAV up; check the clips are good
        bad = [(p.name, i.error) for p, i in zip(clips, infos, strict=True) if not i.ok]
        if bad:
            rep.notes.append(f"{len(bad)} clips probed as broken, e.g. {bad[:3]}")

        seq_s, _ = c.best_of(lambda: [probe(p) for p in clips], args.runs, setup=warm,
                             name="probe() loop")
        add("probe() loop, 1 thread", seq_s)

        def threaded() -> list:
            with ThreadPoolExecutor(workers) as pool:
                return list(pool.map(probe, clips))

        thr_s, _ = c.best_of(threaded, args.runs, setup=warm, name="probe() threads")
        add(f"probe() in {workers} threads", thr_s)

        catalog = work / "catalog.duckdb"
        best_scan = None
        scan_probe_s = float("inf")
        for i in range(args.runs):
            c.fresh_catalog(catalog)
            warm()
            res = scan(Catalog(catalog), root, "clips", workers=args.workers)
            c.note(f"scan: run {i + 1}/{args.runs}: probe phase {res.phase_seconds['probe']:.3f} s"
                   f" of {res.seconds:.3f} s")
            if res.phase_seconds["probe"] < scan_probe_s:
                scan_probe_s, best_scan = res.phase_seconds["probe"], res
        assert best_scan is not None and best_scan.probed_files == n, best_scan
        add("scan: probe phase only", scan_probe_s, files=best_scan.probed_files)
        add("scan: whole scan (info)", best_scan.seconds, inside=c.phases(best_scan.phase_seconds))

        ff_s = None
        if c.ensure_apt("ffprobe", "ffmpeg"):
            ffprobe = ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json"]

            def each() -> None:
                for p in clips:
                    c.run([*ffprobe, str(p)], check=False)

            ff_s, _ = c.best_of(each, args.runs, setup=warm, name="ffprobe per file")
            add("ffprobe per file, sequential", ff_s)
            ffp_s, _ = c.time_cmd(
                f"find {c.q(root)} -type f -print0 | xargs -0 -n1 -P2 {' '.join(ffprobe)}"
                " > /dev/null", args.runs, shell=True, setup=warm, name="ffprobe xargs -P2")
            add("ffprobe per file, xargs -P2 (info)", ffp_s)
        else:
            rep.skip("ffprobe", "not installable")

        if ff_s:
            rep.bar("scan probe phase vs ffprobe sequential", ff_s / scan_probe_s, 5)
            rep.bar("probe() 1 thread vs ffprobe sequential", ff_s / seq_s, 5)
    rep.print(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
