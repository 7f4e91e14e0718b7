"""python -m leaderboard: golden output, determinism, invalid files, confidence intervals."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from leaderboard.__main__ import main
from leaderboard.render import build, paired_bootstrap, seed_interval

FIX = Path(__file__).parent / "fixtures" / "leaderboard"


def test_golden_markdown(tmp_path: Path) -> None:
    out = tmp_path / "LEADERBOARD.md"
    assert main([str(FIX), "-o", str(out), "--skip-invalid"]) == 0
    assert out.read_text(encoding="utf-8") == (FIX / "expected.md").read_text(encoding="utf-8")


def test_versions_and_datasets_are_never_mixed() -> None:
    text = build(FIX, skip_invalid=True)
    assert "## synthetic (v1, synthetic-12l-missing0-seed0)" in text
    assert "## synthetic (v2, synthetic-12l-missing0-seed0)" in text
    v2 = text.split("## synthetic (v2")[1].split("##")[0]
    assert "| tiny_mlp | bce | 1 |" in v2 and "2 rows, 2 runs" in v2


def test_byte_identical_output_and_figures(tmp_path: Path) -> None:
    for run in ("a", "b"):
        assert main([str(FIX), "-o", str(tmp_path / run / "LB.md"), "--skip-invalid",
                     "--figures", str(tmp_path / run / "figs")]) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "LB.md").read_bytes() == (b / "LB.md").read_bytes()
    names = sorted(p.name for p in (a / "figs").iterdir())
    assert len(names) == 6  # bar chart + dev curves for each of the 3 groups
    for name in names:
        assert (a / "figs" / name).read_bytes() == (b / "figs" / name).read_bytes(), name
    assert "![dev map per epoch](figs/synthetic-v1-synthetic-12l-missing0-seed0-dev-curves.png)" \
        in (a / "LB.md").read_text()


def test_invalid_file_stops_the_run_naming_path_and_field(tmp_path: Path, capsys) -> None:
    assert main([str(FIX), "-o", str(tmp_path / "LB.md")]) == 2
    err = capsys.readouterr().err
    assert "invalid/selected_on_test.json" in err and "selection.split must be 'dev'" in err
    assert not (tmp_path / "LB.md").exists()


def test_seed_interval_known_answer() -> None:
    est, lo, hi = seed_interval({0: 0.5, 1: 0.6, 2: 0.7}, {0: 0.4, 1: 0.4, 2: 0.4})
    half = 4.303 * 0.1 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n), s of (0.1, 0.2, 0.3) = 0.1
    assert est == pytest.approx(0.2) and lo == pytest.approx(0.2 - half)
    assert hi == pytest.approx(0.2 + half)
    assert math.isnan(seed_interval({0: 0.5}, {0: 0.4})[1])


def test_paired_bootstrap_known_answer() -> None:
    # metric = mean score; the paired difference is the mean of d_i = a_i - b_i, whose 95%
    # interval is mean(d) +- 1.96 sd(d) / sqrt(n) for large n (normal approximation)
    rng = np.random.default_rng(1)
    n = 4000
    base = rng.normal(size=(n, 1))
    d = rng.normal(0.1, 0.5, size=(n, 1))
    row = base + d
    targets = np.zeros((n, 1), dtype=bool)
    est, lo, hi = paired_bootstrap(lambda s, t: float(s.mean()), [row], [base], targets,
                                   n_resamples=1000)
    half = 1.96 * d.std(ddof=1) / math.sqrt(n)
    assert est == pytest.approx(d.mean(), abs=1e-12)
    assert lo == pytest.approx(d.mean() - half, abs=0.15 * half)
    assert hi == pytest.approx(d.mean() + half, abs=0.15 * half)
    same = paired_bootstrap(lambda s, t: float(s.mean()), [base], [base], targets,
                            n_resamples=50)
    assert same == (0.0, 0.0, 0.0)


def test_bootstrap_path_uses_saved_scores(tmp_path: Path) -> None:
    # two runs per row with saved scores that reproduce their recorded mAP -> bootstrap column
    import json

    from tasks.metrics import mean_average_precision

    rng = np.random.default_rng(0)
    targets = rng.random((60, 5)) < 0.3
    src = json.loads((FIX / "synthetic" / "tiny_mlp__bce__seed0.json").read_text())
    for loss in ("bce", "asl"):
        for seed in (0, 1):
            scores = np.clip(targets * (0.3 if loss == "asl" else 0.1) + rng.random((60, 5)), 0, 1)
            res = json.loads(json.dumps(src))
            res["loss"]["name"], res["seed"] = loss, seed
            res["task"]["num_examples"], res["task"]["num_labels"] = 60, 5
            res["metrics"]["map"] = mean_average_precision(scores, targets).value
            res["scores_file"] = f"{loss}{seed}.scores.npz"
            np.savez(tmp_path / res["scores_file"], index=np.arange(60), scores=scores,
                     targets=targets.astype(np.uint8))
            (tmp_path / f"{loss}{seed}.json").write_text(json.dumps(res))
    text = build(tmp_path)
    assert "paired bootstrap over test examples (1,000 resamples)" in text
    asl_row = next(line for line in text.splitlines() if line.startswith("| tiny_mlp | asl"))
    assert asl_row.split(" | ")[-3].endswith("*")  # clearly better: interval excludes 0


def test_committed_leaderboard_is_reproduced_from_results(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "LEADERBOARD.md"
    assert main([str(repo / "results"), "-o", str(out), "--figures",
                 str(tmp_path / "figures" / "leaderboard")]) == 0
    expected = (repo / "LEADERBOARD.md").read_text(encoding="utf-8")
    assert out.read_text(encoding="utf-8") == expected


def test_a_preset_of_the_baseline_loss_is_the_baseline(tmp_path: Path) -> None:
    # DocRED's BCE runs carry the preset bce_docred; with --baseline bce they are the baseline
    import json
    import shutil

    shutil.copytree(FIX / "synthetic_v2", tmp_path / "r")
    path = tmp_path / "r" / "tiny_mlp__bce__seed0.json"
    res = json.loads(path.read_text())
    res["loss"]["preset"] = "bce_docred"
    path.write_text(json.dumps(res))
    text = build(tmp_path / "r")
    assert "| tiny_mlp | bce_docred | 1 |" in text.split("\n| tiny_mlp | asl")[0]
    bce_line = next(line for line in text.splitlines() if "| bce_docred |" in line)
    asl_line = next(line for line in text.splitlines() if "| tiny_mlp | asl |" in line)
    assert "| baseline |" in bce_line and "n/a" not in asl_line
    assert asl_line.split(" | ")[-2].replace(".", "").isdigit()  # ex/s column


def test_tuned_thresholds_are_shown_as_a_range() -> None:
    from leaderboard.render import _thresholds

    runs = [{"threshold": {"policy": "dev_tuned", "value": v}} for v in (0.41956, 0.38, 0.5)]
    runs.append({"threshold": {"policy": "fixed", "value": 0.5}})
    assert _thresholds(runs) == "dev_tuned 0.38-0.5 over runs, fixed 0.5"
    runs = [{"threshold": {"policy": "per_class_dev_tuned", "value": [0.1, 0.2]}}]
    assert _thresholds(runs) == "per_class_dev_tuned (per class or unset)"
