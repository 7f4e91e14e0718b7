"""Asymmetric angular margin loss (AAM) on cosine similarities.

Prokofiev and Sovrasov, "Combining Metric Learning and Attention Heads For Accurate and Efficient
Multilabel Image Classification" (``../shared/papers/002_e6a5ef795d45cd53.txt``), eq. 1::

    p+ = sigmoid(s (cos - m)),   p- = sigmoid(-s (cos + m))
    L+ = -(k / s)       * min(p- + clip, 1)^gamma_pos * log p+
    L- = -((1 - k) / s) * p+^gamma_neg                * log p-

``cos`` is the cosine between the L2-normalized feature and the L2-normalized class weight, so
the model needs a cosine head (``input_kind = "cosine"``; the engine picks the head a loss
declares). Naming follows ASL: ``gamma_pos`` focuses the positives. Eq. 1 as printed puts
gamma- on the positive term and gamma+ on the negative one, while the paper's hyper-parameters
(e.g. COCO gamma- = 1, gamma+ = 0) and the authors' code (deep-object-reid ``AMBinaryLoss``) use
the ASL convention. ``clip`` is the authors' code's ``probability_margin``: it is added to p- in the
positive focusing weight only (it is not a probability shift of the negatives as in ASL, and has no
effect when gamma_pos = 0); eq. 1 has no clip, hence the default 0. The authors' code returns
sum / N: reduction ``batchmean``. Unlike ASL's official code, its focusing weights are not
detached, hence ``detach_focal_weight=False`` by default.

Computation: with ``m = 0`` and ``clip = 0`` (the defaults and every preset), eq. 1 is the
asymmetric polynomial family of ``losses/_kernel.py`` at ``z = s cos`` (c+ = k / s,
c- = (1 - k) / s), evaluated by its fused kernel (one saved [N, C] tensor); otherwise the plain
composition of eq. 1 below. ``tests/test_losses/test_loss_reference.py`` checks both against
eq. 1 written plainly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from losses._kernel import PolyParams, cached_params, check_inputs, compute_dtype, poly_loss, reduce
from losses.base import LOSSES, MultiLabelLoss, check_finite, check_margin, check_nonneg, require


def _check_aam(s: float, m: float, k: float, gamma_pos: float, gamma_neg: float,
               clip: float) -> None:
    require(isinstance(s, (int, float)) and s > 0, "aam", "s", "> 0", s)
    check_finite("aam", m=m)
    require(0 <= k <= 1, "aam", "k", "in [0, 1]", k)
    check_nonneg("aam", gamma_pos=gamma_pos, gamma_neg=gamma_neg)
    check_margin("aam", "clip", clip)


def aam_loss(
    cos_theta: Tensor,
    targets: Tensor,
    *,
    s: float = 23.0,
    m: float = 0.0,
    k: float = 0.7,
    gamma_pos: float = 0.0,
    gamma_neg: float = 1.0,
    clip: float = 0.0,
    detach_focal_weight: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """AAM (eq. 1) on cosines [N, C] and targets [N, C].

    Args:
        cos_theta: [N, C] cosine similarities in [-1, 1] (any float dtype; computed in float32).
        s: scale; m: angular (additive cosine) margin; k: positive/negative balance.
        gamma_pos, gamma_neg: asymmetric focusing exponents (ASL convention).
        clip: the authors' probability margin, added to p- in the positive weight.
        detach_focal_weight: treat the focusing weights as constants in backward.
        reduction: "mean" (over N*C), "sum", "batchmean" (sum / N, the authors' code) or "none".
    """
    if m == 0 and clip == 0:
        # with z = s cos, eq. 1 is the asymmetric polynomial family (losses/_kernel.py) with
        # c+ = k / s, c- = (1 - k) / s and the ASL focusing convention: one fused kernel that
        # saves one [N, C] tensor (its gradient) instead of the composition's seven
        hp = _aam_params(s, m, k, gamma_pos, gamma_neg, clip, detach_focal_weight)
        return poly_loss(cos_theta, targets, hp, reduction, "aam", scale=s)
    check_inputs("aam", cos_theta, targets, reduction)
    _check_aam(s, m, k, gamma_pos, gamma_neg, clip)
    c = cos_theta.to(compute_dtype(cos_theta))
    y = targets.to(c.dtype)
    z_pos = s * (c - m)  # [N, C] logit of the positive side
    z_neg = s * (c + m)  # [N, C] logit of the negative side
    loss_pos = F.logsigmoid(z_pos) * (-k / s)
    loss_neg = F.logsigmoid(-z_neg) * (-(1.0 - k) / s)
    if gamma_pos or gamma_neg:
        zp = z_pos.detach() if detach_focal_weight else z_pos
        zn = z_neg.detach() if detach_focal_weight else z_neg
        if gamma_pos:
            loss_pos = loss_pos * (torch.sigmoid(-zn) + clip).clamp(max=1.0).pow(gamma_pos)
        if gamma_neg:
            loss_neg = loss_neg * torch.sigmoid(zp).pow(gamma_neg)
    return reduce(loss_neg + y * (loss_pos - loss_neg), reduction)


@cached_params
def _aam_params(s: float, m: float, k: float, gamma_pos: float, gamma_neg: float, clip: float,
                detach_focal_weight: bool) -> PolyParams:
    """aam's checked coefficients as the family's (m = clip = 0), once per set of values."""
    _check_aam(s, m, k, gamma_pos, gamma_neg, clip)
    return PolyParams(gamma_pos=gamma_pos, gamma_neg=gamma_neg, scale_pos=k / s,
                      scale_neg=(1.0 - k) / s, detach_focal_weight=detach_focal_weight)


@LOSSES.register("aam")
class AsymmetricAngularMarginLoss(MultiLabelLoss):
    """AAM on cosines; needs a cosine head (``input_kind = "cosine"``). See :func:`aam_loss`."""

    name = "aam"
    functional = staticmethod(aam_loss)
    input_kind = "cosine"

    def probabilities(self, outputs: Tensor) -> Tensor:
        """Cosines [N, C] -> p+ = sigmoid(s (cos - m)), the probability eq. 1 trains."""
        return torch.sigmoid(self._hparams["s"] * (outputs.float() - self._hparams["m"]))

    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        _check_aam(hp["s"], hp["m"], hp["k"], hp["gamma_pos"], hp["gamma_neg"], hp["clip"])

    def runs_poly_kernel(self) -> bool:
        """Without margin and clip, eq. 1 is the family formula on s * cos (``aam_loss``)."""
        return self._hparams["m"] == 0 and self._hparams["clip"] == 0
