"""The C++ positive-target scan (``losses/_positives_kernel.cpp``) behind the eager family's
sparse path (``losses._kernel._binary_positive_index``).

References: the rule written plainly over a Python list (positions of the entries equal to 1
when every nonzero entry is 1 and at most a quarter are nonzero, else None), and, for the
losses, the torch path (``POSITIVES_KERNEL`` off) bit for bit.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from losses import _kernel, create_loss
from mllb_core import native

# decided without building (a build at collection would write outside the tests' own cache
# folders); where a compiler is found but the build fails, these tests fail rather than skip
HAS_KERNEL = _kernel.POSITIVES_KERNEL and native.compiler() is not None
needs_kernel = pytest.mark.skipif(not HAS_KERNEL,
                                  reason="the positive scan is switched off or has no compiler")

FAMILY = ["focal", "poly1", "asl", "apl", "apl_official", "aam"]


def _reference(values: list[float]) -> list[int] | None:
    """The sparse path's rule over plain floats (NaN is nonzero and not 1; -0.0 is zero)."""
    nonzero = [i for i, v in enumerate(values) if v != 0 or math.isnan(v)]
    if len(nonzero) > len(values) / 4 or any(values[i] != 1 for i in nonzero):
        return None
    return nonzero


def _scan(targets: torch.Tensor) -> list[int] | None:
    """The positions as found, not sorted: ascending order is part of the contract."""
    idx = _kernel._binary_positive_index(targets)
    return None if idx is None else idx.tolist()


def _spy(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[tuple]:
    """Every call's arguments of ``owner.name`` (a module function or a kernel entry point),
    which still runs."""
    real = getattr(owner, name)
    calls: list[tuple] = []

    def recorded(*args: object) -> object:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(owner, name, recorded)
    return calls


@pytest.fixture
def kernel_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan switched on, and a failure if the torch path answers instead."""
    monkeypatch.setattr(_kernel, "POSITIVES_KERNEL", True)

    def torch_path(flat: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the torch scan answered a float32 call")

    monkeypatch.setattr(_kernel, "_flat_nonzero", torch_path)


@needs_kernel
@pytest.mark.parametrize("n", [1, 3, 4, 31, 32, 33, 64, 1000, 32_800, 100_003])
@pytest.mark.parametrize("density", [0.0, 0.003, 0.05, 0.25, 0.6])
def test_the_scan_follows_the_rule(n: int, density: float, kernel_on: None) -> None:
    g = torch.Generator().manual_seed(n)
    y = (torch.rand(n, generator=g) < density).float()
    assert _scan(y) == _reference(y.tolist())


@needs_kernel
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 2.0, 0.5, 1e-30, 1e-45])
# 200 and 704: in a block of 32 without a positive; 999 and 1007: in the tail after the blocks
@pytest.mark.parametrize("where", [0, 31, 32, 200, 704, 999, 1000 + 7])
def test_an_entry_other_than_0_or_1_sends_the_call_to_the_dense_formula(
        bad: float, where: int, kernel_on: None) -> None:
    y = torch.zeros(1000 + 9)
    y[[3, 40, 500]] = 1.0
    y[where] = bad
    assert _reference(y.tolist()) is None
    assert _scan(y) is None


@needs_kernel
def test_negative_zero_is_zero_and_the_cap_is_a_quarter(kernel_on: None) -> None:
    y = torch.full((103,), -0.0)
    y[[0, 31, 32, 64, 102]] = 1.0  # block edges and the tail (103 = 3 * 32 + 7)
    assert _scan(y) == [0, 31, 32, 64, 102]
    n = 100  # cap 25: exactly 25 positives are sparse, 26 are not
    y = torch.zeros(n)
    y[torch.arange(0, 100, 4)] = 1.0
    assert _scan(y) == list(range(0, 100, 4))
    y[1] = 1.0
    assert _scan(y) is None and _reference(y.tolist()) is None


@pytest.fixture
def threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """torch's thread count set to the test's parameter, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2, 3, 8, 16], indirect=True)
@pytest.mark.parametrize("case", ["sparse", "edges", "soft_late", "over_cap_in_total",
                                  "last_part_only"])
def test_every_thread_count_gives_the_rule(case: str, threads: int, kernel_on: None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # 300,007 entries: at most 9 parts of at least 32,768 (8 threads: parts of 37,504 and a
    # shorter last one; 16 threads: still 9)
    n = 300_007
    g = torch.Generator().manual_seed(threads)
    y = (torch.rand(n, generator=g) < 0.01).float()
    if case == "edges":  # both sides of every possible part boundary, and the last entry
        for parts in (2, 3, 8, 9):
            part = math.ceil(math.ceil(n / parts) / 32) * 32  # the kernel's part length
            for t in range(1, parts):
                y[t * part - 1] = y[t * part] = 1.0
        y[-1] = 1.0
    elif case == "soft_late":  # one soft entry in the last part only
        y[n - 5] = 0.5
    elif case == "over_cap_in_total":  # no part above the cap alone, all of them together
        y[:] = 0.0
        y[torch.arange(0, n, 3)] = 1.0  # 100,003 positives > 75,001
    elif case == "last_part_only":  # every other part finds nothing
        y[:] = 0.0
        y[[n - 40, n - 2]] = 1.0
    calls = _spy(monkeypatch, _kernel._positives_library(), "mllb_binary_positives")
    assert _scan(y) == _reference(y.tolist())
    # the kernel was asked to use every thread torch has
    assert [args[-1] for args in calls] == [threads]


@needs_kernel
@pytest.mark.parametrize("threads", [0, -1, 1 << 20])
def test_any_thread_count_the_kernel_is_handed_is_safe(threads: int) -> None:
    # torch never reports fewer than one thread, but the C function must not trust that
    g = torch.Generator().manual_seed(3)
    y = (torch.rand(100_000, generator=g) < 0.01).float()
    lib = _kernel._positives_library()
    k = lib.mllb_binary_positives(y.data_ptr(), y.numel(), y.numel() // 4, threads)
    found = torch.empty(k, dtype=torch.int64)
    lib.mllb_binary_positives_take(found.data_ptr())
    assert found.tolist() == _reference(y.tolist())


@needs_kernel
def test_positions_it_could_not_store_are_found_by_the_torch_ops(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_kernel, "POSITIVES_KERNEL", True)
    lib = _kernel._positives_library()
    monkeypatch.setattr(lib, "mllb_binary_positives", lambda *args: -3)  # out of memory
    torch_calls = _spy(monkeypatch, _kernel, "_flat_nonzero")
    y = torch.zeros(50_000)
    y[[0, 7, 49_999]] = 1.0
    assert _scan(y) == [0, 7, 49_999]
    assert len(torch_calls) == 1


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2], indirect=True)
def test_a_call_finds_only_its_own_positions(
        threads: int, kernel_on: None) -> None:
    # the kernel keeps positions between calls (dropped after a dense or soft one)
    n = 100_000
    dense = (torch.arange(n) % 2 == 0).float()  # half positive: more than the cap
    soft = torch.zeros(n)
    soft[[5, 60_000]] = 1.0
    soft[70_000] = 0.5
    sparse = torch.zeros(n)
    sparse[[3, 99_999]] = 1.0
    for first in (dense, soft, sparse):
        assert _scan(first) == (None if first is not sparse else [3, 99_999])
        assert _scan(sparse) == [3, 99_999]


@needs_kernel
def test_positions_are_row_major_for_a_transposed_target(kernel_on: None) -> None:
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(40, 30, generator=g) < 0.05).float().t()  # [30, 40], not contiguous
    assert not y.is_contiguous()
    assert _scan(y) == _reference(y.reshape(-1).tolist())


@needs_kernel
def test_a_strided_column_is_read_in_its_own_order(kernel_on: None) -> None:
    g = torch.Generator().manual_seed(1)
    y = (torch.rand(200, 30, generator=g) < 0.1).float()[:, 3:4]  # [200, 1], stride 30
    assert not y.reshape(-1).is_contiguous()  # the flat view itself is strided
    assert _scan(y) == _reference(y.reshape(-1).tolist())


@needs_kernel
@pytest.mark.parametrize("name", ["asl", "aam"])
def test_a_default_device_context_does_not_move_the_kernels_buffer(
        name: str, kernel_on: None) -> None:
    # the kernel writes through its buffer's pointer: under `with torch.device("meta")` a
    # buffer made without a device would be a meta tensor (null pointer)
    g = torch.Generator().manual_seed(2)
    z = (torch.randn(30, 70, generator=g) / 3).clamp(-1, 1)
    y = (torch.rand(30, 70, generator=g) < 0.05).float()
    want = _scan(y)
    loss = create_loss(name)
    x = z.clone().requires_grad_(True)
    value = loss(x, y)
    value.backward()
    with torch.device("meta"):
        assert _scan(y) == want
        x2 = z.clone().requires_grad_(True)
        value2 = loss(x2, y)
        value2.backward()
    assert value2.device.type == "cpu"
    assert torch.equal(value2, value) and torch.equal(x2.grad, x.grad)


@needs_kernel
@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("shape", [(5, 3), (64, 80), (256, 1000)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_give_the_same_bits_with_and_without_the_scan(
        name: str, shape: tuple[int, int], reduction: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(shape[0])
    z = (torch.randn(*shape, generator=g) / 3).clamp(-1, 1)  # valid cosines for aam
    y = (torch.rand(*shape, generator=g) < 0.02).float()
    y[0, 0] = 1.0  # at least one positive
    loss = create_loss(name, reduction=reduction)
    calls = _spy(monkeypatch, _kernel._positives_library(), "mllb_binary_positives")
    got = []
    for on in (True, False):
        monkeypatch.setattr(_kernel, "POSITIVES_KERNEL", on)
        x = z.clone().requires_grad_(True)
        value = loss(x, y)
        value.sum().backward()
        got.append((value.detach(), x.grad))
    assert len(calls) == 1  # the kernel answered the first call, the torch ops the second
    assert torch.equal(got[0][0], got[1][0]) and torch.equal(got[0][1], got[1][1])


def test_other_dtypes_take_the_torch_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_kernel() -> None:
        raise AssertionError("the C++ scan was asked for a non-float32 target")

    monkeypatch.setattr(_kernel, "_positives_library", no_kernel)
    y = torch.zeros(50)
    y[[1, 7]] = 1
    for dtype in (torch.float64, torch.bool, torch.int64, torch.bfloat16):
        assert _scan(y.to(dtype)) == [1, 7]


def test_switched_off_the_scan_is_never_built(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_kernel() -> None:
        raise AssertionError("the C++ scan was loaded while switched off")

    monkeypatch.setattr(_kernel, "POSITIVES_KERNEL", False)
    monkeypatch.setattr(_kernel, "_positives_library", no_kernel)
    y = torch.zeros(10, 10)
    y[2, 3] = 1
    assert _scan(y) == [23]


def test_a_failing_build_warns_once_and_the_torch_ops_answer(
        fresh_kernel_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_kernel, "POSITIVES_KERNEL", True)
    monkeypatch.setenv("CXX", "false")
    y = torch.zeros(300)
    y[[0, 99, 299]] = 1.0
    with pytest.warns(RuntimeWarning, match="positive-target scan did not build with false"):
        assert _scan(y) == [0, 99, 299]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        assert _scan(y) == [0, 99, 299]
    assert not list(fresh_kernel_cache.glob("*.so"))
