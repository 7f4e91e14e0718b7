"""Reference tests for the MLLB loss package (``losses``).

Every test compares the package against an independent float64 computation written in this file:

* the paper equations (BCE, focal, Poly-1, ASL eq. 4-7, APL's L_APL, AAM eq. 1 in the ASL gamma
  convention), written directly with ``torch.sigmoid`` / ``torch.log`` and differentiated with
  autograd in float64;
* transcriptions, in our own words, of the official code's semantics: Alibaba-MIIL
  ``AsymmetricLoss.forward``, LUMIA-Group ``APLloss.py`` and deep-object-reid ``AMBinaryLoss``
  (on fixed test vectors, including extreme logits);
* closed forms that share no code with the package: ``F.binary_cross_entropy_with_logits``, the
  Taylor series that defines APL (truncated at 400 terms), the published gradient formulas (ASL
  eq. 8, APL section 2.3), the ZLPR formula, the two-way loss definition, the adaptive-asymmetry
  update of ASL section 3.3 (with the sign MLLB documents), and finite differences
  (``torch.autograd.gradcheck``).

The package's own output is never the expected value, except in the few "A reduces to B"
identities that the specification states (APL with (1, 1/2, 1) is ASL; official APL maps onto
paper APL), and those are also checked against the independent references.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from losses import create_loss
from losses import functional as LF
from losses.apl import official_to_paper

Tensor = torch.Tensor
DT = torch.float64
RTOL = 1e-10
ATOL = 1e-12
REDUCTIONS = ("mean", "sum", "batchmean", "none")


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def make_inputs(
    seed: int, n: int = 5, c: int = 7, soft: bool = False, lo: float = -6.0, hi: float = 6.0
) -> tuple[Tensor, Tensor]:
    """Seeded float64 logits uniform in [lo, hi] and 0/1 (or soft uniform) targets."""
    g = torch.Generator().manual_seed(seed)
    z = lo + (hi - lo) * torch.rand(n, c, generator=g, dtype=DT)
    if soft:
        y = torch.rand(n, c, generator=g, dtype=DT)
    else:
        y = (torch.rand(n, c, generator=g, dtype=DT) < 0.4).to(DT)
        y[0, 0], y[0, 1] = 1.0, 0.0  # at least one of each
    return z, y


def cotangent(shape: torch.Size, seed: int = 1234) -> Tensor:
    """Fixed random cotangent used to pull back an unreduced ([N, C]) loss."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=DT) + 0.5


def value_and_grad(fn: Callable[[Tensor], Tensor], z: Tensor) -> tuple[Tensor, Tensor]:
    """Return fn(z) and d<fn(z), v>/dz (v = 1 for a scalar, a fixed random cotangent for [N, C])."""
    z = z.detach().clone().requires_grad_(True)
    out = fn(z)
    v = torch.ones_like(out) if out.dim() == 0 else cotangent(out.shape)
    (grad,) = torch.autograd.grad(out, z, grad_outputs=v)
    return out.detach(), grad


def reduce_ref(loss: Tensor, reduction: str) -> Tensor:
    """Reference reduction: mean over N*C, sum, sum / N, or none."""
    if reduction == "mean":
        return loss.sum() / loss.numel()
    if reduction == "sum":
        return loss.sum()
    if reduction == "batchmean":
        return loss.sum() / loss.shape[0]
    if reduction == "none":
        return loss
    raise ValueError(reduction)


def assert_matches(
    got_fn: Callable[[Tensor], Tensor],
    ref_fn: Callable[[Tensor], Tensor],
    z: Tensor,
    reduction: str,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> None:
    """Assert value, shape, dtype and gradient of the package call equal the float64 reference."""
    got, g_got = value_and_grad(got_fn, z)
    exp, g_exp = value_and_grad(ref_fn, z)
    assert got.dtype == DT, f"float64 input must give float64 output, got {got.dtype}"
    assert got.shape == (z.shape if reduction == "none" else torch.Size([])), got.shape
    assert torch.isfinite(g_exp).all(), "reference gradient is not finite (test bug)"
    torch.testing.assert_close(got, exp, rtol=rtol, atol=atol, msg=lambda m: f"value mismatch: {m}")
    torch.testing.assert_close(
        g_got, g_exp, rtol=rtol, atol=atol, msg=lambda m: f"gradient mismatch: {m}"
    )


def maybe_detach(w: Tensor, detach: bool) -> Tensor:
    """Treat a focal weight as a constant in backward when detach is set."""
    return w.detach() if detach else w


def push_from_kink(z: Tensor, clip: float, margin: float = 0.03) -> Tensor:
    """Move logits with |sigmoid(z) - clip| < margin 1.5 away from the p_m kink (for gradcheck)."""
    z = z.clone()
    if clip > 0:
        p = torch.sigmoid(z)
        near = (p - clip).abs() < margin
        z[near & (p < clip)] -= 1.5
        z[near & (p >= clip)] += 1.5
        assert ((torch.sigmoid(z) - clip).abs() > 0.02).all()
    return z


# --------------------------------------------------------------------------------------------------
# float64 references of the paper equations (per element, then reduce)
# --------------------------------------------------------------------------------------------------
def ref_bce(
    z: Tensor, y: Tensor, pos_weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """BCE: -(w_pos y log p + (1 - y) log(1 - p))."""
    p = torch.sigmoid(z)
    w = 1.0 if pos_weight is None else pos_weight
    return reduce_ref(-(w * y * torch.log(p) + (1 - y) * torch.log(1 - p)), reduction)


def ref_focal(z: Tensor, y: Tensor, gamma: float, alpha: float | None, reduction: str) -> Tensor:
    """Focal: y a (1-p)^g (-log p) + (1-y)(1-a) p^g (-log(1-p)); alpha None -> weights 1."""
    p = torch.sigmoid(z)
    a_pos, a_neg = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    lp = a_pos * (1 - p) ** gamma * (-torch.log(p))
    ln = a_neg * p**gamma * (-torch.log(1 - p))
    return reduce_ref(y * lp + (1 - y) * ln, reduction)


def ref_poly1(z: Tensor, y: Tensor, epsilon: float, reduction: str) -> Tensor:
    """Poly-1 for BCE: BCE + epsilon (1 - p_t), p_t = y p + (1 - y)(1 - p)."""
    p = torch.sigmoid(z)
    bce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    pt = y * p + (1 - y) * (1 - p)
    return reduce_ref(bce + epsilon * (1 - pt), reduction)


def ref_asl(
    z: Tensor,
    y: Tensor,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    eps: float = 0.0,
    detach_focal_weight: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """ASL eq. 7: L+ = (1-p)^g+ (-log p), L- = p_m^g- (-log(1-p_m)); eps clamps the logs."""
    p = torch.sigmoid(z)
    pm = torch.clamp(p - clip, min=0.0)
    q_pos = torch.clamp(p, min=eps) if eps > 0 else p
    q_neg = torch.clamp(1 - pm, min=eps) if eps > 0 else 1 - pm
    w_pos = maybe_detach((1 - p) ** gamma_pos, detach_focal_weight)
    w_neg = maybe_detach(pm**gamma_neg, detach_focal_weight)
    loss = y * w_pos * (-torch.log(q_pos)) + (1 - y) * w_neg * (-torch.log(q_neg))
    return reduce_ref(loss, reduction)


def ref_apl(
    z: Tensor,
    y: Tensor,
    alpha1: float = 1.0,
    alpha2: float = 0.5,
    beta1: float = 1.0,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    p_th: float = 0.05,
    detach_focal_weight: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """L_APL: L+ = (1-p)^g+ [-log p + (a1-1)(1-p) + (a2-1/2)(1-p)^2],
    L- = p_res^g- [-log(1-p_res) + (b1-1) p_res].
    """
    p = torch.sigmoid(z)
    pres = torch.clamp(p - p_th, min=0.0)
    w_pos = maybe_detach((1 - p) ** gamma_pos, detach_focal_weight)
    w_neg = maybe_detach(pres**gamma_neg, detach_focal_weight)
    lp = w_pos * (-torch.log(p) + (alpha1 - 1) * (1 - p) + (alpha2 - 0.5) * (1 - p) ** 2)
    ln = w_neg * (-torch.log(1 - pres) + (beta1 - 1) * pres)
    return reduce_ref(y * lp + (1 - y) * ln, reduction)


def ref_aam(
    cos: Tensor,
    y: Tensor,
    s: float = 23.0,
    m: float = 0.0,
    k: float = 0.7,
    gamma_pos: float = 0.0,
    gamma_neg: float = 1.0,
    clip: float = 0.0,
    detach_focal_weight: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """AAM: L+ = -(k/s) min(p- + clip, 1)^g+ log p+, L- = -((1-k)/s) p+^g- log p-."""
    p_pos = torch.sigmoid(s * (cos - m))
    p_neg = torch.sigmoid(-s * (cos + m))
    w_pos = maybe_detach(torch.clamp(p_neg + clip, max=1.0) ** gamma_pos, detach_focal_weight)
    w_neg = maybe_detach(p_pos**gamma_neg, detach_focal_weight)
    lp = -(k / s) * w_pos * torch.log(p_pos)
    ln = -((1 - k) / s) * w_neg * torch.log(p_neg)
    return reduce_ref(y * lp + (1 - y) * ln, reduction)


# --------------------------------------------------------------------------------------------------
# transcriptions of the official code's semantics (binary targets, sum-type reductions)
# --------------------------------------------------------------------------------------------------
def official_asl(
    x: Tensor,
    y: Tensor,
    gamma_pos: float,
    gamma_neg: float,
    clip: float,
    eps: float,
    disable_grad_focal: bool,
) -> Tensor:
    """Alibaba-MIIL AsymmetricLoss.forward semantics (no-grad weight if disable_grad_focal)."""
    pos = torch.sigmoid(x)
    neg = 1 - pos
    if clip is not None and clip > 0:
        neg = torch.clamp(neg + clip, max=1.0)
    total = y * torch.log(torch.clamp(pos, min=eps)) + (1 - y) * torch.log(
        torch.clamp(neg, min=eps)
    )
    if gamma_neg > 0 or gamma_pos > 0:
        with torch.set_grad_enabled(not disable_grad_focal and torch.is_grad_enabled()):
            pt = pos * y + neg * (1 - y)
            weight = safe_pow(1 - pt, gamma_pos * y + gamma_neg * (1 - y))
        total = total * weight
    return -total.sum()


def official_apl(
    x: Tensor,
    y: Tensor,
    epsilon_pos: float = 1.0,
    epsilon_neg: float = 0.0,
    epsilon_pos_pow: float = -2.5,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    eps: float = 1e-8,
    disable_grad_focal: bool = True,
    clamp_poly: bool = True,
) -> Tensor:
    """LUMIA-Group APLloss.forward semantics: Taylor terms on eps-clamped probabilities,
    ASL-style weight, -sum.

    clamp_poly=False clamps p only inside the logs (the variant MLLB documents it implements).
    """
    pos = torch.sigmoid(x)
    neg = 1 - pos
    if clip is not None and clip > 0:
        neg = torch.clamp(neg + clip, max=1.0)
    pc = torch.clamp(pos, min=eps)
    nc = torch.clamp(neg, min=eps)
    pp, nn = (pc, nc) if clamp_poly else (pos, neg)
    t_pos = y * (torch.log(pc) + epsilon_pos * (1 - pp) + epsilon_pos_pow * 0.5 * (1 - pp) ** 2)
    t_neg = (1 - y) * (torch.log(nc) + epsilon_neg * nn)
    total = t_pos + t_neg
    if gamma_neg > 0 or gamma_pos > 0:
        with torch.set_grad_enabled(not disable_grad_focal and torch.is_grad_enabled()):
            pt = pos * y + neg * (1 - y)
            weight = safe_pow(1 - pt, gamma_pos * y + gamma_neg * (1 - y))
        total = total * weight
    return -total.sum()


def official_aam(
    cos: Tensor,
    y: Tensor,
    s: float,
    m: float,
    k: float,
    gamma_pos: float,
    gamma_neg: float,
    clip: float,
) -> Tensor:
    """deep-object-reid AMBinaryLoss.forward semantics (weights keep their grad; sum / N)."""
    focus = gamma_neg > 0 or gamma_pos > 0
    total = (k / s) * y * F.logsigmoid(s * (cos - m)) + ((1 - k) / s) * (1 - y) * F.logsigmoid(
        -s * (cos + m)
    )
    if focus:
        xs_pos = torch.sigmoid(s * (cos - m))
        xs_neg = torch.sigmoid(-s * (cos + m))
        if clip is not None and clip > 0:
            xs_neg = torch.clamp(xs_neg + clip, max=1.0)
        pt = xs_neg * y + xs_pos * (1 - y)
        total = total * torch.pow(pt, gamma_pos * y + gamma_neg * (1 - y))
    return -total.sum() / cos.shape[0]


def safe_pow(base: Tensor, exponent: Tensor) -> Tensor:
    """base ** exponent with the limit gradient 0 where base == 0 (exponent > 0).

    The official code calls torch.pow directly; with a non-detached weight, a fractional
    gamma < 1 and p < clip this gives 0 * inf = NaN gradients. The loss is locally constant (0)
    there, so the intended gradient is 0.
    """
    positive = base > 0
    safe = torch.where(positive, base, torch.ones_like(base))
    return torch.where(positive, safe.pow(exponent), base.detach().pow(exponent))


def extreme_vectors() -> tuple[Tensor, Tensor]:
    """Fixed 4x12 logits with extremes (+-25, +-20) on both labels, and fixed 0/1 targets."""
    base = torch.tensor(
        [-25.0, -20.0, -12.0, -3.0, -0.5, 0.0, 0.7, 2.9, 8.0, 15.0, 20.0, 25.0], dtype=DT
    )
    z = torch.stack([base, base.flip(0), base.roll(3), -base.roll(5)])
    y = torch.tensor([[1, 0] * 6, [0, 1] * 6, [1, 1, 0] * 4, [0, 0, 1] * 4], dtype=DT)
    return z, y


# --------------------------------------------------------------------------------------------------
# 1. paper equations: value and gradient, all reductions
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("use_pos_weight", [False, True])
def test_bce_matches_reference(reduction: str, soft: bool, use_pos_weight: bool) -> None:
    z, y = make_inputs(0, soft=soft)
    pw = torch.linspace(0.5, 3.0, z.shape[1], dtype=DT) if use_pos_weight else None
    assert_matches(
        lambda t: LF.bce_loss(t, y, pos_weight=pw, reduction=reduction),
        lambda t: ref_bce(t, y, pw, reduction),
        z,
        reduction,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 2.0, 1.5, 0.5])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_matches_reference(
    reduction: str, soft: bool, gamma: float, alpha: float | None
) -> None:
    z, y = make_inputs(1, soft=soft)
    assert_matches(
        lambda t: LF.focal_loss(t, y, gamma=gamma, alpha=alpha, reduction=reduction),
        lambda t: ref_focal(t, y, gamma, alpha, reduction),
        z,
        reduction,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("epsilon", [1.0, 0.0, -1.0, 2.5])
def test_poly1_matches_reference(reduction: str, soft: bool, epsilon: float) -> None:
    z, y = make_inputs(2, soft=soft)
    assert_matches(
        lambda t: LF.poly1_loss(t, y, epsilon=epsilon, reduction=reduction),
        lambda t: ref_poly1(t, y, epsilon, reduction),
        z,
        reduction,
    )


ASL_SETTINGS: list[dict[str, Any]] = [
    dict(gamma_pos=0.0, gamma_neg=4.0, clip=0.05, eps=0.0, detach_focal_weight=False),
    dict(gamma_pos=0.0, gamma_neg=4.0, clip=0.05, eps=0.0, detach_focal_weight=True),
    dict(gamma_pos=1.5, gamma_neg=0.5, clip=0.3, eps=0.0, detach_focal_weight=False),
    dict(gamma_pos=1.5, gamma_neg=0.5, clip=0.3, eps=0.0, detach_focal_weight=True),
    dict(gamma_pos=1.0, gamma_neg=2.0, clip=0.0, eps=1e-8, detach_focal_weight=False),
    dict(
        gamma_pos=0.5, gamma_neg=1.5, clip=0.0, eps=0.01, detach_focal_weight=True
    ),  # eps clamps engage
    dict(
        gamma_pos=2.0, gamma_neg=3.0, clip=0.05, eps=0.01, detach_focal_weight=False
    ),  # eps clamps engage
    dict(gamma_pos=0.0, gamma_neg=0.0, clip=0.3, eps=0.0, detach_focal_weight=False),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("hp", ASL_SETTINGS, ids=lambda d: "-".join(f"{v}" for v in d.values()))
def test_asl_matches_reference(reduction: str, soft: bool, hp: dict[str, Any]) -> None:
    z, y = make_inputs(3, n=6, c=8, soft=soft)
    assert_matches(
        lambda t: LF.asl_loss(t, y, **hp, reduction=reduction),
        lambda t: ref_asl(t, y, **hp, reduction=reduction),
        z,
        reduction,
    )


APL_SETTINGS: list[dict[str, Any]] = [
    dict(
        alpha1=1.0,
        alpha2=0.5,
        beta1=1.0,
        gamma_pos=0.0,
        gamma_neg=4.0,
        p_th=0.05,
        detach_focal_weight=False,
    ),
    dict(
        alpha1=0.0,
        alpha2=3.0,
        beta1=1.0,
        gamma_pos=0.0,
        gamma_neg=4.0,
        p_th=0.05,
        detach_focal_weight=True,
    ),
    dict(
        alpha1=2.5,
        alpha2=0.5,
        beta1=1.4,
        gamma_pos=0.0,
        gamma_neg=3.0,
        p_th=0.05,
        detach_focal_weight=False,
    ),
    dict(
        alpha1=1.4,
        alpha2=1.75,
        beta1=0.5,
        gamma_pos=1.0,
        gamma_neg=4.0,
        p_th=0.0,
        detach_focal_weight=True,
    ),
    dict(
        alpha1=1.3,
        alpha2=-0.75,
        beta1=2.0,
        gamma_pos=1.5,
        gamma_neg=0.5,
        p_th=0.3,
        detach_focal_weight=False,
    ),
    dict(
        alpha1=1.3,
        alpha2=-0.75,
        beta1=2.0,
        gamma_pos=1.5,
        gamma_neg=0.5,
        p_th=0.3,
        detach_focal_weight=True,
    ),
    dict(
        alpha1=0.5,
        alpha2=2.0,
        beta1=1.2,
        gamma_pos=0.5,
        gamma_neg=1.5,
        p_th=0.0,
        detach_focal_weight=False,
    ),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("hp", APL_SETTINGS, ids=lambda d: "-".join(f"{v}" for v in d.values()))
def test_apl_matches_reference(reduction: str, soft: bool, hp: dict[str, Any]) -> None:
    z, y = make_inputs(4, n=6, c=8, soft=soft)
    assert_matches(
        lambda t: LF.apl_loss(t, y, **hp, reduction=reduction),
        lambda t: ref_apl(t, y, **hp, reduction=reduction),
        z,
        reduction,
    )


APL_OFFICIAL_SETTINGS: list[dict[str, Any]] = [
    dict(),  # the official defaults
    dict(
        epsilon_pos=2.0,
        epsilon_neg=0.5,
        epsilon_pos_pow=1.0,
        gamma_pos=1.0,
        gamma_neg=2.0,
        clip=0.0,
    ),
    dict(
        epsilon_pos=-1.0,
        epsilon_neg=-0.3,
        epsilon_pos_pow=0.0,
        gamma_pos=1.5,
        gamma_neg=0.5,
        clip=0.3,
        detach_focal_weight=False,
    ),
    dict(
        epsilon_pos=0.5,
        epsilon_neg=0.2,
        epsilon_pos_pow=-1.0,
        gamma_pos=0.0,
        gamma_neg=0.0,
        clip=0.05,
    ),
    dict(
        epsilon_pos=1.0,
        epsilon_neg=1.0,
        epsilon_pos_pow=-2.5,
        gamma_pos=0.5,
        gamma_neg=4.0,
        clip=0.05,
        detach_focal_weight=False,
    ),
]


def _official_apl_kwargs(hp: dict[str, Any]) -> dict[str, Any]:
    """Map package-style apl_official kwargs (with defaults filled in) to official_apl kwargs."""
    full = dict(
        epsilon_pos=1.0,
        epsilon_neg=0.0,
        epsilon_pos_pow=-2.5,
        gamma_pos=0.0,
        gamma_neg=4.0,
        clip=0.05,
        eps=1e-8,
        detach_focal_weight=True,
    )
    full.update(hp)
    full["disable_grad_focal"] = full.pop("detach_focal_weight")
    return full


@pytest.mark.parametrize("reduction", ["sum", "mean", "batchmean"])
@pytest.mark.parametrize(
    "hp", APL_OFFICIAL_SETTINGS, ids=lambda d: "-".join(f"{v}" for v in d.values()) or "defaults"
)
def test_apl_official_matches_reference(reduction: str, hp: dict[str, Any]) -> None:
    z, y = make_inputs(5, n=6, c=8)
    scale = {"sum": 1.0, "mean": 1.0 / z.numel(), "batchmean": 1.0 / z.shape[0]}[reduction]
    assert_matches(
        lambda t: LF.apl_official_loss(t, y, **hp, reduction=reduction),
        lambda t: scale * official_apl(t, y, **_official_apl_kwargs(hp)),
        z,
        reduction,
    )


def test_apl_official_default_reduction_is_sum() -> None:
    z, y = make_inputs(6)
    torch.testing.assert_close(LF.apl_official_loss(z, y), official_apl(z, y), rtol=RTOL, atol=ATOL)


def test_apl_official_unreduced_matches_elementwise_reference() -> None:
    z, y = make_inputs(7, n=4, c=5)

    def ref(t: Tensor) -> Tensor:
        # elementwise official semantics: each element is the official loss of a 1x1 problem
        out = torch.stack(
            [
                official_apl(t[i : i + 1, j : j + 1], y[i : i + 1, j : j + 1])
                for i in range(t.shape[0])
                for j in range(t.shape[1])
            ]
        )
        return out.reshape(t.shape)

    assert_matches(lambda t: LF.apl_official_loss(t, y, reduction="none"), ref, z, "none")


AAM_SETTINGS: list[dict[str, Any]] = [
    dict(s=23.0, m=0.0, k=0.7, gamma_pos=0.0, gamma_neg=1.0, clip=0.0, detach_focal_weight=False),
    # m = 0 and clip = 0: the fused family kernel (the presets' case), focusing on both sides
    dict(s=17.0, m=0.0, k=0.7, gamma_pos=1.0, gamma_neg=2.0, clip=0.0, detach_focal_weight=False),
    dict(s=17.0, m=0.0, k=0.7, gamma_pos=1.0, gamma_neg=2.0, clip=0.0, detach_focal_weight=True),
    dict(s=23.0, m=0.0, k=0.4, gamma_pos=1.5, gamma_neg=2.5, clip=0.0, detach_focal_weight=False),
    dict(s=17.0, m=0.1, k=0.8, gamma_pos=1.0, gamma_neg=2.0, clip=0.05, detach_focal_weight=False),
    dict(s=17.0, m=0.1, k=0.8, gamma_pos=1.0, gamma_neg=2.0, clip=0.05, detach_focal_weight=True),
    dict(s=30.0, m=0.35, k=0.5, gamma_pos=1.5, gamma_neg=0.5, clip=0.3, detach_focal_weight=False),
    dict(s=10.0, m=0.2, k=0.6, gamma_pos=0.5, gamma_neg=1.5, clip=0.0, detach_focal_weight=True),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("hp", AAM_SETTINGS, ids=lambda d: "-".join(f"{v}" for v in d.values()))
def test_aam_matches_reference(reduction: str, hp: dict[str, Any]) -> None:
    cos, y = make_inputs(8, n=6, c=8, lo=-1.0, hi=1.0)
    assert_matches(
        lambda t: LF.aam_loss(t, y, **hp, reduction=reduction),
        lambda t: ref_aam(t, y, **hp, reduction=reduction),
        cos,
        reduction,
    )


def test_float32_input_computes_in_float32() -> None:
    z, y = make_inputs(9)
    got = LF.asl_loss(z.float(), y.float(), gamma_pos=1.0, gamma_neg=4.0, clip=0.05)
    assert got.dtype == torch.float32
    torch.testing.assert_close(
        got.double(), ref_asl(z, y, gamma_pos=1.0, gamma_neg=4.0, clip=0.05), rtol=1e-5, atol=1e-6
    )


# --------------------------------------------------------------------------------------------------
# 2. reductions to BCE / ASL
# --------------------------------------------------------------------------------------------------
def bce_torch(z: Tensor, y: Tensor, reduction: str) -> Tensor:
    """torch's BCE-with-logits with our reduction names ('batchmean' = sum / N)."""
    if reduction == "batchmean":
        return F.binary_cross_entropy_with_logits(z, y, reduction="sum") / z.shape[0]
    return F.binary_cross_entropy_with_logits(z, y, reduction=reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True])
def test_asl_with_zero_gammas_and_clip_is_bce(reduction: str, soft: bool) -> None:
    z, y = make_inputs(10, soft=soft)
    assert_matches(
        lambda t: LF.asl_loss(t, y, gamma_pos=0.0, gamma_neg=0.0, clip=0.0, reduction=reduction),
        lambda t: bce_torch(t, y, reduction),
        z,
        reduction,
        rtol=1e-9,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True])
def test_focal_with_zero_gamma_is_bce(reduction: str, soft: bool) -> None:
    z, y = make_inputs(11, soft=soft)
    assert_matches(
        lambda t: LF.focal_loss(t, y, gamma=0.0, alpha=None, reduction=reduction),
        lambda t: bce_torch(t, y, reduction),
        z,
        reduction,
        rtol=1e-9,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True])
def test_poly1_with_zero_epsilon_is_bce(reduction: str, soft: bool) -> None:
    z, y = make_inputs(12, soft=soft)
    assert_matches(
        lambda t: LF.poly1_loss(t, y, epsilon=0.0, reduction=reduction),
        lambda t: bce_torch(t, y, reduction),
        z,
        reduction,
        rtol=1e-9,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True])
def test_bce_loss_is_torch_bce(reduction: str, soft: bool) -> None:
    z, y = make_inputs(13, soft=soft)
    assert_matches(
        lambda t: LF.bce_loss(t, y, reduction=reduction),
        lambda t: bce_torch(t, y, reduction),
        z,
        reduction,
        rtol=1e-9,
    )


@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gammas_clip", [(0.0, 4.0, 0.05), (1.5, 0.5, 0.3), (1.0, 2.0, 0.0)])
@pytest.mark.parametrize("eps", [0.0, 0.01])
def test_apl_with_unit_coefficients_is_asl(
    detach: bool, reduction: str, gammas_clip: tuple[float, float, float], eps: float
) -> None:
    gp, gn, clip = gammas_clip
    z, y = make_inputs(14, n=6, c=8, soft=True)
    assert_matches(
        lambda t: LF.apl_loss(
            t,
            y,
            alpha1=1.0,
            alpha2=0.5,
            beta1=1.0,
            gamma_pos=gp,
            gamma_neg=gn,
            p_th=clip,
            eps=eps,
            detach_focal_weight=detach,
            reduction=reduction,
        ),
        lambda t: LF.asl_loss(
            t,
            y,
            gamma_pos=gp,
            gamma_neg=gn,
            clip=clip,
            eps=eps,
            detach_focal_weight=detach,
            reduction=reduction,
        ),
        z,
        reduction,
    )
    # and both against the independent ASL reference
    assert_matches(
        lambda t: LF.apl_loss(
            t,
            y,
            alpha1=1.0,
            alpha2=0.5,
            beta1=1.0,
            gamma_pos=gp,
            gamma_neg=gn,
            p_th=clip,
            eps=eps,
            detach_focal_weight=detach,
            reduction=reduction,
        ),
        lambda t: ref_asl(t, y, gp, gn, clip, eps, detach, reduction),
        z,
        reduction,
    )


# --------------------------------------------------------------------------------------------------
# 3. official semantics on fixed vectors (incl. extreme logits)
# --------------------------------------------------------------------------------------------------
# Note: the stored Alibaba-MIIL AsymmetricLoss has its no-grad lines commented out;
# AsymmetricLossOptimized honours disable_torch_grad_focal_loss. The transcription implements
# the flag as documented (weight computed without grad).
@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize(
    "gammas_clip",
    [(0.0, 4.0, 0.05), (1.0, 4.0, 0.05), (1.5, 0.5, 0.3), (2.0, 1.0, 0.0), (0.0, 0.0, 0.0)],
)
def test_asl_equals_official_asl(detach: bool, gammas_clip: tuple[float, float, float]) -> None:
    gp, gn, clip = gammas_clip
    z, y = extreme_vectors()
    assert_matches(
        lambda t: LF.asl_loss(
            t,
            y,
            gamma_pos=gp,
            gamma_neg=gn,
            clip=clip,
            eps=1e-8,
            detach_focal_weight=detach,
            reduction="sum",
        ),
        lambda t: official_asl(t, y, gp, gn, clip, 1e-8, detach),
        z,
        "sum",
        rtol=1e-10,
    )


def test_asl_eps_clamp_on_extreme_positive_logit() -> None:
    """log(max(p, eps)): a positive at logit -25 costs -log(1e-8), with zero gradient."""
    z = torch.tensor([[-25.0]], dtype=DT, requires_grad=True)
    y = torch.ones(1, 1, dtype=DT)
    loss = LF.asl_loss(
        z,
        y,
        gamma_pos=0.0,
        gamma_neg=4.0,
        clip=0.05,
        eps=1e-8,
        detach_focal_weight=True,
        reduction="sum",
    )
    (g,) = torch.autograd.grad(loss, z)
    assert loss.item() == pytest.approx(-math.log(1e-8), rel=1e-12)
    assert g.item() == 0.0


@pytest.mark.parametrize(
    "hp", APL_OFFICIAL_SETTINGS, ids=lambda d: "-".join(f"{v}" for v in d.values()) or "defaults"
)
def test_apl_official_equals_official_apl_on_extremes(hp: dict[str, Any]) -> None:
    z, y = extreme_vectors()
    kw = _official_apl_kwargs(hp)
    got, g_got = value_and_grad(lambda t: LF.apl_official_loss(t, y, **hp, reduction="sum"), z)
    # (a) exact against the transcription with the eps clamp inside the logs only
    # (what losses/apl.py documents it implements)
    assert_matches(
        lambda t: LF.apl_official_loss(t, y, **hp, reduction="sum"),
        lambda t: official_apl(t, y, **kw, clamp_poly=False),
        z,
        "sum",
    )
    # (b) against APLloss.py verbatim, which also clamps p (and 1 - p_m) at eps inside its
    # polynomial terms. Where that clamp is active (positives at logits below ~ -18, negatives
    # with 1 - p_m < eps) it moves each value by at most eps * |coefficients| and each gradient
    # by O(eps) < 1e-7 (tolerances below); everywhere else the match is exact.
    exp, g_exp = value_and_grad(lambda t: official_apl(t, y, **kw), z)
    p = torch.sigmoid(z)
    pm = torch.clamp(p - kw["clip"], min=0.0)
    clamped_pos = (y > 0.5) & (p < kw["eps"])
    clamped_neg = (y < 0.5) & (1 - pm < kw["eps"])
    bound = kw["eps"] * (
        (abs(kw["epsilon_pos"]) + abs(kw["epsilon_pos_pow"])) * clamped_pos.sum().item()
        + abs(kw["epsilon_neg"]) * clamped_neg.sum().item()
    )
    torch.testing.assert_close(got, exp, rtol=1e-10, atol=ATOL + bound)
    clamped = clamped_pos | clamped_neg
    torch.testing.assert_close(g_got[~clamped], g_exp[~clamped], rtol=1e-10, atol=ATOL)
    torch.testing.assert_close(g_got[clamped], g_exp[clamped], rtol=0.0, atol=1e-7)


@pytest.mark.parametrize("m", [0.0, 0.1])
@pytest.mark.parametrize("clip", [0.0, 0.05])
@pytest.mark.parametrize("gamma_neg", [1.0, 2.0, 0.0])
@pytest.mark.parametrize("s_k", [(23.0, 0.7), (30.0, 0.8)])
def test_aam_equals_official_ambinaryloss(
    m: float, clip: float, gamma_neg: float, s_k: tuple[float, float]
) -> None:
    s, k = s_k
    cos, y = make_inputs(15, n=6, c=9, lo=-1.0, hi=1.0)
    cos[0, :3] = torch.tensor([-1.0, 1.0, 0.0], dtype=DT)
    gp = 1.0
    assert_matches(
        lambda t: LF.aam_loss(
            t,
            y,
            s=s,
            m=m,
            k=k,
            gamma_pos=gp,
            gamma_neg=gamma_neg,
            clip=clip,
            detach_focal_weight=False,
            reduction="batchmean",
        ),
        lambda t: official_aam(t, y, s, m, k, gp, gamma_neg, clip),
        cos,
        "batchmean",
    )


def test_aam_defaults() -> None:
    """Defaults s=23, m=0, k=0.7, gamma_pos=0, gamma_neg=1, clip=0, reduction mean."""
    cos, y = make_inputs(16, lo=-1.0, hi=1.0)
    exp = official_aam(cos, y, 23.0, 0.0, 0.7, 0.0, 1.0, 0.0) * cos.shape[0] / cos.numel()
    torch.testing.assert_close(LF.aam_loss(cos, y), exp, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------------------------------
# 4. gradcheck (finite differences) in float64
# --------------------------------------------------------------------------------------------------
def gc_inputs(seed: int, clip: float = 0.0) -> tuple[Tensor, Tensor]:
    """(3, 4) float64 logits in [-4, 4] kept off the clip kink, and mixed 0/1 targets."""
    z, y = make_inputs(seed, n=3, c=4, lo=-4.0, hi=4.0)
    return push_from_kink(z, clip), y


def gc_soft_targets(seed: int) -> Tensor:
    """(3, 4) soft targets."""
    return make_inputs(seed, n=3, c=4, soft=True)[1]


GRADCHECK_CORES: list[tuple[str, Callable[..., Tensor], dict[str, Any], float]] = [
    ("bce", LF.bce_loss, dict(pos_weight=torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=DT)), 0.0),
    ("focal", LF.focal_loss, dict(gamma=1.5, alpha=0.25), 0.0),
    ("poly1", LF.poly1_loss, dict(epsilon=2.0), 0.0),
    ("asl", LF.asl_loss, dict(gamma_pos=1.5, gamma_neg=0.5, clip=0.3), 0.3),
    ("asl", LF.asl_loss, dict(gamma_pos=1.0, gamma_neg=4.0, clip=0.05, eps=1e-8), 0.05),
    (
        "apl",
        LF.apl_loss,
        dict(alpha1=2.0, alpha2=1.5, beta1=1.4, gamma_pos=0.5, gamma_neg=1.5, p_th=0.3),
        0.3,
    ),
    ("apl_official", LF.apl_official_loss, dict(epsilon_neg=0.5, gamma_pos=1.0, clip=0.05), 0.05),
]


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("case", GRADCHECK_CORES, ids=lambda c: c[0])
def test_gradcheck_functional(
    reduction: str, case: tuple[str, Callable[..., Tensor], dict[str, Any], float]
) -> None:
    name, fn, hp, clip = case
    z, y = gc_inputs(20, clip)
    if name in ("bce", "focal", "poly1", "asl", "apl"):
        y = gc_soft_targets(21)
    if name in ("asl", "apl", "apl_official"):
        hp = dict(hp, detach_focal_weight=False)
    assert torch.autograd.gradcheck(
        lambda t: fn(t, y, **hp, reduction=reduction), (z.requires_grad_(True),)
    )


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("detach", [False, True])
def test_gradcheck_aam(reduction: str, detach: bool) -> None:
    s, m, clip = 17.0, 0.1, 0.05
    cos, y = make_inputs(22, n=3, c=4, lo=-0.4, hi=0.4)
    # keep p- + clip off the min(., 1) kink
    near = (torch.sigmoid(-s * (cos + m)) - (1 - clip)).abs() < 0.03
    cos[near] += 0.1
    assert ((torch.sigmoid(-s * (cos + m)) - (1 - clip)).abs() > 0.02).all()
    gp, gn = (
        (0.0, 0.0) if detach else (1.5, 0.5)
    )  # a detached weight is only the true derivative when constant
    assert torch.autograd.gradcheck(
        lambda t: LF.aam_loss(
            t,
            y,
            s=s,
            m=m,
            k=0.7,
            gamma_pos=gp,
            gamma_neg=gn,
            clip=clip,
            detach_focal_weight=detach,
            reduction=reduction,
        ),
        (cos.requires_grad_(True),),
    )


@pytest.mark.parametrize("name", ["asl", "apl", "apl_official"])
def test_gradcheck_detached_with_constant_weight(name: str) -> None:
    """detach_focal_weight=True with gammas 0 (weight 1): the gradient is the true derivative."""
    clip = 0.05
    z, y = gc_inputs(23, clip)
    fn, hp = {
        "asl": (LF.asl_loss, dict(clip=clip)),
        "apl": (LF.apl_loss, dict(alpha1=2.0, alpha2=1.0, beta1=1.5, p_th=clip)),
        "apl_official": (LF.apl_official_loss, dict(epsilon_neg=0.5, clip=clip)),
    }[name]
    assert torch.autograd.gradcheck(
        lambda t: fn(
            t, y, **hp, gamma_pos=0.0, gamma_neg=0.0, detach_focal_weight=True, reduction="none"
        ),
        (z.requires_grad_(True),),
    )


@pytest.mark.parametrize("name", ["asl", "apl", "apl_official", "aam"])
def test_detached_weight_is_not_the_true_derivative(name: str) -> None:
    """detach_focal_weight=True with non-constant weights must change the gradient."""
    z, y = gc_inputs(24, 0.05)
    fn: Callable[..., Tensor] = {
        "asl": LF.asl_loss,
        "apl": LF.apl_loss,
        "apl_official": LF.apl_official_loss,
        "aam": LF.aam_loss,
    }[name]
    hp: dict[str, Any] = dict(
        gamma_pos=1.0, gamma_neg=2.0, detach_focal_weight=True, reduction="sum"
    )
    if name == "aam":
        z = z / 10.0
    ok = torch.autograd.gradcheck(
        lambda t: fn(t, y, **hp), (z.requires_grad_(True),), raise_exception=False
    )
    assert not ok


MODULE_NAMES = [
    "bce",
    "focal",
    "poly1",
    "asl",
    "asl_adaptive",
    "apl",
    "apl_official",
    "aam",
    "zlpr",
    "two_way",
]


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_gradcheck_registered_modules(name: str) -> None:
    kwargs: dict[str, Any] = {"detach_focal_weight": False} if name == "apl_official" else {}
    module = create_loss(name, **kwargs)
    if name == "asl_adaptive":
        module.eval()
    z, y = gc_inputs(25, 0.05)
    y[1, 1], y[2, 2], y[0, 3] = (
        1.0,
        1.0,
        0.0,
    )  # every row and column of the two-way loss sees a positive
    if name == "aam":
        z = z / 8.0
    z.requires_grad_(True)
    out = module(z, y)
    if out.dtype == DT:
        assert torch.autograd.gradcheck(lambda t: module(t, y), (z,))
    else:
        # timm's ZLPR / two-way compute in float32: larger finite-difference step and tolerance
        assert name in ("zlpr", "two_way"), f"{name} returned {out.dtype} for float64 input"
        assert torch.autograd.gradcheck(
            lambda t: module(t, y).double(), (z,), eps=1e-3, atol=2e-3, rtol=2e-2
        )


# --------------------------------------------------------------------------------------------------
# registered modules: wiring (module value equals the reference with the documented defaults)
# --------------------------------------------------------------------------------------------------
MODULE_CASES: list[tuple[str, dict[str, Any], Callable[[Tensor, Tensor], Tensor]]] = [
    ("bce", {}, lambda z, y: ref_bce(z, y, None, "mean")),
    ("focal", {}, lambda z, y: ref_focal(z, y, 2.0, None, "mean")),
    (
        "focal",
        dict(gamma=1.5, alpha=0.25, reduction="sum"),
        lambda z, y: ref_focal(z, y, 1.5, 0.25, "sum"),
    ),
    ("poly1", {}, lambda z, y: ref_poly1(z, y, 1.0, "mean")),
    ("asl", {}, lambda z, y: ref_asl(z, y)),
    (
        "asl",
        dict(gamma_pos=1.0, gamma_neg=2.0, clip=0.3, reduction="batchmean"),
        lambda z, y: ref_asl(z, y, 1.0, 2.0, 0.3, reduction="batchmean"),
    ),
    ("apl", {}, lambda z, y: ref_apl(z, y)),
    (
        "apl",
        dict(alpha1=2.5, beta1=1.4, gamma_neg=3.0),
        lambda z, y: ref_apl(z, y, 2.5, 0.5, 1.4, 0.0, 3.0),
    ),
    ("apl_official", {}, lambda z, y: official_apl(z, y)),
    ("aam", {}, lambda z, y: ref_aam(z / 6.0, y)),
    ("zlpr", {}, lambda z, y: ref_zlpr(z, y)),
]


def ref_zlpr(z: Tensor, y: Tensor) -> Tensor:
    """ZLPR: mean over samples of log(1 + sum_neg e^{s_j}) + log(1 + sum_pos e^{-s_i})."""
    pos = y > 0.5
    per_sample = torch.log1p((torch.exp(z) * ~pos).sum(1)) + torch.log1p(
        (torch.exp(-z) * pos).sum(1)
    )
    return per_sample.mean()


def ref_two_way(z: Tensor, y: Tensor, tp: float, tn: float) -> Tensor:
    """Two-way: rows, then columns, with a positive: mean softplus(tn LSE(n/tn) + tp LSE(-p/tp))."""
    pos = y > 0.5
    total = z.new_zeros(())
    for zz, pp in (
        (z, pos),
        (z.T, pos.T),
    ):  # over classes of each sample, over samples of each class
        terms = []
        for row, prow in zip(zz, pp, strict=True):
            if not prow.any():
                continue
            hard_pos = tp * torch.logsumexp(-row[prow] / tp, 0)
            hard_neg = (
                tn * torch.logsumexp(row[~prow] / tn, 0)
                if (~prow).any()
                else torch.tensor(-math.inf, dtype=DT)
            )
            terms.append(F.softplus(hard_pos + hard_neg))
        total = total + torch.stack(terms).mean()
    return total


@pytest.mark.parametrize("case", MODULE_CASES, ids=lambda c: f"{c[0]}-{len(c[1])}")
def test_registered_module_matches_reference(
    case: tuple[str, dict[str, Any], Callable[[Tensor, Tensor], Tensor]],
) -> None:
    name, kwargs, ref = case
    z, y = make_inputs(30, n=6, c=8)
    module = create_loss(name, **kwargs)
    assert isinstance(module.hparams, dict)
    x = z / 6.0 if name == "aam" else z
    got = module(x, y)
    tol = (1e-5, 1e-6) if got.dtype == torch.float32 else (RTOL, ATOL)
    torch.testing.assert_close(got.double(), ref(z, y), rtol=tol[0], atol=tol[1])


def test_two_way_module_matches_reference() -> None:
    z, y = make_inputs(31, n=6, c=8, lo=-3.0, hi=3.0)
    y[:, 0] = 0.0
    y[0, :] = 0.0  # a sample and a class without positives are skipped
    module = create_loss("two_way")
    tp = float(module.hparams.get("tp", 4.0))
    tn = float(module.hparams.get("tn", 1.0))
    got = module(z, y)
    tol = (1e-5, 1e-6) if got.dtype == torch.float32 else (RTOL, ATOL)
    torch.testing.assert_close(got.double(), ref_two_way(z, y, tp, tn), rtol=tol[0], atol=tol[1])


def test_hparams_are_fully_resolved() -> None:
    hp = create_loss("asl", gamma_neg=2.0).hparams
    assert (
        hp["gamma_neg"] == 2.0
        and hp["gamma_pos"] == 0.0
        and hp["clip"] == 0.05
        and hp["reduction"] == "mean"
    )
    hp = create_loss("apl_official").hparams
    assert hp["epsilon_pos"] == 1.0 and hp["epsilon_pos_pow"] == -2.5 and hp["reduction"] == "sum"


# --------------------------------------------------------------------------------------------------
# 5a. APL: the closed form equals its defining Taylor series (-log(1 - p_res), not -log(1 - p))
# --------------------------------------------------------------------------------------------------
def series_neg(pres: Tensor, beta1: float, gamma_neg: float, terms: int = 400) -> Tensor:
    """sum_{n>=1} b_n p_res^(n + g-), b_1 = beta1, b_n = 1/n otherwise (truncated)."""
    n = torch.arange(1, terms + 1, dtype=DT)
    b = 1.0 / n
    b[0] = beta1
    return (b * pres.unsqueeze(-1) ** (n + gamma_neg)).sum(-1)


def series_pos(
    p: Tensor, alpha1: float, alpha2: float, gamma_pos: float, terms: int = 400
) -> Tensor:
    """sum_{m>=1} a_m (1-p)^(m + g+), a_1, a_2 = alpha1, alpha2, a_m = 1/m otherwise."""
    m = torch.arange(1, terms + 1, dtype=DT)
    a = 1.0 / m
    a[0], a[1] = alpha1, alpha2
    return (a * (1 - p).unsqueeze(-1) ** (m + gamma_pos)).sum(-1)


@pytest.mark.parametrize("gamma_neg", [0.0, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("p_th", [0.05, 0.2])
@pytest.mark.parametrize("beta1", [1.0, 1.4, 0.5])
def test_apl_negative_part_equals_series(gamma_neg: float, p_th: float, beta1: float) -> None:
    p = torch.linspace(0.01, 0.6 + p_th, 41, dtype=DT)  # p_res <= 0.6
    z = torch.logit(p).reshape(1, -1)
    y = torch.zeros_like(z)
    got = LF.apl_loss(z, y, beta1=beta1, gamma_neg=gamma_neg, p_th=p_th, reduction="none")
    exp = series_neg(torch.clamp(torch.sigmoid(z) - p_th, min=0.0), beta1, gamma_neg)
    torch.testing.assert_close(got, exp, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("gamma_pos", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("alphas", [(1.0, 0.5), (2.5, 0.5), (0.0, 3.0), (1.3, -0.75)])
def test_apl_positive_part_equals_series(gamma_pos: float, alphas: tuple[float, float]) -> None:
    p = torch.linspace(0.4, 0.999, 41, dtype=DT)  # 1 - p <= 0.6
    z = torch.logit(p).reshape(1, -1)
    y = torch.ones_like(z)
    got = LF.apl_loss(
        z, y, alpha1=alphas[0], alpha2=alphas[1], gamma_pos=gamma_pos, reduction="none"
    )
    torch.testing.assert_close(
        got, series_pos(torch.sigmoid(z), *alphas, gamma_pos), rtol=1e-10, atol=1e-13
    )


@pytest.mark.parametrize("gamma_neg", [1.8, 4.0])
@pytest.mark.parametrize("beta1", [1.0, 1.4])
def test_apl_and_asl_negative_gradient_formulas(gamma_neg: float, beta1: float) -> None:
    """ASL eq. 8 / APL section 2.3:
    dL-/dz = p(1-p) p_r^g [1/(1-p_r) - g log(1-p_r)/p_r + (b1-1)(g+1)].
    """
    p_th = 0.05
    z = torch.linspace(-2.5, 5.0, 23, dtype=DT).reshape(1, -1)  # p > p_th everywhere
    y = torch.zeros_like(z)
    p = torch.sigmoid(z)
    pr = p - p_th
    assert (pr > 0).all()
    bracket = 1 / (1 - pr) - gamma_neg * torch.log(1 - pr) / pr + (beta1 - 1) * (gamma_neg + 1)
    exp = p * (1 - p) * pr**gamma_neg * bracket
    _, g_apl = value_and_grad(
        lambda t: LF.apl_loss(t, y, beta1=beta1, gamma_neg=gamma_neg, p_th=p_th, reduction="sum"), z
    )
    torch.testing.assert_close(g_apl, exp, rtol=1e-10, atol=1e-14)
    if beta1 == 1.0:
        _, g_asl = value_and_grad(
            lambda t: LF.asl_loss(t, y, gamma_neg=gamma_neg, clip=p_th, reduction="sum"), z
        )
        torch.testing.assert_close(g_asl, exp, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------------------------------
# 5b. official_to_paper mapping
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "eps_triple", [(1.0, 0.0, -2.5), (2.0, 0.5, 1.0), (-1.0, -0.3, 0.0), (0.0, 0.0, 1.0)]
)
def test_official_to_paper_formula(eps_triple: tuple[float, float, float]) -> None:
    ep, en, epp = eps_triple
    got = official_to_paper(ep, en, epp)
    assert set(got) == {"alpha1", "alpha2", "beta1"}
    assert got["alpha1"] == pytest.approx(1 - ep, abs=1e-15)
    assert got["alpha2"] == pytest.approx((1 - epp) / 2, abs=1e-15)
    assert got["beta1"] == pytest.approx(1 + en, abs=1e-15)


@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize(
    "setting", [(1.0, -2.5, 0.0, 4.0, 0.05), (2.0, 1.0, 1.0, 2.0, 0.0), (-1.0, 0.0, 1.5, 0.5, 0.3)]
)
def test_official_to_paper_exact_without_epsilon_neg(
    detach: bool, setting: tuple[float, ...]
) -> None:
    ep, epp, gp, gn, clip = setting
    z, y = make_inputs(40, n=6, c=8)
    paper = official_to_paper(ep, 0.0, epp)
    common = dict(gamma_pos=gp, gamma_neg=gn, detach_focal_weight=detach, reduction="sum")
    assert_matches(
        lambda t: LF.apl_official_loss(
            t,
            y,
            epsilon_pos=ep,
            epsilon_neg=0.0,
            epsilon_pos_pow=epp,
            clip=clip,
            eps=1e-8,
            **common,
        ),
        lambda t: LF.apl_loss(t, y, **paper, p_th=clip, **common),
        z,
        "sum",
    )
    # independent: the paper reference with the mapped coefficients
    assert_matches(
        lambda t: LF.apl_official_loss(
            t,
            y,
            epsilon_pos=ep,
            epsilon_neg=0.0,
            epsilon_pos_pow=epp,
            clip=clip,
            eps=1e-8,
            **common,
        ),
        lambda t: ref_apl(t, y, 1 - ep, (1 - epp) / 2, 1.0, gp, gn, clip, detach, "sum"),
        z,
        "sum",
    )


@pytest.mark.parametrize("epsilon_neg", [0.5, -0.3, 1.0])
@pytest.mark.parametrize("gammas_clip", [(0.0, 4.0, 0.05), (1.0, 2.0, 0.3), (1.5, 0.5, 0.0)])
def test_official_to_paper_with_epsilon_neg(
    epsilon_neg: float, gammas_clip: tuple[float, float, float]
) -> None:
    gp, gn, clip = gammas_clip
    ep, epp = 1.0, -2.5
    z, y = make_inputs(41, n=6, c=8)
    paper = official_to_paper(ep, epsilon_neg, epp)
    common = dict(gamma_pos=gp, gamma_neg=gn, detach_focal_weight=True, reduction="sum")
    v_off, g_off = value_and_grad(
        lambda t: LF.apl_official_loss(
            t,
            y,
            epsilon_pos=ep,
            epsilon_neg=epsilon_neg,
            epsilon_pos_pow=epp,
            clip=clip,
            eps=1e-8,
            **common,
        ),
        z,
    )
    v_pap, g_pap = value_and_grad(lambda t: LF.apl_loss(t, y, **paper, p_th=clip, **common), z)
    pm = torch.clamp(torch.sigmoid(z) - clip, min=0.0)
    extra = -epsilon_neg * ((1 - y) * pm**gn).sum()
    torch.testing.assert_close(v_off, v_pap + extra, rtol=1e-10, atol=ATOL)
    torch.testing.assert_close(
        v_off,
        ref_apl(z, y, 1 - ep, (1 - epp) / 2, 1 + epsilon_neg, gp, gn, clip, True, "sum") + extra,
        rtol=1e-10,
        atol=ATOL,
    )
    torch.testing.assert_close(g_off, g_pap, rtol=1e-10, atol=ATOL)


# --------------------------------------------------------------------------------------------------
# 5c. adaptive asymmetry (ASL section 3.3, with the sign MLLB documents)
# --------------------------------------------------------------------------------------------------
# Tolerance on delta_p for the logic tests: float32-level, so that they test sign, step and
# clipping independently of the precision of the batch statistics (which
# test_asl_adaptive_update_is_exact_in_float64 pins down).
STAT_TOL = 1e-6


def ref_delta_p(z: Tensor, y: Tensor) -> float:
    """delta_p = mean p over positives - mean (1 - p) over negatives, targets binarized at 0.5."""
    p = torch.sigmoid(z)
    pos = y > 0.5
    return float(p[pos].mean() - (1 - p[~pos]).mean())


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("target_step", [(0.1, 1e-3), (0.3, 0.5), (-0.2, 2.0)])
def test_asl_adaptive_training_step(soft: bool, target_step: tuple[float, float]) -> None:
    target, step = target_step
    z, y = make_inputs(50, n=8, c=6, lo=-4.0, hi=4.0, soft=soft)
    if soft:
        y = torch.where(
            y > 0.5, 0.55 + 0.4 * y, 0.4 * y
        )  # away from 0.5; binarization is still unambiguous
    module = create_loss(
        "asl_adaptive",
        gamma_pos=0.0,
        gamma_neg=4.0,
        clip=0.05,
        step_size=step,
        delta_p_target=target,
        gamma_neg_min=0.0,
        gamma_neg_max=None,
    )
    module.train()
    g0 = float(module.gamma_neg)
    assert g0 == 4.0
    loss, grad = value_and_grad(lambda t: module(t, y), z)
    dp = ref_delta_p(z, y)
    expected_gamma = max(0.0, g0 + step * (target - dp))
    exp_loss, exp_grad = value_and_grad(lambda t: ref_asl(t, y, 0.0, g0, 0.05), z)
    torch.testing.assert_close(loss, exp_loss, rtol=RTOL, atol=ATOL)
    # exactly one training call so far
    torch.testing.assert_close(grad, exp_grad, rtol=RTOL, atol=ATOL)
    # update logic (sign, step, clipping); the statistics' precision is pinned separately below
    assert module.delta_p == pytest.approx(dp, abs=STAT_TOL)
    assert module.gamma_neg == pytest.approx(expected_gamma, abs=step * STAT_TOL)
    # the second call uses the updated gamma_neg
    g1 = module.gamma_neg
    loss2 = module(z, y)
    torch.testing.assert_close(loss2.detach(), ref_asl(z, y, 0.0, g1, 0.05), rtol=RTOL, atol=ATOL)


def test_asl_adaptive_update_is_exact_in_float64() -> None:
    """Float64 logits: delta_p and the gamma_neg step match the float64 reference to 1e-12."""
    z, y = make_inputs(54, n=8, c=6, lo=-4.0, hi=4.0)
    module = create_loss("asl_adaptive", gamma_neg=4.0, step_size=0.5, delta_p_target=0.1)
    module.train()
    module(z, y)
    dp = ref_delta_p(z, y)
    assert module.delta_p == pytest.approx(dp, abs=1e-12)
    assert module.gamma_neg == pytest.approx(4.0 + 0.5 * (0.1 - dp), abs=1e-12)


def test_asl_adaptive_direction() -> None:
    """delta_p below the target: gamma_neg increases (more asymmetry); above it: it decreases."""
    z, y = make_inputs(51, lo=-4.0, hi=4.0)
    dp = ref_delta_p(z, y)
    for target, sign in ((dp + 0.2, 1.0), (dp - 0.2, -1.0)):
        module = create_loss("asl_adaptive", gamma_neg=2.0, step_size=0.1, delta_p_target=target)
        module.train()
        module(z, y)
        assert (module.gamma_neg - 2.0) * sign > 0
        assert module.gamma_neg == pytest.approx(2.0 + 0.1 * sign * 0.2, abs=0.1 * STAT_TOL)


def test_asl_adaptive_clipping() -> None:
    z, y = make_inputs(52, lo=-4.0, hi=4.0)
    dp = ref_delta_p(z, y)
    assert -0.9 < dp < 0.9
    low = create_loss(
        "asl_adaptive", gamma_neg=1.0, step_size=100.0, delta_p_target=-1.0, gamma_neg_min=0.5
    )
    low.train()
    low(z, y)
    assert low.gamma_neg == 0.5
    high = create_loss(
        "asl_adaptive", gamma_neg=1.0, step_size=100.0, delta_p_target=1.0, gamma_neg_max=6.0
    )
    high.train()
    high(z, y)
    assert high.gamma_neg == 6.0


def test_asl_adaptive_eval_does_not_update() -> None:
    z, y = make_inputs(53, lo=-4.0, hi=4.0)
    module = create_loss("asl_adaptive", gamma_neg=3.0, step_size=0.5, delta_p_target=0.3)
    module.eval()
    for _ in range(2):
        loss = module(z, y)
        assert module.gamma_neg == 3.0
        torch.testing.assert_close(loss, ref_asl(z, y, 0.0, 3.0, 0.05), rtol=RTOL, atol=ATOL)
