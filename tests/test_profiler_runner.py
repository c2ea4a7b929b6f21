"""The spawned measuring process: thread count, failures, memory calibration."""

import pytest

from lfm2_nas.profiler.runner import failure_reason, run_in_child
from profiler_support import ALLOCATION_BYTES


def test_thread_count_is_set_before_torch_starts_and_recorded():
    outcome = run_in_child("profiler_support:report_threads", {}, threads=1)
    assert outcome.ok, outcome.reason
    assert outcome.value == {"torch": 1, "omp": "1"}
    assert outcome.threads["torch_num_threads"] == 1 and outcome.threads["threads_requested"] == 1


def test_a_known_allocation_shows_in_the_childs_peak_within_ten_percent():
    outcome = run_in_child("profiler_support:allocate_and_measure", {"nbytes": ALLOCATION_BYTES}, threads=1)
    assert outcome.ok, outcome.reason
    assert outcome.value["resettable"]
    assert outcome.value["growth_bytes"] == pytest.approx(ALLOCATION_BYTES, rel=0.10)


def test_failures_come_back_as_one_line_reasons():
    failed = run_in_child("profiler_support:raise_error", {"message": "boom"}, threads=1)
    assert not failed.ok and failed.reason == "KeyError: 'boom'"
    slow = run_in_child("profiler_support:sleep", {"seconds": 60}, threads=1, timeout_s=2)
    assert not slow.ok and slow.reason == "timed out after 2 s"


def test_a_memory_limit_turns_a_big_allocation_into_an_out_of_memory_reason():
    outcome = run_in_child(
        "profiler_support:allocate_and_measure", {"nbytes": ALLOCATION_BYTES}, threads=1, memory_limit_bytes=50 * 2**20
    )
    assert not outcome.ok
    assert outcome.reason.startswith("out of memory:"), outcome.reason


def test_failure_reasons_name_out_of_memory_first():
    assert failure_reason(MemoryError()) == "out of memory: MemoryError"
    assert failure_reason(RuntimeError("CUDA out of memory. Tried to allocate")).startswith("out of memory: RuntimeError")
    assert failure_reason(ValueError("bad\nsecond line")) == "ValueError: bad"


def test_child_folders_of_a_killed_parent_are_removed_by_the_next_run(tmp_path):
    """A parent killed with SIGKILL mid-measurement leaves its child's folder; the next process's
    first measurement removes it, and never a folder of a parent that still runs."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from lfm2_nas.profiler import runner

    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen(
        [sys.executable, "-c", ("from lfm2_nas.profiler.runner import run_in_child\n"
                                "run_in_child('profiler_support:sleep', {'seconds': 60}, threads=1)")],
        env=env, start_new_session=True,
    )
    deadline = time.time() + 60
    while not list(tmp_path.glob(f"lfm2-nas-child-{parent.pid}-*/job.json")) and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(parent.pid, signal.SIGKILL)  # the parent and its measuring child
    parent.wait()
    (left,) = tmp_path.glob("lfm2-nas-child-*")
    live = tmp_path / f"lfm2-nas-child-{os.getpid()}-x"
    live.mkdir()
    assert runner.remove_stale_child_folders(tmp_path) == [left]
    assert not left.exists() and live.is_dir()
