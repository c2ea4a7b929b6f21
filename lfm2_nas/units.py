"""Sizes in and out. Internally everything is bytes and seconds; binary units only when printed, and
sizes a user writes (``"300 MiB"``, ``"4 GiB"``, ``"500MB"`` or a number of bytes) read by one parser."""

from __future__ import annotations

import re
from typing import Any

_BINARY = (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def format_bytes(n: float) -> str:
    """``1536 -> '1.50 KiB'``; GiB = 2^30 bytes, MiB = 2^20, KiB = 2^10."""
    for unit, size in _BINARY:
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def format_count(n: int) -> str:
    """``354483968 -> '354.5M'``."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


_BYTE_SUFFIX = {
    "": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_bytes(value: Any) -> int:
    """``"4 GiB"`` -> 4 * 2**30, ``"500MB"`` -> 500 * 10**6, an integer is bytes; ValueError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", str(value).lower())
        if not match or match.group(2) not in _BYTE_SUFFIX:
            raise ValueError(f"{value!r} is not a size; write e.g. \"4 GiB\", \"512 MiB\" or a number of bytes")
        number, unit = float(match.group(1)), match.group(2)
    size = int(number * _BYTE_SUFFIX[unit])
    if size <= 0:
        raise ValueError(f"size {value!r} must be > 0")
    return size
