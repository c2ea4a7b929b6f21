"""Analytic cost model of a layout: parameters, bytes and FLOPs. Pure functions, no torch.

The blocks and caches counted are those of transformers' ``models/lfm2/modeling_lfm2.py``
(``Lfm2Attention``'s K/V, ``Lfm2ShortConv``'s conv state); a peer's attention block (Qwen3, Llama) is
the same GQA block with its own head dim and with or without QK-norm. Notation: h hidden, d head_dim, nh / nkv heads,
K conv kernel, F FFN width, V vocab, b bytes per element, B batch. Every figure here is tested
against the built model (parameters, cache allocation) in ``tests/test_cost.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lfm2_nas.spec import ModelSpec

_DTYPE_BYTES = {
    "float32": 4,
    "fp32": 4,
    "float": 4,
    "bfloat16": 2,
    "bf16": 2,
    "float16": 2,
    "fp16": 2,
    "half": 2,
}


def dtype_bytes(dtype: object) -> int:
    """Bytes per element of ``dtype``: a name (``"bf16"``, ``"float32"``) or a ``torch.dtype``."""
    name = str(dtype).removeprefix("torch.").lower()
    if name not in _DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16")
    return _DTYPE_BYTES[name]


def canonical_dtype(dtype: object) -> str:
    """``"bf16"`` / ``torch.bfloat16`` -> ``"bfloat16"``; the names used in result rows."""
    size = dtype_bytes(dtype)
    name = str(dtype).removeprefix("torch.").lower()
    if size == 4:
        return "float32"
    return "bfloat16" if name in ("bfloat16", "bf16") else "float16"


# ---- parameters ------------------------------------------------------------------------------


def conv_block_params(spec: ModelSpec) -> int:
    """Gated short conv: ``in_proj`` h->3h, ``out_proj`` h->h, depthwise kernel h*K: ``4h^2 + hK``
    (+ ``4h`` biases with ``conv_bias``)."""
    h = spec.hidden_size
    bias = 3 * h + h + h if spec.conv_bias else 0
    return 4 * h * h + h * spec.conv_kernel + bias


def attention_block_params(spec: ModelSpec) -> int:
    """GQA: ``h*(nh*d) + 2*h*(nkv*d) + (nh*d)*h`` projections plus q/k RMSNorm weights ``2d``
    (none without ``qk_norm``, as in Llama)."""
    h, d = spec.hidden_size, spec.head_dim
    return h * spec.num_heads * d * 2 + 2 * h * spec.num_kv_heads * d + (2 * d if spec.qk_norm else 0)


def ffn_params(spec: ModelSpec) -> int:
    """SwiGLU ``w1, w3: h->F``, ``w2: F->h``: ``3hF``."""
    return 3 * spec.hidden_size * spec.ffn_dim


def embedding_params(spec: ModelSpec) -> int:
    """``V*h`` for the embedding, doubled when the LM head is untied."""
    table = spec.vocab_size * spec.hidden_size
    return table if spec.tie_embeddings else 2 * table


def non_embedding_params(spec: ModelSpec) -> int:
    """Every parameter except the embedding table and the LM head (norms included)."""
    h = spec.hidden_size
    per_layer_common = ffn_params(spec) + 2 * h  # FFN + operator_norm + ffn_norm
    blocks = spec.num_conv_layers * conv_block_params(spec) + spec.num_attention_layers * attention_block_params(spec)
    return blocks + spec.num_layers * per_layer_common + h  # + final norm


def param_count(spec: ModelSpec) -> int:
    """Total parameters, the tied embedding counted once (the official counts use this)."""
    return non_embedding_params(spec) + embedding_params(spec)


def weight_bytes(spec: ModelSpec, dtype: object = "float32") -> int:
    """Bytes of all weights at ``dtype``: ``params * b`` (tied embedding stored once)."""
    return param_count(spec) * dtype_bytes(dtype)


# ---- cache -----------------------------------------------------------------------------------


def kv_bytes_per_token(spec: ModelSpec, dtype: object = "float32") -> int:
    """K and V for one token of one sequence: ``2 * n_attn * nkv * d * b``."""
    return 2 * spec.num_attention_layers * spec.num_kv_heads * spec.head_dim * dtype_bytes(dtype)


def kv_cache_bytes(spec: ModelSpec, context: int, batch: int = 1, dtype: object = "float32") -> int:
    """K/V bytes for ``batch`` sequences of ``context`` tokens (linear in context)."""
    return batch * context * kv_bytes_per_token(spec, dtype)


def conv_state_bytes(spec: ModelSpec, batch: int = 1, dtype: object = "float32") -> int:
    """Conv state: the last ``K-1`` columns of ``B*x`` per conv layer, ``n_conv * h * (K-1) * b``
    per sequence, constant in context."""
    return batch * spec.num_conv_layers * spec.hidden_size * (spec.conv_kernel - 1) * dtype_bytes(dtype)


def cache_bytes(spec: ModelSpec, max_len: int, batch: int = 1, dtype: object = "float32") -> int:
    """What the static hybrid cache allocates: K/V for ``max_len`` tokens plus the conv state."""
    return kv_cache_bytes(spec, max_len, batch, dtype) + conv_state_bytes(spec, batch, dtype)


# ---- FLOPs -----------------------------------------------------------------------------------


def matmul_flops_per_token(spec: ModelSpec) -> int:
    """``2 *`` the non-embedding matmul weights (one multiply-add each), the depthwise conv included.

    Ignores norms, RoPE, gating multiplies, SiLU and softmax (O(h) per token, under 1% here).
    """
    h, d = spec.hidden_size, spec.head_dim
    conv = 4 * h * h + h * spec.conv_kernel
    attn = 2 * h * spec.num_heads * d + 2 * h * spec.num_kv_heads * d
    blocks = spec.num_conv_layers * conv + spec.num_attention_layers * attn
    return 2 * (blocks + spec.num_layers * ffn_params(spec))


def attention_flops_per_position(spec: ModelSpec) -> int:
    """Scores ``q.k`` and the weighted sum over V: ``4 * n_attn * nh * d`` per (query, key) pair."""
    return 4 * spec.num_attention_layers * spec.num_heads * spec.head_dim


def lm_head_flops_per_token(spec: ModelSpec) -> int:
    """``2 * V * h`` for each position whose logits are computed."""
    return 2 * spec.vocab_size * spec.hidden_size


def prefill_flops(spec: ModelSpec, tokens: int, batch: int = 1, last_logits_only: bool = True) -> int:
    """Forward FLOPs to prefill ``tokens`` tokens from an empty cache.

    Causal attention: query t attends to t+1 keys, ``tokens*(tokens+1)/2`` pairs in all.
    Logits for the last position only (as a prefill should) unless ``last_logits_only=False``.
    """
    pairs = tokens * (tokens + 1) // 2
    logit_tokens = 1 if last_logits_only else tokens
    per_seq = (
        tokens * matmul_flops_per_token(spec)
        + pairs * attention_flops_per_position(spec)
        + logit_tokens * lm_head_flops_per_token(spec)
    )
    return batch * per_seq


def decode_flops(spec: ModelSpec, context: int, batch: int = 1) -> int:
    """FLOPs of one decode step with ``context`` tokens already cached (the new token attends to
    ``context + 1`` keys), logits included."""
    per_seq = (
        matmul_flops_per_token(spec)
        + (context + 1) * attention_flops_per_position(spec)
        + lm_head_flops_per_token(spec)
    )
    return batch * per_seq


def attention_flops_share(spec: ModelSpec, tokens: int, decode: bool) -> float:
    """Fraction of a phase's FLOPs spent in attention scores and weighted sums: of a decode step with
    ``tokens`` cached (``decode``), or of prefilling ``tokens`` tokens."""
    if decode:
        return (tokens + 1) * attention_flops_per_position(spec) / decode_flops(spec, tokens)
    return tokens * (tokens + 1) // 2 * attention_flops_per_position(spec) / prefill_flops(spec, tokens)


def decode_read_bytes(spec: ModelSpec, context: int, batch: int = 1, dtype: object = "float32") -> int:
    """Bytes one decode step must read from memory at least: every weight once (an untied input
    embedding only reads B rows), the K/V of ``context`` cached tokens and the conv state.

    This is the roofline's numerator: ``decode_read_bytes / bandwidth`` is the fastest possible step.
    """
    b = dtype_bytes(dtype)
    weights = weight_bytes(spec, dtype)
    if not spec.tie_embeddings:
        weights -= (spec.vocab_size - batch) * spec.hidden_size * b
    return weights + kv_cache_bytes(spec, context, batch, dtype) + conv_state_bytes(spec, batch, dtype)


@dataclass(frozen=True)
class CostSummary:
    """The headline analytic figures of a layout at one dtype (what ``variants show`` prints)."""

    params: int
    non_embedding_params: int
    weight_bytes: int
    kv_bytes_per_token: int
    conv_state_bytes: int
    ffn_dim: int
    dtype: str


def summarize(spec: ModelSpec, dtype: object = "float32") -> CostSummary:
    """Headline figures for ``spec`` at ``dtype`` (batch 1)."""
    return CostSummary(
        params=param_count(spec),
        non_embedding_params=non_embedding_params(spec),
        weight_bytes=weight_bytes(spec, dtype),
        kv_bytes_per_token=kv_bytes_per_token(spec, dtype),
        conv_state_bytes=conv_state_bytes(spec, 1, dtype),
        ffn_dim=spec.ffn_dim,
        dtype=canonical_dtype(dtype),
    )
