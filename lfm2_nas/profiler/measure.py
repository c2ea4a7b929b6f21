"""The measurement itself, run inside a fresh child process (see :mod:`lfm2_nas.profiler.runner`).

Order of events, each memory figure taken after freed memory was handed back:

1. baseline: the process after torch start-up;
2. build the model (random weights in ordinary process memory, not a memory-mapped file);
3. allocate the cache for ``Settings.max_len`` positions (static on CUDA, see below);
4. decode: fill the cache to ``context_depth``, then time single decode steps, rewinding the cache
   position to ``context_depth`` before each step (:meth:`HybridCache.seek`) so every sample runs
   at the same depth;
5. prefill: time the prompt from an empty cache (last-position logits only), resetting before each.

Decode is timed before prefill so that its small activation peak is not hidden by memory glibc keeps
after the prefill's large temporaries.

Kernels: the parent passes the kernel table of this machine's hardware profile
(:func:`lfm2_nas.profiler.hardware.applicable_kernel_choice`); it is installed
(:func:`lfm2_nas.kernels.set_choice`) before the model is built, and the row records which kernel each
projection class actually went to (``linear_kernels``). Without a table: ``F.linear`` everywhere.

Decode path: on CPU the eager step over the ordinary cache (the fastest CPU path). On CUDA the
project's GPU path: a static cache and the step captured in a CUDA graph
(:class:`lfm2_nas.cuda_graphs.GraphedDecoder`); the prefill then runs over an ordinary cache of the
same size allocated in its place. The path taken is recorded in the row (``decode_path``).

Cache fill (``cache_fill``): ``"synthetic"`` writes random K/V (unit normal, the scale q/k-normed
keys have) and conv state directly and sets the position, in milliseconds even at depth 4096 on a
CPU; ``"prefill"`` runs a real prefill of ``context_depth`` random tokens. A decode step's cost does
not depend on the cached values (no data-dependent branches in its kernels), only on the depth, so
both fills time the same work; the synthetic fill keeps long depths affordable.
"""

from __future__ import annotations

from typing import Any

from lfm2_nas.profiler.contention import OtherCpuMeter
from lfm2_nas.profiler.memory import MemoryProbe
from lfm2_nas.profiler.settings import Settings
from lfm2_nas.profiler.timing import sample_ms
from lfm2_nas.spec import ModelSpec

def measure_layout(
    spec: dict[str, Any], settings: dict[str, Any], kernel_table: dict[str, str] | None = None
) -> dict[str, Any]:
    """Measure one layout under one setting with the torch backend (child target); returns samples
    and memory figures. ``kernel_table``: the measured linear-kernel choice to install (None: default)."""
    import torch

    from lfm2_nas import kernels
    from lfm2_nas.generation import prefill
    from lfm2_nas.model import build_model

    layout, wl = ModelSpec.from_dict(spec), Settings.from_dict(settings)
    dtype, device = getattr(torch, wl.dtype), wl.device
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    probe = MemoryProbe(device)
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, layout.vocab_size, (wl.batch, wl.prompt_len), generator=generator).to(device)
    token = torch.randint(0, layout.vocab_size, (wl.batch, 1), generator=generator).to(device)

    kernels.set_choice(kernel_table)
    baseline = probe.settle()
    probe.reset_peak()
    model = build_model(layout, dtype=dtype, device=device)
    weights = probe.settle() - baseline
    peaks = [probe.peak_bytes()]
    cuda = device.startswith("cuda")
    cache = model.new_cache(wl.batch, wl.max_len, static=cuda)
    cache_bytes = probe.settle() - baseline - weights
    peaks.append(probe.peak_bytes())

    _fill(model, cache, wl.context_depth, wl.fill, generator)
    step, decode_path = _decode_step(model, cache, token, cuda)

    meter = OtherCpuMeter()
    decode_ms, decode_act, decode_peak = probe.phase(
        lambda: sample_ms(step, wl, setup=lambda: cache.seek(wl.context_depth), device=device)
    )
    if cuda:  # prefill over an ordinary cache: a static one would attend over all max_len positions
        del step, cache
        probe.settle()
        cache = model.new_cache(wl.batch, wl.max_len)
    prefill_ms, prefill_act, prefill_peak = probe.phase(
        lambda: sample_ms(lambda: prefill(model, prompt, cache), wl, setup=cache.reset, device=device)
    )
    peaks += [decode_peak, prefill_peak]
    environment = {**_environment(torch, device), "other_cpu_cores": meter.other_cores(), "decode_path": decode_path,
                   "linear_kernels": kernels.describe(kernels.used())}
    return {
        "prefill_ms": prefill_ms,
        "decode_ms": decode_ms,
        "memory": _memory(probe, baseline, weights, cache_bytes, prefill_act, decode_act, peaks),
        "environment": environment,
    }


def _memory(probe: MemoryProbe, baseline: int, weights: int, cache: int, prefill_act: int, decode_act: int,
            peaks: list[int]) -> dict[str, Any]:
    """The memory figures of one measuring process (the fields of :class:`~lfm2_nas.profiler.memory.MemoryReport`
    it measures; phase activations only where the peak can be reset per phase)."""
    return {
        "method": probe.method,
        "baseline_bytes": baseline,
        "weights_bytes": weights,
        "cache_bytes": cache,
        "prefill_activation_bytes": prefill_act if probe.resettable else None,
        "decode_activation_bytes": decode_act if probe.resettable else None,
        "peak_bytes": max(peaks) - baseline,
        "process_peak_bytes": max(peaks),
        "reserved_peak_bytes": probe.peak_reserved_bytes(),
    }


def _decode_step(model: Any, cache: Any, token: Any, cuda: bool) -> tuple[Any, str]:
    """The decode step to time and its name: a CUDA-graph replay on CUDA, the eager step on CPU."""
    from lfm2_nas.generation import decode_step

    if not cuda:
        return (lambda: decode_step(model, token, cache)), "eager"
    from lfm2_nas.cuda_graphs import GraphedDecoder

    decoder = GraphedDecoder(model, cache)
    return (lambda: decoder.step(token)), "cuda_graph"


def _fill(model: Any, cache: Any, depth: int, how: str, generator: Any) -> None:
    """Bring ``cache`` to ``depth`` filled positions (see module docstring)."""
    import torch

    from lfm2_nas.generation import prefill

    if depth == 0:
        return
    if how == "prefill":
        ids = torch.randint(0, model.spec.vocab_size, (cache.batch, depth), generator=generator)
        prefill(model, ids.to(cache.device), cache)
        return
    if how != "synthetic":
        raise ValueError(f"unknown cache_fill {how!r}: use synthetic or prefill")
    for buffer in (cache.k[:, :, :, :depth], cache.v[:, :, :, :depth], cache.conv):
        buffer.copy_(torch.randn(buffer.shape, generator=generator, dtype=torch.float32))
    cache.seek(depth)


def _environment(torch: Any, device: str) -> dict[str, Any]:
    env = {"torch_version": torch.__version__, "cuda_version": torch.version.cuda, "gpu_name": None}
    if device.startswith("cuda"):
        env["gpu_name"] = torch.cuda.get_device_name(torch.device(device))
    return env


def measure_artifact(spec: dict[str, Any], settings: dict[str, Any], artifact: dict[str, Any]) -> dict[str, Any]:
    """Measure a deployment runtime's exported artifact (child target), with the contract of
    :func:`measure_layout`: the runtime loaded with the settings' threads; its cache filled to the depth
    by a real prefill of random tokens (``cache_fill = "prefill"``) or, where the session has one, its
    synthetic fill (``"synthetic"``: :meth:`lfm2_nas.runtimes.llamacpp.LlamaCppSession.fill_synthetic`);
    single decode steps timed, the cache rewound to the depth before
    each (every sample runs at the same depth); the prompt timed from an empty cache. Memory: the
    process's resident set, with the runtime's own buffer sizes (``runtime_weights_bytes``,
    ``runtime_cache_bytes``, ``runtime_compute_bytes``) where it shows them; ``weights_bytes`` is the
    growth at load less the cache the runtime reports (loading allocates both). Where the session
    offers ``perf``, the runtime's own mean ms per decode step and per prompt over the same calls
    (warm-up calls included) are recorded beside ours (``runtime_decode_ms``, ``runtime_prefill_ms``)."""
    import numpy as np

    from lfm2_nas.runtimes import get_runtime
    from lfm2_nas.runtimes.base import Artifact

    layout, wl = ModelSpec.from_dict(spec), Settings.from_dict(settings)
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, layout.vocab_size, wl.prompt_len).tolist()
    history = rng.integers(0, layout.vocab_size, wl.context_depth).tolist()
    token = int(rng.integers(0, layout.vocab_size))
    probe = MemoryProbe("cpu")

    baseline = probe.settle()
    probe.reset_peak()
    session = get_runtime(wl.backend).load(Artifact.from_dict(artifact), wl.threads)
    loaded = probe.settle() - baseline
    peaks = [probe.peak_bytes()]
    runtime_memory = session.memory()
    cache_bytes = runtime_memory.get("cache_bytes") or 0
    if history and wl.fill == "synthetic":
        session.fill_synthetic(wl.context_depth, history)
    elif history:
        session.prefill(history)
    perf = getattr(session, "perf", None)

    meter = OtherCpuMeter()
    if perf:
        perf(reset=True)
    decode_ms, decode_act, decode_peak = probe.phase(
        lambda: sample_ms(lambda: session.step(token), wl, setup=lambda: session.rewind(wl.context_depth))
    )
    own = perf(reset=True) if perf else {}
    prefill_ms, prefill_act, prefill_peak = probe.phase(lambda: sample_ms(lambda: session.prefill(prompt), wl))
    own_prefill = perf() if perf else {}
    peaks += [decode_peak, prefill_peak]
    other = meter.other_cores()
    session.close()
    prefill_calls = wl.warmup + len(prefill_ms)
    return {
        "prefill_ms": prefill_ms,
        "decode_ms": decode_ms,
        "memory": _memory(probe, baseline, max(loaded - cache_bytes, 0), cache_bytes, prefill_act, decode_act, peaks),
        "environment": {
            "other_cpu_cores": other,
            "decode_path": f"{wl.backend} {wl.quant}",
            **{f"runtime_{k}": runtime_memory.get(k) for k in ("weights_bytes", "cache_bytes", "compute_bytes")},
            "runtime_decode_ms": own.get("eval_ms_per_token") if own.get("eval_tokens") else None,
            "runtime_prefill_ms": own_prefill["prompt_ms"] / prefill_calls if own_prefill.get("prompt_tokens") else None,
        },
    }
