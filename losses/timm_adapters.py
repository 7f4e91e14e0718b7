"""Adapters that register timm's multi-label losses under MLLB names (no copies of their code).

* ``zlpr``: ``timm.loss.ZlprLoss`` (Su et al., "ZLPR: A Novel Loss for Multi-label
  Classification", 2022): per sample log(1 + sum_neg e^z) + log(1 + sum_pos e^-z), batch mean.
* ``two_way``: ``timm.loss.TwoWayLoss`` (Kobayashi, "Two-way Multi-Label Loss", CVPR 2023).

Both are defined per sample (zlpr) or per batch (two_way) rather than per label, so they support
only the ``mean`` reduction; two_way is not ``decomposable``: its value depends on which examples
share a batch.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from losses._kernel import check_inputs, compute_dtype
from losses.base import LOSSES, MultiLabelLoss, require


def zlpr_loss(logits: Tensor, targets: Tensor, *, reduction: str = "mean") -> Tensor:
    """ZLPR loss of timm (targets binarized at 0.5); only ``reduction="mean"``."""
    from timm.loss import ZlprLoss

    check_inputs("zlpr", logits, targets, reduction)
    require(reduction == "mean", "zlpr", "reduction", "'mean'", reduction)
    return ZlprLoss()(logits.to(compute_dtype(logits)), targets)


def two_way_loss(
    logits: Tensor, targets: Tensor, *, tp: float = 4.0, tn: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Two-way multi-label loss of timm (temperatures tp, tn); only ``reduction="mean"``."""
    from timm.loss import TwoWayLoss

    check_inputs("two_way", logits, targets, reduction)
    require(reduction == "mean", "two_way", "reduction", "'mean'", reduction)
    return TwoWayLoss(tp=tp, tn=tn)(logits.to(compute_dtype(logits)), targets)


@LOSSES.register("zlpr")
class ZLPRLoss(MultiLabelLoss):
    """timm's ZlprLoss; see :func:`zlpr_loss`."""

    name = "zlpr"
    functional = staticmethod(zlpr_loss)
    reductions: ClassVar[tuple[str, ...]] = ("mean",)


@LOSSES.register("two_way")
class TwoWayLoss(MultiLabelLoss):
    """timm's TwoWayLoss; see :func:`two_way_loss`."""

    name = "two_way"
    functional = staticmethod(two_way_loss)
    reductions: ClassVar[tuple[str, ...]] = ("mean",)
    decomposable = False

    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        for field in ("tp", "tn"):
            require(hp[field] > 0, cls.name, field, "> 0", hp[field])
