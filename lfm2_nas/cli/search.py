"""``lfm2-nas search run|worker|status|export|confirm``: Optuna layout search against measured latency."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lfm2_nas.cli.output import Format, emit
from lfm2_nas.units import format_bytes, format_count

app = typer.Typer(
    help="Search layouts with Optuna: a quality proxy against measured latency and memory.",
    no_args_is_help=True,
)

FileArgument = Annotated[
    Path | None, typer.Argument(help="search file (TOML); none: the built-in default search", show_default=False)
]
StorageOption = Annotated[
    str | None,
    typer.Option("--storage", help="SQLAlchemy URL (postgresql://...) or journal file; default: <root>/<study>/journal.log"),
]
StudyOption = Annotated[str | None, typer.Option("--study", help="study name (default: the search file's)")]
RootOption = Annotated[
    Path | None,
    typer.Option("--root", help="folder holding one subfolder per study; default: experiments (or $LFM2_NAS_EXPERIMENTS)",
                 show_default=False),
]
FormatOption = Annotated[Format, typer.Option("--format", help="table for people, json for machines")]


def _fail(lines: list[str]) -> typer.Exit:
    for line in lines:
        typer.echo(f"error: {line}", err=True)
    return typer.Exit(2)


def _config(file: Path | None) -> Any:
    from lfm2_nas.search import default_search_file
    from lfm2_nas.search.config import SearchConfigError, load_config

    try:
        return load_config(file if file is not None else default_search_file())
    except SearchConfigError as err:
        raise _fail([f"{err.source}: {p}" for p in err.problems]) from None


def _open(config: Any, storage: str | None, root: Path | None) -> tuple[Any, str]:
    """(storage, location) of the study ``search run`` creates or resumes."""
    from lfm2_nas.search.recovery import on_stale_trial
    from lfm2_nas.search.storage import open_storage, study_location

    location = study_location(config.study.name, storage, config.study.storage, root=root)
    return open_storage(location, on_stale_trial=on_stale_trial), location


def _locate(file: Path | None, storage: str | None, study: str | None, root: Path | None) -> tuple[Any, Any]:
    """(stored config, optuna study) of an existing study, named by its search file or by ``--study``;
    with neither, the built-in default search's."""
    from lfm2_nas.report.study import open_stored_study
    from lfm2_nas.search.storage import study_location

    config = _config(file) if file is not None or study is None else None
    name = study or config.study.name
    location = study_location(name, storage, config.study.storage if config else None, root=root)
    try:
        return open_stored_study(location, name)
    except FileNotFoundError as err:
        raise _fail([f"{err}; or run 'lfm2-nas search run' first"]) from None


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are reported by our own trial lines
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("lfm2_nas.search.trial").setLevel(logging.WARNING)


def _sigterm_as_interrupt() -> Any:
    """Make ``kill`` (SIGTERM) stop a run like Ctrl-C does; returns the previous handler."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _trial_line(trial: Any) -> str:
    from lfm2_nas.report.trials import trial_row

    r = trial_row(trial)
    parts = [f"trial {r['trial']:>3}", f"{r['status']:<10}", r["pattern"] or "-"]
    if r["params"]:
        parts.append(format_count(r["params"]))
    for key, fmt in (("quality", "{:.4g}"), ("decode_ms", "decode {:.1f} ms"), ("prefill_ms", "prefill {:.0f} ms")):
        if isinstance(r[key], (int, float)):
            parts.append(fmt.format(r[key]))
    if r["peak_bytes"]:
        parts.append(f"peak {format_bytes(r['peak_bytes'])}")
    if r["seed"]:
        parts.append(f"[{r['seed']}]")
    if r["reason"] and r["status"] != "measured":
        parts.append(f"- {r['reason']}")
    return "  ".join(parts)


def _execute(config: Any, handle: Any, location: str, root: Path | None, worker: bool, target: int | None,
             max_trials: int | None, retry_failed: bool = False) -> None:
    from lfm2_nas.search.evaluate import make_evaluator
    from lfm2_nas.search.run import open_study, run_study
    from lfm2_nas.search.storage import redact, study_dir

    _quiet_optuna()
    study = open_study(config, handle, worker=worker)
    folder = study_dir(config.study.name, root)
    evaluator = make_evaluator(config, folder, location)
    slug = evaluator.hardware().get("slug", "unknown")
    lock = f"; CPU lock {evaluator.lock}" if getattr(evaluator, "lock", None) else ""
    typer.echo(f"study {config.study.name} in {redact(location)}; measuring on {slug}{lock}", err=True)
    previous = _sigterm_as_interrupt()
    try:
        report = run_study(study, config, evaluator, target=target, max_trials=max_trials,
                           on_trial=lambda t: typer.echo(_trial_line(t), err=True), retry_failed_layouts=retry_failed)
    except KeyboardInterrupt:
        typer.echo("interrupted: the trial in progress was re-queued; run the same command again to resume", err=True)
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    retried = f"{report.retried} failed layout(s) re-queued, " if report.retried else ""
    typer.echo(
        f"{report.stopped_reason}: ran {report.ran} trial(s) here ({report.failed} failed, {report.transient} of "
        f"them transient and re-queued, {retried}{report.duplicates} repeated layout(s) skipped, "
        f"{report.recovered} orphan(s) recovered); study has {report.counted}/{report.target}",
        err=True,
    )
    _write_outputs(config, study, folder)
    if report.short:
        typer.echo(f"error: stopped short of the target ({report.counted}/{report.target}): {report.stopped_reason}; "
                   "see the failures with 'lfm2-nas search status', then run again (--retry-failed re-queues "
                   "failed layouts)", err=True)
        raise typer.Exit(1)


def _write_outputs(config: Any, study: Any, folder: Path) -> dict[str, Any]:
    from lfm2_nas.report.export import write_results

    summary = write_results(config, study, folder)
    for seed in summary["seeds"]:
        typer.echo(f"{seed['seed']} (trial {seed['trial']}): {seed['placement']}")
    typer.echo(f"wrote {folder}/trials.csv, pareto.csv ({len(summary['pareto_front'])} layouts), summary.json")
    return summary


@app.command("run")
def run(
    file: FileArgument = None,
    storage: StorageOption = None,
    trials: Annotated[int | None, typer.Option("--trials", min=1, help="study-wide target of finished trials (default: the file's)")] = None,
    root: RootOption = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="queue every failed layout again first")] = False,
) -> None:
    """Create or resume the study of FILE and run trials until it holds its target.

    Re-running the same command resumes: finished trials are kept, interrupted ones re-run. Exits 1
    when the run stops short of the target (too many failures in a row, nothing new left to try).
    """
    config = _config(file)
    handle, location = _open(config, storage, root)
    _execute(config, handle, location, root, worker=False, target=trials or config.study.trials, max_trials=None,
             retry_failed=retry_failed)


@app.command("worker")
def worker(
    storage: Annotated[str, typer.Option("--storage", help="the study's database URL (postgresql://...) or journal file")],
    study: Annotated[str, typer.Option("--study", help="name of an existing study")],
    trials: Annotated[int | None, typer.Option("--trials", min=1, help="stop after this many trials here (default: until the study's target)")] = None,
    root: RootOption = None,
) -> None:
    """Join an existing study from any machine; measures on THIS machine's hardware."""
    from lfm2_nas.search.recovery import on_stale_trial
    from lfm2_nas.search.run import config_of
    from lfm2_nas.search.storage import open_storage

    handle = open_storage(storage, on_stale_trial=on_stale_trial)
    config = config_of(handle, study)
    _execute(config, handle, storage, root, worker=True, target=None, max_trials=trials)


@app.command("status")
def status(
    file: FileArgument = None,
    storage: StorageOption = None,
    study: StudyOption = None,
    root: RootOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Progress, the current Pareto front, where the seeded LFM2 layouts sit, and failures."""
    from lfm2_nas.report.trials import summarize_study

    config, loaded = _locate(file, storage, study, root)
    summary = summarize_study(config, loaded)
    state, front, seeds = summary["progress"], summary["pareto_front"], summary["seeds"]
    if fmt is Format.json:
        del summary["rows"]
        emit(summary, fmt)
        return
    typer.echo(
        f"study {config.study.name}: {state['finished']}/{state['target']} finished "
        f"({state['measured']} measured, {state['feasible']} feasible, {state['screened']} screened, "
        f"{state['infeasible']} over a limit, {state['failed']} failed of which {state['requeued']} re-queued), "
        f"{state['running']} running, {state['waiting']} waiting; hardware: {', '.join(state['hardware']) or '-'}"
    )
    if front:
        typer.echo(f"\nPareto front ({', '.join(o['name'] + ' ' + o['direction'] for o in summary['objectives'])}):")
        emit([_front_cells(r) for r in front], Format.table)
    for seed in seeds:
        typer.echo(f"{seed['seed']} (trial {seed['trial']}): {seed['placement']}")
    if summary["confirmation"]:
        _show_confirmation(summary["confirmation"])
    if state["failures"]:
        typer.echo("\nfailures:")
        for failure in state["failures"]:
            typer.echo(f"  trial {failure['trial']}: {failure['reason']}")


def _front_cells(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "trial": r["trial"],
        "seed": r["seed"],
        "pattern": r["pattern"],
        "params": format_count(r["params"]) if r["params"] else "",
        "hidden": r["hidden_size"],
        "kv": r["kv_heads"],
        "ffn": r["ffn_dim"],
        "quality": f"{r['quality']:.4g}" if r["quality"] is not None else "",
        "decode_ms": f"{r['decode_ms']:.1f}" if r["decode_ms"] is not None else "",
        "prefill_ms": f"{r['prefill_ms']:.0f}" if r["prefill_ms"] is not None else "",
        "peak": format_bytes(r["peak_bytes"]) if r["peak_bytes"] else "",
        "hardware": r["hardware"],
    }


def _show_confirmation(c: dict[str, Any]) -> None:
    """The stored ``search confirm`` result: settings, one row per layout, the statements."""
    from lfm2_nas.report.confirmed import describe

    typer.echo(f"\nconfirmed front ({describe(c)}): trials {', '.join(map(str, c['confirmed_front'])) or 'none'} "
               f"(raw front then: {', '.join(map(str, c['raw_front']))})")
    emit([_confirm_cells(e) for e in c["layouts"]], Format.table)
    for line in c["statements"]:
        typer.echo(line)


def _interval(value: dict[str, Any] | None, digits: str) -> str:
    if not value:
        return ""
    half = "?" if value["low"] is None else format((value["high"] - value["low"]) / 2, digits)
    return f"{value['estimate']:{digits}} ± {half}"


def _confirm_cells(e: dict[str, Any]) -> dict[str, Any]:
    vs = e["vs_reference"]
    relative = {name: f"{(vs[name]['estimate'] - 1) * 100:+.1f}%" if name in vs else "" for name in ("decode_ms", "prefill_ms")}
    return {
        "trial": e["trial"], "role": e["role"], "pattern": e["pattern"],
        "quality": _interval(e["quality"], ".4g"), "decode_ms": _interval(e["decode_ms"], ".1f"),
        "prefill_ms": _interval(e["prefill_ms"], ".0f"), "decode_vs_ref": relative["decode_ms"],
        "prefill_vs_ref": relative["prefill_ms"], "confirmed": "yes" if e["confirmed"] else "no", "note": e["note"],
    }


@app.command("export")
def export(
    file: FileArgument = None,
    storage: StorageOption = None,
    study: StudyOption = None,
    root: RootOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="folder for the tables (default: <root>/<study>)")] = None,
    checkpoint: Annotated[list[int] | None, typer.Option("--checkpoint", help="trial number to export as an HF checkpoint (repeatable)")] = None,
    pareto_checkpoints: Annotated[bool, typer.Option("--pareto-checkpoints", help="export every Pareto-front layout as an HF checkpoint")] = False,
) -> None:
    """Write trials.csv, pareto.csv, summary.json and pareto.png; optionally HF checkpoints of layouts."""
    from lfm2_nas.checkpoint import build_checkpoint
    from lfm2_nas.search.storage import study_dir
    from lfm2_nas.spec import ModelSpec

    config, loaded = _locate(file, storage, study, root)
    trials = loaded.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    bad = [n for n in checkpoint or [] if n not in by_number or "spec" not in by_number[n].user_attrs]
    if bad:  # checked before anything is written
        raise _fail([f"trial {n} has no layout to export (trials: 0..{len(trials) - 1})" for n in bad])
    folder = out or study_dir(config.study.name, root)
    summary = _write_outputs(config, loaded, folder)
    numbers = list(checkpoint or []) + ([r["trial"] for r in summary["pareto_front"]] if pareto_checkpoints else [])
    for number in dict.fromkeys(numbers):
        trial = by_number[number]
        spec = ModelSpec.from_dict(trial.user_attrs["spec"])
        path = build_checkpoint(spec, folder / "export" / f"trial-{number:04d}", dtype=config.target.dtype)
        typer.echo(f"wrote {path} ({format_count(trial.user_attrs['param_count'])} parameters, pattern {spec.pattern})")


@app.command("confirm")
def confirm(
    file: FileArgument = None,
    storage: StorageOption = None,
    study: StudyOption = None,
    root: RootOption = None,
    rounds: Annotated[int, typer.Option("--rounds", min=2, help="latency rounds (every layout once per round, order reversed every other round)")] = 6,
    processes: Annotated[int, typer.Option("--processes", min=1, help="measuring processes per layout per round")] = 2,
    quality_seeds: Annotated[int, typer.Option("--quality-seeds", min=3, help="independent quality seeds (other than the study's)")] = 3,
    trial: Annotated[list[int] | None, typer.Option("--trial", help="also confirm this trial (repeatable)")] = None,
    quality_budget: Annotated[float | None, typer.Option("--quality-budget", help="also train the proxy at this larger budget (reported, not decided on)")] = None,
    confidence: Annotated[float, typer.Option("--confidence", min=0.5, max=0.999, help="confidence level of every interval")] = 0.95,
) -> None:
    """Measure the seeds, the Pareto front and named trials again and keep what holds beyond the noise.

    Latency and memory in paired rounds, quality with new seeds; writes <study folder>/confirm/ and
    stores the result in the study (shown by status, export and report study). Resumable: re-run the
    same command to continue; more --rounds or --quality-seeds extend it. Prints a JSON summary last.
    """
    import json

    from lfm2_nas.report.confirmed import MEASURED, CONFIRM_ATTR, confirm_candidates, summarize_confirmation
    from lfm2_nas.report.export import write_confirmation
    from lfm2_nas.report.trials import summarize_study
    from lfm2_nas.search.confirm import FOLDER, Plan, confirm_seeds, run_confirmation
    from lfm2_nas.search.storage import redact, study_dir, study_location

    config, loaded = _locate(file, storage, study, root)
    q = config.quality
    if quality_budget is not None and quality_budget <= q.budget:
        raise _fail([f"--quality-budget {quality_budget:g} must be larger than the study's budget {q.budget:g}"])
    try:
        candidates = confirm_candidates(config, loaded, trial or [])
    except LookupError as err:
        raise _fail([str(err)]) from None
    plan = Plan(rounds, processes, confirm_seeds(q.seed, quality_seeds),
                (q.budget,) + ((quality_budget,) if quality_budget is not None else ()))
    folder = study_dir(config.study.name, root)
    location = study_location(config.study.name, storage, config.study.storage, root=root)
    _quiet_optuna()
    evaluator = _confirm_measurer(config, folder, location)
    typer.echo(f"confirming {len(candidates)} layouts of study {config.study.name} ({redact(location)}): trials "
               f"{', '.join(str(c.trial) for c in candidates)}; {rounds} rounds x {processes} processes, quality "
               f"seeds {', '.join(map(str, plan.seeds))} at budget(s) {', '.join(f'{b:g}' for b in plan.budgets)}",
               err=True)
    previous = _sigterm_as_interrupt()
    try:
        records = run_confirmation(candidates, plan, evaluator, folder / FOLDER, config.fingerprint(),
                                   on_record=lambda r: typer.echo(_record_line(r), err=True))
    except KeyboardInterrupt:
        typer.echo("interrupted: finished measurements are kept; run the same command again to resume", err=True)
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    raw_front = [r["trial"] for r in summarize_study(config, loaded)["pareto_front"]]
    attrs = loaded.trials[candidates[0].trial].user_attrs
    moved = attrs.get("hardware_slug") not in (None, evaluator.hardware().get("slug"))
    moved_from = (attrs["hardware_slug"], {k: attrs[k] for k in MEASURED if k in attrs}) if moved else None
    result = summarize_confirmation(records, candidates, config, raw_front, confidence, moved_from)
    write_confirmation(result, folder / FOLDER)
    loaded.set_user_attr(CONFIRM_ATTR, result)
    _write_outputs(config, loaded, folder)
    for line in result["statements"]:
        typer.echo(line)
    typer.echo(json.dumps({key: result[key] for key in ("reference", "raw_front", "confirmed_front", "rounds",
                                                        "processes", "seeds", "budgets", "confidence", "statements")}))


def _confirm_measurer(config: Any, folder: Path, location: str) -> Any:
    """The measurer of ``search confirm`` (the search's own; a seam for tests)."""
    from lfm2_nas.search.evaluate import make_evaluator

    return make_evaluator(config, folder, location)


def _record_line(record: dict[str, Any]) -> str:
    where = f"round {record['round']}" if record["kind"] == "latency" else f"seed {record['seed']} budget {record['budget']:g}"
    head = f"trial {record['trial']:>3}  {record['kind']:<8} {where}"
    if not record["ok"]:
        return f"{head}  failed: {record['reason']}"
    if record["kind"] == "latency":
        return f"{head}  decode {record['decode_ms']:.1f} ms  prefill {record['prefill_ms']:.0f} ms"
    return f"{head}  {record['score']:.4g}"

