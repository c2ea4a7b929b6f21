"""``lfm2-nas sweep FILE``: run a sweep file, resuming from its finished rows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lfm2_nas.cli.output import Format, emit
from lfm2_nas.cli.profile import summary_row


def sweep(
    file: Annotated[Path, typer.Argument(help="sweep file (TOML), e.g. experiments/sweeps/example.toml")],
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="measure failed rows and rows measured on a busy machine again")
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="progress bar on stderr")] = True,
    fmt: Annotated[Format, typer.Option("--format", help="table for people, json for machines")] = Format.table,
) -> None:
    """Measure every layout x workload of FILE not measured yet; rows go to the sweep's output folder."""
    from lfm2_nas.profiler.sweep import load_sweep, run_sweep

    plan = load_sweep(file)
    try:
        outcome = run_sweep(plan, progress=progress, retry_failed=retry_failed)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the rows finished so far are kept in {plan.out_dir}/; run the same command "
                   "again to measure the rest", err=True)
        raise typer.Exit(130) from None
    if fmt is Format.json:
        emit(outcome.rows, fmt)
    else:
        emit([summary_row(r) for r in outcome.rows], fmt)
        typer.echo(
            f"{len(outcome.rows)} rows: {outcome.measured} measured, {outcome.cached} cached, "
            f"{outcome.failed} failed ({outcome.refused} refused), {outcome.busy} measured on a busy machine; "
            f"results in {plan.out_dir}/"
        )
        if outcome.busy:
            typer.echo("busy rows are not trustworthy: run again with --retry-failed when the machine is quiet")
    if outcome.failed:
        raise typer.Exit(1)
