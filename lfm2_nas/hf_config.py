"""HF ``config.json`` (``model_type: lfm2``) <-> :class:`ModelSpec`. No torch here.

Reads both forms of the reference config: the older one (``full_attn_idxs``, ``block_ff_dim``,
``tie_embedding``, top-level ``rope_theta``) and the newer one (``layer_types``,
``intermediate_size`` holding the pre-adjust width, ``rope_parameters``). A key that is absent takes
the value ``transformers.Lfm2Config`` would give it, so a config loads here as it loads there.
Writes the newer form.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lfm2_nas.cost import canonical_dtype
from lfm2_nas.spec import ATTENTION, CONV, ModelSpec

CONFIG_NAME = "config.json"
# LFM2's tokenizer ids (the LiquidAI/LFM2-350M model card's config.json); written so the folder is complete.
_TOKEN_IDS = {"bos_token_id": 1, "eos_token_id": 7, "pad_token_id": 0}
# transformers.Lfm2Config's defaults (5.24) for keys a config file leaves out.
_HF_DEFAULTS: dict[str, Any] = {
    "vocab_size": 65536,
    "hidden_size": 2560,
    "intermediate_size": 12288,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 128_000,
    "norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "conv_bias": False,
    "conv_L_cache": 3,
    "block_multiple_of": 256,
    "block_ffn_dim_multiplier": 1.0,
    "block_auto_adjust_ff_dim": True,
    "rope_theta": 1_000_000.0,
}


class CheckpointError(ValueError):
    """A checkpoint or config that cannot be read as an LFM2 model; the message names the problem."""


def spec_from_hf_config(config: dict[str, Any]) -> ModelSpec:
    """The :class:`ModelSpec` of an HF LFM2 ``config.json`` dict (either form).

    Raises :class:`CheckpointError` for another ``model_type``, a non-default RoPE, a ``head_dim``
    other than ``hidden_size / num_attention_heads``, or values that make no valid layout.
    """
    model_type = config.get("model_type")
    if model_type != "lfm2":
        raise CheckpointError(f"config model_type is {model_type!r}, not 'lfm2': this is not an LFM2 checkpoint")
    try:
        return _spec_from_values(config)
    except CheckpointError:
        raise
    except (AttributeError, TypeError, ValueError) as err:  # wrong value types in the file
        raise CheckpointError(f"config describes no valid LFM2 layout: {err}") from None


def _get(config: dict[str, Any], *keys: str) -> Any:
    """The first of ``keys`` that ``config`` sets (not null), else transformers' default for the last."""
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return _HF_DEFAULTS[keys[-1]]


def _spec_from_values(config: dict[str, Any]) -> ModelSpec:
    hidden, heads = int(_get(config, "hidden_size")), int(_get(config, "num_attention_heads"))
    if config.get("layer_types") is not None:
        layer_types = tuple(config["layer_types"])
        layers = config.get("num_hidden_layers")
        if layers is not None and len(layer_types) != int(layers):
            raise CheckpointError(f"config has {len(layer_types)} layer_types but num_hidden_layers={layers}")
    else:
        # Reference rule: no layer_types and no full_attn_idxs means every layer is attention.
        layers = int(_get(config, "num_hidden_layers"))
        attention = config.get("full_attn_idxs")
        attention = set(range(layers)) if attention is None else {int(i) for i in attention}
        layer_types = tuple(ATTENTION if i in attention else CONV for i in range(layers))
    rope = config.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        raise CheckpointError(f"rope_type {rope['rope_type']!r} is not supported; only 'default' RoPE")
    head_dim = config.get("head_dim")
    if head_dim is not None and heads and int(head_dim) != hidden // heads:
        raise CheckpointError(f"head_dim {head_dim} differs from hidden_size/num_attention_heads = {hidden // heads}")
    # The older names win over the newer ones, as in Lfm2Config.__post_init__.
    ff_dim = int(_get(config, "block_ff_dim", "intermediate_size"))
    tied = _get(config, "tie_embedding", "tie_word_embeddings")
    auto_adjust = bool(_get(config, "block_auto_adjust_ff_dim"))
    multiplier = config.get("block_ffn_dim_multiplier", 1.0)
    if auto_adjust and multiplier is None:
        # Reference: without a multiplier the 2/3 rule applies but no rounding; keep that width as given.
        ff_dim, auto_adjust, multiplier = int(2 * ff_dim / 3), False, 1.0
    theta = _get({"rope_theta": config.get("rope_theta"), **rope}, "rope_theta")  # rope_parameters wins
    return ModelSpec(
        vocab_size=int(_get(config, "vocab_size")),
        hidden_size=hidden,
        layer_types=layer_types,
        num_heads=heads,
        num_kv_heads=int(_get(config, "num_key_value_heads")),
        ff_dim=ff_dim,
        auto_adjust_ff_dim=auto_adjust,
        ffn_dim_multiplier=float(multiplier),
        multiple_of=int(_get(config, "block_multiple_of")),
        conv_kernel=int(_get(config, "conv_L_cache")),
        conv_bias=bool(_get(config, "conv_bias")),
        norm_eps=float(_get(config, "norm_eps")),
        rope_theta=float(theta),
        max_position_embeddings=int(_get(config, "max_position_embeddings")),
        tie_embeddings=bool(tied),
    )


def hf_config_from_spec(spec: ModelSpec, dtype: object = "float32") -> dict[str, Any]:
    """The newer-form HF ``config.json`` dict for ``spec`` (``dtype``: a name or a ``torch.dtype``).

    Raises :class:`CheckpointError` for a spec using a peer model's attention (an explicit head dim,
    no QK-norm, Llama 3 RoPE scaling): an LFM2 config this module reads back cannot express it.
    """
    peer = {
        "attn_head_dim": spec.attn_head_dim is not None,
        "qk_norm=False": not spec.qk_norm,
        "rope_scaling": spec.rope_scaling is not None,
    }
    if any(peer.values()):
        used = ", ".join(name for name, on in peer.items() if on)
        raise CheckpointError(f"an LFM2 config.json cannot express {used} (peer-model attention): use --format gguf or pte")
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
        "dtype": canonical_dtype(dtype),
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
