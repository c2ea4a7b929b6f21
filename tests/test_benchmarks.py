"""The speed benchmark's instruments against known quantities (the benchmark itself is not a test)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from lfm2_nas.model import build_model
from lfm2_nas.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


decode_speed = _load("decode_speed")


def test_summarize_times_in_milliseconds():
    stats = decode_speed.summarize_times([0.005, 0.001, 0.004, 0.002, 0.003])
    assert stats == {"n": 5, "median_ms": 3.0, "p10_ms": 1.0, "p90_ms": 5.0, "min_ms": 1.0, "max_ms": 5.0}


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps")
def test_file_backed_bytes_tells_a_mapped_checkpoint_from_process_memory(tmp_path):
    module = nn.Linear(256, 256, bias=False)
    torch.save(module.state_dict(), tmp_path / "w.pt")
    assert decode_speed.file_backed_bytes(module) == 0
    mapped = torch.load(tmp_path / "w.pt", mmap=True, weights_only=True)["weight"]
    module.weight = nn.Parameter(mapped, requires_grad=False)  # a memory-mapped checkpoint (see benchmarks/decode_speed.py)
    assert decode_speed.file_backed_bytes(module) == 256 * 256 * 4


def test_bandwidth_probe_samples_every_kernel():
    weights = [torch.randn(64, 64) for _ in range(3)]
    probe = decode_speed.BandwidthProbe("cpu", 8 << 20, weights, decode_speed.cpu_timer)
    for _ in range(2):
        probe.sample(passes=1)
    record = probe.record()
    assert record["samples"] == 2 and record["buffer_bytes"] == 8 << 20
    assert set(record["best_bytes_per_s_by_kernel"]) == {"sum", "amax", "model_matvec", "weights_sum", "dot_of_halves"}
    assert record["bytes_per_s"] == max(record["best_bytes_per_s_by_kernel"].values()) > 0


def test_ours_and_reference_agree_inside_the_benchmark():
    spec = ModelSpec.from_pattern("CAC", vocab_size=50, hidden_size=32, num_heads=4, num_kv_heads=2, ff_dim=40)
    model = build_model(spec)
    ours, reference = decode_speed.Ours(model, 16), decode_speed.Reference(decode_speed.reference_from(model))
    assert reference.model.config._attn_implementation == "sdpa"
    ids = torch.tensor([[1, 2, 3, 4]])
    a, b = ours.prefill(ids), reference.prefill(ids)
    for _ in range(3):
        assert (a - b).abs().max() <= 1e-5
        token = a.argmax(-1, keepdim=True)
        a, b = ours.step(token), reference.step(token)


def test_write_results_is_complete_jsonl(tmp_path):
    decode_speed.write_results(tmp_path, [{"kind": "a"}, {"kind": "summary"}], [("cpu", "x", 0, 1, 2.5)])
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["a", "summary"]
    assert (tmp_path / "decode_steps.csv").read_text() == "device,impl,round,step,ms\ncpu,x,0,1,2.5000\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_pages_summary_separates_the_code_from_the_pages():
    decode = {"lfm2_nas": 50.0, "lfm2_nas_ordinary_pages": 60.0, "transformers": 90.0, "transformers_huge_pages": 80.0}
    prefill = {"prefill_128_ms": {"lfm2_nas": 1, "lfm2_nas_ordinary_pages": 2, "transformers": 3, "transformers_huge_pages": 3}}
    pages = decode_speed.pages_summary(decode, prefill)
    assert pages["decode_speedup_ordinary_pages_both"] == 1.5 and pages["decode_speedup_huge_pages_both"] == 1.6
    assert pages["decode_speedup_as_built"] == 1.8
    assert pages["huge_page_gain"] == {"lfm2_nas": 1.2, "transformers": 90 / 80}
    assert pages["prefill_not_slower_ordinary_pages_both"]


def test_the_benchmark_installs_the_machines_kernel_table_or_the_default(tmp_path, monkeypatch):
    from lfm2_nas import kernels
    from profiler_support import fake_cpu_profile

    monkeypatch.setenv("LFM2_NAS_PROFILES", str(tmp_path))
    profile = fake_cpu_profile(tmp_path, {"decode/float32/large": "F.linear"})
    try:
        choice = decode_speed.install_kernels(decode_speed.parse_args(["--kernels", "measured"]))
        assert choice["kernel_table"] == kernels.current_choice() == {"decode/float32/large": "F.linear"}
        assert choice["kernel_choice"] == f"measured: profile {profile.label}"
        choice = decode_speed.install_kernels(decode_speed.parse_args(["--kernels", "default"]))
        assert choice["kernel_table"] == kernels.current_choice() == {}
    finally:
        kernels.set_choice(None)


def test_decode_depth_compares_the_fills_against_their_spread():
    decode_depth = _load("decode_depth")
    samples = {"synthetic": [10.0, 11.0, 12.0], "prefill": [10.5, 11.5, 12.5]}
    close = decode_depth.compare_fills(samples, {"synthetic": [10.0, 11.0], "prefill": [11.0, 11.2]})
    assert close["decode_ms_median"] == {"synthetic": 11.0, "prefill": 11.5}
    assert close["prefill_over_synthetic"] == 11.5 / 11.0 and close["within_spread"]
    far = decode_depth.compare_fills(samples, {"synthetic": [11.0, 11.1], "prefill": [11.4, 11.5]})
    assert not far["within_spread"]


def _load_peers():
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))  # peers.py imports its rounds loop from backends.py
    try:
        return _load("peers")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_peers_pairs_each_lfm2_size_with_the_nearest_peer_by_parameters():
    peers = _load_peers()
    assert [peers.matched_params(m) for m in peers.LFM2] == ["qwen3-0.6b", "qwen3-0.6b", "llama-3.2-1b"]
    assert peers.pairing("lfm2-350m", "qwen3-0.6b") == ["params", "quality"]
    assert peers.pairing("lfm2-1.2b", "qwen3-1.7b") == ["quality"]
    assert peers.pairing("lfm2-700m", "qwen3-1.7b") == []


def test_peers_speedups_are_paired_by_round_and_skip_busy_rows():
    peers = _load_peers()

    def row(layout, r, prefill, decode, busy=False):
        return {"layout": layout, "backend": "llamacpp", "quant": "q4_0", "prompt_len": 512, "context_depth": 4096,
                "round": r, "ok": True, "busy": busy, "prefill_ms_median": prefill, "decode_ms_median": decode}

    rows = [row("lfm2-350m", 0, 100.0, 10.0), row("lfm2-350m", 1, 200.0, 20.0), row("lfm2-350m", 2, 100.0, 10.0),
            row("qwen3-0.6b", 0, 300.0, 20.0), row("qwen3-0.6b", 1, 400.0, 60.0),
            row("qwen3-0.6b", 2, 999.0, 999.0, busy=True)]
    found = {(s["phase"], s["point"]): s for s in peers.speedup_rows(rows, ["lfm2-350m"], ["qwen3-0.6b"])}
    prefill, decode = found[("prefill", 512)], found[("decode", 4096)]
    assert prefill["rounds_paired"] == 2 and prefill["matched"] == "params+quality"
    assert (prefill["speedup_low"], prefill["speedup"], prefill["speedup_high"]) == (2.0, 2.5, 3.0)
    assert (decode["speedup_low"], decode["speedup_high"]) == (2.0, 3.0)
    assert prefill["lfm2_ms"] == 100.0 and prefill["peer_ms"] == 350.0


def test_peers_report_tables_the_matched_speedups_and_the_cost_terms():
    import argparse

    peers = _load_peers()

    def row(layout, r, prefill, decode, peak):
        return {"layout": layout, "backend": "llamacpp", "quant": "q4_0", "prompt_len": 512, "context_depth": 4096,
                "round": r, "ok": True, "busy": False, "prefill_ms_median": prefill, "decode_ms_median": decode,
                "peak_bytes": peak, "threads": 2, "cache_fill": "synthetic"}

    rows = [row("lfm2-350m", 0, 100.0, 10.0, 2**30), row("qwen3-0.6b", 0, 300.0, 25.0, 2 * 2**30)]
    args = argparse.Namespace(points=[(512, 4096)], lfm2=["lfm2-350m"], peers=["qwen3-0.6b"])  # no measuring flags
    speedups = peers.speedup_rows(rows, args.lfm2, args.peers)
    text = peers.report(peers.summarize(rows, speedups, args, "cpu-test"))
    assert "Hardware profile cpu-test; 2 threads; 1 rounds; llama.cpp cache fill synthetic; 2 rows" in text
    matched = [line for line in text.splitlines() if line.startswith("| lfm2-350m | qwen3-0.6b | params+quality")]
    assert len(matched) == 2 and "3.00x" in matched[1] and "2.50x" in matched[0]  # decode sorts before prefill
    assert "| qwen3-0.6b | llamacpp:q4_0 | decode | 4096 | 1 | 25.00 | 25.00 | 25.00 | 2.00 GiB |" in text
    assert "| lfm2-350m | 354.5M |" in text and "| qwen3-0.6b | 596.0M | 26.1% | 151936 | 28 | 28 | 112.00 KiB |" in text


def test_peers_points_are_prompt_colon_depth():
    import argparse

    peers = _load_peers()
    assert peers.parse_point("2048:16384") == (2048, 16384)
    for bad in ("512", "a:1", "0:10"):
        with pytest.raises(argparse.ArgumentTypeError):
            peers.parse_point(bad)


def test_the_runner_check_refuses_a_layout_with_conv_layers_in_one_line():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "executorch_runner_check.py"), "--layout", "lfm2-350m"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith("lfm2-350m has conv layers: ExecuTorch's runner cannot call its program")


def test_peers_report_only_rebuilds_from_stored_rows_of_one_cpu_and_refuses_a_mix(tmp_path):
    import json
    import subprocess
    import sys

    def wanted(line):  # the 350M pair's q4_0 rows at 512:4096
        row = json.loads(line)
        return row["layout"] in ("lfm2-350m", "qwen3-0.6b") and row["quant"] == "q4_0" and row["context_depth"] == 4096

    stored = ROOT / "experiments" / "lfm2-vs-peers"
    rows = {cpu: [line for line in (stored / folder / "round-0.jsonl").read_text().splitlines() if wanted(line)]
            for cpu, folder in (("zen4", "."), ("zen3", "zen3"))}
    assert len(rows["zen4"]) == len(rows["zen3"]) == 2
    command = [sys.executable, str(ROOT / "benchmarks" / "peers.py"), "--report-only", "--lfm2", "lfm2-350m",
               "--peers", "qwen3-0.6b", "--points", "512:4096", "--out", str(tmp_path)]
    (tmp_path / "round-0.jsonl").write_text("\n".join(rows["zen4"]) + "\n")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["hardware"] == json.loads(rows["zen4"][0])["hardware"] and summary["rows"] == 2
    assert summary["rounds"] == 1 and summary["threads"] == "2" and summary["cache_fill_llamacpp"] == "synthetic"
    assert (tmp_path / "report.md").is_file() and (tmp_path / "peers.png").is_file()

    (tmp_path / "round-1.jsonl").write_text("\n".join(rows["zen3"]) + "\n")  # another CPU's rows beside them
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "--report-only needs the rows of one CPU" in done.stderr
    assert "Traceback" not in done.stderr
