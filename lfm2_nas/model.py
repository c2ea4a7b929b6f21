"""LFM2 hybrid language model in plain torch, one file.

Parameter names equal the reference checkpoint's (``model.layers.{i}.conv.in_proj.weight`` ...), so
loading HF weights is a key lookup. Reference: transformers ``models/lfm2/modeling_lfm2.py``.

Every projection goes through :func:`lfm2_nas.kernels.linear`, which picks ``F.linear`` or oneDNN's
linear by the table measured on this machine and stored in its hardware profile (installed by the
profiler's measuring child and the speed benchmark); without an installed table it is ``F.linear``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lfm2_nas.cache import HybridCache
from lfm2_nas.hugepages import allocate_parameters
from lfm2_nas.kernels import linear
from lfm2_nas.spec import ATTENTION, ModelSpec

_INIT_STD = 0.02  # the reference's initializer_range


class Linear(nn.Module):
    """``y = x W^T (+ b)`` with ``W`` of shape ``(out, in)``, no init (see :func:`init_weights`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, dtype=None, device=None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype, device=device)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class RMSNorm(nn.Module):
    """Reference RMSNorm: normalise in fp32, cast back, then scale by the weight."""

    def __init__(self, dim: int, eps: float, dtype=None, device=None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype, device=device))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # rms_norm is one fused kernel on CUDA (fewer launches per decode step); same math as the reference.
        h = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return self.weight * h.to(x.dtype)


def rope_inv_freq(spec: ModelSpec, device: torch.device | str | None = None) -> torch.Tensor:
    """The ``head_dim / 2`` rotary frequencies (fp32): ``theta^(-2i/d)``, then, with
    ``spec.rope_scaling``, Llama 3's rescaling (transformers ``modeling_rope_utils._compute_llama3_parameters``)."""
    d = spec.head_dim
    inv_freq = 1.0 / (spec.rope_theta ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d))
    scaling = spec.rope_scaling
    if scaling is None:
        return inv_freq
    old_context = scaling.original_max_position_embeddings
    low_freq_wavelen = old_context / scaling.low_freq_factor
    high_freq_wavelen = old_context / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (old_context / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return torch.where(medium, smoothed, scaled)


def rope_tables(spec: ModelSpec, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin ``(T, head_dim)`` for absolute ``positions``; computed in fp32 like the reference."""
    inv_freq = rope_inv_freq(spec, positions.device)
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class ShortConv(nn.Module):
    """Gated short convolution: ``B, C, x = in_proj(h)``; ``y = C * conv(B * x)``; ``out_proj(y)``."""

    def __init__(self, spec: ModelSpec, dtype=None, device=None) -> None:
        super().__init__()
        h, k = spec.hidden_size, spec.conv_kernel
        self.in_proj = Linear(h, 3 * h, spec.conv_bias, dtype, device)
        self.out_proj = Linear(h, h, spec.conv_bias, dtype, device)
        self.conv = DepthwiseConv(h, k, spec.conv_bias, dtype, device)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        # x: (B, T, h); state: (B, h, K-1) or None
        b, c, u = self.in_proj(x).chunk(3, dim=-1)  # each (B, T, h)
        bx = (b * u).transpose(1, 2)  # (B, h, T)
        y = self.conv(bx, state).transpose(1, 2)  # (B, T, h)
        return self.out_proj(c * y)


class DepthwiseConv(nn.Module):
    """Causal depthwise conv over time; weight ``(h, 1, K)`` as in ``nn.Conv1d(groups=h)``."""

    def __init__(self, channels: int, kernel: int, bias: bool, dtype=None, device=None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.empty(channels, dtype=dtype, device=device)) if bias else None

    def forward(self, x: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        # x: (B, h, T). With a state, it holds the K-1 inputs before x and is updated in place.
        kernel = self.weight.shape[-1]
        tokens = x.shape[-1]
        if state is None:
            return F.conv1d(x, self.weight, self.bias, padding=kernel - 1, groups=x.shape[1])[..., :tokens]
        window = torch.cat((state, x), dim=-1)  # (B, h, K-1+T)
        state.copy_(window[..., -(kernel - 1) :])
        if tokens == 1:  # decode: one dot product of length K per channel
            out = (window * self.weight[:, 0]).sum(-1, keepdim=True)
            return out if self.bias is None else out + self.bias[:, None]
        return F.conv1d(window, self.weight, self.bias, groups=x.shape[1])


class Attention(nn.Module):
    """GQA with per-head RMSNorm on q and k before RoPE (unless ``spec.qk_norm`` is off, as in
    Llama); SDPA for the product, scaled by ``head_dim^-0.5``."""

    def __init__(self, spec: ModelSpec, dtype=None, device=None) -> None:
        super().__init__()
        h, d = spec.hidden_size, spec.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = spec.num_heads, spec.num_kv_heads, d
        self.q_proj = Linear(h, spec.num_heads * d, dtype=dtype, device=device)
        self.k_proj = Linear(h, spec.num_kv_heads * d, dtype=dtype, device=device)
        self.v_proj = Linear(h, spec.num_kv_heads * d, dtype=dtype, device=device)
        self.out_proj = Linear(spec.num_heads * d, h, dtype=dtype, device=device)
        self.q_layernorm = RMSNorm(d, spec.norm_eps, dtype, device) if spec.qk_norm else nn.Identity()
        self.k_layernorm = RMSNorm(d, spec.norm_eps, dtype, device) if spec.qk_norm else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        cache: HybridCache | None,
        layer: int,
    ) -> torch.Tensor:
        bsz, tokens, _ = x.shape
        q = self.q_layernorm(self.q_proj(x).view(bsz, tokens, self.num_heads, self.head_dim)).transpose(1, 2)
        k = self.k_layernorm(self.k_proj(x).view(bsz, tokens, self.num_kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(bsz, tokens, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = _apply_rope(q, cos, sin), _apply_rope(k, cos, sin)  # (B, heads, T, d)
        if cache is None:
            mask, causal = None, tokens > 1
        else:
            k, v, mask, causal = cache.update_kv(layer, k, v)
        out = _sdpa_gqa(q, k, v, mask, causal)  # (B, heads, T, d)
        return self.out_proj(out.transpose(1, 2).reshape(bsz, tokens, -1))


def _sdpa_gqa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool
) -> torch.Tensor:
    """SDPA where ``q`` has ``g`` times the heads of ``k``/``v`` (query head j uses kv head j // g)."""
    bsz, heads, tokens, d = q.shape
    kv_heads = k.shape[1]
    if tokens == 1:
        # One query per head: fold each group's queries into the sequence axis of its kv head,
        # so K/V are read once per kv head and never expanded. A mask (1, S) broadcasts over them.
        group = heads // kv_heads
        out = F.scaled_dot_product_attention(q.view(bsz, kv_heads, group, d), k, v, attn_mask=mask)
        return out.view(bsz, heads, 1, d)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=heads != kv_heads)


class SwiGLU(nn.Module):
    """``w2(silu(w1 x) * w3 x)``."""

    def __init__(self, hidden: int, width: int, dtype=None, device=None) -> None:
        super().__init__()
        self.w1 = Linear(hidden, width, dtype=dtype, device=device)
        self.w3 = Linear(hidden, width, dtype=dtype, device=device)
        self.w2 = Linear(width, hidden, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class DecoderLayer(nn.Module):
    """Pre-norm block: ``h = x + op(operator_norm(x))``; ``out = h + ffn(ffn_norm(h))``."""

    def __init__(self, spec: ModelSpec, index: int, dtype=None, device=None) -> None:
        super().__init__()
        self.index = index
        self.is_attention = spec.layer_types[index] == ATTENTION
        if self.is_attention:
            self.self_attn = Attention(spec, dtype, device)
        else:
            self.conv = ShortConv(spec, dtype, device)
        self.feed_forward = SwiGLU(spec.hidden_size, spec.ffn_dim, dtype, device)
        self.operator_norm = RMSNorm(spec.hidden_size, spec.norm_eps, dtype, device)
        self.ffn_norm = RMSNorm(spec.hidden_size, spec.norm_eps, dtype, device)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cache: HybridCache | None
    ) -> torch.Tensor:
        normed = self.operator_norm(x)
        if self.is_attention:
            h = x + self.self_attn(normed, rope, cache, self.index)
        else:
            h = x + self.conv(normed, None if cache is None else cache.conv_state(self.index))
        return h + self.feed_forward(self.ffn_norm(h))


class Backbone(nn.Module):
    """Embedding, the layer stack and the final norm (``model.*`` in the checkpoint)."""

    def __init__(self, spec: ModelSpec, dtype=None, device=None) -> None:
        super().__init__()
        self.embed_tokens = nn.Module()
        self.embed_tokens.weight = nn.Parameter(torch.empty(spec.vocab_size, spec.hidden_size, dtype=dtype, device=device))
        self.layers = nn.ModuleList(DecoderLayer(spec, i, dtype, device) for i in range(spec.num_layers))
        # The reference calls the final norm "embedding_norm".
        self.embedding_norm = RMSNorm(spec.hidden_size, spec.norm_eps, dtype, device)


class LFM2Model(nn.Module):
    """LFM2 causal LM for a :class:`ModelSpec`.

    ``model(input_ids)`` returns logits ``(B, T, V)`` for every position. With a
    :class:`HybridCache` the tokens continue the cached sequences (positions from the cache) and the
    cache is advanced; ``last_only=True`` computes logits for the last position only ``(B, 1, V)``.
    """

    def __init__(self, spec: ModelSpec, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.model = Backbone(spec, dtype, device)
        self.lm_head = None if spec.tie_embeddings else Linear(spec.hidden_size, spec.vocab_size, dtype=dtype, device=device)

    @property
    def head_weight(self) -> torch.Tensor:
        """``(V, h)`` LM-head weight (the embedding table when tied)."""
        return self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def forward(
        self, input_ids: torch.Tensor, cache: HybridCache | None = None, last_only: bool = False
    ) -> torch.Tensor:
        # input_ids: (B, T) int64
        tokens = input_ids.shape[1]
        x = F.embedding(input_ids, self.model.embed_tokens.weight)  # (B, T, h)
        positions = torch.arange(tokens, device=x.device) if cache is None else cache.positions(tokens)
        rope = rope_tables(self.spec, positions, x.dtype)
        for layer in self.model.layers:
            x = layer(x, rope, cache)
        if cache is not None:
            cache.advance(tokens)
        if last_only:
            x = x[:, -1:]
        return linear(self.model.embedding_norm(x), self.head_weight)

    def new_cache(self, batch: int, max_len: int, static: bool = False) -> HybridCache:
        """A cache matching this model's spec, dtype and device."""
        weight = self.model.embed_tokens.weight
        return HybridCache(self.spec, batch, max_len, weight.dtype, weight.device, static=static)


@torch.no_grad()
def init_weights(model: LFM2Model, seed: int = 0) -> LFM2Model:
    """Random init like the reference: N(0, 0.02) for projections, embeddings and conv kernels;
    norms at one; biases at zero. Deterministic for a given ``seed``."""
    generator = torch.Generator(device=model.head_weight.device).manual_seed(seed)
    for name, param in model.named_parameters():
        if name.endswith("norm.weight"):
            param.fill_(1.0)
        elif name.endswith("bias"):
            param.zero_()
        else:
            param.normal_(0.0, _INIT_STD, generator=generator)
    return model


def build_model(
    spec: ModelSpec,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> LFM2Model:
    """A randomly initialised model for ``spec`` at ``dtype`` on ``device`` (weights in huge pages on
    a Linux CPU, see :mod:`lfm2_nas.hugepages`)."""
    model = allocate_parameters(LFM2Model(spec, dtype=dtype or torch.float32, device="meta"), device)
    return init_weights(model, seed).eval()
