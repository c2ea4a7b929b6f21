"""One profile's result and its tidy row (full spec, workload, environment, stats, roofline, memory)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from lfm2_nas import cost
from lfm2_nas.profiler.memory import MemoryReport
from lfm2_nas.profiler.settings import Settings
from lfm2_nas.profiler.stats import Stats
from lfm2_nas.spec import ModelSpec

SPEC_PREFIX = "spec_"
#: A measurement during which other processes used more CPU cores than this is flagged ``busy``.
BUSY_OTHER_CORES = 0.25
#: Environment columns of a row (filled by the profiler; kept when a cached row is read back).
ENVIRONMENT_COLUMNS = (
    "measured_at", "decode_path", "other_cpu_cores", "python_version", "torch_version", "cuda_version", "cpu_model", "gpu_name",
    # the linear kernels: where the choice came from, and which kernel each projection class used
    "kernel_choice", "linear_kernels",
    "threads_requested", "torch_num_threads", "omp_num_threads", "mkl_num_threads", "openblas_num_threads",
    "prefill_ms_process_medians", "decode_ms_process_medians",
    # deployment runtimes: the artifact measured and what exporting it cost
    "runtime_version", "artifact_bytes", "export_s", "export_peak_bytes", "artifact_details",
    "runtime_weights_bytes", "runtime_cache_bytes", "runtime_compute_bytes", "runtime_decode_ms", "runtime_prefill_ms",
)
#: The settings that decide what a timing means; ``timeout_s`` only decides whether one is taken.
_TIMING_KEYS = ("warmup", "min_count", "min_duration_s", "processes")


def result_key(spec: ModelSpec, settings: Settings, hardware_slug: str, runtime_version: str | None = None) -> str:
    """Cache key of a measurement: (spec, hardware, resolved workload, timing, cache fill, memory limit,
    and for a deployment runtime its backend, scheme and version). Torch-backend keys are those of
    results stored before backends existed, so those stay valid."""
    s = settings.resolved()
    workload = s.workload()
    runtime = {k: workload.pop(k) for k in ("backend", "quant")}
    parts: dict = {
        "spec": spec.spec_hash(),
        "hardware": hardware_slug,
        "workload": workload,
        "timing": {k: getattr(s, k) for k in _TIMING_KEYS},
        "cache_fill": s.cache_fill,
        "memory_limit_bytes": s.memory_limit_bytes,
    }
    if s.backend != "torch":
        parts["runtime"] = {**runtime, "version": runtime_version}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class ProfileResult:
    """What :func:`lfm2_nas.profiler.profile_layout` returns.

    ``ok`` False means nothing was measured and ``reason`` says why (out of memory, timeout, refused
    dtype...). Times are milliseconds: ``prefill_ms`` per prompt (the time to first token) and
    ``decode_ms_per_token`` per decode step (one token for each of ``batch`` sequences).
    """

    key: str
    label: str
    spec: ModelSpec
    settings: Settings
    ok: bool
    reason: str | None = None
    dtype_native: bool = True
    prefill_ms: Stats | None = None
    decode_ms_per_token: Stats | None = None
    memory: MemoryReport | None = None
    hardware: str | None = None
    peak_bandwidth_bytes_per_s: float | None = None
    peak_flops_per_s: float | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    cached: bool = False

    # ---- derived figures ---------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True when other processes used more than :data:`BUSY_OTHER_CORES` cores during the measurement."""
        other = self.environment.get("other_cpu_cores")
        return other is not None and other > BUSY_OTHER_CORES

    @property
    def peak_bytes(self) -> int | None:
        """Peak memory above the process baseline (weights + cache + activations), bytes."""
        return self.memory.peak_bytes if self.memory else None

    @property
    def ttft_ms(self) -> float | None:
        """Time to first token: the median prefill (it produces the first token's logits)."""
        return self.prefill_ms.median if self.prefill_ms else None

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Tokens per second over the whole batch: ``batch * 1000 / median decode ms``."""
        if not self.decode_ms_per_token:
            return None
        return self.settings.batch * 1e3 / self.decode_ms_per_token.median

    def roofline(self) -> dict[str, float | None]:
        """Achieved FLOP/s and bytes/s from the cost model's work over the median times, and their
        fraction of the hardware profile's measured peaks."""
        wl, spec = self.settings, self.spec
        out: dict[str, float | None] = {
            "prefill_flops": float(cost.prefill_flops(spec, wl.prompt_len, wl.batch)),
            "decode_flops": float(cost.decode_flops(spec, wl.context_depth, wl.batch)),
            "decode_read_bytes": float(self._decode_read_bytes()),
        }
        rates = {"prefill_flops_per_s": None, "decode_flops_per_s": None, "decode_bytes_per_s": None}
        if self.prefill_ms:
            rates["prefill_flops_per_s"] = out["prefill_flops"] / (self.prefill_ms.median / 1e3)
        if self.decode_ms_per_token:
            step_s = self.decode_ms_per_token.median / 1e3
            rates["decode_flops_per_s"] = out["decode_flops"] / step_s
            rates["decode_bytes_per_s"] = out["decode_read_bytes"] / step_s
        out.update(rates)
        out["prefill_flops_fraction"] = _fraction(rates["prefill_flops_per_s"], self.peak_flops_per_s)
        out["decode_flops_fraction"] = _fraction(rates["decode_flops_per_s"], self.peak_flops_per_s)
        out["decode_bandwidth_fraction"] = _fraction(rates["decode_bytes_per_s"], self.peak_bandwidth_bytes_per_s)
        return out

    def _decode_read_bytes(self) -> int:
        """Bytes one decode step reads: the cost model's weights and K/V at ``dtype`` (torch); for a
        deployment runtime, the artifact's size on disk (its weights as stored, quantized or not) plus
        the K/V the cost model gives at the runtime's cache dtype."""
        wl, spec = self.settings, self.spec
        artifact = self.environment.get("artifact_bytes")
        if wl.backend == "torch" or artifact is None:
            return cost.decode_read_bytes(spec, wl.context_depth, wl.batch, wl.dtype)
        from lfm2_nas.runtimes import CACHE_DTYPES

        return int(artifact) + cost.kv_cache_bytes(spec, wl.context_depth, wl.batch, CACHE_DTYPES[wl.backend])

    # ---- rows ----------------------------------------------------------------------------------
    def to_row(self) -> dict[str, Any]:
        """One tidy row: every spec field, the workload, settings, environment and all measurements."""
        spec = self.spec
        row: dict[str, Any] = {
            "key": self.key,
            "layout": self.label,
            "spec_hash": spec.spec_hash(),
            **{SPEC_PREFIX + k: v for k, v in spec.to_dict().items()},
            "params": cost.param_count(spec),
            "non_embedding_params": cost.non_embedding_params(spec),
            "num_layers": spec.num_layers,
            "num_attention_layers": spec.num_attention_layers,
            "num_conv_layers": spec.num_conv_layers,
            "ffn_dim": spec.ffn_dim,
            **self.settings.resolved().to_dict(),
            "ok": self.ok,
            "reason": self.reason,
            "dtype_native": self.dtype_native,
            "busy": self.busy,
            "ttft_ms": self.ttft_ms,
            "decode_tokens_per_s": self.decode_tokens_per_s,
        }
        for prefix, stats in (("prefill_ms", self.prefill_ms), ("decode_ms", self.decode_ms_per_token)):
            row.update(stats.to_flat(prefix) if stats else {f"{prefix}_median": None})
        row.update(self.roofline())
        if self.memory:
            row.update(self.memory.to_flat())
        row.update(
            hardware=self.hardware,
            peak_bandwidth_bytes_per_s=self.peak_bandwidth_bytes_per_s,
            peak_flops_per_s=self.peak_flops_per_s,
            **self.environment,
        )
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ProfileResult:
        """Rebuild a result from :meth:`to_row` output (a cached row)."""
        spec = spec_from_row(row)
        return cls(
            key=row["key"],
            label=row["layout"],
            spec=spec,
            settings=Settings.from_dict(row),
            ok=bool(row["ok"]),
            reason=row.get("reason"),
            dtype_native=bool(row.get("dtype_native", True)),
            prefill_ms=Stats.from_flat(row, "prefill_ms"),
            decode_ms_per_token=Stats.from_flat(row, "decode_ms"),
            memory=MemoryReport.from_flat(row),
            hardware=row.get("hardware"),
            peak_bandwidth_bytes_per_s=row.get("peak_bandwidth_bytes_per_s"),
            peak_flops_per_s=row.get("peak_flops_per_s"),
            environment={k: row[k] for k in ENVIRONMENT_COLUMNS if k in row},
            cached=True,
        )


def spec_from_row(row: dict[str, Any]) -> ModelSpec:
    """The layout of a row (its ``spec_*`` columns); numpy scalars from pandas become Python values.

    An empty cell (null, or NaN in a frame where other layouts set the column) takes the field's
    default: :meth:`ModelSpec.to_dict` leaves the fields added for peer models out while they have it.
    """
    fields = {k[len(SPEC_PREFIX):]: v for k, v in row.items() if k.startswith(SPEC_PREFIX) and k != "spec_hash"}
    values = {k: v.item() if hasattr(v, "item") else v for k, v in fields.items()}
    values = {k: v for k, v in values.items() if v is not None and v == v}  # NaN != NaN
    # pandas stores an integer column with empty cells as floats: give the integer fields ints back.
    integers = {f.name for f in dataclasses.fields(ModelSpec) if f.type.startswith("int")}
    return ModelSpec.from_dict({k: int(v) if k in integers and isinstance(v, float) and v.is_integer() else v for k, v in values.items()})


def _fraction(value: float | None, peak: float | None) -> float | None:
    return value / peak if value is not None and peak else None
