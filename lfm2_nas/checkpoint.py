"""HF-format LFM2 checkpoints: weights in and out (``config.json`` handling: :mod:`lfm2_nas.hf_config`).

Reads weights stored as safetensors (one ``model.safetensors`` or shards listed in
``model.safetensors.index.json``) or torch ``.bin`` (one ``pytorch_model.bin`` or shards listed in
``pytorch_model.bin.index.json``), one tensor at a time, so loading never holds a second copy of the
model. Writes the newer config form and one ``model.safetensors`` that
``transformers.Lfm2ForCausalLM.from_pretrained`` loads unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from lfm2_nas.hf_config import CONFIG_NAME, CheckpointError, hf_config_from_spec, read_config, spec_from_hf_config
from lfm2_nas.hugepages import allocate_parameters
from lfm2_nas.io import atomic_write, atomic_write_text
from lfm2_nas.model import LFM2Model
from lfm2_nas.spec import ModelSpec

__all__ = [
    "CheckpointError",
    "build_checkpoint",
    "hf_config_from_spec",
    "load_pretrained",
    "read_config",
    "save_pretrained",
    "spec_from_hf_config",
]

WEIGHTS_NAME = "model.safetensors"
BIN_WEIGHTS_NAME = "pytorch_model.bin"
_TIED_HEAD = "lm_head.weight"


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint folder: a shard index's files, else the single file.

    safetensors is preferred over ``.bin`` when both are present (as transformers does).
    """
    for single in (WEIGHTS_NAME, BIN_WEIGHTS_NAME):
        index = folder / f"{single}.index.json"
        if index.is_file():
            try:
                shard_names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
                raise CheckpointError(f"{index} is not a valid shard index ({type(err).__name__}: {err})") from None
            files = [folder / name for name in shard_names]
            absent = [f.name for f in files if not f.is_file()]
            if absent:
                raise CheckpointError(f"{index} lists shard file(s) that do not exist: {', '.join(absent)}")
            return files
        if (folder / single).is_file():
            return [folder / single]
    raise CheckpointError(
        f"no weights in {folder}: expected {WEIGHTS_NAME}, {BIN_WEIGHTS_NAME} or a sharded index of either"
    )


def _open_weights(files: list[Path], stack: ExitStack) -> dict[str, tuple[tuple[int, ...], Callable[[], torch.Tensor]]]:
    """``name -> (shape, load)`` over all ``files``; ``load()`` reads that one tensor."""
    from safetensors import safe_open

    found: dict[str, tuple[tuple[int, ...], Callable[[], torch.Tensor]]] = {}
    for file in files:
        try:
            if file.suffix == ".safetensors":
                handle = stack.enter_context(safe_open(str(file), framework="pt", device="cpu"))
                for name in handle.keys():
                    shape = tuple(handle.get_slice(name).get_shape())
                    found[name] = (shape, lambda handle=handle, name=name: handle.get_tensor(name))
            else:
                # mmap: tensors are paged in as they are copied, not all read up front.
                tensors = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
                for name, tensor in tensors.items():
                    found[name] = (tuple(tensor.shape), lambda tensor=tensor: tensor)
        except Exception as err:  # safetensors and torch.load raise several unrelated types
            raise CheckpointError(f"cannot read weights file {file}: {err}") from None
    return found


def load_pretrained(
    path: str | os.PathLike[str], dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> LFM2Model:
    """Load an HF-format LFM2 folder into :class:`LFM2Model` (``dtype`` defaults to float32).

    The weights are copied into freshly allocated parameters, so they live in process memory (in
    huge pages on a Linux CPU, :mod:`lfm2_nas.hugepages`), not in a memory-mapped file, which reads
    slower. Missing, unexpected or mis-shaped
    tensors raise :class:`CheckpointError` naming them, before any weight is read.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    spec = read_config(folder)
    model = allocate_parameters(LFM2Model(spec, dtype=dtype or torch.float32, device="meta"), device)
    expected = model.state_dict()
    with ExitStack() as stack:
        stored = _open_weights(weight_files(folder), stack)
        if spec.tie_embeddings:
            stored.pop(_TIED_HEAD, None)  # a tied head may be stored; the embedding is what counts
        _check_names_and_shapes(folder, stored, {name: tuple(t.shape) for name, t in expected.items()})
        with torch.no_grad():
            for name, target in expected.items():
                target.copy_(stored[name][1]())
    return model.eval()


def _check_names_and_shapes(
    folder: Path, stored: dict[str, tuple[tuple[int, ...], Any]], expected: dict[str, tuple[int, ...]]
) -> None:
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {_first_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensor(s): {_first_few(unexpected)}")
    misshaped = [
        f"{name} has shape {stored[name][0]}, config implies {shape}"
        for name, shape in expected.items()
        if name in stored and stored[name][0] != shape
    ]
    if misshaped:
        problems.append(f"{len(misshaped)} mis-shaped tensor(s): {_first_few(misshaped)}")
    if problems:
        raise CheckpointError(f"weights in {folder} do not match its config.json: " + "; ".join(problems))


def _first_few(items: list[str], limit: int = 3) -> str:
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def save_pretrained(model: LFM2Model, path: str | os.PathLike[str]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into folder ``path`` (created if needed).

    Each file is written to a temporary name and renamed into place, so an interrupted save never
    leaves a half-written file under the final name. A tied LM head is not stored (as HF does).
    Refuses a folder holding a sharded safetensors index, which would shadow the new weights.
    """
    from safetensors.torch import save_file

    config = hf_config_from_spec(model.spec, model.head_weight.dtype)  # raises before anything is written
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    shadowing = folder / f"{WEIGHTS_NAME}.index.json"
    if shadowing.exists():
        raise CheckpointError(f"{folder} holds a sharded checkpoint ({shadowing.name}); save into another folder")
    weights = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(weights, str(tmp), metadata={"format": "pt"}))
    atomic_write_text(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return folder


def build_checkpoint(spec: ModelSpec, path: str | os.PathLike[str], dtype: str = "float32", seed: int = 0) -> Path:
    """Build ``spec`` with random weights (seeded) at ``dtype`` and save it with :func:`save_pretrained`:
    what ``lfm2-nas build`` and ``lfm2-nas search export --checkpoint`` write."""
    from lfm2_nas.cost import canonical_dtype
    from lfm2_nas.model import build_model

    hf_config_from_spec(spec)  # a layout no LFM2 config can hold fails before the build
    model = build_model(spec, dtype=getattr(torch, canonical_dtype(dtype)), seed=seed)
    return save_pretrained(model, path)
