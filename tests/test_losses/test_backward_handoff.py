"""The fused losses hand their saved gradient on when ``grad_out`` is the CPU scalar 1.

``losses._kernel.times_grad_out`` returns the gradient computed in forward itself (no pass, no
new [N, C] tensor) for ``loss.backward()``. These tests check that this never changes a result:
a retained graph backpropagated twice accumulates twice the gradient, a scaled loss scales it,
and a gradient modified in place by the caller never comes back from a second backward (autograd's
version check on the saved tensor fails it loudly).
"""

from __future__ import annotations

import pytest
import torch

from losses import create_loss

NAMES = ["asl", "apl", "focal", "poly1", "aam", "zlpr", "two_way"]


def _case(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(leaf x, the loss on x, the reference gradient): inputs within [-1, 1], also valid
    cosines for aam. The reference goes through a multiplication by a tensor of ones, so its
    grad_out is not the scalar 1 and the fused loss multiplies instead of handing on."""
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(16, 12, generator=g, dtype=torch.float64) / 5).clamp(-1, 1)
    y = (torch.rand(16, 12, generator=g) < 0.2).double()
    r = z.clone().requires_grad_(True)
    (create_loss(name)(r, y) * torch.ones((), dtype=r.dtype, requires_grad=True)).backward()
    x = z.clone().requires_grad_(True)
    return x, create_loss(name)(x, y), r.grad


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_retained_graph_backpropagated_twice_accumulates_twice(name: str) -> None:
    x, loss, ref = _case(name)
    loss.backward(retain_graph=True)
    _close(x.grad, ref)
    loss.backward()
    _close(x.grad, 2 * ref)


@pytest.mark.parametrize("name", NAMES)
def test_scaled_loss_scales_the_gradient(name: str) -> None:
    x, loss, ref = _case(name)
    (loss * 3.0).backward()
    _close(x.grad, 3 * ref)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_modified_in_place_is_never_silently_reused(name: str) -> None:
    # the caller owns what autograd returned; a second backward through the retained graph
    # either gives the right gradient or fails with autograd's in-place error, never a wrong one
    x, loss, ref = _case(name)
    (g,) = torch.autograd.grad(loss, x, retain_graph=True)
    g.mul_(2)
    try:
        (again,) = torch.autograd.grad(loss, x)
    except RuntimeError as exc:
        assert "modified by an inplace operation" in str(exc)
    else:
        _close(again, ref)


@pytest.mark.parametrize(("name", "compiled"), [("asl", True), ("aam", True), ("asl", False),
                                              ("zlpr", False), ("two_way", False)])
def test_backward_under_create_graph_cannot_be_differentiated_again(name: str,
                                                                     compiled: bool) -> None:
    """The fused losses' backward applies ``once_differentiable`` only under
    ``create_graph=True`` (its wrapper's host time is saved otherwise): a gradient that depends
    on a ``grad_out`` requiring grad still refuses a second differentiation, and the gradient
    equals the eager loss's."""
    g = torch.Generator().manual_seed(1)
    z = (torch.randn(6, 7, generator=g) / 5).clamp(-1, 1)
    y = (torch.rand(6, 7, generator=g) < 0.3).float()
    x = z.clone().requires_grad_(True)
    w = torch.tensor(2.0, requires_grad=True)
    (grad,) = torch.autograd.grad(create_loss(name, compile=compiled)(x, y) * w, x,
                                  create_graph=True)
    r = z.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(create_loss(name)(r, y) * 2.0, r)
    torch.testing.assert_close(grad.detach(), want, rtol=1e-5, atol=1e-7)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()
