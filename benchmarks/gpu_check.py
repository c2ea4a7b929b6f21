"""One short check of the GPU decode path (well under 4 minutes on an H100/H200).

    python benchmarks/gpu_check.py [--variant lfm2-1.2b] [--out experiments/gpu_check]

Prints one JSON line per check and a summary last; exits 1 if a correctness check fails.

1. Memory: CUDA bytes allocated by the model and its static cache against the cost model's
   ``weight_bytes + cache_bytes`` (they should agree to allocator rounding).
2. Correctness (bf16): the same greedy tokens fed to (a) the eager cache, (b) the static cache run
   eagerly, (c) the CUDA-graph replay of (b). (c) must equal (b) (same kernels, replayed; at most one
   bf16 ulp of the largest logit is allowed);
   (b) against (a) is reported as a max abs difference (different attention kernels in bf16).
   Then the same in fp32 on ``--fp32-variant``, where graph and eager must agree to 1e-3.
3. Speed: per-step GPU time (CUDA events) of the graph replay, the eager static step and the eager
   step; achieved bandwidth ``cost.decode_read_bytes / median step`` against the measured read
   bandwidth (best of sum / amax / matvec over a 4 GiB buffer).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's lfm2_nas

from decode_speed import GB, BandwidthProbe, cuda_timer, summarize_times, write_results  # noqa: E402

from lfm2_nas import cost  # noqa: E402
from lfm2_nas.cuda_graphs import GraphedDecoder  # noqa: E402
from lfm2_nas.generation import decode_step, prefill  # noqa: E402
from lfm2_nas.model import build_model  # noqa: E402
from lfm2_nas.registry import get_spec  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="lfm2-1.2b", help="bf16 layout to check and time")
    parser.add_argument("--fp32-variant", default="lfm2-350m", help="layout for the fp32 equality check")
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--steps", type=int, default=64, help="graph-replay steps timed")
    parser.add_argument("--check-steps", type=int, default=24, help="steps compared between paths")
    parser.add_argument("--out", default=None, help="folder for results.jsonl")
    return parser.parse_args()


def decode_paths(model, prompt: torch.Tensor, steps: int, max_len: int) -> dict[str, torch.Tensor]:
    """Logits ``(steps+1, B, V)`` of eager, static-eager and graph decoding over the same tokens."""
    eager = model.new_cache(1, max_len)
    logits = prefill(model, prompt, eager)
    tokens, out = [], {"eager": [logits]}
    for _ in range(steps):
        tokens.append(logits.argmax(-1, keepdim=True))
        logits = decode_step(model, tokens[-1], eager)
        out["eager"].append(logits)
    for name, capture in (("static_eager", False), ("graph", True)):
        cache = model.new_cache(1, max_len, static=True)
        out[name] = [prefill(model, prompt, cache)]
        decoder = GraphedDecoder(model, cache, capture=capture)
        out[name] += [decoder.step(token).clone() for token in tokens]
    return {name: torch.stack(values).float() for name, values in out.items()}


def check_equality(model, prompt, steps, max_len, dtype_name: str) -> dict:
    paths = decode_paths(model, prompt, steps, max_len)
    return {
        "kind": "equality", "dtype": dtype_name, "steps": steps,
        "logit_scale": paths["eager"].abs().max().item(),
        "graph_vs_static_eager_max_abs": (paths["graph"] - paths["static_eager"]).abs().max().item(),
        "graph_vs_eager_max_abs": (paths["graph"] - paths["eager"]).abs().max().item(),
        "graph_vs_eager_argmax_agreement": (paths["graph"].argmax(-1) == paths["eager"].argmax(-1)).float().mean().item(),
    }


def time_steps(step, first_logits: torch.Tensor, steps: int) -> list[float]:
    logits, times = first_logits, []
    for _ in range(steps):
        token = logits.argmax(-1, keepdim=True)
        seconds, logits = cuda_timer(lambda: step(token))
        times.append(seconds)
    return times[2:]  # the first steps warm caches and allocators


def main() -> int:
    args = parse_args()
    if not torch.cuda.is_available():
        print("error: no CUDA device", file=sys.stderr)
        return 2
    records = []

    def emit(record: dict) -> dict:
        records.append(record)
        print(json.dumps(record), flush=True)
        return record

    spec = get_spec(args.variant)
    dtype = torch.bfloat16
    max_len = args.context + max(args.steps, args.check_steps) + 8
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, spec.vocab_size, (1, args.context), generator=generator).cuda()

    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    model = build_model(spec, dtype=dtype, device="cuda")
    weights = torch.cuda.memory_allocated() - before
    cache = model.new_cache(1, max_len, static=True)
    cache_alloc = torch.cuda.memory_allocated() - before - weights
    memory = emit({
        "kind": "memory", "gpu": torch.cuda.get_device_name(), "variant": args.variant, "max_len": max_len,
        "weights_allocated_bytes": weights, "weight_bytes_cost_model": cost.weight_bytes(spec, dtype),
        "cache_allocated_bytes": cache_alloc, "cache_bytes_cost_model": cost.cache_bytes(spec, max_len, 1, dtype),
    })

    bf16 = emit(check_equality(model, prompt, args.check_steps, max_len, "bfloat16"))

    # Speed: graph replay vs the same step eager (static and dynamic cache).
    logits = prefill(model, prompt, cache)
    decoder = GraphedDecoder(model, cache)
    graph_s = time_steps(decoder.step, logits, args.steps)
    cache.reset()
    static_s = time_steps(lambda t: decode_step(model, t, cache), prefill(model, prompt, cache), 20)
    eager_cache = model.new_cache(1, max_len)
    eager_s = time_steps(lambda t: decode_step(model, t, eager_cache), prefill(model, prompt, eager_cache), 20)
    peak = {"max_allocated_bytes": torch.cuda.max_memory_allocated(), "max_reserved_bytes": torch.cuda.max_memory_reserved()}
    read_bytes = cost.decode_read_bytes(spec, args.context, 1, dtype)
    speed = emit({
        "kind": "decode_speed", "context": args.context, "read_bytes": read_bytes,
        "graph": summarize_times(graph_s), "static_eager": summarize_times(static_s), "eager": summarize_times(eager_s),
        **peak,
    })
    del decoder, cache, eager_cache
    probe = BandwidthProbe("cuda", 4 << 30, list(model.parameters()), cuda_timer)
    for _ in range(3):
        probe.sample()
    bandwidth = emit(probe.record())
    del probe, model
    torch.cuda.empty_cache()

    fp32_spec = get_spec(args.fp32_variant)
    fp32_model = build_model(fp32_spec, dtype=torch.float32, device="cuda")
    fp32_prompt = prompt[:, :32] % fp32_spec.vocab_size
    fp32 = emit(check_equality(fp32_model, fp32_prompt, args.check_steps, 32 + args.check_steps + 8, "float32"))

    graph_ms = speed["graph"]["median_ms"]
    checks = {
        "weights_bytes_match_cost_model": abs(memory["weights_allocated_bytes"] - memory["weight_bytes_cost_model"]) < 1 << 20,
        "cache_bytes_match_cost_model": abs(memory["cache_allocated_bytes"] - memory["cache_bytes_cost_model"]) < 1 << 20,
        # Replay runs the eager static step's kernels: equal, or within one bf16 ulp of the largest logit.
        "bf16_graph_equals_static_eager": bf16["graph_vs_static_eager_max_abs"] <= bf16["logit_scale"] * 2**-7,
        "fp32_graph_matches_eager_1e-3": fp32["graph_vs_eager_max_abs"] <= 1e-3,
    }
    summary = {
        "kind": "summary", "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "variant": args.variant,
        "graph_decode_ms": graph_ms, "static_eager_decode_ms": speed["static_eager"]["median_ms"],
        "eager_decode_ms": speed["eager"]["median_ms"], "graph_tokens_per_s": 1e3 / graph_ms,
        "achieved_GBps": read_bytes / graph_ms * 1e3 / GB, "measured_read_GBps": bandwidth["bytes_per_s"] / GB,
        "fraction_of_bandwidth": read_bytes / (graph_ms / 1e3) / bandwidth["bytes_per_s"],
        "bf16_graph_vs_eager_max_abs": bf16["graph_vs_eager_max_abs"], "bf16_logit_scale": bf16["logit_scale"],
        **peak, "checks": checks, "ok": all(checks.values()),
    }
    if args.out:
        write_results(Path(args.out), records + [summary])
    print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
