"""`sneakernet demo`: the job end to end on generated sample clips."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from sneakernet.cli import render
from sneakernet.cli.catalog_cmds import JsonOpt, _print_scan
from sneakernet.cli.render import human_bytes, out, print_json, table


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)


def demo_cmd(
    folder: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to put the demo [default: a new temp folder]."),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Make sample clips, scan them, change them, scan again, show stats and the diff.

    Uses its own catalog inside the demo folder; your catalog is not touched.
    """
    from sneakernet.transfer.demo import run_demo  # heavy: PyAV, Arrow

    with render.progress_bar(sys.stderr.isatty() and not json) as progress:
        result = run_demo(folder, progress=progress)
    if json:
        print_json({
            "folder": str(result.folder),
            "catalog": str(result.catalog),
            "first_scan": result.first.to_dict(),
            "second_scan": result.second.to_dict(),
            "stats": result.stats.to_dict(),
            "diff": result.diff.to_dict(),
        })
        return
    out.print(f"[bold]1. scan[/] sample clips in {result.folder / 'roadcam'}")
    _print_scan(result.first)
    out.print("\n[bold]2. change[/] the folder (add, edit, move, delete) and [bold]scan[/] again")
    _print_scan(result.second)
    s = result.stats
    out.print(f"\n[bold]3. stats[/] {s.dataset}@{s.version} --by codec: {s.total.files} files, "
              f"{human_bytes(s.total.bytes)}, {s.total.video_hours * 3600:.1f} s of video")
    t = table("codec", "files", "bytes", "videos", "hours", "frames", "broken")
    for g in s.groups:
        t.add_row(g.key or "(not video)", str(g.files), human_bytes(g.bytes),
                  str(g.video_files), f"{g.video_hours:.4f}", f"{g.frames:,}", str(g.broken_files))
    out.print(t)
    d = result.diff
    out.print(f"\n[bold]4. diff[/] {d.old} {d.new}")
    for c in d.changes:
        where = f"{c.old_path} -> {c.path}" if c.old_path else c.path
        out.print(f"  {c.change:<9} {where}", markup=False)
    out.print(f"\nDemo folder: {result.folder} (its catalog: {result.catalog}).")
    out.print(f"Try: sneakernet --catalog {result.catalog} ls roadcam")
