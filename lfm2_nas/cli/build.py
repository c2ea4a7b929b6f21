"""``lfm2-nas build``: write a random-init HF-format checkpoint for a layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def build(
    spec: Annotated[str, typer.Argument(help="variant name, NAME:PATTERN, pattern or config.json path")],
    out: Annotated[Path, typer.Option("--out", help="folder to write config.json and model.safetensors into")],
    dtype: Annotated[str, typer.Option(help="weight dtype: float32, bfloat16, float16")] = "float32",
    seed: Annotated[int, typer.Option(help="random-init seed")] = 0,
) -> None:
    """Build LAYOUT with random weights and save it so transformers' from_pretrained loads it."""
    from lfm2_nas.cost import canonical_dtype, param_count
    from lfm2_nas.resolve import resolve_spec

    # Check everything the user typed before the slow part (importing torch, building the model).
    layout = resolve_spec(spec)
    dtype_name = canonical_dtype(dtype)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")

    from lfm2_nas.checkpoint import build_checkpoint

    folder = build_checkpoint(layout, out, dtype=dtype_name, seed=seed)
    typer.echo(f"wrote {folder} ({param_count(layout):,} parameters, pattern {layout.pattern})")
