"""Where one compiled loss call's time goes on CUDA: host work against device work, layer by layer.

``benchmarks/loss_speed.py --device cuda`` times each forward+backward between two
``torch.cuda.synchronize()``: the row is the host work that the kernels do not hide plus the
kernels. This script takes one compiled family loss (default asl) at one shape (default
1024x9605) apart, next to eager BCE-with-logits and the memory floor, in one process on the
same inputs. Rows, from the whole call down to one launch:

* ``BCE-with-logits fwd+bwd``: the reference, ``F.binary_cross_entropy_with_logits(z, y)``
  then ``.backward()``.
* ``<loss> (compiled) fwd+bwd, ...``: ``create_loss(loss, compile=True)(z, y).backward()``,
  its backward through the Python ``_CompiledPolyLossFunction`` or through native autograd
  nodes (``_kernel._with_native_backward``; ``_kernel.NATIVE_BACKWARD`` picks the library's
  default); ``, JIT launch`` also launches through Triton's JIT instead of
  ``losses._triton._Launcher``: the path before either change, in the same run.
* ``<loss> (compiled) forward``: the same without ``.backward()`` (the graph is dropped);
  then the same forward a layer at a time, to find where its host time goes: without
  ``nn.Module.__call__`` (``loss.forward``), and ``_CompiledPolyLossFunction.apply`` around
  ``value_and_grad`` (no module, no input checks, no coefficients); ``BCE-with-logits
  forward`` is the reference's forward alone.
* ``value_and_grad``: ``losses._triton.value_and_grad`` alone (no module, no autograd): the
  buffers, the launch and the partial sums' ``sum``.
* ``kernel, JIT launch``: ``_poly_kernel[grid](...)`` with the captured arguments: Triton's
  ``JITFunction.run`` (binding, specialization key, cache lookup) and the launch.
* ``kernel, losses._triton launcher``: the ``CompiledKernel`` that the JIT launch returned,
  launched directly by ``losses._triton._Launcher`` (``CompiledKernel.run``, what the JIT
  launch does after its lookup).
* ``tiny [8]``: the autograd engine's cost of one backward node on an 8-element tensor, a
  native one (``DotBackward0``) against a Python ``autograd.Function``.
* ``[N,C] Python node ...`` and ``g * grad_out on the main thread``: backward's scaling of an
  [N, C] gradient by a device scalar, in a Python node on the engine's device thread (its
  forward only allocates the node's buffer and makes a zero), into a new tensor or in place,
  and alone on the main thread, also through ``torch._foreach_mul`` (a vectorized kernel that
  reads the device scalar; ``torch.mul`` with a 0-dim CUDA operand runs torch's
  non-vectorized elementwise kernel).
* ``floor torch.add(z, y, out=g)``: one read of both inputs, one write of [N, C].

Columns (medians over ``--calls`` calls, ``--repeats`` times):

* ``synced ms``: one call between two ``torch.cuda.synchronize()`` (loss_speed.py's timing).
* ``host ms``: the host time to issue one call while the device is still busy with a
  ``torch.cuda._sleep`` issued first, so no call waits for the device: the pure host cost.
* ``device ms``: the device time of one call, from CUDA events around ``--calls`` calls
  issued behind that sleep, so the device runs them back to back without waiting for the host
  (``host-bound`` is printed instead where the host issue outlasted the sleep).

Then ``torch.profiler`` tables (self CPU time and device time per operator) of the compiled
loss and of BCE, and a ``cProfile`` table of the compiled forward's Python (which functions
its host time is spent in, by own time), written to ``--out``. Run on a CUDA machine
(repository root)::

    python benchmarks/gpu_loss_breakdown.py --out /tmp/breakdown
    python benchmarks/gpu_loss_breakdown.py --loss aam --dtype bfloat16

Benchmarks are not tests: nothing is asserted and the exit status is 0.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loss_speed import make_inputs  # the same inputs as loss_speed.py's rows (this folder)

from losses import create_loss
from mllb_core.provenance import code_version


def sleep_cycles_per_ms() -> float:
    """GPU clock cycles that ``torch.cuda._sleep`` spins per millisecond (measured)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    cycles = 20_000_000
    torch.cuda._sleep(cycles)  # warm
    start.record()
    torch.cuda._sleep(cycles)
    end.record()
    torch.cuda.synchronize()
    return cycles / start.elapsed_time(end)


def time_synced(fn: Callable[[], object], calls: int) -> float:
    """Median ms of one call between two synchronizations."""
    times = []
    for _ in range(calls):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def time_behind_sleep(fn: Callable[[], object], calls: int, cycles_per_ms: float,
                      sleep_ms: float) -> tuple[float, float | None]:
    """(host ms per call, device ms per call or None where the host outlasted the sleep)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    torch.cuda._sleep(int(sleep_ms * cycles_per_ms))
    start.record()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    host_ms = (time.perf_counter() - t0) * 1e3
    end.record()
    torch.cuda.synchronize()
    device = start.elapsed_time(end) / calls if host_ms < 0.8 * sleep_ms else None
    return host_ms / calls, device


class Capture:
    """Records the arguments of the compiled loss's kernel launch (one real call)."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher
        self.original = launcher.jit_function
        self.arg_names = self.original.arg_names  # the launcher checks the parameter order
        self.grid: tuple[int, ...] | None = None
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}

    def __getitem__(self, grid: tuple[int, ...]) -> Callable[..., Any]:
        def launch(*args: Any, **kwargs: Any) -> Any:
            self.grid, self.args, self.kwargs = grid, args, kwargs
            return self.original[grid](*args, **kwargs)

        return launch

    def __enter__(self) -> Capture:
        self.saved = dict(self.launcher.compiled)
        self.launcher.compiled.clear()  # so that the call goes through the JIT
        self.launcher.jit_function = self
        return self

    def __exit__(self, *exc: object) -> None:
        self.launcher.jit_function = self.original
        self.launcher.compiled.update(self.saved)


def main(argv: list[str] | None = None) -> int:
    """Print the breakdown table and write the profiler tables to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loss", default="asl", help="a compiled family loss (default asl)")
    parser.add_argument("--shape", default="1024x9605", help="N x C (default 1024x9605)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--calls", type=int, default=50, help="calls per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions")
    parser.add_argument("--out", type=Path, default=None, help="folder for the profiler tables")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_loss_breakdown.py needs a CUDA device", file=sys.stderr)
        return 2
    import triton  # fails loudly where the compiled path has no kernel

    from losses import _triton

    n, c = (int(v) for v in args.shape.lower().split("x"))
    dtype = getattr(torch, args.dtype)
    inputs = make_inputs(n, c, torch.device("cuda"), seed=0, dtype=dtype)
    z = inputs.cosines if args.loss == "aam" else inputs.logits  # aam takes cosines
    y = inputs.targets
    zd = z.detach()
    loss = create_loss(args.loss, compile=True).cuda()

    captured: dict[str, Any] = {}
    original_vg = _triton.value_and_grad

    def spy(z_: Tensor, t_: Tensor, hp: Any, reduction: str, scale: float) -> Any:
        captured.update(hp=hp, reduction=reduction, scale=scale)
        return original_vg(z_, t_, hp, reduction, scale)

    _triton.value_and_grad = spy
    try:
        with Capture(_triton._POLY) as cap:
            loss(z, y).backward()
    finally:
        _triton.value_and_grad = original_vg
    if not captured or cap.grid is None:
        print(f"{args.loss} (compiled) did not run the Triton kernel here", file=sys.stderr)
        return 2
    grid = cap.grid
    names = _triton._poly_kernel.arg_names
    constants = tuple((name, cap.kwargs[name]) for name in names[len(cap.args):])

    def jit_launch() -> None:
        _triton._poly_kernel[grid](*cap.args, **cap.kwargs)

    def library_launch() -> None:
        _triton._POLY(grid[0], zd.device, cap.args, constants)

    out = torch.empty_like(zd)

    def reference_step() -> None:
        z.grad = None
        F.binary_cross_entropy_with_logits(z, y).backward()

    def loss_step() -> None:
        z.grad = None
        loss(z, y).backward()

    def forward_only() -> None:
        loss(z, y)

    def forward_without_call() -> None:
        loss.forward(z, y)  # no nn.Module.__call__ (hooks, dispatch)

    from losses import _kernel

    def function_apply() -> None:
        _kernel._CompiledPolyLossFunction.apply(z, y, captured["hp"], captured["reduction"],
                                                captured["scale"], original_vg)

    def reference_forward() -> None:
        F.binary_cross_entropy_with_logits(z, y)

    def value_and_grad() -> None:
        original_vg(zd, y, captured["hp"], captured["reduction"], captured["scale"])

    def floor() -> None:
        torch.add(zd, y, out=out)

    default_native = _kernel.NATIVE_BACKWARD

    def with_backward(native: bool) -> Callable[[], None]:
        def step() -> None:
            _kernel.NATIVE_BACKWARD = native
            try:
                loss_step()
            finally:
                _kernel.NATIVE_BACKWARD = default_native

        return step

    def original_step() -> None:
        _triton._POLY.direct = False
        try:
            with_backward(False)()
        finally:
            _triton._POLY.direct = True

    # the autograd engine's cost of one node, native against Python, on a tiny tensor
    tiny = torch.zeros(8, device=zd.device, requires_grad=True)
    tiny_g = torch.ones(8, device=zd.device)

    class Identity(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
            return x.sum()

        @staticmethod
        def backward(ctx: Any, grad_out: Tensor) -> Tensor:  # type: ignore[override]
            return tiny_g * grad_out

    def tiny_native() -> None:
        tiny.grad = None
        torch.dot(tiny, tiny_g).backward()

    def tiny_python() -> None:
        tiny.grad = None
        Identity.apply(tiny).backward()

    # backward's scaling grad * grad_out of an [N, C] gradient, in a Python node on the engine's
    # device thread (into a new tensor, as the library does, or in place into the node's own
    # buffer, which AccumulateGrad can then take over) against the same multiplication on the
    # main thread: the profiler put 0.21 ms of self CPU time on that aten::mul on an H100
    # (BENCHMARKS.md "GPU, third lent session"), and an earlier breakdown 0.011 ms of host time
    # on the main thread
    saved_g = torch.full_like(zd, 0.5)
    grad_one = torch.ones((), device=zd.device, dtype=torch.float32)

    class Scaled(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Tensor, in_place: bool) -> Tensor:  # type: ignore[override]
            ctx.g, ctx.in_place = torch.empty_like(x), in_place  # the node's own [N, C] buffer
            return x.new_zeros((), dtype=torch.float32)

        @staticmethod
        def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
            g = ctx.g
            del ctx.g  # the returned tensor's only reference: AccumulateGrad takes it over
            return (g.mul_(grad_out) if ctx.in_place else g * grad_out), None

    def node_scaling(in_place: bool) -> Callable[[], None]:
        def step() -> None:
            z.grad = None
            Scaled.apply(z, in_place).backward()

        return step

    def main_thread_scaling() -> None:
        saved_g * grad_one

    def main_thread_foreach_scaling() -> None:
        # the same product through the multi-tensor kernel the optimizers use, which reads a
        # device scalar without the stride-0 operand that keeps torch.mul off its vectorized
        # kernel (the profile's elementwise_kernel): is backward's last kernel faster?
        torch._foreach_mul([saved_g], grad_one)

    rows: list[tuple[str, Callable[[], object]]] = [
        ("BCE-with-logits fwd+bwd", reference_step),
        (f"{args.loss} (compiled) fwd+bwd, Python autograd.Function", with_backward(False)),
        (f"{args.loss} (compiled) fwd+bwd, native autograd nodes", with_backward(True)),
        (f"{args.loss} (compiled) fwd+bwd, Python autograd.Function, JIT launch", original_step),
        ("BCE-with-logits forward", reference_forward),
        (f"{args.loss} (compiled) forward", forward_only),
        (f"{args.loss} (compiled) forward, no nn.Module.__call__", forward_without_call),
        ("_CompiledPolyLossFunction.apply(value_and_grad) (no module, no checks)",
         function_apply),
        ("value_and_grad (no module, no autograd)", value_and_grad),
        ("kernel, JIT launch", jit_launch),
        ("kernel, losses._triton launcher", library_launch),
        ("tiny [8]: dot(x, 1).backward() (native node)", tiny_native),
        ("tiny [8]: autograd.Function(x).backward() (Python node)", tiny_python),
        ("[N,C] Python node whose backward returns g * grad_out", node_scaling(False)),
        ("[N,C] Python node whose backward returns g.mul_(grad_out)", node_scaling(True)),
        ("g * grad_out on the main thread", main_thread_scaling),
        ("torch._foreach_mul([g], grad_out) on the main thread", main_thread_foreach_scaling),
        ("floor torch.add(z, y, out=g)", floor),
    ]
    for _, fn in rows:  # warm every path (allocator, launchers)
        for _ in range(3):
            fn()
    torch.cuda.synchronize()
    cycles_per_ms = sleep_cycles_per_ms()
    results: dict[str, dict[str, list[float]]] = {name: {"synced": [], "host": [], "device": []}
                                                 for name, _ in rows}
    for rep in range(args.repeats):
        order = rows[rep % len(rows):] + rows[:rep % len(rows)]  # rotated each repetition
        for name, fn in order:
            results[name]["synced"].append(time_synced(fn, args.calls))
            host, device = time_behind_sleep(fn, args.calls, cycles_per_ms, 100.0)
            results[name]["host"].append(host)
            if device is not None:
                results[name]["device"].append(device)

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.3f}" if values else "host-bound"

    print(f"{code_version()}; device {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"Triton {triton.__version__}; {args.loss} compiled at {n}x{c} {args.dtype}; medians of "
          f"{args.repeats} rotated repetitions of {args.calls} calls each")
    print()
    print("| call | synced ms | host ms | device ms |")
    print("|---|---:|---:|---:|")
    for name, _ in rows:
        r = results[name]
        print(f"| {name} | {med(r['synced'])} | {med(r['host'])} | {med(r['device'])} |")
    print(f"\nlosses._triton's launcher launches directly: {_triton._POLY.direct}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for label, fn in (("loss", loss_step), ("bce", reference_step)):
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(20):
                    fn()
                torch.cuda.synchronize()
            table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
            (args.out / f"profile_{label}_{args.dtype}.txt").write_text(table)
            print(f"\nprofile of {label} (20 calls), top rows by self CPU time:")
            print("\n".join(table.splitlines()[:14]))
        # the compiled forward's Python, by function: where its host time goes
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [forward_only() for _ in range(500)])
        torch.cuda.synchronize()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        (args.out / f"cprofile_forward_{args.dtype}.txt").write_text(text.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
