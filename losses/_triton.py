"""The asymmetric family's closed form as one Triton kernel: the compiled path on CUDA.

``create_loss(name, compile=True)`` runs this kernel for CUDA logits (float32, bfloat16 or
float16) when Triton is importable; elsewhere, and for float64, it runs inductor's compilation
of the same closed form (``losses._kernel.compiled_poly_caller``), or on a CPU with AVX-512 for
float32 the AVX-512 loop (``losses/_cpu_fused.py``). One launch reads logits and
targets once, writes the gradient once (in the logits' dtype) and one float32 partial sum per
block, already multiplied by the reduction's factor; ``torch.sum`` adds them (deterministic,
unlike atomics).

Why a kernel of its own on a GPU: inductor's compilation of ``_fused_dense`` measured
1.1x-1.9x eager BCE-with-logits at (1024, 9605) float32 on an H200 (alone, BENCHMARKS.md "GPU"),
and its bfloat16 graph failed to compile in Triton 3.6 there ("PassManager::run failed" in
make_ttgir, for a kernel whose name says pointwise, so the loss's sum ran apart). Where
inductor's time went was not measured. This kernel took the compiled rows from 0.66-0.79 ms
to 0.54-0.58 ms a call there (float32), still 1.0x-1.4x BCE's. A later session took such a
call apart (``benchmarks/gpu_loss_breakdown.py``): the kernel runs at the memory floor (0.047
ms against 0.042 ms on an H100) and the call's kernels take 0.25x-0.29x BCE's device time, but
a call timed between synchronizations is bound by host work. Most of it is backward: the
autograd engine's hand-off to its device thread (0.19-0.24 ms for one 8-element node on an
H100), which eager BCE pays too; the Python node adds 0.01-0.02 ms to it. With the host path
trimmed the compiled call ran at BCE's cost there (BENCHMARKS.md "GPU, third lent session").

The arithmetic is ``_fused_dense``'s float32 route, line for line (``losses/_kernel.py``): one
exp, the log1p's as ``2 atanh(s)`` polynomials (``_ATANH_P``), the quotients from one division,
-log(q + m) as a difference of softplus', the same masks, caps and focusing terms. The
hyper-parameters are compile-time constants (``tl.constexpr``), so each loss specializes its
own kernel and the branches that do not apply vanish. Deviations from ``_fused_dense``: none
in the formula; the loss is summed per block of ``BLOCK`` elements in float32, each block sum
multiplied by the reduction's factor, and the block sums then added in float32 by
``torch.sum`` (``_fused_dense`` leaves the order to inductor), and
margins below ``_MIN_FAST_MARGIN`` (which take the library's log there) are not supported
here: such a loss keeps the inductor path.
Tests: tests/test_losses/test_triton.py (Triton's interpreter on the CPU, against float64
eager; on a GPU the same checks run on CUDA) and tests/test_losses/test_triton_launcher.py
(``_Launcher``'s direct launch, with a fake Triton).
"""

# ruff: noqa: N803  (Triton's convention: compile-time constants are upper case)
from __future__ import annotations

import functools
import warnings
from typing import Any

import torch
from torch import Tensor

from losses._kernel import _ATANH_P, PolyParams, closed_form_constants, fast_margin, grad_scale

try:  # an optional dependency: the CPU-only torch wheels come without it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None
    tl = None

BLOCK = 2048


def available(z: Tensor, hp: PolyParams) -> bool:
    """Whether the Triton kernel serves logits ``z`` (on a device of
    ``_kernel._TRITON_DEVICES``) with coefficients ``hp``."""
    return triton is not None and z.dtype != torch.float64 and fast_margin(hp.clip)


if triton is not None:

    @triton.jit
    def _log1p_from_s(s):
        """log1p(u) from s = u / (2 + u), u in [0, 1]: 2 atanh(s) (``_kernel._log1p_from_s``)."""
        t = s * s
        poly = ((P3 * t + P2) * t + P1) * t + P0
        s2 = s + s
        return s2 + s2 * t * poly

    @triton.jit
    def _power(x, G: tl.constexpr, G_INT: tl.constexpr):
        """x ** G (``_kernel._int_pow``): multiplications for an integer G in [0, 8]."""
        if G_INT >= 0:
            out = tl.full(x.shape, 1.0, tl.float32)
            for _ in tl.static_range(G_INT):
                out = out * x
        else:  # 0 ** G: 0 for G > 0; for G < 0 the weight's derivative there is taken as 0
            out = tl.where(x > 0, tl.exp2(G * tl.log2(tl.maximum(x, 1e-38))), 0.0)
        return out

    @triton.jit
    def _focused(f, d_f, base, d_base, G: tl.constexpr, G1_INT: tl.constexpr,
                 DETACH: tl.constexpr):
        """(base^G f, its derivative) (``_kernel._focused``); G1_INT: G - 1 as an exponent."""
        if G == 0.0:
            loss = f
            grad = d_f
        else:
            w_low = _power(base, G - 1.0, G1_INT)
            w = w_low * base
            loss = w * f
            grad = w * d_f
            if not DETACH:
                grad = grad + G * w_low * d_base * f
        return loss, grad

    @triton.jit
    def _eps_cap(f, d_f, CAP: tl.constexpr):
        """-log x capped at -log eps = CAP, with a zero derivative where capped."""
        return tl.minimum(f, CAP), tl.where(f > CAP, 0.0, d_f)

    @triton.jit
    def _poly_kernel(z_ptr, y_ptr, grad_ptr, loss_ptr, n, factor, loss_factor,
                     SCALE: tl.constexpr, M: tl.constexpr, BIG: tl.constexpr,
                     C_M: tl.constexpr, LOG1P_M: tl.constexpr,
                     GP: tl.constexpr, GP1_INT: tl.constexpr,
                     GN: tl.constexpr, GN1_INT: tl.constexpr,
                     A1: tl.constexpr, A2: tl.constexpr, B1: tl.constexpr, B0: tl.constexpr,
                     SP: tl.constexpr, SN: tl.constexpr, CAP: tl.constexpr,
                     CAP_NEG: tl.constexpr, DETACH: tl.constexpr, PER_ELEMENT: tl.constexpr,
                     BLOCK: tl.constexpr):
        """Loss (per element, or one partial sum per block x ``loss_factor``, the reduction's
        1/(N C) or 1/N) and gradient x ``factor``."""
        pid = tl.program_id(0)
        offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        z = tl.load(z_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        y = tl.load(y_ptr + offs, mask=mask, other=0).to(tl.float32)
        if SCALE != 1.0:
            z = z * SCALE
        e = tl.exp(-tl.abs(z))
        one_e = 1.0 + e
        nonneg = z >= 0
        if M > 0.0:
            # 1 - p_m = q + m = n_r / (1 + e) where p > m; the three quotients from one division
            n_r = tl.where(nonneg, e, 1.0) + M * one_e
            below = z < BIG
            neg = z < 0
            a = tl.where(neg, e * C_M, tl.where(below, C_M, e))
            b = tl.where(below, tl.where(neg, 1.0, e), C_M)
            x0 = one_e * n_r
            x1 = 2.0 + e
            x2 = a + (b + b)
            p1 = x0 * x1
            rest = 1.0 / (p1 * x2)
            r_ab = rest * p1
            rest = rest * x2
            r_two_e = rest * x0
            rec = rest * x1
            inv = n_r * rec
            soft = _log1p_from_s(e * r_two_e)
            log1p_shifted = _log1p_from_s(a * r_ab)
        else:
            rest = 1.0 / (one_e * (2.0 + e))
            r_two_e = rest * one_e
            inv = rest * (2.0 + e)
            soft = _log1p_from_s(e * r_two_e)
        p = tl.where(nonneg, inv, e * inv)
        q = tl.where(nonneg, e * inv, inv)
        neg_log_p = soft + tl.maximum(-z, 0.0)
        neg_log_q = soft + tl.maximum(z, 0.0)
        pq = p * q
        # positive branch: f+ = -log p + a1 q + a2 q^2, weight q^g+
        f_pos = neg_log_p
        d_f_pos = -q
        if CAP > 0.0:
            f_pos, d_f_pos = _eps_cap(f_pos, d_f_pos, CAP)
        if A1 != 0.0 or A2 != 0.0:
            f_pos = f_pos + q * (A1 + A2 * q)
            d_f_pos = d_f_pos - pq * (A1 + 2.0 * A2 * q)
        loss_pos, grad_pos = _focused(f_pos, d_f_pos, q, -pq, GP, GP1_INT, DETACH)
        # negative branch: f- = -log(1 - p_m) + b1 p_m + b0, weight p_m^g-
        if M > 0.0:
            pm = tl.maximum(p - M, 0.0)
            shifted = tl.minimum(tl.maximum(z, 0.0), BIG) + soft - log1p_shifted - LOG1P_M
            if GN > 1.0:  # where p <= m the weight and its derivative vanish: no masks
                d_pm = pq
                d_f_neg = e * rec
                f_neg = shifted
            else:
                above = p > M
                d_pm = tl.where(above, pq, 0.0)
                f_neg = tl.where(above, shifted, 0.0)
                d_f_neg = tl.where(above, e * rec, 0.0)
        else:
            pm = p
            f_neg = neg_log_q
            d_pm = pq
            d_f_neg = p
        if CAP_NEG:
            f_neg, d_f_neg = _eps_cap(f_neg, d_f_neg, CAP)
        if B1 != 0.0:
            f_neg = f_neg + B1 * pm
            d_f_neg = d_f_neg + B1 * d_pm
        if B0 != 0.0:
            f_neg = f_neg + B0
        loss_neg, grad_neg = _focused(f_neg, d_f_neg, pm, d_pm, GN, GN1_INT, DETACH)
        loss = SN * loss_neg + y * (SP * loss_pos - SN * loss_neg)
        grad = SN * grad_neg + y * (SP * grad_pos - SN * grad_neg)
        tl.store(grad_ptr + offs, (grad * factor).to(grad_ptr.dtype.element_ty), mask=mask)
        if PER_ELEMENT:
            tl.store(loss_ptr + offs, loss, mask=mask)
        else:
            tl.store(loss_ptr + pid, tl.sum(tl.where(mask, loss, 0.0), axis=0) * loss_factor)

    # the polynomial's coefficients, as globals the jitted function reads as constants
    P0, P1, P2, P3 = (tl.constexpr(c) for c in _ATANH_P)


class _Launcher:
    """Launches one ``@triton.jit`` kernel, binding Triton's compiled kernel once per
    specialization.

    ``kernel[grid](...)`` runs Triton's ``JITFunction.run`` on every call: it binds the 20-odd
    arguments, builds the specialization key and looks the compiled kernel up. On an H200 that
    took 0.040 ms of host time a launch against 0.022 ms for launching the ``CompiledKernel`` it
    returns directly (``CompiledKernel.run``, what ``JITFunction.run`` ends with), and the
    compiled loss's call is bound by host time there (``benchmarks/gpu_loss_breakdown.py``,
    BENCHMARKS.md "GPU"). So the first call of each specialization goes through the JIT, which
    compiles and returns the ``CompiledKernel``, and later calls launch that one directly.

    The key holds everything ``JITFunction.run`` specializes on: the compile-time constants,
    each tensor's dtype and 16-byte alignment, and each integer's ``== 1``, ``% 16 == 0`` and
    32-bit range, plus the device. ``CompiledKernel.run`` is not a documented API, so the first
    direct launch of each key is checked: the JIT launches the same call into fresh output
    tensors, and unless every output is bitwise equal (the kernel is deterministic: each
    program writes its own elements), the launcher warns, keeps the JIT's outputs and launches
    through the JIT from then on; so it does when a direct launch raises or the parameter order
    differs from the one assumed. Under Triton's interpreter (CPU tests) every call goes
    through the JIT.
    """

    devices: tuple[str, ...] = ("cuda",)  # where a direct launch is tried

    class _Entry:
        """One specialization: its ``CompiledKernel``, the constants' values in parameter
        order (appended to each launch's arguments) and whether its check has run."""

        __slots__ = ("checked", "kernel", "values")

        def __init__(self, kernel: Any, values: tuple[Any, ...]) -> None:
            self.kernel, self.values, self.checked = kernel, values, False

    def __init__(self, jit_function: Any, outputs: tuple[int, ...]) -> None:
        self.jit_function = jit_function
        self.outputs = outputs  # positions in ``args`` of the tensors the kernel writes
        self.compiled: dict[tuple[Any, ...], _Launcher._Entry] = {}
        self.direct = True

    @staticmethod
    def _spec(arg: object) -> object:
        """What Triton specializes a runtime argument on."""
        if isinstance(arg, Tensor):
            return arg.dtype, arg.data_ptr() % 16 == 0
        if isinstance(arg, bool):
            return bool, arg
        if isinstance(arg, int):
            return int, arg == 1, arg % 16 == 0, -(2**31) <= arg < 2**31
        return type(arg)

    @staticmethod
    def _stream(device: torch.device) -> int:
        """The current CUDA stream's handle (what Triton's JIT launches on)."""
        return torch._C._cuda_getCurrentRawStream(device.index)

    @staticmethod
    def _capturing(device: torch.device) -> bool:
        """Whether a CUDA graph is being captured (the check's comparison would synchronize:
        it waits for a launch outside the capture)."""
        return device.type == "cuda" and torch.cuda.is_current_stream_capturing()

    def _jit(self, grid: int, args: tuple[Any, ...],
             constants: tuple[tuple[str, Any], ...]) -> Any:
        """Launch through Triton's JIT; returns its ``CompiledKernel`` (None under the
        interpreter)."""
        return self.jit_function[(grid,)](*args, **dict(constants))

    def _fall_back(self, reason: str) -> None:
        """Launch through the JIT from now on, and say why once."""
        self.direct = False
        warnings.warn(f"losses._triton: {reason}; launching through Triton's JIT from now on",
                      RuntimeWarning, stacklevel=3)

    def __call__(self, grid: int, device: torch.device, args: tuple[Any, ...],
                 constants: tuple[tuple[str, Any], ...]) -> None:
        """Launch ``grid`` programs with runtime ``args`` and compile-time ``constants``
        (name, value) pairs, in the kernel's parameter order."""
        if not (self.direct and device.type in self.devices):
            self._jit(grid, args, constants)
            return
        # one key, hashed once a call: the host time of this path is what a GPU call is
        # bound by (map over a static method: no generator frame per argument)
        key = (device.index, constants, *map(self._spec, args))
        entry = self.compiled.get(key)
        if entry is None:
            compiled = self._jit(grid, args, constants)
            if hasattr(compiled, "result"):  # Triton's asynchronous compilation
                compiled = compiled.result()
            names = tuple(self.jit_function.arg_names)
            if names[len(args):] != tuple(name for name, _ in constants):
                self._fall_back(f"unexpected parameter order {names}")
            self.compiled[key] = self._Entry(compiled, tuple(value for _, value in constants))
            return
        compiled = entry.kernel
        launch_args = (*args, *entry.values)
        try:
            stream = self._stream(device)
            hooks = triton.knobs.runtime
            compiled.run(grid, 1, 1, stream, compiled.function, compiled.packed_metadata,
                         compiled.launch_metadata((grid, 1, 1), stream, *launch_args),
                         hooks.launch_enter_hook, hooks.launch_exit_hook, *launch_args)
        except Exception as error:  # e.g. an API change in Triton
            self._fall_back(f"a direct launch raised {error!r}")
            self._jit(grid, args, constants)
            return
        if not entry.checked and not self._capturing(device):
            entry.checked = True
            fresh = list(args)
            for i in self.outputs:
                fresh[i] = torch.empty_like(args[i])
            self._jit(grid, tuple(fresh), constants)
            if not all(torch.equal(args[i], fresh[i]) for i in self.outputs):
                self._fall_back("a direct launch wrote other values than the JIT's launch")
                for i in self.outputs:
                    args[i].copy_(fresh[i])


@functools.cache
def _constants(hp: PolyParams, scale: float, per_element: bool) -> tuple[tuple[str, Any], ...]:
    """The poly kernel's compile-time constants for coefficients ``hp`` (computed once)."""
    return (*closed_form_constants(hp, scale), ("PER_ELEMENT", per_element), ("BLOCK", BLOCK))


# the poly kernel writes the gradient (argument 2) and the loss (argument 3)
_POLY = _Launcher(_poly_kernel, outputs=(2, 3)) if triton is not None else None


def value_and_grad(z: Tensor, targets: Tensor, hp: PolyParams, reduction: str,
                   scale: float) -> tuple[Tensor, Tensor]:
    """The reduced loss (float32) of logits ``scale * z`` [N, C] and its gradient with respect
    to ``z`` (``z``'s dtype): the contract of ``_kernel._dense_value_and_grad``, in one launch
    (``available(z, hp)`` must hold)."""
    y = targets.contiguous()  # z comes contiguous (poly_loss)
    if y.dtype == torch.bool:
        y = y.view(torch.uint8)  # Triton reads bytes; the value is the same 0/1
    n = z.numel()
    grad = torch.empty_like(z)  # [N, C] in z's dtype
    per_element = reduction == "none"
    blocks = (n + BLOCK - 1) // BLOCK  # triton.cdiv, without its JIT wrapper's host time
    loss = torch.empty(z.shape if per_element else (blocks,), dtype=torch.float32,
                       device=z.device)  # [N, C] or [blocks]
    reduce_factor = grad_scale(z, reduction)  # 1/(N C), 1/N or 1
    _POLY(blocks, z.device, (z, y, grad, loss, n, scale * reduce_factor, reduce_factor),
          _constants(hp, float(scale), per_element))
    return loss if per_element else loss.sum(), grad  # the block sums come scaled
