"""The loss contract: a functional core plus a thin registered ``nn.Module``.

A module subclass names its functional core (``functional = staticmethod(asl_loss)``); its
constructor then accepts exactly the core's keyword-only hyper-parameters, resolves the defaults
and exposes them as ``.hparams`` (what goes into the results JSON). Unknown or invalid
hyper-parameters fail at construction with a message that names the loss and the valid keys.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from losses._kernel import REDUCTIONS, compiled_poly_caller
from mllb_core.inductor_cache import separate_inductor_cache
from mllb_core.registry import Registry

LOSSES: Registry[type[MultiLabelLoss]] = Registry("loss", entry_point_group="mllb.losses")
_CPP_FMA = {"cpp.enable_floating_point_contract_flag": "fast"}


class MultiLabelLoss(nn.Module):
    """Base class of every registered loss.

    Class attributes a subclass may set:
        functional: the functional core ``f(logits, targets, *, **hparams) -> Tensor``.
        input_kind: "logits" (any real scores) or "cosine" (the model head must output cosines of
            L2-normalized features and class weights, see ``models/heads.py``).
        decomposable: True when the loss is a sum of independent per-element terms, so that the
            mean reduction does not depend on how examples are grouped into batches.
        reductions: the reductions the loss supports.
        poly_family: True when the functional evaluates the asymmetric family's kernel
            (``losses/_kernel.py``; see ``runs_poly_kernel``).
    """

    functional: ClassVar[Callable[..., Tensor]]
    input_kind: ClassVar[str] = "logits"
    decomposable: ClassVar[bool] = True
    reductions: ClassVar[tuple[str, ...]] = REDUCTIONS
    name: ClassVar[str] = ""
    poly_family: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "functional" in cls.__dict__ or "default_hparams" in cls.__dict__:
            # help(create_loss("asl").__class__) shows the real hyper-parameters
            params = [
                inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
                for k, v in cls.default_hparams().items()
            ]
            cls.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]

    def __init__(self, **hparams: Any) -> None:
        super().__init__()
        self._hparams = self.resolve_hparams(hparams)
        self.preset: str | None = None  # set by create_loss; recorded in results JSON

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        """The functional core's keyword-only defaults."""
        return {p.name: p.default for p in _hparam_parameters(cls.functional)}

    @classmethod
    def resolve_hparams(cls, given: dict[str, Any]) -> dict[str, Any]:
        """Merge ``given`` into the defaults; reject unknown keys and invalid values."""
        defaults = cls.default_hparams()
        label = cls.name or cls.__name__
        for key in given:
            if key not in defaults:
                close = difflib.get_close_matches(key, list(defaults), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise TypeError(
                    f"loss {label!r}: unknown hyper-parameter {key!r}{hint} "
                    f"valid: {sorted(defaults)}"
                )
        resolved = {**defaults, **given}
        reduction = resolved.get("reduction", "mean")
        if reduction not in cls.reductions:
            raise ValueError(
                f"loss {label!r}: reduction must be one of {cls.reductions}, got {reduction!r}"
            )
        cls.check_hparams(resolved)
        return resolved

    @classmethod
    def check_hparams(cls, hparams: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming the field when a hyper-parameter is out of range."""

    @property
    def hparams(self) -> dict[str, Any]:
        """The fully resolved hyper-parameters (a copy; JSON-serializable)."""
        return dict(self._hparams)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Loss of logits [N, C] (cosines if ``input_kind == "cosine"``) vs targets [N, C]."""
        return self._functional(logits, targets, **self._hparams)

    @property
    def _functional(self) -> Callable[..., Tensor]:
        return self.__dict__.get("_compiled_functional") or type(self).functional

    def compile_functional(self, **compile_kwargs: Any) -> MultiLabelLoss:
        """Compile the functional core with ``torch.compile`` (``create_loss(compile=True)``).

        The functional, not ``forward``, is compiled: every loss shares ``forward``'s code
        object, and dynamo's cache per code object would fill up when several losses are
        compiled in one process. Hyper-parameters are Python constants to the compiled code (a
        new value recompiles). For the asymmetric family (``runs_poly_kernel``) only its
        kernel is compiled (``losses._kernel.compiled_poly_caller``; on CUDA and on a CPU with
        AVX-512 a hand-written kernel of the same closed form runs instead, with any
        backend: ``losses/_triton.py``, ``losses/_cpu_fused.py``). With the default
        inductor backend and no ``mode``, C++ loops may contract multiply-adds into FMAs
        (``options``; inductor's default is off). Under ``ATEN_CPU_CAPABILITY`` it first
        gives inductor a cache folder of that capability's own
        (``mllb_core.inductor_cache.separate_inductor_cache``, which sets
        ``TORCHINDUCTOR_CACHE_DIR`` unless the user chose one). Returns ``self``.
        """
        # under ATEN_CPU_CAPABILITY, a cache folder of that capability's own: inductor's cache
        # would otherwise hand out loops generated for another vector width (torch 2.14.1)
        separate_inductor_cache()
        backend = compile_kwargs.get("backend", "inductor")
        if backend == "inductor" and "mode" not in compile_kwargs:
            # fused multiply-add in inductor's C++ loops (its default is off): a polynomial
            # (the compiled family's logs, losses/_kernel.py) then costs half the instructions;
            # one rounding instead of two, so values move only in the last bits
            compile_kwargs["options"] = {**_CPP_FMA, **compile_kwargs.get("options", {})}
        if self.runs_poly_kernel():
            compiled = compiled_poly_caller(type(self).functional, **compile_kwargs)
        else:
            compiled = torch.compile(type(self).functional, **compile_kwargs)
        self.__dict__["_compiled_functional"] = compiled
        return self

    def runs_poly_kernel(self) -> bool:
        """True when this loss, with its hyper-parameters, is evaluated by the asymmetric
        family's kernel (``losses/_kernel.py``): compiled, only that kernel is compiled and
        its backward hands the gradient on (``compiled_poly_caller``)."""
        return self.poly_family

    def decision_rule(self) -> dict[str, Any] | None:
        """The decision rule this loss was trained for, or None (the task tunes its own).

        A loss that builds its decision into training (ATLOP's adaptive threshold: a label is
        predicted when it scores above the threshold class) returns it as data, e.g.
        ``{"policy": "threshold_class", "threshold_index": 0, "top_k": 4}``; a task that lists
        the policy in ``Task.declared_rules`` applies it instead of tuning a threshold.
        """
        return None

    def probabilities(self, outputs: Tensor) -> Tensor:
        """Model outputs [N, C] -> probabilities [N, C] in float32 (for metrics/thresholds)."""
        return torch.sigmoid(outputs.float())

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._hparams.items())


def _hparam_parameters(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    return [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind == inspect.Parameter.KEYWORD_ONLY
    ]


def require(cond: bool, loss: str, field: str, expected: str, value: Any) -> None:
    """Raise a ValueError naming the loss, the field, the expectation and the value given."""
    if not cond:
        raise ValueError(f"loss {loss!r}: {field} must be {expected}, got {value!r}")


def check_nonneg(loss: str, **values: float) -> None:
    """Every value finite and >= 0."""
    for field, v in values.items():
        require(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, loss, field,
                "a finite number >= 0", v)


def check_finite(loss: str, **values: float) -> None:
    """Every value a finite number."""
    for field, v in values.items():
        require(isinstance(v, (int, float)) and math.isfinite(v), loss, field,
                "a finite number", v)


def check_margin(loss: str, field: str, value: float) -> None:
    """A probability margin in [0, 1)."""
    require(isinstance(value, (int, float)) and 0 <= value < 1, loss, field, "in [0, 1)", value)
