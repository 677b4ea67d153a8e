"""The console-script entry point, kept free of heavy imports.

Loading typer, rich, DuckDB, Arrow and PyAV takes a noticeable moment; a
Ctrl-C during it should end quietly with the documented status, not print an
import traceback.
"""

from __future__ import annotations

import sys

INTERRUPTED = 130  # ExitStatus.INTERRUPTED, without importing the enum's module yet


def main() -> None:
    try:
        from sneakernet.cli.app import main as run_app
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(INTERRUPTED)
    run_app()
