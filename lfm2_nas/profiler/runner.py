"""Run one measurement in its own freshly spawned Python process.

The parent does no torch work itself. It starts ``python -m lfm2_nas.profiler.runner JOB RESULT`` with the
thread-count environment variables already set, so the child's OpenMP/MKL pools are sized before
torch initialises; the child then also calls ``torch.set_num_threads`` and records what torch reports.
A fresh process per measurement means a clean allocator, an honest peak-memory high-water mark,
and that a crash or out-of-memory kill takes down one row, not the sweep.

The child imports a target ``"module:function"``, calls it with JSON keyword arguments and writes
``{"ok": ..., "value": ..., "threads": ...}`` to the result file (atomically). An optional memory
limit (``RLIMIT_AS`` above the child's address space after start-up) turns "would not fit in N
bytes" into a real allocation failure.

Each child works in a temporary folder ``lfm2-nas-child-<parent pid>-*``; a parent killed with
``kill -9`` cannot remove it, so the first measurement of every later process removes the folders
of parents that no longer exist (:func:`remove_stale_child_folders`).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lfm2_nas.io import atomic_write_text

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_CHILD_PREFIX = "lfm2-nas-child-"
#: A child folder named without its parent's pid (older versions) is removed once it is this old.
_UNNAMED_STALE_S = 24 * 3600
_cleaned = False
_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "std::bad_alloc")


@dataclass(frozen=True)
class ChildOutcome:
    """What a child returned: ``value`` when ``ok``, else ``reason`` (one line)."""

    ok: bool
    value: Any = None
    reason: str | None = None
    threads: dict[str, Any] = field(default_factory=dict)


def run_in_child(
    target: str,
    kwargs: dict[str, Any],
    threads: int,
    timeout_s: float | None = None,
    memory_limit_bytes: int | None = None,
) -> ChildOutcome:
    """Call ``target`` (``"package.module:function"``) with ``kwargs`` in a fresh process using ``threads`` threads.

    Never raises for failures inside the child: a timeout, a crash, a signal or an exception comes
    back as ``ChildOutcome(ok=False, reason=...)``; out-of-memory reasons start with ``"out of memory"``.
    """
    global _cleaned
    if not _cleaned:
        _cleaned = True
        remove_stale_child_folders()
    env = dict(os.environ)
    env.update({name: str(threads) for name in _THREAD_VARS})
    # The child must import the same code as this process (tests add their folder to sys.path).
    env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
    with tempfile.TemporaryDirectory(prefix=f"{_CHILD_PREFIX}{os.getpid()}-") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job = {"target": target, "kwargs": kwargs, "threads": threads, "memory_limit_bytes": memory_limit_bytes}
        job_path.write_text(json.dumps(job))
        command = [sys.executable, "-m", "lfm2_nas.profiler.runner", str(job_path), str(result_path)]
        try:
            proc = subprocess.run(command, env=env, timeout=timeout_s, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except subprocess.TimeoutExpired:
            return ChildOutcome(False, reason=f"timed out after {timeout_s:g} s")
        if result_path.exists():
            data = json.loads(result_path.read_text())
            return ChildOutcome(data["ok"], data.get("value"), data.get("reason"), data.get("threads", {}))
        return ChildOutcome(False, reason=_crash_reason(proc.returncode, proc.stderr.decode(errors="replace")))


def remove_stale_child_folders(directory: str | Path | None = None) -> list[Path]:
    """Remove the child folders (in ``directory``, default the temporary folder) whose parent process
    is gone; returns them."""
    import psutil

    removed = []
    for folder in Path(directory or tempfile.gettempdir()).glob(f"{_CHILD_PREFIX}*"):
        pid = folder.name[len(_CHILD_PREFIX):].partition("-")[0]
        try:
            stale = not psutil.pid_exists(int(pid)) if pid.isdigit() else time.time() - folder.stat().st_mtime > _UNNAMED_STALE_S
        except OSError:
            continue
        if stale and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _crash_reason(returncode: int, stderr: str) -> str:
    if returncode == -signal.SIGKILL:
        return "out of memory: the measuring process was killed by SIGKILL (the OS out-of-memory killer?)"
    if returncode < 0:
        return f"the measuring process died of signal {signal.Signals(-returncode).name}"
    last = next((line for line in reversed(stderr.strip().splitlines()) if line.strip()), "no message")
    return f"the measuring process exited with status {returncode}: {last.strip()}"


def failure_reason(err: BaseException) -> str:
    """One line for an exception raised by a measurement; out-of-memory errors say so first."""
    text = f"{type(err).__name__}: {err}".splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, MemoryError) or any(m in text.lower() for m in _OOM_MARKERS):
        return f"out of memory: {text}"
    return text


def _child_main(job_path: str, result_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    import torch  # first torch import: the thread env vars are already set

    torch.set_num_threads(job["threads"])
    torch.ones(64, 64) @ torch.ones(64, 64)  # start the thread pool before any memory limit applies
    threads = {
        "threads_requested": job["threads"],
        "torch_num_threads": torch.get_num_threads(),
        **{name.lower(): os.environ.get(name) for name in _THREAD_VARS},
    }
    if job.get("memory_limit_bytes"):
        _limit_address_space(job["memory_limit_bytes"])
    module, _, name = job["target"].partition(":")
    try:
        value = getattr(importlib.import_module(module), name)(**job["kwargs"])
        result = {"ok": True, "value": value, "threads": threads}
    except Exception as err:  # any failure becomes a failed row with its reason
        traceback.print_exc()
        result = {"ok": False, "reason": failure_reason(err), "threads": threads}
    atomic_write_text(result_path, json.dumps(result))


def _limit_address_space(extra_bytes: int) -> None:
    import resource

    with open("/proc/self/status") as f:
        vm_size_kib = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    limit = vm_size_kib * 1024 + int(extra_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])
