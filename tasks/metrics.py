"""Corpus-level multi-label metrics: pure, vectorized numpy functions (float64 accumulation).

Every function takes ``scores`` [N, C] (probabilities for the threshold-based metrics; any real
scores for the ranking metrics) and binary ``targets`` [N, C], as numpy arrays or torch tensors,
and computes over the whole split: nothing here is a mean of per-batch values.

Conventions (each one is what scikit-learn does unless said otherwise):

* average precision: sum over distinct score thresholds of (R_n - R_{n-1}) P_n, tied scores
  forming one threshold, equal to ``sklearn.metrics.average_precision_score`` per class. Classes
  with no positive in the split have no AP; they are *skipped* from the mean and counted in
  :class:`MeanAP` (never scored as 0, unlike several research codebases).
* CP/CR/CF1 and OP/OR/OF1 (ML-GCN, ASL papers): per-class precision/recall averaged over all C
  classes, CF1 the harmonic mean of CP and CR; overall ones from the summed counts. A ratio with a
  zero denominator counts as 0 (scikit-learn's ``zero_division=0``); how many classes had no
  prediction / no positive is returned alongside. Top-k variant: a label is predicted when it is
  among the k highest scores of its row *and* its score is >= the threshold.
* ranking (P@k, nDCG@k, binary relevance): among tied scores the lower class index ranks first
  (a stable sort). Results equal ``sklearn.metrics.ndcg_score`` (which averages over the orders
  of tied scores) whenever no tie straddles rank k. Rows without any positive have nDCG 0 and
  count in the mean, as in scikit-learn.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch

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
    s = _to_numpy(scores)
    t = _to_numpy(targets)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D [N, C], got shape {s.shape}")
    if t.shape != s.shape:
        raise ValueError(f"targets shape {t.shape} does not match scores shape {s.shape}")
    if s.shape[0] == 0:
        raise ValueError("scores and targets are empty (N = 0)")
    s = s.astype(np.float64, copy=False)
    bad = ~np.isfinite(s)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"scores must be finite; found {s[r, c]} at row {r}, column {c}")
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
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda i: a[bounds[i]:bounds[i + 1]].sort(axis=1), range(workers)))


def _sorted_by_class(s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class, scores sorted descending: sorted scores [C, N], targets [C, N], group ends.

    ``ends[c, i]`` is True where position i is the last of its group of tied scores.
    """
    st = np.ascontiguousarray(s.T)  # [C, N]
    order = np.argsort(-st, axis=1, kind="stable")
    ss = np.take_along_axis(st, order, axis=1)
    ts = np.take_along_axis(np.ascontiguousarray(t.T), order, axis=1)
    ends = np.empty(ss.shape, dtype=bool)
    ends[:, :-1] = ss[:, 1:] != ss[:, :-1]
    ends[:, -1] = True
    return ss, ts, ends


def average_precision_per_class(scores: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """Average precision of each class, [C] float64; NaN for a class without positives.

    AP_c = (1 / P_c) * sum over the positives i of TP(s >= s_i) / #(s >= s_i): each positive
    contributes the precision at the lowest threshold that still includes it (and every score
    tied with it), which is scikit-learn's step-wise sum over distinct thresholds. Only one sort
    of the scores is needed; the counts for the positives come from binary searches.
    """
    s, t = check_scores_targets(scores, targets)
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


class MeanAP(NamedTuple):
    """mAP over the classes that have a positive, with the count of skipped classes."""

    value: float
    classes_scored: int
    classes_skipped: int
    skip_policy: str = "classes without a positive in the split are excluded from the mean"


def mean_average_precision(scores: ArrayLike, targets: ArrayLike) -> MeanAP:
    """Mean of :func:`average_precision_per_class` over classes with at least one positive."""
    ap = average_precision_per_class(scores, targets)
    scored = ~np.isnan(ap)
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
    rel = _top_relevance(s, t, max(ks))
    n_pos = t.sum(axis=1)
    out: dict[str, float] = {}
    for k in ks:
        top = rel[:, :k]
        out[f"P@{k}"] = float(top.sum(axis=1).mean() / k)
        out[f"nDCG@{k}"] = float(_ndcg_rows(top, n_pos, k).mean())
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
    ss, ts, ends = _sorted_by_class(s, t)
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
