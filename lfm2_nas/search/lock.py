"""A machine-wide lock around measurements, for machines shared with other work.

Timing runs take it exclusively (nobody else's heavy work runs meanwhile, like ``flock -x``);
training takes it shared (``flock -s``: other shared holders may run, timing runs wait). With no
lock file (``[study] cpu_lock = "off"``, or a database study with none named), both are no-ops;
journal studies use :data:`DEFAULT_LOCK` unless the search file names another. Do not start a search that uses the lock under
``flock FILE`` yourself: that outer hold would keep the search's exclusive request waiting forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
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


#: The machine-wide lock runs on journal storage share when the search file names none: every
#: ``search run``/``worker`` on this machine profiles in turn and trains alongside the others.
DEFAULT_LOCK = os.path.join(tempfile.gettempdir(), "lfm2-nas-cpu.lock")
#: ``[study] cpu_lock = "off"``: no lock at all (a machine with nothing else to disturb it).
LOCK_OFF = "off"


def resolve_lock(configured: str | None, location: str) -> str | None:
    """The lock file a run uses: the search file's ``cpu_lock``; none for ``"off"``; by default
    :data:`DEFAULT_LOCK` when the study is a journal file (all its processes share this machine),
    and none for a database URL (workers on other machines cannot share a file lock)."""
    if configured == LOCK_OFF:
        return None
    if configured:
        return configured
    from lfm2_nas.search.storage import is_url

    return None if is_url(str(location)) and not str(location).startswith("journal://") else DEFAULT_LOCK
