"""An optional machine-wide lock around measurements, for machines shared with other work.

Timing runs take it exclusively (nobody else's heavy work runs meanwhile, like ``flock -x``);
training takes it shared (``flock -s``: other shared holders may run, timing runs wait). With no
lock file configured, both are no-ops. Do not start a search that uses the lock under
``flock FILE`` yourself: that outer hold would keep the search's exclusive request waiting forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def cpu_lock(path: str | None, exclusive: bool) -> Iterator[None]:
    """Hold ``flock`` on ``path`` (created if absent) for the ``with`` block; nothing when ``path`` is None."""
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for the %s lock on %s (other work holds it)", "exclusive" if exclusive else "shared", path)
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
