"""lfm2-nas: build, measure and search LFM2-style hybrid (gated conv + GQA) language-model layouts.

Public API::

    from lfm2_nas import ModelSpec, get_spec, build_model, load_pretrained, save_pretrained, generate

Importing the package (or its spec, registry and cost modules) does not import torch; the
torch-backed names below are loaded on first use.
"""

from importlib import import_module
from typing import Any

from lfm2_nas.registry import VARIANTS, get_spec, variant_names
from lfm2_nas.spec import ModelSpec

_LAZY = {
    "HybridCache": "lfm2_nas.cache",
    "CheckpointError": "lfm2_nas.hf_config",
    "load_pretrained": "lfm2_nas.checkpoint",
    "save_pretrained": "lfm2_nas.checkpoint",
    "SamplingConfig": "lfm2_nas.generation",
    "decode_step": "lfm2_nas.generation",
    "generate": "lfm2_nas.generation",
    "prefill": "lfm2_nas.generation",
    "LFM2Model": "lfm2_nas.model",
    "build_model": "lfm2_nas.model",
    "resolve_spec": "lfm2_nas.resolve",
}

__all__ = ["ModelSpec", "VARIANTS", "get_spec", "variant_names", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lfm2_nas' has no attribute {name!r}")
