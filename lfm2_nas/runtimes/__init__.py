"""Ways of running a layout: eager PyTorch, ExecuTorch (XNNPACK) and llama.cpp (GGUF).

``torch`` is the profiler's own in-process path (:mod:`lfm2_nas.profiler.measure`, the model of
:mod:`lfm2_nas.model`). The deployment runtimes are one module each, offering the interface of
:mod:`lfm2_nas.runtimes.base`; :func:`get_runtime` imports one on first use, so a runtime whose
package is not installed costs nothing until it is asked for. This module imports no torch: settings
are validated against :data:`QUANTS` instantly.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lfm2_nas.runtimes.base import Runtime

#: Each backend's quantization schemes, the default first. ``torch`` runs the weights at the
#: settings' ``dtype`` (no quantization: ``none``). ExecuTorch: fp32, or 8-bit dynamic activations
#: with 4-bit grouped weights (``8da4w``, the scheme of ExecuTorch's LFM2 example config
#: ``examples/models/lfm2/config/lfm2_xnnpack_q8da4w.yaml``). llama.cpp: GGUF tensor types.
QUANTS: dict[str, tuple[str, ...]] = {
    "torch": ("none",),
    "executorch": ("fp32", "8da4w"),
    "llamacpp": ("f32", "f16", "q8_0", "q4_0"),
}
BACKENDS: tuple[str, ...] = tuple(QUANTS)
#: Bits per weight each scheme stores at least (its scales and kept-wide tensors only add to it):
#: a lower bound for screening, never a measurement.
MIN_WEIGHT_BITS = {"fp32": 32.0, "8da4w": 4.0, "f32": 32.0, "f16": 16.0, "q8_0": 8.5, "q4_0": 4.5}
#: The dtype each deployment runtime keeps its K/V cache in (for the bytes a decode step reads).
CACHE_DTYPES = {"executorch": "float32", "llamacpp": "float16"}
#: The command that installs each deployment runtime (README, "Deployment runtimes").
INSTALL = {
    "executorch": "pip install -e '.[executorch]'",
    # GCC 12 miscompiles llama.cpp's AMX path in a native build on AMX CPUs (q8_0/q4_0 then crash):
    # build without AMX everywhere, so the same command is right on every CPU.
    "llamacpp": "CMAKE_ARGS=\"-DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' "
                "-DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'\" pip install -e '.[llamacpp]'",
}
#: The package whose installed version identifies each deployment runtime (part of a result's key).
_PACKAGES = {"executorch": "executorch", "llamacpp": "llama-cpp-python"}
#: This project's revision of a runtime's export, appended to the package version where the program
#: it writes changed without the package changing, so cached artifacts and results of an earlier
#: revision are not reused. executorch 2: 8da4w weight scales by absmax instead of HQQ.
EXPORT_REVISIONS = {"executorch": 2}
#: The module of each deployment runtime (``torch`` has none: it is the profiler's own path).
_MODULES = {"executorch": "lfm2_nas.runtimes.executorch", "llamacpp": "lfm2_nas.runtimes.llamacpp"}


def installed_version(backend: str) -> str:
    """Version of the package behind a deployment ``backend``, read from its metadata without importing
    it, with ``+export<N>`` where :data:`EXPORT_REVISIONS` has one;
    :class:`~lfm2_nas.runtimes.base.RuntimeUnavailable` naming the install command when missing."""
    from importlib.metadata import PackageNotFoundError, version

    from lfm2_nas.runtimes.base import RuntimeUnavailable

    try:
        installed = version(_PACKAGES[backend])
    except PackageNotFoundError:
        raise RuntimeUnavailable(f"the {backend} backend is not installed: {INSTALL[backend]}") from None
    revision = EXPORT_REVISIONS.get(backend)
    return installed if revision is None else f"{installed}+export{revision}"


def get_runtime(backend: str) -> Runtime:
    """The runtime object of a deployment ``backend`` (``executorch`` or ``llamacpp``)."""
    if backend not in _MODULES:
        raise ValueError(f"no runtime module for backend {backend!r}; deployment runtimes: {', '.join(_MODULES)}")
    return import_module(_MODULES[backend]).RUNTIME
