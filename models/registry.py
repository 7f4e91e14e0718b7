"""The model registry and factory (timm style: ``create_model(name, num_labels, **kw)``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from mllb_core.registry import Registry

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


def aux_loss_modules(model: nn.Module) -> list[nn.Module]:
    """The submodules of ``model`` that have an ``aux_loss`` attribute (see
    :func:`auxiliary_loss`). A training loop looks them up once, after the first forward pass,
    instead of walking ``model.modules()`` every step (hundreds of modules for an image
    backbone)."""
    return [m for m in model.modules() if hasattr(m, "aux_loss")]


def auxiliary_loss(model: nn.Module, modules: list[nn.Module] | None = None) -> Tensor | None:
    """Sum of the auxiliary training losses that submodules computed in the last forward pass.

    Protocol: a module with an attribute ``aux_loss`` (a 0-d Tensor or None) sets it in
    ``forward`` when ``self.training`` (e.g. AssocFormer's association-matrix penalty); it
    declares the attribute in ``__init__`` or sets it on every training forward. This sums
    every non-None ``aux_loss`` over ``model.modules()`` (or over ``modules``, from
    :func:`aux_loss_modules`) and resets them to None, so a value is never counted twice or
    leaks into a later step. A wrapper that holds the model as a submodule
    (DistributedDataParallel's ``.module``) is searched too. Returns None when no module set
    one, so the caller adds nothing: ``if aux is not None: loss = loss + aux``.
    """
    total: Tensor | None = None
    for module in model.modules() if modules is None else modules:
        aux = getattr(module, "aux_loss", None)
        if isinstance(aux, Tensor):
            total = aux if total is None else total + aux
            module.aux_loss = None
    return total


def frozen_parameters(model: nn.Module, epoch: int) -> list[nn.Parameter]:
    """Parameters to keep fixed during ``epoch`` (1-based): ``model.frozen_parameters(epoch)``.

    Protocol: a model that trains some weights only from a given epoch on (MRN unfreezes its
    word embeddings at epoch 50) defines ``frozen_parameters(epoch) -> list[Parameter]``. The
    loop drops their gradients before the optimizer step, which is what ``requires_grad=False``
    does (the optimizer skips a parameter without a gradient: no update, no weight decay, no
    moment update) while DDP keeps a fixed set of parameters to synchronize. Empty when the
    model does not define it.
    """
    declare = getattr(model, "frozen_parameters", None)
    return [] if declare is None else list(declare(epoch))


def model_version(name: str) -> str:
    """The ``MODEL_VERSION`` of the module that registers ``name`` ("1" when it defines none).

    A model family bumps it when a change of its code or defaults changes the numbers (as a task
    bumps its ``version``), so a run of the new code never shares a run id with an old one.
    """
    import sys

    module = sys.modules.get(getattr(MODELS.get(name), "__module__", ""), None)
    return str(getattr(module, "MODEL_VERSION", "1"))
