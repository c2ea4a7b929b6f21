"""Write an :class:`~lfm2_nas.model.LFM2Model` as an f32 GGUF file that llama.cpp loads (needs only ``gguf``).

What llama.cpp's ``lfm2`` loader reads (``src/models/lfm2.cpp``, ``src/llama-model.cpp``
``load_hparams``, key and tensor names from ``src/llama-arch.cpp``; the same choices as
``conversion/lfm2.py`` in llama.cpp's HF converter):

* layer types are not stored by name: a layer with ``attention.head_count_kv == 0`` is a short-conv
  layer, so ``head_count_kv`` is written per layer (``num_kv_heads`` or 0);
* ``shortconv.l_cache`` is the conv kernel size K; the conv weight ``(h, 1, K)`` is stored squeezed to
  ``(h, K)`` (ggml ``{K, h}``);
* the final norm is stored as ``token_embd_norm`` (llama.cpp keeps the name of its first converter);
* ``output.weight`` only when the head is untied; otherwise llama.cpp reuses ``token_embd``;
* ``attention.key_length`` / ``value_length`` and ``rope.dimension_count`` hold the head dim, which
  need not be ``hidden / heads`` (Qwen3; ``load_hparams`` reads them, as the HF converter writes them).

Layouts without conv layers are written in the architecture of the model whose blocks they have, so
that they run the kernels a real checkpoint of it would: with QK-norm ``qwen3`` (``src/models/qwen3.cpp``:
per-head RMSNorm on q and k, then NeoX RoPE), without it ``llama`` (``src/models/llama.cpp``). The
``llama`` graph rotates adjacent pairs (``LLAMA_ROPE_TYPE_NORM``, ``llama_model_rope_type``), so the
rows of q and k are reordered as ``LlamaModel.permute`` in llama.cpp's ``convert_hf_to_gguf.py`` does
(q . k is unchanged); Llama 3's RoPE scaling is the ``rope_freqs`` tensor of per-frequency divisors that
the same converter writes and the ``llama`` graph passes to ``ggml_rope_ext``. Neither ``lfm2`` nor
``qwen3`` reads ``rope_freqs``, and ``lfm2`` requires the q/k norms and sizes q by the width
(``heads x head_dim = hidden``): other combinations raise :class:`ExportError`.

Layouts with one block type only. llama.cpp builds graph inputs for every part of a model's memory
and writes them before each decode; an input no layer uses is never allocated, and writing it
aborts the process with ``GGML_ASSERT`` (ggml-backend.cpp):

* an ``lfm2`` file without conv layers dies on the recurrent ``s_copy`` input
  (``llm_graph_input_mem_hybrid::set_input``, ``src/llama-graph.cpp``): a second reason to write
  all-attention layouts as ``qwen3`` or ``llama`` (above), whose memory is a plain KV cache.
  Measured here: the same weights give the torch model's logits in both.
* an ``lfm2`` file without attention layers dies on the KV ``k_idxs`` input, and, with the KV inputs
  skipped (the interleaved-SWA hybrid memory does that), on the token-position input that only
  attention's RoPE reads (``llm_graph_input_pos::set_input``). No architecture of this llama.cpp
  runs short-conv blocks alone, so an all-conv layout raises :class:`ExportError`.

Tokenizer: none. ``tokenizer.ggml.model = "none"`` with ``<arch>.vocab_size`` makes llama.cpp create
that many dummy tokens (``src/llama-vocab.cpp``, ``LLAMA_VOCAB_TYPE_NONE``): token ids are accepted
and logits cover the vocabulary, and no text tokenizer pretends to belong to random weights.
Timing does not depend on the tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lfm2_nas.runtimes import QUANTS as REGISTRY_QUANTS
from lfm2_nas.runtimes.base import ExportError
from lfm2_nas.spec import ATTENTION, ModelSpec

if TYPE_CHECKING:  # torch is imported where weights are written, not by the profiler's parent process
    import torch

    from lfm2_nas.model import LFM2Model

#: Weight formats of a GGUF this module's users can ask for; f32 is written here, the others by
#: llama.cpp's own quantizer from the f32 file.
QUANTS = REGISTRY_QUANTS["llamacpp"]
#: Row block of the 32-element block formats (``ggml_blck_size``): every matmul weight's input width
#: must be a multiple, else llama.cpp's quantizer silently falls back to another type for that tensor.
_BLOCK = {"q8_0": 32, "q4_0": 32}


def gguf_arch(spec: ModelSpec) -> str:
    """``"lfm2"``; for a layout without conv layers ``"qwen3"`` with QK-norm, ``"llama"`` without
    (see module docstring)."""
    if spec.num_conv_layers:
        return "lfm2"
    return "qwen3" if spec.qk_norm else "llama"


def check_exportable(spec: ModelSpec, quant: str, max_len: int) -> None:
    """Raise :class:`ExportError` (one line) for what a llama.cpp GGUF cannot represent."""
    if quant not in QUANTS:
        raise ExportError(f"llamacpp has no quantization {quant!r}; choose one of {', '.join(QUANTS)}")
    if not spec.num_attention_layers:
        raise ExportError(
            "llamacpp: a layout without attention layers cannot run in llama.cpp 0.3.36: its lfm2 graph leaves the "
            "unused position input unallocated and aborts (llm_graph_input_pos::set_input, src/llama-graph.cpp)"
        )
    if spec.conv_bias:
        raise ExportError(
            "llamacpp: conv_bias=True cannot be exported: llama.cpp's lfm2 graph has no conv or projection "
            "bias tensors (src/models/lfm2.cpp)"
        )
    arch = gguf_arch(spec)
    if arch == "lfm2" and not spec.qk_norm:
        raise ExportError(
            "llamacpp: a layout with conv layers needs qk_norm: llama.cpp's lfm2 graph requires the q/k norm "
            "tensors (src/models/lfm2.cpp)"
        )
    if arch == "lfm2" and spec.num_heads * spec.head_dim != spec.hidden_size:
        raise ExportError(
            f"llamacpp: a layout with conv layers needs heads x head_dim = hidden_size ({spec.num_heads} x "
            f"{spec.head_dim} != {spec.hidden_size}): llama.cpp's lfm2 graph sizes q by the width (src/models/lfm2.cpp)"
        )
    if arch != "llama" and spec.rope_scaling is not None:
        raise ExportError(
            f"llamacpp: rope_scaling needs the llama architecture (all attention, no qk_norm): the {arch} graph "
            f"reads no rope_freqs (src/models/{arch}.cpp)"
        )
    if not 1 <= max_len <= spec.max_position_embeddings:
        raise ExportError(
            f"llamacpp: max_len {max_len} must be in 1..max_position_embeddings ({spec.max_position_embeddings})"
        )
    block = _BLOCK.get(quant)
    if block:
        widths = {"hidden_size": spec.hidden_size, "FFN width": spec.ffn_dim}
        if spec.num_attention_layers:
            widths["attention width (heads x head_dim)"] = spec.num_heads * spec.head_dim
        bad = [f"{name} {width}" for name, width in widths.items() if width % block]
        if bad:
            raise ExportError(
                f"llamacpp: {quant} quantizes rows in blocks of {block}: {', '.join(bad)} not a multiple of {block}"
            )


def _pairs_adjacent(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """q or k rows from rotate-half order to the adjacent pairs of llama.cpp's ``llama`` RoPE:
    ``LlamaModel.permute`` of ``convert_hf_to_gguf.py``."""
    rows, cols = weight.shape
    return weight.reshape(heads, 2, rows // heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def _rope_freq_divisors(spec: ModelSpec) -> torch.Tensor:
    """``rope_freqs``: what each plain RoPE frequency is divided by under ``spec.rope_scaling``."""
    from lfm2_nas.model import rope_inv_freq

    return rope_inv_freq(spec.replace(rope_scaling=None)) / rope_inv_freq(spec)


def _tensors(model: LFM2Model, arch: str) -> Iterator[tuple[str, torch.Tensor]]:
    """``(gguf name, tensor)`` in file order; tensors keep the torch ``(out, in)`` layout, which is
    ggml's ``{in, out}``."""
    spec = model.spec
    backbone = model.model
    yield "token_embd.weight", backbone.embed_tokens.weight
    yield ("token_embd_norm.weight" if arch == "lfm2" else "output_norm.weight"), backbone.embedding_norm.weight
    if model.lm_head is not None:
        yield "output.weight", model.lm_head.weight
    if spec.rope_scaling is not None:
        yield "rope_freqs.weight", _rope_freq_divisors(spec)
    for i, layer in enumerate(backbone.layers):
        blk = f"blk.{i}"
        yield f"{blk}.attn_norm.weight", layer.operator_norm.weight
        if spec.layer_types[i] == ATTENTION:
            attn = layer.self_attn
            q, k = attn.q_proj.weight, attn.k_proj.weight
            if arch == "llama":
                q, k = _pairs_adjacent(q, spec.num_heads), _pairs_adjacent(k, spec.num_kv_heads)
            yield f"{blk}.attn_q.weight", q
            yield f"{blk}.attn_k.weight", k
            yield f"{blk}.attn_v.weight", attn.v_proj.weight
            yield f"{blk}.attn_output.weight", attn.out_proj.weight
            if spec.qk_norm:
                yield f"{blk}.attn_q_norm.weight", attn.q_layernorm.weight
                yield f"{blk}.attn_k_norm.weight", attn.k_layernorm.weight
        else:
            conv = layer.conv
            yield f"{blk}.shortconv.in_proj.weight", conv.in_proj.weight
            yield f"{blk}.shortconv.conv.weight", conv.conv.weight.squeeze(1)
            yield f"{blk}.shortconv.out_proj.weight", conv.out_proj.weight
        yield f"{blk}.ffn_norm.weight", layer.ffn_norm.weight
        yield f"{blk}.ffn_gate.weight", layer.feed_forward.w1.weight
        yield f"{blk}.ffn_up.weight", layer.feed_forward.w3.weight
        yield f"{blk}.ffn_down.weight", layer.feed_forward.w2.weight


def write_f32_gguf(model: LFM2Model, path: Path, name: str) -> str:
    """Write ``model`` as an f32 GGUF at ``path``; return the architecture written.

    Tensors are streamed one at a time (header and tensor index first), so writing holds at most one
    converted tensor besides the model.
    """
    import gguf
    import torch

    spec = model.spec
    arch = gguf_arch(spec)
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(spec.max_position_embeddings)
    writer.add_embedding_length(spec.hidden_size)
    writer.add_block_count(spec.num_layers)
    writer.add_feed_forward_length(spec.ffn_dim)
    writer.add_head_count(spec.num_heads)
    writer.add_key_length(spec.head_dim)
    writer.add_value_length(spec.head_dim)
    writer.add_rope_dimension_count(spec.head_dim)
    if arch == "lfm2":
        writer.add_head_count_kv([spec.num_kv_heads if t == ATTENTION else 0 for t in spec.layer_types])
        writer.add_shortconv_l_cache(spec.conv_kernel)
    else:
        writer.add_head_count_kv(spec.num_kv_heads)
    writer.add_rope_freq_base(spec.rope_theta)
    writer.add_layer_norm_rms_eps(spec.norm_eps)
    writer.add_vocab_size(spec.vocab_size)
    writer.add_tokenizer_model("none")
    with torch.no_grad():
        for tensor_name, tensor in _tensors(model, arch):
            writer.add_tensor_info(tensor_name, tuple(tensor.shape), np.dtype(np.float32), tensor.numel() * 4)
        writer.write_header_to_file(path)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _, tensor in _tensors(model, arch):
            writer.write_tensor_data(tensor.detach().to("cpu", torch.float32).contiguous().numpy())
    writer.close()
    return arch


def tensor_types(path: Path) -> dict[str, str]:
    """``gguf tensor name -> ggml type name`` (``"F32"``, ``"Q4_0"``, ``"Q6_K"`` ...) as stored in ``path``."""
    import gguf

    reader = gguf.GGUFReader(path)
    return {t.name: t.tensor_type.name for t in reader.tensors}
