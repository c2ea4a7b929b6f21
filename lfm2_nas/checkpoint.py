"""HF-format LFM2 checkpoints: ``config.json`` <-> :class:`ModelSpec`, weights in and out.

Reads both config forms of ``model_type: lfm2`` (older ``full_attn_idxs`` + ``block_ff_dim``,
newer ``layer_types`` + ``intermediate_size`` + ``rope_parameters``) and weights stored as
safetensors (single file or sharded with an index) or torch ``.bin``. Writes the newer config
form and one ``model.safetensors`` that ``transformers.Lfm2ForCausalLM.from_pretrained`` loads.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from lfm2_nas.model import LFM2Model
from lfm2_nas.spec import ATTENTION, CONV, ModelSpec

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# LFM2's tokenizer ids (shared/reference/lfm2.md section 2); written so the folder is complete.
_TOKEN_IDS = {"bos_token_id": 1, "eos_token_id": 7, "pad_token_id": 0}


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be read as an LFM2 model; the message names the problem."""


# ---- config ----------------------------------------------------------------------------------


def spec_from_hf_config(config: dict[str, Any]) -> ModelSpec:
    """The :class:`ModelSpec` of an HF LFM2 ``config.json`` dict (either form)."""
    model_type = config.get("model_type")
    if model_type != "lfm2":
        raise CheckpointError(f"config model_type is {model_type!r}, not 'lfm2': this is not an LFM2 checkpoint")
    try:
        layers = int(config.get("num_hidden_layers", 0))
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
    except KeyError as missing:
        raise CheckpointError(f"config.json lacks required key {missing}") from None
    if config.get("layer_types") is not None:
        layer_types = tuple(config["layer_types"])
        if layers and len(layer_types) != layers:
            raise CheckpointError(
                f"config has {len(layer_types)} layer_types but num_hidden_layers={layers}"
            )
    else:
        # Reference rule: no layer_types and no full_attn_idxs means every layer is attention.
        attn = config.get("full_attn_idxs")
        attn = set(range(layers)) if attn is None else set(attn)
        layer_types = tuple(ATTENTION if i in attn else CONV for i in range(layers))
    rope = config.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        raise CheckpointError(f"rope_type {rope['rope_type']!r} is not supported; only 'default' RoPE")
    head_dim = config.get("head_dim")
    if head_dim is not None and head_dim != hidden // heads:
        raise CheckpointError(f"head_dim {head_dim} differs from hidden_size/num_attention_heads = {hidden // heads}")
    ff_dim = int(config.get("block_ff_dim", config.get("intermediate_size", 12288)))
    tied = config.get("tie_embedding", config.get("tie_word_embeddings", True))
    auto_adjust = bool(config.get("block_auto_adjust_ff_dim", True))
    multiplier = config.get("block_ffn_dim_multiplier", 1.0)
    if auto_adjust and multiplier is None:
        # Reference: without a multiplier the 2/3 rule applies but no rounding; keep that width as given.
        ff_dim, auto_adjust, multiplier = int(2 * ff_dim / 3), False, 1.0
    try:
        return ModelSpec(
            vocab_size=int(config.get("vocab_size", 65536)),
            hidden_size=hidden,
            layer_types=layer_types,
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads", 8)),
            ff_dim=ff_dim,
            auto_adjust_ff_dim=auto_adjust,
            ffn_dim_multiplier=float(multiplier),
            multiple_of=int(config.get("block_multiple_of", 256)),
            conv_kernel=int(config.get("conv_L_cache", 3)),
            conv_bias=bool(config.get("conv_bias", False)),
            norm_eps=float(config.get("norm_eps", 1e-5)),
            rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 1_000_000.0))),
            max_position_embeddings=int(config.get("max_position_embeddings", 128_000)),
            tie_embeddings=bool(tied),
        )
    except ValueError as err:
        raise CheckpointError(f"config.json describes an invalid layout: {err}") from None


def hf_config_from_spec(spec: ModelSpec, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The newer-form HF ``config.json`` dict for ``spec``."""
    return {
        "architectures": ["Lfm2ForCausalLM"],
        "model_type": "lfm2",
        "vocab_size": spec.vocab_size,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.ff_dim,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "layer_types": list(spec.layer_types),
        "block_auto_adjust_ff_dim": spec.auto_adjust_ff_dim,
        "block_ffn_dim_multiplier": spec.ffn_dim_multiplier,
        "block_multiple_of": spec.multiple_of,
        "conv_L_cache": spec.conv_kernel,
        "conv_bias": spec.conv_bias,
        "norm_eps": spec.norm_eps,
        "rope_parameters": {"rope_theta": spec.rope_theta, "rope_type": "default"},
        "max_position_embeddings": spec.max_position_embeddings,
        "tie_word_embeddings": spec.tie_embeddings,
        "use_cache": True,
        "dtype": str(dtype).removeprefix("torch."),
        **_TOKEN_IDS,
    }


def read_config(path: str | os.PathLike[str]) -> ModelSpec:
    """Spec from a checkpoint folder or a ``config.json`` file."""
    path = Path(path)
    file = path / CONFIG_NAME if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(f"no {CONFIG_NAME} at {path}")
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{file} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{file} does not hold a JSON object")
    return spec_from_hf_config(config)


# ---- weights ---------------------------------------------------------------------------------


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = folder / f"{WEIGHTS_NAME}.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            tensors.update(load_file(folder / shard))
        return tensors
    if (folder / WEIGHTS_NAME).is_file():
        return load_file(folder / WEIGHTS_NAME)
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if bins:
        tensors = {}
        for file in bins:
            tensors.update(torch.load(file, map_location="cpu", weights_only=True))
        return tensors
    raise CheckpointError(f"no weights in {folder}: expected {WEIGHTS_NAME}, a sharded index, or pytorch_model.bin")


def load_pretrained(
    path: str | os.PathLike[str], dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> LFM2Model:
    """Load an HF-format LFM2 folder into :class:`LFM2Model` (``dtype`` defaults to float32).

    The weights are copied into freshly allocated parameters, so they live in ordinary process
    memory (not in a memory-mapped file, which reads slower). Missing, unexpected or mis-shaped
    tensors raise :class:`CheckpointError` naming them.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    spec = read_config(folder)
    tensors = _read_weights(folder)
    if spec.tie_embeddings:
        tensors.pop("lm_head.weight", None)  # a tied head may be stored; the embedding is what counts
    model = LFM2Model(spec, dtype=dtype or torch.float32, device=device)
    expected = dict(model.state_dict())
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s), e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s), e.g. {', '.join(unexpected[:3])}")
        raise CheckpointError(f"weights in {folder} do not match its config: " + "; ".join(parts))
    for name, target in expected.items():
        if tuple(tensors[name].shape) != tuple(target.shape):
            raise CheckpointError(
                f"tensor {name} has shape {tuple(tensors[name].shape)}, config implies {tuple(target.shape)}"
            )
    with torch.no_grad():
        for name, target in expected.items():
            target.copy_(tensors[name])
    return model.eval()


def save_pretrained(model: LFM2Model, path: str | os.PathLike[str]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into folder ``path`` (created if needed).

    Each file is written to a temporary name and renamed into place, so an interrupted save never
    leaves a half-written file under the final name. A tied LM head is not stored (as HF does).
    """
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    dtype = model.head_weight.dtype
    _atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(weights, tmp, metadata={"format": "pt"}))
    config_text = json.dumps(hf_config_from_spec(model.spec, dtype), indent=2) + "\n"
    _atomic_write(folder / CONFIG_NAME, lambda tmp: Path(tmp).write_text(config_text))
    return folder


def _atomic_write(target: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
