"""Asymmetric loss (ASL) and its adaptive-asymmetry variant.

Ridnik et al., "Asymmetric Loss For Multi-Label Classification", ICCV 2021
(``../shared/papers/003_197f9be5817148c1.txt``), eq. 4-7::

    L+ = (1 - p)^gamma_pos * (-log p)
    L- = p_m^gamma_neg * (-log(1 - p_m)),    p_m = max(p - clip, 0)      (eq. 5, 6)

Differences from the official code (Alibaba-MIIL/ASL ``AsymmetricLoss``):

* logs come from ``logsigmoid``; the official ``log(sigmoid(x).clamp(min=eps))`` is reproduced
  only when ``eps > 0`` is asked for (value and zero gradient below eps), default ``eps = 0``;
* ``reduction`` defaults to ``mean``; the official code returns ``-loss.sum()`` (preset
  ``asl_coco`` uses ``sum`` to reproduce it);
* ``detach_focal_weight=True`` treats the focusing weights as constants, like the official
  ``disable_torch_grad_focal_loss=True``, without toggling the global grad mode (the official code
  re-enables gradients even inside an outer ``torch.no_grad()``);
* no state on the module, no ``.cuda()``, float32 compute for fp16/bf16 inputs.

``asl_adaptive`` implements eq. 11 (adaptive asymmetry), which the official repository never
released: after each training batch gamma_neg moves by ``step_size * (delta_p_target - delta_p)``,
delta_p = mean p of the positives - mean (1 - p) of the negatives (eq. 9-10). The printed eq. 11,
gamma_neg + lambda (delta_p - delta_p_target), moves delta_p away from the target for lambda > 0
(a larger gamma_neg raises delta_p); the sign here is the one the paper's text describes ("as we
increase delta_p_target, eq. 11 enables us to ... increase the asymmetry level").
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from losses._kernel import PolyParams, cached_params, compute_dtype, poly_loss
from losses.base import LOSSES, MultiLabelLoss, check_margin, check_nonneg, require


def _check_asl(loss: str, gamma_pos: float, gamma_neg: float, clip: float, eps: float) -> None:
    check_nonneg(loss, gamma_pos=gamma_pos, gamma_neg=gamma_neg)
    check_margin(loss, "clip", clip)
    require(0 <= eps < 0.5, loss, "eps", "in [0, 0.5)", eps)


def asl_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    eps: float = 0.0,
    detach_focal_weight: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """Asymmetric loss (ASL eq. 7) on logits [N, C] and targets [N, C].

    Args:
        gamma_pos: focusing exponent of the positives, weight (1 - p)^gamma_pos.
        gamma_neg: focusing exponent of the negatives, weight p_m^gamma_neg.
        clip: probability margin m of eq. 5 (0 disables shifting).
        eps: > 0 clamps the probabilities inside the logs at eps, as the official code does.
        detach_focal_weight: treat the focusing weights as constants in backward.
        reduction: "mean" (over N*C), "sum", "batchmean" (sum / N) or "none".
    """
    hp = _asl_params(gamma_pos, gamma_neg, clip, eps, detach_focal_weight)
    return poly_loss(logits, targets, hp, reduction, "asl")


@cached_params
def _asl_params(gamma_pos: float, gamma_neg: float, clip: float, eps: float,
                detach_focal_weight: bool) -> PolyParams:
    """asl's checked coefficients (once per set of values)."""
    _check_asl("asl", gamma_pos, gamma_neg, clip, eps)
    return PolyParams(gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, eps=eps,
                      detach_focal_weight=detach_focal_weight)


@LOSSES.register("asl")
class AsymmetricLoss(MultiLabelLoss):
    """ASL (Ridnik et al., ICCV 2021, eq. 7); see :func:`asl_loss`."""

    name = "asl"
    functional = staticmethod(asl_loss)
    poly_family = True

    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        _check_asl(cls.name, hp["gamma_pos"], hp["gamma_neg"], hp["clip"], hp["eps"])


@LOSSES.register("asl_adaptive")
class AdaptiveAsymmetricLoss(MultiLabelLoss):
    """ASL with adaptive asymmetry (ASL paper eq. 9-11).

    ``hparams["gamma_neg"]`` is the initial value; the current one is ``.gamma_neg`` and the last
    batch's probability gap ``.delta_p`` (both floats, for logging). Updates happen only in
    training mode; under ``torch.distributed`` the batch statistics are all-reduced so every
    rank keeps the same gamma_neg. The state travels in ``state_dict()`` (extra state), so
    ``accelerator.save_state``/``load_state`` resume it.
    """

    name = "asl_adaptive"
    functional = staticmethod(asl_loss)
    poly_family = True

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        """ASL's hyper-parameters (gamma_neg is the initial value) plus the eq. 11 controls."""
        return {**super().default_hparams(), "step_size": 1e-3, "delta_p_target": 0.1,
                "gamma_neg_min": 0.0, "gamma_neg_max": None}

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.gamma_neg = float(self._hparams["gamma_neg"])
        self.delta_p = float("nan")

    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        _check_asl(cls.name, hp["gamma_pos"], hp["gamma_neg"], hp["clip"], hp["eps"])
        check_nonneg(cls.name, step_size=hp["step_size"], gamma_neg_min=hp["gamma_neg_min"])
        require(-1 <= hp["delta_p_target"] <= 1, cls.name, "delta_p_target", "in [-1, 1]",
                hp["delta_p_target"])
        hi = hp["gamma_neg_max"]
        require(hi is None or hi >= hp["gamma_neg_min"], cls.name, "gamma_neg_max",
                "None or >= gamma_neg_min", hi)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """ASL with the current gamma_neg; in training mode, then update gamma_neg (eq. 11)."""
        hp = self._hparams
        # compiled (create_loss(compile=True)), a new gamma_neg is a new constant: dynamo
        # recompiles until its recompile limit, then runs this loss eagerly (same values)
        loss = self._functional(logits, targets, gamma_pos=hp["gamma_pos"],
                                gamma_neg=self.gamma_neg, clip=hp["clip"], eps=hp["eps"],
                                detach_focal_weight=hp["detach_focal_weight"],
                                reduction=hp["reduction"])
        if self.training:
            self._update(logits.detach(), targets.detach())
        return loss

    def _update(self, logits: Tensor, targets: Tensor) -> None:
        p = torch.sigmoid(logits.to(compute_dtype(logits)))  # [N, C]
        pos = targets > 0.5
        # [sum p over positives, #positives, sum (1 - p) over negatives, #negatives]
        stats = torch.stack([
            torch.where(pos, p, 0.0).sum(), pos.sum().to(p.dtype),
            torch.where(pos, 0.0, 1.0 - p).sum(), (~pos).sum().to(p.dtype),
        ]).double()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        sum_pos, n_pos, sum_neg, n_neg = stats.tolist()
        if n_pos == 0 or n_neg == 0:
            return  # delta_p is undefined without both kinds of entries
        self.delta_p = sum_pos / n_pos - sum_neg / n_neg
        hp = self._hparams
        g = self.gamma_neg + hp["step_size"] * (hp["delta_p_target"] - self.delta_p)
        g = max(g, hp["gamma_neg_min"])
        if hp["gamma_neg_max"] is not None:
            g = min(g, hp["gamma_neg_max"])
        self.gamma_neg = g

    def get_extra_state(self) -> dict[str, float]:
        """Checkpointed adaptive state."""
        return {"gamma_neg": self.gamma_neg, "delta_p": self.delta_p}

    def set_extra_state(self, state: dict[str, float]) -> None:
        """Restore the adaptive state saved by :meth:`get_extra_state`."""
        self.gamma_neg = float(state["gamma_neg"])
        self.delta_p = float(state["delta_p"])
