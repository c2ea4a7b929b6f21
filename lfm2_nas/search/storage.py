"""Where a study lives: Optuna's own storages.

* Embedded default: a journal file ``experiments/<study>/journal.log`` (``JournalStorage`` with a
  file backend): nothing to install or start, several processes on one machine may share it, and
  ``optuna-dashboard experiments/<study>/journal.log`` reads it.
* Many machines: an SQLAlchemy URL, PostgreSQL being the supported database
  (``postgresql://user:password@host:5432/db``). Workers send a heartbeat; a trial whose worker
  stops beating (killed machine, lost network) is failed after the grace period and its layout
  re-queued, by whichever worker notices first.

A URL that cannot be reached, or a path whose folder cannot be created, raises
:class:`StorageError` with one line saying what failed.

A journal survives a crash mid-write (:func:`repair_journal`, run before Optuna reads the file): an
incomplete last record is cut off, the file as it was is kept beside it as a backup, and a warning
names both; every complete trial stays. A journal that cannot be read raises :class:`StorageError`
naming the file, the line and what to do.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial

from lfm2_nas.paths import experiments_root

JOURNAL_NAME = "journal.log"
HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120
_URL = re.compile(r"^[a-z][a-z0-9+]*://")
#: How every record Optuna's journal writes begins (``json.dumps`` of ``{"op_code": ...}``, compact).
_RECORD_START = b'{"op_code":'

log = logging.getLogger(__name__)


class StorageError(OSError):
    """A storage that cannot be opened; the message is one line."""


def study_dir(name: str, root: str | Path | None = None) -> Path:
    """The folder of study ``name`` under ``root`` (default: :func:`lfm2_nas.paths.experiments_root`):
    journal (embedded storage), caches and exported tables."""
    return experiments_root(root) / name


def study_location(name: str, *given: str | None, root: str | Path | None = None) -> str:
    """Where study ``name`` is stored: the first storage given (``--storage``, then the search file's
    ``[study] storage``: a database URL or a journal file), else its embedded journal
    ``<root>/<name>/journal.log``. The one rule ``search run|status|export`` and ``report study`` follow."""
    return next((g for g in given if g), None) or str(study_dir(name, root) / JOURNAL_NAME)


def redact(url: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db`` for messages."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def is_url(text: str) -> bool:
    return bool(_URL.match(text))


def open_storage(
    location: str | Path,
    on_stale_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    heartbeat_interval_s: int = HEARTBEAT_INTERVAL_S,
    grace_period_s: int = GRACE_PERIOD_S,
) -> BaseStorage:
    """Open ``location``: an SQLAlchemy URL, or the path of a journal file (created if absent).

    ``on_stale_trial`` is called for each trial a database storage fails because its worker sent no
    heartbeat (every ``heartbeat_interval_s``) for ``grace_period_s``.
    """
    text = str(location)
    if not is_url(text):
        path = Path(text)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            repair_journal(path)
            return JournalStorage(JournalFileBackend(str(path)))
        except StorageError:
            raise
        except OSError as err:
            raise StorageError(f"cannot open journal file {path}: {err.strerror or err}") from None
        except ValueError as err:  # json.JSONDecodeError included: Optuna's replay of a damaged file
            raise StorageError(f"cannot read journal file {path}: {err}; restore it from a backup, or move it "
                               "aside to start the study afresh") from None
    if text.startswith("journal://"):
        return open_storage(text.removeprefix("journal://"))
    url = _with_installed_driver(text)
    engine_kwargs = {"connect_args": {"connect_timeout": 10}} if url.startswith("postgresql") else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat arguments
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval_s,
                grace_period=grace_period_s,
                heartbeat_stale_trial_callback=on_stale_trial,
            )
    except ImportError as err:
        missing = getattr(err.__cause__, "name", None) or err.name or "its DB-API module"
        raise StorageError(f"storage {redact(text)} needs a driver that is not installed ({missing}); "
                           "for PostgreSQL: pip install psycopg2-binary") from None
    except Exception as err:  # SQLAlchemy raises many kinds; the user needs one line, not the chain
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StorageError(f"cannot open storage {redact(text)}: {first}") from None


def repair_journal(path: str | Path) -> Path | None:
    """Cut the damage a crash mid-write leaves in journal ``path``, under the journal's own lock (so a
    record being written by a live process is never mistaken for a torn one); returns the backup
    (the file as it was) or None when the file was whole.

    Damage repaired: an incomplete last record (no newline), and such a fragment with a later
    record appended right after it on one line (what an older version wrote after a crash): the
    fragment goes, the later record stays. Any other line that is not a record raises
    :class:`StorageError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0 or (_tail(path) == b"\n" and _whole(path)):
        return None
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()
        lines = data.split(b"\n")
        torn_tail = lines.pop()  # b"" when the file ends with a newline
        kept, dropped = [], len(torn_tail)
        for number, line in enumerate(lines, start=1):
            record = _record(line)
            if record is None:
                raise StorageError(f"cannot read journal file {path}: line {number} is not a journal record; "
                                   "restore the file from a backup, or move it aside to start the study afresh")
            kept.append(record)
            dropped += len(line) - len(record)
        if not dropped:
            return None
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        backup = path.with_name(f"{path.name}.torn-{stamp}.bak")
        shutil.copy2(path, backup)
        if kept == lines:  # only the tail is torn: cut it in place (other readers' offsets stay valid)
            os.truncate(path, len(data) - len(torn_tail))
        else:
            from lfm2_nas.io import atomic_write_bytes

            atomic_write_bytes(path, b"".join(r + b"\n" for r in kept))
    finally:
        lock.release()
    log.warning("journal %s ended in an incomplete record (%d bytes, left by a crash mid-write); it was cut off "
                "and the file as it was is kept in %s", path, dropped, backup)
    return backup


def _tail(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def _whole(path: Path) -> bool:
    """Whether every line of ``path`` is a record (read without the lock: a quick check first)."""
    with open(path, "rb") as f:
        return all(_record(line.rstrip(b"\n")) == line.rstrip(b"\n") for line in f)


def _record(line: bytes) -> bytes | None:
    """``line`` if it is a journal record; the record after a torn fragment on the same line; else None."""
    try:
        json.loads(line)
        return line
    except ValueError:
        start = line.rfind(_RECORD_START)
        if start <= 0:
            return None
        try:
            json.loads(line[start:])
            return line[start:]
        except ValueError:
            return None


def _with_installed_driver(url: str) -> str:
    """``postgresql://`` means psycopg (3) to SQLAlchemy 2.1; use psycopg2 when only it is installed."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url
