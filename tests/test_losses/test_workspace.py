"""The eager CPU kernels' reused scratch memory (``losses/_workspace.py``) never shows in a result.

Reference: the same loss with reuse switched off (every temporary freshly allocated, the code
path before reuse existed), bit for bit; and ``torch.nonzero`` for the strided positive scan.
"""

from __future__ import annotations

import threading

import pytest
import torch

from losses import _kernel, _workspace, create_loss, list_losses

# (100, 333): above the strided scan's threshold, and 33,300 is not a multiple of its 16 rows
SHAPES = [(100, 333), (7, 5), (256, 130)]


def _inputs(shape: tuple[int, int], seed: int, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits in [-1, 1] (valid cosines for aam) and sparse binary, soft or dense targets."""
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(*shape, generator=g) / 3).clamp(-1, 1)
    if kind == "sparse":
        y = (torch.rand(*shape, generator=g) < 0.02).float()
    elif kind == "soft":
        y = torch.rand(*shape, generator=g)
    else:
        y = (torch.rand(*shape, generator=g) < 0.5).float()
    return z, y


def _run(name: str, reduction: str, z: torch.Tensor, y: torch.Tensor,
         kwargs: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        loss = create_loss(name, reduction=reduction, **(kwargs or {}))
    except (TypeError, ValueError):
        pytest.skip(f"{name} has no reduction={reduction!r}")
    x = z.clone().requires_grad_(True)
    value = loss(x, y)
    (value.sum() if value.dim() else value).backward()
    return value.detach(), x.grad


def _run_without_grad(name: str, reduction: str, z: torch.Tensor, y: torch.Tensor,
                      kwargs: dict) -> torch.Tensor:
    """The value alone (the family's kernel takes its generic branch without a gradient)."""
    with torch.no_grad():
        return create_loss(name, reduction=reduction, **kwargs)(z, y)


@pytest.fixture
def reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_workspace, "ENABLED", True)
    _workspace.clear_workspace()


# beside every registered loss's defaults, the family's other negative branches: the generic
# one (a detached weight, a weight of power 0 or 1, the eps clamp; without a gradient every
# setting takes it) and a non-integer power
VARIANTS = [("asl", {"detach_focal_weight": True}), ("asl", {"clip": 0.0, "gamma_neg": 1.0}),
            ("asl", {"gamma_neg": 0.0}), ("asl", {"eps": 1e-3}), ("asl", {"gamma_neg": 2.5}),
            ("focal", {"gamma": 3.0})]


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize(("name", "kwargs"), [(name, {}) for name in list_losses()] + VARIANTS)
def test_reuse_gives_the_bits_of_fresh_memory(name: str, kwargs: dict, reduction: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def run(case: tuple) -> tuple[torch.Tensor, ...]:
        z, y = _inputs(*case)
        return (*_run(name, reduction, z, y, kwargs),
                _run_without_grad(name, reduction, z, y, kwargs))

    cases = [(shape, seed, kind) for shape in SHAPES for seed in (0, 1)
             for kind in ("sparse", "soft", "dense")]
    monkeypatch.setattr(_workspace, "ENABLED", False)
    want = []
    for case in list(cases):
        try:
            want.append(run(case))
        except ValueError:  # inputs outside the loss's domain (atl: soft targets)
            cases.remove(case)
    assert cases
    monkeypatch.setattr(_workspace, "ENABLED", True)
    _workspace.clear_workspace()
    # every case after others of other shapes and other values: stale scratch would show
    got = [run(case) for case in cases]
    for case, expected, result in zip(cases, want, got, strict=True):
        for what, g, w in zip(("value", "gradient", "value without grad"), result, expected,
                              strict=True):
            assert torch.equal(g, w), (case, what)


@pytest.mark.parametrize("name", ["asl", "apl", "focal", "zlpr", "two_way"])
def test_results_and_saved_gradients_survive_later_calls(name: str, reuse: None) -> None:
    z1, y1 = _inputs((100, 333), 0, "sparse")
    z2, y2 = _inputs((100, 333), 1, "sparse")
    want_value, want_grad = _run(name, "mean", z1, y1)
    loss = create_loss(name)
    x1 = z1.clone().requires_grad_(True)
    first = loss(x1, y1)
    x2 = z2.clone().requires_grad_(True)
    loss(x2, y2).backward()  # a second call before the first one's backward
    first.backward()
    assert torch.equal(first.detach(), want_value)
    assert torch.equal(x1.grad, want_grad)


def test_an_unreduced_result_is_not_overwritten_by_the_next_call(reuse: None) -> None:
    z1, y1 = _inputs((100, 333), 0, "sparse")
    z2, y2 = _inputs((100, 333), 1, "sparse")
    loss = create_loss("asl", reduction="none")
    first = loss(z1, y1)
    kept = first.clone()
    loss(z2, y2)
    assert torch.equal(first, kept)


def test_inference_mode_and_grad_mode_alternate(monkeypatch: pytest.MonkeyPatch) -> None:
    z, y = _inputs((100, 333), 0, "sparse")
    loss = create_loss("asl")
    monkeypatch.setattr(_workspace, "ENABLED", False)
    with torch.inference_mode():  # no gradient: the kernel's value-only path
        want_inference = loss(z, y)
    want, _ = _run("asl", "mean", z, y)
    monkeypatch.setattr(_workspace, "ENABLED", True)
    _workspace.clear_workspace()
    with torch.inference_mode():
        assert torch.equal(loss(z, y), want_inference)
    got, _ = _run("asl", "mean", z, y)  # an inference tensor cannot be written out of it
    assert torch.equal(got, want)
    with torch.inference_mode():
        assert torch.equal(loss(z, y), want_inference)


def test_threads_keep_their_own_scratch(reuse: None) -> None:
    cases = [_inputs((100, 333), seed, "sparse") for seed in range(4)]
    want = [_run("two_way", "mean", z, y) for z, y in cases]
    got: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def work(i: int) -> None:
        got[i] = [_run("two_way", "mean", z, y) for z, y in cases * 5]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(3):
        for k, (value, grad) in enumerate(got[i]):
            assert torch.equal(value, want[k % 4][0]) and torch.equal(grad, want[k % 4][1])


def test_memory_held_is_the_last_shapes_and_can_be_freed(reuse: None) -> None:
    loss = create_loss("asl")
    for shape in [(300, 400), (100, 333)]:
        z, y = _inputs(shape, 0, "sparse")
        loss(z.requires_grad_(True), y).backward()
    # p, p (1 - p) and the reduced loss: three float32 [100, 333] tensors
    assert _workspace.held_bytes() == 3 * 100 * 333 * 4
    _workspace.clear_workspace()
    assert _workspace.held_bytes() == 0


def _nonzero_reference(flat: torch.Tensor) -> torch.Tensor:
    return flat.nonzero().view(-1)


@pytest.mark.parametrize("n", [1, 17, 32767, 32768, 32768 + 5, 100_003])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool, torch.int64])
def test_strided_positive_scan_finds_what_nonzero_finds(n: int, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(n)
    flat = (torch.rand(n, generator=g) < 0.01).to(dtype)
    if dtype.is_floating_point and n > 40:
        # one column of the [16, n / 16] view holding 1 and -1 (a sum would cancel), NaN,
        # -0.0 (zero to nonzero()) and the tail's last entry
        k = max(n // 16, 1)
        flat[5], flat[k + 5] = 1.0, -1.0
        flat[20], flat[21], flat[-1] = float("nan"), -0.0, 2.0
    got = _kernel._flat_nonzero(flat)
    # ascending, as nonzero's: the positive branch's bits depend on the order (_kernel)
    assert torch.equal(got, _nonzero_reference(flat))
