"""Commands that move data: pack, verify, ingest; and where it is: whereis, shipments."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from sneakernet.catalog.errors import UsageError
from sneakernet.cli import render
from sneakernet.cli.app import State
from sneakernet.cli.catalog_cmds import JsonOpt
from sneakernet.cli.exits import ExitStatus
from sneakernet.cli.render import human_bytes, out, print_json, safe_text, table
from sneakernet.cli.report_cmds import ReportOpt, save_report

_SIZE = re.compile(r"(?i)\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*")


def register(app: typer.Typer) -> None:
    for command in (
        pack_cmd,
        verify_cmd,
        ingest_cmd,
        whereis_cmd,
        shipments_cmd,
        shipment_cmd,
        mark_cmd,
    ):
        app.command(command.__name__.removesuffix("_cmd"))(command)


def parse_size(text: str) -> int:
    match = _SIZE.fullmatch(text)
    if not match:
        raise UsageError(f"not a size: {text!r}", hint="e.g. 500G, 1.5T, 800M")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** " KMGTP".index(unit or " "))


def pack_cmd(
    refs: Annotated[list[str], typer.Argument(help="Dataset versions to ship, e.g. roadcam@7.")],
    to: Annotated[list[Path], typer.Option("--to", help="A drive's mount point (repeat).")],
    shipment: Annotated[
        str | None, typer.Option(help="Shipment name [default: datasets+date].")
    ] = None,
    to_site: Annotated[str | None, typer.Option(help="Destination site.")] = None,
    from_site: Annotated[
        str | None, typer.Option(help="This site [default: $SNEAKERNET_SITE or the host name].")
    ] = None,
    drive_size: Annotated[
        str | None, typer.Option(help="Use at most this much of each drive, e.g. 7.5T.")
    ] = None,
    assume_fs: Annotated[
        str | None,
        typer.Option(
            help="Check names for this file system (exfat, ntfs, vfat, ext4) instead of the "
            "drive's own."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Show the plan; write nothing.")] = False,
    report: ReportOpt = None,
    json: JsonOpt = False,
) -> None:
    """Copy versions onto drives: plan, copy with hash-on-read, read back, seal each drive.

    Run the same command again after an interruption or a full drive (add a new --to):
    files already verified on a drive are not copied again.
    """
    from sneakernet.transfer.pack import pack

    capacity = parse_size(drive_size) if drive_size else None
    with render.progress_bar(sys.stderr.isatty() and not json) as progress:
        result = pack(
            State.catalog(),
            refs,
            to,
            shipment=shipment,
            to_site=to_site,
            from_site=from_site,
            fs_type=assume_fs,
            capacity=capacity,
            dry_run=dry_run,
            progress=progress,
        )
    if json:
        print_json(result.to_dict())
    else:
        _print_pack(result, dry_run)
    if report is not None and not dry_run:
        from sneakernet.transfer.transfer_reports import pack_report

        save_report(pack_report(result), report, quiet=json)
    if result.full_drives:
        full = result.full_drives[0]
        render.err.print(
            f"error: drive {full.number} ({safe_text(full.label)}) is full: "
            f"{safe_text(full.full_detail)}",
            markup=False,
        )
        render.err.print(
            "hint: run the same command again with another --to drive; the files "
            "that did not fit go there, nothing packed is copied again",
            markup=False,
        )
        raise typer.Exit(ExitStatus.NO_SPACE)
    if result.problems:
        raise typer.Exit(ExitStatus.PROBLEMS)


def _print_pack(result, dry_run: bool) -> None:
    plan = result.plan
    if plan is not None:
        names = ", ".join(f"{v['dataset']}@{v['version']}" for v in plan.versions)
        out.print(
            f"shipment {safe_text(result.shipment)}: {names}; "
            f"{plan.carried_files:,} files, {human_bytes(plan.carried_bytes)} to copy "
            f"({plan.duplicate_files:,} duplicates carried once)",
            markup=False,
        )
        t = table("drive", "path", "fs", "free", "files", "bytes")
        for d in plan.drives:
            t.add_row(
                str(d.number),
                safe_text(str(d.target.path)),
                d.target.fs_type,
                human_bytes(d.target.free),
                f"{d.files:,}",
                human_bytes(d.bytes),
            )
        out.print(t)
        for p in plan.problems:
            kind = "error" if p.error else "warning"
            out.print(f"  {kind:<7} {safe_text(p.path)}: {p.message}", markup=False)
        if dry_run:
            return
    for d in result.drives:
        state = "sealed" if d.sealed else ("FULL" if d.full else "incomplete")
        out.print(
            f"drive {d.number} ({safe_text(d.label)}): {state}; copied {d.copied_files:,} "
            f"files ({human_bytes(d.copied_bytes)}), {d.present_files:,} already there, "
            f"{render.human_rate(d.copied_bytes, max(d.seconds, 1e-9))}",
            markup=False,
        )
    for p in result.problems:
        out.print(f"  {p.outcome:<14} {safe_text(p.path)}: {safe_text(p.detail)}", markup=False)
    if result.sealed:
        out.print(
            f"shipment {safe_text(result.shipment)} packed and sealed in {result.seconds:.1f} s",
            markup=False,
        )


def verify_cmd(
    drives: Annotated[list[Path], typer.Argument(help="Mount points of the drives.")],
    fast: Annotated[
        bool, typer.Option(help="Check presence, sizes and the seal only; do not re-hash.")
    ] = False,
    report: ReportOpt = None,
    json: JsonOpt = False,
) -> None:
    """Prove drives carry exactly what their manifests say (no catalog needed).

    Exit status 0 only when every drive is whole; 3 lists what is missing, corrupt,
    extra or unreadable; 8 when a drive is not a sneakernet drive or is malformed.
    """
    from sneakernet.transfer.verify import verify

    with render.progress_bar(sys.stderr.isatty() and not json) as progress:
        result = verify(drives, fast=fast, progress=progress)
    _record_verify(result)
    if json:
        print_json(result.to_dict())
    else:
        for d in result.drives:
            head = f"{safe_text(d.root)}: "
            if d.error:
                render.err.print(f"error: cannot check {head}{safe_text(d.error)}", markup=False)
                if d.hint:
                    render.err.print(f"hint: {safe_text(d.hint)}", markup=False)
                continue
            state = "whole" if d.whole else "NOT whole"
            counts = ", ".join(f"{v:,} {k}" for k, v in d.counts.items() if v or k == "ok")
            out.print(
                f"{head}{state}; shipment {safe_text(d.shipment)} drive {d.number} of {d.of}"
                f"; seal {'ok' if d.seal_ok else 'BROKEN'}; {counts}",
                markup=False,
            )
            for f in d.findings:
                out.print(
                    f"  {f.outcome:<10} {safe_text(f.path)}: {safe_text(f.detail)}", markup=False
                )
    if report is not None:
        from sneakernet.transfer.transfer_reports import verify_report

        save_report(verify_report(result), report, quiet=json)
    if any(d.error for d in result.drives):
        raise typer.Exit(ExitStatus.DRIVE)
    if not result.whole:
        raise typer.Exit(ExitStatus.PROBLEMS)


def _record_verify(result) -> None:
    """Log each verify in the catalog's custody log; a busy catalog must not fail a verify."""
    from sneakernet.catalog.errors import SneakernetError
    from sneakernet.transfer.custody import log_verify

    try:
        log_verify(State.catalog(), result)
    except SneakernetError as exc:
        render.err.print(
            f"warning: verify not logged in the catalog: {safe_text(str(exc))}", markup=False
        )


def ingest_cmd(
    drives: Annotated[list[Path], typer.Argument(help="Mount points of the drives.")],
    store: Annotated[Path, typer.Option("--store", help="The site's store folder.")],
    report: ReportOpt = None,
    json: JsonOpt = False,
) -> None:
    """Copy drives into the store (hash-checked, deduplicated, read-only) and register them.

    A version is registered once all its files are in the store, so drives of one shipment
    may arrive on different days. Run again after an interruption to finish.
    """
    from sneakernet.transfer.ingest import ingest

    with render.progress_bar(sys.stderr.isatty() and not json) as progress:
        result = ingest(State.catalog(), drives, store, progress=progress)
    if json:
        print_json(result.to_dict())
    else:
        for d in result.drives:
            out.print(
                f"{safe_text(d.root)} (drive {d.number} of {d.of} of "
                f"{safe_text(d.shipment)}): copied {d.copied_files:,} files "
                f"({human_bytes(d.copied_bytes)}), linked {d.linked_files:,}, "
                f"{d.present_files:,} already in the store, {d.waiting_files:,} on other "
                "drives",
                markup=False,
            )
        for p in result.problems:
            out.print(f"  {p.outcome:<10} {safe_text(p.path)}: {safe_text(p.detail)}", markup=False)
        for name in result.registered:
            out.print(f"registered {name} in the catalog", markup=False)
        for w in result.waiting:
            why = (
                w.get("problem")
                or w.get("clash")
                or f"{w['missing_files']:,} files on drives not ingested yet"
            )
            out.print(f"waiting: {w['version']}: {safe_text(why)}", markup=False)
    if report is not None:
        from sneakernet.transfer.transfer_reports import ingest_report

        save_report(ingest_report(result), report, quiet=json)
    if result.problems:
        raise typer.Exit(ExitStatus.PROBLEMS)


def whereis_cmd(
    ref: Annotated[str, typer.Argument(help="A dataset version, e.g. roadcam@7.")],
    path: Annotated[str | None, typer.Argument(help="A file in it (default: all).")] = None,
    json: JsonOpt = False,
) -> None:
    """Every copy the catalog knows of a version or a file: folders, stores, drives."""
    from sneakernet.transfer.whereis import whereis

    copies = whereis(State.catalog(), ref, path)
    if json:
        print_json([c.to_dict() for c in copies])
        return
    t = table("kind", "where", "holds", "bytes", "path")
    for c in copies:
        t.add_row(
            c.kind,
            safe_text(c.where),
            f"{c.files:,} of {c.total_files:,}",
            human_bytes(c.bytes),
            safe_text(c.path or ""),
        )
    out.print(t)


def shipments_cmd(json: JsonOpt = False) -> None:
    """List shipments with their state (the latest event of their custody log)."""
    from sneakernet.transfer.custody import list_shipments

    rows = list_shipments(State.catalog())
    if json:
        print_json(rows)
        return
    t = table("shipment", "from", "to", "drives", "files", "bytes", "state", "updated")
    for r in rows:
        t.add_row(
            safe_text(r["name"]),
            safe_text(r["from_site"] or ""),
            safe_text(r["to_site"] or ""),
            str(r["drives"]),
            f"{r['files']:,}",
            human_bytes(r["bytes"]),
            r["state"] or "",
            (r["updated_at"] or "")[:19],
        )
    out.print(t)


def shipment_cmd(
    name: Annotated[str, typer.Argument(help="Shipment name or id.")],
    json: JsonOpt = False,
) -> None:
    """Show one shipment: its drives and its custody log."""
    from sneakernet.transfer.custody import shipment_history

    info = shipment_history(State.catalog(), name)
    if json:
        print_json(info)
        return
    s = info["shipment"]
    out.print(
        f"shipment {safe_text(s['name'])} ({s['shipment_id']}): {safe_text(s['from_site'])}"
        f" -> {safe_text(s['to_site'])}, {s['drives']} drive(s)",
        markup=False,
    )
    for d in info["drives"]:
        out.print(
            f"  drive {d['number']}: {safe_text(d['label'] or '')} {d['drive_id']}"
            f" seal {d['seal'] or '-'}",
            markup=False,
        )
    t = table("when", "event", "drive", "site", "user", "note")
    for e in info["events"]:
        t.add_row(
            e["at"][:19],
            e["event"],
            str(e["drive"] or ""),
            safe_text(e["site"] or ""),
            safe_text(e["user"] or ""),
            safe_text(e["note"] or ""),
        )
    out.print(t)


def mark_cmd(
    name: Annotated[str, typer.Argument(help="Shipment name or id.")],
    event: Annotated[str, typer.Argument(help="shipped, received, or another step.")],
    note: Annotated[str | None, typer.Option(help="Free text, e.g. 'DHL 1234'.")] = None,
    drive: Annotated[
        list[Path] | None,
        typer.Option("--drive", help="Also write the event on this mounted drive (repeat)."),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Add a manual step to a shipment's custody log (e.g. shipped, received)."""
    from sneakernet.transfer.custody import mark

    recorded = mark(State.catalog(), name, event, note=note, drives=drive or [])
    if json:
        print_json(recorded)
    else:
        out.print(f"{safe_text(name)}: {event} recorded at {recorded['at']}", markup=False)
