"""ASL and APL against the official code itself (imported from ../shared/reference at test time).

``tests/test_losses/test_loss_reference.py`` checks transcriptions of the official semantics;
this file runs the unchanged official modules on the same tensors: Alibaba-MIIL/ASL
``src/loss_functions/losses.py`` (``AsymmetricLoss``, ``AsymmetricLossOptimized``) and
LUMIA-Group/APL ``APLloss.py`` (``APLLoss``), all ``-loss.sum()``. Skipped when the reference
code is absent. Logits stay within |z| <= 8, where the official ``log(clamp(p, eps))`` and MLLB's
stable ``logsigmoid`` agree to float64 rounding (beyond it the official code saturates: the
documented deviation).
"""

from __future__ import annotations

import pytest
import torch
from official import import_official

from losses import create_loss

DT = torch.float64


def _inputs(seed: int, shape: tuple[int, int] = (6, 9)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = (torch.rand(shape, generator=g, dtype=DT) * 16 - 8).requires_grad_(True)  # [N, C]
    y = (torch.rand(shape, generator=g) < 0.3).to(DT)  # [N, C]
    return z, y


def _value_and_grad(fn, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = z.detach().clone().requires_grad_(True)
    value = fn(z, y)
    (grad,) = torch.autograd.grad(value, z)
    return value.detach(), grad


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("cls", "detach"), [("AsymmetricLoss", True),
                                             ("AsymmetricLossOptimized", False)])
@pytest.mark.parametrize("hp", [dict(gamma_neg=4, gamma_pos=1, clip=0.05),
                                dict(gamma_neg=2, gamma_pos=0, clip=0.0),
                                dict(gamma_neg=3, gamma_pos=1, clip=0.05)])
def test_asl_equals_the_official_asymmetric_loss(seed: int, cls: str, detach: bool,
                                                 hp: dict) -> None:
    official = import_official("Alibaba-MIIL__ASL", "src/loss_functions/losses.py")
    theirs = getattr(official, cls)(**hp, eps=1e-8, disable_torch_grad_focal_loss=detach)
    ours = create_loss("asl", **{k: float(v) for k, v in hp.items()}, eps=1e-8,
                       detach_focal_weight=detach, reduction="sum")
    z, y = _inputs(seed)
    v_theirs, g_theirs = _value_and_grad(theirs, z, y)
    v_ours, g_ours = _value_and_grad(ours, z, y)
    torch.testing.assert_close(v_ours.to(DT), v_theirs, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(g_ours.to(DT), g_theirs, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("eps_", [(1.0, 0.0, -2.5), (2.0, 0.0, 1.0), (0.5, 0.0, -1.0)])
def test_apl_official_equals_the_official_apl_loss(seed: int, eps_: tuple) -> None:
    official = import_official("LUMIA-Group__APL", "APLloss.py")
    theirs = official.APLLoss(gamma_neg=4, gamma_pos=0, clip=0.05, eps=1e-8,
                              disable_torch_grad_focal_loss=True)
    theirs.epsilon_pos, theirs.epsilon_neg, theirs.epsilon_pos_pow = eps_
    ours = create_loss("apl_official", epsilon_pos=eps_[0], epsilon_neg=eps_[1],
                       epsilon_pos_pow=eps_[2], gamma_neg=4.0, gamma_pos=0.0, clip=0.05,
                       eps=1e-8, detach_focal_weight=True, reduction="sum")
    z, y = _inputs(seed)
    v_theirs, g_theirs = _value_and_grad(theirs, z, y)
    v_ours, g_ours = _value_and_grad(ours, z, y)
    torch.testing.assert_close(v_ours.to(DT), v_theirs, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(g_ours.to(DT), g_theirs, rtol=1e-6, atol=1e-8)
