"""Optuna layout search: a quality proxy against latency and memory measured on the target.

    lfm2-nas search run experiments/lfm2-350m-cpu.toml     # create or resume, embedded journal
    lfm2-nas search worker --storage postgresql://... --study NAME   # more workers, any machine
    lfm2-nas search status FILE ; lfm2-nas search export FILE
    lfm2-nas search confirm FILE   # the seeds and the front measured again: what holds beyond the noise

This package only runs studies. Modules, one concern each: :mod:`.config` (the search file),
:mod:`.space` (trial -> layout), :mod:`.screening` (constraints), :mod:`.objectives`,
:mod:`.trial` (one trial's pipeline), :mod:`.run` (create / resume / run / join), :mod:`.storage`
(where a study lives), :mod:`.recovery` (orphaned trials), :mod:`.evaluate` (the only module that
calls the profiler and the quality proxies), :mod:`.measurements`, :mod:`.lock`, :mod:`.confirm` (chosen layouts measured again, in rounds and
with other seeds). Reading, ranking, exporting and drawing a study is :mod:`lfm2_nas.report`'s
(``trials``, ``front``, ``study``, ``export``; what a confirmation says: ``confirmed``).
"""

from __future__ import annotations

from pathlib import Path

from lfm2_nas.search.config import SearchConfig, SearchConfigError, load_config, parse_config
from lfm2_nas.search.space import SearchSpace


def default_search_file() -> Path:
    """The built-in search ``lfm2-nas search run`` uses without a FILE (minutes on 2 CPU cores)."""
    return Path(__file__).with_name("default.toml")


__all__ = ["SearchConfig", "SearchConfigError", "SearchSpace", "default_search_file", "load_config", "parse_config"]
