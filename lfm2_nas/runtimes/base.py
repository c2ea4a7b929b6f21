"""The small interface every way of running a layout offers the profiler.

A *runtime* turns a :class:`~lfm2_nas.spec.ModelSpec` (with seeded random weights, or a checkpoint's)
into an artifact on disk and runs it: ``torch`` (eager PyTorch, the model in :mod:`lfm2_nas.model`),
``executorch`` (a ``.pte`` program for the XNNPACK backend) and ``llamacpp`` (a GGUF file run by
llama.cpp). The profiler picks one by name (:func:`lfm2_nas.runtimes.get_runtime`) and calls it
inside a freshly spawned measuring process, so the interface is deliberately small:

* :meth:`Runtime.export` writes the artifact for ``(spec, quant, max_len)`` and says what it cost;
* :meth:`Runtime.load` opens it with a thread count fixed before the runtime starts its pool;
* a :class:`Session` runs a prompt from an empty cache, one decode step at the current position,
  rewinds the cache to a depth (the profiler times every decode step at the same depth), and reports
  the runtime's own memory figures. A session may also offer ``perf(reset)``, the runtime's own
  timing counters (``eval_ms_per_token``, ``prompt_ms``), which the profiler records beside its own.

:meth:`Runtime.export` runs the export in a freshly spawned process of its own (its peak memory is
the export's, and a crash costs one export), so callers call it directly.

Batch is 1 for the deployment runtimes (what phones and laptops run). Logits come back as a
``numpy`` float32 vector over the vocabulary (the last position), so parity tests compare them with
the torch model's directly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

from lfm2_nas.spec import ModelSpec


class RuntimeUnavailable(RuntimeError):
    """The runtime's Python package is not installed; the message names the install command."""


class LoadError(RuntimeError):
    """An artifact that cannot be opened (missing, truncated or corrupt); the message says which."""


class ExportError(ValueError):
    """A layout or quantization scheme the runtime cannot represent; the message says which and why."""


@dataclass(frozen=True)
class Artifact:
    """An exported program on disk and what making it cost.

    ``size_bytes`` is the file's size on disk; ``export_s`` the wall time of export (+ quantization);
    ``export_peak_rss_bytes`` the exporting process's resident high-water mark; ``details`` holds
    scheme facts worth recording (e.g. ``group_size`` of a 4-bit weight quantization).
    """

    path: Path
    backend: str
    quant: str
    runtime_version: str
    max_len: int
    size_bytes: int
    export_s: float
    export_peak_rss_bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        return cls(**{**data, "path": Path(data["path"])})


class Session(Protocol):
    """A loaded artifact with its cache (``max_len`` positions, batch 1)."""

    max_len: int

    def prefill(self, tokens: Sequence[int]) -> Any:
        """Run ``tokens`` from position 0 (the cache is emptied first, conv state included); the last
        position's logits."""

    def step(self, token: int) -> Any:
        """One decode step at the current position (which then advances by one); its logits."""

    def rewind(self, depth: int) -> None:
        """Make the cache hold exactly positions ``0 .. depth-1``: the next step runs at ``depth``."""

    def memory(self) -> dict[str, int | None]:
        """The runtime's own buffer sizes where it exposes them: ``weights_bytes``, ``cache_bytes``,
        ``compute_bytes`` (None for what it does not show)."""

    def close(self) -> None:
        """Release the runtime's memory."""


class Runtime(Protocol):
    """One way of running a layout (see module docstring)."""

    name: str
    #: Quantization schemes this runtime exports, the first one the default.
    quants: tuple[str, ...]
    #: The command that installs what this runtime needs.
    install_hint: str

    #: File name suffix of this runtime's artifacts (``.pte``, ``.gguf``).
    suffix: str
    #: Whether the artifact itself holds the cache (sized for ``max_len``), so each cache length is a
    #: file of its own; otherwise ``max_len`` is only a load-time setting and one file serves them all.
    cache_in_artifact: bool

    def check(self, spec: ModelSpec, quant: str, max_len: int) -> None:
        """Raise :class:`ExportError` (one line) when ``spec``, ``quant`` or a cache of ``max_len``
        positions cannot be exported; cheap, nothing is built (asked before anything is measured)."""

    def version(self) -> str:
        """Version string of the installed runtime; :class:`RuntimeUnavailable` when it is missing."""

    def export(self, spec: ModelSpec, quant: str, max_len: int, path: Path, seed: int = 0,
               checkpoint: Path | None = None) -> Artifact:
        """Write ``spec`` as this runtime's artifact at ``path``, its cache sized for ``max_len``
        positions: random weights from ``seed`` (:func:`lfm2_nas.model.build_model`), or the weights
        of the ``checkpoint`` folder (:func:`lfm2_nas.checkpoint.load_pretrained`) when given.
        Writes to a temporary name and renames, so a failed export leaves nothing at ``path``."""

    def load(self, artifact: Artifact, threads: int) -> Session:
        """Open ``artifact`` for running with ``threads`` threads."""
