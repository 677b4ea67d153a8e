"""Commands that build and question the catalog: scan, datasets, versions, stats, diff, ls,
find, query, export."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sneakernet.cli import render
from sneakernet.cli.app import State
from sneakernet.cli.exits import ExitStatus
from sneakernet.cli.render import (
    human_bytes,
    out,
    print_json,
    print_json_array,
    safe_text,
    table,
)

if TYPE_CHECKING:
    from sneakernet.catalog.scan import ScanResult

# Library verbs are imported inside each command: DuckDB, Arrow and PyAV then load only
# for the command that runs, never for --help or a usage error (tests/test_startup.py).

# stats.GROUPINGS, spelled out so that building the command needs no catalog module
# (tests/test_startup.py checks they agree).
STATS_GROUPINGS = ("codec", "resolution", "fps", "container", "ext")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
# Problems that leave a file out of the version's hashes; the others are facts.
_INCOMPLETE = {"unreadable", "unreadable-folder", "changing"}


def register(app: typer.Typer) -> None:
    for command in (scan_cmd, datasets_cmd, versions_cmd, stats_cmd, diff_cmd, ls_cmd,
                    find_cmd, query_cmd, export_cmd):
        app.command(command.__name__.removesuffix("_cmd"))(command)


def scan_cmd(
    path: Annotated[Path, typer.Argument(help="The dataset's top folder.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name, e.g. roadcam.")],
    label: Annotated[str | None, typer.Option(help="A name for the new version.")] = None,
    rehash: Annotated[bool, typer.Option(help="Read every file again; ignore the cache.")] = False,
    threads: Annotated[int | None, typer.Option(help="Reader threads [default: cores].")] = None,
    json: JsonOpt = False,
) -> None:
    """Index a dataset folder: hash every file, probe every video, record a new version.

    Files unchanged since the last scan (same size, mtime, inode, device) are not read again.
    """
    from sneakernet.catalog.scan import scan

    with render.progress_bar(sys.stderr.isatty() and not json) as progress:
        result = scan(State.catalog(), path, dataset, label=label, rehash=rehash,
                      workers=threads, progress=progress)
    if json:
        print_json(result.to_dict())
    else:
        _print_scan(result)
    if label is not None and not result.changed:  # said on stderr: --json keeps its shape
        render.err.print(f"note: label {safe_text(label)!r} not used: no new version was recorded",
                         markup=False)
    if any(p.kind in _INCOMPLETE for p in result.problems):
        raise typer.Exit(ExitStatus.PROBLEMS)


def _print_scan(result: ScanResult) -> None:
    secs = max(result.seconds, 1e-9)
    if result.version is None:
        out.print(f"{result.dataset}: nothing changed since version {result.previous}")
    else:
        out.print(f"{result.dataset}@{result.version} recorded")
    out.print(
        f"  {result.files:,} files, {human_bytes(result.bytes)}; read {result.hashed_files:,} "
        f"({human_bytes(result.hashed_bytes)}), reused {result.reused_files:,} cached hashes, "
        f"probed {result.probed_files:,} videos in {result.seconds:.1f} s "
        f"({render.human_rate(result.hashed_bytes, secs)})"
    )
    if result.reading.get("remote"):
        r = result.reading
        out.print(f"  read as a file server ({safe_text(r['filesystem'])}): "
                  f"{r['walk_workers']} walk threads, {r['read_workers']} readers", markup=False)
    if result.problems:
        out.print(f"  {len(result.problems)} problem(s):")
        for p in result.problems:
            out.print(f"    {p.kind:<17} {safe_text(p.path)}: {p.message}", markup=False)


def datasets_cmd(json: JsonOpt = False) -> None:
    """List the datasets in the catalog with their latest version."""
    from sneakernet.catalog.versions import list_datasets

    rows = list_datasets(State.catalog())
    if json:
        print_json([r.to_dict() for r in rows])
        return
    if not rows:
        out.print("no datasets yet: run `sneakernet scan PATH --dataset NAME`")
        return
    t = table("dataset", "versions", "latest", "files", "bytes", "updated")
    for r in rows:
        t.add_row(r.dataset, str(r.versions), str(r.latest), f"{r.files:,}",
                  human_bytes(r.bytes), r.updated_at or "-")
    out.print(t)


def versions_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")], json: JsonOpt = False
) -> None:
    """List the versions of a dataset."""
    from sneakernet.catalog.versions import list_versions

    rows = list_versions(State.catalog(), dataset)
    if json:
        print_json([r.to_dict() for r in rows])
        return
    t = table("version", "label", "created", "origin", "files", "bytes", "root")
    for r in rows:
        t.add_row(str(r.version), r.label or "", r.created_at, r.origin, f"{r.files:,}",
                  human_bytes(r.bytes), safe_text(r.root))
    out.print(t)


def stats_cmd(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@LABEL.")],
    by: Annotated[
        str | None, typer.Option(help=f"Group by: {', '.join(STATS_GROUPINGS)}.")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Files, bytes, hours of video, frames, broken files and duplicate content of a version."""
    from sneakernet.catalog.stats import stats

    s = stats(State.catalog(), ref, by=by)
    if json:
        print_json(s.to_dict())
        return
    total = s.total
    out.print(f"{s.dataset}@{s.version}: {total.files:,} files, {human_bytes(total.bytes)}, "
              f"{total.video_files:,} videos, {total.video_hours:.3f} h, {total.frames:,} frames")
    out.print(f"  broken videos {total.broken_files:,}, unread files {total.unread_files:,}, "
              f"symlinks {s.symlinks:,}, duplicate files {s.duplicate_files:,} "
              f"({human_bytes(s.duplicate_bytes)})")
    if s.by:
        t = table(s.by, "files", "bytes", "videos", "hours", "frames", "broken")
        for g in s.groups:
            t.add_row(g.key or "(not video)" if s.by != "ext" else g.key or "(none)",
                      f"{g.files:,}", human_bytes(g.bytes), f"{g.video_files:,}",
                      f"{g.video_hours:.3f}", f"{g.frames:,}", f"{g.broken_files:,}")
        out.print(t)


def diff_cmd(
    old: Annotated[str, typer.Argument(help="The older version, e.g. roadcam@1.")],
    new: Annotated[str, typer.Argument(help="The newer version, e.g. roadcam@2.")],
    json: JsonOpt = False,
) -> None:
    """What changed between two versions: added, removed, modified, moved."""
    from sneakernet.catalog.diff import diff

    d = diff(State.catalog(), old, new)
    if json:
        print_json(d.to_dict())
        return
    signs = {"added": "+", "removed": "-", "modified": "M", "moved": "R"}
    for c in d.changes:
        moved = f"{safe_text(c.old_path)} -> " if c.old_path else ""
        out.print(f"{signs[c.change]} {moved}{safe_text(c.path)}", markup=False)
    counts = ", ".join(f"{n} {kind}" for kind, n in d.counts.items())
    out.print(f"{d.old} -> {d.new}: {counts}")


def ls_cmd(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@LABEL.")],
    pattern: Annotated[str | None, typer.Argument(help="Glob on the path, e.g. 'cam1/*'.")] = None,
    json: JsonOpt = False,
) -> None:
    """List the files of a version, with size, hash and video summary."""
    from sneakernet.catalog.listing import ls

    rows = ls(State.catalog(), ref, pattern)
    if json:
        print_json_array(r.to_dict() for r in rows)
        return
    for r in rows:
        video = ""
        if r.codec:
            video = f"  {r.codec} {r.width}x{r.height} {r.fps or 0:.2f}fps {r.duration or 0:.1f}s"
        if r.broken:
            video += "  BROKEN"
        digest = r.hash or r.status
        out.print(f"{digest:<32} {r.size:>14,}  {safe_text(r.path)}{video}", markup=False)


def find_cmd(
    what: Annotated[str, typer.Argument(help="A content hash or a file to look for.")],
    json: JsonOpt = False,
) -> None:
    """Every dataset and version that holds a given content."""
    from sneakernet.catalog.listing import find

    found = find(State.catalog(), what)
    if json:
        print_json(found.to_dict())
    elif not found.holders:
        out.print(f"{found.hash}: not in the catalog")
    else:
        for h in found.holders:
            out.print(f"{h.dataset}@{h.version}  {safe_text(h.path)}", markup=False)
    if not found.holders:  # the same status either way: scripts test it, not the text
        raise typer.Exit(ExitStatus.NOT_FOUND)


TABLE_ROW_LIMIT = 1_000  # a terminal table of more is unread, and rich builds it all in memory


def query_cmd(
    sql: Annotated[str, typer.Argument(help="One read-only SQL statement over the api views.")],
    limit: Annotated[int | None, typer.Option(
        min=1, help="Most rows shown [default: 1,000 in a table, 100,000 with --json].")] = None,
    json: JsonOpt = False,
) -> None:
    """Run read-only SQL over the views datasets, versions, files and media."""
    from sneakernet.catalog.query import DEFAULT_ROW_LIMIT, run_query

    limit = limit or (DEFAULT_ROW_LIMIT if json else TABLE_ROW_LIMIT)
    result = run_query(State.catalog(), sql, limit=limit)
    if json:
        print_json(result.to_dict())
        return
    t = table(*result.columns)
    for row in result.rows:
        t.add_row(*(str(v) if v is not None else "" for v in row))  # table() escapes them
    out.print(t)
    if result.truncated:
        render.err.print(f"(first {len(result.rows):,} rows shown; add a LIMIT, or --limit N)")


def export_cmd(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@LABEL.")],
    target: Annotated[Path, typer.Argument(help="The Parquet file to write.")],
    json: JsonOpt = False,
) -> None:
    """Write a version's full manifest (files with video metadata) to a Parquet file."""
    from sneakernet.catalog.listing import export

    count = export(State.catalog(), ref, target)
    if json:
        print_json({"ref": ref, "path": str(target), "rows": count})
    else:
        out.print(f"wrote {count:,} rows to {safe_text(str(target))}", markup=False)
