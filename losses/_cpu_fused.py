"""The asymmetric family's closed form as one AVX-512 loop: the compiled path on CPU.

``create_loss(name, compile=True)`` runs this loop for float32 CPU logits and float32 targets
when the CPU has AVX-512 (F and DQ), ATen uses it (not under ``ATEN_CPU_CAPABILITY=avx2``) and
a C++ compiler is found (``$CXX``, else ``c++``, else ``g++``: the compiler inductor needs for
the same losses anyway; ``mllb_core/native.py`` builds, caches and loads it); otherwise, and
for float64, bfloat16 logits, other target dtypes, ``reduction="none"``, exponents that are
not integers in [0, 8] and margins below ``_kernel._MIN_FAST_MARGIN``, it runs inductor's
compilation of the same closed form (``losses._kernel.compiled_poly_caller``).
``MLLB_CPU_KERNEL=0`` in the environment (or ``ENABLED = False``) keeps inductor's everywhere.

Why a loop of its own: inductor's loop of ``_fused_dense`` calls Sleef's exp out of line, and
all 32 vector registers are caller-saved, so the live vectors are spilled and the constants
reloaded around that call; a ``torch.where`` costs a compare and a blend on vectors where
AVX-512 has mask registers. Against eager BCE-with-logits in its fastest state at 4096x1000,
that loop measured 0.42x-0.44x for asl and 0.52x-0.54x for apl_official, against the 0.5x
target of issue 16 (BENCHMARKS.md, session of 2026-11-27 20:07 UTC). Here exp is inline
(``vscalefps`` for 2^n) and every condition is a mask register: 0.76x-0.86x of inductor's
loop's time at 4096x1000. There is no AVX2 version: the same body on 8 lanes (conditions as
blends, 2^n from exponent bits) took 0.86x-1.07x of inductor's AVX2 loop's time at 4096x1000
(one run with both under ``ATEN_CPU_CAPABILITY=avx2`` on this machine; BENCHMARKS.md, session
of 2026-11-27 23:13 UTC): not enough for a second loop to maintain.

Built per set of coefficients (``_constants``, the ``-D`` flags of ``_cpu_kernel.cpp``), like
the Triton kernel's compile-time constants: the branches that do not apply vanish. The shared
library is cached under ``$MLLB_CACHE/cpu_kernels`` (default ``~/.cache/mllb/cpu_kernels``),
named by a hash of the source, the flags and the compiler, written to a
temporary name and renamed into place (concurrent processes never load a half-written file).
A build that fails (or a cache folder that cannot be written, or a library that does not load)
warns once, naming the compiler and its last output lines, and the loss keeps inductor's
loop.

The arithmetic is ``_fused_dense``'s float32 route (``losses/_kernel.py``), in the order of
``losses/_triton.py``'s ``_poly_kernel``. Deviations from ``_fused_dense``:

* exp is Cephes' ``expf`` (two-part ln 2 reduction, degree-5 polynomial, ~1 ulp) instead of
  Sleef's ``expf_u10``; arguments below -104 are taken as -104 (both give 0 there);
* multiply-adds are contracted by the compiler (``-ffp-contract=fast``, as the FMA option
  ``create_loss(compile=True)`` gives inductor);
* the loss is summed in float32 per block of 256 elements, the blocks in double, and the
  reduction's factor applied to that double sum (inductor: its own float32 order);
* the OpenMP threads are ``torch.get_num_threads()`` of the calling thread.

Tests: tests/test_losses/test_cpu_fused.py (against float64 eager; at extreme logits against
the same closed form in torch ops; tails, threads, the fallbacks, the cache).
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import torch
from torch import Tensor

from losses._kernel import (
    _ATANH_P,
    PolyParams,
    closed_form_constants,
    fast_margin,
    grad_scale,
    small_int_exponent,
)
from mllb_core import native

SOURCE = Path(__file__).with_name("_cpu_kernel.cpp")
# GNU mode: contracted multiply-adds (ISO mode turns -ffp-contract off)
FLAGS = ("-O3", "-std=gnu++17", "-mavx512f", "-mavx512dq", "-mfma", "-ffp-contract=fast",
         "-fopenmp", "-fPIC", "-shared")
ENABLED = os.environ.get("MLLB_CPU_KERNEL", "1") != "0"


def supports(hp: PolyParams) -> bool:
    """Whether the loop implements coefficients ``hp``: integer exponents in [0, 8] and a
    margin that takes the one-division form."""
    return (fast_margin(hp.clip) and all(g == 0 or small_int_exponent(g - 1.0) >= 0
                                         for g in (hp.gamma_pos, hp.gamma_neg)))


def available(z: Tensor, targets: Tensor, hp: PolyParams, reduction: str) -> bool:
    """Whether this loop serves logits ``z``, ``targets`` and ``hp`` (else: inductor's)."""
    return (ENABLED and z.device.type == "cpu" and z.dtype == torch.float32
            and targets.dtype == torch.float32 and targets.device.type == "cpu"
            and reduction != "none" and supports(hp) and _cpu_has_avx512())


@functools.cache
def _cpu_has_avx512() -> bool:
    """AVX-512 F and DQ on this CPU (the instructions the loop uses), by torch's own CPU
    feature report (cpuinfo), and ATen dispatching to AVX-512 too
    (``torch.backends.cpu.get_cpu_capability``): ``ATEN_CPU_CAPABILITY=avx2`` (or ``default``),
    which keeps eager kernels and inductor's loops off AVX-512, keeps this loop off as well.
    False where this torch reports neither."""
    report = getattr(torch.cpu, "get_capabilities", None)
    flags = report() if report is not None else {}
    aten = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")()
    return bool(aten == "AVX512" and flags.get("avx512_f") and flags.get("avx512_dq"))


def _float(x: float) -> str:
    """A float32 C++ literal equal to ``float(x)`` rounded once to float32 (hex: exact)."""
    # on the CPU, whatever default device a `with torch.device(...)` context sets
    return f"{float(torch.tensor(x, dtype=torch.float32, device='cpu')).hex()}f"


@functools.cache
def _constants(hp: PolyParams, scale: float) -> tuple[tuple[str, str], ...]:
    """The loop's -D constants for coefficients ``hp`` and logit scale ``scale``: the Triton
    kernel's (``_kernel.closed_form_constants``) plus ``_ATANH_P``, as C++ literals (computed
    once per loss)."""
    values = (*closed_form_constants(hp, scale),
              *((f"P{i}", coef) for i, coef in enumerate(_ATANH_P)))
    return tuple((k, ("true" if v else "false") if isinstance(v, bool)
                  else str(v) if isinstance(v, int) else _float(v)) for k, v in values)


def _compiler() -> str | None:
    """The C++ compiler (``mllb_core.native.compiler``)."""
    return native.compiler()


def cache_dir() -> Path:
    """Where built loops are kept (``mllb_core.native.cache_dir``)."""
    return native.cache_dir()


def _defines(constants: tuple[tuple[str, str], ...]) -> list[str]:
    """The compiler's -D flags for the loop's constants."""
    return [f"-DMLLB_{k}={v}" for k, v in constants]


def library_path(compiler: str, constants: tuple[tuple[str, str], ...]) -> Path:
    """Where the loop for ``constants`` built by ``compiler`` is cached: named by a hash of the
    source, the compiler, its flags and the constants."""
    return native.library_path("poly", SOURCE, compiler, [*FLAGS, *_defines(constants)])


@functools.cache
def _library(constants: tuple[tuple[str, str], ...]) -> ctypes.CDLL | None:
    """The loop built for ``constants`` (cached on disk and per process), None if it cannot
    be built or loaded (warned once per set of constants)."""
    ptr = ctypes.c_void_p
    return native.load(
        "MLLB's fused CPU loss kernel", "poly", SOURCE, [*FLAGS, *_defines(constants)],
        "the compiled losses use inductor's loop instead",
        {"mllb_poly_value_and_grad": (ctypes.c_double, [ptr, ptr, ptr, ctypes.c_int64,
                                                        ctypes.c_float, ctypes.c_int])},
        stacklevel=4)


def kernel_for(z: Tensor, targets: Tensor, hp: PolyParams, reduction: str,
               scale: float) -> ctypes.CDLL | None:
    """The built loop for this call, or None where inductor's loop serves it instead."""
    if not available(z, targets, hp, reduction):
        return None
    return _library(_constants(hp, float(scale)))


def value_and_grad(z: Tensor, targets: Tensor, hp: PolyParams, reduction: str,
                   scale: float) -> tuple[Tensor, Tensor]:
    """The reduced loss (float32) of logits ``scale * z`` [N, C] and its gradient with respect
    to ``z`` [N, C] (float32): the contract of ``_kernel._dense_value_and_grad``, in one pass
    (``kernel_for`` must have returned a loop for these arguments)."""
    lib = _library(_constants(hp, float(scale)))
    assert lib is not None, "value_and_grad without a built loop (check kernel_for first)"
    y = targets.contiguous()  # z comes contiguous (poly_loss)
    grad = torch.empty_like(z)  # [N, C] float32
    reduce_factor = grad_scale(z, reduction)  # 1/(N C), 1/N or 1
    total = lib.mllb_poly_value_and_grad(z.data_ptr(), y.data_ptr(), grad.data_ptr(),
                                         z.numel(), scale * reduce_factor,
                                         torch.get_num_threads())
    return torch.tensor(total * reduce_factor, dtype=torch.float32, device=z.device), grad
