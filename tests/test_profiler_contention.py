import subprocess
import sys
import time

import psutil

from lfm2_nas.profiler.contention import OtherCpuMeter


def test_another_process_spinning_shows_as_the_cpu_it_used():
    """The meter against the spinner's own CPU time over the same window, not against a fixed "one
    core": on a shared machine the spinner may get less than a core, and others may add more."""
    spinner = subprocess.Popen([sys.executable, "-c", "print('spinning', flush=True)\nwhile True: pass"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert spinner.stdout.readline() == "spinning\n"  # started, however slowly the machine starts it
        process = psutil.Process(spinner.pid)
        before = sum(process.cpu_times()[:2])
        meter = OtherCpuMeter()
        start = time.perf_counter()
        time.sleep(1.0)
        other = meter.other_cores()
        spun = (sum(process.cpu_times()[:2]) - before) / (time.perf_counter() - start)
    finally:
        spinner.kill()
        spinner.wait()
    assert spun > 0.1  # it really ran (a core to itself gives ~1)
    assert other >= 0.9 * spun - 0.05  # everything the spinner used shows (10% and 0.05 core: tick granularity)
    assert other <= (psutil.cpu_count() or 1) + 0.1  # in cores, not percent


def test_waiting_for_quiet_is_bounded_and_reported(caplog):
    from lfm2_nas.profiler.contention import wait_for_quiet

    looks = iter([1.5, 0.9, 0.1])  # other processes' cores in successive windows
    with caplog.at_level("WARNING", logger="lfm2_nas.profiler.contention"):
        calm = wait_for_quiet(0.25, max_wait_s=10, window_s=0.01, sample=lambda w: time.sleep(w) or next(looks))
    assert calm.quiet and calm.other_cores == 0.1
    assert caplog.text.count("machine busy (other processes use 1.50 CPU cores); waiting up to 10 s for quiet") == 1
    start = time.perf_counter()
    busy = wait_for_quiet(0.25, max_wait_s=0.3, window_s=0.05, sample=lambda w: time.sleep(w) or 2.0)
    assert not busy.quiet and busy.other_cores == 2.0 and 0.3 <= busy.waited_s < 1.0
    assert time.perf_counter() - start < 1.0
    assert wait_for_quiet(float("inf"), sample=lambda w: 1 / 0).quiet  # an unreachable threshold never looks

