"""Average precision per class in C++ (``tasks/_ap_kernel.cpp``), without sorting the scores.

:func:`tasks.metrics.average_precision_per_class` calls :func:`average_precision` first and
keeps its numpy paths for when this kernel is switched off (``MLLB_AP_KERNEL=0`` in the
environment, or ``ENABLED = False``) or cannot be built (no C++ compiler: one warning, see
``mllb_core/native.py``, which builds and caches it like the loss loop).

Why: the numpy path sorts one key per score, and numpy's AVX-512 quicksort ran at 36 ns a key
on an AMD EPYC (Zen 4) host (80 x 40137 float64: 115 ms on one thread), which kept AP per class
at 8x scikit-learn there against issue 16's 20x (BENCHMARKS.md, session of 2026-11-28 03:22
UTC). This kernel sorts only the positives (a few per cent of the scores).

The computation, scikit-learn's ``average_precision_score`` per class: AP = (1 / P) * sum over
the distinct scores t of the positives of #positives(s = t) * TP(s >= t) / #(s >= t). With the
class's P positives' scores sorted ascending, p_0 <= ... <= p_{P-1}, a negative x is among
#(s >= p_i) exactly for the i with p_i <= x, i.e. for i below j(x) = #(positives <= x); one
histogram of j over the negatives gives every #negatives(s >= p_i) by a suffix sum. j(x) comes
from a table over about 4P equal cells of [p_0, p_{P-1}] (plus one cell below p_0): the cell
index is monotone in x (each floating-point step of it is), so only the positives in x's own
cell are compared with x, and for most negatives that cell holds none. Scores are compared as
the floats they are (float32 or float64, never converted for a comparison), so ties,
``-0.0 == 0.0`` and any finite value (logits included) count as scikit-learn counts them.

Exactness: every count is an integer until the last step; the last step is, per class, the
same sequence of float64 operations as the numpy path's ``_ap_from_positives`` (the precision
``TP / #(s >= t)``, times the tie's size, summed from the highest score down, divided by P),
so both paths return the same bits, and the result does not depend on the thread count
(tests/test_tasks/test_metrics.py checks both, and scikit-learn to 1e-12).

Three rounds on ``threads`` OpenMP threads: the positives per class counted per chunk of rows
(so that each chunk knows where it writes), each chunk of rows split into each class's
negatives and positives in a [C, N] scratch array (the caller's, reused between calls: fresh
tens of MiB would be faulted in on every call), then each class on its own: sort its positives,
build its table, count its negatives, sum. Where [C, N] would not fit the caller's scratch
(``tasks.metrics._WORKSPACE_MAX`` entries, 64 MiB), the classes go through the kernel in blocks
that do: an OpenImages-size evaluation does not need gigabytes. A NaN or infinite score makes
the kernel return without a result; the caller's general path then reports it.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import numpy as np

from mllb_core import native
from mllb_core.served import note as note_served

SOURCE = Path(__file__).with_name("_ap_kernel.cpp")
FLAGS = ("-O3", "-std=gnu++17", "-fopenmp", "-fPIC", "-shared")
ENABLED = os.environ.get("MLLB_AP_KERNEL", "1") != "0"


@functools.cache
def library() -> ctypes.CDLL | None:
    """The built kernel (cached on disk and per process), None if it cannot be built or loaded
    (warned once)."""
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    signature = (ctypes.c_int, [ptr, ptr, i64, i64, i64, ctypes.c_int, ptr, ptr])
    return native.load("MLLB's AP kernel", "ap", SOURCE, FLAGS,
                       "AP per class uses its numpy path instead",
                       {"mllb_ap_f64": signature, "mllb_ap_f32": signature}, stacklevel=4)


def available() -> bool:
    """Whether :func:`average_precision` can run here (switched on and built)."""
    return ENABLED and library() is not None


def block_width(n: int, n_cls: int, max_entries: int) -> int:
    """Classes per call of the kernel: all of them when their [C, N] scratch fits in
    ``max_entries``, else as many as fit (at least one)."""
    return max(1, min(n_cls, max_entries // max(n, 1)))


def average_precision(s: np.ndarray, t: np.ndarray, threads: int,
                      work: np.ndarray) -> np.ndarray | None:
    """AP of each class of scores ``s`` [N, C] (float64 or float32) and targets ``t`` [N, C]
    (bool), [C] float64 with NaN for a class without a positive; None when the kernel is not
    available or some score is NaN or infinite.

    ``work`` is scratch of ``s``'s dtype and at least N entries (contents overwritten): the
    classes are computed in blocks of ``work.size // N``, so that the scratch stays bounded for
    any number of classes; ``threads`` OpenMP threads share each block.
    """
    if not available():
        return None
    assert s.dtype in (np.float64, np.float32) and t.dtype == np.bool_, (s.dtype, t.dtype)
    assert work.dtype == s.dtype and work.flags.c_contiguous, (work.dtype, s.dtype)
    s = np.ascontiguousarray(s)
    t = np.ascontiguousarray(t)
    n, n_cls = s.shape
    assert work.size >= n, (work.size, n)
    width = block_width(n, n_cls, work.size)
    out = np.empty(n_cls)
    lib = library()
    fn = lib.mllb_ap_f64 if s.dtype == np.float64 else lib.mllb_ap_f32
    for c0 in range(0, n_cls, width):
        c1 = min(n_cls, c0 + width)
        bad = fn(s[:, c0:].ctypes.data, t[:, c0:].ctypes.data, n, c1 - c0, n_cls,
                 max(1, threads), work.ctypes.data, out[c0:c1].ctypes.data)
        if bad:
            return None
    note_served("ap_cpp")  # the results' extra.kernels (mllb_core/served.py)
    return out
