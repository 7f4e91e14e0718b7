"""Binary cross-entropy and its two classic modifications, focal loss and Poly-1.

* ``bce``: ``F.binary_cross_entropy_with_logits`` (the reference every ratio in BENCHMARKS.md is
  measured against), computed in float32, with the extra ``batchmean`` reduction.
* ``focal``: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, eq. 5 applied per
  label (as in eq. 3 of the ASL paper): L+ = alpha (1 - p)^gamma (-log p),
  L- = (1 - alpha) p^gamma (-log(1 - p)); ``alpha=None`` weights both sides by 1.
* ``poly1``: Leng et al., "PolyLoss", ICLR 2022, eq. 3 for the binary case:
  L = BCE + epsilon (1 - p_t), p_t = y p + (1 - y)(1 - p).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from losses._kernel import (
    PolyParams,
    cached_params,
    check_inputs,
    compute_dtype,
    poly_loss,
    reduce,
)
from losses.base import LOSSES, MultiLabelLoss, check_finite, check_nonneg, require


def bce_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    pos_weight: float | Sequence[float] | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy with logits, in float32.

    Args:
        pos_weight: weight of the positive term, a number or one value per class ([C]).
        reduction: "mean" (over N*C), "sum", "batchmean" (sum / N) or "none".
    """
    check_inputs("bce", logits, targets, reduction)
    z = logits.to(compute_dtype(logits))
    pw = None
    if pos_weight is not None:
        pw = torch.as_tensor(pos_weight, dtype=z.dtype, device=z.device)
        if pw.dim() > 1 or (pw.dim() == 1 and pw.numel() != z.shape[1]):
            raise ValueError(
                f"bce: pos_weight must be a number or have one value per class "
                f"({z.shape[1]}), got shape {tuple(pw.shape)}"
            )
    y = targets.to(z.dtype)
    if reduction in ("mean", "sum"):
        return F.binary_cross_entropy_with_logits(z, y, pos_weight=pw, reduction=reduction)
    loss = F.binary_cross_entropy_with_logits(z, y, pos_weight=pw, reduction="none")
    return reduce(loss, reduction)


@LOSSES.register("bce")
class BinaryCrossEntropy(MultiLabelLoss):
    """Binary cross-entropy on logits; see :func:`bce_loss`."""

    name = "bce"
    functional = staticmethod(bce_loss)

    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        pw = hp["pos_weight"]
        if pw is not None:
            values = [pw] if isinstance(pw, (int, float)) else list(pw)
            check_nonneg(cls.name, **{f"pos_weight[{i}]": v for i, v in enumerate(values)})
            hp["pos_weight"] = pw if isinstance(pw, (int, float)) else [float(v) for v in pw]


def _check_focal(gamma: float, alpha: float | None) -> None:
    check_nonneg("focal", gamma=gamma)
    require(alpha is None or 0 <= alpha <= 1, "focal", "alpha", "None or in [0, 1]", alpha)


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Focal loss per label (Lin et al. 2017, eq. 5).

    Args:
        gamma: focusing exponent (0 gives BCE).
        alpha: weight of the positive term, 1 - alpha weights the negative one; None: no weights.
        reduction: "mean" (over N*C), "sum", "batchmean" (sum / N) or "none".
    """
    return poly_loss(logits, targets, _focal_params(gamma, alpha), reduction, "focal")


@cached_params
def _focal_params(gamma: float, alpha: float | None) -> PolyParams:
    """focal's checked coefficients (once per set of values)."""
    _check_focal(gamma, alpha)
    a = 1.0 if alpha is None else alpha
    b = 1.0 if alpha is None else 1.0 - alpha
    return PolyParams(gamma_pos=gamma, gamma_neg=gamma, scale_pos=a, scale_neg=b)


@LOSSES.register("focal")
class FocalLoss(MultiLabelLoss):
    """Focal loss applied to every label; see :func:`focal_loss`."""

    name = "focal"
    functional = staticmethod(focal_loss)
    poly_family = True

    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        _check_focal(hp["gamma"], hp["alpha"])


def poly1_loss(
    logits: Tensor, targets: Tensor, *, epsilon: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Poly-1 binary cross-entropy (Leng et al. 2022, eq. 3): BCE + epsilon (1 - p_t).

    Args:
        epsilon: coefficient of the first polynomial term (0 gives BCE; may be negative > -1).
        reduction: "mean" (over N*C), "sum", "batchmean" (sum / N) or "none".
    """
    return poly_loss(logits, targets, _poly1_params(epsilon), reduction, "poly1")


@cached_params
def _poly1_params(epsilon: float) -> PolyParams:
    """poly1's checked coefficients (once per set of values)."""
    check_finite("poly1", epsilon=epsilon)
    return PolyParams(a1=epsilon, b1=epsilon)


@LOSSES.register("poly1")
class Poly1Loss(MultiLabelLoss):
    """Poly-1 binary cross-entropy; see :func:`poly1_loss`."""

    name = "poly1"
    functional = staticmethod(poly1_loss)
    poly_family = True

    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        check_finite(cls.name, epsilon=hp["epsilon"])
