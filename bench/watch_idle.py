"""Watching 100,000 existing files: memory, and CPU while idle.

    python bench/watch_idle.py [--files 100000] [--idle-seconds 30] [--cold] [--json]

Makes the files (empty or tiny, 250 per folder, so 400 folders to watch),
scans them once with the CLI (so the watcher's catch-up reads nothing, as
for a dataset already in the catalog; `--cold` leaves that to the watcher),
then runs `sneakernet watch --json --snapshot-after 2s` as a subprocess and
reads its /proc figures: RSS and peak RSS (VmHWM), and CPU time over an idle
window. Then it adds 1,000 files, waits for the snapshot, and measures a
second idle window.
Bars: peak RSS < 300 MB; idle CPU < 2% of a core.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

RSS_BAR_MB = 300
IDLE_CPU_BAR = 2.0  # percent of one core
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


def _mb(pid: int, key: str) -> float:
    return int(_status(pid)[key].split()[0]) * 1024 / 1e6


class _Watch:
    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def wait_for(self, kind: str, count: int = 1, timeout: float = 600) -> float:
        started = time.perf_counter()
        while sum(e["event"] == kind for e in self.events) < count:
            if self.proc.poll() is not None:
                raise RuntimeError(f"watch ended ({self.proc.returncode}): "
                                   f"{self.proc.stderr.read()[-2000:]}")
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"no {kind!r} event after {timeout} s")
            time.sleep(0.05)
        return time.perf_counter() - started

    def idle_cpu(self, seconds: float) -> float:
        """Percent of one core used over `seconds` of wall time."""
        before, t0 = _cpu_seconds(self.proc.pid), time.perf_counter()
        time.sleep(seconds)
        return 100 * (_cpu_seconds(self.proc.pid) - before) / (time.perf_counter() - t0)


def _add_files(folder: Path, count: int) -> None:
    folder.mkdir()
    for i in range(count):
        (folder / f"{i:05d}.dat").write_bytes(str(i).encode())


def main() -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--per-folder", type=int, default=250)
    p.add_argument("--idle-seconds", type=float, default=30.0)
    p.add_argument("--cold", action="store_true", help="no scan first: the catch-up reads all")
    args = p.parse_args()

    rep = c.Report(f"watch_idle: watching {args.files:,} existing files (CLI)")
    with c.work_dir(args, "watch") as work:
        root = work / "tiny"
        c.note(f"making {args.files:,} files in {root}")
        c.make_tiny_tree(root, args.files, per_folder=args.per_folder)
        catalog = c.fresh_catalog(work / "catalog.duckdb")
        base = [*c.sneakernet_cmd(), "--catalog", str(catalog)]
        if not args.cold:
            c.note("scanning once first, so the catch-up reads nothing")
            c.run([*base, "scan", str(root), "--dataset", "tiny", "--json"])
        new = root / f"new-{os.getpid()}"  # removed at the end: the tree stays reusable
        watch = _Watch([*base, "watch", str(root), "--dataset", "tiny", "--json",
                        "--snapshot-after", "2s"])
        try:
            start = watch.wait_for("watching")
            caught = next(e for e in watch.events if e["event"] == "caught-up")["scan"]
            pid = watch.proc.pid
            rep.row("start + catch-up scan", start, read=caught["hashed_files"],
                    RSS_MB=_mb(pid, "VmRSS"), peak_RSS_MB=_mb(pid, "VmHWM"),
                    threads=int(_status(pid)["Threads"]))
            time.sleep(2)  # let the start-up settle before timing the idle
            c.note(f"idle for {args.idle_seconds:g} s")
            idle = watch.idle_cpu(args.idle_seconds)
            rep.row("idle", args.idle_seconds, cpu_pct=idle, RSS_MB=_mb(pid, "VmRSS"),
                    peak_RSS_MB=_mb(pid, "VmHWM"))
            c.note("adding 1,000 files and waiting for the snapshot")
            t0 = time.perf_counter()
            _add_files(new, 1000)
            watch.wait_for("snapshot")
            snap = [e for e in watch.events if e["event"] == "snapshot"][-1]["scan"]
            rep.row("1,000 new files -> snapshot", time.perf_counter() - t0,
                    read=snap["hashed_files"], version=snap["version"],
                    RSS_MB=_mb(pid, "VmRSS"), peak_RSS_MB=_mb(pid, "VmHWM"))
            time.sleep(2)
            idle_after = watch.idle_cpu(args.idle_seconds)
            peak = _mb(pid, "VmHWM")
            rep.row("idle again", args.idle_seconds, cpu_pct=idle_after,
                    RSS_MB=_mb(pid, "VmRSS"), peak_RSS_MB=peak)
            watch.proc.send_signal(signal.SIGTERM)
            watch.proc.wait(timeout=60)
            stopped = next(e for e in watch.events if e["event"] == "stopped")["watch"]
            rep.info.update(files=args.files, folders=-(-args.files // args.per_folder),
                            cold=args.cold, exit_status=watch.proc.returncode,
                            watcher_read=stopped["hashed_files"], work=str(work))
        finally:
            if watch.proc.poll() is None:
                watch.proc.kill()
            shutil.rmtree(new, ignore_errors=True)
        rep.bar("peak RSS", peak, RSS_BAR_MB, higher_is_better=False, unit=" MB")
        rep.bar("idle CPU", max(idle, idle_after), IDLE_CPU_BAR, higher_is_better=False,
                unit="% of a core")
    rep.print(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
