"""Asymmetric Polynomial Loss (APL), in the paper's and in the official code's parametrization.

Huang et al., "Asymmetric Polynomial Loss for Multi-Label Classification", ICASSP 2023
(``../shared/papers/000_713c8de32f1ed827.txt``), the L_APL equation of section 2.2::

    L+ = (1 - p)^gamma_pos [-log p + (alpha1 - 1)(1 - p) + (alpha2 - 1/2)(1 - p)^2]
    L- = p_res^gamma_neg   [-log(1 - p_res) + (beta1 - 1) p_res],   p_res = max(p - p_th, 0)

The printed closed form has -log(1 - p_i) inside L-; its own series (sum_n beta_n p_res^(n+g-)),
its gradient analysis (section 2.3) and the statement that alpha1 = 1, alpha2 = 1/2, beta1 = 1 is
ASL all need -log(1 - p_res), which is what is implemented.

``apl_official`` reproduces LUMIA-Group/APL ``APLloss.py``, which uses another parametrization::

    L+ = (1 - p)^gamma_pos [-log p - epsilon_pos (1 - p) - epsilon_pos_pow / 2 (1 - p)^2]
    L- = p_m^gamma_neg     [-log(1 - p_m) - epsilon_neg (1 - p_m)]

(note the ``0.5 *`` on the squared term and the negative term on base 1 - p_m). Mapping
(:func:`official_to_paper`): alpha1 = 1 - epsilon_pos, alpha2 = (1 - epsilon_pos_pow) / 2,
beta1 = 1 + epsilon_neg. It is exact for epsilon_neg = 0 (the official default); otherwise the
official loss has an extra -epsilon_neg * p_m^gamma_neg per negative, which changes the value and,
unless the focusing weight is detached, the gradient. The official defaults (1.0, 0.0, -2.5) are
alpha1 = 0, alpha2 = 1.75, beta1 = 1.

Other differences from the official code are those listed for ASL in ``losses/asl.py`` (stable
logs, no grad-mode toggles, mean reduction by default, eps clamp only when asked for). The official
code also clamps p at eps inside its polynomial terms; that changes the value and the gradient of
an entry whose probability is below eps by at most eps * (|epsilon_pos| + |epsilon_pos_pow|) (a
positive) or eps * |epsilon_neg| (a negative with m = 0) and is not reproduced.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from losses._kernel import PolyParams, cached_params, poly_loss
from losses.asl import _check_asl
from losses.base import LOSSES, MultiLabelLoss, check_finite


def apl_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    alpha1: float = 1.0,
    alpha2: float = 0.5,
    beta1: float = 1.0,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    p_th: float = 0.05,
    eps: float = 0.0,
    detach_focal_weight: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """APL (the paper's L_APL) on logits [N, C] and targets [N, C].

    Args:
        alpha1, alpha2: coefficients of (1 - p) and (1 - p)^2 in L+ (BCE: 1 and 1/2).
        beta1: coefficient of p_res in L- (BCE: 1).
        gamma_pos, gamma_neg: asymmetric focusing exponents.
        p_th: hard threshold of the negatives (ASL's probability margin).
        eps: > 0 clamps the probabilities inside the logs at eps, as the official code does.
        detach_focal_weight: treat the focusing weights as constants in backward.
        reduction: "mean" (over N*C), "sum", "batchmean" (sum / N) or "none".
    """
    hp = _apl_params(alpha1, alpha2, beta1, gamma_pos, gamma_neg, p_th, eps,
                     detach_focal_weight)
    return poly_loss(logits, targets, hp, reduction, "apl")


@cached_params
def _apl_params(alpha1: float, alpha2: float, beta1: float, gamma_pos: float,
                gamma_neg: float, p_th: float, eps: float,
                detach_focal_weight: bool) -> PolyParams:
    """apl's checked coefficients (once per set of values)."""
    _check_asl("apl", gamma_pos, gamma_neg, p_th, eps)
    check_finite("apl", alpha1=alpha1, alpha2=alpha2, beta1=beta1)
    return PolyParams(gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=p_th, a1=alpha1 - 1.0,
                      a2=alpha2 - 0.5, b1=beta1 - 1.0, eps=eps,
                      detach_focal_weight=detach_focal_weight)


@LOSSES.register("apl")
class AsymmetricPolynomialLoss(MultiLabelLoss):
    """APL in the paper's parametrization; see :func:`apl_loss`."""

    name = "apl"
    functional = staticmethod(apl_loss)
    poly_family = True

    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        _check_asl(cls.name, hp["gamma_pos"], hp["gamma_neg"], hp["p_th"], hp["eps"])
        check_finite(cls.name, alpha1=hp["alpha1"], alpha2=hp["alpha2"], beta1=hp["beta1"])


def official_to_paper(
    epsilon_pos: float, epsilon_neg: float, epsilon_pos_pow: float
) -> dict[str, float]:
    """Paper coefficients (alpha1, alpha2, beta1) of the official epsilons (see module doc)."""
    return {
        "alpha1": 1.0 - epsilon_pos,
        "alpha2": (1.0 - epsilon_pos_pow) / 2.0,
        "beta1": 1.0 + epsilon_neg,
    }


def apl_official_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    epsilon_pos: float = 1.0,
    epsilon_neg: float = 0.0,
    epsilon_pos_pow: float = -2.5,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    eps: float = 1e-8,
    detach_focal_weight: bool = True,
    reduction: str = "sum",
) -> Tensor:
    """APL exactly as LUMIA-Group/APL ``APLloss.py`` computes it (defaults included).

    Args:
        epsilon_pos, epsilon_pos_pow: official coefficients of (1 - p) and 0.5 (1 - p)^2 in L+.
        epsilon_neg: official coefficient of (1 - p_m) in L-.
        gamma_pos, gamma_neg, clip, eps, detach_focal_weight: as in :func:`asl_loss`.
        reduction: "mean" (over N*C), "sum", "batchmean" (sum / N) or "none".
    """
    hp = _apl_official_params(epsilon_pos, epsilon_neg, epsilon_pos_pow, gamma_pos, gamma_neg,
                              clip, eps, detach_focal_weight)
    return poly_loss(logits, targets, hp, reduction, "apl_official")


@cached_params
def _apl_official_params(epsilon_pos: float, epsilon_neg: float, epsilon_pos_pow: float,
                         gamma_pos: float, gamma_neg: float, clip: float, eps: float,
                         detach_focal_weight: bool) -> PolyParams:
    """apl_official's checked coefficients (once per set of values)."""
    _check_asl("apl_official", gamma_pos, gamma_neg, clip, eps)
    check_finite("apl_official", epsilon_pos=epsilon_pos, epsilon_neg=epsilon_neg,
                 epsilon_pos_pow=epsilon_pos_pow)
    return PolyParams(gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, a1=-epsilon_pos,
                      a2=-0.5 * epsilon_pos_pow, b1=epsilon_neg, b0=-epsilon_neg, eps=eps,
                      detach_focal_weight=detach_focal_weight)


@LOSSES.register("apl_official")
class OfficialAsymmetricPolynomialLoss(MultiLabelLoss):
    """APL in the official code's parametrization; see :func:`apl_official_loss`."""

    name = "apl_official"
    functional = staticmethod(apl_official_loss)
    poly_family = True

    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        _check_asl(cls.name, hp["gamma_pos"], hp["gamma_neg"], hp["clip"], hp["eps"])
        check_finite(cls.name, epsilon_pos=hp["epsilon_pos"], epsilon_neg=hp["epsilon_neg"],
                     epsilon_pos_pow=hp["epsilon_pos_pow"])
