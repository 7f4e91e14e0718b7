"""One fused kernel for the whole "asymmetric polynomial" family (focal, Poly-1, ASL, APL).

Every loss of the family is, per element with p = sigmoid(z), q = 1 - p, p_m = max(p - m, 0)::

    L+ = c+ * q^g+   * [ -log p       + a1 q + a2 q^2 ]
    L- = c- * p_m^g- * [ -log(1 - p_m) + b1 p_m + b0   ]
    L  = y L+ + (1 - y) L-

focal: a = b = 0, m = 0, g+ = g- = gamma, c+/c- = alpha/(1 - alpha); Poly-1: a1 = b1 = epsilon;
ASL: a = b = 0; APL: a1 = alpha1 - 1, a2 = alpha2 - 1/2, b1 = beta1 - 1; the official APL code:
a1 = -epsilon_pos, a2 = -epsilon_pos_pow / 2, b1 = epsilon_neg, b0 = -epsilon_neg.

Why a custom ``autograd.Function``: composing these formulas from eager ops saves a dozen [N, C]
tensors for backward and runs 7-12x slower than ``binary_cross_entropy_with_logits`` (that is what
the official ASL/APL code does). Here the closed-form gradient is computed in the forward pass
(only when a gradient is needed), with the reduction's factor already in it, and is the only
tensor saved; backward hands it on (times ``grad_out`` unless that is the 1 of
``loss.backward()``). With binary targets on CPU the positive branch is evaluated only at the
(few) positive entries.

Speed on CPU comes from the number of passes over [N, C] memory and of fresh [N, C] allocations
(above 32 MB each is a new mmap, page-faulted in on first touch): buffers are reused in place,
temporaries that never leave a call live in memory kept from the previous call
(``losses/_workspace.py``), constant factors ride on products computed anyway, and the sparse
positives of float32 targets are found by one C++ pass (``losses/_positives_kernel.cpp``; other
dtypes, or no compiler: a strided scan instead of ATen's scalar ``nonzero``)
(``benchmarks/loss_speed.py``).

Numerics: logs come from ``logsigmoid`` (never ``log(sigmoid(z).clamp(eps))``); ``1 - p_m`` is at
least ``m``; when ``m == 0`` the negative gradient uses the simplified form p^(g-+1)(1 + b1 q) so
that nothing is divided by q, which underflows to 0 for large logits.

Compiled (``create_loss(..., compile=True)``): ``compiled_poly_caller`` compiles only the dense
closed form (``_fused_dense``: one exp; in float32 the log1p's are inlined arithmetic and every
quotient comes from one division), inside an eager ``autograd.Function`` whose backward hands
the gradient on like the eager kernel's. The same closed form also exists as two hand-written
kernels that take its place where they apply: on CUDA the Triton kernel (``losses/_triton.py``),
on a CPU with AVX-512 for float32 the AVX-512 loop (``losses/_cpu_fused.py``), both tested
against float64 eager.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import types
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from losses._workspace import scratch
from mllb_core import native
from mllb_core.served import note as note_served

REDUCTIONS = ("mean", "sum", "batchmean", "none")

# Binary targets with at most this fraction of positives take the sparse-positive path on CPU.
_SPARSE_MAX_POSITIVE_FRACTION = 0.25


@dataclass(frozen=True)
class PolyParams:
    """Resolved coefficients of the family formula (see the module docstring)."""

    gamma_pos: float = 0.0
    gamma_neg: float = 0.0
    clip: float = 0.0
    a1: float = 0.0
    a2: float = 0.0
    b1: float = 0.0
    b0: float = 0.0
    scale_pos: float = 1.0
    scale_neg: float = 1.0
    eps: float = 0.0
    detach_focal_weight: bool = False


def cached_params(build: Callable[..., PolyParams]) -> Callable[..., PolyParams]:
    """``build`` (validates hyper-parameters, raising the loss's message, and returns their
    ``PolyParams``) run once per set of values: a family loss calls it on every call, and on a
    GPU the call is bound by host time (BENCHMARKS.md "GPU"), and the checks and the
    dataclass took about a quarter of a compiled asl forward's Python (cProfile, with the
    kernel replaced by a stub, on a 2-vCPU machine). Keyed by value and type
    (``typed``: 4 and 4.0 stay apart), 256 sets at most (``asl_adaptive`` moves gamma_neg every
    step); invalid values raise on every call (an exception is not cached), and a value that
    cannot be hashed skips the cache, so ``build``'s own message still names it."""
    cached = functools.lru_cache(maxsize=256, typed=True)(build)

    @functools.wraps(build)
    def params(*args: object) -> PolyParams:
        try:
            return cached(*args)
        except TypeError:  # an unhashable value (or build's own TypeError, which it raises again)
            return build(*args)

    return params


def _pow(x: Tensor, g: float, with_lower: bool = False, out: Tensor | None = None,
         lower_out: Tensor | None = None) -> tuple[Tensor | None, Tensor | None]:
    """(x**g, x**(g-1) if ``with_lower``), None standing for a power of one (g = 0 or 1), in
    ``out`` and ``lower_out`` where given (and usable), else in new tensors (:func:`_power`,
    :func:`_lower_power`)."""
    if g == 0:
        return None, None
    if g == 1:
        return x, None
    if not with_lower:
        return _power(x, g, scratch=False, out=out), None
    lower = _lower_power(x, g, lower_out)
    return torch.mul(lower, x, out=out), lower


def _scaled_mul_(out: Tensor, other: Tensor, value: float) -> Tensor:
    """``out *= value * other`` in ONE pass over memory.

    A constant factor (the loss weight, the reduction's 1/N) would otherwise cost a pass of its
    own; ``addcmul`` of a broadcast 0-d zero folds it into a product that is computed anyway,
    at the cost of a plain ``mul_``.
    """
    if value == 1:
        return out.mul_(other)
    return torch.addcmul(out.new_zeros(()), out, other, value=value, out=out)


def _neg_branch(
    z: Tensor, p: Tensor, hp: PolyParams, need_grad: bool, gscale: float, p_scratch: bool,
    loss_scratch: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Loss c- L- and ``gscale`` * c- * dL-/dz for every entry of ``z`` (treated as negatives).

    Shapes as ``z``. ``gscale``: the reduction's factor on the gradient (1/(N*C) for "mean"),
    folded in here so that backward has nothing to do. ``p_scratch``: ``p`` (= sigmoid(z)) is
    not needed afterwards and may be overwritten. ``loss_scratch``: the returned loss is reduced
    inside the call, so it may live in reused memory (``losses/_workspace.py``). Ordered so that
    buffers are reused in place:
    on CPU a fresh [N, C] allocation costs more than the arithmetic done in it (above 32 MB
    every one is a new mmap, page-faulted in on first touch), and each op is a pass over memory.
    """
    m, g = hp.clip, hp.gamma_neg
    through_weight = need_grad and not hp.detach_focal_weight and g != 0
    if through_weight and (g != 1 or not hp.b0) and (m >= hp.eps if m > 0 else hp.eps == 0):
        if m > 0:
            return _neg_branch_margin(p, hp, gscale, p_scratch, loss_scratch)
        return _neg_branch_focused(z, p, hp, gscale, p_scratch, loss_scratch)
    # the temporaries live in reused memory (losses/_workspace.py): p_m in p's when p is
    # scratch (dp/dz is taken from p first), 1 - p_m (which becomes the loss) when the loss is
    # reduced in the call, the weight and dp/dz always; 1 - p_m as -p_m + 1: the same float
    dpm = (torch.addcmul(p, p, p, value=-1.0, out=scratch("dpm", p))  # [N, C] p (1 - p)
           if need_grad else None)  # = dp/dz
    if m > 0:
        pm = (p.sub_(m) if p_scratch else torch.sub(p, m)).clamp_(min=0)  # [N, C]
        # 1 - p_m >= m > 0: its log is safe
        r = (torch.neg(pm, out=scratch("loss", pm)).add_(1.0) if loss_scratch  # [N, C]
             else torch.rsub(pm, 1))
    else:
        pm, r = p, None
    powers = ((scratch("w", pm), scratch("w_lower", pm) if through_weight else None)
              if g not in (0, 1) else (None, None))
    w, w_lower = _pow(pm, g, through_weight, *powers)
    if dpm is not None:
        if r is not None:
            # p_m = max(p - m, 0) is flat below the margin. The weight p_m^g (g > 0) already
            # zeroes those entries, except through g p_m^(g-1) f with g == 1 and f = b0 != 0.
            if g == 0 or (through_weight and g == 1 and hp.b0):
                dpm.masked_fill_(pm == 0, 0.0)
            dlog = dpm / r  # d(-log(1 - p_m))/dz
        else:
            # d(-log(1 - p))/dz = p exactly; avoids p q / q with q underflowing to 0
            dlog = p.clone()
    # log(1 - p_m); without a margin through logsigmoid, as 1 - p underflows for large logits
    log_r = r.log_() if r is not None else F.logsigmoid(torch.neg(z, out=scratch("negz", z)))
    if hp.eps > 0:  # the official code's log(max(., eps)): same value, zero gradient below eps
        log_eps = math.log(hp.eps)
        if need_grad:
            dlog.masked_fill_(log_r < log_eps, 0.0)
        log_r.clamp_(min=log_eps)
    f = log_r.neg_()
    if hp.b1:
        f.add_(pm, alpha=hp.b1)
    if hp.b0:
        f.add_(hp.b0)
    grad = None
    if need_grad:
        if hp.b1:
            dlog.add_(dpm, alpha=hp.b1)
        if through_weight:
            # w dlog + f dw/dz = p_m^(g-1) [p_m dlog + g f dpm]
            grad = dlog.mul_(pm).add_(dpm.mul_(f), alpha=g)
            if w_lower is not None:
                grad.mul_(w_lower)
        else:
            grad = dlog.mul_(w) if w is not None else dlog
        if hp.scale_neg * gscale != 1:
            grad.mul_(hp.scale_neg * gscale)
    loss = f.mul_(w) if w is not None else f
    if hp.scale_neg != 1:
        loss.mul_(hp.scale_neg)
    return loss, grad


def _lower_power(pm: Tensor, g: float, buf: Tensor | None = None) -> Tensor:
    """p_m^(g-1) for g != 1, by multiplications for an integer g of 3 to 8 (in ``buf``'s
    memory when given, else in a new tensor).

    p_m = 0 below the margin: there 0^(g-1) for g < 1 is inf, and the derivative is taken as 0.
    """
    k = g - 1
    if k == 1:
        return pm
    if k == int(k) and 2 <= k <= 7:
        buf = torch.mul(pm, pm, out=buf) if buf is not None else pm * pm
        for _ in range(int(k) - 2):
            buf.mul_(pm)
        return buf
    lower = pm.pow(k)
    if k < 0:
        lower.masked_fill_(pm == 0, 0.0)
    return lower


def _neg_branch_margin(p: Tensor, hp: PolyParams, gscale: float, p_scratch: bool,
                       loss_scratch: bool = False) -> tuple[Tensor, Tensor]:
    """:func:`_neg_branch` with a margin m > 0 and the gradient through the focusing weight.

    With f = -log(1 - p_m) + b1 p_m + b0 and dp_m = p (1 - p)::

        L- = p_m^g f,   dL-/dz = g p_m^(g-1) dp_m [f + (p_m / (1 - p_m) + b1 p_m) / g].

    Four [N, C] allocations (p, dp_m, 1 - p_m, log(1 - p_m)) and every constant folded into a
    product. The factor dp_m is p (1 - p) even below the margin, where p_m is flat: there p_m = 0,
    so p_m^(g-1) = 0 for g > 1, and for g = 1 without b0 (checked by the caller) the bracket is
    0. The eps clamp of the official code never acts: 1 - p_m >= m >= eps (checked by the caller).
    """
    m, g = hp.clip, hp.gamma_neg
    dpm = torch.addcmul(p, p, p, value=-1.0, out=scratch("dpm", p))  # [N, C] dp/dz = p (1 - p)
    pm = (p.sub_(m) if p_scratch else torch.sub(p, m)).clamp_(min=0)  # [N, C] p_m
    r = torch.rsub(pm, 1)  # [N, C] 1 - p_m >= m > 0; becomes the gradient
    nf = torch.log(r, out=scratch("loss", r) if loss_scratch else None)  # [N, C] -f
    if hp.b1:
        nf.sub_(pm, alpha=hp.b1)
    if hp.b0:
        nf.sub_(hp.b0)
    # minus the bracket, in r's memory (r is not needed after this)
    t = torch.addcdiv(nf, pm, r, value=-1.0 / g, out=r)
    if hp.b1:
        t.sub_(pm, alpha=hp.b1 / g)
    factor = -g * hp.scale_neg * gscale  # the minus undoes the bracket's sign
    if g == 1:
        _scaled_mul_(t, dpm, factor)
    else:
        t.mul_(dpm)
        lower = _lower_power(pm, g, dpm)  # dp_m's memory is free now
        _scaled_mul_(t, lower, factor)
        nf.mul_(lower)
    return _scaled_mul_(nf, pm, -hp.scale_neg), t


def _power(x: Tensor, g: float, scratch: bool, out: Tensor | None = None) -> Tensor:
    """``x ** g`` by multiplications for small integers; in ``x``'s memory when ``scratch``,
    else in ``out`` (None: a new tensor; the same ops either way, so the same bits)."""
    if g == 1:
        return x
    if g in (2, 4):
        w = x.square_() if scratch else torch.mul(x, x, out=out)
        return w.square_() if g == 4 else w
    if g == int(g) and 3 <= g <= 8:
        w = torch.mul(x, x, out=out)
        for _ in range(int(g) - 2):
            w.mul_(x)
        return w
    return x.pow_(g) if scratch else torch.pow(x, g, out=out)


def _neg_branch_focused(z: Tensor, p: Tensor, hp: PolyParams, gscale: float, p_scratch: bool,
                        loss_scratch: bool = False) -> tuple[Tensor, Tensor]:
    """:func:`_neg_branch` without a margin (p_m = p) and with the gradient through the weight.

    With q = 1 - p, f = -log q + b1 p + b0 and dp/dz = p q (so that d(-log q)/dz = p)::

        dL-/dz = g p^(g-1) p q f + p^g (p + b1 p q) = g p^g [p / g + q (f + b1 p / g)],

    which divides by nothing (q underflows to 0 for large logits). Three [N, C] allocations
    besides ``p``; the constants ride on the last products.
    """
    g = hp.gamma_neg
    # q = sigmoid(-z) keeps its relative precision where 1 - p rounds; sigmoid then log costs
    # a third of logsigmoid on CPU
    q = torch.neg(z, out=scratch("q", z)).sigmoid_()  # [N, C]
    nf = torch.log(q, out=scratch("loss", q) if loss_scratch else None)  # [N, C] -f
    # past z ~ 88 q underflows to 0 and its log to -inf, while -log sigmoid(-z) = z to float
    # precision; on CPU one reduction skips the fix where no logit is that large (the usual case)
    if z.device.type != "cpu" or float(z.max()) > 80:
        nf = torch.where(z > 80, -z, nf)
    if hp.b1:
        nf.sub_(p, alpha=hp.b1)
    if hp.b0:
        nf.sub_(hp.b0)
    t = torch.mul(nf, q)  # [N, C] becomes minus the bracket: q (-f - b1 p / g) - p / g
    if hp.b1:
        t.addcmul_(p, q, value=-hp.b1 / g)
    t.sub_(p, alpha=1.0 / g)
    w = _power(p, g, p_scratch)  # p^g; p is not needed after this
    _scaled_mul_(t, w, -g * hp.scale_neg * gscale)
    return _scaled_mul_(nf, w, -hp.scale_neg), t


def _pos_branch(
    z: Tensor, p: Tensor, q: Tensor, hp: PolyParams, need_grad: bool, gscale: float
) -> tuple[Tensor, Tensor | None]:
    """Loss c+ L+ and ``gscale`` * c+ * dL+/dz for every entry of ``z`` (treated as positives)."""
    g = hp.gamma_pos
    log_p = F.logsigmoid(z)
    clamped = None
    if hp.eps > 0:
        log_eps = math.log(hp.eps)
        clamped = log_p < log_eps
        log_p = log_p.clamp(min=log_eps)
    f = log_p.neg_()
    if hp.a1 or hp.a2:
        # a1 q + a2 q^2 = q (a1 + a2 q)
        f.add_(q * (q * hp.a2 + hp.a1))
    w, _ = _pow(q, g)
    loss = f * w if w is not None else f.clone()
    if hp.scale_pos != 1:
        loss.mul_(hp.scale_pos)
    if not need_grad:
        return loss, None

    # df/dz = -q [1{not clamped} + a1 p + 2 a2 p q]
    inner = torch.ones_like(q) if clamped is None else (~clamped).to(q.dtype)
    if hp.a1 or hp.a2:
        inner.add_(p * (q * (2 * hp.a2) + hp.a1))
    grad = inner.mul_(q).neg_()
    if w is not None:
        grad.mul_(w)
    if not hp.detach_focal_weight and g != 0:
        # d(q^g)/dz = -g p q^g
        dw = p * w if w is not None else p.clone()
        grad.sub_(dw.mul_(f), alpha=g)
    if hp.scale_pos * gscale != 1:
        grad.mul_(hp.scale_pos * gscale)
    return loss, grad


# _flat_nonzero: below this many elements one nonzero() is cheaper than its four steps; the
# strided scan's number of rows (each column of the [rows, n / rows] view is one candidate set)
_STRIDED_NONZERO_MIN = 1 << 15
_STRIDED_NONZERO_ROWS = 16


def _flat_nonzero(flat: Tensor) -> Tensor:
    """Positions of the nonzero entries of the 1-D ``flat`` (NaN counts as nonzero, -0.0 does not,
    as in ``nonzero``), in ascending order, as ``nonzero``'s: [P] int64.

    ATen's CPU ``nonzero`` took 0.23 ms over 256,000 sparse binary floats on the AMD EPYC machine
    of BENCHMARKS.md ("Session of 2026-11-28 03:22 UTC"), where their ``sum`` takes 0.011 ms.
    For sparse targets it is faster to view ``flat`` as [16, n / 16], reduce over the 16 rows
    (vectorized along the contiguous columns) to find the columns holding a nonzero entry, and
    run ``nonzero`` only on those columns: about 0.13 ms at that size.
    """
    n = flat.numel()
    if n < _STRIDED_NONZERO_MIN:
        return flat.nonzero().view(-1)
    b = _STRIDED_NONZERO_ROWS
    k = n // b
    rows = flat.narrow(0, 0, b * k).view(b, k)  # rows[i, j] = flat[i k + j]
    if rows.dtype == torch.bool:
        rows = rows.view(torch.uint8)
    # a column holds a nonzero entry iff its largest entry or its smallest is nonzero
    # (a sum could cancel); NaN propagates through both reductions and maximum
    col = torch.maximum(rows.amax(0), rows.amin(0).neg_())  # [k]
    hit = col.nonzero().view(-1)  # [H] the columns to look in
    i, h = rows.index_select(1, hit).nonzero(as_tuple=True)  # [P] row, position in hit
    found = hit.take(h).add_(i * k)
    if b * k < n:
        found = torch.cat([found, flat.narrow(0, b * k, n - b * k).nonzero().view(-1).add_(b * k)])
    return found


# The positive scan in C++ (``_positives_kernel.cpp``); ``MLLB_POSITIVES_KERNEL=0`` in the
# environment, or False here, keeps the torch ops of ``_flat_nonzero``
POSITIVES_KERNEL = os.environ.get("MLLB_POSITIVES_KERNEL", "1") != "0"
_POSITIVES_SOURCE = Path(__file__).with_name("_positives_kernel.cpp")
_POSITIVES_FLAGS = ("-O3", "-std=gnu++17", "-fopenmp", "-fPIC", "-shared")
_POSITIVES_NO_MEMORY = -3  # the kernel could not store the positions: the torch ops answer


@functools.cache
def _positives_library() -> ctypes.CDLL | None:
    """The positive scan (``_positives_kernel.cpp``), built once and cached
    (``mllb_core.native``); None (warned once) where it cannot be built or loaded."""
    ptr = ctypes.c_void_p
    return native.load(
        "MLLB's positive-target scan", "positives", _POSITIVES_SOURCE, _POSITIVES_FLAGS,
        "sparse targets are found with torch ops instead",
        {"mllb_binary_positives": (ctypes.c_int64, [ptr, ctypes.c_int64, ctypes.c_int64,
                                                    ctypes.c_int]),
         "mllb_binary_positives_take": (None, [ptr])},
        stacklevel=3)


def _binary_positive_index(targets: Tensor) -> Tensor | None:
    """Row-major positions [P] of the positives, ascending, when targets are binary and sparse
    enough (CPU only; at most a quarter of the entries positive), else None.

    float32 targets (what the tasks hand the loss) go through the C++ scan of
    ``_positives_kernel.cpp``: one pass instead of about ten ATen calls (BENCHMARKS.md,
    "Session of 2026-11-28 09:40 UTC"). Both paths return the positions in ascending order,
    and that order matters: an elementwise ATen op over the positives' values rounds an
    element of its vectorized body and one of its scalar tail differently, so a permuted index
    could move the positive branch's last bits. Other dtypes, ``POSITIVES_KERNEL`` off, or no
    compiler: the torch ops.
    """
    if targets.device.type != "cpu":
        return None  # nonzero() would synchronize an accelerator on every call
    flat = targets.reshape(-1)  # [N * C]
    # k > n / 4 exactly when k > n // 4, for a whole number k
    cap = int(_SPARSE_MAX_POSITIVE_FRACTION * flat.numel())
    if (flat.dtype == torch.float32 and POSITIVES_KERNEL
            and (lib := _positives_library()) is not None):
        flat = flat.contiguous()  # a strided view (e.g. one column of [N, C]) is copied
        k = lib.mllb_binary_positives(flat.data_ptr(), flat.numel(), cap,
                                      torch.get_num_threads())
        if k >= 0:
            # [k] on the CPU, never a default device set by `with torch.device(...)`: the
            # kernel writes through its pointer
            found = torch.empty(k, dtype=torch.int64, device=flat.device)
            if k:
                lib.mllb_binary_positives_take(found.data_ptr())
            return found
        if k != _POSITIVES_NO_MEMORY:
            return None  # more than a quarter positive, or not binary
    idx = _flat_nonzero(flat)
    if idx.numel() > cap:
        return None
    if targets.dtype != torch.bool and not bool((flat.take(idx) == 1).all()):
        return None  # soft targets: the dense formula handles them
    return idx


def _elementwise(
    z: Tensor, targets: Tensor, hp: PolyParams, need_grad: bool, gscale: float = 1.0,
    loss_scratch: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Per-element loss and ``gscale`` * gradient of the family formula, both [N, C] in ``z``'s
    dtype (``gscale``: the reduction's factor, e.g. 1/(N*C) for "mean"). ``loss_scratch``: the
    caller reduces the loss before it returns, so it may live in reused memory (CPU, sparse
    positives; ``losses/_workspace.py``). Call with gradient recording off (reused memory is
    written through ``out=``)."""
    p = torch.sigmoid(z, out=scratch("p", z))  # [N, C] never leaves the call
    idx = _binary_positive_index(targets)
    if idx is not None:
        loss, grad = _neg_branch(z, p, hp, need_grad, gscale, p_scratch=True,
                                 loss_scratch=loss_scratch)
        if idx.numel():
            z_pos = z.take(idx)  # [P] (take and put_ index the row-major flattening)
            loss_pos, grad_pos = _pos_branch(
                z_pos, torch.sigmoid(z_pos), torch.sigmoid(-z_pos), hp, need_grad, gscale
            )
            loss.put_(idx, loss_pos)
            if grad is not None:
                grad.put_(idx, grad_pos)
        return loss, grad

    y = targets.to(z.dtype)
    loss_neg, grad_neg = _neg_branch(z, p, hp, need_grad, gscale, p_scratch=False)
    loss_pos, grad_pos = _pos_branch(z, p, torch.rsub(p, 1), hp, need_grad, gscale)
    # y L+ + (1 - y) L- = L- + y (L+ - L-)
    loss = loss_neg.add_(loss_pos.sub_(loss_neg).mul_(y))
    grad = None
    if grad_neg is not None and grad_pos is not None:
        grad = grad_neg.add_(grad_pos.sub_(grad_neg).mul_(y))
    return loss, grad


def reduce(loss: Tensor, reduction: str) -> Tensor:
    """Reduce an elementwise loss [N, C]: mean over N*C, sum, sum / N ("batchmean") or none."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "batchmean":
        return loss.sum() / loss.shape[0]
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def grad_scale(z: Tensor, reduction: str) -> float:
    """The factor a reduction puts on the elementwise gradient: 1/(N*C), 1/N or 1."""
    if reduction == "mean":
        return 1.0 / z.numel()
    return 1.0 / z.shape[0] if reduction == "batchmean" else 1.0


def times_grad_out(grad: Tensor, grad_out: Tensor) -> Tensor:
    """``grad * grad_out`` for a backward whose forward saved the finished gradient ``grad``.

    ``loss.backward()`` sends the CPU scalar 1: then ``grad`` itself is returned, which saves a
    pass and a new [N, C] tensor (above 32 MB, a fresh mmap). No result can change: AccumulateGrad
    copies it while the graph is retained (the saved tensor still holds a reference) and
    otherwise takes it over, and if a caller modifies the returned tensor in place and
    backpropagates the retained graph again, autograd's version check on the saved tensor
    fails that call loudly (tests/test_losses/test_backward_handoff.py). Checked on CPU only:
    reading an accelerator's scalar would synchronize.
    """
    if grad_out.device.type == "cpu" and grad_out.numel() == 1 and float(grad_out) == 1.0:
        return grad
    return grad * grad_out


@once_differentiable
def _saved_times_grad_out_once(ctx: Any, grad_out: Tensor) -> Tensor:
    """:func:`saved_times_grad_out` under ``create_graph=True``: differentiating it raises."""
    (grad,) = ctx.saved_tensors
    return times_grad_out(grad, grad_out)


def saved_times_grad_out(ctx: Any, grad_out: Tensor) -> Tensor:
    """The backward of a Function whose forward saved its finished gradient (the one saved
    tensor): that gradient times ``grad_out`` (:func:`times_grad_out`).

    ``once_differentiable`` only where it acts (``create_graph=True``: grad mode is on inside
    backward): its wrapper costs about 6 us of host time a call (a GPU's compiled call is bound
    by host time, BENCHMARKS.md "GPU"; an eager CPU call at (4, 8) took 187-191 us against
    192-196 us with it).
    """
    if torch.is_grad_enabled():
        return _saved_times_grad_out_once(ctx, grad_out)
    (grad,) = ctx.saved_tensors
    return times_grad_out(grad, grad_out)


def _without_autocast(device_type: str) -> contextlib.AbstractContextManager[object]:
    """A context with autocast off on ``device_type``: none at all when it is off already,
    because entering autocast's context costs host time that a GPU call is bound by."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


class _PolyLossFunction(torch.autograd.Function):
    """Forward computes value and the finished gradient; backward hands it on (times grad_out)."""

    @staticmethod
    def forward(ctx, z: Tensor, targets: Tensor, hp: PolyParams, reduction: str) -> Tensor:  # type: ignore[override]
        need_grad = ctx.needs_input_grad[0]
        with _without_autocast(z.device.type):
            loss, grad = _elementwise(z, targets, hp, need_grad, grad_scale(z, reduction),
                                      loss_scratch=reduction != "none")
            out = reduce(loss, reduction)
        if need_grad:
            ctx.save_for_backward(grad)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        return saved_times_grad_out(ctx, grad_out), None, None, None


def small_int_exponent(g: float) -> int:
    """``g`` as an int when it is one in [0, 8] (then ``x ** g`` is multiplications), else -1."""
    return int(g) if g == int(g) and 0 <= g <= 8 else -1


def _int_pow(x: Tensor, g: float) -> Tensor:
    """``x ** g``: multiplications for a small integer ``g`` (a compiled ``pow`` is exp + log)."""
    k = small_int_exponent(g)
    if k >= 0:
        out = torch.ones_like(x) if k == 0 else x
        for _ in range(k - 1):
            out = out * x
        return out
    if g < 0:  # x^(g - 1) of a weight with g < 1: 0^(g-1) is inf, the derivative there is 0
        return torch.where(x > 0, x.pow(g), 0.0)
    return x.pow(g)


def _eps_cap(f: Tensor, d_f: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """``-log x`` capped at ``-log eps`` (the official log(max(x, eps))): constant, so with a
    zero derivative, where capped. ``f``, ``d_f``: the uncapped term and its derivative."""
    if eps <= 0:
        return f, d_f
    cap = -math.log(eps)
    return f.clamp(max=cap), torch.where(f > cap, 0.0, d_f)


def _focused(f: Tensor, d_f: Tensor, base: Tensor, d_base: Tensor, g: float,
             detach: bool) -> tuple[Tensor, Tensor]:
    """Loss ``base^g * f`` and its derivative, ``d_base`` being d(base)/dz (g = 0: ``f``);
    ``detach``: the weight counts as a constant."""
    if not g:
        return f, d_f
    w_low = _int_pow(base, g - 1) if g != 1 else None
    w = w_low * base if w_low is not None else base
    grad = w * d_f
    if not detach:  # d(base^g)/dz = g base^(g-1) d_base
        grad = grad + g * (w_low * d_base if w_low is not None else d_base) * f
    return w * f, grad


# (atanh(sqrt t) / sqrt t - 1) / t on t in [0, 1/9]: Chebyshev least squares, degree 3
_ATANH_P = (0.3333331982065897, 0.20003836560969399, 0.14116953026768755, 0.13433926518773434)
# below this margin the one-division form's product (1 + e) n_r (2 + e) (a + 2 b) >= 4 m^2
# could underflow float32; such a margin takes the library's log instead
_MIN_FAST_MARGIN = 1e-9


def fast_margin(m: float) -> bool:
    """Whether margin ``m`` takes the one-division arithmetic form (float32 compiled, Triton)."""
    return m == 0 or m >= _MIN_FAST_MARGIN


def _log1p_from_s(s: Tensor) -> Tensor:
    """log1p(u) given s = u / (2 + u) for u in [0, 1] (s in [0, 1/3]): 2 atanh(s).

    Arithmetic that inductor inlines into its loop, unlike ``torch.log1p``/``torch.log``: its
    CPU loop calls Sleef per vector, and in the family's fused loop each call cost about as
    much as the rest of the loop (the live vectors are spilled around a call); with two logs,
    asl compiled measured 0.8x eager BCE at 4096x1000. 2 atanh(s) = 2 s (1 + t P(t)),
    t = s^2, P of degree 3 (``_ATANH_P``): no range reduction and no cancellation, so tiny u
    keep their relative precision. Relative error below 2e-7 on every normal float32 u in
    [0, 1] tested (tests/test_losses/test_compile.py).
    """
    t = s * s
    poly = ((_ATANH_P[3] * t + _ATANH_P[2]) * t + _ATANH_P[1]) * t + _ATANH_P[0]
    s2 = s + s
    return s2 + s2 * t * poly


def _reciprocals(*xs: Tensor) -> list[Tensor]:
    """1 / x for every x from ONE division (Montgomery's batch inversion: the reciprocal of the
    product, times the other factors). A division costs several multiplications in a
    vectorized loop. Each result is within ~3 len(xs) ulp; the caller keeps the product
    inside float range."""
    prefix = [xs[0]]
    for x in xs[1:]:
        prefix.append(prefix[-1] * x)
    rest = 1.0 / prefix[-1]  # 1 / (x0 ... xk) for the current k
    out: list[Tensor] = [rest] * len(xs)
    for k in range(len(xs) - 1, 0, -1):
        out[k] = rest * prefix[k - 1]
        rest = rest * xs[k]
    out[0] = rest
    return out


def _margin_shift(m: float) -> float:
    """L = log((1 + m) / m): q + m = (1 + m)(1 + e^(z - L)) / (1 + e^z) (``_neg_log_shifted_q``)."""
    return math.log1p(m) - math.log(m)


def closed_form_constants(hp: PolyParams, scale: float
                          ) -> tuple[tuple[str, float | int | bool], ...]:
    """The constants the hand-written kernels of ``_fused_dense`` specialize on, in the Triton
    kernel's parameter order (``losses/_triton.py``'s ``constexpr``, ``losses/_cpu_fused.py``'s
    ``-D`` flags): the logit scale, the margin m with L = log((1 + m) / m), m / (1 + m) and
    log(1 + m), each exponent with its ``small_int_exponent`` minus one (0 for a zero
    exponent), the polynomial and weight coefficients, the eps cap -log eps (0: none), whether
    the negative branch needs the cap too, and whether the weights are detached."""
    m, eps = hp.clip, hp.eps
    return (
        ("SCALE", float(scale)), ("M", float(m)), ("BIG", _margin_shift(m) if m > 0 else 0.0),
        ("C_M", m / (1.0 + m) if m > 0 else 0.0), ("LOG1P_M", math.log1p(m)),
        ("GP", float(hp.gamma_pos)),
        ("GP1_INT", small_int_exponent(hp.gamma_pos - 1.0) if hp.gamma_pos else 0),
        ("GN", float(hp.gamma_neg)),
        ("GN1_INT", small_int_exponent(hp.gamma_neg - 1.0) if hp.gamma_neg else 0),
        ("A1", float(hp.a1)), ("A2", float(hp.a2)), ("B1", float(hp.b1)), ("B0", float(hp.b0)),
        ("SP", float(hp.scale_pos)), ("SN", float(hp.scale_neg)),
        ("CAP", -math.log(eps) if eps > 0 else 0.0),
        ("CAP_NEG", eps > 0 and not m >= 2.0 * eps),
        ("DETACH", bool(hp.detach_focal_weight)),
    )


def _shifted_q_ratio(z: Tensor, e: Tensor, m: float) -> tuple[Tensor, Tensor]:
    """(a, b) with a / b = exp(-|z - L|) <= 1, L = ``_margin_shift(m)``, from e = exp(-|z|)
    without another exp: c e / 1 (z < 0), c / e (0 <= z < L), e / c (z >= L), c = e^-L."""
    big = _margin_shift(m)
    c = m / (1.0 + m)
    below = z < big
    neg = z < 0
    a = torch.where(neg, e * c, torch.where(below, c, e))
    b = torch.where(below, torch.where(neg, 1.0, e), c)
    return a, b


def _neg_log_shifted_q(z: Tensor, soft: Tensor, log1p_shifted: Tensor, m: float) -> Tensor:
    """-log(q + m), q = sigmoid(-z), m > 0, from soft = log1p(exp(-|z|)) and
    log1p_shifted = log1p(exp(-|z - L|)), L = log((1 + m) / m) (``_shifted_q_ratio``).

    q + m = (1 + m)(1 + e^(z - L)) / (1 + e^z), so -log(q + m) = softplus(z) - softplus(z - L)
    - log(1 + m), and the two softplus' linear parts differ by clamp(z, 0, L): no large terms
    cancel for large |z|. The difference of O(1) terms costs up to ~1e-6 absolute (3e-7 at
    m = 0.05), never more than rounding 1 - p_m to float32 does (the eager route;
    tests/test_losses/test_compile.py).
    """
    return z.clamp(0.0, _margin_shift(m)) + soft - log1p_shifted - math.log1p(m)


def _fused_dense(z: Tensor, y: Tensor, hp: PolyParams) -> tuple[Tensor, Tensor]:
    """Loss and closed-form gradient [N, C] of the family formula from ONE exp.

    With e = exp(-|z|): p = sigmoid(z), q = sigmoid(-z) and log p = -(log1p(e) + relu(-z)),
    log q = -(log1p(e) + relu(z)); a probability margin (``clip``) needs one more log1p. In
    float32 the log1p's are arithmetic (``_log1p_from_s``) and all quotients of the loop come
    from one division (``_reciprocals``); float64 keeps the library's functions (exact tests).
    Written without in-place ops for ``torch.compile``, which fuses it into one loop; the eager
    kernel computes the same (tests/test_losses/test_compile.py).
    """
    e = torch.exp(-z.abs())
    one_e = 1.0 + e
    nonneg = z >= 0
    m = hp.clip
    fast = z.dtype == torch.float32 and fast_margin(m)
    rec = None  # 1 / ((1 + e) n_r): d(-log(1 - p_m))/dz = pq / (1 - p_m) = e * rec
    if not fast:
        inv = 1.0 / one_e
        soft = torch.log1p(e)
    elif m > 0:
        # where p > m, 1 - p_m = q + m = n_r / (1 + e) (check both signs of z)
        n_r = torch.where(nonneg, e, 1.0) + m * one_e
        a, b = _shifted_q_ratio(z, e, m)
        rec, r_two_e, r_ab = _reciprocals(one_e * n_r, 2.0 + e, a + (b + b))
        inv = n_r * rec
        soft = _log1p_from_s(e * r_two_e)
        log1p_shifted = _log1p_from_s(a * r_ab)
    else:
        inv, r_two_e = _reciprocals(one_e, 2.0 + e)
        soft = _log1p_from_s(e * r_two_e)
    p = torch.where(nonneg, inv, e * inv)
    q = torch.where(nonneg, e * inv, inv)
    neg_log_p = soft + torch.relu(-z)  # -log p >= 0
    neg_log_q = soft + torch.relu(z)  # -log q >= 0
    pq = p * q  # dp/dz = -dq/dz
    # positive branch: f+ = -log p + a1 q + a2 q^2, w+ = q^g+
    d_f_pos = -q
    f_pos, d_f_pos = _eps_cap(neg_log_p, d_f_pos, hp.eps)
    if hp.a1 or hp.a2:
        f_pos = f_pos + q * (hp.a1 + hp.a2 * q)
        d_f_pos = d_f_pos - pq * (hp.a1 + 2 * hp.a2 * q)
    loss_pos, grad_pos = _focused(f_pos, d_f_pos, q, -pq, hp.gamma_pos, hp.detach_focal_weight)
    # negative branch: f- = -log(1 - p_m) + b1 p_m + b0, w- = p_m^g-, p_m = max(p - m, 0)
    if m > 0:
        pm = torch.relu(p - m)
        if rec is not None and hp.gamma_neg > 1:
            # where p <= m the weight p_m^g- and its derivative's p_m^(g- - 1) are 0, so the
            # unmasked (finite) terms there multiply to 0: no masks needed
            d_pm, d_f_neg = pq, e * rec
            f_neg = _neg_log_shifted_q(z, soft, log1p_shifted, m)
        else:
            above = p > m
            d_pm = torch.where(above, pq, 0.0)
            if rec is None:
                r = 1.0 - pm  # >= m > 0
                f_neg, d_f_neg = -torch.log(r), d_pm / r
            else:
                f_neg = torch.where(above, _neg_log_shifted_q(z, soft, log1p_shifted, m), 0.0)
                d_f_neg = torch.where(above, e * rec, 0.0)
    else:
        pm, f_neg, d_pm, d_f_neg = p, neg_log_q, pq, p
    if not m >= 2.0 * hp.eps:  # else -log(1 - p_m) <= -log m < -log eps: the cap never binds
        f_neg, d_f_neg = _eps_cap(f_neg, d_f_neg, hp.eps)
    if hp.b1:
        f_neg = f_neg + hp.b1 * pm
        d_f_neg = d_f_neg + hp.b1 * d_pm
    if hp.b0:
        f_neg = f_neg + hp.b0
    loss_neg, grad_neg = _focused(f_neg, d_f_neg, pm, d_pm, hp.gamma_neg,
                                  hp.detach_focal_weight)
    loss = hp.scale_neg * loss_neg + y * (hp.scale_pos * loss_pos - hp.scale_neg * loss_neg)
    grad = hp.scale_neg * grad_neg + y * (hp.scale_pos * grad_pos - hp.scale_neg * grad_neg)
    return loss, grad


def _dense_value_and_grad(z: Tensor, targets: Tensor, hp: PolyParams, reduction: str,
                          scale: float) -> tuple[Tensor, Tensor]:
    """The reduced loss of logits ``scale * z`` and its finished gradient [N, C] with respect to
    ``z``: the kernel ``compiled_poly_caller`` compiles (one fused loop: ``z`` and targets read
    once, the gradient written once).

    ``z`` may be bfloat16 or float16 (a mixed-precision model's logits): the loop computes in
    ``compute_dtype`` (float32) and writes the gradient in ``z``'s dtype, so the up-cast and the
    down-cast are part of the one pass instead of two more passes over [N, C] around it.
    """
    zc = z.to(compute_dtype(z))  # [N, C] float32 (float64 stays)
    factor = scale * grad_scale(z, reduction)
    zs = zc * scale if scale != 1 else zc
    if not torch.compiler.is_compiling():
        # dynamo runs it eagerly (past its recompile limit, e.g. asl_adaptive's gamma_neg
        # changing every step): the eager kernel is the fast eager form
        loss, grad = _elementwise(zs, targets, hp, True, factor)
        return reduce(loss, reduction), grad.to(z.dtype)
    loss, grad = _fused_dense(zs, targets.to(zc.dtype), hp)
    grad = grad * factor if factor != 1 else grad
    return reduce(loss, reduction), grad.to(z.dtype)


class _DensePolyLossFunction(torch.autograd.Function):
    """The closed-form kernel without the sparse-positive indexing, for ``torch.compile``.

    Used when the caller's own ``torch.compile`` traces an eager loss (``create_loss(...,
    compile=True)`` uses ``compiled_poly_caller`` instead). Traced by dynamo, its forward (value
    and gradient from the same intermediates) becomes one fused loop that reads logits and
    targets once and writes the gradient once; its backward a scaling of that gradient.
    Autograd of the plain formula instead compiled to a forward loop and a backward loop that
    both recompute the transcendentals: 0.71x eager BCE-with-logits at (1024, 9605) against
    0.51x for this form, measured side by side (BENCHMARKS.md).
    """

    @staticmethod
    def forward(ctx, z: Tensor, targets: Tensor, hp: PolyParams, reduction: str) -> Tensor:  # type: ignore[override]
        out, grad = _dense_value_and_grad(z, targets, hp, reduction, 1.0)  # traced: dense
        ctx.save_for_backward(grad)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None, None


class _CompiledPolyLossFunction(torch.autograd.Function):
    """An eager ``autograd.Function`` around the compiled kernel (``compiled_poly_caller``).

    Tracing ``_DensePolyLossFunction`` instead compiles its backward too, and that backward
    (``grad * grad_out``) is a second pass that writes a new [N, C] tensor; here backward
    hands the kernel's gradient on (``times_grad_out``), as the eager kernel does.
    """

    @staticmethod
    def forward(ctx, z: Tensor, targets: Tensor, hp: PolyParams, reduction: str,  # type: ignore[override]
                scale: float, kernel: Callable[..., tuple[Tensor, Tensor]]) -> Tensor:
        with _without_autocast(z.device.type):
            out, grad = kernel(z, targets, hp, reduction, scale)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(grad)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, None, None, None, None, None]:  # type: ignore[override]
        return saved_times_grad_out(ctx, grad_out), None, None, None, None, None


# devices whose compiled family losses run the Triton kernel (losses/_triton.py) instead of
# inductor's compilation (tests add "cpu" under Triton's interpreter)
_TRITON_DEVICES: tuple[str, ...] = ("cuda",)


@functools.cache
def _triton_module() -> types.ModuleType:
    """``losses._triton``, imported at the first use: CPU runs never import Triton."""
    from losses import _triton

    return _triton


@functools.cache
def _cpu_fused_module() -> types.ModuleType:
    """``losses._cpu_fused``, imported at the first use (it imports this module)."""
    from losses import _cpu_fused

    return _cpu_fused


def _triton_kernel(z: Tensor, hp: PolyParams) -> Callable[..., tuple[Tensor, Tensor]] | None:
    """The Triton kernel for logits ``z`` with coefficients ``hp``, or None where it does not
    apply (no Triton, float64, a margin below ``_MIN_FAST_MARGIN``)."""
    module = _triton_module()
    return module.value_and_grad if module.available(z, hp) else None


# whether the Triton path's scalar losses take _with_native_backward instead of the Python
# _CompiledPolyLossFunction. Off: on an H100 the native form ran 1.25x-1.37x eager BCE against
# 1.06x-1.12x for the Python node in the same run (its dot and three more launches cost more
# than the Python node, which costs 0.01-0.02 ms more than a native node; BENCHMARKS.md "GPU,
# third lent session"). loss_speed.py --triton-backward both and gpu_loss_breakdown.py time the
# two side by side, and triton_check.py checks both
NATIVE_BACKWARD = False


def _with_native_backward(z: Tensor, targets: Tensor, hp: PolyParams, reduction: str,
                          scale: float, kernel: Callable[..., tuple[Tensor, Tensor]]) -> Tensor:
    """The Triton kernel's scalar loss, differentiable through PyTorch's own autograd nodes.

    The kernel returns the loss ``out`` and its finished gradient ``g`` [N, C]. Returned is
    ``out + (d - d.detach())`` with ``d = dot(z, g)``: its value is ``out`` exactly (``d - d``
    is 0 for finite ``d``) and its gradient with respect to ``z`` is ``grad_out * g``
    (``DotBackward0``), the gradient ``_CompiledPolyLossFunction``'s backward returns. No Python
    runs in backward. Why: on a GPU the autograd engine runs backward on its own device thread,
    and on the lent H200 the compiled call's backward (the Python node and its ``torch.mul``)
    took about 0.18 ms of host time against 0.08 ms for its forward, while the call's device work
    was a fraction of eager BCE-with-logits' (BENCHMARKS.md "GPU"). The price is one more read
    of ``z`` and ``g`` (the dot) and three tiny launches, which on an H100 cost more than the
    Python node saves: ``NATIVE_BACKWARD`` (off) picks it, and
    ``benchmarks/loss_speed.py --triton-backward both`` and ``benchmarks/gpu_loss_breakdown.py``
    time it against the Python node on a GPU (BENCHMARKS.md "GPU, third lent session").

    Deviations from ``_CompiledPolyLossFunction``: the product ``grad_out * g`` is taken in
    ``z``'s dtype (for bfloat16 logits ``grad_out`` is rounded to bfloat16 first; exact for
    ``loss.backward()``'s 1); a logit of +-inf makes the value NaN (``d`` is then not finite);
    and where a caller differentiates the returned gradient again (``create_graph=True`` with a
    ``grad_out`` that requires grad), the loss's own second derivative is taken as zero instead
    of raising ``once_differentiable``'s error (with a ``grad_out`` that does not require grad,
    as in ``torch.autograd.grad(loss, params, create_graph=True)``, both paths drop that term
    alike: the kernel's gradient is a constant to autograd).
    """
    with torch.no_grad():
        out, grad = kernel(z.detach(), targets, hp, reduction, scale)  # [], [N, C]
    if not (z.requires_grad and torch.is_grad_enabled()):
        return out
    with _without_autocast(z.device.type):  # autocast would round the dot's inputs
        d = torch.dot(z.view(-1), grad.view(-1))  # [], in z's dtype
    return out + (d - d.detach())


# the compiled kernel of the loss being evaluated (set by compiled_poly_caller's wrapper)
_COMPILED_KERNEL: ContextVar[Callable[..., tuple[Tensor, Tensor]] | None] = ContextVar(
    "mllb_compiled_poly_kernel", default=None)


def compiled_poly_caller(functional: Callable[..., Tensor],
                         **compile_kwargs: object) -> Callable[..., Tensor]:
    """``functional`` (a family loss's functional core) evaluated with a compiled kernel.

    What ``create_loss(name, compile=True)`` uses for the asymmetric family: the functional
    runs eagerly (input checks, coefficients), and ``poly_loss`` calls ``torch.compile`` of
    ``_dense_value_and_grad`` inside ``_CompiledPolyLossFunction``. Each caller compiles its
    own copy of the kernel's code object, because dynamo's cache and recompile limit are per
    code object: losses compiled in one process do not evict each other.
    """
    code = _dense_value_and_grad.__code__.replace()  # a new code object, same bytecode
    kernel = torch.compile(
        types.FunctionType(code, _dense_value_and_grad.__globals__, code.co_name),
        **compile_kwargs)  # type: ignore[call-overload]

    @functools.wraps(functional)
    def call(*args: object, **kwargs: object) -> Tensor:
        token = _COMPILED_KERNEL.set(kernel)
        try:
            return functional(*args, **kwargs)
        finally:
            _COMPILED_KERNEL.reset(token)

    return call


def compute_dtype(logits: Tensor) -> torch.dtype:
    """float64 stays float64 (for exact tests); every other float dtype computes in float32."""
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def check_inputs(name: str, logits: Tensor, targets: Tensor, reduction: str) -> None:
    """Validate the loss contract's inputs with a message that names the loss and the problem."""
    if not isinstance(logits, Tensor) or not isinstance(targets, Tensor):
        raise TypeError(
            f"{name}: logits and targets must be torch tensors, got "
            f"{type(logits).__name__} and {type(targets).__name__}"
        )
    if not logits.is_floating_point():
        raise TypeError(f"{name}: logits must be a floating-point tensor, got {logits.dtype}")
    if logits.dim() != 2:
        raise ValueError(f"{name}: logits must be 2-D [N, C], got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape:
        raise ValueError(
            f"{name}: targets shape {tuple(targets.shape)} does not match logits shape "
            f"{tuple(logits.shape)}; expected both [N, C]"
        )
    if logits.numel() == 0:
        raise ValueError(f"{name}: empty batch (logits shape {tuple(logits.shape)})")
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def poly_loss(logits: Tensor, targets: Tensor, hp: PolyParams, reduction: str, name: str,
              scale: float = 1.0) -> Tensor:
    """Evaluate the family formula with coefficients ``hp`` (see the module docstring).

    Args:
        logits: [N, C] raw scores, any float dtype; computed in float32 (float64 stays float64).
        targets: [N, C] in {0, 1} (bool, int or float) or soft targets in [0, 1].
        hp: the resolved coefficients.
        reduction: "mean" (over N*C), "sum", "batchmean" (sum / N) or "none" ([N, C]).
        name: the loss name, for error messages.
        scale: the formula is evaluated at ``scale * logits`` (aam: s cos); compiled, the
            multiplication is inside the fused loop.
    """
    check_inputs(name, logits, targets, reduction)
    kernel = _COMPILED_KERNEL.get()
    if kernel is not None and not torch.compiler.is_compiling():  # create_loss(compile=True)
        kernel_name = "torch_compile"  # for the results' extra.kernels (mllb_core/served.py)
        if logits.device.type in _TRITON_DEVICES:
            triton_kernel = _triton_kernel(logits, hp)
            if triton_kernel is not None and reduction != "none" and NATIVE_BACKWARD:
                note_served("triton")
                return _with_native_backward(logits.contiguous(), targets.detach(), hp,
                                             reduction, scale, triton_kernel)
            if triton_kernel is not None:
                kernel, kernel_name = triton_kernel, "triton"
        elif logits.device.type == "cpu":
            cpu_fused = _cpu_fused_module()
            if cpu_fused.kernel_for(logits, targets, hp, reduction, scale) is not None:
                # AVX-512 loop instead of inductor's
                kernel, kernel_name = cpu_fused.value_and_grad, "cpu_fused"
        note_served(kernel_name)
        # the kernel up-casts (and down-casts the gradient) inside its one pass
        return _CompiledPolyLossFunction.apply(logits.contiguous(), targets.detach(), hp,
                                               reduction, scale, kernel)
    z = logits.to(compute_dtype(logits)).contiguous()
    if scale != 1:
        z = z * scale
    if torch.compiler.is_compiling():  # traced by the caller's torch.compile: let it fuse
        return _DensePolyLossFunction.apply(z, targets.detach(), hp, reduction)
    return _PolyLossFunction.apply(z, targets.detach(), hp, reduction)
