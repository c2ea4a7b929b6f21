"""The ``lfm2-nas`` command line: one typer sub-app per command group.

Every command parses its arguments and calls one library function. Errors a user can fix
(``ValueError``, ``LookupError``, ``OSError``, a runtime that is not installed) print one ``error: ...`` line and exit with status 2;
set ``LFM2_NAS_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import os
import sys

import typer

from lfm2_nas.cli import build, profile, quality, report, search, sweep, variants
from lfm2_nas.runtimes.base import RuntimeUnavailable

app = typer.Typer(
    name="lfm2-nas",
    help="Build, profile and search LFM2-style hybrid conv/attention language-model layouts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(variants.app, name="variants")
app.add_typer(quality.app, name="quality")
app.add_typer(search.app, name="search")
app.command("build")(build.build)
app.add_typer(profile.app, name="profile")
app.command("sweep")(sweep.sweep)
app.add_typer(report.app, name="report")

USER_ERRORS = (ValueError, LookupError, OSError, RuntimeUnavailable)


def main() -> None:
    """Console entry point: run the app, turning user errors into one line and exit status 2."""
    try:
        app()
    except USER_ERRORS as err:
        if os.environ.get("LFM2_NAS_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
