"""Confidence intervals of the leaderboard's Δ column: paired bootstrap and paired t over seeds."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

N_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
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


def resampled_means(metric: Callable[[np.ndarray, np.ndarray], float], runs: list[np.ndarray],
                    targets: np.ndarray, n_resamples: int = N_RESAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Mean metric over ``runs`` on the full split, then on each bootstrap draw: [1 + R].

    The draws depend only on (seed, number of examples), so every row of a group sees the same
    examples: the differences between rows are paired.
    """
    rng = np.random.default_rng(seed)
    n = len(targets)
    draws = [np.arange(n)] + [rng.integers(0, n, n) for _ in range(n_resamples)]
    return np.array([np.mean([metric(s[i], targets[i]) for s in runs]) for i in draws])


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
    d = resampled_means(metric, row, targets, n_resamples, seed) - base_means
    lo, hi = np.percentile(d[1:], [2.5, 97.5])
    return float(d[0]), float(lo), float(hi)


def seed_interval(row: dict[int, float], base: dict[int, float]) -> tuple[float, float, float]:
    """Paired t-interval over the seeds both rows have: (mean difference, lower, upper)."""
    d = np.array([row[s] - base[s] for s in sorted(set(row) & set(base))])
    if len(d) < 2:
        return (float(d.mean()) if len(d) else math.nan), math.nan, math.nan
    half = (_T975[len(d) - 2] if len(d) - 1 <= len(_T975) else 1.96) * d.std(ddof=1) / math.sqrt(
        len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
