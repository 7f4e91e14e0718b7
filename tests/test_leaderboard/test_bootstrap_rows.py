"""The bootstrap's per-row fast path (``tasks.metrics.row_values``): for the metrics that are a
mean over rows, a draw's value from per-row values computed once must be the same float as the
metric recomputed on the drawn rows, which is what the leaderboard printed before."""

from __future__ import annotations

import numpy as np
import pytest

from leaderboard.stats import bootstrap_draws, resampled_means
from tasks.metrics import metric_function, row_values

RANKING = [f"{kind}@{k}" for kind in ("P", "nDCG") for k in (1, 3, 5)]


def _split(seed: int, n: int = 300, c: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, (n, c)) / 5.0  # many ties: the order within a tie matters
    targets = rng.random((n, c)) < 0.2
    targets[:7] = False  # rows without a positive (nDCG 0)
    return scores, targets


@pytest.mark.parametrize("name", RANKING)
def test_a_draw_from_row_values_is_the_metric_of_the_drawn_rows(name: str) -> None:
    scores, targets = _split(0)
    metric, rows = metric_function(name), row_values(name)
    assert rows is not None
    values, divisor = rows(scores, targets)
    for i in bootstrap_draws(len(targets), 50, seed=3):
        assert float(values[i].mean() / divisor) == metric(scores[i], targets[i]), name


@pytest.mark.parametrize("name", ["P@3", "nDCG@5"])
def test_resampled_means_are_the_same_floats_either_way(name: str) -> None:
    targets = _split(0)[1]
    runs = [_split(seed)[0] for seed in (1, 2, 3)]
    slow = resampled_means(metric_function(name), runs, targets, n_resamples=40)
    fast = resampled_means(metric_function(name), runs, targets, n_resamples=40,
                           rows=row_values(name))
    assert np.array_equal(fast, slow)


@pytest.mark.parametrize("name", ["map", "map_zero", "OF1", "micro_f1", "hamming_loss",
                                  "ign_f1", "no_such_metric"])
def test_other_metrics_have_no_row_values(name: str) -> None:
    # AP and the threshold metrics are not means over rows: they keep the full recomputation
    assert row_values(name) is None
