"""The numbers behind a layout strip: one row per layer of a spec. Needs only the spec (no torch).

Each layer is a pre-norm block: its operator (gated short conv or GQA attention) and a SwiGLU FFN.
The strip shows which operator sits where and what each block costs: parameters of the operator
and of the FFN, and the cache it keeps per sequence (K/V bytes per token for attention, the
constant ``K-1``-column state for conv).
"""

from __future__ import annotations

import pandas as pd

from lfm2_nas import cost
from lfm2_nas.spec import ATTENTION, ModelSpec
from lfm2_nas.units import format_bytes, format_count

STRIP_COLUMNS = [
    "layer", "op", "hidden_size", "ffn_dim", "heads", "kv_heads", "head_dim", "conv_kernel",
    "op_params", "ffn_params", "kv_bytes_per_token", "state_bytes",
]


def layout_strip(spec: ModelSpec, dtype: str = "float32") -> pd.DataFrame:
    """One row per layer: operator (``conv`` / ``attention``), widths, parameters and cache bytes.

    ``kv_bytes_per_token``: K and V of one token in this layer (attention only); ``state_bytes``: the
    conv state of one sequence in this layer (conv only), both at ``dtype``.
    """
    b = cost.dtype_bytes(dtype)
    rows = []
    for index, kind in enumerate(spec.layer_types):
        attention = kind == ATTENTION
        rows.append({
            "layer": index,
            "op": "attention" if attention else "conv",
            "hidden_size": spec.hidden_size,
            "ffn_dim": spec.ffn_dim,
            "heads": spec.num_heads if attention else None,
            "kv_heads": spec.num_kv_heads if attention else None,
            "head_dim": spec.head_dim if attention else None,
            "conv_kernel": None if attention else spec.conv_kernel,
            "op_params": cost.attention_block_params(spec) if attention else cost.conv_block_params(spec),
            "ffn_params": cost.ffn_params(spec),
            "kv_bytes_per_token": 2 * spec.num_kv_heads * spec.head_dim * b if attention else 0,
            "state_bytes": 0 if attention else spec.hidden_size * (spec.conv_kernel - 1) * b,
        })
    return pd.DataFrame(rows, columns=STRIP_COLUMNS)


def layout_caption(name: str, spec: ModelSpec, dtype: str = "float32") -> str:
    """Two lines under a strip's title: size and widths, then the operator mix and cache bytes."""
    summary = cost.summarize(spec, dtype)
    return (
        f"{name}: {format_count(summary.params)} params, hidden {spec.hidden_size}, FFN {spec.ffn_dim}, "
        f"{spec.num_heads} heads / {spec.num_kv_heads} KV (head_dim {spec.head_dim}), conv kernel {spec.conv_kernel}\n"
        f"{spec.num_conv_layers} conv + {spec.num_attention_layers} attention; KV {format_bytes(summary.kv_bytes_per_token)}"
        f"/token, conv state {format_bytes(summary.conv_state_bytes)} ({summary.dtype})"
    )
