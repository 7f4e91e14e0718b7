"""The compiled path (``create_loss(..., compile=True)``): the value and gradient of eager.

The eager asymmetric family runs a sparse-positive closed-form kernel (``losses/_kernel.py``);
compiled, a dense closed form built from one exp and one log1p (``_fused_dense``), checked
element by element against the eager kernel below and through the compiled loss here; the
eager kernel itself is checked against the papers' equations written plainly
(tests/test_losses/test_loss_reference.py). Every loss is
traced with the ``aot_eager`` backend (dynamo + AOT autograd, the graphs inductor receives,
without code generation: seconds); asl runs through inductor itself; ``-m slow`` runs every
loss through inductor. Never timed.
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
