"""Deployment-runtime tests need the runtime's package: without it they skip, except where
``LFM2_NAS_REQUIRE_RUNTIMES`` is set (CI installs every runtime), where a missing one fails."""

import importlib
import os
from types import ModuleType

import pytest


def require(module: str) -> ModuleType:
    """``module`` imported; skips the calling test module when it is missing (fails under CI)."""
    if os.environ.get("LFM2_NAS_REQUIRE_RUNTIMES"):
        return importlib.import_module(module)
    return pytest.importorskip(module)
