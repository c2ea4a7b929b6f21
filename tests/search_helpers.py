"""Test doubles and fixtures for the search tests.

:class:`AnalyticEvaluator` stands in for the profiler and the quality proxies: its "latency" and
"quality" are cost-model formulas, deterministic and instant, so the tests exercise the study's
mechanics (seeding, screening, failures, resume, many workers) in seconds. It is never used
outside tests; the real measurements are covered by tests of ``lfm2_nas.search.evaluate``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from lfm2_nas import cost
from lfm2_nas.search.config import parse_config
from lfm2_nas.search.measurements import LatencyResult, QualityScore
from lfm2_nas.spec import ModelSpec

TINY_TOML = """
[study]
name = "tiny"
trials = 8
sampler = "random"
seed = 1

[space]
base = "lfm2-tiny"
depth = [3, 6]
hidden_size = [32, 64]
head_dim = [16]
kv_heads = [1, 2]
ffn_ratio = [2.0, 4.0]

[target]
prompt_len = 16
context_depth = 32

[quality]
tier = "analytic"
"""


def tiny_config(extra: str = "", **replace: str):
    """The tiny test search, with ``extra`` TOML appended and ``old=new`` line replacements."""
    text = TINY_TOML
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return parse_config(text + extra, source="tiny.toml", default_name="tiny")


class AnalyticEvaluator:
    """Deterministic stand-in measurements from the cost model (tests only).

    ``fail`` maps a layout pattern to a failure reason (profiling fails with it); ``sleep_s`` makes
    each latency measurement take that long (to overlap workers or to kill a run mid-trial);
    ``log`` appends one JSON line per measured trial (pid and spec hash) to a file and, with
    ``sleep_s``, one (pid, ``measuring`` and the time ``at``) as each measurement starts its sleep.
    """

    def __init__(self, fail: dict[str, str] | None = None, sleep_s: float = 0.0, log: str | None = None,
                 quality_fail: dict[str, str] | None = None) -> None:
        self.fail = fail or {}
        self.quality_fail = quality_fail or {}
        self.sleep_s = sleep_s
        self.log = log
        self.calls: Counter[str] = Counter()
        self.predictor_rows: list[dict[str, Any]] = []

    def hardware(self) -> dict[str, Any]:
        return {"slug": "test-hardware", "read_bandwidth_bytes_per_s": 1e10}

    def latency(self, spec: ModelSpec) -> LatencyResult:
        self.calls["latency"] += 1
        if self.sleep_s:
            if self.log:
                with open(self.log, "a") as f:
                    f.write(json.dumps({"pid": os.getpid(), "measuring": spec.spec_hash(), "at": time.time()}) + "\n")
            time.sleep(self.sleep_s)
        if spec.pattern in self.fail:
            return LatencyResult(ok=False, reason=self.fail[spec.pattern])
        if self.log:
            with open(self.log, "a") as f:
                f.write(json.dumps({"pid": os.getpid(), "spec_hash": spec.spec_hash()}) + "\n")
        decode = cost.decode_read_bytes(spec, 32) / 1e10 * 1e3
        prefill = cost.prefill_flops(spec, 16) / 1e9
        peak = cost.weight_bytes(spec) + cost.cache_bytes(spec, 33)
        return LatencyResult(ok=True, prefill_ms=prefill, decode_ms=decode, peak_bytes=peak,
                             row={"decode_ms_per_token_median": decode})

    def quality(self, spec: ModelSpec) -> QualityScore:
        self.calls["quality"] += 1
        if spec.pattern in self.quality_fail:
            return QualityScore(ok=False, reason=self.quality_fail[spec.pattern])
        score = cost.non_embedding_params(spec) / 1e3 + spec.num_attention_layers
        return QualityScore(ok=True, score=score, metric="test_score", higher_is_better=True)

    def predict_latency(self, spec: ModelSpec) -> tuple[float, float] | None:
        return None

    def decode_floor_ms(self, spec: ModelSpec) -> float | None:
        return None

    def update_predictor(self, rows: list[dict[str, Any]]) -> None:
        self.predictor_rows = rows


class LockingEvaluator(AnalyticEvaluator):
    """Takes the run's CPU lock as the real :class:`~lfm2_nas.search.evaluate.Measurer` does: exclusive
    while "profiling" (sleeping ``sleep_s``), shared while "training" (spinning the CPU ``train_s``).
    Each phase's wall-clock interval goes to ``log`` (``phase``, ``start``, ``end``, ``pid``)."""

    def __init__(self, lock: str | None, log: str, sleep_s: float = 0.1, train_s: float = 0.1) -> None:
        super().__init__(sleep_s=sleep_s, log=log)
        self.lock = lock
        self.train_s = train_s

    def _phase(self, name: str, start: float) -> None:
        with open(self.log, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "phase": name, "start": start, "end": time.time()}) + "\n")

    def latency(self, spec: ModelSpec) -> LatencyResult:
        from lfm2_nas.search.lock import cpu_lock

        with cpu_lock(self.lock, exclusive=True):
            start = time.time()
            result = super().latency(spec)
            self._phase("profile", start)
        return result

    def quality(self, spec: ModelSpec) -> QualityScore:
        from lfm2_nas.search.lock import cpu_lock

        with cpu_lock(self.lock, exclusive=False):
            start = time.time()
            while time.time() - start < self.train_s:  # training keeps a core busy
                pass
            self._phase("train", start)
        return super().quality(spec)


def journal(tmp_path: Path) -> str:
    return str(tmp_path / "journal.log")


def run_cli(monkeypatch, capsys, *args: Any) -> subprocess.CompletedProcess:
    """The ``lfm2-nas`` entry point in this process (torch imported once); exit code and output."""
    from lfm2_nas.cli import main

    monkeypatch.setattr(sys, "argv", ["lfm2-nas", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)
