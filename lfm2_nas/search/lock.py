"""An optional machine-wide lock around measurements, for machines shared with other work.

Timing runs take it exclusively (nobody else's heavy work runs meanwhile, like ``flock -x``);
training takes it shared (``flock -s``: other shared holders may run, timing runs wait). With no
lock file configured, both are no-ops.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator


@contextlib.contextmanager
def cpu_lock(path: str | None, exclusive: bool) -> Iterator[None]:
    """Hold ``flock`` on ``path`` (created if absent) for the ``with`` block; nothing when ``path`` is None."""
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
