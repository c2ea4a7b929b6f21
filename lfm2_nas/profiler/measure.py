"""The measurement itself, run inside a fresh child process (see :mod:`lfm2_nas.profiler.runner`).

Order of events, each memory figure taken after freed memory was handed back:

1. baseline: the process after torch start-up;
2. build the model (random weights in ordinary process memory, not a memory-mapped file);
3. allocate the static cache for ``max(prompt_len, context_depth + 1)`` positions;
4. decode: fill the cache to ``context_depth``, then time single decode steps, rewinding the cache
   position to ``context_depth`` before each step so every sample runs at the same depth;
5. prefill: time the prompt from an empty cache (last-position logits only), resetting before each.

Decode is timed before prefill so that its small activation peak is not hidden by memory glibc keeps
after the prefill's large temporaries.

Cache fill (``cache_fill``): ``"synthetic"`` writes random K/V (unit normal, the scale q/k-normed
keys have) and conv state directly and sets the position, in milliseconds even at depth 4096 on a
CPU; ``"prefill"`` runs a real prefill of ``context_depth`` random tokens. A decode step's cost does
not depend on the cached values (no data-dependent branches in its kernels), only on the depth, so
both fills time the same work; the synthetic fill keeps long depths affordable.
"""

from __future__ import annotations

from typing import Any

from lfm2_nas.profiler.memory import MemoryProbe
from lfm2_nas.profiler.timing import TimingConfig, sample_ms
from lfm2_nas.profiler.workload import Workload
from lfm2_nas.spec import ModelSpec


def measure_layout(spec: dict[str, Any], workload: dict[str, Any], timing: dict[str, Any], cache_fill: str) -> dict[str, Any]:
    """Measure one layout on one workload (child target); returns samples and memory figures."""
    import torch

    from lfm2_nas.generation import decode_step, prefill
    from lfm2_nas.model import build_model

    layout, wl, config = ModelSpec.from_dict(spec), Workload.from_dict(workload), TimingConfig(**timing)
    dtype, device = getattr(torch, wl.dtype), wl.device
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    probe = MemoryProbe(device)
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, layout.vocab_size, (wl.batch, wl.prompt_len), generator=generator).to(device)
    token = torch.randint(0, layout.vocab_size, (wl.batch, 1), generator=generator).to(device)

    baseline = probe.settle()
    probe.reset_peak()
    model = build_model(layout, dtype=dtype, device=device)
    weights = probe.settle() - baseline
    peaks = [probe.peak_bytes()]
    cache = model.new_cache(wl.batch, wl.max_len)
    cache_bytes = probe.settle() - baseline - weights
    peaks.append(probe.peak_bytes())

    _fill(model, cache, wl.context_depth, cache_fill, generator)

    def rewind() -> None:
        cache.seq_len = wl.context_depth
        cache.position.fill_(wl.context_depth)

    decode_ms, decode_act, decode_peak = probe.phase(
        lambda: sample_ms(lambda: decode_step(model, token, cache), config, setup=rewind, device=device)
    )
    prefill_ms, prefill_act, prefill_peak = probe.phase(
        lambda: sample_ms(lambda: prefill(model, prompt, cache), config, setup=cache.reset, device=device)
    )
    peaks += [decode_peak, prefill_peak]
    return {
        "prefill_ms": prefill_ms,
        "decode_ms": decode_ms,
        "memory": {
            "method": probe.method,
            "baseline_bytes": baseline,
            "weights_bytes": weights,
            "cache_bytes": cache_bytes,
            "prefill_activation_bytes": prefill_act if probe.resettable else None,
            "decode_activation_bytes": decode_act if probe.resettable else None,
            "peak_bytes": max(peaks) - baseline,
            "process_peak_bytes": max(peaks),
            "reserved_peak_bytes": probe.peak_reserved_bytes(),
        },
        "environment": _environment(torch, device),
    }


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
    cache.seq_len = depth
    cache.position.fill_(depth)


def _environment(torch: Any, device: str) -> dict[str, Any]:
    env = {"torch_version": torch.__version__, "cuda_version": torch.version.cuda, "gpu_name": None}
    if device.startswith("cuda"):
        env["gpu_name"] = torch.cuda.get_device_name(torch.device(device))
    return env
