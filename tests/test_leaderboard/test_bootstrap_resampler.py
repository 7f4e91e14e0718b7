"""The bootstrap's shortcuts (``tasks.metrics.resampler``): a draw's value from work done once
per run must be the same float as the metric recomputed on the drawn rows (what the
leaderboard printed before them), compared with ``==``."""

from __future__ import annotations

import numpy as np
import pytest

from leaderboard.stats import bootstrap_draws, resampled_means
from tasks.metrics import metric_function, resampler

RANKING = [f"{kind}@{k}" for kind in ("P", "nDCG") for k in (1, 3, 5)]
SHORTCUTS = [*RANKING, "map", "map_zero"]


def _split(seed: int, n: int = 300, c: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, (n, c)) / 5.0  # many ties, between positives and negatives too
    scores[:, 1] = rng.random(n)  # one class without ties
    targets = rng.random((n, c)) < 0.2
    targets[:7] = False  # rows without a positive (nDCG 0)
    targets[:, 2] = False  # a class without a positive (map skips it, map_zero counts 0)
    targets[rng.integers(0, n), 3] = True
    targets[:, 3] = False
    targets[5, 3] = True  # a class with one positive: often not drawn at all
    scores[10:20] = scores[10]  # identical rows
    return scores, targets


def _assert_same(name: str, scores: np.ndarray, targets: np.ndarray, draws: int = 60) -> None:
    metric, prepare = metric_function(name), resampler(name)
    assert prepare is not None
    draw = prepare(scores, targets)
    assert draw is not None, name
    for i in bootstrap_draws(len(targets), draws, seed=3):
        expected = metric(scores[i], targets[i])
        got = draw(i)
        assert got == expected or (np.isnan(got) and np.isnan(expected)), (name, got, expected)


@pytest.mark.parametrize("name", SHORTCUTS)
def test_a_draw_is_the_metric_of_the_drawn_rows(name: str) -> None:
    _assert_same(name, *_split(0))


@pytest.mark.parametrize("name", ["map", "map_zero"])
@pytest.mark.parametrize("case", ["one row", "all tied", "no positive", "probabilities"])
def test_ap_draws_at_the_edges(name: str, case: str) -> None:
    rng = np.random.default_rng(1)
    scores, targets = _split(1)
    if case == "one row":
        scores, targets = scores[:1], targets[5:6]
    elif case == "all tied":
        scores = np.full_like(scores, 0.5)
    elif case == "no positive":
        targets = np.zeros_like(targets)
    else:  # distinct float64 scores in [0, 1): AP's float-key route
        scores = rng.random(scores.shape)
    _assert_same(name, scores, targets, draws=20)


@pytest.mark.parametrize("bad", [-0.5, -0.0, np.inf, np.nan])
def test_ap_leaves_scores_off_its_fast_path_to_the_recomputation(bad: float) -> None:
    scores, targets = _split(0)
    scores[4, 6] = bad
    assert resampler("map")(scores, targets) is None  # type: ignore[misc]
    runs = [scores, _split(1)[0]]
    if not np.isfinite(bad):  # the metric refuses them, with or without the shortcut
        for prepare in (resampler("map"), None):
            with pytest.raises(ValueError, match="scores must be finite"):
                resampled_means(metric_function("map"), runs, targets, n_resamples=2,
                                prepare=prepare)
        return
    # a negative score: that run is recomputed per draw, the others take the shortcut
    fast = resampled_means(metric_function("map"), runs, targets, n_resamples=10,
                           prepare=resampler("map"))
    slow = resampled_means(metric_function("map"), runs, targets, n_resamples=10)
    assert np.array_equal(fast, slow)


@pytest.mark.parametrize("name", ["P@3", "nDCG@5", "map"])
def test_resampled_means_are_the_same_floats_either_way(name: str) -> None:
    targets = _split(0)[1]
    runs = [_split(seed)[0] for seed in (1, 2, 3)]
    slow = resampled_means(metric_function(name), runs, targets, n_resamples=40)
    fast = resampled_means(metric_function(name), runs, targets, n_resamples=40,
                           prepare=resampler(name))
    assert np.array_equal(fast, slow)


@pytest.mark.parametrize("name", ["OF1", "micro_f1", "hamming_loss", "ign_f1", "no_such"])
def test_other_metrics_have_no_shortcut(name: str) -> None:
    assert resampler(name) is None
