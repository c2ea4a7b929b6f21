"""``lfm2-nas report sweep|study|compare|layout``: plots (PNG + SVG) and a markdown report with the table behind each plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="Turn saved results (sweeps, studies) and layouts into plots and a markdown report.",
                  no_args_is_help=True)

OutOption = Annotated[Path, typer.Option("--out", help="folder to write report.md, PNG/SVG figures and CSV tables into")]


def _done(written: object) -> None:
    figures = [p for p in written.figures if p.suffix == ".png"]
    typer.echo(f"wrote {written.report} ({len(figures)} figures as PNG+SVG, {len(written.tables)} tables as CSV)")
    for path in figures:
        typer.echo(f"  {path}")


def _pair(text: str) -> tuple[str, str]:
    baseline, sep, layout = text.partition(" vs ")
    if not sep or not baseline.strip() or not layout.strip():
        raise ValueError(f"--compare {text!r}: write it as 'BASELINE vs LAYOUT', e.g. 'lfm2-350m-dense vs lfm2-350m'")
    return baseline.strip(), layout.strip()


@app.command("sweep")
def sweep(
    results: Annotated[list[Path], typer.Argument(help="result files (rows.jsonl, .csv, .parquet) or folders holding rows.jsonl")],
    out: OutOption,
    title: Annotated[str, typer.Option(help="report and figure title")] = "Sweep report",
    panel: Annotated[Optional[list[str]], typer.Option(
        "--panel", help="result column(s) to split plots into panels by, e.g. spec_hidden_size (repeatable)")] = None,
    compare: Annotated[Optional[list[str]], typer.Option(
        "--compare", help="'BASELINE vs LAYOUT': plot how much faster LAYOUT is, measured and predicted (repeatable)")] = None,
    baseline_suffix: Annotated[Optional[list[str]], typer.Option(
        "--baseline-suffix", help="compare every layout L with L+SUFFIX when both are in the results, "
                                  "e.g. -all-attn or -dense (repeatable)")] = None,
) -> None:
    """Latency (with spread), peak memory (measured vs cost model, split), roofline fractions and speedups."""
    from lfm2_nas.report.build import sweep_report
    from lfm2_nas.report.results import load_results
    from lfm2_nas.report.series import suffix_pairs

    frame = load_results(results)
    pairs = [_pair(text) for text in compare or []]
    if baseline_suffix:
        found = suffix_pairs(frame["layout"].astype(str), baseline_suffix)
        if not found:
            raise ValueError(f"--baseline-suffix {', '.join(baseline_suffix)}: no layout L in the results has an L+SUFFIX")
        pairs += found
    _done(sweep_report(frame, out, title=title, panel_by=panel or [], compare=pairs))


@app.command("layout")
def layout(
    specs: Annotated[list[str], typer.Argument(help="variant name, NAME:PATTERN, pattern or config.json path (several: stacked)")],
    out: OutOption,
    dtype: Annotated[str, typer.Option(help="dtype for the cache-byte figures: float32, bfloat16, float16")] = "float32",
) -> None:
    """A strip per layout: conv vs attention per layer, parameters per block, widths annotated."""
    from lfm2_nas.cost import canonical_dtype
    from lfm2_nas.report.build import layout_report
    from lfm2_nas.resolve import resolve_spec

    _done(layout_report([(text, resolve_spec(text)) for text in specs], out, dtype=canonical_dtype(dtype)))


@app.command("study")
def study(
    storage: Annotated[str, typer.Argument(
        help="the study's journal file (experiments/<study>/journal.log), database URL, or its search file (.toml)")],
    out: OutOption,
    name: Annotated[Optional[str], typer.Option("--study", help="study name (default: the only study in STORAGE)")] = None,
) -> None:
    """Pareto front (quality vs latency, memory as colour, LFM2 and its all-attention baseline marked) and hypervolume history."""
    from lfm2_nas.report.build import study_report
    from lfm2_nas.report.study import load_study

    _done(study_report(load_study(storage, name), out))


@app.command("compare")
def compare(
    first: Annotated[str, typer.Argument(help="study A: journal file, database URL or search file (.toml)")],
    second: Annotated[str, typer.Argument(help="study B, the same search space measured another way")],
    out: OutOption,
) -> None:
    """Two studies of one space (other runtime, quant scheme or machine): do the same layouts win?"""
    import json

    from lfm2_nas.report.build import compare_report
    from lfm2_nas.report.compare import compare_studies, summary
    from lfm2_nas.report.study import load_study

    comparison = compare_studies(load_study(first), load_study(second))
    _done(compare_report(comparison, out))
    typer.echo(json.dumps(summary(comparison)))
