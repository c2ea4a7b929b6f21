"""Where results go when no path is given: the experiments folder.

``experiments/`` under the working directory, or the folder named by ``LFM2_NAS_EXPERIMENTS``.
Every default location (a study's folder and journal, its exported tables) is under
:func:`experiments_root`; a path given on the command line always wins.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that moves the experiments folder.
EXPERIMENTS_ENV = "LFM2_NAS_EXPERIMENTS"
#: The experiments folder when the variable is unset, relative to the working directory.
DEFAULT_EXPERIMENTS = Path("experiments")


def experiments_root(root: str | Path | None = None) -> Path:
    """``root`` when given, else ``$LFM2_NAS_EXPERIMENTS``, else ``experiments``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(EXPERIMENTS_ENV) or DEFAULT_EXPERIMENTS)
