"""``lfm2-nas variants list|show``: the registered layouts and their analytic costs; a peer model
(not an LFM2 variant) names its published checkpoint in ``peer_of``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from lfm2_nas import cost
from lfm2_nas.cli.output import Format, emit
from lfm2_nas.registry import PEERS, VARIANTS
from lfm2_nas.resolve import resolve_spec
from lfm2_nas.spec import ModelSpec
from lfm2_nas.units import format_bytes, format_count

app = typer.Typer(help="List registered layout variants and their costs.", no_args_is_help=True)

FormatOption = Annotated[Format, typer.Option("--format", help="table for people, json for machines")]
DtypeOption = Annotated[str, typer.Option("--dtype", help="dtype for byte figures: float32, bfloat16, float16")]


def describe(name: str, spec: ModelSpec, dtype: str) -> dict[str, Any]:
    """The row ``variants`` prints for one layout (bytes as integers); ``peer_of`` is the published
    checkpoint a peer model's shapes come from, ``None`` for LFM2 layouts."""
    summary = cost.summarize(spec, dtype)
    return {
        "name": name,
        "peer_of": PEERS.get(name),
        "params": summary.params,
        "non_embedding_params": summary.non_embedding_params,
        "pattern": spec.pattern,
        "layers": spec.num_layers,
        "conv_layers": spec.num_conv_layers,
        "attention_layers": spec.num_attention_layers,
        "hidden_size": spec.hidden_size,
        "heads": spec.num_heads,
        "kv_heads": spec.num_kv_heads,
        "head_dim": spec.head_dim,
        "qk_norm": spec.qk_norm,
        "ffn_dim": summary.ffn_dim,
        "dtype": summary.dtype,
        "weight_bytes": summary.weight_bytes,
        "kv_bytes_per_token": summary.kv_bytes_per_token,
        "conv_state_bytes": summary.conv_state_bytes,
    }


def _human(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["peer_of"] = row["peer_of"] or "-"
    for key in ("params", "non_embedding_params"):
        out[key] = format_count(row[key])
    for key in ("weight_bytes", "kv_bytes_per_token", "conv_state_bytes"):
        out[key] = format_bytes(row[key])
    return out


@app.command("list")
def list_variants(fmt: FormatOption = Format.table, dtype: DtypeOption = "float32") -> None:
    """All registered variants with parameter counts, pattern, FFN width and cache/weight bytes."""
    rows = [describe(name, spec, dtype) for name, spec in VARIANTS.items()]
    columns = ["name", "peer_of", "params", "pattern", "ffn_dim", "kv_bytes_per_token", "conv_state_bytes", "weight_bytes"]
    emit(rows if fmt is Format.json else [_human(r) for r in rows], fmt, columns)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="variant name, NAME:PATTERN, pattern or config.json path")],
    fmt: FormatOption = Format.table,
    dtype: DtypeOption = "float32",
) -> None:
    """Every analytic figure of one layout, plus its full spec."""
    spec = resolve_spec(name)
    row = describe(name, spec, dtype)
    if fmt is Format.json:
        emit({**row, "spec": spec.to_dict()}, fmt)
    else:
        human = _human(row)
        human["params"] = f"{row['params']:,} ({human['params']})"
        human["non_embedding_params"] = f"{row['non_embedding_params']:,} ({human['non_embedding_params']})"
        emit(human, fmt)
