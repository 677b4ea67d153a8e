"""Shared helpers for the benchmark scripts in bench/ (not tests; pytest does not run them).

- data sets: random big files, trees of small files, empty/tiny files, all under a work dir
- timing: best of N runs of a callable or a command, with the data pre-warmed in page cache
- peers: install xxhsum, b3sum, hashdeep, ffmpeg (apt) and bagit, ascmhl (pip) on demand
- output: a small table of figures, bars with the measured ratio and PASS/FAIL, or --json
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

MiB = 1 << 20

# ---------------------------------------------------------------------------
# command line


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--work", type=Path, help="folder for data sets [default: a temp dir in /tmp]")
    p.add_argument("--keep", action="store_true", help="keep the work folder at the end")
    p.add_argument("--runs", type=int, default=3, help="timed runs per figure; the best counts")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    return p


@contextmanager
def work_dir(args: argparse.Namespace, prefix: str) -> Iterator[Path]:
    """`--work DIR` (created, kept) or a temp dir removed at the end unless --keep."""
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        yield args.work.resolve()
        return
    path = Path(tempfile.mkdtemp(prefix=f"snbench-{prefix}-", dir="/tmp"))
    try:
        yield path
    finally:
        if args.keep:
            note(f"kept work folder {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def note(message: str) -> None:
    """Progress and notes go to stderr, so --json keeps stdout clean."""
    print(f"# {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# peers


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


_apt_updated = False


def ensure_apt(tool: str, package: str | None = None) -> bool:
    """True when `tool` is on PATH, installing its Debian package if needed."""
    global _apt_updated
    if have(tool):
        return True
    package = package or tool
    if not have("apt-get"):
        note(f"skipping {tool}: not installed and no apt-get")
        return False
    note(f"installing {package} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        if not _apt_updated:
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _apt_updated = True
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError) as exc:
        note(f"skipping {tool}: cannot install {package} ({exc})")
        return False
    if not have(tool):
        note(f"skipping {tool}: {package} installed but {tool} not on PATH")
        return False
    return True


def ensure_pip(module: str, package: str | None = None) -> bool:
    """True when `module` imports, pip-installing `package` into this interpreter if needed."""
    package = package or module
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        pass
    note(f"installing {package} with pip")
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        importlib.invalidate_caches()
        importlib.import_module(module)
        return True
    except (OSError, subprocess.CalledProcessError, ImportError) as exc:
        note(f"skipping {package}: cannot install it ({exc})")
        return False


def script_of(module_tool: str) -> str | None:
    """A console script installed next to this interpreter (pip puts them there)."""
    here = Path(sys.executable).parent / module_tool
    if here.exists():
        return str(here)
    return shutil.which(module_tool)


def sneakernet_cmd() -> list[str]:
    """How to run the CLI: the `sneakernet` script beside this interpreter, else -m."""
    _compile_package()
    script = script_of("sneakernet")
    return [script] if script else [sys.executable, "-m", "sneakernet.cli"]


@functools.cache
def _compile_package() -> None:
    """Byte-compile the package once, as an install or a first run leaves it.

    With PYTHONDONTWRITEBYTECODE set (as on these machines) an editable install
    is compiled again by every process: ~0.25 s of each CLI run that a user's
    machine pays once.
    """
    import compileall

    for name in ("catalog", "transfer", "cli"):
        module = importlib.import_module(f"sneakernet.{name}")
        compileall.compile_dir(str(Path(module.__file__ or "").parent), quiet=1)


# ---------------------------------------------------------------------------
# data sets


def make_random_files(folder: Path, count: int, size: int) -> list[Path]:
    """`count` files of `size` random bytes each (reused when already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"big_{i:02d}.bin"
        paths.append(path)
        if path.exists() and path.stat().st_size == size:
            continue
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(left, 8 * MiB)
                f.write(os.urandom(n))
                left -= n
    return paths


def make_small_tree(
    root: Path, files: int, *, folders: int = 300, min_size: int = 1024,
    max_size: int = 64 * 1024, seed: int = 1,
) -> tuple[int, int]:
    """`files` files of random sizes in [min_size, max_size] spread over `folders` folders.

    Contents are unique (a counter in front of a slice of a random pool). Returns
    (files, bytes). A tree already made with the same settings is reused (a marker
    file beside `root` says so).
    """
    import random

    marker = root.parent / f".{root.name}.snbench-tree"
    want = f"{files} {folders} {min_size} {max_size} {seed}"
    if root.exists() and marker.exists() and marker.read_text().startswith(want + " "):
        return files, int(marker.read_text().split()[-1])
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    rng = random.Random(seed)
    pool = os.urandom(max_size + 64 * MiB)
    dirs = []
    for d in range(folders):
        # Two levels, like camera/day/ folders.
        path = root / f"cam{d % 10:02d}" / f"day{d // 10:03d}"
        path.mkdir(parents=True, exist_ok=True)
        dirs.append(str(path))
    total = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    for i in range(files):
        size = rng.randint(min_size, max_size)
        off = rng.randrange(0, len(pool) - size)
        fd = os.open(f"{dirs[i % folders]}/f{i:07d}.dat", flags, 0o644)
        os.write(fd, i.to_bytes(8, "little") + pool[off + 8: off + size])
        os.close(fd)
        total += size
    marker.write_text(f"{want} {total}")
    return files, total


def make_tiny_tree(root: Path, files: int, *, per_folder: int = 1000) -> int:
    """`files` empty or tiny files (half empty, half 1-16 bytes), `per_folder` per folder.

    Made with os.open/os.write/os.close in a tight loop. Returns the bytes written.
    """
    marker = root.parent / f".{root.name}.snbench-tiny"
    want = f"{files} {per_folder}"
    if root.exists() and marker.exists() and marker.read_text().startswith(want + " "):
        return int(marker.read_text().split()[-1])
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    open_, write, close = os.open, os.write, os.close
    total = 0
    folder = ""
    for i in range(files):
        if i % per_folder == 0:
            folder = f"{root}/d{i // per_folder:05d}"
            os.mkdir(folder)
        fd = open_(f"{folder}/{i:07d}", flags, 0o644)
        if i & 1:
            data = str(i).encode()
            write(fd, data)
            total += len(data)
        close(fd)
    marker.write_text(f"{want} {total}")
    return total


def tree_size(root: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
    return files, size


def prewarm(paths: Sequence[Path]) -> None:
    """Read everything once so timed runs read from page cache (cat is the ceiling).

    Call it right before each timed run, not once: on this VM a DAMON 'pageout'
    scheme evicts page cache not touched for about a minute
    (/sys/kernel/mm/damon/admin/kdamonds/0), so data warmed minutes ago is
    read from disk again.
    """
    for p in paths:
        if p.is_dir():
            subprocess.run(f"find {_q(p)} -type f -print0 | xargs -0 -r cat > /dev/null",
                           shell=True, check=True)
        else:
            subprocess.run(["cat", str(p)], stdout=subprocess.DEVNULL, check=True)


def hardlink_copy(src: Path, dst: Path) -> None:
    """A copy of a tree whose files are hard links: instant, same cached pages.

    Good for peers that rename files (bagit moves them into data/) or add files
    (ascmhl writes ascmhl/), never for ones that write into the files.
    """
    if dst.exists():
        shutil.rmtree(dst)
    subprocess.run(["cp", "-al", str(src), str(dst)], check=True)


def _q(p: Path | str) -> str:
    return "'" + str(p).replace("'", "'\\''") + "'"


q = _q

# ---------------------------------------------------------------------------
# timing


def best_of(fn: Callable[[], object], runs: int, *, setup: Callable[[], object] | None = None,
            name: str = "") -> tuple[float, object]:
    """Best wall time of `runs` calls of fn (setup, untimed, before each).

    Returns (seconds, what the best call returned).
    """
    best = float("inf")
    kept: object = None
    for i in range(max(1, runs)):
        if setup is not None:
            setup()
        started = time.perf_counter()
        got = fn()
        elapsed = time.perf_counter() - started
        if elapsed < best:
            best, kept = elapsed, got
        if name:
            note(f"{name}: run {i + 1}/{runs}: {elapsed:.3f} s")
    return best, kept


def run(cmd: Sequence[str] | str, *, shell: bool = False, check: bool = True,
        env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, shell=shell, env=env, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {cmd}\n{proc.stderr[-2000:]}")
    return proc


def time_cmd(cmd: Sequence[str] | str, runs: int, *, shell: bool = False,
             setup: Callable[[], object] | None = None, name: str = "",
             ok_codes: Sequence[int] = (0,)) -> tuple[float, subprocess.CompletedProcess]:
    """Best wall time of `runs` runs of a command (output captured)."""

    def once() -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, shell=shell, capture_output=True,
                              text=True)
        if proc.returncode not in ok_codes:
            raise RuntimeError(f"command failed ({proc.returncode}): {cmd}\n{proc.stderr[-2000:]}")
        return proc

    secs, proc = best_of(once, runs, setup=setup, name=name)
    return secs, proc  # type: ignore[return-value]


@dataclass
class Peak:
    seconds: float
    max_rss_bytes: int
    returncode: int
    stdout: str
    stderr: str
    source: str  # "/usr/bin/time -v" or "getrusage"


def run_with_peak_rss(cmd: Sequence[str]) -> Peak:
    """Run `cmd`, returning wall time and peak RSS of the command (children included)."""
    gnu_time = Path("/usr/bin/time")
    if gnu_time.exists():
        started = time.perf_counter()
        proc = subprocess.run([str(gnu_time), "-v", *cmd], capture_output=True, text=True)
        secs = time.perf_counter() - started
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        if m:
            return Peak(secs, int(m.group(1)) * 1024, proc.returncode, proc.stdout,
                        proc.stderr, "/usr/bin/time -v")
    import resource

    started = time.perf_counter()
    # Fork a fresh helper so ru_maxrss of this process's earlier children does not count.
    helper = (
        "import resource, subprocess, sys, json;"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
        "print(json.dumps([p.returncode, r, p.stdout, p.stderr]))"
    )
    proc = subprocess.run([sys.executable, "-c", helper, *cmd], capture_output=True, text=True)
    secs = time.perf_counter() - started
    del resource
    code, rss_kb, out, err = json.loads(proc.stdout)
    return Peak(secs, rss_kb * 1024, code, out, err, "getrusage")


# ---------------------------------------------------------------------------
# results


@dataclass
class Bar:
    name: str
    measured: float  # the ratio (or value) measured
    threshold: float
    higher_is_better: bool = True
    unit: str = "x"

    @property
    def passed(self) -> bool:
        if self.higher_is_better:
            return self.measured >= self.threshold
        return self.measured < self.threshold

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


@dataclass
class Report:
    title: str
    rows: list[dict] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Other work on this 2-core machine moves every figure: say how busy it was.
        self.info["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())

    def row(self, what: str, seconds: float | None, **figures: object) -> dict:
        r = {"what": what, "seconds": None if seconds is None else round(seconds, 4), **figures}
        self.rows.append(r)
        return r

    def bar(self, name: str, measured: float, threshold: float, *, higher_is_better: bool = True,
            unit: str = "x") -> Bar:
        b = Bar(name, measured, threshold, higher_is_better, unit)
        self.bars.append(b)
        return b

    def skip(self, what: str, why: str) -> None:
        self.notes.append(f"{what} skipped: {why}")

    def print(self, as_json: bool) -> None:
        self.info.setdefault("load average at end", " ".join(f"{x:.2f}" for x in os.getloadavg()))
        self.info.setdefault("code", git_head())
        if as_json:
            print(json.dumps({"title": self.title, "info": self.info, "rows": self.rows,
                              "bars": [b.to_dict() for b in self.bars], "notes": self.notes},
                             indent=2, default=str))
            return
        print(f"== {self.title}")
        for k, v in self.info.items():
            print(f"   {k}: {v}")
        if self.rows:
            cols: list[str] = []
            for r in self.rows:
                cols += [c for c in r if c not in cols]
            cols = [c for c in cols if any(r.get(c) is not None for r in self.rows)]
            cells = [[_fmt(r.get(c)) for c in cols] for r in self.rows]
            widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
            print("   " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                    for i, (c, w) in enumerate(zip(cols, widths, strict=True))))
            for row in cells:
                print("   " + "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                                        for i, (v, w) in enumerate(zip(row, widths, strict=True))))
        if self.bars:
            print("   bars:")
            for b in self.bars:
                op = ">=" if b.higher_is_better else "<"
                verdict = "PASS" if b.passed else "FAIL"
                print(f"   {verdict}  {b.name}: {_fmt(b.measured)}{b.unit} (bar {op} "
                      f"{_fmt(b.threshold)}{b.unit})")
        for n in self.notes:
            print(f"   note: {n}")


def git_head() -> str:
    """The commit of the sneakernet checkout, and whether its tree has changes."""
    here = Path(__file__).resolve().parent.parent
    try:
        head = run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"])
        return head + (" + uncommitted changes" if dirty.stdout.strip() else "")
    except (OSError, RuntimeError):
        return "unknown"


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def gbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e9


def both(*fns: Callable[[], object]) -> Callable[[], None]:
    """One setup hook that runs several (e.g. prewarm, then a fresh catalog)."""

    def run_all() -> None:
        for fn in fns:
            fn()

    return run_all


FRESH_SCAN = (
    "import json, sys, time\n"
    "from sneakernet.catalog.db import Catalog\n"
    "from sneakernet.catalog.scan import scan\n"
    "r = scan(Catalog(sys.argv[1]), sys.argv[2], sys.argv[3])\n"
    "print(json.dumps(r.to_dict(), default=str))\n"
)


def fresh_process_scan_cmd(catalog: Path, root: Path, dataset: str) -> list[str]:
    """The library scan in a new interpreter: start-up and fresh memory without the CLI."""
    return [sys.executable, "-c", FRESH_SCAN, str(catalog), str(root), dataset]


def sneakernet_scan_cli(catalog: Path, root: Path, dataset: str, *extra: str) -> dict:
    """One CLI scan; returns the JSON it printed."""
    proc = run([*sneakernet_cmd(), "--catalog", str(catalog), "scan", str(root), "--dataset",
                dataset, "--json", *extra], check=False)
    if proc.returncode not in (0,):
        raise RuntimeError(f"sneakernet scan failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def fresh_catalog(path: Path) -> Path:
    """A new, empty catalog file with its schema (created untimed)."""
    from sneakernet.catalog.db import Catalog

    for p in path.parent.glob(path.name + "*"):
        p.unlink()
    Catalog(path).ensure_schema()
    return path


def phases(phase_seconds: dict[str, float]) -> str:
    """A scan's phase times, e.g. 'walk=0.002 plan=0.030 hash=0.166 ...'."""
    return " ".join(f"{k}={v:.3f}" for k, v in phase_seconds.items())


def cli_inside(stdout: str) -> str:
    """The scan's own seconds and phases as `scan --json` reported them (the rest is start-up)."""
    data = json.loads(stdout)
    return f"{data['seconds']:.3f} s in scan(): " + phases(data["phase_seconds"])
