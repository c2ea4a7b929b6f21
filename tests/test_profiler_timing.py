import statistics
import time

import pytest

from lfm2_nas.profiler.stats import summarize
from lfm2_nas.profiler.settings import Settings
from lfm2_nas.profiler.timing import sample_ms


# Timing checks that a loaded machine cannot fail: a sleep lasts AT LEAST its duration (so no sample
# may be shorter), and the timed calls are parts of the whole run (so their sum may not exceed the
# run's wall time, read independently). Together they catch a timer in seconds or microseconds, one
# that returns zero, or (on a quiet machine) one off by about 10%, the share of the untimed warmup
# call; a machine that delays the sleeps only makes both sides longer.


def test_a_known_sleep_is_measured_between_its_duration_and_the_wall_time():
    start = time.perf_counter()
    samples = sample_ms(lambda: time.sleep(0.02), Settings(warmup=1, min_count=10, min_duration_s=0.0))
    wall_ms = (time.perf_counter() - start) * 1e3
    assert len(samples) == 10
    assert min(samples) >= 20.0 * 0.99  # 1%: clock granularity only
    assert sum(samples) <= wall_ms  # 11 sleeps ran, 10 were timed
    assert summarize(samples).median == pytest.approx(statistics.median(samples))


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
    # a timer that included the setup would read >= 30 ms for EVERY sample (the sleep's lower bound);
    # the median leaves room for one sample delayed by a busy machine
    assert statistics.median(samples) < 30.0 and min(samples) < 10.0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="min_count"):
        Settings(min_count=0)
    with pytest.raises(ValueError, match="warmup"):
        Settings(warmup=-1)


def test_the_host_clock_reference_measures_a_known_sleep():
    from lfm2_nas.profiler.timing import wall_ms_per_call

    start = time.perf_counter()
    per_call = wall_ms_per_call(lambda: time.sleep(0.01), 5)
    wall_ms = (time.perf_counter() - start) * 1e3
    assert 10.0 * 0.99 <= per_call <= wall_ms / 5  # at least the sleep, at most an even share of the run
