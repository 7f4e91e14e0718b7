"""Confidence intervals of the leaderboard's Δ column: paired bootstrap and paired t over seeds.

The bootstrap resamples a run's saved test outputs (``scores_file``): score rows, from which a
``resamplable`` metric is recomputed, or per-example counts of a counted metric
(``tasks.metrics.COUNTED_METRICS``), which are summed over the drawn examples. Both use the same
draws (:func:`bootstrap_draws`), so rows of one test split are paired. P@k, nDCG@k and mAP are not
recomputed from scratch per draw: ``tasks.metrics.resampler`` does the work the draws share
once per run (per-row values; one sort per class), giving the same floats in less time
(BENCHMARKS.md, "Leaderboard build").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from leaderboard.table import Row

N_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
# bootstrap draws turned into one weights matrix at a time (memory: chunk x examples int64)
_CHUNK = 128
# t(0.975, df) for df = 1..30; larger df use 1.96
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


@functools.cache
def resamplable_metrics() -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """Metric name -> f(scores, targets): the metrics the bootstrap can recompute.

    Read from the one metric registry (``tasks.metrics.METRICS``, its ``resamplable`` flag) at
    the fixed threshold 0.5 that the threshold-based metrics use.
    """
    from tasks.metrics import resamplable_metrics as from_registry

    return from_registry()


def bootstrap_draws(n: int, n_resamples: int = N_RESAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> Iterator[np.ndarray]:
    """The example indices of the full split, then of each bootstrap draw: 1 + R arrays of n.

    One ``rng.integers(0, n, n)`` per resample from ``default_rng(seed)``: the draws depend only
    on (seed, n), so every row of a group, scores or counts, sees the same examples (paired).
    """
    rng = np.random.default_rng(seed)
    yield np.arange(n)
    for _ in range(n_resamples):
        yield rng.integers(0, n, n)


def resampled_means(metric: Callable[[np.ndarray, np.ndarray], float], runs: list[np.ndarray],
                    targets: np.ndarray, n_resamples: int = N_RESAMPLES,
                    seed: int = BOOTSTRAP_SEED,
                    prepare: Callable[[np.ndarray, np.ndarray],
                                      Callable[[np.ndarray], float] | None] | None = None,
                    ) -> np.ndarray:
    """Mean metric over ``runs`` on the full split, then on each bootstrap draw: [1 + R].

    The draws depend only on (seed, number of examples), so every row of a group sees the same
    examples: the differences between rows are paired. ``prepare``: the metric's shortcut
    (``tasks.metrics.resampler``), run once per run; a run it does not cover is recomputed
    per draw. Either way each draw's value is the same float.
    """
    draws = []  # per run: the metric of the rows i
    for scores in runs:
        draw = prepare(scores, targets) if prepare is not None else None
        draws.append(draw or functools.partial(_recomputed, metric, scores, targets))
    return np.array([np.mean([draw(i) for draw in draws])
                     for i in bootstrap_draws(len(targets), n_resamples, seed)])


def _recomputed(metric: Callable[[np.ndarray, np.ndarray], float], scores: np.ndarray,
                targets: np.ndarray, i: np.ndarray) -> float:
    """``metric`` of the rows ``i`` of a run, computed from them."""
    return metric(scores[i], targets[i])


def resampled_count_means(from_counts: Callable[[np.ndarray], np.ndarray],
                          runs: list[np.ndarray], n_resamples: int = N_RESAMPLES,
                          seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Like :func:`resampled_means` for per-example counts [E, K] of a counted metric: [1 + R].

    A draw's metric is ``from_counts`` of the counts summed over the drawn examples (an example
    drawn twice counts twice); with the same draws as :func:`resampled_means`. Vectorized: the
    draws become weights [chunk, E] (how often each example is drawn) times counts [E, K], in
    chunks so that memory stays bounded for large E.
    """
    n = len(runs[0])
    draws = bootstrap_draws(n, n_resamples, seed)
    out = []
    for start in range(0, 1 + n_resamples, _CHUNK):
        chunk = [next(draws) for _ in range(min(_CHUNK, 1 + n_resamples - start))]
        weights = np.stack([np.bincount(d, minlength=n) for d in chunk]).astype(np.int64)
        out.append(np.mean([from_counts(weights @ c.astype(np.int64)) for c in runs], axis=0))
    return np.concatenate(out)


def interval(row_means: np.ndarray, base_means: np.ndarray) -> tuple[float, float, float]:
    """(difference, lower, upper) from two rows' :func:`resampled_means` on the same draws:
    the full-split difference and the 2.5th-97.5th percentile of the resampled differences."""
    d = row_means - base_means
    lo, hi = np.percentile(d[1:], [2.5, 97.5])
    return float(d[0]), float(lo), float(hi)


def paired_bootstrap(metric: Callable[[np.ndarray, np.ndarray], float],
                     row: list[np.ndarray], base: list[np.ndarray], targets: np.ndarray,
                     n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                     base_means: np.ndarray | None = None) -> tuple[float, float, float]:
    """(difference, lower, upper): mean metric of ``row`` runs minus ``base`` runs, 95% interval.

    ``base_means``: ``resampled_means`` of ``base`` if already computed (one baseline serves
    every row of a group).
    """
    if base_means is None:
        base_means = resampled_means(metric, base, targets, n_resamples, seed)
    return interval(resampled_means(metric, row, targets, n_resamples, seed), base_means)


def seed_interval(row: dict[int, float], base: dict[int, float]) -> tuple[float, float, float]:
    """Paired t-interval over the seeds both rows have: (mean difference, lower, upper)."""
    d = np.array([row[s] - base[s] for s in sorted(set(row) & set(base))])
    if len(d) < 2:
        return (float(d.mean()) if len(d) else math.nan), math.nan, math.nan
    half = (_T975[len(d) - 2] if len(d) - 1 <= len(_T975) else 1.96) * d.std(ddof=1) / math.sqrt(
        len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


@dataclass(frozen=True)
class Resampled:
    """A row's mean primary metric over its runs on the full test split and each bootstrap draw.

    ``examples`` identifies the test examples, so that only rows on the same examples are
    paired: the targets [N, C] for saved score rows, the gold column [E] for per-example counts.
    """

    kind: str  # "scores" (score rows, targets) or "counts" (per-example counts)
    examples: np.ndarray
    means: np.ndarray  # [1 + R]

    def pairs_with(self, other: Resampled) -> bool:
        """True when both rows were resampled over the same test examples (same draws)."""
        return (self.kind == other.kind and self.examples.shape == other.examples.shape
                and bool(np.array_equal(self.examples, other.examples)))


def _saved_outputs(row: Row) -> list[dict[str, np.ndarray]] | None:
    """The arrays of every run's scores file (``scores_file``), or None if a run saved none."""
    out = []
    for path, run in row.runs:
        name = run.scores_file
        if not name or not (path.parent / name).is_file():
            return None
        with np.load(path.parent / name) as z:
            out.append({key: z[key] for key in z.files})
    return out


def _score_rows(row: Row, saved: list[dict[str, np.ndarray]],
                primary: str) -> tuple[list[np.ndarray], np.ndarray] | None:
    """Saved test scores of every run of ``row`` and their targets, or None.

    None unless every run saved score rows, all share the same targets and each run's scores
    reproduce its recorded metric (otherwise they are not its scores).
    """
    fn = resamplable_metrics().get(primary)
    if fn is None or not all("targets" in z and "scores" in z for z in saved):
        return None
    loaded = [(z["scores"].astype(np.float64), z["targets"].astype(bool)) for z in saved]
    targets = loaded[0][1]
    if not all(np.array_equal(t, targets) for _, t in loaded) or not all(
            abs(fn(s, t) - r.metrics[primary]) < 1e-6
            for (s, t), (_, r) in zip(loaded, row.runs, strict=True)):
        return None
    return [s for s, _ in loaded], targets


def _counts(row: Row, saved: list[dict[str, np.ndarray]],
            primary: str) -> tuple[list[np.ndarray], np.ndarray] | None:
    """Saved per-example counts [E, K] of every run of ``row`` and their gold column, or None.

    None unless every run saved counts of ``primary`` (a ``COUNTED_METRICS`` entry), each
    run's summed counts reproduce its recorded metric within 1e-9, and all runs have the same
    number of examples and the same gold column (the last column named "gold"): the same test
    examples. A row without a gold column is paired on the number of examples alone.
    """
    from tasks.metrics import COUNTED_METRICS

    if primary not in COUNTED_METRICS or not all(
            "counts" in z and "metric" in z and str(z["metric"]) == primary for z in saved):
        return None
    names, from_counts = COUNTED_METRICS[primary]
    gold = len(names) - 1 - names[::-1].index("gold") if "gold" in names else None
    loaded = [z["counts"].astype(np.int64) for z in saved]
    if not all(c.ndim == 2 and c.shape[1] == len(names) and abs(
            float(from_counts(c.sum(0))) - r.metrics[primary]) <= 1e-9
            for c, (_, r) in zip(loaded, row.runs, strict=True)):
        return None
    n = len(loaded[0])
    examples = loaded[0][:, gold] if gold is not None else np.array([n])
    if any(len(c) != n or (gold is not None and not np.array_equal(c[:, gold], examples))
           for c in loaded):
        return None
    return loaded, examples


def resample_row(row: Row, primary: str, n_resamples: int = N_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> Resampled | None:
    """The bootstrap means of ``row``'s primary metric from its saved test outputs, or None.

    Saved score rows (``index``/``scores``/``targets``) are resampled with
    :func:`resampled_means`, per-example counts (``counts``/``metric``) with
    :func:`resampled_count_means`, on the same draws. None (the caller falls back to seeds)
    when a run saved nothing, or saved outputs that do not reproduce its recorded metric.
    """
    saved = _saved_outputs(row)
    if saved is None:
        return None
    rows = _score_rows(row, saved, primary)
    if rows is not None:
        from tasks.metrics import resampler

        return Resampled("scores", rows[1], resampled_means(
            resamplable_metrics()[primary], rows[0], rows[1], n_resamples, seed,
            prepare=resampler(primary)))
    counted = _counts(row, saved, primary)
    if counted is not None:
        from tasks.metrics import COUNTED_METRICS

        return Resampled("counts", counted[1], resampled_count_means(
            COUNTED_METRICS[primary][1], counted[0], n_resamples, seed))
    return None
