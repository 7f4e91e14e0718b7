"""ZLPR and the two-way multi-label loss: MLLB's own fused implementations of timm's losses.

* ``zlpr``: Su et al., "ZLPR: A Novel Loss for Multi-label Classification", 2022; as
  ``timm.loss.ZlprLoss``: per sample ``log(1 + sum_neg e^z) + log(1 + sum_pos e^-z)``, batch mean.
* ``two_way``: Kobayashi, "Two-way Multi-Label Loss", CVPR 2023; as ``timm.loss.TwoWayLoss``:
  in both directions (over the classes of each sample, over the samples of each class),
  ``softplus(tn * LSE_neg(z / tn) + tp * LSE_pos(-z / tp))``, averaged over the samples (classes)
  with at least one positive, the two directions summed.

timm composes them from ``masked_fill``/``cat``/``logsumexp``, whose backward saves several
[N, C] tensors and recomputes the softmaxes. Here each is one ``autograd.Function`` whose
forward also computes the closed-form gradient (d LSE / dz is a softmax; d softplus(h) / dh is
sigmoid(h)) and saves only that: one [N, C] tensor. ``tests/test_losses/test_ranking.py`` checks
value and gradient against timm's modules (the test reference) to 1e-6.

Deviations from timm, none of which changes a value: ``zlpr`` computes
``log(1 + sum e^a)`` as ``softplus(logsumexp(a))`` instead of a log-sum-exp over ``a`` with an
appended zero (equal up to rounding); targets are binarized at 0.5 as in timm. Both losses
are defined per sample (zlpr) or per batch (two_way) rather than per label, so they support
only the ``mean`` reduction; two_way is not ``decomposable``: its value depends on which
examples share a batch.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from losses._kernel import check_inputs, compute_dtype
from losses.base import LOSSES, MultiLabelLoss, require

# timm's mask value for the entries a log-sum-exp leaves out
_MASK = -1e4
# exp of an argument below about -87 (float32 underflow) takes a slow path on x86 CPUs, about 100
# times the normal cost; masked entries would hit it on every call. Clamping the shifted
# argument at -87 changes a masked entry's term from 0 to e^-87 (< 2e-38), far below rounding.
_EXP_FLOOR = -87.0


def _lse(t: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """log-sum-exp of ``t`` over ``dim`` (keepdim), with ``e = exp(t - max)`` and its sum.

    ``e / sum`` is the softmax (the derivative of the log-sum-exp), so the backward needs no
    second exp.
    """
    top = t.amax(dim=dim, keepdim=True)
    e = (t - top).clamp_(min=_EXP_FLOOR).exp_()
    total = e.sum(dim=dim, keepdim=True)
    return top + total.log(), e, total


class _ZlprFunction(torch.autograd.Function):
    """ZLPR value and its closed-form gradient in one forward; backward scales it."""

    @staticmethod
    def forward(ctx, x: Tensor, pos: Tensor) -> Tensor:  # type: ignore[override]
        m = torch.where(pos, -x, x)  # [N, C] the exponent of each entry's own term
        lse_neg, e_neg, s_neg = _lse(m.masked_fill(pos, _MASK), 1)  # [N, 1]
        lse_pos, e_pos, s_pos = _lse(m.masked_fill(~pos, _MASK), 1)
        # log(1 + sum e^m) = softplus(lse): the appended zero logit of timm's formula
        out = (F.softplus(lse_neg) + F.softplus(lse_pos)).mean()
        if ctx.needs_input_grad[0]:
            # d/dz_j log(1 + sum e^m) = +-e^{m_j} / (1 + sum e^m) = +-softmax_j * sigmoid(lse)
            n = x.shape[0]
            k_neg = torch.sigmoid(lse_neg).div_(s_neg * n)  # [N, 1]
            k_pos = torch.sigmoid(lse_pos).div_(s_pos * -n)
            grad = torch.where(pos, e_pos.mul_(k_pos), e_neg.mul_(k_neg))
            ctx.save_for_backward(grad)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None


class _TwoWayFunction(torch.autograd.Function):
    """Two-way loss value and its closed-form gradient in one forward; backward scales it."""

    @staticmethod
    def forward(ctx, x: Tensor, pos: Tensor, tp: float, tn: float) -> Tensor:  # type: ignore[override]
        a = (x / -tp).masked_fill_(~pos, _MASK)  # [N, C] soft-min terms of the positives
        b = (x / tn).masked_fill_(pos, _MASK)  # [N, C] soft-max terms of the negatives
        need_grad = ctx.needs_input_grad[0]
        out = x.new_zeros(())
        grad = None
        for dim in (0, 1):  # 0: over the samples of each class, 1: over the classes of a sample
            lse_a, e_a, s_a = _lse(a, dim)  # [1, C] or [N, 1]
            lse_b, e_b, s_b = _lse(b, dim)
            h = tn * lse_b + tp * lse_a
            valid = pos.any(dim=dim, keepdim=True)
            count = valid.sum().clamp(min=1)
            out = out + F.softplus(h)[valid].sum() / count
            if need_grad:
                # d softplus(h) = sigmoid(h) dh; dh/dz = softmax of b on the negatives and
                # -softmax of a on the positives (tp, tn cancel with the 1/tp, 1/tn inside)
                coef = torch.sigmoid(h).mul_(valid).div_(count)
                part = torch.where(pos, e_a.mul_(-coef / s_a), e_b.mul_(coef / s_b))
                grad = part if grad is None else grad.add_(part)
        if grad is not None:
            ctx.save_for_backward(grad)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None, None


def zlpr_loss(logits: Tensor, targets: Tensor, *, reduction: str = "mean") -> Tensor:
    """ZLPR (targets binarized at 0.5), equal to ``timm.loss.ZlprLoss``; only ``"mean"``.

    Args:
        logits: [N, C] scores (any float dtype; computed in float32, float64 stays float64).
        targets: [N, C]; entries above 0.5 are positives.
    """
    check_inputs("zlpr", logits, targets, reduction)
    require(reduction == "mean", "zlpr", "reduction", "'mean'", reduction)
    x = logits.to(compute_dtype(logits))
    return _ZlprFunction.apply(x, targets.detach() > 0.5)


def two_way_loss(
    logits: Tensor, targets: Tensor, *, tp: float = 4.0, tn: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Two-way multi-label loss (temperatures tp, tn), equal to ``timm.loss.TwoWayLoss``.

    Args:
        logits: [N, C] ranking scores (computed in float32, float64 stays float64).
        targets: [N, C]; entries above 0.5 are positives.
        tp, tn: temperatures of the soft-min over positives and the soft-max over negatives.
        reduction: only ``"mean"``.
    """
    check_inputs("two_way", logits, targets, reduction)
    require(reduction == "mean", "two_way", "reduction", "'mean'", reduction)
    x = logits.to(compute_dtype(logits))
    return _TwoWayFunction.apply(x, targets.detach() > 0.5, float(tp), float(tn))


@LOSSES.register("zlpr")
class ZLPRLoss(MultiLabelLoss):
    """ZLPR; see :func:`zlpr_loss`."""

    name = "zlpr"
    functional = staticmethod(zlpr_loss)
    reductions: ClassVar[tuple[str, ...]] = ("mean",)


@LOSSES.register("two_way")
class TwoWayLoss(MultiLabelLoss):
    """The two-way multi-label loss; see :func:`two_way_loss`."""

    name = "two_way"
    functional = staticmethod(two_way_loss)
    reductions: ClassVar[tuple[str, ...]] = ("mean",)
    decomposable = False

    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        for field in ("tp", "tn"):
            require(hp[field] > 0, cls.name, field, "> 0", hp[field])
