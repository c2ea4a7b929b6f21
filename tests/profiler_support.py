"""Helpers for the profiler tests: a hardware profile that needs no measurement, and child targets."""

from __future__ import annotations

import time
from pathlib import Path

from lfm2_nas.profiler.hardware import HardwareProfile, device_identity

ALLOCATION_BYTES = 200 * 2**20


def fake_cpu_profile(directory: Path, kernel_table: dict[str, str] | None = None) -> HardwareProfile:
    """This machine's CPU identity with made-up peaks, bfloat16 marked NOT native, and a kernel choice
    (``kernel_table``; default: none, i.e. F.linear everywhere); saved in ``directory``."""
    profile = HardwareProfile(
        **device_identity("cpu"),
        date="2000-01-01",
        threads=1,
        read_bandwidth_bytes_per_s=20e9,
        matmul_flops_per_s={"float32": 100e9, "bfloat16": 0.5e9, "float16": 0.5e9},
        native_dtypes=("float32",),
        kernel_choice={"table": dict(kernel_table or {}), "note": "made up by the tests"},
    )
    profile.save(directory)
    return profile


def allocate_and_measure(nbytes: int, device: str = "cpu") -> dict:
    """Child target: the peak growth a known allocation (written, so resident) leaves in the high-water mark."""
    import torch

    from lfm2_nas.profiler.memory import MemoryProbe

    probe = MemoryProbe(device)

    def run() -> None:
        block = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
        del block

    _, growth, _ = probe.phase(run)
    return {"growth_bytes": growth, "resettable": probe.resettable}


def raise_error(message: str) -> None:
    """Child target that fails."""
    raise KeyError(message)


def sleep(seconds: float) -> float:
    """Child target that takes ``seconds``."""
    time.sleep(seconds)
    return seconds


def report_threads() -> dict:
    """Child target: the thread settings torch sees."""
    import os

    import torch

    return {"torch": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS")}
