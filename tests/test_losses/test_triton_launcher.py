"""``losses._triton._Launcher``: the direct launch of Triton's compiled kernel, with fakes.

The direct launch only runs on a GPU; here a fake ``JITFunction`` and a fake
``CompiledKernel`` stand in for Triton's, so the launcher's own logic is tested on the CPU:
when it goes through the JIT, which arguments it hands ``CompiledKernel.run`` and in which
order (the order ``JITFunction.run`` passes them: every parameter in declaration order, the
compile-time constants included), the key that decides a new compilation, the first direct
launch's check against the JIT, and the fall-backs.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                reason="Triton not installed")

NAMES = ("x_ptr", "out_ptr", "n", "factor", "SHIFT", "BLOCK")


def write(args: tuple[Any, ...], wrong: bool = False) -> None:
    """What the fake kernel computes: out = x * factor + SHIFT (+ 1 when ``wrong``)."""
    x, out, _n, factor, shift, _block = args
    out.copy_(x * factor + shift + (1.0 if wrong else 0.0))


class FakeCompiled:
    """Stands in for Triton's ``CompiledKernel``: records ``run`` calls."""

    function = "function-handle"
    packed_metadata = "packed"

    def __init__(self, wrong: bool = False, raises: bool = False) -> None:
        self.runs: list[tuple[Any, ...]] = []
        self.wrong, self.raises = wrong, raises

    def launch_metadata(self, grid: tuple[int, ...], stream: int, *args: Any) -> None:
        return None

    def run(self, g0: int, g1: int, g2: int, stream: int, function: str, packed: str,
            metadata: None, enter: object, exit_: object, *args: Any) -> None:
        if self.raises:
            raise TypeError("launcher API changed")
        assert (g1, g2, function, packed) == (1, 1, "function-handle", "packed")
        self.runs.append((g0, stream, *args))
        write(args, self.wrong)


class FakeJIT:
    """Stands in for ``JITFunction``: ``fake[grid](*args, **constants)`` like Triton's."""

    def __init__(self, compiled: FakeCompiled, names: tuple[str, ...] = NAMES) -> None:
        self.arg_names = list(names)
        self.compiled = compiled
        self.calls: list[tuple[int, ...]] = []

    def __getitem__(self, grid: tuple[int, ...]) -> Any:
        def launch(*args: Any, **constants: Any) -> FakeCompiled:
            self.calls.append(grid)
            bound = (*args, *(constants[name] for name in self.arg_names[len(args):]))
            write(bound)
            return self.compiled

        return launch


def launcher(compiled: FakeCompiled, names: tuple[str, ...] = NAMES) -> Any:
    from losses._triton import _Launcher

    class CPULauncher(_Launcher):
        devices = ("cpu",)

        @staticmethod
        def _stream(device: torch.device) -> int:
            return 7

    return CPULauncher(FakeJIT(compiled, names), outputs=(1,))


CONSTANTS = (("SHIFT", 0.5), ("BLOCK", 64))


def call(launch: Any, x: torch.Tensor, n: int | None = None,
         constants: tuple[tuple[str, Any], ...] = CONSTANTS) -> torch.Tensor:
    out = torch.empty_like(x)
    launch(3, torch.device("cpu"), (x, out, x.numel() if n is None else n, 2.0), constants)
    return out


def test_first_call_compiles_through_the_jit_then_launches_directly_in_parameter_order() -> None:
    compiled = FakeCompiled()
    launch = launcher(compiled)
    x = torch.arange(32, dtype=torch.float32)
    out = call(launch, x)
    assert launch.jit_function.calls == [(3,)] and compiled.runs == []
    assert torch.equal(out, x * 2.0 + 0.5)
    out = call(launch, x)  # the first direct launch, checked once against the JIT
    assert len(compiled.runs) == 1 and len(launch.jit_function.calls) == 2
    grid, stream, *args = compiled.runs[0]
    assert (grid, stream) == (3, 7)
    # every parameter in declaration order, the constants' values last, as JITFunction.run
    assert args[0] is x and args[2:] == [32, 2.0, 0.5, 64]
    assert torch.equal(out, x * 2.0 + 0.5)
    call(launch, x)  # checked already: no JIT launch
    assert len(compiled.runs) == 2 and len(launch.jit_function.calls) == 2
    assert launch.direct


def test_no_check_while_a_cuda_graph_is_captured(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = FakeCompiled()
    launch = launcher(compiled)
    x = torch.arange(32, dtype=torch.float32)
    call(launch, x)
    monkeypatch.setattr(type(launch), "_capturing", staticmethod(lambda device: True))
    call(launch, x)  # direct, unchecked: the check would synchronize inside the capture
    assert len(compiled.runs) == 1 and len(launch.jit_function.calls) == 1
    monkeypatch.setattr(type(launch), "_capturing", staticmethod(lambda device: False))
    call(launch, x)  # checked at the first launch outside a capture
    assert len(compiled.runs) == 2 and len(launch.jit_function.calls) == 2


@pytest.mark.parametrize("change", ["dtype", "alignment", "n % 16", "n == 1", "constant"])
def test_what_triton_specializes_on_gives_a_new_compilation(change: str) -> None:
    launch = launcher(FakeCompiled())
    x = torch.arange(32, dtype=torch.float32)
    call(launch, x)
    before = len(launch.compiled)
    if change == "dtype":
        call(launch, x.double())
    elif change == "alignment":
        call(launch, torch.arange(33, dtype=torch.float32)[1:])  # data_ptr 4 bytes past 16
    elif change == "n % 16":
        call(launch, x, n=33)
    elif change == "n == 1":
        call(launch, x[:1], n=1)
    else:
        call(launch, x, constants=(("SHIFT", 1.5), ("BLOCK", 64)))
    assert len(launch.compiled) == before + 1


@pytest.mark.parametrize(("fake", "message"), [
    (FakeCompiled(wrong=True), "other values than the JIT"),
    (FakeCompiled(raises=True), "raised TypeError"),
], ids=["disagrees", "raises"])
def test_a_direct_launch_that_disagrees_or_raises_falls_back_to_the_jit(
        fake: FakeCompiled, message: str) -> None:
    launch = launcher(fake)
    x = torch.arange(32, dtype=torch.float32)
    call(launch, x)
    with pytest.warns(RuntimeWarning, match=message):
        out = call(launch, x)
    assert torch.equal(out, x * 2.0 + 0.5)  # the JIT's values, not the direct launch's
    assert not launch.direct
    calls = len(launch.jit_function.calls)
    call(launch, x)
    assert len(launch.jit_function.calls) == calls + 1


def test_an_unexpected_parameter_order_never_launches_directly() -> None:
    compiled = FakeCompiled()
    launch = launcher(compiled, names=("x_ptr", "out_ptr", "n", "factor", "BLOCK", "SHIFT"))
    x = torch.arange(32, dtype=torch.float32)
    with pytest.warns(RuntimeWarning, match="parameter order"):
        call(launch, x)
    call(launch, x)
    assert compiled.runs == [] and not launch.direct
