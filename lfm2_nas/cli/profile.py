"""``lfm2-nas profile``: measure layouts (the default command), fit the latency predictor, profile hardware."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
from typer.core import TyperGroup

from lfm2_nas.cli.output import Format, emit
from lfm2_nas.profiler.result import BUSY_OTHER_CORES
from lfm2_nas.profiler.settings import Settings, SettingsError, read_settings
from lfm2_nas.runtimes import BACKENDS, QUANTS
from lfm2_nas.units import format_bytes


class _RunByDefault(TyperGroup):
    """``profile SPEC...`` means ``profile run SPEC...``; ``profile fit`` and ``profile hardware`` are commands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_RunByDefault,
    help="Measure prefill/decode latency and peak memory of layouts; fit the latency predictor; profile hardware.",
    no_args_is_help=True,
)

FormatOption = Annotated[Format, typer.Option("--format", help="table for people, json for machines")]


_DEFAULT = Settings()


@app.command("run")
def run(
    specs: Annotated[list[str], typer.Argument(help="variant name, NAME:PATTERN, pattern or config.json path")],
    prompt_len: Annotated[list[int], typer.Option("--prompt-len", help="prompt tokens (repeatable)")] = [_DEFAULT.prompt_len],
    depth: Annotated[list[int], typer.Option("--depth", help="decode context depth (repeatable)")] = [_DEFAULT.context_depth],
    batch: Annotated[list[int], typer.Option("--batch", help="sequences per batch (repeatable)")] = [_DEFAULT.batch],
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: all this process may use)")] = None,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16 (torch backend)")] = _DEFAULT.dtype,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N")] = _DEFAULT.device,
    backend: Annotated[str, typer.Option(help=f"runtime: {', '.join(BACKENDS)}")] = _DEFAULT.backend,
    quant: Annotated[Optional[str], typer.Option(help="the backend's scheme: " + "; ".join(
        f"{b}: {', '.join(q)}" for b, q in QUANTS.items() if b != "torch"))] = None,
    warmup: Annotated[int, typer.Option(help="untimed calls before sampling")] = _DEFAULT.warmup,
    min_count: Annotated[int, typer.Option(help="at least this many samples per phase")] = _DEFAULT.min_count,
    min_duration_s: Annotated[float, typer.Option(help="and at least this many seconds per phase")] = _DEFAULT.min_duration_s,
    processes: Annotated[int, typer.Option(help="independent measuring processes, samples pooled")] = _DEFAULT.processes,
    cache_fill: Annotated[Optional[str], typer.Option(help="fill the decode cache: synthetic (torch default) or prefill")] = None,
    memory_limit: Annotated[Optional[str], typer.Option(help="cap above the measuring process's start-up, e.g. '4 GiB'")] = None,
    timeout_s: Annotated[Optional[float], typer.Option(help="give up on one measuring process after this long")] = None,
    remeasure: Annotated[bool, typer.Option("--remeasure", help="ignore cached results")] = False,
    allow_emulated: Annotated[bool, typer.Option("--allow-emulated", help="measure a non-native dtype anyway")] = False,
    out: Annotated[Optional[Path], typer.Option(help="also write the rows as CSV/Parquet into this folder")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Profile each SPEC at every prompt length x depth x batch, each in a fresh process."""
    from lfm2_nas.profiler import load_or_measure_hardware, profile_layout
    from lfm2_nas.profiler.store import write_tables
    from lfm2_nas.resolve import resolve_spec

    layouts = [(text, resolve_spec(text)) for text in specs]  # fail on a bad spec before measuring anything
    options = {
        "prompt_len": prompt_len, "context_depth": depth, "batch": batch, "threads": threads, "dtype": dtype,
        "device": device, "backend": backend, "quant": quant, "warmup": warmup, "min_count": min_count,
        "min_duration_s": min_duration_s, "processes": processes, "cache_fill": cache_fill,
        "memory_limit": memory_limit, "timeout_s": timeout_s,
    }
    names = {key: "--" + ("depth" if key == "context_depth" else key).replace("_", "-") for key in options}
    settings, problems = read_settings({k: v for k, v in options.items() if v is not None}, "", axes=True, names=names)
    if problems:
        raise SettingsError(problems)
    hardware = load_or_measure_hardware(device)
    results = [
        profile_layout(spec, s, hardware, use_cache=not remeasure, allow_emulated=allow_emulated, label=label)
        for label, spec in layouts for s in settings
    ]
    rows = [r.to_row() for r in results]
    if out is not None:
        write_tables(rows, out)
    if fmt is Format.json:
        emit(rows, fmt)
    else:
        emit([summary_row(r) for r in rows], fmt)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def summary_row(row: dict[str, Any]) -> dict[str, Any]:
    """The columns ``profile`` and ``sweep`` print for one row."""
    def pct(value: Any) -> str:
        return "" if value is None else f"{100 * value:.0f}%"

    def ms(value: Any) -> str:
        return "" if value is None else f"{value:.2f}"

    flags = [f"unstable {name}" for name in ("prefill_ms", "decode_ms") if row.get(f"{name}_unstable")]
    if row.get("busy"):
        flags.append(f"busy machine ({row['other_cpu_cores']:.1f} other cores)")
    return {
        "layout": row["layout"],
        "backend": row.get("backend", "torch") if row.get("backend", "torch") == "torch" else f"{row['backend']} {row['quant']}",
        "prompt": row["prompt_len"],
        "depth": row["context_depth"],
        "batch": row["batch"],
        "ttft_ms": ms(row.get("ttft_ms")),
        "decode_ms": ms(row.get("decode_ms_median")),
        "tok/s": "" if row.get("decode_tokens_per_s") is None else f"{row['decode_tokens_per_s']:.1f}",
        "peak": "" if row.get("peak_bytes") is None else format_bytes(row["peak_bytes"]),
        "peak_pred_err": pct(row.get("peak_bytes_error")),
        "prefill_flops": pct(row.get("prefill_flops_fraction")),
        "decode_bw": pct(row.get("decode_bandwidth_fraction")),
        "note": row["reason"] if not row["ok"] else "; ".join(flags),
    }


@app.command("fit")
def fit(
    results: Annotated[Optional[list[Path]], typer.Argument(help="result files or folders (default: experiments/results)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="predictor JSON (default: profiles/predictor-<machine>.json)")] = None,
    report: Annotated[Optional[Path], typer.Option(help="also write the held-out report (every prediction) here")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Fit the latency predictor on measured rows; report its error on held-out layouts."""
    from lfm2_nas.paths import experiments_root
    from lfm2_nas.profiler import LatencyPredictor
    from lfm2_nas.profiler.hardware import profiles_dir
    from lfm2_nas.profiler.predictor import held_out_errors
    from lfm2_nas.profiler.store import read_rows

    rows = read_rows(results or [experiments_root() / "results"])
    evaluation = held_out_errors(rows)
    predictor = LatencyPredictor().fit(rows)
    path = predictor.save(out or profiles_dir() / f"predictor-{predictor.hardware[0]}.json")
    summary = {
        "predictor": str(path),
        "hardware": ", ".join(predictor.hardware),
        "setups": ", ".join(predictor.coefficients),
        "layouts": evaluation["layouts"],
        "rows": evaluation["rows"],
        **{f"{p}_held_out_mape": round(evaluation[p]["mape"], 4) for p in ("prefill", "decode")},
        **{f"{p}_held_out_max_ape": round(evaluation[p]["max_ape"], 4) for p in ("prefill", "decode")},
    }
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps({**summary, **evaluation}, indent=2) + "\n")
    emit(summary, fmt)


@app.command("hardware")
def hardware(
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N")] = "cpu",
    remeasure: Annotated[bool, typer.Option("--remeasure", help="measure again even if a profile exists")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Show this device's hardware profile (measured once, saved under profiles/, then reused)."""
    from lfm2_nas.profiler import load_or_measure_hardware
    from lfm2_nas.profiler.hardware import profiles_dir

    profile = load_or_measure_hardware(device, remeasure=remeasure)
    if fmt is Format.json:
        emit(profile.to_dict(), fmt)
        return
    emit({
        "file": str(profiles_dir() / profile.file_name),
        "slug": profile.slug,
        "cpu": f"{profile.cpu_model} ({profile.physical_cores} cores, {profile.logical_cpus} CPUs; "
               f"{', '.join(profile.cpu_isa) or 'no SIMD flags read'})",
        "gpu": f"{profile.gpu_name} ({format_bytes(profile.gpu_memory_bytes)})" if profile.gpu_name else "none",
        "memory": format_bytes(profile.memory_bytes),
        "threads": profile.threads,
        "torch / cuda": f"{profile.torch_version} / {profile.cuda_version or '-'}",
        "read_bandwidth": f"{format_bytes(profile.read_bandwidth_bytes_per_s)}/s",
        **{f"matmul_{k}": f"{v / 1e9:.1f} GFLOP/s" + ("" if profile.is_native(k) else " (not native: refused)")
           for k, v in profile.matmul_flops_per_s.items()},
        "other_cpu_cores": _busy_note(profile.details.get("other_cpu_cores")),
        **{f"kernel {key}": kernel for key, kernel in profile.kernel_table.items()},
    }, fmt)


def _busy_note(other: float | None) -> str:
    if other is None:
        return "not recorded"
    note = f"{other:.2f} (CPU cores other processes used while measuring)"
    return note + "  WARNING: busy machine, measure again with --remeasure" if other > BUSY_OTHER_CORES else note
