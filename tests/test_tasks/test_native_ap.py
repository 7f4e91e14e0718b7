"""AP per class's C++ kernel (``tasks/_native_ap.py``): the numpy path's bits, scikit-learn on
any finite scores, the cells' edge cases, non-finite input, threads, a failing build.

``tests/test_tasks/test_metrics.py`` runs every AP test of the metric on both paths as well.
Needs a C++ compiler (skipped without one, except the failing-build test). Never timed.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mllb_core import native
from tasks import _native_ap
from tasks import metrics as M

needs_kernel = pytest.mark.skipif(not _native_ap.available(),
                                  reason="the AP kernel is switched off or cannot be built")


def _kernel(s: np.ndarray, t: np.ndarray, threads: int) -> np.ndarray:
    out = _native_ap.average_precision(s, t, threads, np.empty(s.size, dtype=s.dtype))
    assert out is not None
    return out


def _numpy_path(s: np.ndarray, t: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setattr(_native_ap, "ENABLED", False)
        return M.average_precision_per_class(s, t)


def _sklearn(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.array([average_precision_score(t[:, c], s[:, c].astype(np.float64))
                     if t[:, c].any() else np.nan for c in range(s.shape[1])])


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(("n", "c"), [(1, 3), (200, 7), (1031, 130), (6000, 40)])
def test_the_kernel_gives_the_numpy_paths_bits(n: int, c: int, threads: int, dtype: type,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # (200, 7): one chunk of rows; (1031, 130): chunks of uneven length, two tiles of classes;
    # (6000, 40): several chunks per thread. Rounded scores: ties among negatives, among
    # positives and across both
    rng = np.random.default_rng(n + c)
    t = rng.random((n, c)) < 0.05
    t[:, 0] = False  # no positive: NaN
    if n > 1:
        t[0, 1] = True  # one positive
    s = np.round(rng.random((n, c)) * 0.8 + 0.2 * t, 3).astype(dtype)
    got = _kernel(s, t, threads)
    np.testing.assert_array_equal(got, _numpy_path(s, t, monkeypatch))  # NaN in the same places
    np.testing.assert_allclose(got, _sklearn(s, t), rtol=0, atol=1e-12)


def _definition(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """AP per class written plainly: the mean over the positives i of
    #positives(s >= s_i) / #(s >= s_i), comparing the scores as given."""
    out = np.full(s.shape[1], np.nan)
    for c in range(s.shape[1]):
        pos = np.flatnonzero(t[:, c])
        if len(pos):
            out[c] = np.mean([(t[:, c] & (s[:, c] >= s[i, c])).sum() / (s[:, c] >= s[i, c]).sum()
                              for i in pos])
    return out


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
# scikit-learn's own reduction warns about the -max..max differences; its results still equal
# the definition, which this test checks as well
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_any_finite_scores_equal_sklearn(dtype: type) -> None:
    info = np.finfo(dtype)
    levels = np.array([-info.max, -1e3, -1.0, -info.tiny, -info.smallest_subnormal, -0.0, 0.0,
                       info.smallest_subnormal, info.tiny, 0.5, 1.0, 7.0, info.max], dtype=dtype)
    rng = np.random.default_rng(5)
    n, c = 700, 9
    s = levels[rng.integers(0, len(levels), (n, c))]
    t = rng.random((n, c)) < 0.1
    s[:, 1] = rng.standard_normal(n).astype(dtype) * 4  # logits
    # positives spanning -max..max: the cells' width overflows to inf (one cell for all)
    s[:3, 2], t[:3, 2] = [-info.max, 0.0, info.max], True
    t[:, 3] = True  # every row positive: AP 1
    s[:, 4] = 2.5  # one score for all: AP = prevalence, a tie of everything
    t[:, 5] = s[:, 5] == s[:, 5].min()  # the positives are exactly the lowest scores
    t[:, 6], t[5, 6] = False, True  # one positive: a range of width 0
    for threads in (1, 2):
        got = _kernel(s, t, threads)
        np.testing.assert_allclose(got, _sklearn(s, t), rtol=0, atol=1e-12)
        np.testing.assert_allclose(got, _definition(s, t), rtol=0, atol=1e-12)
    assert got[3] == 1.0 and got[4] == pytest.approx(t[:, 4].mean(), abs=1e-15)


@needs_kernel
def test_a_cell_crowded_with_positives_is_searched_exactly() -> None:
    # 600 positives within 1e-9 of 0.5 and one at 1e6: nearly all share the lowest cell, so a
    # negative in it takes the binary search; negatives between and tied with them
    rng = np.random.default_rng(9)
    n = 5000
    t = np.zeros((n, 1), dtype=bool)
    s = rng.random((n, 1))
    t[:600, 0] = True
    s[:600, 0] = 0.5 + np.round(rng.random(600), 3) * 1e-9
    s[600:1200, 0] = 0.5 + np.round(rng.random(600), 3) * 1e-9  # negatives among them
    s[1200:1210, 0] = s[:10, 0]  # ties across positives and negatives
    t[1300, 0], s[1300, 0] = True, 1e6
    got = _kernel(s, t, 2)
    np.testing.assert_allclose(got, _sklearn(s, t), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got, _definition(s, t), rtol=0, atol=1e-12)


@needs_kernel
@pytest.mark.parametrize(("where", "value"), [("negative", np.nan), ("positive", np.inf),
                                              ("negative", -np.inf)])
def test_a_score_that_is_not_finite_is_named_by_the_metric(where: str, value: float) -> None:
    rng = np.random.default_rng(2)
    s = rng.random((3000, 100))
    t = rng.random((3000, 100)) < 0.05
    t[2100, 57] = where == "positive"
    s[2100, 57] = value
    assert _native_ap.average_precision(s, t, 2, np.empty(s.size)) is None
    with pytest.raises(ValueError, match=f"scores must be finite; found {value} at row 2100, "
                                         "column 57"):
        M.average_precision_per_class(s, t)


@needs_kernel
def test_concurrent_callers_get_their_own_results() -> None:
    # ctypes releases the GIL: Python threads run the kernel at the same time, each with the
    # calling thread's scratch (metrics._workspace)
    rng = np.random.default_rng(4)
    inputs = [(np.round(rng.random((4000, 80)), 3), rng.random((4000, 80)) < 0.05)
              for _ in range(3)]
    alone = [M.average_precision_per_class(s, t) for s, t in inputs]
    got: list[np.ndarray | None] = [None] * 3

    def run(i: int) -> None:
        for _ in range(5):
            got[i] = M.average_precision_per_class(*inputs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for a, b in zip(alone, got, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def fresh_cache(fresh_kernel_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty build cache with the AP kernel switched on."""
    monkeypatch.setattr(_native_ap, "ENABLED", True)
    return fresh_kernel_cache


def test_a_failing_build_warns_once_and_the_numpy_path_answers(
        fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", "false")
    rng = np.random.default_rng(1)
    s, t = rng.random((500, 6)) - 0.3, rng.random((500, 6)) < 0.2
    with pytest.warns(RuntimeWarning, match="AP kernel did not build with false"):
        got = M.average_precision_per_class(s, t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        M.average_precision_per_class(s, t)
    assert not list(fresh_cache.glob("*.so"))
    np.testing.assert_allclose(got, _sklearn(s, t), rtol=0, atol=1e-12)


@needs_kernel
def test_a_built_kernel_is_reused_from_the_cache(fresh_cache: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    s, t = np.array([[0.2, 0.9], [0.4, 0.1]]), np.array([[1, 0], [0, 1]], dtype=bool)
    assert _native_ap.available()
    assert len(list(fresh_cache.glob("ap_*.so"))) == 1
    _native_ap.library.cache_clear()  # a new process: only the disk cache remains

    def no_compiler(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached kernel was built again")

    monkeypatch.setattr(native.subprocess, "run", no_compiler)
    np.testing.assert_array_equal(_kernel(s, t, 1), [0.5, 0.5])


@needs_kernel
@pytest.mark.parametrize("max_entries", [1, 999, 4000, 10**6])
def test_classes_go_through_the_kernel_in_blocks_that_fit_the_scratch(
        max_entries: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # the scratch is [classes of a block, N]: bounded by the workspace cap whatever C is (1:
    # one class a call, even with N above the cap; 4000: blocks of 5, the last of 3)
    rng = np.random.default_rng(8)
    n, c = 800, 23
    t = rng.random((n, c)) < 0.05
    s = np.round(rng.random((n, c)) * 0.8 + 0.2 * t, 3)
    whole = M.average_precision_per_class(s, t)
    sizes: list[int] = []
    workspace = M._workspace
    monkeypatch.setattr(M, "_WORKSPACE_MAX", max_entries)
    monkeypatch.setattr(M, "_workspace",
                        lambda size, dtype=np.uint64: sizes.append(size) or workspace(size, dtype))
    got = M.average_precision_per_class(s, t)
    np.testing.assert_array_equal(got, whole)
    width = max(1, min(c, max_entries // n))
    assert sizes == [width * n]
    np.testing.assert_allclose(got, _sklearn(s, t), rtol=0, atol=1e-12)
