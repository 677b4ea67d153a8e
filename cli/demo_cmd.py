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
            "pack": result.shipment.pack.to_dict(),
            "verify": result.shipment.verify.to_dict(),
            "flipped": result.shipment.flipped,
            "verify_after_flip": result.shipment.tampered.to_dict(),
            "ingest": result.shipment.ingest.to_dict(),
            "stats_at_site_b": result.shipment.stats_at_b.to_dict(),
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
    _print_shipment(result.shipment, same=result.shipment.stats_at_b.to_dict() == s.to_dict())
    out.print(f"\nDemo folder: {result.folder} (site A's catalog: {result.catalog}, "
              f"site B's: {result.shipment.site_b_catalog}).")
    out.print(f"Try: sneakernet --catalog {result.catalog} whereis roadcam")


def _print_shipment(ship, *, same: bool) -> None:
    p = ship.pack
    out.print(f"\n[bold]5. pack[/] roadcam onto two drives (site A -> site B): shipment "
              f"{p.shipment}")
    for d in p.drives:
        out.print(f"  drive {d.number} ({d.path}): {d.copied_files} files, "
                  f"{human_bytes(d.copied_bytes)}, read back and sealed", markup=False)
    v = ship.verify
    out.print(f"[bold]6. verify[/] both drives: {'whole' if v.whole else 'NOT whole'}")
    t = ship.tampered.drives[0]
    caught = [f for f in t.findings if f.outcome == "corrupt"]
    out.print(f"[bold]7. flip one bit[/] in drive1/{ship.flipped} and verify again: "
              f"{'caught' if caught else 'MISSED'}")
    for f in caught:
        out.print(f"  corrupt {f.path}: {f.detail}", markup=False)
    i = ship.ingest
    out.print(f"[bold]8. ingest[/] at site B into {ship.store}: "
              f"{sum(d.copied_files for d in i.drives)} copied, "
              f"{sum(d.linked_files for d in i.drives)} hard-linked; registered "
              f"{', '.join(i.registered)}")
    s = ship.stats_at_b
    out.print(f"[bold]9. stats at site B[/] {s.dataset}@{s.version}: {s.total.files} files, "
              f"{human_bytes(s.total.bytes)}, {s.total.video_hours * 3600:.1f} s of video: "
              f"{'the same as at site A' if same else 'DIFFERENT from site A'}")
