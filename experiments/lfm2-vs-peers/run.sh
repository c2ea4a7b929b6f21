#!/usr/bin/env bash
# Re-runs experiments/lfm2-vs-peers (resumable: rows already stored are not measured again; add
# --retry to a line to measure failed or busy rows again). Each measurement holds the CPU lock, so
# other jobs that take it run between rows. Run from the repository root.
set -euo pipefail
LOCK=/tmp/lfm2-cpu.lock
OUT=experiments/lfm2-vs-peers
# ExecuTorch 8da4w: the 350M-class pair only, at two points (each point is an export of its own,
# 3-6 min each on 2 cores), 3 timed prefills per process.
python benchmarks/peers.py --lfm2 lfm2-350m --peers qwen3-0.6b --backends executorch:8da4w \
  --points 128:0 512:4096 --rounds 3 --cpu-lock "$LOCK" --out "$OUT"
# The synthetic fill against a real prefill of the cache, same settings otherwise.
python benchmarks/peers.py --lfm2 lfm2-350m --peers qwen3-0.6b --backends llamacpp:q4_0 --points 512:4096 \
  --cache-fill prefill --rounds 3 --min-count 1 --cpu-lock "$LOCK" --out "$OUT/fill-check"
# llama.cpp: every LFM2 size and peer, q4_0 and q8_0, prefill 128 / 512 / 2048 with decode at depth
# 0 / 4096 / 16384 (synthetic cache fill), one timed prefill after a warm-up per process, 3 rounds.
# Last, because the last invocation writes the summary, tables and plot over every stored row of this
# CPU (--report-only rebuilds them from the stored rows without measuring, on any machine).
python benchmarks/peers.py --backends llamacpp:q4_0 llamacpp:q8_0 --cache-fill synthetic --rounds 3 \
  --min-count 1 --cpu-lock "$LOCK" --out "$OUT"
