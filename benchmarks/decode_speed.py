"""Prefill and decode speed of lfm2-nas against transformers' Lfm2ForCausalLM, side by side.

    python benchmarks/decode_speed.py                      # CPU part; the GPU part too when CUDA is present
    flock -x /tmp/lfm2-cpu.lock python benchmarks/decode_speed.py --parts cpu --bf16-too --out experiments/decode_speed

Each JSON line printed is one measurement; the last line is the summary. With ``--out`` the same
records go to ``results.jsonl`` and the per-step decode times to ``decode_steps.csv``.

What is timed, and how (see experiments/decode_speed/README.md for the results):

* Both implementations hold the SAME random weights: ours is built with a seed, the reference is
  ``Lfm2ForCausalLM(config)`` into which our state dict is copied, so its weights live in ordinary
  process memory (not a memory-mapped checkpoint file, which reads slower); the script checks
  this in ``/proc/self/maps`` and checks that both give the same logits.
* CPU: fp32, ``--threads`` (default 2) intra-op threads, fixed before torch initialises. Rounds
  alternate the implementations so all see the same machine state; ``perf_counter`` around each call.
* Kernels (CPU): ours runs its projections with the linear-kernel table measured on THIS machine and
  stored in its hardware profile (``profiles/<slug>-<date>.json``; measured and saved on first use,
  about a minute; see :mod:`lfm2_nas.kernels`); ``--kernels default`` runs ``F.linear`` everywhere
  instead. The setup record names the table and its source; the summary, the kernels actually used.
* Pages (CPU, ``--pages both``, the default): ours AND the reference are each timed twice in the same
  rounds, weights in ordinary 4 KiB pages (torch's allocator; ours built with
  ``LFM2_NAS_HUGEPAGES=0``) and in one huge-page buffer (:mod:`lfm2_nas.hugepages`; the reference's
  copied there by ``move_to_huge_pages``), so the speedup from our code and the gain from huge pages
  are separate figures (``summary.cpu.pages``). ``--pages as-built`` times ours in huge pages against
  the reference in ordinary pages only.
* bf16 (CPU, ``--bf16-too``): where the hardware profile measures bf16 as native, ours in bf16 is
  timed against ours in fp32 (same rounds, huge pages both); elsewhere the record says it is refused.
* Prefill of 128 and 512 tokens from an empty cache. Ours: :func:`lfm2_nas.prefill` (last-position
  logits, preallocated cache). Reference: what ``generate`` runs for a prompt,
  ``model(ids, use_cache=True, logits_to_keep=1)``.
* Decode: after a 128-token prefill, every step is timed by itself (feeding the greedy token);
  the first ``--warmup`` steps of each round are dropped. Ours: :func:`lfm2_nas.decode_step`;
  reference: one forward with its ``DynamicCache`` (what ``generate`` calls per token, without
  its sampling and stopping logic, i.e. a lower bound on its per-token time).
* Achieved bandwidth = ``cost.decode_read_bytes(spec, 128)`` / median step time: the bytes a step
  must read at least (every weight once, the K/V and conv state), over the time it took.
* Measured read bandwidth of the device = the best of several streaming-read kernels over a buffer
  far larger than the last-level cache (1 GiB on CPU, 4 GiB on GPU), each the best of several
  repeats: ``sum``, ``amax``, the model's own matrix-vector product over the whole buffer, and
  (CPU) a dot product of its two halves (two read streams).
* GPU (``lfm2-1.2b`` bf16, batch 1): ours is the decode step captured in a CUDA graph
  (:class:`lfm2_nas.cuda_graphs.GraphedDecoder`); CUDA events around each step and each prefill;
  ``torch.cuda.max_memory_allocated/reserved`` against the cost model's weight and cache bytes.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="lfm2-350m", help="layout timed on CPU (fp32)")
    parser.add_argument("--gpu-variant", default="lfm2-1.2b", help="layout timed on CUDA (bf16)")
    parser.add_argument("--parts", default="auto", choices=["auto", "cpu", "gpu", "all"],
                        help="auto: CPU, plus GPU when CUDA is present")
    parser.add_argument("--threads", type=int, default=2, help="CPU intra-op threads (set before torch loads)")
    parser.add_argument("--context", type=int, default=128, help="prompt length before decoding")
    parser.add_argument("--prefill", type=int, nargs="+", default=[128, 512], help="prefill lengths to time")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per implementation")
    parser.add_argument("--steps", type=int, default=20, help="decode steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="decode steps dropped at the start of a round")
    parser.add_argument("--pages", default="both", choices=["both", "as-built"],
                        help="CPU: both = ours and the reference each in ordinary and in huge pages; "
                             "as-built = ours in huge pages, the reference in ordinary pages")
    parser.add_argument("--ordinary-pages-too", action="store_true", help="older spelling of --pages both")
    parser.add_argument("--kernels", default="measured", choices=["measured", "default"],
                        help="CPU: measured = this machine's kernel table (hardware profile); default = F.linear")
    parser.add_argument("--bf16-too", action="store_true",
                        help="CPU: also time ours in bf16 against ours in fp32 (where bf16 is native)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for results.jsonl and decode_steps.csv")
    return parser.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()
    # OpenMP and MKL read these once, when torch loads: set them before the import below.
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(ARGS.threads)

import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's lfm2_nas

from lfm2_nas import cost, kernels  # noqa: E402
from lfm2_nas.generation import decode_step, prefill  # noqa: E402
from lfm2_nas.hf_config import hf_config_from_spec  # noqa: E402
from lfm2_nas.hugepages import huge_page_bytes, move_to_huge_pages  # noqa: E402
from lfm2_nas.io import atomic_write_text  # noqa: E402
from lfm2_nas.model import LFM2Model, build_model  # noqa: E402
from lfm2_nas.profiler.hardware import (  # noqa: E402
    applicable_kernel_choice,
    device_identity,
    load_or_measure_hardware,
)
from lfm2_nas.registry import get_spec  # noqa: E402

GB = 1e9  # bandwidths are printed in GB/s (10^9 bytes per second), as vendors quote them


# ---- statistics and records ------------------------------------------------------------------


def summarize_times(seconds: list[float]) -> dict[str, float]:
    """Median and spread of a list of durations, in milliseconds."""
    ordered = sorted(seconds)
    n = len(ordered)

    def pct(q: float) -> float:
        return ordered[min(n - 1, round(q * (n - 1)))] * 1e3

    return {
        "n": n,
        "median_ms": statistics.median(ordered) * 1e3,
        "p10_ms": pct(0.1),
        "p90_ms": pct(0.9),
        "min_ms": ordered[0] * 1e3,
        "max_ms": ordered[-1] * 1e3,
    }


class Recorder:
    """Prints each record as one JSON line and keeps them for ``--out``."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def emit(self, record: dict[str, Any]) -> dict[str, Any]:
        self.records.append(record)
        print(json.dumps(record), flush=True)
        return record


# ---- timers ----------------------------------------------------------------------------------


def cpu_timer(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, fn())`` by ``perf_counter``."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def cuda_timer(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, fn())`` measured between two CUDA events on the current stream, then synchronised."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    out = fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3, out


Timer = Callable[[Callable[[], Any]], tuple[float, Any]]


# ---- read bandwidth --------------------------------------------------------------------------


class BandwidthProbe:
    """Streaming-read kernels whose best rate is the device's measured read bandwidth.

    Over one buffer far larger than the last-level cache: ``sum``, ``amax``, the model's own
    matrix-vector product (the buffer viewed as a ``(n, 1024)`` matrix) and, on CPU, a dot product
    of the buffer's two halves (two read streams at once). Over the weights themselves:
    ``weights_sum`` sums every weight tensor of the model once, i.e. reads exactly the bytes a
    decode step must read, from the very pages it reads them from. :meth:`sample` runs each
    kernel ``passes`` times and keeps its best rate; the benchmark samples between decode rounds
    so that each round is compared with the bandwidth of the same moment.
    """

    def __init__(self, device: str, buffer_bytes: int, weights: list[torch.Tensor], timer: Timer) -> None:
        dtype = torch.float32 if device == "cpu" else torch.bfloat16
        width = 1024
        numel = buffer_bytes // dtype.itemsize // width * width
        self.buffer = torch.empty(numel, dtype=dtype, device=device).uniform_()  # touches every page
        self.timer = timer
        matrix, vector, half = self.buffer.view(-1, width), torch.randn(1, width, dtype=dtype, device=device), numel // 2
        self.kernels: dict[str, tuple[Callable[[], Any], int]] = {
            "sum": (lambda: self.buffer.sum(), self.buffer.nbytes),
            "amax": (lambda: self.buffer.amax(), self.buffer.nbytes),
            # the kernel the model's table picks for this size, kept out of kernels.used() (not the model's)
            "model_matvec": (lambda: kernels.KERNELS[kernels.kernel_name(vector, matrix, track=False)](vector, matrix, None),
                             self.buffer.nbytes),
            "weights_sum": (lambda: [w.sum() for w in weights], sum(w.nbytes for w in weights)),
        }
        if device == "cpu":
            self.kernels["dot_of_halves"] = (lambda: torch.dot(self.buffer[:half], self.buffer[half:]), self.buffer.nbytes)
        self.samples: list[dict[str, float]] = []

    def sample(self, passes: int = 2) -> dict[str, float]:
        """Best bytes/s of each kernel over ``passes`` interleaved passes; kept in :attr:`samples`."""
        best = dict.fromkeys(self.kernels, 0.0)
        with torch.inference_mode():
            for _ in range(passes):
                for name, (kernel, nbytes) in self.kernels.items():
                    best[name] = max(best[name], nbytes / self.timer(kernel)[0])
        self.samples.append(best)
        return best

    def record(self) -> dict[str, Any]:
        """Every sample, the best rate per kernel, and the overall best (the measured bandwidth)."""
        per_kernel = {name: max(s[name] for s in self.samples) for name in self.kernels}
        winner = max(per_kernel, key=per_kernel.__getitem__)
        return {"kind": "read_bandwidth", "buffer_bytes": self.buffer.nbytes, "samples": len(self.samples),
                "best_bytes_per_s_by_kernel": per_kernel, "best_kernel": winner, "bytes_per_s": per_kernel[winner],
                "median_of_sample_bests_bytes_per_s": statistics.median(max(s.values()) for s in self.samples)}


# ---- the implementations ---------------------------------------------------------------------


def reference_from(model: LFM2Model):
    """``transformers.Lfm2ForCausalLM`` with ``model``'s config and a COPY of its weights (SDPA)."""
    from transformers import Lfm2Config, Lfm2ForCausalLM

    weight = model.head_weight
    config = Lfm2Config(**hf_config_from_spec(model.spec, weight.dtype))
    config._attn_implementation = "sdpa"
    with torch.device(weight.device):
        reference = Lfm2ForCausalLM(config).to(weight.dtype).eval()
    state = dict(model.state_dict())
    if model.spec.tie_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    reference.load_state_dict(state, strict=True)  # copies into the reference's own parameters
    return reference


def file_backed_bytes(model: torch.nn.Module) -> int | None:
    """Bytes of ``model``'s CPU parameters that lie in a file mapping (``/proc/self/maps``);
    ``None`` where that file does not exist."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return None
    regions = []
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/"):
            low, high = (int(x, 16) for x in fields[0].split("-"))
            regions.append((low, high))
    return sum(
        p.nbytes
        for p in model.parameters()
        if p.device.type == "cpu" and any(low <= p.data_ptr() < high for low, high in regions)
    )


class Ours:
    """lfm2_nas: prefill into a preallocated cache, then one cached step per token (eager)."""

    name = "lfm2_nas"

    def __init__(self, model: LFM2Model, max_len: int, name: str | None = None) -> None:
        self.model = model
        self.cache = model.new_cache(1, max_len)
        self.name = name or self.name

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        self.cache.reset()
        return prefill(self.model, ids, self.cache)

    def step(self, token: torch.Tensor) -> torch.Tensor:
        return decode_step(self.model, token, self.cache)


class OursGraphed(Ours):
    """lfm2_nas on CUDA: eager prefill into a static cache, decode steps replayed from a CUDA graph."""

    def __init__(self, model: LFM2Model, max_len: int, prompt: torch.Tensor) -> None:
        from lfm2_nas.cuda_graphs import GraphedDecoder

        self.model = model
        self.cache = model.new_cache(1, max_len, static=True)
        prefill(model, prompt, self.cache)
        self.decoder = GraphedDecoder(model, self.cache)  # stays valid across reset + prefill

    def step(self, token: torch.Tensor) -> torch.Tensor:
        return self.decoder.step(token)


class Reference:
    """transformers: ``generate``'s prefill call, then one forward per token with its DynamicCache."""

    name = "transformers"

    def __init__(self, model) -> None:
        self.model = model
        self.cache = None

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.model(ids, use_cache=True, logits_to_keep=1)
        self.cache = out.cache
        return out.logits[:, -1]

    @torch.inference_mode()
    def step(self, token: torch.Tensor) -> torch.Tensor:
        return self.model(token, cache=self.cache, use_cache=True).logits[:, -1]


# ---- timing loops shared by both devices ---------------------------------------------------


def time_prefill(impls: list, lengths: list[int], rounds: int, vocab: int, generator, device, timer: Timer):
    """``{(impl, tokens): [seconds]}``; rounds alternate the implementations; round 0 is a warm-up."""
    out: dict[tuple[str, int], list[float]] = {}
    for tokens in lengths:
        ids = torch.randint(0, vocab, (1, tokens), generator=generator).to(device)
        for round_index in range(rounds + 1):
            for impl in impls if round_index % 2 else impls[::-1]:
                seconds, _ = timer(lambda: impl.prefill(ids))
                if round_index:
                    out.setdefault((impl.name, tokens), []).append(seconds)
    return out


def time_decode(impls: list, prompt: torch.Tensor, args: argparse.Namespace, timer: Timer, probe: BandwidthProbe):
    """Decode rounds: each implementation (order alternating) prefills ``prompt`` and then decodes
    ``args.steps`` greedy tokens, each step timed by itself; a bandwidth sample follows each round.

    Returns ``{impl: [[seconds per kept step] per round]}`` and every step as a CSV row.
    """
    kept: dict[str, list[list[float]]] = {impl.name: [] for impl in impls}
    rows = []
    probe.sample()  # warm-up
    for round_index in range(args.rounds):
        for impl in impls if round_index % 2 == 0 else impls[::-1]:
            logits = impl.prefill(prompt)
            times = []
            for step in range(args.steps):
                token = logits.argmax(-1, keepdim=True)
                seconds, logits = timer(lambda: impl.step(token))
                rows.append((impl.name, round_index, step, seconds * 1e3))
                if step >= args.warmup:
                    times.append(seconds)
            kept[impl.name].append(times)
        probe.sample()
    return kept, rows


def compare(args, rec: Recorder, device: str, dtype: torch.dtype, impls: list, spec, timer: Timer,
            generator, probe: BandwidthProbe) -> dict[str, Any]:
    """Time prefill and decode of ``impls`` (ours first), emit the records, return this device's summary."""
    prefill_s = time_prefill(impls, args.prefill, args.rounds, spec.vocab_size, generator, device, timer)
    for (name, tokens), times in prefill_s.items():
        rec.emit({"kind": "prefill", "device": device, "impl": name, "tokens": tokens, **summarize_times(times)})
    prompt = torch.randint(0, spec.vocab_size, (1, args.context), generator=generator).to(device)
    rounds, rows = time_decode(impls, prompt, args, timer, probe)
    bandwidth = rec.emit({"device": device, **probe.record()})
    read_bytes = cost.decode_read_bytes(spec, args.context, 1, dtype)
    decode = {}
    for name, per_round in rounds.items():
        stats = summarize_times([t for times in per_round for t in times])
        # Each round against the bandwidth sampled right after it: like with like on a noisy machine.
        paired = [read_bytes / statistics.median(times) / max(sample.values())
                  for times, sample in zip(per_round, probe.samples[1:])]
        decode[name] = rec.emit({
            "kind": "decode", "device": device, "impl": name, "context": args.context, **stats,
            "read_bytes": read_bytes, "achieved_bytes_per_s": read_bytes / (stats["median_ms"] / 1e3),
            "fraction_of_best_bandwidth": read_bytes / (stats["median_ms"] / 1e3) / bandwidth["bytes_per_s"],
            "fraction_of_round_bandwidth_median": statistics.median(paired),
            "fraction_of_round_bandwidth_by_round": paired,
        })
    ours, ref = decode[impls[0].name], decode[impls[1].name]
    prefill_ms = {
        f"prefill_{tokens}_ms": {name: statistics.median(prefill_s[(name, tokens)]) * 1e3 for name in decode}
        for tokens in args.prefill
    }
    return {
        **prefill_ms,
        "decode_ms": {name: d["median_ms"] for name, d in decode.items()},
        "decode_p10_p90_ms": {name: [d["p10_ms"], d["p90_ms"]] for name, d in decode.items()},
        "decode_speedup": ref["median_ms"] / ours["median_ms"],
        "achieved_GBps": {name: d["achieved_bytes_per_s"] / GB for name, d in decode.items()},
        "measured_read_GBps": {"best": bandwidth["bytes_per_s"] / GB, "kernel": bandwidth["best_kernel"],
                               "median_of_rounds": bandwidth["median_of_sample_bests_bytes_per_s"] / GB},
        "ours_fraction_of_bandwidth": {"vs_best": ours["fraction_of_best_bandwidth"],
                                       "vs_same_round_median": ours["fraction_of_round_bandwidth_median"]},
        "prefill_not_slower": all(v[impls[0].name] <= v[impls[1].name] for v in prefill_ms.values()),
        "_rows": rows,
    }


# ---- CPU part --------------------------------------------------------------------------------


def install_kernels(args: argparse.Namespace) -> dict[str, Any]:
    """Install the linear-kernel table for ours (see module docstring); what the setup record says."""
    if args.kernels == "default":
        kernels.set_choice(None)
        return {"kernel_choice": "default: --kernels default", "kernel_table": {}, "hardware": None}
    hardware = load_or_measure_hardware("cpu", threads=args.threads)
    table, source = applicable_kernel_choice(hardware)
    kernels.set_choice(table)
    return {"kernel_choice": source, "kernel_table": table, "hardware": hardware}


def ordinary_pages_model(spec, seed: int) -> LFM2Model:
    """Ours with the same weights, placed by torch's allocator like the reference's."""
    os.environ["LFM2_NAS_HUGEPAGES"] = "0"
    try:
        return build_model(spec, dtype=torch.float32, seed=seed)
    finally:
        del os.environ["LFM2_NAS_HUGEPAGES"]


def pages_summary(decode_ms: dict[str, float], prefill_ms: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Speedup of ours over the reference with both in ordinary pages and both in huge pages, and what
    huge pages alone give each implementation (ratios of median decode times; > 1 = faster)."""
    ours, ref = "lfm2_nas", "transformers"
    ours_ord, ref_huge = f"{ours}_ordinary_pages", f"{ref}_huge_pages"
    return {
        "decode_speedup_ordinary_pages_both": decode_ms[ref] / decode_ms[ours_ord],
        "decode_speedup_huge_pages_both": decode_ms[ref_huge] / decode_ms[ours],
        "decode_speedup_as_built": decode_ms[ref] / decode_ms[ours],
        "huge_page_gain": {ours: decode_ms[ours_ord] / decode_ms[ours], ref: decode_ms[ref] / decode_ms[ref_huge]},
        "prefill_not_slower_ordinary_pages_both": all(v[ours_ord] <= v[ref] for v in prefill_ms.values()),
    }


def run_cpu(args: argparse.Namespace, rec: Recorder) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    spec = get_spec(args.variant)
    max_len = max(args.context + args.steps, *args.prefill)
    choice = install_kernels(args)
    hardware = choice.pop("hardware")
    model = build_model(spec, dtype=torch.float32, seed=args.seed)
    reference = reference_from(model)
    impls = [Ours(model, max_len), Reference(reference)]
    if args.pages == "both" or args.ordinary_pages_too:
        impls.append(Ours(ordinary_pages_model(spec, args.seed), max_len, "lfm2_nas_ordinary_pages"))
        huge_reference = Reference(move_to_huge_pages(reference_from(model)))
        huge_reference.name = "transformers_huge_pages"
        impls.append(huge_reference)
    generator = torch.Generator().manual_seed(args.seed)
    check = torch.randint(0, spec.vocab_size, (1, min(32, max_len)), generator=generator)
    first = impls[0].prefill(check)
    parity = {impl.name: (impl.prefill(check) - first).abs().max().item() for impl in impls[1:]}
    rec.emit({
        "kind": "setup", "device": "cpu", "variant": args.variant, "dtype": "float32", "threads": args.threads,
        "torch_threads": torch.get_num_threads(), "weight_bytes": cost.weight_bytes(spec, "float32"),
        "cpu_model": device_identity("cpu")["cpu_model"], "cpu_isa": device_identity("cpu")["cpu_isa"],
        "hardware_profile": hardware.label if hardware else None, **choice,
        "reference_attention": reference.config._attn_implementation,
        "reference_file_backed_weight_bytes": file_backed_bytes(reference),
        "ours_file_backed_weight_bytes": file_backed_bytes(model),
        "huge_page_weight_bytes": {impl.name: huge_page_bytes(impl.model.parameters()) for impl in impls},
        "last_logits_max_abs_diff": max(parity.values()), "last_logits_max_abs_diff_by_impl": parity,
    })
    kernels.reset_used()
    probe = BandwidthProbe("cpu", 1 << 30, list(model.parameters()), cpu_timer)
    summary = compare(args, rec, "cpu", torch.float32, impls, spec, cpu_timer, generator, probe)
    summary["kernel_choice"], summary["linear_kernels_used"] = choice["kernel_choice"], kernels.used()
    fraction = summary["ours_fraction_of_bandwidth"]
    summary["targets_met"] = {
        "decode_speedup_ge_1.3": summary["decode_speedup"] >= 1.3,
        "bandwidth_fraction_ge_0.7": {key: value >= 0.7 for key, value in fraction.items()},
        "prefill_not_slower": summary.pop("prefill_not_slower"),
    }
    if len(impls) == 4:
        prefill_ms = {k: v for k, v in summary.items() if k.startswith("prefill_") and k.endswith("_ms")}
        summary["pages"] = pages_summary(summary["decode_ms"], prefill_ms)
        summary["targets_met"]["decode_speedup_ge_1.3_ordinary_pages_both"] = (
            summary["pages"]["decode_speedup_ordinary_pages_both"] >= 1.3)
        summary["targets_met"]["prefill_not_slower_ordinary_pages_both"] = (
            summary["pages"]["prefill_not_slower_ordinary_pages_both"])
    del impls[1:], reference
    if args.bf16_too:
        summary["bf16"] = run_cpu_bf16(args, rec, spec, impls[0], hardware, probe, max_len, generator)
    return {"device": "cpu", "variant": args.variant, "dtype": "float32", "threads": args.threads,
            "cpu_model": device_identity("cpu")["cpu_model"], **summary}


def run_cpu_bf16(args, rec: Recorder, spec, ours_fp32: Ours, hardware, probe: BandwidthProbe, max_len: int,
                 generator) -> dict[str, Any]:
    """Ours in bf16 against ours in fp32 (decode, alternating rounds), where the profile says bf16 is native."""
    if hardware is None or not hardware.is_native("bfloat16"):
        where = hardware.slug if hardware else "this machine (no hardware profile: --kernels default)"
        return rec.emit({"kind": "bf16_decode", "device": "cpu", "refused": f"bfloat16 is not measured as native on {where}"})
    ours_bf16 = Ours(build_model(spec, dtype=torch.bfloat16, seed=args.seed), max_len, "lfm2_nas_bfloat16")
    prompt = torch.randint(0, spec.vocab_size, (1, args.context), generator=generator)
    rounds, _ = time_decode([ours_bf16, ours_fp32], prompt, args, cpu_timer, probe)
    medians = {name: summarize_times([t for times in per_round for t in times])["median_ms"]
               for name, per_round in rounds.items()}
    ratio = medians[ours_fp32.name] / medians[ours_bf16.name]
    return rec.emit({"kind": "bf16_decode", "device": "cpu", "decode_ms": medians, "bf16_speedup_over_fp32": ratio,
                     "read_bytes": {d: cost.decode_read_bytes(spec, args.context, 1, d) for d in ("float32", "bfloat16")},
                     "target_ge_1.7_met": ratio >= 1.7})


# ---- GPU part --------------------------------------------------------------------------------


def gpu_memory_record(spec, dtype: torch.dtype, max_len: int) -> dict[str, Any]:
    """Peak CUDA memory of the model and its static cache against the cost model's bytes."""
    expected = cost.weight_bytes(spec, dtype) + cost.cache_bytes(spec, max_len, 1, dtype)
    allocated, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    return {"kind": "gpu_memory", "max_allocated_bytes": allocated, "max_reserved_bytes": reserved,
            "weight_plus_cache_bytes": expected, "allocated_over_expected": allocated / expected}


def run_gpu(args: argparse.Namespace, rec: Recorder) -> dict[str, Any]:
    spec = get_spec(args.gpu_variant)
    dtype, device = torch.bfloat16, "cuda"
    generator = torch.Generator().manual_seed(args.seed)
    max_len = max(args.context + args.steps, *args.prefill)
    torch.cuda.reset_peak_memory_stats()
    model = build_model(spec, dtype=dtype, device=device, seed=args.seed)
    prompt = torch.randint(0, spec.vocab_size, (1, args.context), generator=generator).to(device)
    ours = OursGraphed(model, max_len, prompt)
    ours.prefill(torch.zeros(1, max(args.prefill), dtype=torch.long, device=device))
    memory = rec.emit({"device": device, "variant": args.gpu_variant, "max_len": max_len,
                       **gpu_memory_record(spec, dtype, max_len)})  # before the reference exists
    reference = reference_from(model)
    rec.emit({"kind": "setup", "device": device, "gpu": torch.cuda.get_device_name(), "variant": args.gpu_variant,
              "dtype": "bfloat16", "reference_attention": reference.config._attn_implementation})
    probe = BandwidthProbe(device, 4 << 30, list(model.parameters()), cuda_timer)
    summary = compare(args, rec, device, dtype, [ours, Reference(reference)], spec, cuda_timer, generator, probe)
    fraction = summary["ours_fraction_of_bandwidth"]
    summary["targets_met"] = {"bandwidth_fraction_ge_0.5": {key: value >= 0.5 for key, value in fraction.items()}}
    summary.pop("prefill_not_slower")
    return {"device": device, "gpu": torch.cuda.get_device_name(), "variant": args.gpu_variant,
            "dtype": "bfloat16", **summary, "max_allocated_bytes": memory["max_allocated_bytes"],
            "max_reserved_bytes": memory["max_reserved_bytes"],
            "weight_plus_cache_bytes": memory["weight_plus_cache_bytes"]}


# ---- main ------------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> None:
    import transformers

    parts = {"auto": ["cpu"] + (["gpu"] if torch.cuda.is_available() else []), "all": ["cpu", "gpu"]}.get(
        args.parts, [args.parts])
    if "gpu" in parts and not torch.cuda.is_available():
        sys.exit("error: --parts gpu needs a CUDA device")
    rec = Recorder()
    summary: dict[str, Any] = {
        "kind": "summary", "torch": torch.__version__, "transformers": transformers.__version__,
        "python": platform.python_version(), "context": args.context, "rounds": args.rounds,
        "steps_per_round": args.steps, "warmup_steps": args.warmup,
    }
    step_rows = []
    for part in parts:
        result = (run_cpu if part == "cpu" else run_gpu)(args, rec)
        step_rows += [(part, *row) for row in result.pop("_rows")]
        summary[part] = result
    if args.out:
        write_results(Path(args.out), rec.records + [summary], step_rows)
    print(json.dumps(summary), flush=True)


def write_results(folder: Path, records: list[dict[str, Any]], step_rows: list[tuple] | None = None) -> None:
    """``results.jsonl`` (every record, summary last) and, given step rows, ``decode_steps.csv``;
    each file written atomically (:func:`lfm2_nas.io.atomic_write_text`)."""
    files = {"results.jsonl": "".join(json.dumps(r) + "\n" for r in records)}
    if step_rows is not None:
        files["decode_steps.csv"] = "device,impl,round,step,ms\n" + "".join(
            f"{d},{impl},{r},{s},{ms:.4f}\n" for d, impl, r, s, ms in step_rows)
    for name, text in files.items():
        atomic_write_text(folder / name, text)


if __name__ == "__main__":
    main(ARGS)
