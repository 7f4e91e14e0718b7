"""Corpus-level multi-label metrics: pure, vectorized numpy functions (float64 accumulation),
with average precision per class in a small C++ kernel when a compiler is there
(``tasks/_native_ap.py``; the numpy path stays, with the same bits).

Every function takes ``scores`` [N, C] (probabilities for the threshold-based metrics; any real
scores for the ranking metrics) and binary ``targets`` [N, C], as numpy arrays or torch tensors,
and computes over the whole split: nothing here is a mean of per-batch values.

Conventions (each one is what scikit-learn does unless said otherwise):

* average precision: sum over distinct score thresholds of (R_n - R_{n-1}) P_n, tied scores
  forming one threshold, equal to ``sklearn.metrics.average_precision_score`` per class. Classes
  with no positive in the split have no AP; by default they are *skipped* from the mean and
  counted in :class:`MeanAP` (metric ``map``). ``missing="zero"`` (metric ``map_zero``) scores
  them AP 0 and averages over all C classes, as the ASL and ML-Decoder ``mAP`` helpers do
  (Alibaba-MIIL/ASL ``src/helper_functions/helper_functions.py``, which also returns percent;
  here a fraction). Tied scores: the helpers order ties arbitrarily (``argsort``), here they
  form one threshold, so the two agree exactly only on scores without ties.
* CP/CR/CF1 and OP/OR/OF1 (ML-GCN, ASL papers): per-class precision/recall averaged over all C
  classes, CF1 the harmonic mean of CP and CR (ML-GCN ``util.py``; ASL's ``validate.py`` prints
  the mean of the per-class F1 under the name CF1 instead: that is ``macro_f1`` here); overall
  ones from the summed counts. A ratio with a zero denominator counts as 0 (scikit-learn's
  ``zero_division=0``); how many classes had no prediction / no positive is returned alongside.
  Top-k variant: a label is predicted when it is among the k highest scores of its row *and*
  its score is >= the threshold.
* ranking (P@k, nDCG@k, binary relevance): among tied scores the lower class index ranks first
  (a stable sort). Results equal ``sklearn.metrics.ndcg_score`` (which averages over the orders
  of tied scores) whenever no tie straddles rank k. Rows without any positive have nDCG 0 and
  count in the mean, as in scikit-learn.
"""

from __future__ import annotations

import functools
import itertools
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeVar

import numpy as np
import torch

from mllb_core.registry import Registry
from tasks import _native_ap

ArrayLike = np.ndarray | torch.Tensor


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu")
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def check_scores_targets(scores: ArrayLike, targets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert: scores float64 [N, C] (finite), targets bool [N, C] (0/1 only).

    Raises:
        ValueError: naming the shape, or the row and column of the first bad value.
    """
    s, t = _converted(scores, targets)
    # min and max are NaN or infinite exactly when some score is: two reductions, no [N, C] mask
    if not (np.isfinite(s.min()) and np.isfinite(s.max())):
        r, c = np.argwhere(~np.isfinite(s))[0]
        raise ValueError(f"scores must be finite; found {s[r, c]} at row {r}, column {c}")
    return s, t


def _converted(scores: ArrayLike, targets: ArrayLike,
               keep_float32: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`check_scores_targets` without the check that the scores are finite
    (``keep_float32``: float32 scores stay float32, for AP's 32-bit sort keys)."""
    s = _to_numpy(scores)
    t = _to_numpy(targets)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D [N, C], got shape {s.shape}")
    if t.shape != s.shape:
        raise ValueError(f"targets shape {t.shape} does not match scores shape {s.shape}")
    if s.shape[0] == 0:
        raise ValueError("scores and targets are empty (N = 0)")
    if not (keep_float32 and s.dtype == np.float32):
        s = s.astype(np.float64, copy=False)
    if t.dtype != np.bool_:
        bad = (t != 0) & (t != 1)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"targets must be 0 or 1; found {t[r, c]} at row {r}, column {c}")
        t = t.astype(bool)
    return s, t


def _sort_rows_inplace(a: np.ndarray) -> None:
    """Sort each row of ``a`` ascending, rows split over torch's intra-op thread count.

    numpy releases the GIL while sorting, so threads sort disjoint row blocks in parallel.
    """
    workers = min(torch.get_num_threads(), a.shape[0])
    if workers <= 1 or a.size < (1 << 18):
        a.sort(axis=1)
        return
    bounds = np.linspace(0, a.shape[0], workers + 1).astype(int)

    def sort_block(block: tuple[int, int]) -> bool:
        a[block[0]:block[1]].sort(axis=1)
        return True

    _run_all(sort_block, list(itertools.pairwise(bounds.tolist())), workers)


def _sorted_by_class(s: np.ndarray, t: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per class, scores sorted descending: the rows in that order [C, N], sorted scores
    [C, N], targets [C, N], group ends.

    ``ends[c, i]`` is True where position i is the last of its group of tied scores.
    """
    st = np.ascontiguousarray(s.T)  # [C, N]
    order = np.argsort(-st, axis=1, kind="stable")
    ss = np.take_along_axis(st, order, axis=1)
    ts = np.take_along_axis(np.ascontiguousarray(t.T), order, axis=1)
    ends = np.empty(ss.shape, dtype=bool)
    ends[:, :-1] = ss[:, 1:] != ss[:, :-1]
    ends[:, -1] = True
    return order, ss, ts, ends


# +inf's bits less 2: even, so a key's lowest bit is the target's; see _ap_keys
_FLOAT_KEY_BASE = np.uint64(0x7FF0_0000_0000_0000 - 2)
_T = TypeVar("_T")
_LOCAL = threading.local()
_WORKSPACE_MAX = 1 << 23  # entries (64 MiB) a thread keeps between calls


def _workspace(size: int, dtype: type[np.unsignedinteger] = np.uint64) -> np.ndarray:
    """A buffer of ``size`` entries of ``dtype`` (uint64 or uint32), reused by the calling
    thread across calls.

    A fresh [C, N] key array is tens of MiB: the allocator hands it out as new pages, and
    faulting them in cost 20-30% of the AP computation when other work (scikit-learn in the
    benchmark) ran in between. Each thread keeps one buffer up to ``_WORKSPACE_MAX`` entries.
    """
    words = -(-size * np.dtype(dtype).itemsize // 8)  # uint64 entries that hold them
    buf = getattr(_LOCAL, "buf", None)
    if buf is None or buf.size < words:
        buf = np.empty(words, dtype=np.uint64)
        if words <= _WORKSPACE_MAX:
            _LOCAL.buf = buf
    return buf[:words].view(dtype)[:size]


def _ap_nonnegative(s: np.ndarray, t: np.ndarray, blocks: list[tuple[int, int]], workers: int,
                    out: np.ndarray) -> bool:
    """AP of every class into ``out`` if all scores are finite and >= 0, on ``workers`` threads.

    ``s`` is float64, or float32 (then everything below holds with 32-bit keys).

    Returns False (``out`` left unspecified) when some score is negative, -0.0, NaN or
    infinite: exactly the scores whose bits, read as uint64, are >= those of +inf. That test
    runs on each tile while it is in cache, so valid input needs no separate pass over the
    scores (the min/max of :func:`check_scores_targets` cost ~15% of the whole at (40137, 80)).

    The bits of a non-negative float64 read as uint64 order like the floats and leave the top
    bit 0, so ``(~bits << 1) | target`` is an exact sort key that orders by descending score
    and also carries the target in its lowest bit: one sort of these keys per class replaces
    an argsort (3x slower) or a sort plus binary searches. Within a tie the positives sort
    last, so for the last positive of a tie, its position + 1 is #(s >= tie) and its rank among
    the positives + 1 is TP(s >= tie); everything after the sort works on the positives alone
    (a few per cent of the entries), and on one entry per tie. Per class the result is a
    sequential sum over its ties in score order (``np.bincount``), whatever the block and the
    thread: that is what makes it bit-for-bit the same on any thread count.

    Three rounds, each shared by the threads through :func:`_run_all`: the keys of each block
    of classes (``blocks``), then the sort of every few classes (the round with most of the
    work, in pieces small enough that a thread on a slower CPU takes fewer of them: on this
    project's 2-vCPU machine one vCPU at times ran the same block 25% slower), then each
    block's sums. The rounds run on ``workers`` blocks at a time, so the keys held at once
    are those of ``workers`` blocks (<= 256 classes each), whatever the number of classes.
    """
    n = s.shape[0]
    # float32 scores (a model's outputs, kept as they are by the caller) have exact 32-bit
    # keys, which sort about twice as fast; float64 ones need 64 bits
    kt = np.uint32 if s.dtype == np.float32 else np.uint64
    group_size = max(1, workers)
    widest = max((sum(c1 - c0 for c0, c1 in blocks[g:g + group_size])
                  for g in range(0, len(blocks), group_size)), default=0)  # 0: no class
    buffer = _workspace(widest * n, kt)  # the calling thread's
    return all(_ap_group(s, t, blocks[g:g + group_size], buffer, workers, out)
               for g in range(0, len(blocks), group_size))


def _ap_group(s: np.ndarray, t: np.ndarray, blocks: list[tuple[int, int]], buffer: np.ndarray,
              workers: int, out: np.ndarray) -> bool:
    """The three rounds of :func:`_ap_nonnegative` for ``blocks`` (consecutive), with the
    start of ``buffer`` as their keys [their classes, N]."""
    n, g0 = s.shape[0], blocks[0][0]
    keys = buffer[:(blocks[-1][1] - g0) * n].reshape(-1, n)  # row r: class g0 + r
    blocks = [(c0 - g0, c1 - g0) for c0, c1 in blocks]  # rows of keys from here on
    as_float = [False] * len(blocks)

    def build(i: int) -> bool:
        c0, c1 = blocks[i]
        encoding = _ap_keys(s, t, g0 + c0, g0 + c1, keys[c0:c1])
        as_float[i] = bool(encoding)
        return encoding is not None

    if not _run_all(build, range(len(blocks)), workers):
        return False
    # Sort ~1 MiB of classes at a time and read their positives right away, while those rows
    # are still in cache: a second pass over the whole [C, N] array came from memory and cost
    # about as much as the sort itself.
    step = max(1, (1 << 20) // (keys.itemsize * n))
    chunks = [(a, min(a + step, c1), i) for i, (c0, c1) in enumerate(blocks)
              for a in range(c0, c1, step)]
    found: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0), np.empty(0))] * len(chunks)

    def sort(j: int) -> bool:
        a, b, i = chunks[j]
        found[j] = _ap_sorted_positives(keys[a:b], as_float[i])
        return True

    _run_all(sort, range(len(chunks)), workers)

    def finish(i: int) -> bool:
        c0, c1 = blocks[i]
        # the block's chunks in class order; positions made flat within the block
        mine = [(f + (a - c0) * n, k)
                for (f, k), (a, _, block) in zip(found, chunks, strict=True) if block == i]
        _ap_from_positives(np.concatenate([f for f, _ in mine]),
                           np.concatenate([k for _, k in mine]), n, out[g0 + c0:g0 + c1])
        return True

    _run_all(finish, range(len(blocks)), workers)
    return True


def _ap_keys(s: np.ndarray, t: np.ndarray, c0: int, c1: int, keys: np.ndarray) -> bool | None:
    """The sort keys of classes ``c0:c1`` into ``keys`` ([c1 - c0, N] uint64 or uint32).

    Returns True for float64 keys (sort them as float64), False for integer keys, None when
    some score is negative, -0.0, NaN or infinite (see :func:`_ap_nonnegative`).
    """
    n, cb = s.shape[0], c1 - c0
    kt = keys.dtype.type
    # build the keys in tiles of >= 256 rows and ~64k entries (the caller keeps cb <= 256):
    # transposing tiles that stay in cache is 2-4x faster than one transposed copy of the whole
    # [N, C] block, and tiles that size keep the Python overhead per tile (GIL held) small.
    # One tile buffer written in place (out=): temporaries per operation cost ~20% more
    # (allocation), and adding the bool target is cheaper than or-ing it (a faster cast loop).
    rows = max(256, (1 << 16) // max(cb, 1))
    one, inf_bits = kt(1), np.array(np.inf, dtype=s.dtype).view(kt)
    one_bits = np.array(1.0, dtype=s.dtype).view(kt)
    tile = np.empty((min(rows, n), cb), dtype=kt)
    # float64 scores in [0, 1) (probabilities) get _FLOAT_KEY_BASE - 2 * bits + target
    # instead: the same keys less a constant, so the same order, lowest bit and ties, and all
    # of them positive normal float64s (the smallest is 2**-1022, for the largest score below
    # 1), whose order as floats is their order as integers. numpy's float64 sort of them
    # measured ~15% faster than its uint64 sort. A score >= 1 restarts the block with the
    # integer keys.
    as_float = kt is np.uint64
    r0 = 0
    while r0 < n:
        bits = s[r0:r0 + rows, c0:c1].view(kt)
        k = tile[:len(bits)]
        if cb < s.shape[1]:
            # a block of the columns: copied once, so that the passes below run on contiguous
            # memory (reading the strided block twice cost ~1 ms more per 40 classes of
            # (40137, 80))
            np.copyto(k, bits)
            bits = k
        top = bits.max()
        if top >= inf_bits:
            return None
        if as_float and top >= one_bits:
            as_float, r0 = False, 0
            continue
        if as_float:
            np.left_shift(bits, one, out=k)
            np.subtract(_FLOAT_KEY_BASE, k, out=k)
        else:
            np.invert(bits, out=k)
            np.left_shift(k, one, out=k)
        np.add(k, t[r0:r0 + rows, c0:c1], out=k)  # the lowest bit is 0 here: add == or
        keys[:, r0:r0 + rows] = k.T
        r0 += rows
    return as_float


def _ap_sorted_positives(part: np.ndarray, as_float: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sort the key rows ``part`` [k, N] in place; return the flat positions of their
    positives (descending score order within each row) and those positives' keys.

    A positive has flag bit 1, the lowest bit of the key's least significant byte, so only
    that byte of each key is read; its lowest bit goes to a uint8 buffer read as bool, since
    np.flatnonzero is ~5x faster on bool than on uint8.
    """
    size = part.itemsize
    (part.view(np.float64) if as_float else part).sort(axis=1)
    byte = 0 if sys.byteorder == "little" else size - 1
    flag = np.empty(part.shape, dtype=np.uint8)
    np.bitwise_and(part.view(np.uint8)[:, byte::size], 1, out=flag)
    f = np.flatnonzero(flag.view(np.bool_))
    return f, part.reshape(-1)[f]


def _ap_from_positives(flat: np.ndarray, pos_keys: np.ndarray, n: int, out: np.ndarray) -> None:
    """AP of a block of classes into ``out`` [cb] from its positives' flat positions in the
    block's sorted [cb, N] keys (descending score order within each class) and their keys."""
    cb = len(out)
    m = len(flat)
    cls = flat // n
    n_pos = np.bincount(cls, minlength=cb)
    end = np.ones(m, dtype=bool)  # last positive of a (class, score) tie
    np.not_equal(pos_keys[1:], pos_keys[:-1], out=end[:-1])
    end[:-1] |= cls[1:] != cls[:-1]
    # each tie of positives adds (its size) x (the precision at its threshold): TP and
    # #predicted up to its last positive, which are that positive's rank among the class's
    # positives + 1 and its position in the class's descending order + 1
    e = np.flatnonzero(end)
    ce = cls[e]
    size = np.diff(e, prepend=-1)
    first = np.cumsum(n_pos) - n_pos  # the class's first positive in flat
    precision = (e - first[ce] + 1) / (flat[e] - ce * n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:] = np.bincount(ce, weights=size * precision, minlength=cb) / n_pos
    out[n_pos == 0] = np.nan


def _ap_searchsorted(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """AP per class for any finite scores: one sort per class, binary searches for the positives.

    AP_c = (1 / P_c) * sum over the positives i of TP(s >= s_i) / #(s >= s_i).
    """
    st = np.array(s.T, order="C", copy=True)  # [C, N], our own copy: it is sorted in place
    tt = np.ascontiguousarray(t.T)  # [C, N]
    n_cls, n = st.shape
    n_pos = tt.sum(axis=1)  # [C]
    width = max(int(n_pos.max()), 1)
    # positives' scores, ascending within each class, padded with +inf: [C, width]
    cls, ex = np.nonzero(tt)  # grouped by class
    slot = np.arange(len(cls)) - (np.cumsum(n_pos) - n_pos)[cls]
    pos_sorted = np.full((n_cls, width), np.inf)
    pos_sorted[cls, slot] = st[cls, ex]
    pos_sorted.sort(axis=1)
    _sort_rows_inplace(st)  # [C, N] ascending
    all_sorted = torch.from_numpy(st)
    pos_t = torch.from_numpy(pos_sorted)
    n_ge = n - torch.searchsorted(all_sorted, pos_t).numpy()  # [C, width] #(s >= s_i)
    tp_ge = n_pos[:, None] - torch.searchsorted(pos_t, pos_t).numpy()  # [C, width]
    valid = np.arange(width)[None, :] < n_pos[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(valid, tp_ge / np.maximum(n_ge, 1), 0.0)
        return np.where(n_pos > 0, precision.sum(axis=1) / n_pos, np.nan)


def average_precision_per_class(scores: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """Average precision of each class, [C] float64; NaN for a class without positives.

    AP_c = (1 / P_c) * sum over the positives i of TP(s >= s_i) / #(s >= s_i): each positive
    contributes the precision at the lowest threshold that still includes it (and every score
    tied with it), which is scikit-learn's step-wise sum over distinct thresholds.

    Any finite scores take MLLB's C++ kernel first (``tasks/_native_ap.py``: only the
    positives are sorted, the negatives counted through a table; on ``torch.get_num_threads()``
    OpenMP threads, the same bits as the numpy path below on any thread count). Without it
    (``MLLB_AP_KERNEL=0``, or no C++ compiler), non-negative scores (probabilities) take the
    numpy fast path: one sort per class of keys that
    carry score and target together (32-bit keys for float32 scores, 64-bit for any other
    dtype, which is computed in float64; sorted as float64 when every score of a block is
    below 1), classes split in blocks that the calling thread and ``torch.get_num_threads() -
    1`` pool threads take in turn (numpy releases the GIL). Every class is computed by the same
    operations whatever the block and the thread, so the result does not depend on the thread
    count (the order of the positions, ties and sums is the same with either key). Scores with a
    negative value (logits) take a slower exact path (sort plus binary searches).

    Raises:
        ValueError: as :func:`check_scores_targets`.
    """
    s, t = _converted(scores, targets, keep_float32=True)
    n_cls = s.shape[1]
    workers = min(torch.get_num_threads(), n_cls)
    if s.size < (1 << 18):
        workers = 1  # thread start-up would cost more than it saves
    if _native_ap.available():
        width = _native_ap.block_width(*s.shape, _WORKSPACE_MAX)
        work = _workspace(width * s.shape[0], np.uint32 if s.dtype == np.float32 else np.uint64)
        ap = _native_ap.average_precision(s, t, workers, work.view(s.dtype))
        if ap is not None:
            return ap
        # a NaN or infinite score: the general path below names it
        s, t = check_scores_targets(s, t)
        return _ap_searchsorted(s, t)
    out = np.empty(n_cls)
    # one block per thread, and blocks of <= 256 classes (cache-sized tiles, see
    # _ap_keys); more, smaller blocks measured slower (per-call overhead)
    n_blocks = min(n_cls, max(workers, -(-n_cls // 256)))
    bounds = np.linspace(0, n_cls, n_blocks + 1).astype(int)
    blocks = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    if _ap_nonnegative(s, t, blocks, workers, out):
        return out
    # a negative (or non-finite) score somewhere: validate, then the general path
    s, t = check_scores_targets(s, t)
    return _ap_searchsorted(s, t)


def _run_all(fn: Callable[[_T], bool], items: Sequence[_T], workers: int) -> bool:
    """``all(fn(x) for x in items)`` on ``workers`` threads: the calling thread and
    ``workers - 1`` pool threads take the next item from one shared queue until none is left.

    Stops handing out items once one returns False. The calling thread works instead of
    waiting because, on this project's 2-vCPU machines, two pool threads woken together after
    other work (scikit-learn in the benchmark) often ran on the same CPU for the whole call:
    AP at (40137, 80) took 29-43 ms instead of 22 ms, worse than one thread (38 ms); with the
    calling thread working it took 22-23 ms. Which thread computes a block does not change its
    result (see :func:`_ap_nonnegative`).
    """
    if workers <= 1 or len(items) <= 1:
        return all(fn(x) for x in items)
    queue = iter(items)
    lock = threading.Lock()
    failed = threading.Event()
    done = object()

    def drain() -> None:
        while not failed.is_set():
            with lock:
                item = next(queue, done)
            if item is done:
                return
            try:
                ok = fn(item)  # type: ignore[arg-type]
            except BaseException:
                failed.set()  # the other threads take no more items
                raise
            if not ok:
                failed.set()

    helpers = [_thread_pool(workers - 1).submit(drain)
               for _ in range(min(workers, len(items)) - 1)]
    try:
        drain()
    finally:
        # never return (or raise) while a helper still works on the caller's buffers
        for h in helpers:
            h.exception()
    for h in helpers:
        h.result()  # re-raises a helper's exception here
    return not failed.is_set()


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads, kept between calls.

    Starting a pool per call cost about as much as the second thread saved at (40137, 80).
    """
    pool = _POOLS.get(workers)
    if pool is None:
        pool = _POOLS[workers] = ThreadPoolExecutor(max_workers=workers,
                                                    thread_name_prefix="mllb-metrics")
    return pool


class MeanAP(NamedTuple):
    """mAP over the classes that have a positive, with the count of skipped classes."""

    value: float
    classes_scored: int
    classes_skipped: int
    skip_policy: str = "classes without a positive in the split are excluded from the mean"


MISSING_AP = ("skip", "zero")


def mean_average_precision(scores: ArrayLike, targets: ArrayLike,
                           missing: Literal["skip", "zero"] = "skip") -> MeanAP:
    """Mean of :func:`average_precision_per_class`; ``missing`` says what a class without a
    positive in the split counts as.

    ``"skip"`` (MLLB's ``map``): left out of the mean (``classes_skipped`` of them; NaN when no
    class has a positive). ``"zero"`` (``map_zero``, the ASL / ML-Decoder helpers'
    convention): AP 0, the mean over all C (``classes_scored`` = C, ``classes_skipped`` = 0).

    >>> mean_average_precision([[0.9, 0.1], [0.2, 0.8]], [[1, 0], [0, 0]], missing="zero").value
    0.5
    """
    if missing not in MISSING_AP:
        raise ValueError(f"missing must be one of {MISSING_AP}, got {missing!r}")
    return _mean_of_ap(average_precision_per_class(scores, targets), missing)


def _mean_of_ap(ap: np.ndarray, missing: Literal["skip", "zero"]) -> MeanAP:
    """:func:`mean_average_precision` of the per-class AP [C] (NaN: no positive)."""
    scored = ~np.isnan(ap)
    if missing == "zero":
        return MeanAP(float(np.where(scored, ap, 0.0).mean()), len(ap), 0,
                      "classes without a positive in the split score AP 0 and count in the mean")
    value = float(ap[scored].mean()) if scored.any() else float("nan")
    return MeanAP(value, int(scored.sum()), int((~scored).sum()))


def _predictions(s: np.ndarray, threshold: float | ArrayLike, top_k: int | None) -> np.ndarray:
    thr = _to_numpy(threshold).astype(np.float64) if not np.isscalar(threshold) else threshold
    if not np.isscalar(thr) and np.shape(thr) != (s.shape[1],):
        raise ValueError(
            f"threshold must be a number or one value per class ({s.shape[1]}), "
            f"got shape {np.shape(thr)}"
        )
    pred = s >= thr
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        order = np.argsort(-s, axis=1, kind="stable")[:, :top_k]
        in_top = np.zeros_like(pred)
        np.put_along_axis(in_top, order, True, axis=1)
        pred &= in_top
    return pred


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _harmonic(a: float, b: float) -> float:
    return float(2 * a * b / (a + b)) if a + b > 0 else 0.0


def label_f1_scores(
    scores: ArrayLike,
    targets: ArrayLike,
    threshold: float | ArrayLike = 0.5,
    top_k: int | None = None,
) -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 (ML-GCN/ASL definitions), plus the zero-denominator counts.

    Args:
        scores: [N, C] probabilities.
        targets: [N, C] in {0, 1}.
        threshold: predict a label when its score >= threshold (a number or [C] per class).
        top_k: also require the label to be among the row's top_k scores (the "top-3" variant).

    Returns:
        ``CP, CR, CF1, OP, OR, OF1`` (fractions) and ``classes_without_predictions``,
        ``classes_without_positives`` (counts, as floats).
    """
    s, t = check_scores_targets(scores, targets)
    pred = _predictions(s, threshold, top_k)
    tp = (pred & t).sum(axis=0)  # [C]
    n_pred = pred.sum(axis=0)
    n_pos = t.sum(axis=0)
    cp = float(_ratio(tp, n_pred).mean())
    cr = float(_ratio(tp, n_pos).mean())
    op = float(_ratio(tp.sum(), n_pred.sum()))
    orec = float(_ratio(tp.sum(), n_pos.sum()))
    return {
        "CP": cp, "CR": cr, "CF1": _harmonic(cp, cr),
        "OP": op, "OR": orec, "OF1": _harmonic(op, orec),
        "classes_without_predictions": float((n_pred == 0).sum()),
        "classes_without_positives": float((n_pos == 0).sum()),
    }


def classification_scores(
    scores: ArrayLike, targets: ArrayLike, threshold: float | ArrayLike = 0.5
) -> dict[str, float]:
    """Micro/macro precision, recall, F1, hamming loss and subset accuracy (sklearn definitions).

    Macro values average per-class values over all C classes with 0 for a zero denominator
    (``zero_division=0``); macro F1 is the mean of per-class F1, not the harmonic mean of CP/CR.
    """
    s, t = check_scores_targets(scores, targets)
    pred = _predictions(s, threshold, None)
    tp = (pred & t).sum(axis=0)
    n_pred = pred.sum(axis=0)
    n_pos = t.sum(axis=0)
    micro_p = float(_ratio(tp.sum(), n_pred.sum()))
    micro_r = float(_ratio(tp.sum(), n_pos.sum()))
    return {
        "micro_precision": micro_p,
        "micro_recall": micro_r,
        "micro_f1": float(_ratio(2 * tp.sum(), n_pred.sum() + n_pos.sum())),
        "macro_precision": float(_ratio(tp, n_pred).mean()),
        "macro_recall": float(_ratio(tp, n_pos).mean()),
        "macro_f1": float(_ratio(2 * tp, n_pred + n_pos).mean()),
        "hamming_loss": float((pred != t).mean()),
        "subset_accuracy": float((pred == t).all(axis=1).mean()),
    }


def _top_relevance(s: np.ndarray, t: np.ndarray, k: int) -> np.ndarray:
    """Relevance (0/1) of the k best-scored labels of each row, ties by lower index: [N, k]."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, s.shape[1])
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(t, order, axis=1)


def precision_at_k(scores: ArrayLike, targets: ArrayLike, k: int) -> float:
    """Mean over rows of (relevant labels among the top k) / k."""
    s, t = check_scores_targets(scores, targets)
    rel = _top_relevance(s, t, k)
    return float(rel.sum(axis=1).mean() / k)


def ndcg_at_k(scores: ArrayLike, targets: ArrayLike, k: int) -> float:
    """Mean over rows of DCG@k / ideal DCG@k, gains 1/log2(rank + 1); 0 for rows w/o positives."""
    s, t = check_scores_targets(scores, targets)
    return float(_ndcg_rows(_top_relevance(s, t, k), t.sum(axis=1), k).mean())


def _ndcg_rows(rel: np.ndarray, n_pos: np.ndarray, k: int) -> np.ndarray:
    discount = 1.0 / np.log2(np.arange(2, rel.shape[1] + 2))  # [k]
    dcg = rel @ discount
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(n_pos, rel.shape[1])]
    return _ratio(dcg, ideal)


def ranking_scores(
    scores: ArrayLike, targets: ArrayLike, ks: tuple[int, ...] = (1, 3, 5)
) -> dict[str, float]:
    """``P@k`` and ``nDCG@k`` for every k in ``ks`` from one sort."""
    s, t = check_scores_targets(scores, targets)
    return {key: float(values.mean() / divisor)
            for key, (values, divisor) in _ranking_rows(s, t, ks).items()}


def _ranking_rows(s: np.ndarray, t: np.ndarray,
                  ks: tuple[int, ...]) -> dict[str, tuple[np.ndarray, int]]:
    """``P@k`` and ``nDCG@k`` per row: {name: (values [N], divisor)}, the metric being
    ``values.mean() / divisor`` (each row's value depends on that row alone)."""
    rel = _top_relevance(s, t, max(ks))
    n_pos = t.sum(axis=1)
    out: dict[str, tuple[np.ndarray, int]] = {}
    for k in ks:
        top = rel[:, :k]
        out[f"P@{k}"] = (top.sum(axis=1), k)
        out[f"nDCG@{k}"] = (_ndcg_rows(top, n_pos, k), 1)
    return out


def tune_class_thresholds(scores: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """Per-class thresholds [C] that maximize each class's F1 on this split (AAM paper, 4.5).

    Candidates are the distinct scores of the class; the threshold returned lies halfway between
    the best candidate and the next lower distinct score (so it transfers to another split
    without favouring either side), or equals the lowest score when predicting every example is
    best. Ties in F1 go to the higher threshold (fewer predictions). A class without positives
    gets ``inf`` (never predicted). Apply with ``label_f1_scores(..., threshold=thresholds)``.
    """
    s, t = check_scores_targets(scores, targets)
    _, ss, ts, ends = _sorted_by_class(s, t)
    tp = np.cumsum(ts, axis=1, dtype=np.float64)  # [C, N]
    n_pos = tp[:, -1:]
    n_pred = np.arange(1, tp.shape[1] + 1)
    f1 = np.where(ends, 2 * tp / (n_pred + n_pos), -1.0)  # F1 = 2TP / (#pred + #pos)
    best = f1.argmax(axis=1)  # [C]
    rows = np.arange(ss.shape[0])
    below = np.where(best + 1 < ss.shape[1], ss[rows, np.minimum(best + 1, ss.shape[1] - 1)],
                     ss[rows, best])
    thresholds = (ss[rows, best] + below) / 2
    return np.where(n_pos[:, 0] > 0, thresholds, np.inf)


def tune_threshold(scores: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """The global threshold maximizing micro F1 of ``scores > threshold`` against ``targets``.

    Cuts are only placed between distinct scores (tied scores are predicted together); the
    threshold is the midpoint of the two scores around the best cut. Returns (threshold, F1).
    DocRED's ``dev_tuned`` decision rule (MRN and ATLOP tune theirs the same way).
    """
    s, y = np.asarray(scores).ravel(), np.asarray(targets).ravel().astype(np.float64)
    gold = y.sum()
    if gold == 0 or s.size == 0:
        return 0.5, 0.0
    order = np.argsort(-s, kind="stable")
    s, tp = s[order], np.cumsum(y[order])
    n_pred = np.arange(1, s.size + 1)
    f1 = 2 * tp / (n_pred + gold)
    valid = np.ones(s.size, dtype=bool)
    valid[:-1] = s[:-1] > s[1:]
    f1 = np.where(valid, f1, -1.0)
    k = int(np.argmax(f1))
    if f1[k] <= 0:  # nothing right at any cut: predict nothing
        return float(s[0]), 0.0
    below = s[k + 1] if k + 1 < s.size else s[k] - 1.0
    return float((s[k] + below) / 2), float(f1[k])


def adaptive_f1_scores(
    tune_scores: ArrayLike,
    tune_targets: ArrayLike,
    eval_scores: ArrayLike,
    eval_targets: ArrayLike,
) -> dict[str, float]:
    """OF1/CF1 (and OP/OR/CP/CR) on the eval split with thresholds tuned on another split."""
    thresholds = tune_class_thresholds(tune_scores, tune_targets)
    scores = label_f1_scores(eval_scores, eval_targets, threshold=thresholds)
    return {f"adaptive_{k}": v for k, v in scores.items() if k[0] in "CO"}


class ScoreAccumulator:
    """Collects (index, scores, targets) batches; ``compute()`` returns them in index order.

    Metrics are then computed once over the whole split, so results cannot depend on batching
    (what torchmetrics calls "streaming equals concatenated").
    """

    def __init__(self) -> None:
        self._index: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []

    def update(self, scores: ArrayLike, targets: ArrayLike, index: ArrayLike | None = None) -> None:
        """Add one batch: scores [B, C], targets [B, C], optional example indices [B]."""
        s, t = _to_numpy(scores), _to_numpy(targets)
        if s.shape != t.shape or s.ndim != 2:
            raise ValueError(f"batch scores {s.shape} and targets {t.shape} must both be [B, C]")
        start = sum(len(i) for i in self._index)
        idx = np.arange(start, start + len(s)) if index is None else _to_numpy(index).reshape(-1)
        if len(idx) != len(s):
            raise ValueError(f"index has {len(idx)} entries for a batch of {len(s)}")
        self._index.append(idx)
        self._scores.append(s)
        self._targets.append(t)

    def compute(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(index [N], scores [N, C], targets [N, C]) sorted by index; duplicates are an error."""
        if not self._index:
            raise ValueError("no batch was added")
        idx = np.concatenate(self._index)
        order = np.argsort(idx, kind="stable")
        idx = idx[order]
        dup = np.flatnonzero(idx[1:] == idx[:-1])
        if dup.size:
            raise ValueError(f"example index {idx[dup[0]]} was added more than once")
        return idx, np.concatenate(self._scores)[order], np.concatenate(self._targets)[order]


# -- the metric registry ----------------------------------------------------------------------
# Every metric a task may report, by name: how to compute it, which way is better, what it needs
# from the decision rule, and whether the leaderboard's paired bootstrap can recompute it.

Needs = Literal["scores", "decisions", "rule"]
NEEDS: tuple[str, ...] = ("scores", "decisions", "rule")


@dataclass(frozen=True)
class _Pick:
    """``family(scores, targets, **kwargs)[key]``: one metric of a multi-metric function.

    ``compute_metrics`` calls each family once per evaluation and picks every declared metric
    from that one result (one sort for P@k and nDCG@k, one count for CP..OF1).
    """

    family: Callable[..., Mapping[str, float]]
    key: str
    kwargs: tuple[tuple[str, Any], ...] = ()

    def call_kwargs(self, threshold: Any = None) -> dict[str, Any]:
        """Keyword arguments of the family call (plus ``threshold`` when given)."""
        kw = dict(self.kwargs)
        if threshold is not None:
            kw["threshold"] = threshold
        return kw

    def __call__(self, scores: ArrayLike, targets: ArrayLike, threshold: Any = None) -> float:
        """The metric alone (``threshold`` for the decision-based metrics)."""
        return float(self.family(scores, targets, **self.call_kwargs(threshold))[self.key])


@dataclass(frozen=True)
class MetricSpec:
    """One named metric of ``METRICS``.

    Attributes:
        name: the key tasks report it under (results JSON ``metrics``).
        higher_is_better: the direction (results JSON ``higher_is_better``, leaderboard bold).
        needs: what the value depends on besides scores and targets:
            ``"scores"``: nothing; ``fn(scores, targets)`` (mAP, P@k, nDCG@k).
            ``"decisions"``: the binary decisions ``scores >= threshold`` at the decision rule's
            global threshold ``rule.value``; ``fn(scores, targets, threshold)`` (CP..OF1, their
            top-3 variants, micro/macro F1, hamming loss).
            ``"rule"``: the rest of the decision rule: ``fn(scores, targets, thresholds [C])``
            with the rule's per-class thresholds (the ``adaptive_*`` metrics), or ``fn`` None when
            the task computes it from the whole rule in ``Task.extra_metrics`` (DocRED's scorer).
        resamplable: recomputable from (scores, targets) alone (with the run's global threshold
            for ``"decisions"`` metrics), so the leaderboard's paired bootstrap can redraw test
            examples; see :func:`resamplable_metrics`.
        doc: one line saying what it is.
        fn: the pure function (None: computed by its task, see ``needs``).
    """

    name: str
    higher_is_better: bool
    needs: Needs
    resamplable: bool
    doc: str
    fn: Callable[..., float] | None = None

    def __post_init__(self) -> None:
        if self.needs not in NEEDS:
            raise ValueError(f"metric {self.name!r}: needs must be one of {NEEDS}, "
                             f"got {self.needs!r}")
        if self.fn is None and self.needs != "rule":
            raise ValueError(f"metric {self.name!r}: only a 'rule' metric may be computed by its "
                             f"task (fn None)")
        if self.fn is None and self.resamplable:
            raise ValueError(f"metric {self.name!r}: a metric without fn cannot be resamplable")


METRICS: Registry[MetricSpec] = Registry("metric")


def register_metric(
    name: str, *, higher_is_better: bool, needs: Needs, resamplable: bool, doc: str = "",
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator registering a metric function under ``name`` (see :class:`MetricSpec`).

    ``@register_metric("coverage_err", higher_is_better=False, needs="scores", resamplable=True)``
    on ``def coverage_err(scores, targets) -> float``; a task then lists "coverage_err" in its
    ``metrics``. The function is returned unchanged.
    """

    def decorator(fn: Callable[..., float]) -> Callable[..., float]:
        METRICS.add(name, MetricSpec(name, higher_is_better, needs, resamplable,
                                     doc or (fn.__doc__ or "").strip().split("\n")[0], fn))
        return fn

    return decorator


def _register_builtin_metrics() -> None:
    """The metrics of the built-in tasks (names as in the results files since schema 1.0)."""
    def add(name: str, needs: Needs, doc: str, fn: Callable[..., float] | None,
            higher: bool = True, resamplable: bool = True) -> None:
        METRICS.add(name, MetricSpec(name, higher, needs, resamplable, doc, fn))

    add("map", "scores", "mean average precision over the classes with a positive (MeanAP)",
        lambda s, t: mean_average_precision(s, t).value)
    add("map_zero", "scores", "mean average precision over all classes, AP 0 for a class "
        "without a positive (the ASL / ML-Decoder helpers' mAP, as a fraction)",
        lambda s, t: mean_average_precision(s, t, missing="zero").value)
    words = {"CP": "per-class precision, mean over classes", "CR": "per-class recall, mean over "
             "classes", "CF1": "harmonic mean of CP and CR", "OP": "overall precision",
             "OR": "overall recall", "OF1": "harmonic mean of OP and OR"}
    for key, what in words.items():
        add(key, "decisions", f"{what} at the rule's threshold", _Pick(label_f1_scores, key))
        add(f"{key}_top3", "decisions", f"{what}, a label predicted only among the row's 3 "
            f"best scores", _Pick(label_f1_scores, key, (("top_k", 3),)))
        # the thresholds are part of the run (tuned on dev); a resample needs the rule's per_class
        add(f"adaptive_{key}", "rule", f"{what} at per-class thresholds tuned on dev "
            f"(AAM paper 4.5; rule.per_class)", _Pick(label_f1_scores, key), resamplable=False)
    for key, what in (("micro_f1", "micro F1"), ("macro_f1", "macro F1 (mean of per-class F1)"),
                      ("micro_precision", "micro precision"), ("micro_recall", "micro recall"),
                      ("macro_precision", "macro precision"), ("macro_recall", "macro recall"),
                      ("subset_accuracy", "fraction of rows with every label right")):
        add(key, "decisions", f"{what} at the rule's threshold",
            _Pick(classification_scores, key))
    add("hamming_loss", "decisions", "fraction of wrong (row, label) decisions",
        _Pick(classification_scores, "hamming_loss"), higher=False)
    for k in (1, 3, 5):
        ks = (("ks", (1, 3, 5)),)
        add(f"P@{k}", "scores", f"precision among each row's {k} best scores",
            _Pick(ranking_scores, f"P@{k}", ks))
        add(f"nDCG@{k}", "scores", f"nDCG of each row's {k} best scores",
            _Pick(ranking_scores, f"nDCG@{k}", ks))
    docred = {"ign_f1": "F1 ignoring the test facts seen in the training split (primary)",
              "f1": "micro F1 over relation facts", "precision": "precision over relation facts",
              "recall": "recall over relation facts", "ign_precision": "precision ignoring the "
              "facts seen in training", "intra_f1": "F1 over facts with an intra-sentence "
              "mention pair", "inter_f1": "F1 over facts without one"}
    for key, what in docred.items():
        add(key, "rule", f"DocRED scorer: {what}; computed by the task from the official "
            f"evaluation semantics", None, resamplable=False)
    # entity recognition (tasks/ner): seqeval strict IOB2 over the decoded B/I scores, computed
    # by the task (Task.extra_metrics) from its decision rule; other types' f1_<TYPE> are added
    # by tasks.ner.task.type_metric when a data set has them
    ner = {"entity_micro_f1": "entity-level micro F1 (primary)", "entity_macro_f1":
           "entity-level macro F1 (mean over the types)", "entity_precision":
           "entity-level micro precision", "entity_recall": "entity-level micro recall"}
    ner.update({f"f1_{t}": f"entity-level F1 of type {t}"
                for t in ("PER", "ORG", "LOC", "TIME", "NUM", "MISC")})
    for key, what in ner.items():
        add(key, "rule", f"NER (seqeval, strict IOB2): {what}; computed by the task from the "
            f"decoded tag sequences", None, resamplable=False)


_register_builtin_metrics()


def higher_is_better(names: Iterable[str]) -> dict[str, bool]:
    """{name: direction} of the named metrics.

    >>> higher_is_better(["map", "hamming_loss"])
    {'map': True, 'hamming_loss': False}
    """
    return {n: METRICS.get(n).higher_is_better for n in names}


def compute_metrics(
    names: Iterable[str],
    scores: ArrayLike,
    targets: ArrayLike,
    threshold: float = 0.5,
    per_class: ArrayLike | None = None,
) -> dict[str, float]:
    """The named metrics of ``scores`` [N, C] against ``targets`` [N, C], in ``names`` order.

    ``threshold`` is the global threshold of the ``"decisions"`` metrics, ``per_class`` the
    per-class thresholds [C] of the ``"rule"`` metrics (None: asking for one is a ValueError).
    Metrics sharing a multi-metric function are computed from one call of it.

    >>> compute_metrics(["P@1", "OF1"], [[0.9, 0.2], [0.4, 0.6]], [[1, 0], [1, 0]])
    {'P@1': 0.5, 'OF1': 0.5}
    """
    s, t = check_scores_targets(scores, targets)
    memo: dict[tuple[Any, ...], Mapping[str, float]] = {}
    out: dict[str, float] = {}
    for name in names:
        spec = METRICS.get(name)
        if spec.fn is None:
            raise ValueError(f"metric {name!r} is computed by its task (Task.extra_metrics), "
                             f"not from scores and targets")
        arg: Any = None
        if spec.needs == "decisions":
            arg = float(threshold)
        elif spec.needs == "rule":
            if per_class is None:
                raise ValueError(
                    f"metric {name!r} needs per-class thresholds: evaluate with the decision "
                    f"rule of Task.calibrate(dev index, dev scores) (policy "
                    f"'per_class_dev_tuned')")
            arg = _to_numpy(per_class).astype(np.float64)
        if isinstance(spec.fn, _Pick):
            key = (spec.fn.family, spec.fn.kwargs, spec.needs)
            if key not in memo:
                memo[key] = spec.fn.family(s, t, **spec.fn.call_kwargs(arg))
            out[name] = float(memo[key][spec.fn.key])
        else:
            out[name] = float(spec.fn(s, t) if arg is None else spec.fn(s, t, arg))
    return out


def metric_function(name: str, threshold: float = 0.5) -> Callable[[ArrayLike, ArrayLike], float]:
    """``f(scores, targets) -> float`` recomputing a resamplable metric (see MetricSpec).

    ``threshold`` is the run's global decision threshold (results ``threshold.value``); only
    ``"decisions"`` metrics use it. Raises ValueError for a metric that is not resamplable.

    >>> metric_function("P@1")([[0.9, 0.2], [0.4, 0.6]], [[1, 0], [1, 0]])
    0.5
    """
    spec = METRICS.get(name)
    if not spec.resamplable or spec.fn is None:
        raise ValueError(f"metric {name!r} cannot be recomputed from scores and targets alone")
    fn = spec.fn
    if spec.needs == "decisions":
        return lambda s, t: float(fn(s, t, threshold))
    return lambda s, t: float(fn(s, t))


def f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """Micro F1 from summed counts [..., 3] = (correct, predicted, gold); 0 where undefined.

    Vectorized over leading axes: the bootstrap passes [R, 3], one row per resample.
    """
    c = np.asarray(counts, dtype=np.float64)
    total = c[..., 1] + c[..., 2]
    return np.divide(2 * c[..., 0], total, out=np.zeros_like(total), where=total > 0)


def ign_f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """DocRED's Ign F1 from summed counts [..., 4] = (correct, correct_in_train, predicted, gold).

    The official evaluation's formula (``tasks/docred/scorer.py``): Ign precision =
    (correct - correct_in_train) / (predicted - correct_in_train), recall = correct / gold.
    """
    c = np.asarray(counts, dtype=np.float64)
    den = c[..., 2] - c[..., 1]
    p = np.divide(c[..., 0] - c[..., 1], den, out=np.zeros_like(den), where=den > 0)
    r = np.divide(c[..., 0], c[..., 3], out=np.zeros_like(den), where=c[..., 3] > 0)
    return np.divide(2 * p * r, p + r, out=np.zeros_like(den), where=p + r > 0)


# metric name -> (column names of its per-example counts, summed counts [..., K] -> value):
# metrics that are ratios of counts summed over test examples (a document, a sentence), so the
# leaderboard's bootstrap resamples a task's saved per-example counts (Task.example_counts)
# when the scores themselves are too large to publish (DocRED: ~180k pairs x 97 relations)
COUNTED_METRICS: dict[str, tuple[tuple[str, ...], Callable[[np.ndarray], np.ndarray]]] = {
    "entity_micro_f1": (("correct", "predicted", "gold"), f1_from_counts),
    "ign_f1": (("correct", "correct_in_train", "predicted", "gold"), ign_f1_from_counts),
}


def resamplable_metrics(threshold: float = 0.5) -> dict[str, Callable[[ArrayLike, ArrayLike],
                                                                      float]]:
    """Metric name -> ``f(scores, targets)`` for every resamplable metric (the bootstrap's)."""
    return {name: metric_function(name, threshold) for name in METRICS.names()
            if METRICS.get(name).resamplable}


Draw = Callable[[np.ndarray], float]  # the metric of the rows i of a prepared split


def resampler(name: str) -> Callable[[np.ndarray, np.ndarray], Draw | None] | None:
    """The bootstrap's shortcut for metric ``name``: ``prepare(scores, targets)`` does the work
    that every draw of rows shares once, and returns ``draw(i)``, the metric of the rows ``i``
    (any index array, repeats included): the same float as the metric computed on
    ``scores[i], targets[i]``, bit for bit. None for a metric without one; ``prepare`` returns
    None for inputs its shortcut does not cover (the caller then recomputes per draw).

    * ``P@k``, ``nDCG@k``: means over rows; each row's value is computed once, and a draw is
      ``float(values[i].mean() / divisor)`` (``ranking_scores``'s own operations).
    * ``map``, ``map_zero``: scores that take AP's fast path (finite, >= 0), see
      :func:`_weighted_ap`.

    The leaderboard's paired bootstrap draws 1,000 resamples per run (``leaderboard.stats``).
    """
    fn = METRICS.get(name).fn if name in METRICS.names() else None
    if isinstance(fn, _Pick) and fn.family is ranking_scores:
        return functools.partial(_ranking_draws, fn.key, dict(fn.kwargs).get("ks", (1, 3, 5)))
    if name in ("map", "map_zero"):
        return functools.partial(_map_draws, "zero" if name == "map_zero" else "skip")
    return None


def _ranking_draws(key: str, ks: tuple[int, ...], scores: np.ndarray,
                   targets: np.ndarray) -> Draw:
    """``resampler``'s ``P@k`` / ``nDCG@k``: per-row values once (``ranking_scores``'s
    ``_ranking_rows``), a mean per draw."""
    values, divisor = _ranking_rows(*check_scores_targets(scores, targets), ks)[key]
    return lambda i: float(values[i].mean() / divisor)


def _map_draws(missing: Literal["skip", "zero"], scores: np.ndarray,
               targets: np.ndarray) -> Draw | None:
    """``resampler``'s ``map`` / ``map_zero``: :func:`_weighted_ap` per draw, reduced over the
    classes as :func:`mean_average_precision` reduces."""
    ap_of = _weighted_ap(scores, targets)
    if ap_of is None:
        return None
    return lambda i: _mean_of_ap(ap_of(i), missing).value


def _weighted_ap(scores: np.ndarray,
                 targets: np.ndarray) -> Callable[[np.ndarray], np.ndarray] | None:
    """AP per class [C] of the rows ``i`` of a split, from one sort per class of the whole
    split; None unless every score is finite and >= 0 (AP's fast path, whose arithmetic this
    repeats).

    A draw is a multiset of rows: with w = how often each row is drawn, a tie of scores that
    holds a positive adds (drawn positives in it) x TP / #predicted at its score, where TP and
    #predicted are the drawn positives and drawn rows scoring at least that much: the integers
    that ``_ap_from_positives`` derives from positions in the drawn rows' sorted keys. Its
    operations follow: integer ratios, then per class a sequential sum over the ties in
    descending score order (``np.bincount``), divided by the class's drawn positives; so the
    result is the same float. A draw costs a gather and a prefix sum over [C, N] instead of a
    sort of every class.
    """
    s, t = _converted(scores, targets)  # float64, bool
    bits = s.view(np.uint64)
    if not (bits < np.array(np.inf).view(np.uint64)).all():  # negative, -0.0, NaN or inf
        return None
    n, c = s.shape
    order, _, ts, last = _sorted_by_class(s, t)  # [C, N] each, descending score
    tie = np.cumsum(last, axis=1) - last  # [C, N] tie number within the class
    cls, pos = np.nonzero(ts)  # positives, class-major
    pos_tie = tie[cls, pos]
    key = cls * n + pos_tie
    new = np.ones(len(key), dtype=bool)
    np.not_equal(key[1:], key[:-1], out=new[1:])
    starts = np.flatnonzero(new)  # the first positive of each tie that holds one
    g_cls = cls[starts]  # [G] the class of each such tie
    # the flat [C, N] position of each such tie's last row (its #predicted)
    tie_last = np.flatnonzero(last.reshape(-1))  # class-major: ties in order
    tie_first = np.concatenate([[0], np.cumsum(last.sum(axis=1))[:-1]])  # [C] first tie index
    g_end = tie_last[tie_first[g_cls] + pos_tie[starts]]  # [G]
    pos_rows = order[cls, pos]  # the positives' rows, grouped by tie

    def ap_of(i: np.ndarray) -> np.ndarray:
        w = np.bincount(i, minlength=n)  # [N] how often each row is drawn
        drawn = w[order]  # [C, N]
        np.cumsum(drawn, axis=1, out=drawn)  # drawn rows scoring at least each position
        size = np.add.reduceat(w[pos_rows], starts)  # [G] drawn positives in each tie
        keep = size > 0  # ties without a drawn positive are not in the drawn keys
        size, g = size[keep], g_cls[keep]
        predicted = drawn.reshape(-1)[g_end[keep]]
        n_pos = np.bincount(g, weights=size, minlength=c).astype(np.int64)
        # TP: the drawn positives up to each tie, within its class
        tp = np.cumsum(size)
        first = np.ones(len(g), dtype=bool)
        np.not_equal(g[1:], g[:-1], out=first[1:])
        tp -= np.repeat((tp - size)[first], np.diff(np.flatnonzero(np.append(first, True))))
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = np.bincount(g, weights=size * (tp / predicted), minlength=c) / n_pos
        ap[n_pos == 0] = np.nan
        return ap

    return ap_of
