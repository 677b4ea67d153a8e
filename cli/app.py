"""The `sneakernet` command: global options, error handling, exit statuses.

Commands live in sibling modules and only parse, call the library and render.
"""

from __future__ import annotations

import copy
import errno
import math
import os
import sys
import traceback
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sneakernet.catalog.errors import SneakernetError
from sneakernet.cli.coercion import use_plain_coercion
from sneakernet.cli.exits import ExitStatus
from sneakernet.cli.render import err, safe_text

if TYPE_CHECKING:
    from sneakernet.catalog.db import Catalog

DEFAULT_TIMEOUT = 60.0  # the library's default too; kept here so --help needs no DuckDB
_GLOBAL_WITH_VALUE = ("--catalog", "--timeout")  # the global options that take a value

app = typer.Typer(
    name="sneakernet",
    help=(
        "Move multi-terabyte video datasets between sites on hard drives, every byte checked.\n\n"
        "Catalog a dataset (scan), ask about it (stats, diff, ls, find, query), ship it "
        "(pack, verify, ingest), find its copies (whereis, shipments), and see it all work "
        "on sample clips with `sneakernet demo`."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class State:
    catalog_path: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    debug: bool = False

    @classmethod
    def catalog(cls) -> Catalog:
        from sneakernet.catalog.db import Catalog

        return Catalog(cls.catalog_path, timeout=cls.timeout)


@app.callback()
def _global_options(
    catalog: Annotated[
        Path | None,
        typer.Option(
            "--catalog",
            envvar="SNEAKERNET_CATALOG",
            help="Catalog file [default: $XDG_DATA_HOME/sneakernet/catalog.duckdb].",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(help="Seconds to wait for a catalog that another process holds."),
    ] = DEFAULT_TIMEOUT,
    debug: Annotated[bool, typer.Option(help="Show tracebacks on errors.")] = False,
) -> None:
    if not 0 <= timeout < math.inf:  # nan compares false both ways: it waited forever
        raise typer.BadParameter("give a number of seconds, 0 or more", param_hint="--timeout")
    State.catalog_path = catalog
    State.timeout = timeout
    State.debug = debug


def _register_commands() -> None:
    from sneakernet.cli import (
        catalog_cmds,
        demo_cmd,
        receive_cmd,
        report_cmds,
        transfer_cmds,
        watch_cmd,
    )

    catalog_cmds.register(app)
    transfer_cmds.register(app)
    receive_cmd.register(app)
    report_cmds.register(app)
    demo_cmd.register(app)
    watch_cmd.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, map every outcome to an ExitStatus."""
    try:
        _register_commands()
        use_plain_coercion()
        args = sys.argv[1:] if argv is None else argv
        command = typer.main.get_command(_app_for(args))
        status = command.main(args=args, prog_name="sneakernet", standalone_mode=False)
        if status == ExitStatus.INTERRUPTED:  # typer returns, not raises, on Ctrl-C here
            status = _interrupted()
    except typer.Exit as exc:  # typer turns Ctrl-C into a silent Exit(130)
        status = _interrupted() if exc.exit_code == ExitStatus.INTERRUPTED else exc.exit_code
    except typer.Abort:
        err.print("interrupted")
        status = ExitStatus.INTERRUPTED
    except typer.TyperException as exc:  # click's usage errors, as vendored by typer
        show = getattr(exc, "show", None)
        if show:
            show()
        else:
            err.print(f"error: {exc}", markup=False)
        status = ExitStatus.USAGE
    except KeyboardInterrupt:
        status = _interrupted()
    except SneakernetError as exc:
        status = _report_error(exc)
    except BrokenPipeError:
        sys.stderr.close()  # reader went away (e.g. `| head`); not an error of ours
        status = ExitStatus.OK
    except SystemExit as exc:
        if not _reader_went_away(exc):
            raise
        status = ExitStatus.OK
    except Exception as exc:  # a bug: say so in one line, traceback only with --debug
        if _is_interruption(exc):
            sys.exit(_interrupted())
        if State.debug:
            traceback.print_exc()
        err.print(f"internal error: {exc.__class__.__name__}: {exc}", markup=False)
        err.print("rerun with --debug for the traceback, and please report it", markup=False)
        status = ExitStatus.ERROR
    sys.exit(int(status or 0))


def _app_for(args: list[str]) -> typer.Typer:
    """The app with only the command `args` names, when it names one.

    typer builds a click command from every function's signature, about 1 ms each;
    a run needs one. Help, no command or an unknown one keep them all (to list or
    suggest them).
    """
    name = _command_named(args)
    chosen = [info for info in app.registered_commands if info.name == name]
    if not chosen:
        return app
    only = copy.copy(app)
    only.registered_commands = chosen
    return only


def _command_named(args: list[str]) -> str | None:
    """The first word of a command line that is neither a global option nor its value."""
    words = iter(args)
    for arg in words:
        if arg in _GLOBAL_WITH_VALUE:
            next(words, None)
        elif arg == "--":
            return next(words, None)
        elif not arg.startswith("-"):
            return arg
    return None


def _reader_went_away(exc: SystemExit) -> bool:
    """typer (on an EPIPE OSError) and rich (on BrokenPipeError) both answer a closed
    stdout with SystemExit(1) raised while handling it, before the BrokenPipeError
    clause above sees it: `sneakernet ls roadcam | head` exited 1, "internal error"."""
    cause = exc.__context__
    if exc.code != 1 or not isinstance(cause, OSError) or cause.errno != errno.EPIPE:
        return False
    with suppress(OSError):  # nothing more reaches the pipe, not even at exit's flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return True


def _interrupted() -> int:
    err.print("interrupted; finished work is kept, run the same command again to go on")
    return ExitStatus.INTERRUPTED


def _is_interruption(exc: BaseException) -> bool:
    """DuckDB turns Ctrl-C during a query into its own exception."""
    name = exc.__class__.__name__
    return name == "InterruptException" or (
        isinstance(exc, RuntimeError) and "interrupted" in str(exc).lower()
    )


def _report_error(exc: SneakernetError) -> int:
    if State.debug:
        traceback.print_exc()
    err.print(f"error: {safe_text(str(exc))}", markup=False)
    if exc.hint:
        err.print(f"hint: {safe_text(exc.hint)}", markup=False)
    return exc.exit_code
