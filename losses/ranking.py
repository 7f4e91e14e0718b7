"""ZLPR and the two-way multi-label loss: MLLB's own fused implementations of timm's losses.

* ``zlpr``: Su et al., "ZLPR: A Novel Loss for Multi-label Classification", 2022; as
  ``timm.loss.ZlprLoss``: per sample ``log(1 + sum_neg e^z) + log(1 + sum_pos e^-z)``, batch mean.
* ``two_way``: Kobayashi, "Two-way Multi-Label Loss", CVPR 2023; as ``timm.loss.TwoWayLoss``:
  in both directions (over the classes of each sample, over the samples of each class),
  ``softplus(tn * LSE_neg(z / tn) + tp * LSE_pos(-z / tp))``, averaged over the samples (classes)
  with at least one positive, the two directions summed.

timm composes them from ``masked_fill``/``cat``/``logsumexp``, whose backward saves several
[N, C] tensors and recomputes the softmaxes. Here each is one ``autograd.Function`` whose
forward also computes the closed-form gradient (d LSE / dz is a softmax; d softplus(h) / dh is
sigmoid(h)) and saves only that: one [N, C] tensor. ``tests/test_losses/test_ranking.py`` checks
value and gradient against timm's modules (the test reference) to 1e-6.

For float32 logits on a CPU with AVX2 and FMA, two_way's forward runs a C++ kernel instead of
the torch composition below (``losses/_ranking_kernel.cpp``, built with the system's C++
compiler and cached by ``mllb_core/native.py``; ``MLLB_RANKING_KERNEL=0`` in the environment,
or ``KERNEL_ENABLED = False``, keeps the composition; a build that fails warns once and keeps
it too). On an AMD EPYC host the composition took 1.4-2.1 ms at 256x1000, 2.0x-3.2x eager
BCE-with-logits, against issue 16's 2.5x: about 80 ATen calls (517 us at (4, 8)) and 23 passes
over [N, C]. The kernel does the same arithmetic in five passes (the rows: shifted exps and
sums, then the gradient scaled in place; the columns: maxima, exps and sums, then the gradient
added), and ran at 1.39x-1.54x in three default runs there (BENCHMARKS.md). Its deviations
from the composition, none beyond float32 rounding (``tests/test_losses/test_ranking.py``: timm
in float64 to 1e-6, the composition's own tolerance):

* exp is Cephes' ``expf`` (two-part ln 2 reduction, degree-5 polynomial, about 1 ulp), the
  rounding of x / ln 2 by adding 1.5 * 2^23, instead of ATen's ``exp``;
* ``u`` is ``x * (-1 / tp)`` on the positives and ``x * (1 / tn)`` elsewhere, one product
  (the composition: ``x / tn - x (1 / tp + 1 / tn) posf``);
* sums of exps are in double (partial sums in a fixed order: eight lanes per row, blocks of 32
  rows per column), the lines' logs, softplus and sigmoid in double; the loss is returned in
  float32;
* lines flagged for the exact recomputation (a subset's sum in (0, e^-50)) are left out by the
  kernel and added back by :func:`_two_way_exact` (the composition replaced their part);
* OpenMP threads: ``torch.get_num_threads()``; the result is the same on any thread count.

Deviations from timm, none of which changes a value: ``zlpr`` computes
``log(1 + sum e^a)`` as ``softplus(logsumexp(a))`` instead of a log-sum-exp over ``a`` with an
appended zero (equal up to rounding); targets are binarized at 0.5 as in timm. Both losses
are defined per sample (zlpr) or per batch (two_way) rather than per label, so they support
only the ``mean`` reduction; two_way is not ``decomposable``: its value depends on which
examples share a batch.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from losses._kernel import check_inputs, compute_dtype, saved_times_grad_out
from losses._workspace import scratch
from losses.base import LOSSES, MultiLabelLoss, require
from mllb_core import native
from mllb_core.served import note as note_served

# timm's mask value for the entries a log-sum-exp leaves out
_MASK = -1e4
# exp of an argument below about -87 (float32 underflow) takes a slow path on x86 CPUs, about 100
# times the normal cost; masked entries would hit it on every call. Clamping the shifted
# argument at -87 changes a masked entry's term from 0 to e^-87 (< 2e-38), far below rounding.
_EXP_FLOOR = -87.0


def _lse(t: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """log-sum-exp of ``t`` over ``dim`` (keepdim), with ``e = exp(t - max)`` and its sum.

    ``e / sum`` is the softmax (the derivative of the log-sum-exp), so the backward needs no
    second exp.
    """
    top = t.amax(dim=dim, keepdim=True)
    e = (t - top).clamp_(min=_EXP_FLOOR).exp_()
    total = e.sum(dim=dim, keepdim=True)
    return top + total.log(), e, total


def _zlpr_exact(x: Tensor, pos: Tensor, n: int,
                need_grad: bool) -> tuple[Tensor, Tensor | None]:
    """Per-row ZLPR terms [R, 1] and their gradient [R, C] (divided by the batch size ``n``),
    each log-sum-exp shifted by its own subset's maximum: exact for any spread of logits."""
    m = torch.where(pos, -x, x)  # [R, C] the exponent of each entry's own term
    lse_neg, e_neg, s_neg = _lse(m.masked_fill(pos, _MASK), 1)  # [R, 1]
    lse_pos, e_pos, s_pos = _lse(m.masked_fill(~pos, _MASK), 1)
    # log(1 + sum e^m) = softplus(lse): the appended zero logit of timm's formula
    per_row = F.softplus(lse_neg) + F.softplus(lse_pos)
    if not need_grad:
        return per_row, None
    # d/dz_j log(1 + sum e^m) = +-e^{m_j} / (1 + sum e^m) = +-softmax_j * sigmoid(lse)
    k_neg = torch.sigmoid(lse_neg).div_(s_neg * n)  # [R, 1]
    k_pos = torch.sigmoid(lse_pos).div_(s_pos * -n)
    return per_row, torch.where(pos, e_pos.mul_(k_pos), e_neg.mul_(k_neg))


# a subset whose shifted sum is below e^-50 is recomputed with its own shift (_zlpr_exact)
_SHARED_SHIFT_MIN = float(torch.tensor(-50.0, dtype=torch.float64, device="cpu").exp())


def _positives(targets: Tensor, dtype: torch.dtype) -> Tensor:
    """1.0 where a target is above 0.5, else 0.0: [N, C] in ``dtype``.

    Written as clamp(round(t), 0, 1) (round half to even: 0.5 -> 0, so exactly "t > 0.5" for
    every real t) because on CPU ops that produce or consume a bool tensor (``>``, ``where``,
    bool -> float) cost 2-4 times a vectorized float op; every mask below is this float tensor,
    used in products. In reused memory (``losses/_workspace.py``): the kernels only read it.
    """
    t = targets.to(dtype)
    return torch.round(t, out=scratch("posf", t)).clamp_(0, 1)


def _negatives_and_buffer(posf: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """The negatives' float mask 1 - posf and a scratch buffer like ``x``, both [N, C] in
    reused memory (``losses/_workspace.py``); -posf + 1 is the same float as 1 - posf."""
    return (torch.neg(posf, out=scratch("negf", posf)).add_(1.0),
            scratch("buf", x))


def _masked_sums(e: Tensor, posf: Tensor, negf: Tensor, dim: int,
                 buf: Tensor) -> tuple[Tensor, Tensor]:
    """Sums of ``e`` (>= 0) over ``dim`` on the positives and on the negatives; ``buf``:
    scratch like ``e``.

    The negatives' sum is the total minus the positives' (a read of ``e`` instead of a product
    and a read) where the negatives carry at least half of a line's total, so that the
    difference loses at most one bit; if any line is not so, every line's sum is taken
    directly.
    """
    s_pos = torch.mul(e, posf, out=buf).sum(dim=dim, keepdim=True)
    total = e.sum(dim=dim, keepdim=True)
    if bool((s_pos <= 0.5 * total).all()):
        return s_pos, total - s_pos
    return s_pos, torch.mul(e, negf, out=buf).sum(dim=dim, keepdim=True)


def _select(posf: Tensor, negf: Tensor, k_pos: Tensor, k_neg: Tensor, buf: Tensor,
            sign_pos: float = 1.0) -> Tensor:
    """``sign_pos * k_pos`` on the positives, ``k_neg`` elsewhere, broadcast to [N, C] into
    ``buf``.

    As negf k_neg + sign_pos posf k_pos: each entry gets one term times 1 and one times 0,
    exactly. (k_neg + posf (k_pos - k_neg) would cancel to 0 where |k_neg| >> |k_pos|.)
    """
    return torch.mul(negf, k_neg, out=buf).addcmul_(posf, k_pos, value=sign_pos)


class _ZlprFunction(torch.autograd.Function):
    """ZLPR value and its closed-form gradient in one forward; backward hands the gradient on.

    Both log-sum-exps of a row share one shift, the row's maximum of ``m`` (the positives' -z
    and the negatives' z), so one ``exp`` serves both. That is exact while each subset's sum
    stays far above float underflow; rows where a subset's shifted sum falls below e^-50 (its
    largest term more than ~50 below the other subset's) are recomputed with a shift per
    subset (:func:`_zlpr_exact`). One fresh [N, C] tensor (the gradient) and two in reused
    memory (``losses/_workspace.py``); masks are float products.
    """

    @staticmethod
    def forward(ctx, x: Tensor, posf: Tensor) -> Tensor:  # type: ignore[override]
        n = x.shape[0]
        need_grad = ctx.needs_input_grad[0]
        m = torch.addcmul(x, x, posf, value=-2.0)  # [N, C] -z on the positives, z elsewhere
        top = m.amax(dim=1, keepdim=True)  # [N, 1]
        e = m.sub_(top).clamp_(min=_EXP_FLOOR).exp_()  # [N, C] e^(m - top), in m's memory
        negf, buf = _negatives_and_buffer(posf, x)
        s_pos, s_neg = _masked_sums(e, posf, negf, 1, buf)  # [N, 1]
        # every term is >= e^-87 after the clamp: a sum is 0 only for an empty subset, whose
        # log is -inf and whose softplus 0, as timm's masked log-sum-exp gives
        lse_pos, lse_neg = top + s_pos.log(), top + s_neg.log()
        per_row = F.softplus(lse_neg) + F.softplus(lse_pos)  # [N, 1]
        grad = None
        if need_grad:
            # d/dz_j log(1 + sum e^m) = +-e^{m_j} / (1 + sum e^m) = +-softmax_j * sigmoid(lse);
            # an empty subset's factor (0 / 0) is never used: set to 0, as products follow
            k_neg = torch.where(s_neg > 0, torch.sigmoid(lse_neg) / (s_neg * n), 0.0)
            k_pos = torch.where(s_pos > 0, torch.sigmoid(lse_pos) / (s_pos * -n), 0.0)
            grad = e.mul_(_select(posf, negf, k_pos, k_neg, buf))
        bad = ((s_pos > 0) & (s_pos < _SHARED_SHIFT_MIN)) | (
            (s_neg > 0) & (s_neg < _SHARED_SHIFT_MIN))  # [N, 1]
        if bool(bad.any()):
            rows = bad.view(-1).nonzero(as_tuple=True)[0]
            per_row[rows], grad_rows = _zlpr_exact(x[rows], posf[rows] > 0.5, n, need_grad)
            if grad is not None:
                grad[rows] = grad_rows
        if grad is not None:
            ctx.save_for_backward(grad)
        return per_row.mean()

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return saved_times_grad_out(ctx, grad_out), None


def _two_way_exact(x: Tensor, pos: Tensor, tp: float, tn: float, dim: int, count: Tensor,
                   need_grad: bool) -> tuple[Tensor, Tensor | None]:
    """One direction of the two-way loss on the lines (along ``dim``) of ``x``, each
    log-sum-exp shifted by its own subset's maximum: the sum of its lines' terms (divided by
    ``count``) and their gradient [same shape as x]; exact for any spread of logits."""
    a = (x / -tp).masked_fill_(~pos, _MASK)  # soft-min terms of the positives
    b = (x / tn).masked_fill_(pos, _MASK)  # soft-max terms of the negatives
    lse_a, e_a, s_a = _lse(a, dim)
    lse_b, e_b, s_b = _lse(b, dim)
    h = tn * lse_b + tp * lse_a
    valid = pos.any(dim=dim, keepdim=True)
    out = F.softplus(h)[valid].sum() / count
    if not need_grad:
        return out, None
    coef = torch.sigmoid(h).mul_(valid).div_(count)
    return out, torch.where(pos, e_a.mul_(-coef / s_a), e_b.mul_(coef / s_b))


KERNEL_SOURCE = Path(__file__).with_name("_ranking_kernel.cpp")
# GNU mode: contracted multiply-adds, as the family's CPU loop (losses/_cpu_fused.py);
# -fno-trapping-math (no value changes: floating-point exceptions are never read) lets the
# compiler vectorize the exp loops, whose float-to-int conversion could trap otherwise
KERNEL_FLAGS = ("-O3", "-std=gnu++17", "-mavx2", "-mfma", "-fno-trapping-math", "-fopenmp",
                "-fPIC", "-shared")
KERNEL_ENABLED = os.environ.get("MLLB_RANKING_KERNEL", "1") != "0"


@functools.cache
def _two_way_library() -> ctypes.CDLL | None:
    """The two-way kernel (``_ranking_kernel.cpp``), built once and cached (``mllb_core.native``);
    None (warned once) where it cannot be built or loaded."""
    ptr, f32 = ctypes.c_void_p, ctypes.c_float
    return native.load(
        "MLLB's two-way loss kernel", "two_way", KERNEL_SOURCE, KERNEL_FLAGS,
        "two_way uses its torch composition instead",
        {"mllb_two_way": (ctypes.c_double, [ptr, ptr, ctypes.c_int64, ctypes.c_int64, f32, f32,
                                            ctypes.c_double, ptr, ptr, ptr, ptr, ptr,
                                            ctypes.c_int])},
        stacklevel=5)


def two_way_kernel_serves(x: Tensor) -> bool:
    """Whether the C++ kernel computes two_way for logits ``x`` (float32 on a CPU with AVX2 and
    FMA, switched on, built); otherwise the torch composition of ``_TwoWayFunction`` does, as
    under ``torch.compile``'s tracing (``create_loss("two_way", compile=True)``), which then
    compiles the composition rather than break its graph at a foreign call."""
    if torch.compiler.is_compiling():
        return False
    if not (KERNEL_ENABLED and x.device.type == "cpu" and x.dtype == torch.float32
            and x.is_contiguous() and x.dim() == 2 and x.numel() > 0):
        return False
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(caps.get("avx2") and caps.get("fma3")) and _two_way_library() is not None


def _two_way_kernel(x: Tensor, posf: Tensor, tp: float, tn: float,
                    need_grad: bool) -> tuple[Tensor, Tensor | None]:
    """The two-way value (0-dim, float32) and gradient ([N, C] or None) of ``x`` [N, C] float32
    and the float mask ``posf`` [N, C] by the C++ kernel; the lines it flags (a subset's
    shifted sum in (0, e^-50)) recomputed by :func:`_two_way_exact` and added in."""
    n, c = x.shape
    grad = torch.empty_like(x) if need_grad else None
    work = scratch("two_way_e", x) if need_grad else None  # [N, C] the columns' exps
    # on x's device (the CPU), never a default device set by `with torch.device(...)`: the
    # kernel writes through these pointers
    bad_rows = torch.empty(n, dtype=torch.uint8, device=x.device)
    bad_cols = torch.empty(c, dtype=torch.uint8, device=x.device)
    counts = torch.empty(2, dtype=torch.int64, device=x.device)
    note_served("two_way_cpp")  # the results' extra.kernels (mllb_core/served.py)
    value = _two_way_library().mllb_two_way(
        x.data_ptr(), posf.data_ptr(), n, c, tp, tn, _SHARED_SHIFT_MIN,
        grad.data_ptr() if grad is not None else None,
        work.data_ptr() if work is not None else None,
        bad_rows.data_ptr(), bad_cols.data_ptr(), counts.data_ptr(), torch.get_num_threads())
    out = torch.tensor(value, dtype=x.dtype, device=x.device)
    for dim, bad, count in ((1, bad_rows, counts[0]), (0, bad_cols, counts[1])):
        lines = bad.nonzero(as_tuple=True)[0]
        if not lines.numel():
            continue
        other = 1 - dim  # the lines of direction ``dim`` are indexed along the other
        sub_out, sub_grad = _two_way_exact(
            x.index_select(other, lines), posf.index_select(other, lines) > 0.5, tp, tn, dim,
            count, need_grad)
        out = out + sub_out
        if grad is not None:
            grad.index_add_(other, lines, sub_grad)
    return out, grad


class _TwoWayFunction(torch.autograd.Function):
    """Two-way loss value and its closed-form gradient in one forward; backward hands it on.

    Per direction, both log-sum-exps of a line (the positives' soft-min of -z / tp and the
    negatives' soft-max of z / tn) share one shift, the line's maximum of u = -z / tp on the
    positives and z / tn on the negatives, so one ``exp`` serves both. Lines where a subset's
    shifted sum falls below e^-50 are recomputed with a shift per subset
    (:func:`_two_way_exact`), as in zlpr. One fresh [N, C] tensor (the gradient) and three in
    reused memory (``losses/_workspace.py``); masks are float products. Float32 on a CPU with
    AVX2: the same in the C++ kernel (:func:`_two_way_kernel`, one [N, C] of reused memory).
    """

    @staticmethod
    def forward(ctx, x: Tensor, posf: Tensor, tp: float, tn: float) -> Tensor:  # type: ignore[override]
        need_grad = ctx.needs_input_grad[0]
        if two_way_kernel_serves(x):
            out, grad = _two_way_kernel(x, posf, tp, tn, need_grad)
            if grad is not None:
                ctx.save_for_backward(grad)
            return out
        u = torch.mul(x, 1.0 / tn, out=scratch("u", x)).addcmul_(  # [N, C]
            x, posf, value=-1.0 / tp - 1.0 / tn)
        negf, buf = _negatives_and_buffer(posf, x)
        out = x.new_zeros(())
        grad = None
        tiny = torch.finfo(x.dtype).tiny  # the smallest normal float, below e^-87
        for dim in (0, 1):  # 0: over the samples of each class, 1: over the classes of a sample
            top = u.amax(dim=dim, keepdim=True)  # [1, C] or [N, 1]
            e = torch.sub(u, top) if dim == 0 else u.sub_(top)  # u's last use: in place
            e.clamp_(min=_EXP_FLOOR).exp_()  # [N, C] every term >= e^-87 > 0
            s_a, s_b = _masked_sums(e, posf, negf, dim, buf)  # positives', negatives' sums
            valid = s_a > 0  # lines with a positive (an empty subset sums to exactly 0)
            count = valid.sum().clamp_(min=1)
            # h = tn LSE_neg + tp LSE_pos, each LSE = top + log(sum); an empty subset's log is
            # -inf, so h = -inf there: softplus(h) = sigmoid(h) = 0 without a mask
            h = (top * (tn + tp)).add_(s_b.log(), alpha=tn).add_(s_a.log(), alpha=tp)
            # one of the two subsets holds the line's maximum (a term e^0 = 1), so a line needs
            # the exact recomputation only where the smaller sum is in (0, e^-50)
            low = torch.minimum(s_a, s_b)
            bad = (low > 0) & (low < _SHARED_SHIFT_MIN)  # [1, C] or [N, 1]
            any_bad = bool(bad.any())
            term = F.softplus(h)
            if any_bad:  # where on the line values, not boolean indexing (nonzero + gather)
                term = torch.where(bad, 0.0, term)
            out = out + term.sum() / count
            if need_grad:
                # d softplus(h) = sigmoid(h) dh; dh/dz = softmax of b on the negatives and
                # -softmax of a on the positives (tp, tn cancel with the 1/tp, 1/tn inside).
                # coef is 0 on a line with an empty subset (h = -inf), so dividing by the
                # sums clamped at the smallest normal float (below every non-empty sum, whose
                # terms are >= e^-87) gives 0 there instead of 0 / 0
                coef = torch.sigmoid(h).div_(count)
                k_a = coef / s_a.clamp(min=tiny)
                k_b = coef / s_b.clamp(min=tiny)
                part = e.mul_(_select(posf, negf, k_a, k_b, buf, sign_pos=-1.0))
            if any_bad:
                lines = bad.view(-1).nonzero(as_tuple=True)[0]
                other = 1 - dim  # the lines of direction ``dim`` are indexed along the other
                sub_out, sub_grad = _two_way_exact(
                    x.index_select(other, lines), posf.index_select(other, lines) > 0.5, tp, tn,
                    dim, count, need_grad)
                out = out + sub_out
                if need_grad:
                    part.index_copy_(other, lines, sub_grad)
            if need_grad:
                grad = part if grad is None else grad.add_(part)
        if grad is not None:
            ctx.save_for_backward(grad)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        return saved_times_grad_out(ctx, grad_out), None, None, None


def zlpr_loss(logits: Tensor, targets: Tensor, *, reduction: str = "mean") -> Tensor:
    """ZLPR (targets binarized at 0.5), equal to ``timm.loss.ZlprLoss``; only ``"mean"``.

    Args:
        logits: [N, C] scores (any float dtype; computed in float32, float64 stays float64).
        targets: [N, C]; entries above 0.5 are positives.
    """
    check_inputs("zlpr", logits, targets, reduction)
    require(reduction == "mean", "zlpr", "reduction", "'mean'", reduction)
    x = logits.to(compute_dtype(logits))
    return _ZlprFunction.apply(x, _positives(targets.detach(), x.dtype))


def two_way_loss(
    logits: Tensor, targets: Tensor, *, tp: float = 4.0, tn: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Two-way multi-label loss (temperatures tp, tn), equal to ``timm.loss.TwoWayLoss``.

    Args:
        logits: [N, C] ranking scores (computed in float32, float64 stays float64).
        targets: [N, C]; entries above 0.5 are positives.
        tp, tn: temperatures of the soft-min over positives and the soft-max over negatives.
        reduction: only ``"mean"``.
    """
    check_inputs("two_way", logits, targets, reduction)
    require(reduction == "mean", "two_way", "reduction", "'mean'", reduction)
    x = logits.to(compute_dtype(logits))
    return _TwoWayFunction.apply(x, _positives(targets.detach(), x.dtype), float(tp), float(tn))


@LOSSES.register("zlpr")
class ZLPRLoss(MultiLabelLoss):
    """ZLPR; see :func:`zlpr_loss`."""

    name = "zlpr"
    functional = staticmethod(zlpr_loss)
    reductions: ClassVar[tuple[str, ...]] = ("mean",)


@LOSSES.register("two_way")
class TwoWayLoss(MultiLabelLoss):
    """The two-way multi-label loss; see :func:`two_way_loss`."""

    name = "two_way"
    functional = staticmethod(two_way_loss)
    reductions: ClassVar[tuple[str, ...]] = ("mean",)
    decomposable = False

    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        for field in ("tp", "tn"):
            require(hp[field] > 0, cls.name, field, "> 0", hp[field])
