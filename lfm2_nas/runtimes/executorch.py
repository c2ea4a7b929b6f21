"""ExecuTorch runtime: a layout as a ``.pte`` program lowered to the XNNPACK backend.

The program is exported from OUR model (:func:`lfm2_nas.model.build_model` or
:func:`lfm2_nas.checkpoint.load_pretrained`), not from ExecuTorch's ``export_llm`` example flow,
whose LFM2 short-conv block hard-codes kernel 3 and one FFN width
(``examples/models/lfm2/short_conv.py`` in pytorch/executorch). One method, ``forward``:

    forward(tokens int64[1, T], input_pos int64[1], conv_state float32[n_conv, hidden, K-1])
        -> (logits float32[1, vocab], conv_state float32[n_conv, hidden, K-1])

runs ``T`` tokens (``1 <= T <= max_len``, a dynamic dimension sized to the cache) at positions
``input_pos .. input_pos+T-1`` and returns the last one's logits. Attention state lives inside the
program: per attention layer a K and a V buffer ``[1, max_len, kv_heads, head_dim]``, written at
``input_pos`` by ExecuTorch's ``llama::update_cache`` and read by ``llama::custom_sdpa`` (causal
from ``input_pos``, GQA without expanding K/V; ``extension/llm/custom_ops/custom_ops.py``); an
entry past the current position is never read, so rewinding K/V is choosing ``input_pos``. The
conv state (the last ``K-1`` inputs ``B*x`` of each conv layer) is an input and an output instead
of a buffer: in-program it is not positional, so after a rewind it would still hold the inputs of
the abandoned positions. Passing it makes a prompt start from zeros and a rewind exact (the
session keeps the states it may return to, 80 KiB each for LFM2-350M). A layout without conv
layers has neither: ``forward(tokens, input_pos) -> logits``, the signature ExecuTorch's LLM
runner calls, and the program carries the runner's metadata methods (``get_max_seq_len`` ...).

``8da4w`` is the example's XNNPACK scheme (``examples/models/llama/source_transformation/
quantize.py``, ``qmode="8da4w"``): torchao ``Int8DynamicActivationIntxWeightConfig``, int4 weights
in groups of 128 along the input dimension, on every linear whose input width the group divides
(the LM head included; the embedding stays fp32, as the example's XNNPACK config leaves it). So
that narrow layouts are quantized too, a linear whose width 128 does not divide uses the largest of
64 / 32 that does, and stays fp32 when none does; ``Artifact.details`` counts both. One difference:
the weight scales are each group's absmax (torchao's ``affine`` choice, :data:`WEIGHT_QPARAMS`),
where the example fits them with HQQ (``hqq_scale_only``), an iterative search that made most of
the quantization time; the 8da4w-vs-fp32 thresholds of ``tests/test_runtime_executorch.py`` hold
with either.

Running a ``.pte`` needs ExecuTorch's LLM custom ops registered in the process: :meth:`load`
imports ``executorch.extension.llm.custom_ops.custom_ops`` first.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lfm2_nas.runtimes import INSTALL, QUANTS, installed_version
from lfm2_nas.runtimes.base import Artifact, ExportError, LoadError, RuntimeUnavailable
from lfm2_nas.spec import ModelSpec

#: The 8da4w group size of ExecuTorch's llama example (its default when none is given), then the
#: fallbacks for linears whose input width it does not divide.
GROUP_SIZES = (128, 64, 32)
_METHOD = "forward"
#: torchao's choice of the int4 weight scales: ``affine`` (symmetric, each group's absmax / 7.5,
#: ``choose_qparams_affine`` in torchao/quantization/quant_primitives.py), not the example's
#: ``hqq_scale_only``, whose iterative fit took 34.6 s of LFM2-350M's quantization (absmax: 2-3 s).
WEIGHT_QPARAMS = "affine"


def _import_executorch() -> Any:
    try:
        import executorch
        from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401  registers llama::custom_sdpa, update_cache
    except ImportError as err:
        raise RuntimeUnavailable(
            f"the executorch runtime needs the 'executorch' package ({err}); install it with: {ExecuTorchRuntime.install_hint}"
        ) from None
    return executorch


def _exportable(model: Any, max_len: int) -> Any:
    """An export-friendly ``nn.Module`` over ``model``'s weights (shared, not copied); see module docstring."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from lfm2_nas.model import rope_inv_freq

    spec: ModelSpec = model.spec
    h, d, eps = spec.hidden_size, spec.head_dim, spec.norm_eps

    def linear(weight: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Linear:
        # nn.Linear so that torchao's quantize_ finds it; the weight is a view of the model's.
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        layer.weight = nn.Parameter(weight.detach(), requires_grad=False)
        if bias is not None:
            layer.bias = nn.Parameter(bias.detach(), requires_grad=False)
        return layer

    def rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # The reference's RMSNorm. XNNPACK takes a mean only over the two inner dims of a 4-D tensor
        # (its global average pooling, backends/xnnpack/partition/config/generic_node_configs.py), so
        # the mean over the last dim is written that way: the norm stays inside the delegate.
        shape = x.shape
        square = x.pow(2).reshape(-1, 1, 1, shape[-1])
        mean = square.mean((2, 3), keepdim=True).reshape(*shape[:-1], 1)
        return weight * (x * torch.rsqrt(mean + eps))

    # rotate_half(x) = cat(-x2, x1) as a product with a constant signed permutation: XNNPACK does
    # not take a cat of dynamic-shape tensors, and each op it leaves out splits the delegate.
    half = d // 2
    rotate = torch.zeros(d, d)
    rotate[torch.arange(half), torch.arange(half) + half] = -1.0
    rotate[torch.arange(half) + half, torch.arange(half)] = 1.0

    def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        return x * cos + F.linear(x, rotation) * sin

    class Conv(nn.Module):
        def __init__(self, layer: Any) -> None:
            super().__init__()
            conv = layer.conv
            # Separate B, C, x projections, as ExecuTorch's LFM2 example does (same rows as in_proj).
            b_w, c_w, x_w = conv.in_proj.weight.chunk(3, dim=0)
            b_b, c_b, x_b = conv.in_proj.bias.chunk(3) if conv.in_proj.bias is not None else (None,) * 3
            self.b_proj, self.c_proj, self.x_proj = linear(b_w, b_b), linear(c_w, c_b), linear(x_w, x_b)
            self.out_proj = linear(conv.out_proj.weight, conv.out_proj.bias)
            self.kernel = nn.Parameter(conv.conv.weight.detach(), requires_grad=False)  # (h, 1, K)
            self.kernel_bias = (
                None if conv.conv.bias is None else nn.Parameter(conv.conv.bias.detach(), requires_grad=False)
            )

        def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # state: (1, h, K-1), the inputs B*x of the K-1 positions before x; returned updated.
            bx = (self.b_proj(x) * self.x_proj(x)).transpose(1, 2)  # (1, h, T)
            window = torch.cat((state, bx), dim=-1)  # (1, h, K-1+T)
            y = F.conv1d(window, self.kernel, self.kernel_bias, groups=h).transpose(1, 2)  # (1, T, h)
            return self.out_proj(self.c_proj(x) * y), window[..., -(spec.conv_kernel - 1) :]

    class Attn(nn.Module):
        def __init__(self, layer: Any) -> None:
            super().__init__()
            attn = layer.self_attn
            self.q_proj, self.k_proj = linear(attn.q_proj.weight), linear(attn.k_proj.weight)
            self.v_proj, self.out_proj = linear(attn.v_proj.weight), linear(attn.out_proj.weight)
            # No q/k norm without spec.qk_norm (Llama); the model's are then identities without weights.
            self.q_norm = nn.Parameter(attn.q_layernorm.weight.detach(), requires_grad=False) if spec.qk_norm else None
            self.k_norm = nn.Parameter(attn.k_layernorm.weight.detach(), requires_grad=False) if spec.qk_norm else None
            shape = (1, max_len, spec.num_kv_heads, d)
            self.register_buffer("rotate", rotate.clone(), persistent=False)
            self.register_buffer("k_cache", torch.zeros(shape))
            self.register_buffer("v_cache", torch.zeros(shape))

        def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start: int) -> torch.Tensor:
            tokens = x.shape[1]
            # (1, T, heads, d): the layout of the custom ops.
            q = self.q_proj(x).view(1, tokens, spec.num_heads, d)
            k = self.k_proj(x).view(1, tokens, spec.num_kv_heads, d)
            if spec.qk_norm:
                q, k = rms_norm(q, self.q_norm), rms_norm(k, self.k_norm)
            q, k = rope(q, cos, sin, self.rotate), rope(k, cos, sin, self.rotate)
            v = self.v_proj(x).view(1, tokens, spec.num_kv_heads, d)
            torch.ops.llama.update_cache(k, self.k_cache, start)
            torch.ops.llama.update_cache(v, self.v_cache, start)
            out = torch.ops.llama.custom_sdpa(q, self.k_cache, self.v_cache, start, None, 0, True)
            return self.out_proj(out.reshape(1, tokens, spec.num_heads * d))

    class Block(nn.Module):
        def __init__(self, layer: Any) -> None:
            super().__init__()
            self.is_attention = layer.is_attention
            self.op = Attn(layer) if layer.is_attention else Conv(layer)
            ffn = layer.feed_forward
            self.w1, self.w3, self.w2 = linear(ffn.w1.weight), linear(ffn.w3.weight), linear(ffn.w2.weight)
            self.operator_norm = nn.Parameter(layer.operator_norm.weight.detach(), requires_grad=False)
            self.ffn_norm = nn.Parameter(layer.ffn_norm.weight.detach(), requires_grad=False)

        def forward(self, x, cos, sin, start, state):
            normed = rms_norm(x, self.operator_norm)
            if self.is_attention:
                out = self.op(normed, cos, sin, start)
            else:
                out, state = self.op(normed, state)
            h_ = x + out
            f = rms_norm(h_, self.ffn_norm)
            return h_ + self.w2(F.silu(self.w1(f)) * self.w3(f)), state

    class Program(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Parameter(model.model.embed_tokens.weight.detach(), requires_grad=False)
            self.blocks = nn.ModuleList(Block(layer) for layer in model.model.layers)
            self.final_norm = nn.Parameter(model.model.embedding_norm.weight.detach(), requires_grad=False)
            self.lm_head = linear(model.head_weight)
            self.register_buffer("inv_freq", rope_inv_freq(spec), persistent=False)

        def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor, conv_state: torch.Tensor | None = None) -> Any:
            count = tokens.shape[1]
            start = input_pos[0].item()
            torch._check_is_size(start)
            torch._check(start + count <= max_len)
            x = F.embedding(tokens, self.embedding)  # (1, T, h)
            positions = (input_pos + torch.arange(count)).float()
            freqs = positions[:, None] * self.inv_freq[None, :]
            emb = torch.cat((freqs, freqs), dim=-1)[None, :, None, :]  # (1, T, 1, d)
            cos, sin = emb.cos(), emb.sin()
            states = iter(()) if conv_state is None else iter(conv_state.unbind(0))
            new_states = []
            for block in self.blocks:
                x, state = block(x, cos, sin, start, None if block.is_attention else next(states)[None])
                if not block.is_attention:
                    new_states.append(state[0])
            logits = self.lm_head(rms_norm(x[:, -1, :], self.final_norm))
            return (logits, torch.stack(new_states)) if new_states else logits

    return Program().eval()


def _group_size(in_features: int) -> int | None:
    return next((g for g in GROUP_SIZES if in_features % g == 0), None)


def _quantize_8da4w(program: Any) -> dict[str, Any]:
    """Quantize ``program``'s linears in place (see module docstring); what was done, for details."""
    import torch
    from torch import nn
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    linears = [(name, m) for name, m in program.named_modules() if isinstance(m, nn.Linear)]
    groups: dict[str, int] = {}
    for group in GROUP_SIZES:
        chosen = {name for name, m in linears if _group_size(m.in_features) == group}
        if not chosen:
            continue
        config = Int8DynamicActivationIntxWeightConfig(
            weight_dtype=torch.int4, weight_granularity=PerGroup(group), intx_choose_qparams_algorithm=WEIGHT_QPARAMS
        )
        quantize_(program, config, filter_fn=lambda m, fqn, chosen=chosen: fqn in chosen)
        groups[str(group)] = len(chosen)
    return {
        "group_size": GROUP_SIZES[0],
        "linears_by_group_size": groups,
        "linears_fp32": sum(_group_size(m.in_features) is None for _, m in linears),
        "weight_qparams": WEIGHT_QPARAMS,
        "embedding": "fp32",
    }


def _graph_ops(graph_module: Any) -> set[str]:
    """Names (``aten.mul.Scalar`` ...) of the operators ``graph_module`` calls."""
    return {getattr(n.target, "__name__", str(n.target)) for n in graph_module.graph.nodes if n.op == "call_function"}


@contextlib.contextmanager
def _xnnpack_pass_gates(skipped: list[str]) -> Iterator[None]:
    """XNNPACK's delegate passes, with those that cannot change a delegate not run on it.

    ``XnnpackBackend.preprocess`` runs all 17 of ``XNNPACKPassManager``'s passes on every delegate
    (``backends/xnnpack/_passes/__init__.py`` and ``xnnpack_preprocess.py`` in pytorch/executorch),
    and each ends by re-tracing the delegate with fake tensors (``super().call``), whether it
    changed anything or not (under cProfile, ~15 of LFM2-350M's 634 s export per pass over its 52
    delegates; one gated full-size export, 322 s, showed no gain beyond the ungated ones' spread).
    Here a pass is skipped on a delegate that lacks what it rewrites, judged from upstream's own
    tables: the batch-norm ops of ``DecomposeBatchNorm.BATCH_NORM_OPS`` (both batch-norm passes),
    ``FuseActivationPass.FUSEABLE_ACTIVATIONS``, PReLU's ``_prelu_kernel``, the two ops
    ``RemoveGetItemPass`` rewrites, and for the two pattern passes (upsample, SDPA) an op that every
    one of their pattern graphs (``partition/graphs/``) calls, without which no pattern can match.
    The programs are byte-identical to upstream's (tested); ``skipped`` collects one name per
    skipped run."""
    from unittest import mock

    from executorch.backends.transforms.remove_getitem_op import RemoveGetItemPass
    from executorch.backends.xnnpack import xnnpack_preprocess
    from executorch.backends.xnnpack._passes import XNNPACKPassManager
    from executorch.backends.xnnpack._passes.convert_to_sdpa import ConvertToSDPAPass
    from executorch.backends.xnnpack._passes.convert_to_upsample_bilinear2d import ConvertToUpsampleBilinear2d
    from executorch.backends.xnnpack._passes.decompose_batch_norm import DecomposeBatchNorm
    from executorch.backends.xnnpack._passes.fuse_activation_pass import FuseActivationPass
    from executorch.backends.xnnpack._passes.fuse_batch_norm import FuseBatchNormPass
    from executorch.backends.xnnpack._passes.prelu_reshape_pass import PReLUReshapePass
    from executorch.backends.xnnpack.partition.graphs import bilinear_2d, sdpa
    from torch.fx.passes.infra.pass_base import PassResult

    def any_of(targets: Any) -> Any:
        names = {getattr(t, "__name__", str(t)) for t in targets}
        return lambda ops: bool(names & ops)

    def a_pattern_of(patterns: Any) -> Any:
        needed = [_graph_ops(pattern) for pattern in patterns()]
        return lambda ops: any(need <= ops for need in needed)

    applies = {
        ConvertToUpsampleBilinear2d: a_pattern_of(bilinear_2d.get_graphs),
        ConvertToSDPAPass: a_pattern_of(sdpa.get_graphs),
        FuseBatchNormPass: any_of(DecomposeBatchNorm.BATCH_NORM_OPS),
        DecomposeBatchNorm: any_of(DecomposeBatchNorm.BATCH_NORM_OPS),
        FuseActivationPass: any_of(FuseActivationPass.FUSEABLE_ACTIVATIONS),
        PReLUReshapePass: lambda ops: "aten._prelu_kernel.default" in ops,
        RemoveGetItemPass: lambda ops: bool({"aten.max_pool2d_with_indices.default", "aten.max.dim"} & ops),
    }

    def gated(cls: type, test: Any) -> type:
        def call(self: Any, graph_module: Any) -> Any:
            if test(_graph_ops(graph_module)):
                return cls.call(self, graph_module)
            skipped.append(cls.__name__)
            return PassResult(graph_module, False)

        return type(cls.__name__, (cls,), {"call": call})

    gates = {cls: gated(cls, test) for cls, test in applies.items()}

    class GatedPassManager(XNNPACKPassManager):
        def __init__(self, exported_program: Any, passes: Any = None) -> None:
            super().__init__(exported_program, passes)
            self.passes = [gates.get(p, p) for p in self.passes]

    with mock.patch.object(xnnpack_preprocess, "XNNPACKPassManager", GatedPassManager):
        yield


def _lower(model: Any, quant: str, max_len: int) -> tuple[bytes, dict[str, Any]]:
    """The ``.pte`` bytes of ``model`` and the details to record."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes import MemoryPlanningPass
    from executorch.exir.passes.sym_shape_eval_pass import ConstraintBasedSymShapeEvalPass

    stages: dict[str, float] = {}  # seconds per export stage, recorded with the artifact
    mark = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        stages[name] = round(now - mark, 2)
        mark = now

    program = _exportable(model, max_len)
    details: dict[str, Any] = {}
    if quant == "8da4w":
        details.update(_quantize_8da4w(program))
    stage("quantize" if quant == "8da4w" else "wrap")
    # One XnnpackPartitioner takes the dynamically quantized linears together with the ops around
    # them. The example's pair (XnnpackDynamicallyQuantizedPartitioner first, extension/llm/export/
    # partitioner_lib.py) cuts one delegate per quantized linear (195 for LFM2-350M instead of ~50),
    # and the lowering passes run once per delegate: same logits, several times the export time.
    partitioners = [XnnpackPartitioner()]
    spec = model.spec
    example: tuple[torch.Tensor, ...] = (torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    dynamic: tuple[Any, ...] = ({1: torch.export.Dim("tokens", min=1, max=max_len)}, None)
    if spec.num_conv_layers:
        example += (torch.zeros(_conv_state_shape(spec)),)
        dynamic += (None,)
    with torch.no_grad():
        exported = torch.export.export(program, example, dynamic_shapes=dynamic, strict=False)
    stage("torch_export")
    # The metadata methods ExecuTorch's LLM runner reads (extension/llm/runner/constants.h);
    # bos 1 / eos 7 are LFM2's tokenizer ids.
    metadata = {
        "get_max_seq_len": max_len, "get_max_context_len": max_len, "get_vocab_size": spec.vocab_size,
        "use_kv_cache": True, "enable_dynamic_shape": True, "get_bos_id": 1, "get_eos_ids": [7],
    }
    skipped: list[str] = []
    with _xnnpack_pass_gates(skipped):
        edge = to_edge_transform_and_lower(
            exported, partitioner=partitioners, constant_methods=metadata,
            compile_config=EdgeCompileConfig(_check_ir_validity=False),
        )
    stage("to_edge_transform_and_lower")
    executable = edge.to_executorch(
        ExecutorchBackendConfig(
            extract_delegate_segments=True,
            memory_planning_pass=MemoryPlanningPass(alloc_graph_input=False),
            # Plan dynamic-shape tensors at their upper bound (T = max_len).
            sym_shape_eval_pass=ConstraintBasedSymShapeEvalPass(),
        )
    )
    stage("to_executorch")
    plan = executable.executorch_program.execution_plan[0]
    ops = sorted({op.name for op in plan.operators})
    details.update(
        partitioners=[type(p).__name__ for p in partitioners],
        delegates=len(plan.delegates),
        portable_ops=ops,
        planned_bytes=int(sum(plan.non_const_buffer_sizes)),
        kv_cache_bytes=4 * 2 * spec.num_attention_layers * max_len * spec.num_kv_heads * spec.head_dim,
        conv_state_bytes=4 * spec.num_conv_layers * spec.hidden_size * (spec.conv_kernel - 1),
        method=_signature(spec, max_len),
        conv_state_shape=list(_conv_state_shape(spec)) if spec.num_conv_layers else None,
        xnnpack_pass_runs_skipped=len(skipped),
        stage_s=stages,
    )
    return executable.buffer, details


def _conv_state_shape(spec: ModelSpec) -> tuple[int, int, int]:
    return (spec.num_conv_layers, spec.hidden_size, spec.conv_kernel - 1)


def _signature(spec: ModelSpec, max_len: int) -> str:
    if not spec.num_conv_layers:
        return f"{_METHOD}(tokens int64[1, T<={max_len}], input_pos int64[1]) -> logits float32[1, {spec.vocab_size}]"
    state = "float32[{}, {}, {}]".format(*_conv_state_shape(spec))
    return (f"{_METHOD}(tokens int64[1, T<={max_len}], input_pos int64[1], conv_state {state}) "
            f"-> (logits float32[1, {spec.vocab_size}], conv_state {state})")


def write_program(model: Any, quant: str, max_len: int, path: str | Path) -> dict[str, Any]:
    """Lower ``model`` (an :class:`~lfm2_nas.model.LFM2Model`) and write the ``.pte`` bytes to
    ``path`` (not atomically: :meth:`ExecuTorchRuntime.export` passes a temporary name); the
    details to record."""
    if quant not in ExecuTorchRuntime.quants:
        raise ExportError(f"executorch cannot export quant {quant!r}: choose one of {', '.join(ExecuTorchRuntime.quants)}")
    _import_executorch()
    data, details = _lower(model, quant, max_len)
    start = time.perf_counter()
    Path(path).write_bytes(data)
    details["stage_s"]["write"] = round(time.perf_counter() - start, 2)
    return details


def export_in_child(spec: dict[str, Any], quant: str, max_len: int, out_path: str, seed: int = 0,
                    checkpoint: str | None = None) -> dict[str, Any]:
    """Build the model and :func:`write_program`; ``export_s``, this process's peak RSS (bytes)
    and the details. Run through :func:`lfm2_nas.profiler.runner.run_in_child` by
    :meth:`ExecuTorchRuntime.export`, so that the peak (``VmHWM``) is the export's own."""
    from lfm2_nas.checkpoint import load_pretrained
    from lfm2_nas.model import build_model
    from lfm2_nas.profiler.memory import read_status_bytes

    _import_executorch()
    start = time.perf_counter()
    layout = ModelSpec.from_dict(spec)
    model = load_pretrained(checkpoint) if checkpoint else build_model(layout, seed=seed)
    if model.spec != layout:
        raise ExportError(f"checkpoint {checkpoint} holds another layout ({model.spec.pattern}, hidden {model.spec.hidden_size})")
    build_s = time.perf_counter() - start
    details = write_program(model, quant, max_len, out_path)
    details["stage_s"] = {"build_model": round(build_s, 2), **details["stage_s"]}
    return {"export_s": time.perf_counter() - start, "peak_rss_bytes": read_status_bytes("VmHWM"), "details": details}


def _check_complete(path: Path) -> None:
    """:class:`LoadError` unless ``path`` holds a whole ``.pte``: the pybindings open a truncated
    file without complaint (the delegate segments are read later). The extended header after the
    8-byte flatbuffer prefix is ``b"eh00"``, its length (u32), then the program size, the segment
    base offset and the segment data size (u64, little-endian; ``exir/_serialize/_program.py``)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(40)
    if len(head) < 40 or head[8:12] != b"eh00":
        raise LoadError(f"{path} ({size} bytes) is not an ExecuTorch program (no extended header)")
    program_size, segment_base, segment_size = struct.unpack("<QQQ", head[16:40])
    expected = max(program_size, segment_base + segment_size)
    if size < expected:
        raise LoadError(f"cannot load ExecuTorch program {path}: truncated ({size} of {expected} bytes)")


class ExecuTorchSession:
    """A loaded ``.pte`` (see :class:`lfm2_nas.runtimes.base.Session`).

    K/V live inside the program; the conv state (``[n_conv, hidden, K-1]`` fp32) is passed in and
    returned by every call. The session keeps the state at the end of the prompt and after each of
    the last :attr:`KEPT_STATES` steps, so rewinding there only sets the position; a rewind to any
    other depth runs the tokens before it again as a prompt (exact, at the cost of a prefill).
    """

    #: Conv states kept for rewinding (each ``n_conv * hidden * (K-1) * 4`` bytes).
    KEPT_STATES = 32

    def __init__(self, artifact: Artifact, module: Any, conv_shape: tuple[int, int, int] | None) -> None:
        self.artifact = artifact
        self.max_len = artifact.max_len
        self._module = module
        self._conv_shape = conv_shape
        self._tokens: list[int] = []
        self._states: dict[int, Any] = {}
        self._prompt_len = 0

    def _run(self, tokens: Sequence[int], start: int) -> np.ndarray:
        import torch

        if self._module is None:
            raise ValueError("the session is closed")
        count = len(tokens)
        if count < 1 or start + count > self.max_len:
            raise ValueError(f"{count} token(s) at position {start} do not fit the program's {self.max_len} positions")
        inputs = [torch.tensor([list(tokens)], dtype=torch.long), torch.tensor([start], dtype=torch.long)]
        if self._conv_shape is not None:
            inputs.append(self._states[start] if start else torch.zeros(self._conv_shape))
        outputs = self._module.forward(inputs)
        del self._tokens[start:]
        self._tokens.extend(int(t) for t in tokens)
        if self._conv_shape is not None:
            end = start + count
            self._states = {p: s for p, s in self._states.items() if p <= start and (p == self._prompt_len or p > end - self.KEPT_STATES)}
            self._states[end] = outputs[1]
        return outputs[0].numpy()[0].astype(np.float32, copy=False)

    def prefill(self, tokens: Sequence[int]) -> np.ndarray:
        """Run ``tokens`` from position 0; the last position's logits ``(vocab,)`` float32."""
        self._prompt_len = len(tokens)
        return self._run(tokens, 0)

    def step(self, token: int) -> np.ndarray:
        """One token at the current position; its logits ``(vocab,)`` float32."""
        return self._run([token], len(self._tokens))

    def rewind(self, depth: int) -> None:
        """The next step runs at ``depth`` (``0 <= depth <=`` the current position)."""
        if not 0 <= depth <= len(self._tokens):
            raise ValueError(f"cannot rewind to depth {depth}: the cache holds {len(self._tokens)} position(s)")
        if depth and self._conv_shape is not None and depth not in self._states:
            self.prefill(self._tokens[:depth])
        del self._tokens[depth:]

    def memory(self) -> dict[str, int | None]:
        """``weights_bytes``: the program file (loaded whole; XNNPACK's repacked weights are not
        shown); ``cache_bytes``: the K/V buffers plus one conv state; ``compute_bytes``: the rest
        of the method's planned memory (activations, sized for ``T = max_len``)."""
        details = self.artifact.details
        return {
            "weights_bytes": self.artifact.size_bytes,
            "cache_bytes": details["kv_cache_bytes"] + details["conv_state_bytes"],
            "compute_bytes": details["planned_bytes"] - details["kv_cache_bytes"],
        }

    def close(self) -> None:
        """Drop the program and the kept conv states."""
        self._module = None
        self._states.clear()


class ExecuTorchRuntime:
    """The ``executorch`` runtime (see module docstring and :class:`lfm2_nas.runtimes.base.Runtime`)."""

    name = "executorch"
    quants = QUANTS["executorch"]
    install_hint = INSTALL["executorch"]
    suffix = ".pte"
    cache_in_artifact = True  # the K/V and conv buffers are planned into the program

    def check(self, spec: ModelSpec, quant: str, max_len: int) -> None:
        """:class:`ExportError` for a scheme this runtime lacks or a cache length the layout cannot hold
        (every layout the spec allows exports)."""
        if quant not in self.quants:
            raise ExportError(f"executorch cannot export quant {quant!r}: choose one of {', '.join(self.quants)}")
        if not 2 <= max_len <= spec.max_position_embeddings:
            raise ExportError(f"executorch max_len must be in [2, {spec.max_position_embeddings}], got {max_len}")

    def version(self) -> str:
        """The installed ``executorch`` version with this project's export revision
        (:func:`lfm2_nas.runtimes.installed_version`); :class:`RuntimeUnavailable` when it is missing."""
        _import_executorch()
        return installed_version(self.name)

    def export(self, spec: ModelSpec, quant: str, max_len: int, path: Path, seed: int = 0,
               checkpoint: Path | None = None) -> Artifact:
        """Write ``spec`` as a ``.pte`` at ``path`` (atomically), exported in a fresh child process."""
        from lfm2_nas.profiler.runner import run_in_child

        self.check(spec, quant, max_len)
        version = self.version()
        target = Path(path)
        if not target.parent.is_dir():
            raise ExportError(f"cannot write {target}: folder {target.parent} does not exist")
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        kwargs = {"spec": spec.to_dict(), "quant": quant, "max_len": max_len, "out_path": str(tmp), "seed": seed,
                  "checkpoint": None if checkpoint is None else str(checkpoint)}
        try:
            outcome = run_in_child(f"{__name__}:export_in_child", kwargs, threads=len(os.sched_getaffinity(0)))
            if not outcome.ok:
                reason = outcome.reason or "no reason given"
                if reason.startswith("ExportError: "):
                    raise ExportError(reason.removeprefix("ExportError: "))
                raise RuntimeError(f"executorch export of {spec.pattern} ({quant}) failed: {reason}")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        value = outcome.value
        return Artifact(
            path=target, backend=self.name, quant=quant, runtime_version=version, max_len=max_len,
            size_bytes=target.stat().st_size, export_s=value["export_s"],
            export_peak_rss_bytes=value["peak_rss_bytes"],
            details={**value["details"], "weights": str(checkpoint) if checkpoint else f"random, seed {seed}"},
        )

    def load(self, artifact: Artifact, threads: int) -> ExecuTorchSession:
        """Open ``artifact`` with ExecuTorch's thread pool resized to ``threads`` first."""
        _import_executorch()
        from executorch.extension.pybindings import portable_lib

        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        path = Path(artifact.path)
        if not path.is_file():
            raise LoadError(f"ExecuTorch program {path} does not exist")
        _check_complete(path)
        # The pool of XNNPACK and the custom ops (extension/threadpool); torch's own pool is separate.
        portable_lib._unsafe_reset_threadpool(threads)
        try:
            module = portable_lib._load_for_executorch(str(path))
        except RuntimeError as err:  # the pybindings raise it with a multi-line message
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise LoadError(f"cannot load ExecuTorch program {path} ({path.stat().st_size} bytes): {first}") from None
        shape = artifact.details.get("conv_state_shape")
        return ExecuTorchSession(artifact, module, None if shape is None else tuple(shape))


#: The runtime object the profiler looks up by name.
RUNTIME = ExecuTorchRuntime()


@contextlib.contextmanager
def _stdout_to_devnull() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def runner_stats(artifact: Artifact, prompt_len: int, new_tokens: int, threads: int) -> dict[str, float | int]:
    """Cross-check: ExecuTorch's own LLM runner (``TextLLMRunner``, ``extension/llm/runner`` in
    the wheel) generating greedily from a ``prompt_len``-token prompt, its own figures:
    ``prefill_ms`` (prompt evaluation, tokenizing included), ``decode_ms_per_token`` (generation
    time over generated tokens, as its stats print), the token counts. Its clock counts whole
    milliseconds. The runner calls ``forward(tokens, input_pos)``, so only programs without conv
    layers can run in it; it needs a tokenizer file: a byte-level one (one id per byte, ids < 256)
    is written for it, so the prompt is ``prompt_len`` bytes. Generation stops early at token 7
    (LFM2's eos, from the program's metadata)."""
    import tempfile

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    _import_executorch()
    from executorch.extension.llm.runner import GenerationConfig, TextLLMRunner
    from executorch.extension.pybindings import portable_lib

    if artifact.details.get("conv_state_shape") is not None:
        raise ValueError("ExecuTorch's LLM runner calls forward(tokens, input_pos): it cannot run a layout with conv layers")
    if prompt_len < 1 or new_tokens < 1 or prompt_len + new_tokens > artifact.max_len:
        raise ValueError(f"{prompt_len} + {new_tokens} tokens do not fit the program's {artifact.max_len} positions")
    _check_complete(Path(artifact.path))
    portable_lib._unsafe_reset_threadpool(threads)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    stats: dict[str, int] = {}

    def keep(s: Any) -> None:
        stats.update({k: getattr(s, k) for k in ("inference_start_ms", "prompt_eval_end_ms", "inference_end_ms",
                                                  "num_prompt_tokens", "num_generated_tokens")})

    with tempfile.TemporaryDirectory(prefix="lfm2-nas-et-runner-") as tmp:
        tokenizer_path = Path(tmp) / "tokenizer.json"
        tokenizer.save(str(tokenizer_path))
        runner = TextLLMRunner(str(artifact.path), str(tokenizer_path))
        config = GenerationConfig(max_new_tokens=new_tokens, temperature=0.0, echo=False)
        with _stdout_to_devnull():  # the runner prints the text and its stats from C++
            runner.generate("a" * prompt_len, config)  # warm-up: first-call allocations
            runner.reset()
            runner.generate("a" * prompt_len, config, stats_callback=keep)
    generated = stats["num_generated_tokens"]
    return {
        "prefill_ms": float(stats["prompt_eval_end_ms"] - stats["inference_start_ms"]),
        "decode_ms_per_token": (stats["inference_end_ms"] - stats["prompt_eval_end_ms"]) / max(generated, 1),
        "prompt_tokens": stats["num_prompt_tokens"],
        "generated_tokens": generated,
    }
