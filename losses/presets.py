"""Published hyper-parameter sets (``presets.yaml``): lookup and validation."""

from __future__ import annotations

import difflib
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


@lru_cache(maxsize=1)
def _load() -> dict[str, dict[str, Any]]:
    text = resources.files("losses").joinpath("presets.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    for name, entry in data.items():
        missing = {"loss", "kwargs", "source"} - set(entry)
        if missing:
            raise ValueError(f"losses/presets.yaml: preset {name!r} lacks {sorted(missing)}")
    return data


def preset_names() -> list[str]:
    """Sorted names of the bundled presets."""
    return sorted(_load())


def get_preset(name: str) -> dict[str, Any]:
    """The preset ``name``: ``{"loss": str, "kwargs": dict, "source": str}`` (a copy)."""
    presets = _load()
    if name not in presets:
        close = difflib.get_close_matches(name, list(presets), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown loss preset {name!r}{hint} known: {sorted(presets)}")
    entry = presets[name]
    return {"loss": entry["loss"], "kwargs": dict(entry["kwargs"]), "source": entry["source"]}
