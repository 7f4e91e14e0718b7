"""The compiled path (``create_loss(..., compile=True)``): the value and gradient of eager.

The eager asymmetric family runs a sparse-positive closed-form kernel (``losses/_kernel.py``);
compiled, a dense closed form from one exp (``_fused_dense``; in float32 its log1p's are
inlined arithmetic and its quotients come from one division), checked element by element
against the eager kernel below and through the compiled loss here; the eager kernel itself is
checked against the papers' equations written plainly (tests/test_losses/test_loss_reference.py).
Every loss is traced with the ``aot_eager`` backend (dynamo + AOT autograd, the graphs inductor
receives, without code generation: seconds); asl runs through inductor itself; ``-m slow`` runs
every loss through inductor. The float32 arithmetic is checked against float64 on sweeps of
float32 values. Never timed.
"""

from __future__ import annotations

import pytest
import torch

from losses import LOSSES, create_loss, list_losses
from losses.presets import get_preset

NAMES = list_losses()
# presets with what the defaults lack: ASL's margin and eps clamp, APL's polynomial terms,
# AAM's margin and positive focusing
PRESETS = ["asl_coco", "apl_aapd_beta1", "apl_coco_gamma_pos1", "aam_coco"]


def _inputs(name: str, shape: tuple[int, int] = (24, 40), seed: int = 0):
    # float64: the two gradients (closed form and autograd of the formula) then agree to
    # ~1e-15; in float32 their rounding differs by ~1e-6 relative at the largest entries
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(*shape, generator=g, dtype=torch.float64) * 3
    if LOSSES.get(name).input_kind == "cosine":
        z = (z / 4).clamp(-1, 1)
    y = (torch.rand(*shape, generator=g) < 0.2).double()
    if name == "atl":
        y[:, 0] = 0  # the threshold column is never a target
    return z, y


def _value_and_grad(loss: torch.nn.Module, z: torch.Tensor, y: torch.Tensor):
    x = z.clone().requires_grad_(True)
    value = loss(x, y)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def _check(name: str, backend: str, preset: str | None = None,
           shapes: tuple[tuple[int, int], ...] = ((24, 40),)) -> None:
    torch._dynamo.reset()
    eager = create_loss(name, preset=preset).eval()
    compiled = create_loss(name, preset=preset).eval().compile_functional(backend=backend)
    for seed, shape in enumerate(shapes):
        z, y = _inputs(name, shape, seed)
        v0, g0 = _value_and_grad(eager, z, y)
        v1, g1 = _value_and_grad(compiled, z, y)
        assert v1.item() == pytest.approx(v0.item(), rel=1e-6, abs=1e-9), (name, preset)
        scale = g0.abs().max().clamp(min=1e-12)
        assert ((g1 - g0).abs().max() / scale).item() < 1e-6, (name, preset)


@pytest.mark.parametrize("name", NAMES)
def test_every_loss_traced_equals_eager(name: str) -> None:
    _check(name, "aot_eager")


@pytest.mark.parametrize("preset", PRESETS)
def test_every_asymmetric_preset_traced_equals_eager(preset: str) -> None:
    _check(get_preset(preset)["loss"], "aot_eager", preset)


def test_asl_through_inductor_equals_eager() -> None:
    _check("asl", "inductor", shapes=((24, 40), (7, 40)))  # a second shape: a recompiled graph


def test_create_loss_compile_flag_compiles_the_functional() -> None:
    loss = create_loss("asl", compile=True)
    assert loss._functional is not type(loss).functional
    assert create_loss("asl")._functional is type(loss).functional


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_loss_through_inductor_equals_eager(name: str) -> None:
    _check(name, "inductor")


@pytest.mark.parametrize("hp", [
    dict(gamma_pos=0.0, gamma_neg=4.0, clip=0.05, eps=1e-8),
    dict(gamma_pos=1.0, gamma_neg=2.0, a1=1.5, a2=-0.3, b1=0.7, b0=-0.2),
    dict(gamma_pos=0.5, gamma_neg=0.7, clip=0.2, detach_focal_weight=True),
    dict(gamma_pos=2.5, gamma_neg=1.5, scale_pos=0.3, scale_neg=0.02, eps=1e-3),
    dict(gamma_pos=0.3, gamma_neg=0.6, clip=0.1),
])
def test_fused_dense_form_equals_the_eager_kernel(hp: dict) -> None:
    # the compiled path's closed form (one exp, one log1p) against the eager kernel, element
    # by element, in float64, on logits wide enough to saturate sigmoid and hit the eps clamp
    from losses._kernel import PolyParams, _elementwise, _fused_dense

    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 50, generator=g, dtype=torch.float64) * 12
    y = (torch.rand(64, 50, generator=g) < 0.3).double()
    params = PolyParams(**hp)
    loss0, grad0 = _elementwise(z, y, params, True)
    loss1, grad1 = _fused_dense(z, y, params)
    torch.testing.assert_close(loss1, loss0, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad1, grad0, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# the compiled path's float32 arithmetic (losses/_kernel.py): inlined log1p, one division


def _float32_grid(lo: int, hi: int, step: int = 61) -> torch.Tensor:
    """Every ``step``-th float32 whose bit pattern lies in [lo, hi]: all binades alike."""
    bits = torch.arange(lo, hi + 1, step, dtype=torch.int64).to(torch.int32)
    return bits.view(torch.float32)


def test_inlined_log1p_matches_float64_on_float32_sweep() -> None:
    from losses._kernel import _log1p_from_s

    e = _float32_grid(0, 0x3F800000)  # [0, 1]: 17 million values
    want = torch.log1p(e.double())
    got = _log1p_from_s(e / (2.0 + e)).double()
    normal = e >= torch.finfo(torch.float32).tiny
    rel = (got - want).abs()[normal] / want[normal]
    assert rel.max().item() < 2e-7
    # subnormal e (|z| > 87): log1p(e) = e, off by at most one subnormal step
    assert (got - want).abs()[~normal].max().item() <= 2 * 1.4013e-45


def test_reciprocals_from_one_division_match_plain_division() -> None:
    from losses._kernel import _reciprocals

    g = torch.Generator().manual_seed(0)
    xs = [torch.rand(1000, generator=g) * k + 0.01 for k in (1.0, 3.0, 0.1, 10.0)]
    for got, x in zip(_reciprocals(*xs), xs, strict=True):
        torch.testing.assert_close(got.double(), 1.0 / x.double(), rtol=3e-6, atol=0)


@pytest.mark.parametrize("m", [0.05, 0.2, 0.49, 1e-4])
def test_neg_log_shifted_q_matches_float64(m: float) -> None:
    # -log(q + m) from two inlined log1p's, against float64; the eager kernel's float32
    # route (-log of 1 - p_m rounded to float32) is the bar it must not fall below
    from losses._kernel import _log1p_from_s, _neg_log_shifted_q, _shifted_q_ratio

    z = torch.linspace(-100.0, 100.0, 400001)
    e = torch.exp(-z.abs())
    a, b = _shifted_q_ratio(z, e, m)
    got = _neg_log_shifted_q(z, _log1p_from_s(e / (2 + e)), _log1p_from_s(a / (a + 2 * b)), m)
    zd = z.double()
    want = -torch.log(torch.sigmoid(-zd) + m)
    above = torch.sigmoid(zd) > m  # where the kernel uses it
    err = (got.double() - want).abs()[above]
    eager_route = (-torch.log((1 - (torch.sigmoid(z) - m)).double()) - want).abs()[above]
    assert err.max().item() <= max(1.2e-6, eager_route.max().item())


FAMILY = ["focal", "poly1", "asl", "apl", "apl_official", "aam"]


@pytest.mark.parametrize("name", ["asl"] + [pytest.param(n, marks=pytest.mark.slow)
                                            for n in FAMILY if n != "asl"])
def test_compiled_float32_is_as_close_to_float64_as_eager_float32(name: str) -> None:
    # float32 takes the inlined arithmetic (float64 runs the library's functions, above):
    # through inductor, on logits wide enough to saturate sigmoid; eager float32 itself is
    # up to ~2.3e-6 away from float64 on these inputs
    torch._dynamo.reset()
    eager = create_loss(name)
    compiled = create_loss(name, compile=True)
    for seed, scale in enumerate((1.0, 4.0, 12.0)):
        z, y = _inputs(name, (64, 97), seed)
        z = z * scale if name != "aam" else z
        if seed == 1:
            y = torch.rand(y.shape, generator=torch.Generator().manual_seed(seed)).double()
        v64, g64 = _value_and_grad(eager, z, y)
        v32, g32 = _value_and_grad(compiled, z.float(), y.float())
        assert abs(v32.item() - v64.item()) <= 3e-6 * abs(v64.item()), (name, scale)
        assert ((g32.double() - g64).abs().max() / g64.abs().max()).item() < 3e-6, (name, scale)


def test_compiled_losses_do_not_share_one_dynamo_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # each compiled loss owns a copy of the kernel's code object: ten compiled asl with ten
    # gamma_neg (more than dynamo's recompile limit of 8 per code object) all stay compiled;
    # a fallback would reach the eager kernel, which this test makes fail
    import losses._kernel as kernel

    torch._dynamo.reset()
    compiled = [create_loss("asl", gamma_neg=1.0 + k).compile_functional(backend="aot_eager")
                for k in range(10)]
    z, y = _inputs("asl", (8, 6))

    def no_eager(*args: object, **kwargs: object) -> None:
        raise AssertionError("a compiled loss ran the eager kernel")

    monkeypatch.setattr(kernel, "_elementwise", no_eager)
    for loss in compiled:
        _value_and_grad(loss, z, y)


def test_compiled_loss_hands_its_gradient_on() -> None:
    # create_loss(compile=True): backward returns the kernel's gradient for loss.backward(),
    # multiplies otherwise (a scaled loss, a retained graph used twice)
    torch._dynamo.reset()
    loss = create_loss("asl").compile_functional(backend="aot_eager")
    z, y = _inputs("asl", (8, 6))
    _, ref = _value_and_grad(create_loss("asl"), z, y)
    x = z.clone().requires_grad_(True)
    out = loss(x, y)
    out.backward(retain_graph=True)
    torch.testing.assert_close(x.grad, ref, rtol=1e-12, atol=1e-15)
    (out * 3.0).backward()
    torch.testing.assert_close(x.grad, 4 * ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["asl", "aam"])
def test_compiled_bfloat16_logits_compute_in_float32_and_return_a_bfloat16_gradient(
        name: str) -> None:
    # a mixed-precision model hands bf16 logits: the compiled kernel up-casts inside its pass,
    # so its value is the float32 loss of the (exactly representable) up-cast logits, and its
    # gradient that float32 gradient rounded once to bf16 (float64 reference: at most one
    # bf16 rounding, 2**-8 relative, plus float32 rounding)
    torch._dynamo.reset()
    loss = create_loss(name, preset="aam_coco" if name == "aam" else "asl_coco").compile_functional(
        backend="aot_eager")
    reference = create_loss(name, preset="aam_coco" if name == "aam" else "asl_coco")
    z, y = _inputs(name, (16, 33))
    zb = z.to(torch.bfloat16)
    x = zb.clone().requires_grad_(True)
    value = loss(x, y.float())
    value.backward()
    v64, g64 = _value_and_grad(reference, zb.double(), y)
    assert value.dtype == torch.float32 and x.grad.dtype == torch.bfloat16
    assert abs(value.item() - v64.item()) <= 1e-6 * abs(v64.item())
    err = (x.grad.double() - g64).abs()
    assert bool((err <= 2.0**-8 * g64.abs() + 1e-6 * g64.abs().max()).all())
