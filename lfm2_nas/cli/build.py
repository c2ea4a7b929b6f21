"""``lfm2-nas build``: write a layout as a random-init HF-format checkpoint, or as a deployment
runtime's artifact (an ExecuTorch ``.pte`` or a llama.cpp GGUF) to take to another machine."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from lfm2_nas.spec import ModelSpec
from lfm2_nas.units import format_bytes


class ArtifactFormat(str, Enum):
    checkpoint = "checkpoint"
    pte = "pte"
    gguf = "gguf"


#: The runtime each artifact format is for.
_BACKEND = {ArtifactFormat.pte: "executorch", ArtifactFormat.gguf: "llamacpp"}


def build(
    spec: Annotated[str, typer.Argument(help="variant name, NAME:PATTERN, pattern, config.json path or checkpoint folder")],
    out: Annotated[Path, typer.Option("--out", help="checkpoint: the folder for config.json and model.safetensors; "
                                                     "pte / gguf: the file to write")],
    fmt: Annotated[ArtifactFormat, typer.Option("--format", help="checkpoint (HF format), pte (ExecuTorch XNNPACK) "
                                                               "or gguf (llama.cpp)")] = ArtifactFormat.checkpoint,
    quant: Annotated[Optional[str], typer.Option(help="pte: fp32 or 8da4w; gguf: f32, f16, q8_0 or q4_0")] = None,
    max_len: Annotated[int, typer.Option(help="pte / gguf: the cache length the program is exported for")] = 2048,
    dtype: Annotated[str, typer.Option(help="checkpoint: weight dtype, float32, bfloat16 or float16")] = "float32",
    seed: Annotated[int, typer.Option(help="random-init seed")] = 0,
) -> None:
    """Build LAYOUT with random weights (a checkpoint folder's own weights with pte / gguf) and save it."""
    from lfm2_nas.cost import canonical_dtype, param_count
    from lfm2_nas.resolve import resolve_spec

    # Check everything the user typed before the slow part (importing torch, building the model).
    layout = resolve_spec(spec)
    if fmt is not ArtifactFormat.checkpoint:
        _export(layout, spec, _BACKEND[fmt], quant, max_len, out, seed)
        return
    if quant is not None:
        raise ValueError("--quant is for --format pte or gguf; a checkpoint's weights take --dtype")
    dtype_name = canonical_dtype(dtype)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")

    from lfm2_nas.checkpoint import build_checkpoint

    folder = build_checkpoint(layout, out, dtype=dtype_name, seed=seed)
    typer.echo(f"wrote {folder} ({param_count(layout):,} parameters, pattern {layout.pattern})")


def _export(layout: ModelSpec, text: str, backend: str, quant: str | None, max_len: int, out: Path, seed: int) -> None:
    """Write ``layout`` as ``backend``'s artifact at ``out`` (in a spawned process) and say what it cost."""
    from lfm2_nas.profiler.artifacts import ArtifactFailed, export_artifact
    from lfm2_nas.runtimes import QUANTS, installed_version

    scheme = quant or QUANTS[backend][0]
    if scheme not in QUANTS[backend]:
        raise ValueError(f"--quant: the {backend} backend has no scheme {scheme!r}; choose one of {', '.join(QUANTS[backend])}")
    installed_version(backend)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the file to write")
    folder = Path(text)
    has_weights = folder.is_dir() and any(p.suffix in (".safetensors", ".bin") for p in folder.iterdir())
    checkpoint = folder if has_weights else None
    try:
        artifact = export_artifact(backend, layout, scheme, max_len, out, seed=seed, checkpoint=checkpoint)
    except ArtifactFailed as err:
        raise ValueError(f"export failed: {err}") from None
    peak = artifact.export_peak_rss_bytes
    typer.echo(f"wrote {out} ({format_bytes(artifact.size_bytes)}, {backend} {scheme}, cache {max_len} positions; "
               f"export {artifact.export_s:.1f} s, peak {format_bytes(peak) if peak else 'unknown'}; "
               f"weights {'from ' + str(checkpoint) if checkpoint else f'random, seed {seed}'})")
