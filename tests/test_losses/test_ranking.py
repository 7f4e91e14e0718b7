"""zlpr and two_way (losses/ranking.py) against timm's ZlprLoss and TwoWayLoss, the reference.

timm's modules are autograd compositions; ours compute a closed-form gradient in the forward,
so equal gradients check the derivation. Cases: random logits, rows and columns without a
positive or without a negative, large magnitudes, float32 and float64. two_way in float32 runs
both ways: the C++ kernel (``losses/_ranking_kernel.cpp``, where it builds) and the torch
composition it replaces.
"""

from __future__ import annotations

import pytest
import torch

timm_loss = pytest.importorskip("timm.loss")

import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

from losses import create_loss, ranking  # noqa: E402

HAS_KERNEL = ranking.two_way_kernel_serves(torch.zeros(2, 3))


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
    # two_way in float32: the kernel where it serves (test_the_torch_composition_... below
    # checks the other way)
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


def _two_way_value_grad(x: torch.Tensor, y: torch.Tensor, kernel: bool,
                        monkeypatch: pytest.MonkeyPatch, **kw: float
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    with monkeypatch.context() as m:
        m.setattr(ranking, "KERNEL_ENABLED", kernel)
        return _value_grad(create_loss("two_way", **kw), x, y)


@pytest.mark.skipif(not HAS_KERNEL, reason="the two-way kernel does not serve here")
@pytest.mark.parametrize(("n", "c"), [(1, 1), (7, 5), (37, 70), (300, 129)])
@pytest.mark.parametrize("spread", [1.0, 40.0])  # 40: lines a shared shift would underflow
def test_the_kernel_equals_float64_and_the_same_on_any_thread_count(
        n: int, c: int, spread: float, monkeypatch: pytest.MonkeyPatch) -> None:
    # shapes with vector tails (c not a multiple of 8), blocks of rows (n not a multiple of
    # 32), rows and columns without a positive or a negative, and (spread 40) lines whose
    # smaller sum falls below e^-50, which the kernel leaves to _two_way_exact
    g = torch.Generator().manual_seed(n * 1000 + c)
    x = (torch.randn(n, c, generator=g, dtype=torch.float64) * spread).float()
    y = (torch.rand(n, c, generator=g) < 0.2).float()
    if n > 3 and c > 3:
        y[0], y[1], y[:, 0], y[:, 1] = 0, 1, 0, 1
    v64, g64 = _two_way_value_grad(x.double(), y.double(), False, monkeypatch, tp=2.0, tn=0.5)
    results = []
    for threads in (1, 2, 3):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            results.append(_two_way_value_grad(x, y, True, monkeypatch, tp=2.0, tn=0.5))
        finally:
            torch.set_num_threads(before)
    v, grad = results[0]
    assert v.item() == pytest.approx(v64.item(), rel=1e-6, abs=1e-7)
    assert ((grad.double() - g64).abs().max() / g64.abs().max().clamp(min=1e-12)).item() < 1e-6
    for v_t, g_t in results[1:]:  # bit for bit on 2 and 3 threads
        assert torch.equal(v_t, v) and torch.equal(g_t, grad)


@pytest.mark.skipif(not HAS_KERNEL, reason="the two-way kernel does not serve here")
def test_a_default_device_context_does_not_move_the_kernels_buffers() -> None:
    # the kernel writes through its buffers' pointers: made without a device under
    # `with torch.device("meta")` they were meta tensors (null pointers)
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(40, 33, generator=g), (torch.rand(40, 33, generator=g) < 0.1).float()
    loss = create_loss("two_way")
    want = _value_grad(loss, x, y)
    with torch.device("meta"):
        got = _value_grad(loss, x, y)
    assert got[0].device.type == "cpu"
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.skipif(not HAS_KERNEL, reason="the two-way kernel does not serve here")
def test_the_kernel_without_a_gradient_gives_the_same_value(
        monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(50, 33, generator=g) * 30, (torch.rand(50, 33, generator=g) < 0.1).float()
    loss = create_loss("two_way")
    with_grad, _ = _value_grad(loss, x, y)
    with torch.no_grad():
        assert torch.equal(loss(x, y), with_grad)


def test_a_failing_build_warns_once_and_the_torch_composition_answers(
        fresh_kernel_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranking, "KERNEL_ENABLED", True)
    monkeypatch.setenv("CXX", "false")
    x, y = _case("random", torch.float32, 0)
    with pytest.warns(RuntimeWarning, match="two-way loss kernel did not build with false"):
        v, g = _value_grad(create_loss("two_way"), x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        _value_grad(create_loss("two_way"), x, y)
    assert not list(fresh_kernel_cache.glob("*.so"))
    v0, g0 = _value_grad(lambda z, t: _timm_in_float64(timm_loss.TwoWayLoss(), z, t),
                         x.double(), y.double())
    assert v.item() == pytest.approx(v0.item(), rel=1e-6)
    assert ((g.double() - g0).abs().max() / g0.abs().max()).item() < 1e-6


@pytest.mark.parametrize("kind", ["random", "empty_rows_cols", "large", "soft"])
@pytest.mark.parametrize("tp, tn", [(4.0, 1.0), (2.0, 0.5)])
def test_the_torch_composition_of_two_way_equals_timm_in_float32(
        kind: str, tp: float, tn: float, monkeypatch: pytest.MonkeyPatch) -> None:
    # what two_way runs without the kernel (MLLB_RANKING_KERNEL=0, no compiler, no AVX2)
    x, y = _case(kind, torch.float32, 1)
    ref = timm_loss.TwoWayLoss(tp=tp, tn=tn)
    v0, g0 = _value_grad(lambda z, t: _timm_in_float64(ref, z, t), x.double(), y.double())
    v1, g1 = _two_way_value_grad(x, y, False, monkeypatch, tp=tp, tn=tn)
    assert v1.item() == pytest.approx(v0.item(), rel=1e-6, abs=1e-7)
    assert ((g1.double() - g0).abs().max() / g0.abs().max().clamp(min=1e-12)).item() < 1e-6


def test_compiled_two_way_traces_the_composition_not_the_kernel(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.compile traces the torch composition (a ctypes call would break its graph); the
    # result equals the eager loss, kernel or not
    def no_kernel(*args: object, **kwargs: object) -> None:
        raise AssertionError("the kernel ran under torch.compile's tracing")

    x, y = _case("random", torch.float32, 2)
    eager_v, eager_g = _value_grad(create_loss("two_way"), x, y)
    monkeypatch.setattr(ranking, "_two_way_kernel", no_kernel)
    v, g = _value_grad(create_loss("two_way", compile=True), x, y)
    assert v.item() == pytest.approx(eager_v.item(), rel=1e-6)
    assert ((g - eager_g).abs().max() / eager_g.abs().max()).item() < 1e-6
