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
    # timm computes in float32 (x.float()) whatever the input, ours keeps float64: the
    # float64 case differs from timm by timm's float32 rounding, hence its looser tolerance
    v0, g0 = _value_grad(lambda z, t: ref()(z, t), x, y)
    v1, g1 = _value_grad(ours, x, y)
    tol = 1e-6 if dtype == torch.float32 else 1e-5
    assert v1.item() == pytest.approx(v0.item(), rel=tol, abs=1e-7)
    assert ((g1.double() - g0.double()).abs().max() / g0.abs().max().clamp(min=1e-12)).item() < tol
