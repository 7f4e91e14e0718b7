"""zlpr and two_way (losses/ranking.py) against timm's ZlprLoss and TwoWayLoss, the reference.

timm's modules are autograd compositions; ours compute a closed-form gradient in the forward,
so equal gradients check the derivation. Cases: random logits, rows and columns without a
positive or without a negative, large magnitudes, float32 and float64.
"""

from __future__ import annotations

import pytest
import torch

timm_loss = pytest.importorskip("timm.loss")

from losses import create_loss  # noqa: E402


def _case(kind: str, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(13, 11, generator=g, dtype=torch.float64) * 3
    y = (torch.rand(13, 11, generator=g) < 0.25).double()
    if kind == "empty_rows_cols":
        y[0] = 0  # a sample without a positive
        y[1] = 1  # a sample without a negative
        y[:, 0] = 0  # a class without a positive
        y[:, 1] = 1  # a class without a negative
    elif kind == "large":
        x = x * 20
    elif kind == "soft":
        y = torch.rand(13, 11, generator=g, dtype=torch.float64)  # binarized at 0.5 by both
    return x.to(dtype), y.to(dtype)


def _value_grad(fn, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = x.clone().requires_grad_(True)
    v = fn(z, y)
    (g,) = torch.autograd.grad(v, z)
    return v.detach(), g


def _timm_in_float64(module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """timm's unchanged forward on float64 inputs: its ``x.float()`` cast is made a no-op for
    the call, so the reference carries no float32 rounding of its own."""
    original = torch.Tensor.float
    torch.Tensor.float = lambda self, *a, **k: self  # type: ignore[method-assign]
    try:
        return module(x, y)
    finally:
        torch.Tensor.float = original  # type: ignore[method-assign]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["random", "empty_rows_cols", "large", "soft"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name, ref", [
    ("zlpr", lambda: timm_loss.ZlprLoss()),
    ("two_way", lambda: timm_loss.TwoWayLoss()),
    ("two_way_t", lambda: timm_loss.TwoWayLoss(tp=2.0, tn=0.5)),
])
def test_equals_timm(name: str, ref, kind: str, dtype: torch.dtype, seed: int) -> None:
    x, y = _case(kind, dtype, seed)
    ours = (create_loss("two_way", tp=2.0, tn=0.5) if name == "two_way_t"
            else create_loss(name))
    # the reference: timm's code run in float64 on the same (float32-representable) inputs;
    # timm's own float32 result differs from it by up to ~2e-6 at the largest logits
    v0, g0 = _value_grad(lambda z, t: _timm_in_float64(ref(), z, t), x.double(), y.double())
    v1, g1 = _value_grad(ours, x, y)
    # float64: 1e-9, the rounding of log-sum-exps over logits spanning +-180 ("large")
    tol = 1e-6 if dtype == torch.float32 else 1e-9
    assert v1.item() == pytest.approx(v0.item(), rel=tol, abs=1e-7 if tol == 1e-6 else 1e-12)
    assert ((g1.double() - g0).abs().max() / g0.abs().max().clamp(min=1e-12)).item() < tol
    if dtype == torch.float32:  # and timm as shipped (float32) within its rounding
        v2, g2 = _value_grad(ref(), x, y)
        assert v1.item() == pytest.approx(v2.item(), rel=1e-5, abs=1e-6)
        assert ((g1 - g2).abs().max() / g2.abs().max().clamp(min=1e-12)).item() < 1e-5
