"""tasks/metrics.py against scikit-learn (and plain definitions) on generated matrices."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    hamming_loss,
    ndcg_score,
    precision_score,
    recall_score,
)

from tasks import _native_ap
from tasks import metrics as M

# ap_path is function-scoped, and the same for every example of a test
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(params=["kernel", "numpy"])
def ap_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run an AP test on both paths of ``average_precision_per_class``: the C++ kernel
    (``tasks/_native_ap.py``; skipped where it cannot be built) and the numpy one it falls
    back to."""
    if request.param == "kernel":
        if not _native_ap.available():
            pytest.skip("the AP kernel is switched off or cannot be built here")
    else:
        monkeypatch.setattr(_native_ap, "ENABLED", False)
    return request.param


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count (which AP splits classes over) set to ``n`` inside."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@st.composite
def score_target_matrices(draw: st.DrawFn, max_n: int = 12, max_c: int = 6,
                          tie_levels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scores (often tied: few distinct levels) and 0/1 targets, with forced edge columns."""
    n = draw(st.integers(1, max_n))
    c = draw(st.integers(1, max_c))
    levels = tie_levels or draw(st.sampled_from([2, 3, 5, 1000]))
    scores = draw(arrays(np.int64, (n, c), elements=st.integers(0, levels - 1))) / levels
    targets = draw(arrays(np.bool_, (n, c)))
    edge = draw(st.sampled_from(["none", "all_neg", "all_pos"]))
    if edge == "all_neg":
        targets[:, 0] = False
    elif edge == "all_pos":
        targets[:, -1] = True
    return scores.astype(np.float64), targets


def _sklearn_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    out = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        if targets[:, c].any():
            out[c] = average_precision_score(targets[:, c], scores[:, c])
    return out


@SETTINGS
@given(data=score_target_matrices())
def test_average_precision_equals_sklearn_with_ties(data: tuple[np.ndarray, np.ndarray],
                                                    ap_path: str) -> None:
    scores, targets = data
    got = M.average_precision_per_class(scores, targets)
    exp = _sklearn_ap(scores, targets)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exp))
    np.testing.assert_allclose(got[~np.isnan(got)], exp[~np.isnan(exp)], rtol=0, atol=1e-12)
    result = M.mean_average_precision(scores, targets)
    assert result.classes_skipped == int((~targets.any(axis=0)).sum())
    assert result.classes_scored + result.classes_skipped == scores.shape[1]
    if result.classes_scored:
        assert result.value == pytest.approx(np.nanmean(exp), abs=1e-12)
    else:
        assert np.isnan(result.value)


def test_average_precision_larger_random_and_torch_input(ap_path: str) -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((500, 30))
    targets = rng.random((500, 30)) < 0.1
    exp = average_precision_score(targets, scores, average=None)
    got = M.average_precision_per_class(torch.from_numpy(scores).float(), torch.from_numpy(targets))
    np.testing.assert_allclose(got, average_precision_score(targets, scores.astype(np.float32),
                                                            average=None), atol=1e-12)
    np.testing.assert_allclose(M.average_precision_per_class(scores, targets), exp, atol=1e-12)


def _heavy_ties(n: int, c: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Scores rounded to 2 decimals (many ties, positives tied with negatives), some classes
    without any positive; ``shift`` < 0 gives negative scores (logits-like)."""
    rng = np.random.default_rng(seed)
    targets = rng.random((n, c)) < 0.05
    targets[:, :3] = False  # classes without positives
    scores = np.round(rng.random((n, c)) * 0.8 + 0.2 * targets, 2) + shift
    return scores, targets


@pytest.mark.parametrize("shift", [0.0, -0.5])  # fast path (scores >= 0) and the general one
@pytest.mark.parametrize(("n", "c"), [(300, 12), (4100, 70)])  # (4100, 70): threaded blocks
def test_average_precision_heavy_ties_and_empty_classes_equal_sklearn(
    n: int, c: int, shift: float, ap_path: str,
) -> None:
    scores, targets = _heavy_ties(n, c, seed=n + c, shift=shift)
    got = M.average_precision_per_class(scores, targets)
    exp = _sklearn_ap(scores, targets)
    assert np.isnan(got[:3]).all() and not np.isnan(got[3:]).any()
    np.testing.assert_allclose(got[3:], exp[3:], rtol=0, atol=1e-12)


@pytest.mark.parametrize("failing", ["caller", "pool"])
def test_run_all_raises_only_after_every_thread_has_stopped(failing: str) -> None:
    # AP's threads write into the calling thread's buffers: an exception in any of them must
    # reach the caller only after the other thread has finished its item, and stop the rest
    caller = threading.current_thread()
    lock = threading.Lock()
    running, done = [0], []

    def work(item: int) -> bool:
        with lock:
            running[0] += 1
        try:
            if (threading.current_thread() is caller) == (failing == "caller") and item >= 2:
                raise RuntimeError(f"{failing} failed")  # while the other thread sleeps
            time.sleep(0.02)
            done.append(item)
            return True
        finally:
            with lock:
                running[0] -= 1

    with pytest.raises(RuntimeError, match=f"{failing} failed"):
        M._run_all(work, list(range(40)), 2)
    assert running[0] == 0
    assert len(done) < 10


def test_run_all_stops_handing_out_items_after_a_false() -> None:
    done = []

    def work(item: int) -> bool:
        time.sleep(0.005)
        done.append(item)
        return item != 3

    assert M._run_all(work, list(range(40)), 2) is False
    assert 3 in done and len(done) < 10
    assert M._run_all(lambda item: True, list(range(5)), 2) is True


def test_average_precision_holds_the_keys_of_one_block_per_thread_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_native_ap, "ENABLED", False)  # the numpy path's blocks
    # 1200 classes: 5 blocks of 240; with 2 threads the keys of 2 blocks (480 classes) are held
    # at once, not those of all 1200 (an OpenImages-size evaluation would need gigabytes)
    rng = np.random.default_rng(13)
    n, c = 1000, 1200
    targets = rng.random((n, c)) < 0.02
    scores = np.round(rng.random((n, c)) * 0.9 + 0.1 * targets, 4)
    sizes: list[int] = []
    workspace = M._workspace
    monkeypatch.setattr(M, "_workspace",
                        lambda size, dtype=np.uint64: sizes.append(size) or workspace(size, dtype))
    with _threads(1):
        one = M.average_precision_per_class(scores, targets)
    assert max(sizes) == 240 * n
    with _threads(2):
        two = M.average_precision_per_class(scores, targets)
    assert max(sizes) == 480 * n
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(two, _sklearn_ap(scores, targets), rtol=0, atol=1e-12)


def test_average_precision_of_no_class_is_empty(ap_path: str) -> None:
    assert M.average_precision_per_class(np.zeros((5, 0)), np.zeros((5, 0))).shape == (0,)


def test_average_precision_same_on_one_and_two_threads(ap_path: str) -> None:
    scores, targets = _heavy_ties(5000, 120, seed=3)  # above the size where threads are used
    with _threads(1):
        one = M.average_precision_per_class(scores, targets)
    with _threads(2):
        two = M.average_precision_per_class(scores, targets)
    np.testing.assert_array_equal(one, two)  # bit for bit, NaNs in the same places


@pytest.mark.parametrize("below_one", [True, False])  # float64: float keys, integer keys
@pytest.mark.parametrize("dtype", [np.float64, np.float32])  # 64- and 32-bit sort keys
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_average_precision_edge_scores_exact_and_the_same_on_any_thread_count(
    threads: int, dtype: type, below_one: bool, ap_path: str,
) -> None:
    # > 256 classes: several class blocks, split unevenly over the threads; scores drawn from a
    # few extreme levels (0, the smallest subnormal, the largest float below 1 or the largest
    # float), so nothing but ties
    rng = np.random.default_rng(7)
    n, c = 3000, 300
    info = np.finfo(dtype)
    top = [np.nextafter(dtype(1), dtype(0))] if below_one else [1.0, info.max]
    levels = np.array([0.0, info.smallest_subnormal, info.tiny, 0.25, 0.5, *top], dtype=dtype)
    scores = levels[rng.integers(0, len(levels), (n, c))]
    targets = rng.random((n, c)) < 0.03
    scores[:, 5] = 0.5  # a constant class: AP = prevalence
    targets[:, 6] = True  # every row positive: AP 1
    targets[:, 7] = False  # no positive: NaN
    targets[:, 8] = scores[:, 8] == 0.0  # the positives are exactly the lowest scores
    with _threads(1):
        one = M.average_precision_per_class(scores, targets)
    with _threads(threads):
        got = M.average_precision_per_class(scores, targets)
    np.testing.assert_array_equal(got, one)  # bit for bit, NaNs in the same places
    exp = _sklearn_ap(scores.astype(np.float64), targets)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exp))
    np.testing.assert_allclose(got[~np.isnan(got)], exp[~np.isnan(exp)], rtol=0, atol=1e-12)
    assert got[5] == pytest.approx(targets[:, 5].mean(), abs=1e-12) and got[6] == 1.0


@pytest.mark.parametrize("threads", [1, 2])
def test_average_precision_a_late_score_of_one_switches_its_block_to_integer_keys(
    threads: int, ap_path: str,
) -> None:
    # probabilities below 1 everywhere except a 1.0 in the last row of a class of the first
    # block (its last key tile, after the earlier tiles were built as float keys) and a 1.5 in
    # a class of the last block: those two blocks restart with integer keys, the middle one
    # keeps float keys
    rng = np.random.default_rng(12)
    n, c = 6000, 600  # 3 blocks of 200 classes, ~18 key tiles each
    targets = rng.random((n, c)) < 0.05
    scores = np.round(rng.random((n, c)) * 0.8 + 0.15 * targets, 5)
    scores[-1, 40], targets[-1, 40] = 1.0, False
    scores[7, 590], targets[7, 590] = 1.5, True
    with _threads(threads):
        got = M.average_precision_per_class(scores, targets)
    np.testing.assert_allclose(got, average_precision_score(targets, scores, average=None),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
def test_average_precision_float32_input_equals_sklearn(threads: int, ap_path: str) -> None:
    rng = np.random.default_rng(11)
    targets = rng.random((6000, 50)) < 0.05
    # float32 probabilities with ties (as a model's sigmoid outputs), positives a bit higher
    scores = np.round(rng.random((6000, 50)) * 0.9 + 0.1 * targets, 3).astype(np.float32)
    with _threads(threads):
        got = M.average_precision_per_class(scores, targets)
        got_torch = M.average_precision_per_class(torch.from_numpy(scores),
                                                  torch.from_numpy(targets))
    exp = average_precision_score(targets, scores.astype(np.float64), average=None)
    np.testing.assert_allclose(got, exp, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got, got_torch)


def test_average_precision_negative_zero_ties_with_zero(ap_path: str) -> None:
    scores = np.array([[0.0, 0.5], [-0.0, 0.5], [0.0, 0.1], [0.3, 0.0]])
    targets = np.array([[1, 1], [0, 0], [1, 0], [0, 1]])
    np.testing.assert_allclose(M.average_precision_per_class(scores, targets),
                               _sklearn_ap(scores, targets), rtol=0, atol=1e-12)


def test_class_without_positive_is_skipped_not_zero() -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    targets = np.array([[1, 0], [0, 0]])
    result = M.mean_average_precision(scores, targets)
    assert result == (1.0, 1, 1, result.skip_policy)
    assert "excluded" in result.skip_policy
    zero = M.mean_average_precision(scores, targets, missing="zero")
    assert zero == (0.5, 2, 0, zero.skip_policy) and "AP 0" in zero.skip_policy
    assert M.mean_average_precision(scores, np.zeros((2, 2)), missing="zero").value == 0.0
    assert np.isnan(M.mean_average_precision(scores, np.zeros((2, 2))).value)
    with pytest.raises(ValueError, match="missing must be one of"):
        M.mean_average_precision(scores, targets, missing="nan")


@SETTINGS
@given(data=score_target_matrices())
def test_map_zero_equals_sklearn_over_all_classes(data: tuple[np.ndarray, np.ndarray],
                                                  ap_path: str) -> None:
    scores, targets = data
    exp = np.nan_to_num(_sklearn_ap(scores, targets), nan=0.0).mean()  # AP 0, mean over all C
    got = M.compute_metrics(["map_zero"], scores, targets)["map_zero"]
    assert got == pytest.approx(exp, abs=1e-12)
    skip = M.mean_average_precision(scores, targets)
    if skip.classes_scored:  # the two conventions differ by the factor (classes scored) / C
        assert got == pytest.approx(skip.value * skip.classes_scored / scores.shape[1],
                                    abs=1e-12)


def _official_map_helper(repo: str, monkeypatch: pytest.MonkeyPatch):
    """``mAP(targs, preds)`` of an official helper_functions.py, imported at test time.

    The file imports pycocotools at module level for its COCO dataset class (unused by
    ``mAP``); where pycocotools is not installed an empty stand-in module takes its place.
    """
    from official import import_official

    try:
        import pycocotools.coco  # noqa: F401
    except ImportError:
        import sys
        import types

        stub = types.ModuleType("pycocotools.coco")
        stub.COCO = object
        monkeypatch.setitem(sys.modules, "pycocotools", types.ModuleType("pycocotools"))
        monkeypatch.setitem(sys.modules, "pycocotools.coco", stub)
    path = {"Alibaba-MIIL__ASL": "src/helper_functions/helper_functions.py",
            "Alibaba-MIIL__ML_Decoder": "src_files/helper_functions/helper_functions.py"}[repo]
    return import_official(repo, path).mAP


@pytest.mark.parametrize("repo", ["Alibaba-MIIL__ASL", "Alibaba-MIIL__ML_Decoder"])
@pytest.mark.parametrize("without_positive", [0, 5])
def test_map_zero_equals_the_official_asl_helper(repo: str, without_positive: int,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 ap_path: str) -> None:
    official_map = _official_map_helper(repo, monkeypatch)
    rng = np.random.default_rng(without_positive)
    n, c = 400, 20
    targets = rng.random((n, c)) < 0.15
    targets[:, :without_positive] = False  # classes without a positive in the split
    scores = rng.random((n, c)) * 0.5 + 0.5 * targets * rng.random((n, c))
    assert all(len(np.unique(scores[:, k])) == n for k in range(c))  # no ties
    theirs = official_map(targets.astype(np.float64), scores)  # percent, AP 0 without positive
    ours = M.mean_average_precision(scores, targets, missing="zero")
    assert ours.value == pytest.approx(theirs / 100, abs=1e-6)
    skip = M.mean_average_precision(scores, targets)
    assert skip.classes_skipped == without_positive
    assert skip.value == pytest.approx(theirs / 100 * c / (c - without_positive), abs=1e-6)


def _ml_gcn_counts(scores: np.ndarray, targets: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """CP/CR/CF1/OP/OR/OF1 from their definitions, one class at a time, 0/0 taken as 0."""
    cp, cr = [], []
    tp_all = pred_all = pos_all = 0
    for c in range(scores.shape[1]):
        tp = int((pred[:, c] & targets[:, c]).sum())
        n_pred, n_pos = int(pred[:, c].sum()), int(targets[:, c].sum())
        cp.append(tp / n_pred if n_pred else 0.0)
        cr.append(tp / n_pos if n_pos else 0.0)
        tp_all, pred_all, pos_all = tp_all + tp, pred_all + n_pred, pos_all + n_pos
    mcp, mcr = sum(cp) / len(cp), sum(cr) / len(cr)
    op = tp_all / pred_all if pred_all else 0.0
    orec = tp_all / pos_all if pos_all else 0.0
    f1 = lambda a, b: 2 * a * b / (a + b) if a + b else 0.0  # noqa: E731
    return {"CP": mcp, "CR": mcr, "CF1": f1(mcp, mcr), "OP": op, "OR": orec, "OF1": f1(op, orec)}


@SETTINGS
@given(score_target_matrices(), st.sampled_from([0.3, 0.5, 0.7]))
def test_label_f1_scores_match_definitions_and_sklearn(
    data: tuple[np.ndarray, np.ndarray], threshold: float
) -> None:
    scores, targets = data
    pred = scores >= threshold
    got = M.label_f1_scores(scores, targets, threshold=threshold)
    exp = _ml_gcn_counts(scores, targets, pred)
    for key, value in exp.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert got["classes_without_predictions"] == (~pred.any(axis=0)).sum()
    if scores.shape[1] < 2:
        return  # sklearn reads a single column as a binary (not multi-label) problem
    # the overall ones are sklearn's micro averages, CP/CR its macro precision/recall
    kw = {"zero_division": 0}
    assert got["OP"] == pytest.approx(precision_score(targets, pred, average="micro", **kw))
    assert got["OR"] == pytest.approx(recall_score(targets, pred, average="micro", **kw))
    assert got["CP"] == pytest.approx(precision_score(targets, pred, average="macro", **kw))
    assert got["CR"] == pytest.approx(recall_score(targets, pred, average="macro", **kw))


@SETTINGS
@given(score_target_matrices(max_c=8), st.integers(1, 4))
def test_top_k_variant(data: tuple[np.ndarray, np.ndarray], k: int) -> None:
    scores, targets = data
    pred = np.zeros_like(targets)
    for i in range(scores.shape[0]):
        # stable descending order: among equal scores the lower class index first
        order = sorted(range(scores.shape[1]), key=lambda c, i=i: (-scores[i, c], c))[:k]
        for c in order:
            pred[i, c] = scores[i, c] >= 0.5
    got = M.label_f1_scores(scores, targets, top_k=k)
    for key, value in _ml_gcn_counts(scores, targets, pred).items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


@SETTINGS
@given(score_target_matrices())
def test_classification_scores_equal_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    scores, targets = data
    pred = scores >= 0.5
    got = M.classification_scores(scores, targets)
    assert got["subset_accuracy"] == pytest.approx(float((pred == targets).all(axis=1).mean()))
    if scores.shape[1] < 2:
        return  # sklearn reads a single column as a binary (not multi-label) problem
    kw = {"zero_division": 0}
    for avg in ("micro", "macro"):
        assert got[f"{avg}_precision"] == pytest.approx(
            precision_score(targets, pred, average=avg, **kw), abs=1e-12)
        assert got[f"{avg}_recall"] == pytest.approx(
            recall_score(targets, pred, average=avg, **kw), abs=1e-12)
        assert got[f"{avg}_f1"] == pytest.approx(
            f1_score(targets, pred, average=avg, **kw), abs=1e-12)
    assert got["hamming_loss"] == pytest.approx(hamming_loss(targets, pred))


@SETTINGS
@given(score_target_matrices(max_n=10, max_c=9, tie_levels=10**9), st.sampled_from([1, 3, 5]))
def test_ranking_equals_sklearn_without_ties(
    data: tuple[np.ndarray, np.ndarray], k: int
) -> None:
    scores, targets = data
    if len(np.unique(scores, axis=None)) != scores.size or scores.shape[1] < 2:
        return  # sklearn's ndcg_score needs >= 2 labels; ties are covered below
    got = M.ranking_scores(scores, targets, ks=(k,))
    assert got[f"nDCG@{k}"] == pytest.approx(ndcg_score(targets, scores, k=k), abs=1e-12)
    assert M.ndcg_at_k(scores, targets, k) == got[f"nDCG@{k}"]
    top = np.argsort(-scores, axis=1)[:, :k]
    exp_p = np.take_along_axis(targets, top, axis=1).sum(axis=1).mean() / k
    assert got[f"P@{k}"] == pytest.approx(exp_p, abs=1e-12)
    assert M.precision_at_k(scores, targets, k) == got[f"P@{k}"]


def test_ranking_tie_rule_is_lower_index_first() -> None:
    scores = np.array([[0.5, 0.5, 0.1]])
    assert M.precision_at_k(scores, np.array([[1, 0, 0]]), 1) == 1.0
    assert M.precision_at_k(scores, np.array([[0, 1, 0]]), 1) == 0.0
    # row 0 ranks class 0 (irrelevant) before tied class 1; row 1 ranks 2 then 0
    targets = np.array([[0, 1, 1], [1, 0, 0]])
    both = np.array([[0.5, 0.5, 0.1], [0.2, 0.2, 0.9]])
    g2 = 1 / np.log2(3)
    assert M.ndcg_at_k(both, targets, 2) == pytest.approx((g2 / (1 + g2) + g2 / 1) / 2)


def test_rows_without_positive_score_zero_ndcg_like_sklearn() -> None:
    scores = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.1]])
    targets = np.array([[0, 0, 0], [0, 1, 0]])
    assert M.ndcg_at_k(scores, targets, 3) == pytest.approx(ndcg_score(targets, scores, k=3))
    assert M.ndcg_at_k(scores, targets, 3) == pytest.approx(0.5)


def _best_f1_bruteforce(scores: np.ndarray, targets: np.ndarray) -> float:
    """Max F1 of one class over every threshold 'predict s >= t' (t over the scores and inf)."""
    best = 0.0
    for thr in [*np.unique(scores), np.inf]:
        pred = scores >= thr
        best = max(best, f1_score(targets, pred, zero_division=0))
    return best


@SETTINGS
@given(score_target_matrices(max_n=15, max_c=4))
def test_tuned_thresholds_reach_the_best_f1(data: tuple[np.ndarray, np.ndarray]) -> None:
    scores, targets = data
    thr = M.tune_class_thresholds(scores, targets)
    for c in range(scores.shape[1]):
        got = f1_score(targets[:, c], scores[:, c] >= thr[c], zero_division=0)
        assert got == pytest.approx(_best_f1_bruteforce(scores[:, c], targets[:, c]), abs=1e-12)
        if not targets[:, c].any():
            assert thr[c] == np.inf


def test_adaptive_scores_use_thresholds_from_the_other_split() -> None:
    tune_s = np.array([[0.2, 0.9], [0.3, 0.1], [0.1, 0.8]])
    tune_t = np.array([[1, 1], [1, 0], [0, 1]])
    thr = M.tune_class_thresholds(tune_s, tune_t)
    np.testing.assert_allclose(thr, [0.15, 0.45])  # halfway to the next lower score
    eval_s = np.array([[0.16, 0.5], [0.14, 0.4]])
    eval_t = np.array([[1, 1], [0, 0]])
    got = M.adaptive_f1_scores(tune_s, tune_t, eval_s, eval_t)
    assert got["adaptive_OF1"] == 1.0 and got["adaptive_CF1"] == 1.0
    assert M.label_f1_scores(eval_s, eval_t)["OF1"] < 1.0  # the fixed 0.5 threshold misses one


@SETTINGS
@given(score_target_matrices(max_n=20), st.integers(1, 5), st.randoms(use_true_random=False))
def test_streamed_equals_concatenated(data: tuple[np.ndarray, np.ndarray], n_batches: int,
                                      rnd) -> None:
    scores, targets = data
    n = len(scores)
    perm = list(range(n))
    rnd.shuffle(perm)  # batches arrive in any order, as under DDP
    cuts = sorted(rnd.sample(range(1, n), min(n_batches - 1, n - 1))) if n > 1 else []
    acc = M.ScoreAccumulator()
    for part in np.split(np.array(perm), cuts):
        acc.update(torch.from_numpy(scores[part]), torch.from_numpy(targets[part]),
                   index=torch.from_numpy(part))
    idx, s, t = acc.compute()
    np.testing.assert_array_equal(idx, np.arange(n))
    np.testing.assert_array_equal(s, scores)
    np.testing.assert_array_equal(t, targets)
    np.testing.assert_array_equal(M.average_precision_per_class(s, t),
                                  M.average_precision_per_class(scores, targets))


def test_accumulator_rejects_duplicates() -> None:
    acc = M.ScoreAccumulator()
    acc.update(np.zeros((2, 3)), np.zeros((2, 3)), index=np.array([0, 1]))
    acc.update(np.zeros((1, 3)), np.zeros((1, 3)), index=np.array([1]))
    with pytest.raises(ValueError, match="example index 1 was added more than once"):
        acc.compute()


@pytest.mark.parametrize(("scores", "targets", "message"), [
    (np.zeros(3), np.zeros(3), r"scores must be 2-D \[N, C\], got shape \(3,\)"),
    (np.zeros((2, 3)), np.zeros((2, 2)), r"targets shape \(2, 2\) does not match"),
    (np.array([[0.1, np.nan]]), np.zeros((1, 2)), "scores must be finite; found nan at row 0, "
                                                   "column 1"),
    (np.zeros((2, 2)), np.array([[0, 1], [0.5, 0]]), "targets must be 0 or 1; found 0.5 at row 1, "
                                                     "column 0"),
    (np.zeros((0, 2)), np.zeros((0, 2)), "empty"),
])
def test_bad_input_names_the_problem(scores: np.ndarray, targets: np.ndarray, message: str,
                                     ap_path: str) -> None:
    with pytest.raises(ValueError, match=message):
        M.mean_average_precision(scores, targets)


@pytest.mark.parametrize("shape", [(5, 1), (1, 4), (600, 700)])
def test_inputs_are_not_modified(shape: tuple[int, int], ap_path: str) -> None:
    rng = np.random.default_rng(3)
    scores = rng.random(shape)
    targets = rng.random(shape) < 0.3
    before = scores.copy()
    M.average_precision_per_class(scores, targets)
    M.tune_class_thresholds(scores, targets)
    np.testing.assert_array_equal(scores, before)


# -- the METRICS registry -------------------------------------------------------------------

# every metric key a built-in task reports (schema 1.0, plus the image tasks' map_zero of issue
# 14), written out by hand
REPORTED = {
    "synthetic": ["map", "CP", "CR", "CF1", "OP", "OR", "OF1", "macro_f1"],
    "text": ["P@1", "P@3", "P@5", "nDCG@1", "nDCG@3", "nDCG@5", "micro_f1", "macro_f1",
             "hamming_loss"],
    "image": ["map", "map_zero", "CP", "CR", "CF1", "OP", "OR", "OF1", "CP_top3", "CR_top3",
              "CF1_top3", "OP_top3", "OR_top3", "OF1_top3", "adaptive_CP", "adaptive_CR",
              "adaptive_CF1", "adaptive_OP", "adaptive_OR", "adaptive_OF1"],
    "docred": ["ign_f1", "f1", "precision", "recall", "ign_precision", "intra_f1", "inter_f1"],
}


def test_registry_has_every_reported_metric_with_its_direction() -> None:
    for names in REPORTED.values():
        for name in names:
            spec = M.METRICS.get(name)
            assert spec.name == name and spec.higher_is_better == (name != "hamming_loss")
            assert spec.doc
    assert {M.METRICS.get(n).needs for n in REPORTED["docred"]} == {"rule"}
    assert all(M.METRICS.get(n).fn is None for n in REPORTED["docred"])
    assert M.METRICS.get("adaptive_CF1").needs == "rule"
    assert M.METRICS.get("CF1_top3").needs == M.METRICS.get("macro_f1").needs == "decisions"
    assert M.METRICS.get("map").needs == M.METRICS.get("nDCG@3").needs == "scores"
    with pytest.raises(KeyError, match="did you mean 'CF1'"):
        M.METRICS.get("CF2")


@SETTINGS
@given(score_target_matrices(), st.sampled_from([0.3, 0.5, 0.8]))
def test_registered_decision_metrics_equal_sklearn(data: tuple[np.ndarray, np.ndarray],
                                                   thr: float) -> None:
    scores, targets = data
    names = [n for n in M.METRICS.names() if M.METRICS.get(n).needs == "decisions"
             and not n.endswith("_top3")]
    got = M.compute_metrics(names, scores, targets, threshold=thr)
    assert list(got) == names
    if scores.shape[1] < 2:
        return  # sklearn reads a single column as a binary (not multi-label) problem
    pred, y = scores >= thr, targets
    kw = {"zero_division": 0}
    expected = {
        "CP": precision_score(y, pred, average="macro", **kw),
        "CR": recall_score(y, pred, average="macro", **kw),
        "OP": precision_score(y, pred, average="micro", **kw),
        "OR": recall_score(y, pred, average="micro", **kw),
        "micro_precision": precision_score(y, pred, average="micro", **kw),
        "micro_recall": recall_score(y, pred, average="micro", **kw),
        "macro_precision": precision_score(y, pred, average="macro", **kw),
        "macro_recall": recall_score(y, pred, average="macro", **kw),
        "micro_f1": f1_score(y, pred, average="micro", **kw),
        "macro_f1": f1_score(y, pred, average="macro", **kw),
        "hamming_loss": hamming_loss(y, pred),
        "subset_accuracy": float((pred == y).all(axis=1).mean()),
    }
    for a, b in (("CP", "CR"), ("OP", "OR")):
        p, r = expected[a], expected[b]
        expected[a[0] + "F1"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    assert set(expected) == set(names)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_registered_ranking_map_and_adaptive_metrics() -> None:
    rng = np.random.default_rng(3)
    scores = rng.random((40, 7))  # continuous: no ties
    targets = rng.random((40, 7)) < 0.3
    targets[0] = False  # a row without positives
    targets[:, 2] = False  # a class without positives
    thresholds = rng.random(7)
    names = ["map", "P@1", "P@3", "nDCG@3", "nDCG@5", "adaptive_CP", "adaptive_OF1", "CP_top3"]
    got = M.compute_metrics(names, scores, targets, per_class=thresholds)
    keep = targets.any(axis=0)
    assert got["map"] == pytest.approx(np.mean([average_precision_score(targets[:, c],
                                                scores[:, c]) for c in np.flatnonzero(keep)]))
    order = np.argsort(-scores, axis=1)
    for k in (1, 3):
        assert got[f"P@{k}"] == pytest.approx(
            np.mean([targets[i, order[i, :k]].sum() / k for i in range(40)]))
    for k in (3, 5):
        assert got[f"nDCG@{k}"] == pytest.approx(ndcg_score(targets, scores, k=k))
    pred = scores >= thresholds
    assert got["adaptive_CP"] == pytest.approx(precision_score(targets, pred, average="macro",
                                                               zero_division=0))
    p, r = (f(targets, pred, average="micro", zero_division=0)
            for f in (precision_score, recall_score))
    assert got["adaptive_OF1"] == pytest.approx(2 * p * r / (p + r))
    top = np.zeros_like(targets)
    np.put_along_axis(top, order[:, :3], True, axis=1)
    assert got["CP_top3"] == pytest.approx(precision_score(
        targets, (scores >= 0.5) & top, average="macro", zero_division=0))


def test_compute_metrics_refuses_what_it_cannot_compute() -> None:
    s, t = np.array([[0.9, 0.1]]), np.array([[1, 0]])
    with pytest.raises(ValueError, match="needs per-class thresholds"):
        M.compute_metrics(["adaptive_CF1"], s, t)
    with pytest.raises(ValueError, match="computed by its task"):
        M.compute_metrics(["ign_f1"], s, t)
    with pytest.raises(ValueError, match="needs must be one of"):
        M.MetricSpec("x", True, "probabilities", True, "doc", lambda s, t: 0.0)  # type: ignore


def test_resamplable_metrics_recompute_from_scores_and_targets() -> None:
    fns = M.resamplable_metrics()
    # what the leaderboard's bootstrap could recompute before the registry, and more
    assert {"map", "macro_f1", "CP", "CR", "CF1", "OP", "OR", "OF1", "P@1", "P@3", "P@5",
            "nDCG@1", "nDCG@3", "nDCG@5"} <= set(fns)
    assert not {n for n in fns if n.startswith("adaptive_")} | (set(fns) & set(
        REPORTED["docred"]))
    s = np.array([[0.9, 0.4], [0.35, 0.6]])
    t = np.array([[1, 1], [0, 1]])
    assert fns["OR"](s, t) == pytest.approx(2 / 3)  # 0.9 and 0.6 pass 0.5, 0.4 does not
    assert M.metric_function("OR", threshold=0.3)(s, t) == 1.0
    assert M.metric_function("P@1")(s, t) == 1.0
    with pytest.raises(ValueError, match="cannot be recomputed"):
        M.metric_function("ign_f1")


def test_register_metric_adds_a_plugin_metric(monkeypatch) -> None:
    monkeypatch.setattr(M.METRICS, "_items", dict(M.METRICS._items))  # undone after the test

    @M.register_metric("max_score", higher_is_better=True, needs="scores", resamplable=True)
    def max_score(scores, targets) -> float:
        """The largest score."""
        return float(np.max(scores))

    assert M.compute_metrics(["max_score", "P@1"], [[0.2, 0.7]], [[1, 0]]) == {
        "max_score": 0.7, "P@1": 0.0}
    assert M.METRICS.get("max_score").doc == "The largest score."


def test_doctests() -> None:
    import doctest

    assert doctest.testmod(M).failed == 0
