"""Hardware profile of a device: what it is, and its measured read bandwidth and matmul throughput.

The measured peaks are the roofline every result row is compared with. A profile is saved as
``profiles/<device-slug>-<YYYY-MM-DD>.json`` and reused while one exists for the slug; pass
``remeasure=True`` (``lfm2-nas profile hardware --remeasure``) to measure again.

Which reduced-precision dtypes are usable is MEASURED, never read from CPU flags: a dtype counts as
native when its matmul throughput is at least half of float32's. On a CPU without bf16 instructions
torch still runs bfloat16, only orders of magnitude slower; such a dtype is refused by the profiler
unless explicitly allowed (and then every row says so).

The profile also holds the CPU's **kernel choice** (``kernel_choice``): for each (phase, dtype, weight
size bucket) of the model's projections, which candidate kernel of :mod:`lfm2_nas.kernels` was fastest
when each was timed here (:func:`measure_kernel_choice`), with the timings that decided it. The
measuring child and the speed benchmark install it before building a model
(:func:`applicable_kernel_choice`); it is applied only on the machine it was measured on (the same
slug, CPU fingerprint and torch version), never another's. A profile saved before kernel tables existed still loads:
:func:`load_or_measure_hardware` then measures the table once (a child process, a few seconds), adds
it to the saved file and says so in the log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lfm2_nas.io import atomic_write_text
from lfm2_nas.profiler.runner import run_in_child
from lfm2_nas.profiler.settings import available_cpus, check_device

log = logging.getLogger(__name__)

#: A dtype is native when its matmul throughput reaches this fraction of float32's.
NATIVE_FRACTION = 0.5
REDUCED_DTYPES = ("bfloat16", "float16")
#: Other processes' CPU use (cores) above which a kernel table's timings are called disturbed.
BUSY_KERNEL_TIMING = 0.25
log = logging.getLogger(__name__)
_ISA_TAGS = (("amx_bf16", "amx"), ("avx512_bf16", "avx512bf16"), ("avx512f", "avx512"), ("avx2", "avx2"))


class DeviceError(ValueError):
    """A device that is unknown or not usable on this machine."""


def profiles_dir() -> Path:
    """Where hardware profiles (and the default result cache) live: ``$LFM2_NAS_PROFILES`` or ``./profiles``."""
    return Path(os.environ.get("LFM2_NAS_PROFILES", "profiles"))


@dataclass(frozen=True)
class HardwareProfile:
    """One device, as measured: identity, environment and peak rates (bytes/s, FLOP/s)."""

    slug: str
    date: str
    device: str
    cpu_model: str
    cpu_isa: tuple[str, ...]
    physical_cores: int | None
    logical_cpus: int
    threads: int
    memory_bytes: int
    gpu_name: str | None
    gpu_memory_bytes: int | None
    torch_version: str
    cuda_version: str | None
    python_version: str
    read_bandwidth_bytes_per_s: float
    matmul_flops_per_s: dict[str, float]
    native_dtypes: tuple[str, ...]
    details: dict[str, Any] = field(default_factory=dict)
    #: ``{"table": {"phase/dtype/bucket": kernel}, "seconds_per_call": {...}, ...}`` (CPU; see
    #: :func:`measure_kernel_choice`); empty for a GPU and in profiles saved before it existed.
    kernel_choice: dict[str, Any] = field(default_factory=dict)

    @property
    def kernel_table(self) -> dict[str, str]:
        """The measured ``{"phase/dtype/bucket": kernel}`` choice (``{}``: none measured)."""
        return dict(self.kernel_choice.get("table", {}))

    @property
    def file_name(self) -> str:
        return f"{self.slug}-{self.date}.json"

    @property
    def label(self) -> str:
        """``slug@date``: which measurement a result row's roofline fractions refer to."""
        return f"{self.slug}@{self.date}"

    def is_native(self, dtype: str) -> bool:
        return dtype in self.native_dtypes

    def peak_flops(self, dtype: str) -> float:
        """Measured matmul FLOP/s at ``dtype`` (float32's where that dtype was not measured)."""
        return self.matmul_flops_per_s.get(dtype, self.matmul_flops_per_s["float32"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HardwareProfile:
        data = dict(data)
        for key in ("cpu_isa", "native_dtypes"):
            data[key] = tuple(data[key])
        return cls(**data)

    def save(self, directory: Path | None = None) -> Path:
        """Write ``<directory>/<slug>-<date>.json`` atomically; return its path."""
        directory = directory or profiles_dir()
        return atomic_write_text(directory / self.file_name, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> HardwareProfile:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is not a hardware profile: {err}") from None


def load_or_measure_hardware(
    device: str = "cpu", remeasure: bool = False, directory: Path | None = None, threads: int | None = None
) -> HardwareProfile:
    """The newest saved profile of ``device`` on this machine, or a fresh measurement (saved).

    ``threads``: CPU threads for a new measurement (default: every CPU this process may use).
    Raises :class:`DeviceError` for an unknown device or a GPU this machine does not have.
    """
    try:
        check_device(device)
    except ValueError as err:
        raise DeviceError(str(err)) from None
    directory = directory or profiles_dir()
    identity = device_identity(device)
    saved = _saved(identity["slug"], directory)
    if saved and not remeasure:
        profile = HardwareProfile.load(saved[-1])
        if _needs_kernel_choice(profile):
            profile = _add_kernel_choice(profile, saved[-1], threads or profile.threads)
        return profile
    from lfm2_nas.profiler import result as result_module
    from lfm2_nas.profiler.contention import OtherCpuMeter, wait_for_quiet

    threads = threads or available_cpus()
    wait_for_quiet(result_module.BUSY_OTHER_CORES)
    meter = OtherCpuMeter(children=True)
    outcome = run_in_child("lfm2_nas.profiler.hardware:measure_peaks", {"device": device}, threads)
    other = meter.other_cores()
    if not outcome.ok:
        raise DeviceError(f"measuring {device} failed: {outcome.reason}")
    profile = HardwareProfile.from_dict({
        "date": dt.date.today().isoformat(),
        "threads": outcome.threads.get("torch_num_threads", threads),
        **identity,
        **outcome.value,
    })
    if other > result_module.BUSY_OTHER_CORES:  # peaks measured busy are too low: every roofline would lie
        log.warning("hardware profile of %s measured while other processes used %.2f CPU cores: used for this run "
                    "only, not saved (it is measured again next time)", device, other)
        return profile
    profile.save(directory)
    return profile


def has_saved_profile(device: str, directory: Path | None = None) -> bool:
    """Whether this machine already has a complete saved profile of ``device`` (measuring one, or the
    kernel table an older profile lacks, needs the CPU to itself, so callers that share the machine
    take a lock first)."""
    saved = _saved(device_identity(device)["slug"], directory or profiles_dir())
    if not saved:
        return False
    try:
        return not _needs_kernel_choice(HardwareProfile.load(saved[-1]))
    except ValueError:
        return False


def _needs_kernel_choice(profile: HardwareProfile) -> bool:
    return profile.device == "cpu" and not profile.kernel_choice


def _add_kernel_choice(profile: HardwareProfile, path: Path, threads: int) -> HardwareProfile:
    """An older CPU profile (no kernel table): measure the table once, save it into the same file."""
    log.warning("hardware profile %s has no kernel choice (saved by an older version): measuring it now", path.name)
    dtypes = [d for d in profile.native_dtypes if d in ("float32", *REDUCED_DTYPES)]
    outcome = run_in_child("lfm2_nas.profiler.hardware:measure_kernel_choice", {"dtypes": dtypes}, threads)
    if not outcome.ok:
        log.warning("measuring the kernel choice failed (%s): F.linear is used everywhere", outcome.reason)
        return profile
    profile = replace(profile, kernel_choice={**outcome.value, "added_to_older_profile": dt.date.today().isoformat()})
    profile.save(path.parent)
    return profile


def applicable_kernel_choice(profile: HardwareProfile | None) -> tuple[dict[str, str], str]:
    """The kernel table to install for a measurement on THIS machine, and where it comes from.

    ``profile``'s table when it was measured here (the same slug and torch version as this process
    sees); otherwise ``{}`` (``F.linear`` everywhere, :mod:`lfm2_nas.kernels`' default) with the reason:
    no profile, no table in it, another machine's profile, or another torch's.
    """
    if profile is None:
        return {}, "default: no hardware profile"
    if profile.device != "cpu":
        return {}, f"default: {profile.device} uses F.linear"
    if not profile.kernel_table:
        return {}, f"default: profile {profile.label} has no kernel table"
    identity = device_identity("cpu")
    if identity["slug"] != profile.slug:
        return {}, f"default: profile {profile.label} is for another machine (this one is {identity['slug']})"
    measured_on = profile.kernel_choice.get("cpu_fingerprint")
    if measured_on is not None and measured_on != cpu_fingerprint():
        return {}, f"default: profile {profile.label} was measured on another CPU of the same slug " \
                   f"({measured_on}, this is {cpu_fingerprint()})"
    if identity["torch_version"] != profile.torch_version:
        return {}, f"default: profile {profile.label} was measured with torch {profile.torch_version}, " \
                   f"this is {identity['torch_version']}"
    other = profile.kernel_choice.get("other_cpu_cores")
    if other is not None and other > BUSY_KERNEL_TIMING:
        log.warning("the kernel table of %s was timed while other processes used %.2f CPU cores; "
                    "re-measure it on a quiet machine (lfm2-nas profile hardware --remeasure)", profile.label, other)
        return profile.kernel_table, f"measured: profile {profile.label} (timed on a busy machine: {other:.2f} other cores)"
    return profile.kernel_table, f"measured: profile {profile.label}"


def _saved(slug: str, directory: Path) -> list[Path]:
    """Saved profile files of ``slug``, oldest first (``<slug>-YYYY-MM-DD.json``)."""
    return sorted(directory.glob(f"{slug}-????-??-??.json"))


def device_identity(device: str) -> dict[str, Any]:
    """Identity fields of a profile (no measurement): slug, CPU, memory, GPU, versions."""
    info = _cpu_info()
    identity: dict[str, Any] = {
        "device": device,
        "cpu_model": info["model"],
        "cpu_isa": info["isa"],
        "physical_cores": _physical_cores(),
        "logical_cpus": os.cpu_count() or 1,
        "memory_bytes": _memory_bytes(),
        "python_version": platform.python_version(),
    }
    if device == "cpu":
        from importlib.metadata import version

        isa = next((tag for flag, tag in _ISA_TAGS if flag in info["isa"]), "base")
        identity.update(
            gpu_name=None, gpu_memory_bytes=None, torch_version=version("torch"), cuda_version=None,
            slug=f"cpu-{_slugify(info['model'])}-{identity['logical_cpus']}cpu-{isa}",
        )
        return identity
    outcome = run_in_child("lfm2_nas.profiler.hardware:cuda_identity", {"device": device}, 1)
    if not outcome.ok:
        raise DeviceError(f"device {device} is not usable here: {outcome.reason}")
    gpu = outcome.value
    identity.update(gpu, slug=f"{_slugify(gpu['gpu_name'])}-{gpu['gpu_memory_bytes'] // 2**30}gib")
    return identity


def _cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    if match := re.search(r"^model name\s*:\s*(.+)$", text, flags=re.M):
        model = match.group(1).strip()
    if match := re.search(r"^flags\s*:\s*(.+)$", text, flags=re.M):
        flags = set(match.group(1).split())
    interesting = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "fma")
    return {"model": model, "isa": tuple(f for f in interesting if f in flags)}


def cpu_fingerprint() -> str:
    """Vendor, family, model, stepping and cache size from ``/proc/cpuinfo`` (finer than the slug, whose CPU
    name may be generic in a VM, e.g. "AMD EPYC" for Zen 3 and Zen 4 alike); ``""`` where unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    keys = ("vendor_id", "cpu family", "model", "stepping", "cache size")
    found = {key: m.group(1).strip() for key in keys if (m := re.search(rf"^{key}\s*:\s*(.+)$", text, flags=re.M))}
    return "/".join(found.get(key, "?") for key in keys)


def _physical_cores() -> int | None:
    import psutil

    return psutil.cpu_count(logical=False)


def _memory_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


# ---- run inside a measuring child (these import torch) ---------------------------------------


def cuda_identity(device: str) -> dict[str, Any]:
    """GPU name, memory and the torch/CUDA versions (child target)."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("CUDA is not available (torch.cuda.is_available() is False)")
    props = torch.cuda.get_device_properties(torch.device(device))
    return {
        "gpu_name": props.name,
        "gpu_memory_bytes": int(props.total_memory),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
    }


def measure_peaks(device: str) -> dict[str, Any]:
    """Read bandwidth and matmul throughput per dtype on ``device`` (child target, ~10 seconds).

    Each rate is measured with every kernel torch offers for it here (on CPU: ``a @ b`` through
    MKL and oneDNN's linear, the one the model uses; a plain reduction and a matrix-vector product
    for reading memory) and the fastest counts: a roofline needs what the device can do. For the
    same reason a rate is the BEST of several samples (interference only slows a sample down);
    medians are kept in ``details`` with every kernel's figure.
    """
    import torch

    from lfm2_nas.profiler.contention import OtherCpuMeter
    from lfm2_nas.profiler.stats import summarize
    from lfm2_nas.profiler.settings import Settings
    from lfm2_nas.profiler.timing import sample_ms

    meter = OtherCpuMeter()
    cuda = device.startswith("cuda")
    config = Settings(warmup=2, min_count=5, min_duration_s=0.5)
    onednn = not cuda and torch.backends.mkldnn.is_available()

    def linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # x (m, k) @ w (n, k)^T, as in the model
        return torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")

    def best(kernels: dict[str, Any], work: float, timing: Settings = config) -> tuple[float, dict, dict]:
        """Best rate (``work`` per second) over the kernels that run, and each one's best and median rate."""
        stats = {name: summarize(sample_ms(fn, timing, device=device)) for name, fn in kernels.items() if _runs(fn)}
        peak = {name: work / (s.min / 1e3) for name, s in stats.items()}
        median = {name: work / (s.median / 1e3) for name, s in stats.items()}
        return max(peak.values()), peak, median

    with torch.inference_mode():
        # Reading memory: a buffer far larger than any cache (1 GiB on GPU, 256 MiB on CPU).
        elements = 2**28 if cuda else 2**26
        buffer = torch.ones(elements, dtype=torch.float32, device=device)
        weight, vector = buffer.view(-1, 4096), torch.ones(1, 4096, device=device)
        readers = {"sum": lambda: buffer.sum(), "matvec": lambda: weight @ vector[0]}
        if onednn:
            readers["onednn_matvec"] = lambda: linear(vector, weight)
        bandwidth, read_peaks, read_medians = best(readers, buffer.nbytes)
        del buffer, weight

        def matmul_kernels(n: int, dtype: torch.dtype) -> dict[str, Any]:
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            kernels = {"matmul": lambda: a @ b}
            if onednn:
                kernels["onednn_linear"] = lambda: linear(a, b)
            return kernels

        # A small probe first: an emulated dtype can be ~100x slower, too slow for a full-size run.
        probe_n, full_n = (2048, 8192) if cuda else (512, 2048)
        quick = Settings(warmup=1, min_count=3, min_duration_s=0.0)
        probe = {name: best(matmul_kernels(probe_n, getattr(torch, name)), 2 * probe_n**3, quick)[0]
                 for name in ("float32", *REDUCED_DTYPES)}
        native = tuple(name for name in REDUCED_DTYPES if probe[name] >= NATIVE_FRACTION * probe["float32"])
        full = {name: best(matmul_kernels(full_n, getattr(torch, name)), 2 * full_n**3) for name in ("float32", *native)}
    flops = {name: result[0] for name, result in full.items()}
    flops.update({name: probe[name] for name in REDUCED_DTYPES if name not in native})
    choice = {} if cuda else measure_kernel_choice(["float32", *native])
    return {
        "kernel_choice": choice,
        "read_bandwidth_bytes_per_s": bandwidth,
        "matmul_flops_per_s": flops,
        "native_dtypes": ("float32", *native),
        "details": {
            "peak_is": "best kernel, best of the samples",
            "read_buffer_bytes": elements * 4,
            "read_bytes_per_s_by_kernel": read_peaks,
            "read_median_bytes_per_s_by_kernel": read_medians,
            "matmul_n": full_n,
            "matmul_flops_per_s_by_kernel": {name: result[1] for name, result in full.items()},
            "matmul_median_flops_per_s_by_kernel": {name: result[2] for name, result in full.items()},
            "probe_n": probe_n,
            "probe_flops_per_s": probe,
            "cuda_tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if cuda else None,
            "other_cpu_cores": meter.other_cores(),
        },
    }


def measure_kernel_choice(
    dtypes: list[str], repeats: int = 5, pool_bytes: int = 128 << 20, prefill_rows: int = 128,
    timer: Any = None,
) -> dict[str, Any]:
    """Time every kernel of :data:`lfm2_nas.kernels.KERNELS` for each (phase, dtype, size bucket) and
    choose the fastest (:func:`lfm2_nas.kernels.choose`); CPU, child target (a few seconds per dtype).

    Each bucket is timed on its representative weight shape (:data:`lfm2_nas.kernels.BUCKET_SHAPES`).
    Decode (one row): over a pool of distinct weights totalling ``pool_bytes`` (beyond the last-level
    cache), so every call reads its weight from memory as in a decode step. Prefill (``prefill_rows``
    rows, compute-bound): two weights. Kernels alternate order within each of ``repeats`` repeats
    (after one warm-up); a kernel's figure is its median seconds per call. Kernels that do not run
    here (oneDNN bf16 without AVX-512) are left out. ``timer(kernel_name, fn, calls) -> seconds`` may be
    injected (tests); by default ``perf_counter`` around the calls.
    """
    import time

    import torch

    from lfm2_nas import kernels

    def perf_timer(name: str, fn: Any, calls: int) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    from lfm2_nas.profiler.contention import OtherCpuMeter

    timer = timer or perf_timer
    meter = OtherCpuMeter()
    timings: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            for size, shape in kernels.BUCKET_SHAPES.items():
                pool = max(2, pool_bytes // (shape[0] * shape[1] * dtype.itemsize))
                weights = [(torch.randn(shape) * 0.02).to(dtype) for _ in range(pool)]
                for phase, rows in (("decode", 1), ("prefill", prefill_rows)):
                    x = torch.randn(1, rows, shape[1]).to(dtype)
                    used = weights if rows == 1 else weights[:2]
                    runnable = {name: fn for name, fn in kernels.KERNELS.items()
                                if kernels.runs(lambda fn=fn, x=x, w=used[0]: fn(x, w, None))}

                    def calls(fn: Any, x: Any = x, used: list = used) -> None:
                        for w in used:
                            fn(x, w, None)

                    samples: dict[str, list[float]] = {name: [] for name in runnable}
                    for repeat in range(repeats + 1):  # repeat 0 warms up (primitive creation, first touch)
                        order = list(runnable) if repeat % 2 else list(runnable)[::-1]
                        for name in order:
                            seconds = timer(name, lambda fn=runnable[name]: calls(fn), len(used))
                            if repeat:
                                samples[name].append(seconds / len(used))
                    timings[kernels.key_name((phase, dtype_name, size))] = {
                        name: sorted(s)[len(s) // 2] for name, s in samples.items()}
                del weights
    return {
        "table": kernels.choose(timings),
        "seconds_per_call": timings,
        "statistic": f"median of {repeats} repeats, kernels alternating",
        "shapes": {size: list(shape) for size, shape in kernels.BUCKET_SHAPES.items()},
        "prefill_rows": prefill_rows,
        "decode_pool_bytes": pool_bytes,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "other_cpu_cores": meter.other_cores(),  # above ~0.25 the timings were disturbed: --remeasure
        "cpu_fingerprint": cpu_fingerprint(),
    }


def _runs(kernel: Any) -> bool:
    """Whether a kernel runs at all (oneDNN has no float16 inner product on most CPUs)."""
    try:
        kernel()
    except RuntimeError:
        return False
    return True
