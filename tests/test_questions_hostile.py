"""The question commands (stats, versions, diff, ls, find, query, export) and the catalog
file against hostile input: odd refs, markup and odd values in data, names that share
a readable form, repeated column names, big listings and readers that stop early, files
that change while read, full disks, unusable catalog paths.

Real files in tmp_path, a real DuckDB catalog, the real CLI in a subprocess where the
behaviour is the CLI's (exit status, one clear error line, what reaches the terminal).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sneakernet.catalog import listing
from sneakernet.catalog.db import Catalog
from sneakernet.catalog.diff import diff
from sneakernet.catalog.errors import CatalogFormatError, SourceError, UsageError
from sneakernet.catalog.query import run_query
from sneakernet.catalog.refs import parse_ref
from sneakernet.catalog.scan import scan

CLI = [sys.executable, "-m", "sneakernet.cli"]
EXIT_OK, EXIT_CATALOG, EXIT_SOURCE = 0, 6, 7
MAX_VERSION = 2**31 - 1  # versions.version is an INTEGER


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SNEAKERNET_CATALOG"}
    env["COLUMNS"] = "200"
    return env


def run_cli(*args: str | os.PathLike, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=60, env=_env(), **kwargs)


def run_cli_many(*argvs: list) -> list[subprocess.CompletedProcess]:
    """Several CLI runs at once (each is mostly interpreter start-up); results in order."""
    procs = [subprocess.Popen([*CLI, *map(str, argv)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env())
             for argv in argvs]
    done = []
    for argv, proc in zip(argvs, procs, strict=True):
        out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    return done


def one_error_line(proc: subprocess.CompletedProcess, status: int) -> str:
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: "), lines
    assert lines[1].startswith("hint: "), lines
    return lines[0]


@pytest.fixture
def small(tmp_path: Path) -> tuple[Catalog, Path]:
    """A catalog holding `small@1`: two text files."""
    root = tmp_path / "small"
    root.mkdir()
    (root / "a.txt").write_text("alpha\n")
    (root / "b.txt").write_text("beta\n")
    catalog = Catalog(tmp_path / "cat.duckdb")
    scan(catalog, root, "small")
    return catalog, root


# --------------------------------------------------------------------------- refs


@pytest.mark.parametrize("ref", [
    "small@\u00b3",  # superscript three: str.isdigit() says yes, int() says no
    "small@\u0661",  # Arabic-Indic one: int() reads it as 1, a version nobody typed
    "small@" + "9" * 5000,  # longer than int() converts
    f"small@{MAX_VERSION + 1}",  # no INTEGER version can be that
])
def test_refs_with_odd_digits_are_refused_as_usage_errors(ref: str):
    with pytest.raises(UsageError):
        parse_ref(ref)


def test_the_largest_version_number_still_parses():
    assert parse_ref(f"small@{MAX_VERSION}").version == MAX_VERSION
    assert parse_ref("small@007").version == 7


def test_negative_thread_count_is_a_usage_error(small, tmp_path: Path):
    catalog, root = small
    with pytest.raises(UsageError, match="threads"):
        scan(catalog, root, "small", rehash=True, workers=-1)


# --------------------------------------------------------------------------- terminal


def test_tables_show_markup_in_names_as_text(tmp_path: Path):
    """Rich read table cells as markup: `[red]` vanished, `[/]` crashed the command."""
    root = tmp_path / "x[" / "]y"  # the scanned folder's path holds `[/]`
    root.mkdir(parents=True)
    (root / "clip.[red]").write_text("red\n")
    cat = tmp_path / "cat.duckdb"
    scan(Catalog(cat), root, "m")
    by_ext, query, versions = run_cli_many(
        ["--catalog", cat, "stats", "m", "--by", "ext"],
        ["--catalog", cat, "query", 'SELECT path, 1 AS "[/]" FROM files'],
        ["--catalog", cat, "versions", "m"],
    )
    assert by_ext.returncode == EXIT_OK and "[red]" in by_ext.stdout, by_ext.stderr
    assert query.returncode == EXIT_OK, query.stderr
    assert "clip.[red]" in query.stdout and "[/]" in query.stdout
    assert versions.returncode == EXIT_OK, versions.stderr
    assert f"{tmp_path}/x[/]y" in versions.stdout.replace("\n", "").replace(" ", "")


def test_query_json_is_strict_json_whatever_the_values(tmp_path: Path):
    """NaN and infinity came out as bare NaN/Infinity (refused by every JSON parser but
    Python's); a MAP keyed by a date crashed the command."""
    proc = run_cli("--catalog", tmp_path / "cat.duckdb", "query", "--json",
                   "SELECT 'nan'::DOUBLE AS a, ['-inf'::DOUBLE, 1.5] AS b,"
                   " MAP(['2024-01-02'::DATE], [3]) AS m, 'inf'::DOUBLE AS c")
    assert proc.returncode == EXIT_OK, proc.stderr

    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    (row,) = json.loads(proc.stdout, parse_constant=refuse)["rows"]
    assert row == {"a": None, "b": [None, 1.5], "m": {"2024-01-02": 3}, "c": None}


def test_query_rows_keep_every_column_when_names_repeat(small):
    """Rows are objects keyed by column name: of `a.path, b.path` only one survived."""
    catalog, _root = small
    result = run_query(catalog, "SELECT a.path, b.path, 3 AS path_1 FROM files a"
                                " JOIN files b USING (hash) WHERE a.path = 'a.txt'")
    assert result.to_dict()["rows"] == [{"path": "a.txt", "path_2": "a.txt", "path_1": 3}]
    assert result.to_dict()["columns"] == ["path", "path_2", "path_1"]


def _big_version(tmp_path: Path, rows: int) -> tuple[Catalog, int]:
    """A catalog holding `big@1` of `rows` files, without a big tree: rows as scan
    writes them."""
    catalog = Catalog(tmp_path / "cat.duckdb")
    with catalog.write() as con:
        con.execute("INSERT INTO datasets VALUES ('big', now())")
        con.execute("INSERT INTO versions VALUES ('big', 1, NULL, now(), 'scan', '/big', 'h',"
                    f" {rows}, 0, 0, 0, NULL, NULL)")
        con.execute("INSERT INTO entries SELECT 'big', 1, 'cam/clip-' || i || '.bin', NULL,"
                    " 'file', i, i * 1000, 33188, i, 1, md5(i::VARCHAR), NULL, false, 'ok', NULL"
                    f" FROM range({rows}) t(i)")
    return catalog, rows


def test_output_cut_short_by_its_reader_is_not_an_error(tmp_path: Path):
    """`sneakernet ls big | head -1` exited 1 (documented as an internal error): typer and
    rich turn a broken pipe into SystemExit(1) before the CLI's own handler sees it."""
    catalog, _rows = _big_version(tmp_path, 2_000)  # more than a pipe holds, either way
    procs = [subprocess.Popen([*CLI, "--catalog", str(catalog.path), "ls", "big", *json_],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
             for json_ in ([], ["--json"])]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline()
        proc.stdout.close()  # as `head -1` does once it has its line
    for proc in procs:
        _out, err = proc.communicate(timeout=60)
        assert (proc.returncode, err) == (EXIT_OK, b"")


# The CLI, reporting its peak resident memory on stderr at exit. VmHWM, not getrusage's
# ru_maxrss: Linux carries that one over from the parent (here pytest) through fork and exec.
# Run from a file, not `python -c`: DuckDB takes a __main__ without __file__ for an
# interactive session and draws its progress bar on stdout (inside the JSON) after 2 s.
_PEAK_RSS = (
    "import atexit, re, sys\n"
    "atexit.register(lambda: print('peak_kib', re.search(r'VmHWM:\\s*(\\d+)',"
    " open('/proc/self/status').read())[1], file=sys.stderr))\n"
    "from sneakernet.cli.app import main\n"
    "main()\n"
)


def test_ls_json_streams_rows_in_flat_memory(tmp_path: Path):
    """`ls --json` built the whole list and its text before writing: +143 MB for these
    50,000 rows (a million-file dataset: gigabytes); the table output streams."""
    catalog, rows = _big_version(tmp_path, 50_000)
    script = tmp_path / "peak_rss.py"
    script.write_text(_PEAK_RSS)
    procs = [subprocess.Popen([sys.executable, str(script), "--catalog", str(catalog.path),
                               "ls", "big", *glob, "--json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env())
             for glob in ([], ["no-such-*"])]
    (full, full_err), (empty, empty_err) = (p.communicate(timeout=60) for p in procs)
    assert len(json.loads(full)) == rows and json.loads(empty) == []
    peak = [int(err.split("peak_kib")[1]) for err in (full_err, empty_err)]
    assert peak[0] - peak[1] < 80_000, f"ls --json of {rows:,} rows took {peak} KiB"


# --------------------------------------------------------------------------- diff


def test_diff_tells_apart_names_that_share_a_readable_form(tmp_path: Path):
    """`a\\xff` as text and `a` + byte 0xff are both shown as `a\\xff`: when one moved and
    the other was deleted, the deletion went missing from the diff."""
    root = tmp_path / "tree"
    root.mkdir()
    with open(os.fsencode(root) + b"/a\xff", "wb") as raw:
        raw.write(b"raw name")
    (root / "a\\xff").write_bytes(b"text name")
    catalog = Catalog(tmp_path / "cat.duckdb")
    scan(catalog, root, "d")
    os.rename(os.fsencode(root) + b"/a\xff", os.fsencode(root) + b"/moved")
    (root / "a\\xff").unlink()
    scan(catalog, root, "d")
    changes = sorted((c.change, c.path, c.old_path) for c in diff(catalog, "d@1", "d@2").changes)
    assert changes == [("moved", "moved", "a\\xff"), ("removed", "a\\xff", None)]


# --------------------------------------------------------------------------- find


def test_find_on_a_file_that_changes_while_read_is_a_clear_error(small):
    """A /proc file says size 0 and holds bytes: it reads as changing, which was a bug."""
    catalog, _root = small
    if not Path("/proc/self/status").exists():
        pytest.skip("no /proc here")
    with pytest.raises(SourceError, match="changed while it was read"):
        listing.find(catalog, "/proc/self/status")


# --------------------------------------------------------------------------- export


def test_export_into_a_missing_folder_is_a_clear_error(small, tmp_path: Path):
    catalog, _root = small
    with pytest.raises(SourceError, match="folder does not exist"):
        listing.export(catalog, "small", tmp_path / "nowhere" / "out.parquet")


def test_export_onto_the_catalog_is_refused_and_keeps_it(small):
    catalog, _root = small
    before = catalog.path.read_bytes()
    with pytest.raises(SourceError, match="the catalog itself"):
        listing.export(catalog, "small", catalog.path)
    assert catalog.path.read_bytes() == before


def _file_size_limit() -> None:
    """Writes past 1 KiB (less than any Parquet export) fail with EFBIG, as a full disk
    fails them with ENOSPC."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 10, 1 << 10))


def test_export_that_cannot_be_written_keeps_the_old_file(small, tmp_path: Path):
    catalog, _root = small
    out = tmp_path / "out"
    out.mkdir()
    (out / "small.parquet").write_bytes(b"the export of last week")
    proc = run_cli("--catalog", catalog.path, "export", "small", out / "small.parquet",
                   preexec_fn=_file_size_limit)
    assert "cannot write the export" in one_error_line(proc, EXIT_SOURCE)
    assert (out / "small.parquet").read_bytes() == b"the export of last week"
    assert [p.name for p in out.iterdir()] == ["small.parquet"]  # no temp file left


# --------------------------------------------------------------------------- catalog file


def test_catalog_under_a_file_is_unusable_not_a_bug(tmp_path: Path):
    (tmp_path / "plain").write_text("not a folder")
    with pytest.raises(CatalogFormatError, match="cannot create the catalog"):
        listing.find(Catalog(tmp_path / "plain" / "cat.duckdb"), "0" * 32)


def test_catalog_path_that_is_not_utf8_is_refused_clearly(tmp_path: Path):
    """DuckDB takes paths as UTF-8: it failed with `RuntimeError: std::bad_cast`."""
    path = os.fsdecode(os.fsencode(tmp_path) + b"/cat\xff.duckdb")
    proc = run_cli("--catalog", path, "datasets")
    assert "not valid UTF-8" in one_error_line(proc, EXIT_CATALOG)
    assert os.listdir(tmp_path) == []


def test_query_table_shows_a_bounded_number_of_rows(tmp_path: Path) -> None:
    """A table of every row (100k rows: 174 s, 2.2 GB in rich) is capped; --json is not."""
    root = tmp_path / "many"
    root.mkdir()
    for i in range(1200):
        (root / f"{i:04}.txt").write_bytes(b"%d" % i)
    catalog = tmp_path / "cat.duckdb"
    scan(Catalog(catalog), root, "many")
    sql = "SELECT path FROM files ORDER BY path"

    shown, wider, as_json, zero = run_cli_many(
        ["--catalog", catalog, "query", sql],
        ["--catalog", catalog, "query", sql, "--limit", "5000"],
        ["--catalog", catalog, "query", sql, "--json"],
        ["--catalog", catalog, "query", sql, "--limit", "0"],
    )
    assert shown.returncode == 0, shown.stderr
    assert "0999.txt" in shown.stdout and "1000.txt" not in shown.stdout
    assert "first 1,000 rows shown" in shown.stderr
    assert "1199.txt" in wider.stdout and "rows shown" not in wider.stderr
    data = json.loads(as_json.stdout)
    assert len(data["rows"]) == 1200 and data["truncated"] is False
    assert zero.returncode == 2


def test_query_refuses_several_statements_and_timeout_refuses_non_numbers(tmp_path: Path):
    """Two statements showed only the last one's rows; --timeout nan waited forever."""
    catalog = tmp_path / "cat.duckdb"
    two, one, *timeouts = run_cli_many(
        ["--catalog", catalog, "query", "SELECT 1 AS a; SELECT 2 AS b"],
        ["--catalog", catalog, "query", "SELECT 1 AS a;", "--json"],
        *(["--catalog", catalog, "--timeout", t, "datasets"] for t in ("nan", "-1", "inf")),
    )
    assert two.returncode == 2 and "one SQL statement" in two.stderr
    assert json.loads(one.stdout)["rows"] == [{"a": 1}]
    for proc in timeouts:
        assert proc.returncode == 2 and "--timeout" in proc.stderr
