"""Hardware profiles: measured once, saved under a slug + date, reused, re-measured on request."""

import pytest

from lfm2_nas.profiler import hardware as hardware_module
from lfm2_nas.profiler.hardware import DeviceError, HardwareProfile, load_or_measure_hardware


def test_measure_save_and_reuse(tmp_path, monkeypatch):
    import lfm2_nas.profiler.result as result_module

    # saving is what this checks, not busyness: a loaded shared test machine must not stop the save
    monkeypatch.setattr(result_module, "BUSY_OTHER_CORES", float("inf"))
    profile = load_or_measure_hardware("cpu", directory=tmp_path, threads=1)
    assert profile.slug.startswith("cpu-") and profile.threads == 1
    assert (tmp_path / profile.file_name).exists() and profile.file_name == f"{profile.slug}-{profile.date}.json"
    assert profile.read_bandwidth_bytes_per_s > 1e8
    assert profile.matmul_flops_per_s["float32"] > 1e8
    assert set(profile.matmul_flops_per_s) == {"float32", "bfloat16", "float16"}
    assert profile.native_dtypes[0] == "float32"
    probe = profile.details["probe_flops_per_s"]
    for dtype in ("bfloat16", "float16"):  # native exactly when measured at >= half of float32
        assert profile.is_native(dtype) == (probe[dtype] >= 0.5 * probe["float32"])
    assert HardwareProfile.load(tmp_path / profile.file_name) == profile

    monkeypatch.setattr(hardware_module, "run_in_child", lambda *a, **k: pytest.fail("a saved profile is reused"))
    assert load_or_measure_hardware("cpu", directory=tmp_path) == profile


def test_unknown_and_missing_devices_are_clear_errors(tmp_path):
    with pytest.raises(DeviceError, match="unknown device 'gpu0'"):
        load_or_measure_hardware("gpu0", directory=tmp_path)


def test_a_corrupt_profile_file_says_so(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="is not a hardware profile"):
        HardwareProfile.load(bad)


def test_a_profile_measured_on_a_busy_machine_is_used_but_not_saved(tmp_path, monkeypatch, caplog):
    """A real process spins through the whole (stubbed, 1 s) peak measurement: its peaks would be
    too low, so the profile serves this run only, with a warning, and the next run measures again."""
    import subprocess
    import sys
    import time

    from lfm2_nas.profiler import contention
    from lfm2_nas.profiler.runner import ChildOutcome

    monkeypatch.setattr(contention, "QUIET_WAIT_S", 0.1)  # do not wait for a quiet that the spinner prevents
    peaks = {"read_bandwidth_bytes_per_s": 1e9, "matmul_flops_per_s": {"float32": 1e9}, "native_dtypes": ["float32"]}
    monkeypatch.setattr(hardware_module, "run_in_child",
                        lambda *a, **k: time.sleep(1.0) or ChildOutcome(True, peaks, threads={"torch_num_threads": 1}))
    spinner = subprocess.Popen([sys.executable, "-c", "print('spinning', flush=True)\nwhile True: pass"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert spinner.stdout.readline() == "spinning\n"
        with caplog.at_level("WARNING", logger="lfm2_nas.profiler.hardware"):
            profile = load_or_measure_hardware("cpu", directory=tmp_path, threads=1)
    finally:
        spinner.kill()
        spinner.wait()
    assert profile.read_bandwidth_bytes_per_s == 1e9 and not list(tmp_path.glob("*.json"))
    assert "measured while other processes used" in caplog.text and "not saved" in caplog.text
