"""llama.cpp runtime: a GGUF file run through llama.cpp's C API (``llama-cpp-python``'s ctypes layer).

Export (:meth:`LlamaCppRuntime.export`) runs in a freshly spawned child
(:func:`lfm2_nas.profiler.runner.run_in_child`), so its peak RSS is the export's own: it builds the
torch model (or loads the checkpoint), streams it into an f32 GGUF (:mod:`.gguf_export`) and, for
f16 / q8_0 / q4_0, converts that file with llama.cpp's own quantizer (``llama_model_quantize``, what
the ``llama-quantize`` tool runs). The parent writes nothing but renames the finished temporary file
onto the target, so a failed export leaves nothing at ``path``, and it never loads llama.cpp itself.

A :class:`LlamaCppSession` holds one model and one context (batch 1, ``n_ctx = max_len``) and
decodes with ``llama_decode``:

* weights are read into process memory (``load_mode = LLAMA_LOAD_MODE_NONE``, no mmap), where the
  torch runtime keeps its weights too, so both are timed with their weights in anonymous memory and
  counted in the RSS;
* an f32 artifact runs as an exact reference: f32 KV cache (the same bytes as the torch model's f32
  cache) and flash attention off, because llama.cpp's flash-attention path casts f32 K/V to f16
  before the kernel (``build_attn_mha`` in ``src/llama-graph.cpp``; measured here against a float64
  torch run: 6e-3 logit error at logits of std 9 with it, 4e-6 without). Other formats run as
  llama.cpp does by default: f16 KV cache, flash attention ``auto`` (on for the CPU backend). The
  conv state is always f32 (llama.cpp's recurrent memory). :func:`context_settings` says which, and
  export records it in ``details``;
* ``n_batch = max_len``, so any prompt up to ``max_len`` tokens is one ``llama_decode`` call, which
  llama.cpp splits into micro-batches of ``n_ubatch = min(max_len, 512)`` tokens (its default, and
  what ``llama-bench`` uses); the profiler fills the cache to a depth with :meth:`~LlamaCppSession.prefill`;
* logits are computed for the last position only (``n_outputs_max = 1``).

Rewinding (:meth:`LlamaCppSession.rewind`). An LFM2 layout uses llama.cpp's hybrid memory: a KV cache
plus a recurrent cell holding each conv layer's last K-1 inputs. KV positions can be removed
(``llama_memory_seq_rm``), but a recurrent cell holds only the state after its last token, and
``llama_memory_recurrent::seq_rm`` refuses to cut a sequence short (it returns false, and the hybrid
memory then removes nothing: ``src/llama-memory-hybrid.cpp``, ``src/llama-memory-recurrent.cpp``).
The experimental ``n_rs_seq`` rollback is not used: the graph keeps per-token states only for the
tokens of the current micro-batch (``src/models/lfm2.cpp``), so after one-token steps there is no
earlier state to roll back to (tried here with ``n_rs_seq`` 1 and 4: ``seq_rm`` of the last step
reports success, and repeating that step gives logits off by 31 at logits of std 9). Instead every :meth:`~LlamaCppSession.prefill` ends by copying the
conv state out (``llama_state_seq_get_data_ext`` with ``LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY``: the
recurrent part only, ``n_conv_layers * hidden * (K-1) * 4`` bytes plus a small header), and
``rewind(prompt_length)`` writes it back and then drops the KV positions from there on. That costs
one small copy per prefill and per rewind (0.1 ms for LFM2-350M) and nothing per step. A rewind to
another depth re-runs the first ``depth`` tokens once (which snapshots that depth for the next
rewinds). A layout without conv layers has no recurrent state: its rewind is ``seq_rm`` alone.

Build check: ``llama-cpp-python`` compiles llama.cpp for the CPU it is built on (``-march=native``);
a wheel built on another machine may use instructions this CPU lacks (AVX-512 on a CPU without it:
SIGILL). Before the library is used in a process, a short child process loads it and prints
``llama_print_system_info()``; a crash there, or a compiled feature missing from
``/proc/cpuinfo``, raises :class:`RuntimeUnavailable` naming the rebuild command.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lfm2_nas.runtimes import INSTALL
from lfm2_nas.runtimes.base import Artifact, ExportError, RuntimeUnavailable
from lfm2_nas.runtimes.gguf_export import QUANTS, check_exportable
from lfm2_nas.spec import ModelSpec

INSTALL_HINT = INSTALL["llamacpp"]
#: Rebuilds llama-cpp-python from source for this machine's CPU (the install command's CMAKE_ARGS).
REBUILD_HINT = INSTALL_HINT.replace("pip install -e '.[llamacpp]'",
                                    "pip install --force-reinstall --no-deps --no-cache-dir llama-cpp-python==0.3.36")

# enum llama_ftype (include/llama.h)
_FTYPE = {"f32": 0, "f16": 1, "q8_0": 7, "q4_0": 2}
_GGML_TYPE_F32, _GGML_TYPE_F16 = 0, 1  # enum ggml_type
_FLASH_ATTN_AUTO, _FLASH_ATTN_DISABLED = -1, 0  # enum llama_flash_attn_type
_LOAD_MODE_NONE = 0  # enum llama_load_mode: read the weights into memory, no mmap
_STATE_PARTIAL_ONLY = 1  # LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY: the recurrent part of a hybrid memory
_LOG_WARN, _LOG_ERROR, _LOG_CONT = 3, 4, 5  # enum ggml_log_level
N_UBATCH = 512  # llama.cpp's default micro-batch (llama_context_default_params)

# llama_print_system_info() feature name -> /proc/cpuinfo flag (x86; ggml/src/ggml-cpu/ggml-cpu.cpp).
_CPUINFO_FLAG = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX_VNNI": "avx_vnni",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}


# ---- the library ------------------------------------------------------------------------------

def compiled_cpu_features(system_info: str) -> set[str]:
    """Features ``llama_print_system_info()`` reports as compiled in (``"AVX2 = 1"`` -> ``"AVX2"``)."""
    return set(re.findall(r"\b([A-Z][A-Z0-9_]*) = 1\b", system_info))


def cpu_flags(cpuinfo: str) -> set[str]:
    """The ``flags`` of the first CPU in ``/proc/cpuinfo`` text (empty where there is no such line)."""
    match = re.search(r"^flags\s*:\s*(.*)$", cpuinfo, flags=re.M)
    return set(match.group(1).split()) if match else set()


def check_cpu_support(system_info: str, cpuinfo: str) -> None:
    """Raise :class:`RuntimeUnavailable` when llama.cpp was compiled for x86 features this CPU lacks.

    ``cpuinfo`` is ``/proc/cpuinfo``'s text; without a ``flags`` line (not Linux x86) nothing is checked.
    """
    flags = cpu_flags(cpuinfo)
    if not flags:
        return
    compiled = compiled_cpu_features(system_info)
    missing = sorted(f for f in compiled if f in _CPUINFO_FLAG and _CPUINFO_FLAG[f] not in flags)
    if missing:
        raise RuntimeUnavailable(
            f"llama.cpp was compiled for CPU features this CPU lacks ({', '.join(missing)}): it would crash "
            f"(SIGILL); rebuild it here: {REBUILD_HINT}"
        )


def _probe_system_info() -> str:
    """``llama_print_system_info()`` from a child process, so a build for another CPU crashes there, not here."""
    code = "import sys, llama_cpp.llama_cpp as l; sys.stdout.write(l.llama_print_system_info().decode())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise RuntimeUnavailable(
            f"loading llama.cpp killed a test process with {name} (built for another CPU?); rebuild it here: "
            f"{REBUILD_HINT}"
        )
    if proc.returncode:
        lines = proc.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
        raise RuntimeUnavailable(f"llama_cpp cannot be loaded ({lines[-1].strip()}); install: {INSTALL_HINT}")
    return proc.stdout.decode(errors="replace")


def require_packages() -> None:
    """Raise :class:`RuntimeUnavailable` naming the install command unless ``llama_cpp`` and ``gguf``
    are installed (looked up, not imported)."""
    import importlib.util

    for package in ("llama_cpp", "gguf"):
        if importlib.util.find_spec(package) is None:
            raise RuntimeUnavailable(f"the llamacpp runtime needs {package!r}; install: {INSTALL_HINT}")


class _Library:
    """The checked, initialised ``llama_cpp.llama_cpp`` module and llama.cpp's log (one per process)."""

    def __init__(self) -> None:
        require_packages()
        self.system_info = _probe_system_info()
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
        check_cpu_support(self.system_info, cpuinfo)
        import llama_cpp
        import llama_cpp.llama_cpp as api

        self.api = api
        self.package_version: str = llama_cpp.__version__
        self.log: deque[tuple[int, str]] = deque(maxlen=4000)
        self.count = 0  # lines logged so far
        self._partial = ""
        self._level = 0
        # The callback object must outlive every llama.cpp call: it is kept here.
        self._callback = api.llama_log_callback(self._on_log)
        api.llama_log_set(self._callback, ctypes.c_void_p())
        api.llama_backend_init()
        self.ggml_version, self.ggml_commit = _ggml_build(Path(llama_cpp.__file__).parent / "lib")

    def _on_log(self, level: int, text: bytes, _user: Any) -> None:
        """Keep llama.cpp's messages (none printed); pieces of one line arrive as ``CONT``."""
        if level != _LOG_CONT:
            self._level = level
        self._partial += text.decode(errors="replace")
        *lines, self._partial = self._partial.split("\n")
        self.log.extend((self._level, line) for line in lines)
        self.count += len(lines)

    def mark(self) -> int:
        """A position in the log; :meth:`lines_since` returns what came after it."""
        return self.count

    def lines_since(self, mark: int) -> list[tuple[int, str]]:
        """``(level, line)`` logged after ``mark`` (the newest 4000 at most)."""
        new = min(self.count - mark, len(self.log))
        return list(self.log)[len(self.log) - new :] if new > 0 else []

    def errors(self, mark: int = 0) -> str:
        """The last warning/error lines since ``mark``, for exception messages."""
        lines = [
            text.strip() for level, text in self.lines_since(mark) if level in (_LOG_WARN, _LOG_ERROR) and text.strip()
        ]
        return "; ".join(lines[-3:]) if lines else "llama.cpp logged no error"

    @property
    def version(self) -> str:
        features = " ".join(sorted(f for f in compiled_cpu_features(self.system_info) if f in _CPUINFO_FLAG))
        return (
            f"llama-cpp-python {self.package_version} (ggml {self.ggml_version}, commit {self.ggml_commit}; "
            f"CPU build: {features or 'no SIMD'})"
        )


def _ggml_build(lib_dir: Path) -> tuple[str, str]:
    """``ggml_version()`` and ``ggml_commit()`` of the bundled ggml (``"unknown"`` where not exposed)."""
    for name in ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll"):
        if (lib_dir / name).exists():
            lib = ctypes.CDLL(str(lib_dir / name))
            lib.ggml_version.restype = lib.ggml_commit.restype = ctypes.c_char_p
            return lib.ggml_version().decode(), lib.ggml_commit().decode()
    return "unknown", "unknown"


_LIBRARY: _Library | None = None


def _library() -> _Library:
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = _Library()
    return _LIBRARY


def quantize(src: Path, dst: Path, quant: str, threads: int) -> None:
    """Convert the GGUF ``src`` to ``quant`` at ``dst`` with ``llama_model_quantize`` (llama-quantize's defaults)."""
    lib = _library()
    params = _set(lib.api.llama_model_quantize_default_params(), nthread=threads, ftype=_FTYPE[quant])
    mark = lib.mark()
    rc = lib.api.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize to {quant} failed (code {rc}): {lib.errors(mark)}")


def context_settings(quant: str) -> dict[str, str]:
    """The KV-cache type and attention kernel a session of a ``quant`` artifact uses (module docstring)."""
    if quant == "f32":
        return {"kv_cache_type": "f32", "flash_attention": "off"}
    return {"kv_cache_type": "f16", "flash_attention": "auto (on for CPU)"}


# ---- export -----------------------------------------------------------------------------------

def export_job(
    spec: dict[str, Any], quant: str, f32_path: str, out_path: str, seed: int, checkpoint: str | None, threads: int
) -> dict[str, Any]:
    """Child-process side of :meth:`LlamaCppRuntime.export`: write ``out_path`` (via ``f32_path``).

    Returns timings (s; ``export_s`` from building the model to the finished file, the library check and
    the child's start-up excluded), the process's peak RSS (bytes) and what was written.
    """
    import torch

    from lfm2_nas.checkpoint import load_pretrained
    from lfm2_nas.model import build_model
    from lfm2_nas.profiler.memory import read_status_bytes
    from lfm2_nas.runtimes.gguf_export import tensor_types, write_f32_gguf

    version = _library().version  # loads and checks llama.cpp before the clock starts
    layout = ModelSpec.from_dict(spec)
    start = time.perf_counter()
    with torch.no_grad():
        model = load_pretrained(checkpoint) if checkpoint else build_model(layout, seed=seed)
    if model.spec != layout:
        raise ExportError(f"checkpoint {checkpoint} holds layout {model.spec.pattern}, not the requested spec")
    built = time.perf_counter()
    arch = write_f32_gguf(model, Path(f32_path), f"lfm2-nas {layout.pattern} {layout.spec_hash()}")
    del model
    gc.collect()
    written = time.perf_counter()
    if quant != "f32":
        quantize(Path(f32_path), Path(out_path), quant, threads)
        Path(f32_path).unlink()
    done = time.perf_counter()
    types = tensor_types(Path(out_path))
    counts: dict[str, int] = {}
    for kind in types.values():
        counts[kind] = counts.get(kind, 0) + 1
    return {
        "runtime_version": version,
        "export_s": done - start,
        "peak_rss_bytes": read_status_bytes("VmHWM"),
        "details": {
            "arch": arch,
            "tokenizer": "none (llama.cpp dummy tokens from <arch>.vocab_size)",
            "weights_source": f"checkpoint {checkpoint}" if checkpoint else f"build_model seed {seed}",
            "build_s": built - start,
            "write_f32_s": written - built,
            "quantize_s": done - written,
            "tensor_type_counts": counts,
            "token_embd_type": types["token_embd.weight"],
            "output_type": types.get("output.weight", "tied to token_embd"),
            **context_settings(quant),
        },
    }


class LlamaCppRuntime:
    """The ``llamacpp`` runtime (see module docstring)."""

    name = "llamacpp"
    quants: tuple[str, ...] = QUANTS
    install_hint = INSTALL_HINT
    suffix = ".gguf"
    cache_in_artifact = False  # the GGUF holds weights only; n_ctx is chosen when a context is created

    def check(self, spec: ModelSpec, quant: str, max_len: int) -> None:
        """:class:`ExportError` for what llama.cpp cannot represent (:func:`.gguf_export.check_exportable`)."""
        check_exportable(spec, quant, max_len)

    def version(self) -> str:
        """llama-cpp-python's version, the bundled ggml's version and commit, and the CPU features compiled in."""
        return _library().version

    def export(
        self, spec: ModelSpec, quant: str, max_len: int, path: Path, seed: int = 0, checkpoint: Path | None = None
    ) -> Artifact:
        """Write ``spec`` as a GGUF at ``path`` (see :class:`lfm2_nas.runtimes.base.Runtime`)."""
        from lfm2_nas.profiler.runner import run_in_child

        check_exportable(spec, quant, max_len)
        require_packages()  # the rest, llama.cpp included, is loaded in the child only
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        stem = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}"
        f32_tmp = Path(f"{stem}.f32.tmp")
        out_tmp = f32_tmp if quant == "f32" else Path(f"{stem}.{quant}.tmp")
        threads = os.cpu_count() or 1
        kwargs = {
            "spec": spec.to_dict(),
            "quant": quant,
            "f32_path": str(f32_tmp),
            "out_path": str(out_tmp),
            "seed": seed,
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "threads": threads,
        }
        try:
            outcome = run_in_child("lfm2_nas.runtimes.llamacpp:export_job", kwargs, threads=threads)
            if not outcome.ok:
                reason = outcome.reason or "no reason given"
                for error in (ExportError, RuntimeUnavailable):
                    if reason.startswith(f"{error.__name__}: "):
                        raise error(reason.removeprefix(f"{error.__name__}: "))
                raise RuntimeError(f"llamacpp export of {spec.pattern} to {quant} failed: {reason}")
            os.replace(out_tmp, path)
        finally:
            f32_tmp.unlink(missing_ok=True)
            out_tmp.unlink(missing_ok=True)
        value = outcome.value
        return Artifact(
            path=path,
            backend=self.name,
            quant=quant,
            runtime_version=value["runtime_version"],
            max_len=max_len,
            size_bytes=path.stat().st_size,
            export_s=value["export_s"],
            export_peak_rss_bytes=value["peak_rss_bytes"],
            details=value["details"],
        )

    def load(self, artifact: Artifact, threads: int) -> LlamaCppSession:
        """Open ``artifact`` with ``threads`` threads for decode and for prompt processing."""
        return LlamaCppSession(artifact, threads)


RUNTIME = LlamaCppRuntime()


# ---- running ----------------------------------------------------------------------------------

_BUFFER_LINE = re.compile(r"(\w+)\s+(model|KV|RS|compute|output) buffer size =\s*([\d.]+) MiB")


def buffer_sizes(log_lines: Sequence[str]) -> dict[str, int]:
    """Buffer sizes llama.cpp logs while loading (``"... CPU KV buffer size = 12.00 MiB"``), summed by kind:
    ``model``, ``KV``, ``RS`` (recurrent state), ``compute``, ``output``; bytes, 0.01 MiB resolution."""
    sizes: dict[str, int] = {}
    for line in log_lines:
        for match in _BUFFER_LINE.finditer(line):
            kind = match.group(2)
            sizes[kind] = sizes.get(kind, 0) + round(float(match.group(3)) * 2**20)
    return sizes


def _set(struct: Any, **fields: Any) -> Any:
    """Set ctypes struct fields, refusing names the struct lacks (ctypes would silently add a Python
    attribute, e.g. the ``use_mmap`` that ``llama_model_params`` no longer has in 0.3.36)."""
    known = {name for name, *_ in type(struct)._fields_}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise RuntimeError(f"{type(struct).__name__} has no field(s) {unknown}: llama-cpp-python changed its API")
    for name, value in fields.items():
        setattr(struct, name, value)
    return struct


#: Positions a synthetic fill (:meth:`LlamaCppSession.fill_synthetic`) runs for real before repeating them.
SYNTHETIC_BASE = 256
_GGML_TYPE_SIZE = {_GGML_TYPE_F32: 4, _GGML_TYPE_F16: 2}
_STATE_MAGIC = 0xAF143CD8  # io_magic, src/llama-context.cpp: opens every sequence state, then the sequence id
_STATE_HEADER_BYTES = 8


def repeat_kv_state(state: np.ndarray, depth: int, tail_bytes: int) -> np.ndarray:
    """The sequence state ``state`` (``llama_state_seq_get_data_ext``, flags 0) with its KV cache
    grown to ``depth`` cells at positions ``0 .. depth-1``, cell ``i`` holding the K/V rows of saved
    cell ``i mod n``; what follows the KV part (a hybrid model's recurrent state: ``tail_bytes``,
    0 without one) kept, but for the position of its one cell, moved from ``n-1`` to ``depth-1``
    (``llama_memory_recurrent::state_write``, ``src/llama-memory-recurrent.cpp``: u32 cells, then
    per cell i32 position and u32 sequence count, 0 for one sequence's state).

    The state opens with u32 magic ``0xaf143cd8`` and the i32 sequence id (``llama_context::
    state_seq_get_data``, ``src/llama-context.cpp``). The KV part, as ``llama_kv_cache::state_write``
    writes it (``src/llama-kv-cache.cpp``): u32 streams
    (1 here), u32 cells ``n``; per cell i32 position, u32 sequence count (1), i32 sequence id; u32
    ``v_trans``, u32 layers; per layer i32 K type, u64 row bytes, ``n`` rows; then per layer either
    i32 V type, u64 row bytes, ``n`` rows, or (``v_trans``) i32 V type, u32 element bytes, u32 V
    width, per V dimension ``n`` elements. Anything else (several streams, M-RoPE cell extras,
    quantized cache types, a part that does not end ``tail_bytes`` before the end) raises ``ValueError``."""
    if state.dtype != np.uint8 or state.ndim != 1:
        raise ValueError("state must be a flat uint8 array")
    at = 0

    def take(dtype: str, count: int = 1) -> np.ndarray:
        nonlocal at
        item = np.dtype(dtype).itemsize * count
        if at + item > len(state):
            raise ValueError("the sequence state ends inside its KV part")
        out = state[at : at + item].view(dtype)
        at += item
        return out

    magic, sequence = (int(v) for v in take("<u4", 2))
    if magic != _STATE_MAGIC or sequence != 0:
        raise ValueError(f"not a llama.cpp state of sequence 0 (magic {magic:#x}, sequence {sequence})")
    streams, cells = (int(v) for v in take("<u4", 2))
    if streams != 1 or cells < 1:
        raise ValueError(f"expected one KV stream with cells, got {streams} stream(s) and {cells} cell(s)")
    meta = take("<i4", 3 * cells).reshape(cells, 3)
    if not (np.array_equal(meta[:, 0], np.arange(cells)) and (meta[:, 1] == 1).all() and (meta[:, 2] == 0).all()):
        raise ValueError("the saved cells are not positions 0..n-1 of sequence 0 (or carry extra cell data)")
    v_trans, count = (int(v) for v in take("<u4", 2))
    if v_trans not in (0, 1) or count < 1:
        raise ValueError(f"the KV part holds {count} layer(s) with v_trans {v_trans}")
    repeat = np.arange(depth) % cells
    parts: list[np.ndarray] = [np.array([_STATE_MAGIC, 0, 1, depth], dtype="<u4").view(np.uint8)]
    new_meta = np.zeros((depth, 3), dtype="<i4")
    new_meta[:, 0], new_meta[:, 1] = np.arange(depth), 1
    parts += [new_meta.reshape(-1).view(np.uint8), np.array([v_trans, count], dtype="<u4").view(np.uint8)]
    for kind in ("K", "V"):
        for _ in range(count):
            start = at
            kv_type = int(take("<i4")[0])
            if kind == "K" or not v_trans:
                row = int(take("<u8")[0])
                if kv_type not in _GGML_TYPE_SIZE or row % _GGML_TYPE_SIZE[kv_type]:
                    raise ValueError(f"{kind} cache type {kv_type} with {row}-byte rows is not f32/f16")
                head = state[start:at]
                rows = take("u1", cells * row).reshape(cells, row)[repeat]
            else:
                element, width = (int(v) for v in take("<u4", 2))
                if _GGML_TYPE_SIZE.get(kv_type) != element:
                    raise ValueError(f"V cache type {kv_type} with {element}-byte elements is not f32/f16")
                head = state[start:at]
                rows = take("u1", width * cells * element).reshape(width, cells, element)[:, repeat]
            parts += [head, rows.reshape(-1)]
    if len(state) - at != tail_bytes:
        raise ValueError(f"the KV part ends {len(state) - at} bytes before the state's end, expected {tail_bytes}")
    tail = state[at:].copy()
    if tail_bytes:
        count, position, sequences = (int(v) for v in tail[:12].view("<i4"))
        if (count, position, sequences) != (1, cells - 1, 0):
            raise ValueError(f"the recurrent part is not one cell at position {cells - 1} (cells {count}, position {position})")
        tail[4:8] = np.array([depth - 1], dtype="<i4").view(np.uint8)
    parts.append(tail)
    return np.concatenate(parts)


class LlamaCppSession:
    """A GGUF loaded in llama.cpp with a batch-1 context of ``max_len`` positions (see module docstring)."""

    def __init__(self, artifact: Artifact, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        lib = _library()
        self._lib = lib
        api = lib.api
        self.max_len = artifact.max_len
        self.threads = threads
        path = Path(artifact.path)
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF at {path}")
        mark = lib.mark()
        model_params = _set(api.llama_model_default_params(), load_mode=_LOAD_MODE_NONE, n_gpu_layers=0)
        self._model = api.llama_model_load_from_file(str(path).encode(), model_params)
        if not self._model:
            raise RuntimeError(f"llama.cpp cannot load {path}: {lib.errors(mark)}")
        exact = artifact.quant == "f32"
        params = _set(
            api.llama_context_default_params(),
            n_ctx=self.max_len,
            n_batch=self.max_len,
            n_ubatch=min(self.max_len, N_UBATCH),
            n_seq_max=1,
            n_outputs_max=1,
            n_threads=threads,
            n_threads_batch=threads,
            type_k=_GGML_TYPE_F32 if exact else _GGML_TYPE_F16,
            type_v=_GGML_TYPE_F32 if exact else _GGML_TYPE_F16,
            flash_attn_type=_FLASH_ATTN_DISABLED if exact else _FLASH_ATTN_AUTO,
            no_perf=False,
        )
        self._ctx = api.llama_init_from_model(self._model, params)
        if not self._ctx:
            api.llama_model_free(self._model)
            self._model = None
            raise RuntimeError(f"llama.cpp cannot create a context for {path}: {lib.errors(mark)}")
        self._buffers = buffer_sizes([line for _, line in lib.lines_since(mark)])
        self.n_vocab: int = api.llama_vocab_n_tokens(api.llama_model_get_vocab(self._model))
        self.recurrent: bool = bool(api.llama_model_is_hybrid(self._model) or api.llama_model_is_recurrent(self._model))
        self._mem = api.llama_get_memory(self._ctx)
        self._batch = api.llama_batch_init(self.max_len, 0, 1)
        batch = self._batch
        for i in range(self.max_len):
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 0
        self._tokens_view = np.ctypeslib.as_array(batch.token, shape=(self.max_len,))
        self._pos_view = np.ctypeslib.as_array(batch.pos, shape=(self.max_len,))
        self._positions = np.arange(self.max_len, dtype=np.int32)
        self._out = 0  # the batch row whose logits flag is set
        self._history: list[int] = []  # tokens at positions 0 .. pos-1
        self._snapshot: tuple[int, Any] | None = None  # (depth, recurrent state bytes at that depth)

    # -- Session ----------------------------------------------------------------------------------
    def prefill(self, tokens: Sequence[int]) -> np.ndarray:
        """Run ``tokens`` from position 0 (the cache emptied first) in one ``llama_decode``; last-position
        logits ``(vocab,)`` float32. Ends by snapshotting the conv state for :meth:`rewind`."""
        ids = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if not 1 <= len(ids) <= self.max_len:
            raise ValueError(f"prefill needs 1..{self.max_len} tokens (max_len), got {len(ids)}")
        if ids.min() < 0 or ids.max() >= self.n_vocab:
            raise ValueError(f"token ids must be in 0..{self.n_vocab - 1}")
        self._lib.api.llama_memory_clear(self._mem, False)
        self._history = []
        self._snapshot = None
        logits = self._decode(ids, 0)
        self._history = ids.tolist()
        if self.recurrent:
            self._snapshot = (len(ids), self._save_recurrent())
        return logits

    def step(self, token: int) -> np.ndarray:
        """One decode step at the current position; its logits ``(vocab,)`` float32."""
        pos = len(self._history)
        if pos >= self.max_len:
            raise ValueError(f"the cache is full ({self.max_len} positions): rewind before stepping")
        if not 0 <= token < self.n_vocab:
            raise ValueError(f"token id {token} is not in 0..{self.n_vocab - 1}")
        logits = self._decode(np.asarray([token]), pos)
        self._history.append(int(token))
        return logits

    def rewind(self, depth: int) -> None:
        """Make the cache hold exactly positions ``0 .. depth-1``: the next step runs at ``depth``.

        Cheap at the depth of the last prefill (restores its conv-state snapshot, drops KV positions);
        any other depth re-runs the first ``depth`` tokens once (see module docstring).
        """
        pos = len(self._history)
        if not 0 <= depth <= pos:
            raise ValueError(f"cannot rewind to depth {depth}: the cache holds positions 0..{pos - 1}")
        if depth == pos:
            return
        api = self._lib.api
        if depth == 0:
            api.llama_memory_clear(self._mem, False)
            self._history, self._snapshot = [], None
            return
        if self.recurrent:
            if self._snapshot is None or self._snapshot[0] != depth:
                self.prefill(self._history[:depth])
                return
            state = self._snapshot[1]
            if api.llama_state_seq_set_data_ext(self._ctx, state, len(state), 0, _STATE_PARTIAL_ONLY) == 0:
                raise RuntimeError(f"llama.cpp could not restore the conv state at depth {depth}: {self._lib.errors()}")
        if not api.llama_memory_seq_rm(self._mem, 0, depth, -1):
            raise RuntimeError(f"llama.cpp could not drop cache positions >= {depth}: {self._lib.errors()}")
        del self._history[depth:]

    def fill_synthetic(self, depth: int, tokens: Sequence[int]) -> None:
        """Bring the cache to ``depth`` positions without running the model over each of them.

        A real prefill of the first ``min(depth, SYNTHETIC_BASE)`` of ``tokens``; its K/V rows are then
        repeated up to ``depth`` cells at positions ``0 .. depth-1`` (:func:`repeat_kv_state`) and written
        back with ``llama_state_seq_set_data_ext``; the conv state is the prefill's. Every decode kernel
        reads each cached row whatever its values (no data-dependent branches), so a step at this depth
        does the work it does after a real prefill of ``depth`` tokens, which at depth 16384 takes
        minutes on two cores. :meth:`rewind` to ``depth`` then works as after a prefill."""
        if not 1 <= depth <= self.max_len or len(tokens) < depth:
            raise ValueError(f"a synthetic fill needs 1..{self.max_len} positions and as many tokens, got {depth}")
        base = min(depth, SYNTHETIC_BASE)
        self.prefill(tokens[:base])
        if depth == base:
            return
        api = self._lib.api
        size = api.llama_state_seq_get_size_ext(self._ctx, 0, 0)
        state = (ctypes.c_uint8 * size)()
        if api.llama_state_seq_get_data_ext(self._ctx, state, size, 0, 0) != size:
            raise RuntimeError(f"llama.cpp could not copy out the sequence state: {self._lib.errors()}")
        partial = api.llama_state_seq_get_size_ext(self._ctx, 0, _STATE_PARTIAL_ONLY) if self.recurrent else 0
        tail = max(partial - _STATE_HEADER_BYTES, 0)  # the recurrent part: a partial state less its header
        filled = repeat_kv_state(np.frombuffer(state, dtype=np.uint8), depth, tail)
        del state
        mark = self._lib.mark()
        written = api.llama_state_seq_set_data_ext(
            self._ctx, (ctypes.c_uint8 * len(filled)).from_buffer(filled), len(filled), 0, 0)
        if written != len(filled) or api.llama_memory_seq_pos_max(self._mem, 0) != depth - 1:
            raise RuntimeError(f"llama.cpp did not take a synthetic cache of {depth} positions: {self._lib.errors(mark)}")
        del filled
        self._history = [int(tokens[i % base]) for i in range(depth)]
        if self.recurrent:
            self._snapshot = (depth, self._save_recurrent())

    @property
    def position(self) -> int:
        """The position the next :meth:`step` runs at (= tokens in the cache)."""
        return len(self._history)

    def memory(self) -> dict[str, int | None]:
        """llama.cpp's own sizes (bytes): ``weights_bytes`` = ``llama_model_size`` (the tensors); from the
        buffer sizes llama.cpp logs at load (0.01 MiB resolution): ``cache_bytes`` = ``kv_bytes`` (KV
        buffer, ``n_ctx`` rounded up to 256 cells) + ``recurrent_bytes`` (conv-state buffer),
        ``compute_bytes`` (the scheduler's compute buffer), ``weights_buffer_bytes`` (model buffers,
        incl. CPU_REPACK copies), ``output_bytes`` (logits buffer)."""
        sizes = self._buffers
        kv, rs = sizes.get("KV", 0), sizes.get("RS", 0)
        return {
            "weights_bytes": int(self._lib.api.llama_model_size(self._model)),
            "cache_bytes": kv + rs,
            "compute_bytes": sizes.get("compute"),
            "kv_bytes": kv,
            "recurrent_bytes": rs,
            "weights_buffer_bytes": sizes.get("model"),
            "output_bytes": sizes.get("output"),
        }

    def perf(self, reset: bool = False) -> dict[str, float]:
        """llama.cpp's own timing (``llama_perf_context``) since load or the last reset: ``prompt_ms`` over
        ``prompt_tokens`` (multi-token decodes), ``eval_ms`` over ``eval_tokens`` (one-token decodes) and
        their per-token means (``*_ms_per_token``). ``reset`` zeroes the counters after reading."""
        api = self._lib.api
        data = api.llama_perf_context(self._ctx)
        # llama.cpp reports at least 1 token for each counter (llama_context::perf_get_data).
        out = {
            "prompt_ms": data.t_p_eval_ms,
            "prompt_tokens": data.n_p_eval if data.t_p_eval_ms > 0 else 0,
            "eval_ms": data.t_eval_ms,
            "eval_tokens": data.n_eval if data.t_eval_ms > 0 else 0,
        }
        out["prompt_ms_per_token"] = out["prompt_ms"] / max(out["prompt_tokens"], 1)
        out["eval_ms_per_token"] = out["eval_ms"] / max(out["eval_tokens"], 1)
        if reset:
            api.llama_perf_context_reset(self._ctx)
        return out

    def close(self) -> None:
        """Free the context, batch and model (idempotent)."""
        if not hasattr(self, "_lib"):
            return
        api = self._lib.api
        if getattr(self, "_batch", None) is not None:
            api.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            api.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            api.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------
    def _decode(self, ids: np.ndarray, start: int) -> np.ndarray:
        if not self._ctx:
            raise RuntimeError("this llama.cpp session is closed")
        n = len(ids)
        batch = self._batch
        self._tokens_view[:n] = ids
        self._pos_view[:n] = self._positions[start : start + n]
        batch.logits[self._out] = 0
        batch.logits[n - 1] = 1
        self._out = n - 1
        batch.n_tokens = n
        api = self._lib.api
        mark = self._lib.mark()
        rc = api.llama_decode(self._ctx, batch)
        if rc != 0:
            raise RuntimeError(
                f"llama_decode of {n} token(s) at position {start} failed (code {rc}): {self._lib.errors(mark)}"
            )
        logits = api.llama_get_logits_ith(self._ctx, -1)
        return np.ctypeslib.as_array(logits, shape=(self.n_vocab,)).copy()

    def _save_recurrent(self) -> Any:
        api = self._lib.api
        size = api.llama_state_seq_get_size_ext(self._ctx, 0, _STATE_PARTIAL_ONLY)
        buf = (ctypes.c_uint8 * size)()
        if api.llama_state_seq_get_data_ext(self._ctx, buf, size, 0, _STATE_PARTIAL_ONLY) != size:
            raise RuntimeError(f"llama.cpp could not copy out the conv state: {self._lib.errors()}")
        return buf
