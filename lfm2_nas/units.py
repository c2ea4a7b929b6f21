"""Printing helpers. Internally everything is bytes and seconds; binary units only when printed."""

from __future__ import annotations

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
