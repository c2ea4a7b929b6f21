import subprocess
import sys
import time

from lfm2_nas.profiler.contention import OtherCpuMeter


def test_another_process_spinning_shows_as_about_one_other_core():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start
        meter = OtherCpuMeter()
        time.sleep(1.0)
        other = meter.other_cores()
    finally:
        spinner.kill()
        spinner.wait()
    assert other > 0.7  # one full core, plus whatever else the machine is doing
