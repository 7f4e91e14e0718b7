"""The loss contract of DESIGN.md, checked for every registered loss name."""

from __future__ import annotations

import pytest
import torch

from losses import create_loss, list_losses

NAMES = list_losses()


def _make(name: str, **kwargs):
    loss = create_loss(name, **kwargs)
    loss.eval()  # asl_adaptive adapts only in training mode; the contract is about one call
    return loss


def _inputs(shape: tuple[int, int], seed: int = 0, kind: str = "random"):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, generator=g) * 3
    if kind == "zeros":
        targets = torch.zeros(shape)
    elif kind == "ones":
        targets = torch.ones(shape)
    else:
        targets = (torch.rand(*shape, generator=g) < 0.3).float()
    return logits, targets


def _loss_and_grad(loss, logits: torch.Tensor, targets: torch.Tensor):
    z = logits.clone().requires_grad_(True)
    value = loss(z, targets)
    (grad,) = torch.autograd.grad(value, z)
    return value, grad


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(1, 1), (2, 5), (7, 3)])
@pytest.mark.parametrize("kind", ["random", "zeros", "ones"])
def test_finite_scalar_and_gradient(name: str, shape: tuple[int, int], kind: str) -> None:
    loss = _make(name)
    logits, targets = _inputs(shape, kind=kind)
    value, grad = _loss_and_grad(loss, logits, targets)
    assert value.dim() == 0
    assert value.dtype == torch.float32
    assert torch.isfinite(value)
    assert grad.shape == logits.shape and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_grad_mode_untouched(name: str) -> None:
    loss = _make(name)
    logits, targets = _inputs((4, 6))
    z = logits.clone().requires_grad_(True)
    loss(z, targets)
    assert torch.is_grad_enabled()
    with torch.no_grad():
        value = loss(z, targets)
        assert not torch.is_grad_enabled()
    assert not value.requires_grad  # nothing re-enabled gradients inside no_grad
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("name", NAMES)
def test_no_state_across_calls(name: str) -> None:
    loss = _make(name)
    a = _inputs((5, 4), seed=1)
    b = _inputs((3, 4), seed=2)
    first = loss(*a)
    loss(*b)
    assert torch.equal(first, loss(*a))
    cached = [k for k, v in vars(loss).items() if isinstance(v, torch.Tensor)]
    assert not cached, f"{name} caches tensors on self: {cached}"
    assert not list(loss.buffers()) and not list(loss.parameters())


@pytest.mark.parametrize("name", [n for n in NAMES if create_loss(n).decomposable])
def test_mean_invariant_to_duplicating_the_batch(name: str) -> None:
    loss = _make(name, reduction="mean")
    logits, targets = _inputs((6, 5), seed=3)
    once = loss(logits, targets)
    twice = loss(torch.cat([logits, logits]), torch.cat([targets, targets]))
    torch.testing.assert_close(once, twice, rtol=1e-6, atol=1e-7)


def test_two_way_declares_that_it_is_not_decomposable() -> None:
    # two_way's log-sum-exp over the samples of a class changes when samples are duplicated
    loss = _make("two_way")
    assert not loss.decomposable
    logits, targets = _inputs((6, 5), seed=3)
    once = loss(logits, targets)
    twice = loss(torch.cat([logits, logits]), torch.cat([targets, targets]))
    assert not torch.allclose(once, twice)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("magnitude", [30.0, 1e4])
def test_low_precision_extreme_logits(name: str, dtype: torch.dtype, magnitude: float) -> None:
    loss = _make(name)
    logits = torch.tensor([[magnitude, -magnitude, magnitude, -magnitude],
                           [-magnitude, magnitude, 0.0, magnitude]], dtype=dtype)
    targets = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]])
    value, grad = _loss_and_grad(loss, logits, targets)
    assert value.dtype == torch.float32  # computed in float32 whatever the input dtype
    assert torch.isfinite(value), f"{name} {dtype} +-{magnitude}: loss {value}"
    assert grad.dtype == dtype and torch.isfinite(grad.float()).all(), grad


@pytest.mark.parametrize("name", NAMES)
def test_reductions(name: str) -> None:
    logits, targets = _inputs((4, 3), seed=4)
    mean = _make(name, reduction="mean")(logits, targets)
    cls = type(create_loss(name))
    if "none" not in cls.reductions:
        assert cls.reductions == ("mean",)
        return
    none = create_loss(name, reduction="none").eval()(logits, targets)
    assert none.shape == (4, 3)
    total = create_loss(name, reduction="sum").eval()(logits, targets)
    batchmean = create_loss(name, reduction="batchmean").eval()(logits, targets)
    torch.testing.assert_close(none.mean(), mean)
    torch.testing.assert_close(none.sum(), total)
    torch.testing.assert_close(none.sum() / 4, batchmean)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_get_clear_errors(name: str) -> None:
    loss = _make(name)
    with pytest.raises(ValueError, match=r"targets shape \(2, 4\) does not match logits shape "
                                         r"\(2, 5\)"):
        loss(torch.zeros(2, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"logits must be 2-D \[N, C\], got shape \(5,\)"):
        loss(torch.zeros(5), torch.zeros(5))
    with pytest.raises(TypeError, match="floating-point"):
        loss(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5))


@pytest.mark.parametrize("name", NAMES)
def test_hparams_are_resolved_and_rebuild_the_same_loss(name: str) -> None:
    loss = create_loss(name)
    hp = loss.hparams
    assert "reduction" in hp
    rebuilt = create_loss(name, **hp).eval()
    logits, targets = _inputs((3, 4), seed=5)
    assert torch.equal(_make(name)(logits, targets), rebuilt(logits, targets))


def test_aam_declares_cosine_inputs() -> None:
    kinds = {name: create_loss(name).input_kind for name in NAMES}
    assert kinds["aam"] == "cosine"
    assert {k for k, v in kinds.items() if v == "cosine"} == {"aam"}
