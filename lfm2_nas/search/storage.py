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
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial

from lfm2_nas.paths import experiments_root

JOURNAL_NAME = "journal.log"
HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120
_URL = re.compile(r"^[a-z][a-z0-9+]*://")


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
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as err:
            raise StorageError(f"cannot open journal file {path}: {err.strerror or err}") from None
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


def _with_installed_driver(url: str) -> str:
    """``postgresql://`` means psycopg (3) to SQLAlchemy 2.1; use psycopg2 when only it is installed."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url
