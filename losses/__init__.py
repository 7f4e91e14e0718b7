"""MLLB losses: one registry of multi-label losses, each a functional core plus an ``nn.Module``.

>>> from losses import create_loss
>>> loss = create_loss("apl", preset="apl_aapd")
>>> loss.hparams["alpha1"]
2.5
"""

from __future__ import annotations

from typing import Any

# Built-ins register on import; explicit imports, no directory scanning.
from losses import aam, apl, asl, atl, bce, ranking  # noqa: F401
from losses._kernel import check_inputs, reduce
from losses.base import LOSSES, MultiLabelLoss, require
from losses.presets import get_preset, preset_names
from mllb_core.registry import Registry, RegistryError

# ``check_inputs``, ``reduce`` and ``require`` are public for plugin losses: the contract's input
# checks and messages, its four reductions and the hyper-parameter error message, without
# importing private modules (see the README, "Add your own loss")
__all__ = [
    "LOSSES",
    "MultiLabelLoss",
    "Registry",
    "RegistryError",
    "check_inputs",
    "create_loss",
    "get_preset",
    "list_losses",
    "preset_names",
    "reduce",
    "require",
]


def list_losses() -> list[str]:
    """Names of every registered loss, built-in and installed plugins."""
    return LOSSES.names()


def create_loss(name: str, *, preset: str | None = None, compile: bool = False,
                **kwargs: Any) -> MultiLabelLoss:
    """Build the registered loss ``name``.

    Args:
        name: a registered loss name (``list_losses()``).
        preset: optional published hyper-parameter set (``preset_names()``) for this loss;
            explicit ``kwargs`` override its values.
        compile: compile with ``torch.compile`` (default inductor backend;
            ``MultiLabelLoss.compile_functional``): the functional core, or for the
            asymmetric family its kernel only, a closed-form value and gradient that inductor
            fuses into one loop, handed on by an eager backward (``losses/_kernel.py``,
            ``compiled_poly_caller``); the first call of each input shape pays the
            compilation. Where they apply, two hand-written kernels of the same closed form
            run instead: on CUDA a Triton kernel (``losses/_triton.py``), on a CPU with
            AVX-512 for float32 an AVX-512 loop built once per loss's coefficients with the
            system's C++ compiler and cached (``losses/_cpu_fused.py``; ``MLLB_CPU_KERNEL=0``
            turns it off). Same value and gradient as eager to 1e-6 relative (float64); in
            float32 as close to float64 as eager float32 is.
        **kwargs: hyper-parameters of the loss.

    Raises:
        RegistryError: unknown name (with a suggestion).
        TypeError / ValueError: unknown or invalid hyper-parameter, or a preset of another loss.
    """
    cls = LOSSES.get(name)
    params: dict[str, Any] = {}
    if preset is not None:
        entry = get_preset(preset)
        if entry["loss"] != name:
            raise ValueError(
                f"preset {preset!r} is for loss {entry['loss']!r}, not {name!r}; use "
                f"create_loss({entry['loss']!r}, preset={preset!r})"
            )
        params.update(entry["kwargs"])
    params.update(kwargs)
    loss = cls(**params)
    loss.preset = preset
    if compile:
        loss.compile_functional()
    return loss
