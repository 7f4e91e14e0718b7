"""The model registry and factory (timm style: ``create_model(name, num_labels, **kw)``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from losses.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model", entry_point_group="mllb.models")


def create_model(name: str, num_labels: int, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` for ``num_labels`` labels.

    Raises:
        RegistryError: unknown name (with a suggestion).
        TypeError: an argument the constructor does not take (named in the message).
    """
    factory = MODELS.get(name)
    try:
        return factory(num_labels=num_labels, **kwargs)
    except TypeError as exc:
        raise TypeError(f"model {name!r}: {exc}") from exc
