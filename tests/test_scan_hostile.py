"""scan against hostile input: odd names, links, special files, I/O errors, races, bad
arguments, unusable catalogs, locks and Ctrl-C.

Real files in tmp_path, a real DuckDB catalog, real videos, and the real CLI in a
subprocess wherever the behaviour is the CLI's (exit status, one clear error line).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import duckdb
import pytest

from sneakernet.catalog import hashing, hashpass, samples
from sneakernet.catalog import scan as scan_mod
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.errors import CatalogFormatError, UsageError
from sneakernet.catalog.scan import ScanResult, scan
from sneakernet.catalog.stats import stats

sys.path.insert(0, str(Path(__file__).parent))  # tests/ is not a package
from transfer_fixtures import in_thread, xxh

CLI = [sys.executable, "-m", "sneakernet.cli"]
EXIT_OK, EXIT_USAGE, EXIT_PROBLEMS, EXIT_BUSY, EXIT_CATALOG, EXIT_SOURCE = 0, 2, 3, 5, 6, 7
EXIT_INTERRUPTED = 130
MiB = 1 << 20


# --------------------------------------------------------------------------- helpers


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SNEAKERNET_CATALOG"}
    env["COLUMNS"] = "200"
    return env


def run_cli(*args: str | os.PathLike | bytes, timeout: float = 60, **kwargs):
    """The real CLI in a subprocess; output kept as bytes (names need not be UTF-8)."""
    cmd = [*CLI, *(a if isinstance(a, bytes) else str(a) for a in args)]
    kwargs.setdefault("env", _env())
    return subprocess.run(cmd, capture_output=True, timeout=timeout, **kwargs)


def run_cli_many(*argvs: list, timeout: float = 60) -> list[subprocess.CompletedProcess]:
    """Several CLI runs at once (each is mostly interpreter start-up); results in order."""
    procs = [
        subprocess.Popen([*CLI, *map(str, argv)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=_env())
        for argv in argvs
    ]
    done = []
    for argv, proc in zip(argvs, procs, strict=True):
        out, err = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    return done


def assert_clean_error(proc: subprocess.CompletedProcess, status: int, *needles: str) -> str:
    """Exit `status`, stderr exactly 'error: ...' plus 'hint: ...', no traceback."""
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == status, (proc.returncode, stderr)
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 2, f"want one error line and one hint line, got {lines!r}"
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def entries(catalog: Catalog, dataset: str, version: int | None = None) -> dict[str, dict]:
    """path -> entry row (as a dict) of one version, by default the latest (names that
    need no raw_path only: two files may share a readable `path`)."""
    with catalog.read() as con:
        if version is None:
            version = con.execute(
                "SELECT max(version) FROM versions WHERE dataset = ?", [dataset]
            ).fetchone()[0]
        cur = con.execute(
            "SELECT * FROM entries WHERE dataset = ? AND version = ?", [dataset, version]
        )
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    by_path = {r["path"]: r for r in rows}
    assert len(by_path) == len(rows), "two entries share a path: use raw_path"
    return by_path


def version_count(catalog: Catalog, dataset: str | None = None) -> int:
    with catalog.read() as con:
        if dataset is None:
            return con.execute("SELECT count(*) FROM versions").fetchone()[0]
        return con.execute(
            "SELECT count(*) FROM versions WHERE dataset = ?", [dataset]
        ).fetchone()[0]


def scan_in_thread(catalog: Catalog, root: Path, dataset: str, *, timeout: float = 30,
                   **kwargs) -> ScanResult:
    """scan(), failing the test (instead of hanging it) if it does not finish in time."""
    return in_thread(lambda: scan(catalog, root, dataset, **kwargs), timeout=timeout)


def problems(result: ScanResult | dict) -> dict[str, tuple[str, str]]:
    """path -> (kind, message) of a ScanResult or of `scan --json` output."""
    if isinstance(result, dict):
        return {p["path"]: (p["kind"], p["message"]) for p in result["problems"]}
    return {p.path: (p.kind, p.message) for p in result.problems}


class _OsProxy:
    """Stands in for `os` inside sneakernet.catalog.hashing: every read goes past a hook."""

    def __init__(self, hook) -> None:
        self._hook = hook
        self._opened: list[tuple[int, int]] = []

    def __getattr__(self, name: str):
        return getattr(os, name)

    def open(self, path, flags, *args):
        fd = os.open(path, flags, *args)
        st = os.fstat(fd)
        self._opened.append((st.st_dev, st.st_ino))
        return fd

    def opened(self, path: Path) -> list[tuple[int, int]]:
        st = os.stat(path)
        return [key for key in self._opened if key == (st.st_dev, st.st_ino)]

    def read(self, fd: int, n: int) -> bytes:
        return self._hook(fd, lambda: os.read(fd, n))

    def readv(self, fd: int, buffers) -> int:
        return self._hook(fd, lambda: os.readv(fd, buffers))


def _same_file(fd: int, path: Path) -> bool:
    a, b = os.fstat(fd), os.stat(path)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


# --------------------------------------------------------------------------- hashes


def test_hashes_equal_xxhsum_h2(tmp_path: Path):
    xxhsum = shutil.which("xxhsum")
    if xxhsum is None:
        if os.environ.get("CI"):
            pytest.fail("xxhsum is required in CI")
        pytest.skip("xxhsum not installed")
    root = tmp_path / "tree"
    root.mkdir()
    noise = os.urandom(9 * MiB + 7)
    sizes = {
        "empty": 0,
        "one_byte": 1,
        "exactly_1MiB": MiB,  # the largest file read in one go
        "1MiB_plus_1": MiB + 1,  # the smallest file streamed
        "exactly_4MiB": hashing.BUFFER_SIZE,
        "random_9MiB": 9 * MiB,  # several buffers and a partial one
    }
    for name, size in sizes.items():
        (root / name).write_bytes(noise[size % 97 : size % 97 + size])
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan(catalog, root, "sums")
    assert result.hashed_files == len(sizes) and not result.problems

    proc = subprocess.run([xxhsum, "-H2", *sorted(sizes)], cwd=root, capture_output=True,
                          text=True, check=True)
    expected = {}
    for line in proc.stdout.splitlines():
        digest, name = line.split(maxsplit=1)
        expected[name] = digest
    assert set(expected) == set(sizes)
    got = {path: row["hash"] for path, row in entries(catalog, "sums").items()}
    assert got == expected
    assert all(len(h) == 32 and h == h.lower() for h in got.values())
    assert len(set(got.values())) == len(sizes)


# --------------------------------------------------------------------------- names

_HOSTILE_NAMES: list[bytes] = [
    unicodedata.normalize("NFC", "café.txt").encode(),
    unicodedata.normalize("NFD", "café.txt").encode(),  # same name, other bytes
    b"with  two spaces .txt",
    b" leading space",
    b"-rf",
    b"--help",
    b"new\nline.txt",
    b"tab\there.txt",
    b"back\\slash.txt",
    b"esc\x1b[31mred\x1b[0m.txt",
    b"bell\x07.txt",
    b"clip:thumbs_up:.txt",  # rich would turn this into an emoji
    b"[bold]markup[/bold].txt",
    b"bad\xff\xfename.bin",  # not UTF-8
    b"bad\\xff\\xfename.bin",  # the readable form of the previous one, as a real name
    b"latin1-\xe9t\xe9.txt",
    b"dir-\x80\x81/inner\xc3.txt",  # undecodable folder and file
    b"deep/er/still/x.txt",
]
# Names that are controls for a terminal even when they arrive inside JSON text.
_TERMINAL_TRICKS: list[bytes] = [
    b"del\x7f.txt",
    "csi\x9b31m.txt".encode(),  # C1 CSI, UTF-8 encoded
    "rtl\u202egpj.exe".encode(),  # right-to-left override: shows as 'exe.jpg'
]


def _make_named_tree(root: Path, names: list[bytes]) -> bytes:
    broot = os.fsencode(root)
    for name in names:
        full = broot + b"/" + name
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as fh:
            fh.write(b"content of " + name)  # each file's bytes name it
    return broot


def test_hostile_names_are_all_recorded_and_raw_path_round_trips(tmp_path: Path):
    root = tmp_path / "tree"
    broot = _make_named_tree(root, _HOSTILE_NAMES + _TERMINAL_TRICKS)
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan_in_thread(catalog, root, "names")
    assert result.problems == [] and result.files == len(_HOSTILE_NAMES) + len(_TERMINAL_TRICKS)
    with catalog.read() as con:
        cur = con.execute("SELECT * FROM entries WHERE dataset = 'names'")
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    recorded: dict[bytes, dict] = {}
    for row in rows:
        path = row["path"]
        raw = row["raw_path"] if row["raw_path"] is not None else path.encode("utf-8")
        assert raw not in recorded, f"{raw!r} recorded twice"
        recorded[raw] = row
        # the exact bytes open the very file the hash was taken of
        full = broot + b"/" + raw
        assert xxh(full) == row["hash"], path
        with open(full, "rb") as fh:
            assert fh.read() == b"content of " + raw
        assert row["kind"] == "file" and row["status"] == "ok"
    assert set(recorded) == set(_HOSTILE_NAMES + _TERMINAL_TRICKS)
    # names that are not UTF-8 keep their exact bytes and get a readable, valid text form
    for name in (b"bad\xff\xfename.bin", b"latin1-\xe9t\xe9.txt", b"dir-\x80\x81/inner\xc3.txt"):
        assert recorded[name]["raw_path"] == name
        recorded[name]["path"].encode("utf-8")
    # the look-alike pair is two entries with two different contents
    assert recorded[b"bad\xff\xfename.bin"]["hash"] != recorded[b"bad\\xff\\xfename.bin"]["hash"]
    nfc, nfd = (unicodedata.normalize(f, "café.txt").encode() for f in ("NFC", "NFD"))
    assert recorded[nfc]["hash"] != recorded[nfd]["hash"]


@pytest.fixture(scope="module")
def ls_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """stdout of `ls names` and `ls names --json` over the hostile-name tree."""
    tmp_path = tmp_path_factory.mktemp("names")
    root = tmp_path / "tree"
    _make_named_tree(root, _HOSTILE_NAMES + _TERMINAL_TRICKS)
    cat = tmp_path / "cat.duckdb"
    scan_in_thread(Catalog(cat), root, "names")
    text, js = run_cli_many(["--catalog", cat, "ls", "names"],
                            ["--catalog", cat, "ls", "names", "--json"])
    for proc in (text, js):
        assert proc.returncode == EXIT_OK, proc.stderr
    return text.stdout, js.stdout


def _raw_controls(data: bytes, *, categories=("Cc", "Cf")) -> list[str]:
    """Control characters other than the line feed, as they would reach the terminal."""
    text = data.decode("utf-8")  # output must be valid UTF-8 even for non-UTF-8 names
    return sorted({c for c in text if unicodedata.category(c) in categories and c != "\n"})


def _c0_controls(data: bytes) -> list[str]:
    return [c for c in _raw_controls(data, categories=("Cc",)) if c < " "]


def test_ls_escapes_control_characters_in_names(ls_output):
    text, _ = ls_output
    assert _raw_controls(text) == []
    lines = text.decode("utf-8").splitlines()
    assert len(lines) == len(_HOSTILE_NAMES) + len(_TERMINAL_TRICKS)  # one line per file
    shown = "\n".join(lines)
    for escaped in ("new\\nline.txt", "tab\\there.txt", "esc\\x1b[31mred\\x1b[0m.txt",
                    "bell\\x07.txt", "del\\x7f.txt", "csi\\x9b31m.txt", "rtl\\u202egpj.exe",
                    "back\\slash.txt", " leading space", "-rf", "--help",
                    "[bold]markup[/bold].txt"):
        assert escaped in shown, escaped


def test_ls_prints_emoji_codes_in_names_verbatim(ls_output):
    text, _ = ls_output
    assert "clip:thumbs_up:.txt" in text.decode("utf-8")


def test_ls_json_is_valid_and_escapes_c0_controls(ls_output):
    _, js = ls_output
    rows = json.loads(js)
    paths = {r["path"] for r in rows}
    assert len(rows) == len(_HOSTILE_NAMES) + len(_TERMINAL_TRICKS)
    assert {"new\nline.txt", "tab\there.txt", "esc\x1b[31mred\x1b[0m.txt"} <= paths  # exact
    assert unicodedata.normalize("NFD", "café.txt") in paths
    assert "bad\\xff\\xfename.bin" in paths  # undecodable bytes shown as escapes
    assert _c0_controls(js) == []  # only the indentation's line feeds


def test_ls_json_escapes_del_c1_and_bidi_controls(ls_output):
    _, js = ls_output
    assert _raw_controls(js) == []


# --------------------------------------------------------------------------- links


def test_symlinks_are_recorded_never_followed(tmp_path: Path):
    root = tmp_path / "tree"
    (root / "d").mkdir(parents=True)
    (root / "real.txt").write_bytes(b"real")
    links = {
        "inside": "real.txt",
        "outside": "/etc/passwd",
        "outside_dir": "/etc",
        "dangling": "no/such/file",
        "a": "a",  # a loop on itself
        "d/loop": "..",  # a folder loop
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan_in_thread(catalog, root, "links", timeout=30)
    rows = entries(catalog, "links")
    assert set(rows) == {"real.txt", *links}
    for name, target in links.items():
        row = rows[name]
        assert (row["kind"], row["link_target"], row["hash"]) == ("symlink", target, None), name
        assert row["size"] == os.lstat(root / name).st_size
    assert rows["real.txt"]["kind"] == "file" and rows["real.txt"]["hash"] == xxh(root / "real.txt")
    assert (result.files, result.symlinks, result.hashed_files) == (1, len(links), 1)
    # nothing outside the root was read: not in the entries, not in the hash cache
    with catalog.read() as con:
        cached = con.execute("SELECT device, inode FROM hash_cache").fetchall()
    passwd = os.stat("/etc/passwd")
    assert (passwd.st_dev, passwd.st_ino) not in cached
    assert len(cached) == 1
    assert xxh("/etc/passwd") not in {r["hash"] for r in rows.values()}


# --------------------------------------------------------------------------- special files


def test_fifo_and_socket_are_skipped_without_hanging(tmp_path: Path):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "plain.txt").write_bytes(b"plain")
    os.mkfifo(root / "pipe")  # no writer: opening it for reading would block
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    catalog = Catalog(tmp_path / "cat.duckdb")
    try:
        sock.bind(str(root / "sock"))
        sock.listen(1)
        result = scan_in_thread(catalog, root, "special", timeout=30)
    finally:
        sock.close()
    found = problems(result)
    assert found["pipe"][0] == "skipped" and "FIFO" in found["pipe"][1]
    assert found["sock"][0] == "skipped" and "socket" in found["sock"][1]
    assert result.files == 1 and result.version == 1
    assert set(entries(catalog, "special")) == {"plain.txt"}


@pytest.mark.parametrize("swap", ["fifo", "symlink_out", "directory"])
def test_file_replaced_after_walk_is_not_read_through(tmp_path: Path, monkeypatch, swap):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "keep.txt").write_bytes(b"keep")
    swapped = root / "swap.bin"
    swapped.write_bytes(b"soon something else")
    real_plan = hashpass.plan

    def plan_then_swap(*args, **kwargs):
        swapped.unlink()
        if swap == "fifo":
            os.mkfifo(swapped)  # no writer: a blocking open would hang forever
        elif swap == "symlink_out":
            os.symlink("/etc/passwd", swapped)
        else:
            swapped.mkdir()
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(hashpass, "plan", plan_then_swap)
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan_in_thread(catalog, root, "swap", timeout=20)
    assert "swap.bin" in problems(result)
    rows = entries(catalog, "swap")
    assert rows["keep.txt"]["hash"] == xxh(root / "keep.txt")
    if "swap.bin" in rows:  # may stay listed as unreadable, but never with a hash
        assert rows["swap.bin"]["hash"] is None and rows["swap.bin"]["status"] != "ok"
    assert xxh("/etc/passwd") not in {r["hash"] for r in rows.values()}


# --------------------------------------------------------------------------- unreadable

_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _PR_CAPBSET_DROP = 1, 2, 24


def _without_root_read_powers() -> None:
    """preexec_fn: drop the capabilities that let root read a chmod 000 file.

    Switching to uid 65534 cannot work here: the interpreter lives under /root (0700).
    Dropping CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set before exec
    makes permission bits bind root as they bind anyone.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_file_and_folder_cli(tmp_path: Path):
    root = tmp_path / "tree"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "hidden.txt").write_bytes(b"hidden")
    (root / "fine.txt").write_bytes(b"fine")
    (root / "sub").mkdir()
    (root / "sub" / "also_fine.txt").write_bytes(b"also fine")
    secret = root / "secret.bin"
    secret.write_bytes(b"secret")
    preexec = _without_root_read_powers if os.geteuid() == 0 else None
    secret.chmod(0)
    (root / "locked").chmod(0)
    try:
        try:
            probe = subprocess.run(["cat", str(secret)], capture_output=True,
                                   preexec_fn=preexec)
        except subprocess.SubprocessError:  # prctl refused: no CAP_SETPCAP here
            pytest.skip("cannot drop root's read capabilities here")
        if probe.returncode == 0:
            pytest.skip("cannot make a file unreadable here (capabilities cannot be dropped)")
        cat = tmp_path / "cat.duckdb"
        proc = run_cli("--catalog", cat, "scan", root, "-d", "perm", "--json",
                       preexec_fn=preexec)
    finally:
        secret.chmod(0o644)
        (root / "locked").chmod(0o755)
    assert proc.returncode == EXIT_PROBLEMS, proc.stderr
    assert b"Traceback" not in proc.stderr
    out = json.loads(proc.stdout)
    found = problems(out)
    assert found["secret.bin"][0] == "unreadable" and "ermission" in found["secret.bin"][1]
    assert found["locked"][0] == "unreadable-folder" and "ermission" in found["locked"][1]
    catalog = Catalog(cat)
    rows = entries(catalog, "perm")
    assert set(rows) == {"fine.txt", "sub/also_fine.txt", "secret.bin"}
    assert (rows["secret.bin"]["status"], rows["secret.bin"]["hash"]) == ("unreadable", None)
    assert "ermission" in rows["secret.bin"]["error"]
    for name in ("fine.txt", "sub/also_fine.txt"):
        assert rows[name]["status"] == "ok" and rows[name]["hash"] == xxh(root / name)
    assert stats(catalog, "perm").total.unread_files == 1


def test_eio_at_read_time_marks_only_that_file_unreadable(tmp_path: Path, monkeypatch):
    root = tmp_path / "tree"
    root.mkdir()
    small, big = root / "bad_small.bin", root / "bad_big.bin"  # os.read / os.readv paths
    small.write_bytes(b"s" * 1000)
    big.write_bytes(os.urandom(3 * MiB))
    for i in range(5):
        (root / f"good{i}.bin").write_bytes(os.urandom(1000 + i * MiB // 2))

    def hook(fd, do_read):
        if _same_file(fd, small) or _same_file(fd, big):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return do_read()

    monkeypatch.setattr(hashing, "os", _OsProxy(hook))
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan_in_thread(catalog, root, "eio")
    rows = entries(catalog, "eio")
    assert len(rows) == 7
    for bad in (small, big):
        row = rows[bad.name]
        assert (row["status"], row["hash"]) == ("unreadable", None)
        assert row["error"] == os.strerror(errno.EIO)
        assert problems(result)[bad.name] == ("unreadable", os.strerror(errno.EIO))
    for i in range(5):
        row = rows[f"good{i}.bin"]
        assert row["status"] == "ok" and row["hash"] == xxh(root / f"good{i}.bin")
    with catalog.read() as con:
        assert con.execute("SELECT count(*) FROM hash_cache").fetchone()[0] == 5


# --------------------------------------------------------------------------- races


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


@pytest.mark.parametrize("size", [1000, 6 * MiB], ids=["small", "big"])
def test_file_changing_during_every_read_gets_no_hash(tmp_path: Path, monkeypatch, size):
    root = tmp_path / "tree"
    root.mkdir()
    moving = root / "moving.bin"
    moving.write_bytes(os.urandom(size))
    (root / "still.bin").write_bytes(b"still")
    appends = []

    def hook(fd, do_read):
        got = do_read()
        # a writer appends once during each read of the file (each open is one attempt)
        if _same_file(fd, moving) and len(appends) < len(proxy.opened(moving)):
            appends.append(fd)
            _append(moving, b"more")
        return got

    proxy = _OsProxy(hook)
    monkeypatch.setattr(hashing, "os", proxy)
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan_in_thread(catalog, root, "moving")
    row = entries(catalog, "moving")["moving.bin"]
    assert (row["status"], row["hash"]) == ("changing", None)
    assert row["error"] and problems(result)["moving.bin"][0] == "changing"
    assert len(proxy.opened(moving)) >= 3  # tried again before giving up
    assert entries(catalog, "moving")["still.bin"]["hash"] == xxh(root / "still.bin")
    with catalog.read() as con:  # no hash of the moving file reached the cache either
        assert con.execute("SELECT count(*) FROM hash_cache").fetchone()[0] == 1


@pytest.mark.parametrize("size", [1000, 6 * MiB], ids=["small", "big"])
def test_file_growing_faster_than_it_is_read_does_not_stall_the_scan(
    tmp_path: Path, monkeypatch, size
):
    """A file still being written (a copy in progress, a camera recording) grows while
    it is read; however fast it grows, hashing it must take a bounded number of reads."""
    root = tmp_path / "tree"
    root.mkdir()
    growing = root / "growing.bin"
    growing.write_bytes(os.urandom(size))
    cap = 2000  # the writer stops here, so a scan that chases it still ends
    reads = []

    def hook(fd, do_read):
        if _same_file(fd, growing):
            reads.append(1)
            if len(reads) < cap:
                _append(growing, b"grow" * 64)  # the writer is always a little ahead
        return do_read()

    monkeypatch.setattr(hashing, "os", _OsProxy(hook))
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan_in_thread(catalog, root, "growing", timeout=60)
    row = entries(catalog, "growing")["growing.bin"]
    bound = 3 * (size // hashing.BUFFER_SIZE + 2)  # three attempts, each of the size seen
    assert len(reads) <= bound, f"{len(reads)} reads of one {size}-byte file: chased the writer"
    assert (row["status"], row["hash"]) == ("changing", None)
    assert problems(result)["growing.bin"][0] == "changing"


def test_file_that_changes_once_is_hashed_as_it_ends_up(tmp_path: Path, monkeypatch):
    root = tmp_path / "tree"
    root.mkdir()
    moving = root / "moving.bin"
    moving.write_bytes(os.urandom(5 * MiB))
    appended = []

    def hook(fd, do_read):
        got = do_read()
        if not appended and _same_file(fd, moving):
            appended.append(1)
            _append(moving, b"tail")
        return got

    monkeypatch.setattr(hashing, "os", _OsProxy(hook))
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan_in_thread(catalog, root, "once")
    row = entries(catalog, "once")["moving.bin"]
    assert appended, "the hook never saw the file being read"
    assert row["status"] == "ok" and not result.problems
    assert row["hash"] == xxh(moving)  # the final bytes, never a mix
    assert row["size"] == 5 * MiB + 4 == moving.stat().st_size


def test_file_deleted_between_walk_and_hash_is_vanished(tmp_path: Path, monkeypatch):
    root = tmp_path / "tree"
    root.mkdir()
    for name in ("keep1.txt", "keep2.txt", "gone.txt"):
        (root / name).write_bytes(name.encode())
    real_plan = hashpass.plan

    def plan_then_delete(*args, **kwargs):
        (root / "gone.txt").unlink()
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(hashpass, "plan", plan_then_delete)
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan_in_thread(catalog, root, "vanish")
    assert problems(result)["gone.txt"][0] == "vanished"
    assert set(entries(catalog, "vanish")) == {"keep1.txt", "keep2.txt"}
    assert result.files == 2
    with catalog.read() as con:
        files = con.execute("SELECT files FROM versions WHERE dataset = 'vanish'").fetchone()[0]
    assert files == 2


# --------------------------------------------------------------------------- broken videos


def test_broken_videos_are_recorded_counted_and_listed(tmp_path: Path):
    root = tmp_path / "tree"
    spec = samples.ClipSpec("good.mp4", "libx264", frames=10, faststart=True, seed=3)
    samples.write_clip(root / "good.mp4", spec)
    cut = samples.write_clip(root / "cut.mp4", samples.ClipSpec("cut.mp4", "libx264", seed=4))
    samples.truncate_file(cut, 0.5)
    (root / "zero.mp4").write_bytes(b"")
    (root / "text.mkv").write_text("this is not a matroska file\n" * 20)
    (root / "notes.txt").write_text("notes\n")
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan_in_thread(catalog, root, "vids", timeout=60)
    rows = entries(catalog, "vids")
    assert set(rows) == {"good.mp4", "cut.mp4", "zero.mp4", "text.mkv", "notes.txt"}
    assert all(r["status"] == "ok" and r["hash"] for r in rows.values())
    broken = {p.path: p.message for p in result.problems if p.kind == "broken-video"}
    assert set(broken) == {"cut.mp4", "zero.mp4", "text.mkv"}
    assert all(message and message != "broken" for message in broken.values()), broken
    total = stats(catalog, "vids").total
    assert (total.files, total.video_files, total.broken_files) == (5, 1, 3)
    with catalog.read() as con:
        flagged = con.execute(
            "SELECT path, media_error FROM api.files WHERE dataset = 'vids' AND broken"
        ).fetchall()
    assert {p for p, _ in flagged} == set(broken) and all(e for _, e in flagged)


def test_non_video_file_with_a_broken_videos_bytes_is_not_a_broken_video(tmp_path: Path):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "zero.mp4").write_bytes(b"")  # a recording that never started
    (root / "_SUCCESS").write_bytes(b"")  # a job's empty marker file
    (root / "__init__.py").write_bytes(b"")
    catalog = Catalog(tmp_path / "cat.duckdb")
    result = scan_in_thread(catalog, root, "marks")
    assert [p.path for p in result.problems if p.kind == "broken-video"] == ["zero.mp4"]
    total = stats(catalog, "marks").total
    assert (total.files, total.video_files, total.broken_files) == (3, 0, 1)


# --------------------------------------------------------------------------- bad arguments


def test_unusable_root_exits_7_with_one_clear_line(tmp_path: Path):
    (tmp_path / "file.txt").write_text("x")
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    targets = {
        "missing": (tmp_path / "no" / "such" / "folder", "does not exist"),
        "regular file": (tmp_path / "file.txt", "not a folder"),
        "device": (Path("/dev/null"), "not a folder"),
        "dangling link": (tmp_path / "dangling", "does not exist"),
    }
    cat = tmp_path / "cat.duckdb"
    runs = run_cli_many(*(["--catalog", cat, "scan", t, "-d", "ds"] for t, _ in targets.values()))
    for (kind, (target, needle)), proc in zip(targets.items(), runs, strict=True):
        line = assert_clean_error(proc, EXIT_SOURCE, needle)
        assert str(target) in line, kind
    assert not cat.exists() or version_count(Catalog(cat)) == 0


def test_a_root_whose_path_is_not_utf8_is_refused_clearly(tmp_path: Path):
    """Names inside a tree may be any bytes; the version's folder is kept as text, so a
    folder that is not (pack could not find its files again) is refused up front."""
    root = os.fsencode(tmp_path) + b"/cam\xff"
    os.mkdir(root)
    with open(root + b"/a.bin", "wb") as f:
        f.write(b"x")
    cat = tmp_path / "cat.duckdb"
    proc = run_cli("--catalog", cat, "scan", root, "-d", "ds")
    line = assert_clean_error(proc, EXIT_SOURCE, "not valid UTF-8")
    assert "cam\\xff" in line
    assert not cat.exists() or version_count(Catalog(cat)) == 0
    inside = tmp_path / "plain"  # the same bytes one level down are recorded exactly
    os.rename(root, os.fsencode(inside))
    os.mkdir(os.fsencode(inside) + b"/cam\xff")
    with open(os.fsencode(inside) + b"/cam\xff/b\xfe.bin", "wb") as f:
        f.write(b"y")
    assert scan(Catalog(cat), inside, "ds").files == 2


def test_root_error_line_escapes_control_characters_in_the_path(tmp_path: Path):
    hostile = tmp_path / "missing\nhint: fake\x1b[2J"
    proc = run_cli("--catalog", tmp_path / "cat.duckdb", "scan", hostile, "-d", "ds")
    assert proc.returncode == EXIT_SOURCE
    assert _raw_controls(proc.stderr) == []
    assert_clean_error(proc, EXIT_SOURCE, "does not exist")


_BAD_ARGS = [
    ("-d", "a/b", "invalid dataset name"),
    ("-d", "../x", "invalid dataset name"),
    ("-d", "", "invalid dataset name"),
    ("-d", "x@1", "invalid dataset name"),
    ("--label", "12", "invalid version label"),
    ("--label", "latest", "invalid version label"),
]


def test_bad_dataset_name_or_label_exits_2(tmp_path: Path):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "f.txt").write_text("f")
    cat = tmp_path / "cat.duckdb"
    runs = run_cli_many(*(
        ["--catalog", cat, "scan", root, *(["-d", f"ok{i}"] if opt == "--label" else []),
         opt, value]
        for i, (opt, value, _) in enumerate(_BAD_ARGS)
    ))
    for (opt, value, needle), proc in zip(_BAD_ARGS, runs, strict=True):
        line = assert_clean_error(proc, EXIT_USAGE, needle)
        assert repr(value) in line, (opt, value)
        # the library refuses the same input
        kwargs = {"label": value} if opt == "--label" else {}
        with pytest.raises(UsageError):
            scan(Catalog(tmp_path / "lib.duckdb"), root, "ok" if kwargs else value, **kwargs)
    assert not cat.exists() or version_count(Catalog(cat)) == 0


# --------------------------------------------------------------------------- unusable catalogs


def _foreign_duckdb(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE photos (id INTEGER, name VARCHAR)")
    con.execute("INSERT INTO photos VALUES (1, 'a'), (2, 'b')")
    con.close()


@pytest.mark.parametrize("kind", ["directory", "not_duckdb", "other_tables"])
def test_unusable_catalog_exits_6_and_is_left_untouched(tmp_path: Path, kind: str):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "f.txt").write_text("f")
    place = tmp_path / "place"
    place.mkdir()
    cat = place / "cat.duckdb"
    if kind == "directory":
        cat.mkdir()
        (cat / "inside").write_bytes(b"keep")
    elif kind == "not_duckdb":
        cat.write_bytes(b"PK\x03\x04" + os.urandom(4096))
    else:
        _foreign_duckdb(cat)
    before = _snapshot(place)
    proc = run_cli("--catalog", cat, "scan", root, "-d", "ds")
    line = assert_clean_error(proc, EXIT_CATALOG)
    assert str(cat) in line
    after = _snapshot(place)
    assert {k: v for k, v in after.items() if k in before} == before  # same bytes
    assert not (place / "cat.duckdb.wal").exists()


def test_sqlite_file_as_catalog_is_refused_without_fetching_extensions(tmp_path: Path,
                                                                        monkeypatch):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "f.txt").write_text("f")
    cat = tmp_path / "notes.db"  # someone's SQLite database, given by mistake
    con = sqlite3.connect(cat)
    con.execute("CREATE TABLE notes (body TEXT)")
    con.execute("INSERT INTO notes VALUES ('precious')")
    con.commit()
    con.close()
    before = cat.read_bytes()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(CatalogFormatError):
        scan(Catalog(cat), root, "ds")
    assert cat.read_bytes() == before
    assert list(home.iterdir()) == []  # nothing fetched into ~/.duckdb


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in folder.rglob("*")}


def test_unusable_catalog_is_refused_before_the_tree_is_walked(tmp_path: Path, monkeypatch):
    """A 10-million-file walk should not come before 'that is not a catalog'."""
    root = tmp_path / "tree"
    root.mkdir()
    (root / "f.txt").write_text("f")
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"PK\x03\x04" + bytes(4096))

    def walk_not_expected(*args, **kwargs):
        raise AssertionError("walked the tree before checking the catalog")

    monkeypatch.setattr(scan_mod, "walk_to_parquet", walk_not_expected)
    with pytest.raises(CatalogFormatError):
        scan(Catalog(junk), root, "ds")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.duckdb", "tree"]


def test_newer_schema_exits_6(tmp_path: Path):
    cat = tmp_path / "cat.duckdb"
    Catalog(cat).ensure_schema()
    con = duckdb.connect(str(cat))
    con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    con.close()
    before = cat.read_bytes()
    root = tmp_path / "tree"
    root.mkdir()
    (root / "f.txt").write_text("f")
    proc = run_cli("--catalog", cat, "scan", root, "-d", "ds")
    assert_clean_error(proc, EXIT_CATALOG, "999", "newer than this sneakernet understands")
    assert cat.read_bytes() == before


# --------------------------------------------------------------------------- catalog in the tree


def test_catalog_inside_the_tree_is_not_scanned(tmp_path: Path):
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    (root / "b.txt").write_text("b")
    catalog = Catalog(root / "cat.duckdb")
    first = scan(catalog, root, "one")
    scan(catalog, root, "two")  # 'one's lock file exists now
    assert (root / "cat.duckdb").exists() and (root / "cat.duckdb.scan-one.lock").exists()
    for dataset in ("one", "two"):
        assert set(entries(catalog, dataset)) == {"sub/a.txt", "b.txt"}, dataset
    again = scan(catalog, root, "one")  # the catalog file changed meanwhile; the data did not
    assert first.version == 1 and again.version is None and again.hashed_files == 0
    # a writer killed mid-work leaves a WAL beside the catalog; it is not data either
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(catalog.path)], check=True,
                   timeout=60)
    assert (root / "cat.duckdb.wal").exists()
    after_crash = scan(catalog, root, "one")
    assert after_crash.version is None and after_crash.files == 2


_KILLED_WRITER = """
import duckdb, os, sys
con = duckdb.connect(sys.argv[1])
con.execute("PRAGMA disable_checkpoint_on_shutdown")
con.execute("INSERT INTO meta VALUES ('left-by', 'a killed writer')")
os._exit(0)
"""


def test_catalog_inside_the_tree_reached_through_a_symlink_is_not_scanned(tmp_path: Path):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "a.txt").write_text("a")
    os.symlink(root, tmp_path / "alias")  # e.g. /data -> /mnt/disk1/data
    catalog = Catalog(tmp_path / "alias" / "cat.duckdb")
    first = scan(catalog, root, "ds")
    again = scan(catalog, root, "ds")  # now the catalog file exists at walk time
    assert set(entries(catalog, "ds")) == {"a.txt"}
    assert first.version == 1 and again.version is None


# --------------------------------------------------------------------------- concurrency


def test_second_scan_of_a_locked_dataset_exits_5(tmp_path: Path):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "f.txt").write_text("f")
    catalog = Catalog(tmp_path / "cat.duckdb")
    catalog.ensure_schema()
    lock = scan_mod._lock_path(catalog, "busy")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, b"424242", 0)
        proc, other = run_cli_many(["--catalog", catalog.path, "scan", root, "-d", "busy"],
                                   ["--catalog", catalog.path, "scan", root, "-d", "free"])
    finally:
        os.close(fd)
    assert_clean_error(proc, EXIT_BUSY, "'busy'", "424242")
    assert other.returncode == EXIT_OK, other.stderr  # the lock is per dataset
    assert version_count(catalog, "busy") == 0
    assert scan(catalog, root, "busy").version == 1  # a released lock is no obstacle


# --------------------------------------------------------------------------- Ctrl-C

# The real CLI with each file's hash slowed down, so that SIGINT lands mid-hash on any
# machine; it touches a marker once `mark_after` files are done.
_SLOW_CLI = """
import pathlib, sys, time
from sneakernet.catalog import hashworker
marker, mark_after = pathlib.Path(sys.argv.pop(1)), int(sys.argv.pop(1))
real, done = hashworker.hash_file, []
def slow(*args, **kwargs):
    found = real(*args, **kwargs)
    done.append(1)
    if len(done) == mark_after:
        marker.touch()
    time.sleep(0.01)
    return found
hashworker.hash_file = slow
from sneakernet.cli.app import main
main(sys.argv[1:])
"""
_FILES, _FILE_SIZE = 160, MiB + 1  # 32 files per hash chunk (CHUNK_BYTES = 32 MiB)


@pytest.fixture(scope="module")
def interrupted_scan(tmp_path_factory: pytest.TempPathFactory):
    """A CLI scan of a 160 MiB tree stopped by SIGINT after 70 files were hashed.

    70 files over two threads means one thread finished at least one whole chunk.
    Shared by the two tests below; only the second one changes the catalog.
    """
    tmp_path = tmp_path_factory.mktemp("interrupted")
    root = tmp_path / "tree"
    root.mkdir()
    block = os.urandom(_FILE_SIZE)
    for i in range(_FILES):
        (root / f"f{i:03}.bin").write_bytes(i.to_bytes(4, "little") + block[4:])
    cat = tmp_path / "cat.duckdb"
    marker = tmp_path / "marker"
    cmd = [sys.executable, "-c", _SLOW_CLI, str(marker), "70",
           "--catalog", str(cat), "scan", str(root), "-d", "big", "--threads", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "hashing never started"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return root, Catalog(cat), proc.returncode, out, err


def test_ctrl_c_exits_130_and_records_no_version(interrupted_scan):
    _root, catalog, status, out, err = interrupted_scan
    assert status == EXIT_INTERRUPTED, err
    assert b"Traceback" not in err and out == b""
    assert version_count(catalog) == 0


def test_ctrl_c_says_what_happened(interrupted_scan):
    _root, _catalog, status, _out, err = interrupted_scan
    assert status == EXIT_INTERRUPTED
    assert err.decode().startswith("interrupted"), f"Ctrl-C left no word on stderr: {err!r}"


def test_ctrl_c_keeps_hashes_finished_before_it(interrupted_scan):
    root, catalog, status, _out, err = interrupted_scan
    assert status == EXIT_INTERRUPTED, err
    again = scan_in_thread(catalog, root, "big", timeout=60)  # run the same command again
    assert again.version == 1 and again.files == _FILES and not again.problems
    assert again.reused_files + again.hashed_files == _FILES
    rows = entries(catalog, "big")
    assert rows["f000.bin"]["hash"] == xxh(root / "f000.bin")
    assert again.reused_files > 0, "every hash finished before Ctrl-C was computed again"
