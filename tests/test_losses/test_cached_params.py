"""``losses._kernel.cached_params``: the family's checked coefficients, built once per set of
values, without changing what a call returns or which message a bad value gets."""

from __future__ import annotations

import pytest
import torch

from losses import asl as asl_module
from losses._kernel import PolyParams, cached_params, poly_loss


def test_built_once_per_values_and_type() -> None:
    built: list[tuple[object, ...]] = []

    @cached_params
    def params(gamma: float, clip: float) -> PolyParams:
        built.append((gamma, clip))
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma!r}")
        return PolyParams(gamma_neg=gamma, clip=clip)

    first = params(4.0, 0.05)
    assert params(4.0, 0.05) is first and built == [(4.0, 0.05)]
    params(4, 0.05)  # an int is its own key (typed)
    assert built == [(4.0, 0.05), (4, 0.05)]
    for _ in range(2):  # a bad value raises on every call: exceptions are not cached
        with pytest.raises(ValueError, match=r"gamma must be >= 0, got -1\.0"):
            params(-1.0, 0.05)
    assert built.count((-1.0, 0.05)) == 2


def test_an_unhashable_value_still_gets_the_loss_message() -> None:
    with pytest.raises(ValueError, match=r"loss 'asl': gamma_neg must be a finite number >= 0, "
                                         r"got \[4.0\]"):
        asl_module.asl_loss(torch.zeros(2, 3), torch.zeros(2, 3), gamma_neg=[4.0])  # type: ignore[arg-type]


def test_a_changing_hyper_parameter_gives_each_call_its_own_coefficients() -> None:
    """asl_adaptive's case: gamma_neg moves between calls; each value computes its own loss
    (compared with the family kernel on coefficients built here, outside the cache)."""
    z = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    y = (torch.rand(5, 6, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    for gamma_neg in (4.0, 3.5, 4.0, 2.0):
        got = asl_module.asl_loss(z, y, gamma_neg=gamma_neg)
        want = poly_loss(z, y, PolyParams(gamma_neg=gamma_neg, clip=0.05), "mean", "asl")
        assert torch.equal(got, want)
        assert got != asl_module.asl_loss(z, y, gamma_neg=gamma_neg + 1.0)
