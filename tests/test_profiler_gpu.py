"""GPU paths of the profiler: CUDA-event timing, GPU peak memory, a profile on CUDA (skipped without a GPU)."""

import time

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_cuda_event_timing_agrees_with_the_host_clock_within_ten_percent():
    from lfm2_nas.profiler.stats import summarize
    from lfm2_nas.profiler.timing import TimingConfig, sample_ms

    def spin() -> None:
        torch.cuda._sleep(20_000_000)  # tens of milliseconds of GPU time, launched asynchronously

    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(5):
        spin()
    torch.cuda.synchronize()
    host_ms = (time.perf_counter() - start) * 1e3 / 5
    events = summarize(sample_ms(spin, TimingConfig(warmup=1, min_count=5, min_duration_s=0.0), device="cuda"))
    assert events.median == pytest.approx(host_ms, rel=0.10)


def test_a_known_gpu_allocation_shows_in_the_childs_peak():
    from lfm2_nas.profiler.runner import run_in_child
    from profiler_support import ALLOCATION_BYTES

    outcome = run_in_child("profiler_support:allocate_and_measure", {"nbytes": ALLOCATION_BYTES, "device": "cuda"}, 1)
    assert outcome.ok, outcome.reason
    assert outcome.value["growth_bytes"] == pytest.approx(ALLOCATION_BYTES, rel=0.01)


def test_profile_on_cuda_reports_allocated_and_reserved_peaks(tmp_path):
    from lfm2_nas.profiler import TimingConfig, Workload, load_or_measure_hardware, profile_layout

    hardware = load_or_measure_hardware("cuda", directory=tmp_path)
    assert hardware.gpu_name and "bfloat16" in hardware.native_dtypes
    result = profile_layout("lfm2-tiny", Workload(16, 64, dtype="bfloat16", device="cuda", threads=1), hardware,
                            timing=TimingConfig(1, 5, 0.0), store=tmp_path / "rows.jsonl")
    assert result.ok, result.reason
    assert result.memory.method == "torch.cuda.max_memory_allocated"
    assert result.memory.reserved_peak_bytes >= result.memory.process_peak_bytes > 0
