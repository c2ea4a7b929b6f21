"""Export a registered layout to GGUF (f32 and q4_0), time it through the llamacpp Session, compare with
llama.cpp's own perf counters, and check the f32 file's logits against the torch model.

    python benchmarks/llamacpp_check.py --variant lfm2-350m --threads 2 --out /tmp/llamacpp-check

Prints one JSON line per measurement. Timing: ``perf_counter`` around each Session call (what the
profiler sees) next to ``llama_perf_context``'s figures for the same calls (what llama.cpp's tools
report); prefill of ``--prompt`` tokens from an empty cache, best and median of ``--repeats``; decode
at depth 0 (``rewind(0)`` before every step), median / mean / min of ``--steps`` steps after 3 warm-up
steps (llama.cpp's counter gives the mean).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from lfm2_nas.model import build_model
from lfm2_nas.registry import get_spec
from lfm2_nas.runtimes.llamacpp import RUNTIME


def _emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def _time_session(artifact, threads: int, prompt: list[int], repeats: int, steps: int) -> dict:
    session = RUNTIME.load(artifact, threads)
    try:
        prefill_s, prefill_perf_ms = [], []
        for _ in range(repeats):
            session.perf(reset=True)
            start = time.perf_counter()
            session.prefill(prompt)
            prefill_s.append(time.perf_counter() - start)
            prefill_perf_ms.append(session.perf()["prompt_ms"])
        session.rewind(0)
        for _ in range(3):
            session.step(1)
            session.rewind(0)
        session.perf(reset=True)
        step_s = []
        for i in range(steps):
            start = time.perf_counter()
            session.step(1 + i % 100)
            step_s.append(time.perf_counter() - start)
            session.rewind(0)
        perf = session.perf()
        session.prefill(prompt[:128])
        session.step(1)
        start = time.perf_counter()
        session.rewind(128)  # restore the conv-state snapshot, drop KV positions >= 128
        rewind_s = time.perf_counter() - start
        return {
            "prefill_tokens": len(prompt),
            "prefill_ms_best": 1e3 * min(prefill_s),
            "prefill_ms_median": 1e3 * statistics.median(prefill_s),
            "prefill_perf_ms_median": statistics.median(prefill_perf_ms),
            "prefill_tok_per_s_median": len(prompt) / statistics.median(prefill_s),
            "decode_depth0_ms_median": 1e3 * statistics.median(step_s),
            "decode_depth0_ms_mean": 1e3 * statistics.mean(step_s),
            "decode_depth0_ms_min": 1e3 * min(step_s),
            "decode_depth0_perf_ms_per_token": perf["eval_ms_per_token"],
            "decode_perf_tokens": perf["eval_tokens"],
            "rewind_to_prefill_ms": 1e3 * rewind_s,
            "memory": session.memory(),
        }
    finally:
        session.close()


@torch.no_grad()
def _parity(spec, artifact, seed: int, threads: int) -> dict:
    model = build_model(spec, seed=seed)
    prompt = torch.randint(0, spec.vocab_size, (64,), generator=torch.Generator().manual_seed(0)).tolist()
    steps = [11, 22, 33, 44]
    cache = model.new_cache(1, 128)
    expected = [model(torch.tensor([prompt]), cache, last_only=True)[0, -1].numpy()]
    expected += [model(torch.tensor([[t]]), cache, last_only=True)[0, -1].numpy() for t in steps]
    del model
    session = RUNTIME.load(artifact, threads)
    try:
        got = [session.prefill(prompt)] + [session.step(t) for t in steps]
    finally:
        session.close()
    diffs = [float(np.abs(e - g).max()) for e, g in zip(expected, got)]
    return {"max_abs_diff": max(diffs), "logits_std": float(np.std(np.stack(expected))), "compared": len(diffs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="lfm2-350m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quants", default="q4_0,f32")
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/llamacpp-check"))
    args = parser.parse_args()
    spec = get_spec(args.variant)
    prompt = [(7 * i + 3) % spec.vocab_size for i in range(args.prompt)]
    _emit({"variant": args.variant, "runtime_version": RUNTIME.version(), "threads": args.threads})
    for quant in args.quants.split(","):
        artifact = RUNTIME.export(spec, quant, 1024, args.out / f"{args.variant}.{quant}.gguf", seed=args.seed)
        record = {k: v for k, v in artifact.to_dict().items() if k not in ("runtime_version",)}
        _emit({"quant": quant, "export": record})
        _emit({"quant": quant, "timing": _time_session(artifact, args.threads, prompt, args.repeats, args.steps)})
        if quant == "f32":
            _emit({"quant": quant, "parity_vs_torch": _parity(spec, artifact, args.seed, args.threads)})


if __name__ == "__main__":
    main()
