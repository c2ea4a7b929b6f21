"""Parameter storage: one huge-page-backed buffer for a model's weights on a Linux CPU.

A CPU decode step streams every weight once, so it is bound by how fast memory reads, and reads
spread over 4 KiB pages cost a page-table walk every 4 KiB (350k walks per step for a 350M fp32
model; expensive in a virtual machine, where each walk is two-dimensional). Weights placed in one
buffer advised for transparent huge pages (``MADV_HUGEPAGE``) need one walk every 2 MiB. Torch's
own allocator only does this with ``THP_MEM_ALLOC_ENABLE=1`` set before it starts; here the model
asks for it itself. ``benchmarks/decode_speed.py`` measures the effect for ours and for the reference
(:func:`move_to_huge_pages` places an existing model's weights the same way), each with and without.

The buffer holds the weights once: parameters are views into it, allocated before any value is
written, so building or loading a model never holds a second copy. Elsewhere (another OS, a GPU,
a small model, ``LFM2_NAS_HUGEPAGES=0``) parameters get ordinary storage.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable

import torch
from torch import nn

HUGE_PAGE_BYTES = 2 << 20
#: Models smaller than this keep ordinary storage (the buffer rounds up to whole huge pages).
MIN_BYTES = 64 << 20
_ALIGN = 64  # bytes: a cache line, what vectorised kernels want


def hugepages_enabled() -> bool:
    """Whether huge-page placement is available here and not turned off (``LFM2_NAS_HUGEPAGES=0``)."""
    return hasattr(mmap, "MADV_HUGEPAGE") and os.environ.get("LFM2_NAS_HUGEPAGES", "1") != "0"


def _buffer(nbytes: int) -> torch.Tensor:
    """``nbytes`` of zeroed, 2 MiB-aligned anonymous memory advised for huge pages (uint8)."""
    region = mmap.mmap(-1, nbytes + HUGE_PAGE_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    region.madvise(mmap.MADV_HUGEPAGE)
    raw = torch.frombuffer(region, dtype=torch.uint8)  # keeps `region` alive as long as it lives
    start = -raw.data_ptr() % HUGE_PAGE_BYTES
    return raw[start : start + nbytes]


def allocate_parameters(model: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """Give the parameters of ``model`` (built on the meta device) real, uninitialised storage.

    On a Linux CPU and for at least :data:`MIN_BYTES` of weights, all parameters become views into
    one huge-page-advised buffer; otherwise ``model.to_empty(device=device)``. Returns ``model``.
    """
    device = torch.device(device or "cpu")
    params = list(model.parameters())  # each parameter once, even if shared
    sizes = [-(-p.nbytes // _ALIGN) * _ALIGN for p in params]
    if device.type != "cpu" or sum(sizes) < MIN_BYTES or not hugepages_enabled():
        return model.to_empty(device=device)
    return _rehome(model, params, sizes, copy=False)


def move_to_huge_pages(model: nn.Module) -> nn.Module:
    """Copy the CPU parameters of an existing ``model`` (any nn.Module, e.g. transformers' reference) into
    one huge-page-advised buffer, like :func:`allocate_parameters` does for ours; shared (tied) parameters
    stay shared. Where huge pages are unavailable, ``model`` is returned unchanged. Returns ``model``."""
    params = list(model.parameters())
    if not hugepages_enabled() or any(p.device.type != "cpu" for p in params):
        return model
    sizes = [-(-p.nbytes // _ALIGN) * _ALIGN for p in params]
    with torch.no_grad():
        return _rehome(model, params, sizes, copy=True)


def _rehome(model: nn.Module, params: list[nn.Parameter], sizes: list[int], copy: bool) -> nn.Module:
    """Make every parameter a view into one new huge-page buffer (values copied when ``copy``)."""
    buffer = _buffer(sum(sizes))
    views: dict[int, nn.Parameter] = {}
    offset = 0
    for param, size in zip(params, sizes):
        view = buffer[offset : offset + param.nbytes].view(param.dtype).view(param.shape)
        if copy:
            view.copy_(param.detach())
        views[id(param)] = nn.Parameter(view, requires_grad=param.requires_grad)
        offset += size
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is not None:
                module._parameters[name] = views[id(param)]
    return model


def huge_page_bytes(tensors: Iterable[torch.Tensor]) -> int | None:
    """Bytes of anonymous huge pages in the memory mappings that hold ``tensors`` (each mapping
    counted once, from ``/proc/self/smaps``); ``None`` where that file does not exist."""
    try:
        with open("/proc/self/smaps") as smaps:
            lines = smaps.read().splitlines()
    except OSError:
        return None
    addresses = sorted({t.data_ptr() for t in tensors})
    total, holds = 0, False
    for line in lines:
        first = line.split(maxsplit=1)[0]
        if "-" in first and not first.endswith(":"):  # a mapping's header: "low-high perms ..."
            low, high = (int(x, 16) for x in first.split("-"))
            holds = any(low <= a < high for a in addresses)
        elif holds and first == "AnonHugePages:":
            total += int(line.split()[1]) * 1024
    return total
