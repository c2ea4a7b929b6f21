"""Turn what a user types for a layout into a :class:`ModelSpec`.

Accepted forms, tried in this order:

* a registered name: ``lfm2-350m``;
* a name with a pattern: ``lfm2-350m:CCAACCAACCAACCAA`` (that size's widths, these layer types);
* a path to an HF ``config.json``, a checkpoint folder holding one, or a ``*.json`` spec file written
  by :meth:`ModelSpec.to_dict`;
* a bare pattern such as ``CCACCACCACACACAC``, which takes the widths of ``base`` (``lfm2-350m``).
"""

from __future__ import annotations

import json
from pathlib import Path

from lfm2_nas.hf_config import read_config
from lfm2_nas.registry import VARIANTS, get_spec
from lfm2_nas.spec import ModelSpec, parse_pattern

DEFAULT_BASE = "lfm2-350m"


def resolve_spec(text: str, base: str = DEFAULT_BASE) -> ModelSpec:
    """The spec ``text`` names (see module docstring); ``ValueError`` with a hint when it names none."""
    if text in VARIANTS:
        return get_spec(text)
    name, sep, pattern = text.partition(":")
    if sep and name in VARIANTS:
        return get_spec(name, pattern=pattern)
    path = Path(text)
    if path.exists():
        return _spec_from_path(path)
    if text and set(text.upper()) <= set("CA"):
        return get_spec(base, layer_types=parse_pattern(text))
    raise ValueError(
        f"{text!r} is not a variant name, NAME:PATTERN, an existing config path, or a C/A pattern; "
        f"known variants: {', '.join(VARIANTS)}"
    )


def _spec_from_path(path: Path) -> ModelSpec:
    if path.is_dir() or path.name == "config.json":
        return read_config(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if isinstance(data, dict) and data.get("model_type") is not None:
        return read_config(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return ModelSpec.from_dict(data)
