import time

import pytest

from lfm2_nas.profiler.stats import summarize
from lfm2_nas.profiler.settings import Settings
from lfm2_nas.profiler.timing import sample_ms


def test_a_known_sleep_is_measured_within_ten_percent():
    samples = sample_ms(lambda: time.sleep(0.02), Settings(warmup=1, min_count=10, min_duration_s=0.0))
    assert summarize(samples).median == pytest.approx(20.0, rel=0.10)


def test_the_loop_needs_both_the_minimum_count_and_the_minimum_duration():
    calls = []
    fast = sample_ms(lambda: calls.append(1), Settings(warmup=3, min_count=5, min_duration_s=0.2))
    assert len(fast) > 5  # count reached at once; kept sampling until 0.2 s passed
    assert len(calls) == len(fast) + 3  # warmup calls ran and were not kept
    slow = sample_ms(lambda: time.sleep(0.01), Settings(warmup=0, min_count=7, min_duration_s=0.0))
    assert len(slow) == 7  # duration reached at once; kept sampling until 7 samples


def test_setup_runs_before_every_call_and_is_not_timed():
    order = []

    def setup():
        order.append("setup")
        time.sleep(0.03)

    samples = sample_ms(lambda: order.append("call"), Settings(warmup=1, min_count=3, min_duration_s=0.0), setup=setup)
    assert order == ["setup", "call"] * 4
    assert max(samples) < 10.0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="min_count"):
        Settings(min_count=0)
    with pytest.raises(ValueError, match="warmup"):
        Settings(warmup=-1)


def test_the_host_clock_reference_measures_a_known_sleep():
    from lfm2_nas.profiler.timing import wall_ms_per_call

    assert wall_ms_per_call(lambda: time.sleep(0.01), 5) == pytest.approx(10.0, rel=0.10)
