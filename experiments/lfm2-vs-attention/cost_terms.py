"""The cost model's side of experiment 2 (nothing here is measured): for every LFM2 size and its two
baselines, what one decode step must read (weights vs K/V at a depth) and what a prefill computes
(matmuls vs attention scores), at fp32 and batch 1. The predicted speedups and the lengths at which
they would reach 2x are in the report (``report/speedup.csv``, ``report/extrapolation.csv``).

    PYTHONPATH=$PWD python experiments/lfm2-vs-attention/cost_terms.py   # the table in README.md
"""

from __future__ import annotations

from lfm2_nas import cost
from lfm2_nas.registry import get_spec
from lfm2_nas.units import format_bytes

SIZES = ("lfm2-350m", "lfm2-700m", "lfm2-1.2b", "lfm2-2.6b")
SUFFIXES = ("", "-all-attn", "-dense")
DEPTHS = (4096, 16384)
PROMPT = 1024


def main() -> None:
    print("| layout | params | weights | K/V per token | read @4096: K/V share | read @16384: K/V share "
          f"| prefill GFLOP @{PROMPT} | attention share @{PROMPT} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for size in SIZES:
        for suffix in SUFFIXES:
            spec = get_spec(size + suffix)
            cells = [size + suffix, f"{cost.param_count(spec) / 1e6:,.0f}M", format_bytes(cost.weight_bytes(spec)),
                     format_bytes(cost.kv_bytes_per_token(spec))]
            for depth in DEPTHS:
                read = cost.decode_read_bytes(spec, depth)
                cells.append(f"{format_bytes(read)}: {cost.kv_cache_bytes(spec, depth) / read:.0%}")
            cells += [f"{cost.prefill_flops(spec, PROMPT) / 1e9:,.0f}", f"{cost.attention_flops_share(spec, PROMPT, decode=False):.1%}"]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
