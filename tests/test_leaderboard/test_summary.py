"""Cross-task summary and the bootstrap from per-example counts, against computations written here.

Every expected number is computed in this file (plain numpy and scipy, the same draws:
``default_rng(0)``, one ``integers(0, E, E)`` per resample after the full split), never taken
from the code under test.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import rankdata
from test_leaderboard import FIX, _run, _write

from leaderboard.__main__ import main
from leaderboard.render import build, group_runs
from leaderboard.schema import Result, iter_results
from leaderboard.summary import compare_table, summarize
from leaderboard.table import MinPrimary

E = 150  # test examples (sentences) of the counted fixtures
R = 1000  # the leaderboard's resamples
T975_2 = 4.303  # t(0.975, 2 degrees of freedom), for three paired seeds


def _f1(summed: np.ndarray) -> float:
    """Entity micro F1 from summed (correct, predicted, gold), written out for the test."""
    correct, predicted, gold = (float(x) for x in summed)
    return 2 * correct / (predicted + gold) if predicted + gold > 0 else 0.0


def _counts(rng: np.random.Generator, gold: np.ndarray, skill: float) -> np.ndarray:
    """Per-sentence (correct, predicted, gold): a tagger finding a ``skill`` share of entities."""
    correct = rng.binomial(gold, skill)
    predicted = correct + rng.binomial(3, 1 - skill, size=len(gold))
    return np.stack([correct, predicted, gold], axis=1).astype(np.int64)


def _counted_run(root: Path, name: str, loss: str, seed: int, counts: np.ndarray, *,
                 model: str = "tiny_mlp", shift: float = 0.0) -> None:
    """A fixture run turned into an NER-like run whose primary metric is entity_micro_f1 with
    saved per-example counts; ``shift`` moves the recorded metric away from the counts."""
    res = _run(loss, seed)
    res["model"]["name"] = model
    res["selection"]["metric"] = "entity_micro_f1"
    res["metrics"] = {"entity_micro_f1": _f1(counts.sum(0)) + shift}
    res["higher_is_better"] = {"entity_micro_f1": True}
    for h in res["history"]:
        h["dev"] = {"entity_micro_f1": 0.5}
    res["scores_file"] = f"{name}.scores.npz"
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / res["scores_file"], counts=counts, metric=np.array("entity_micro_f1"))
    _write(root, {f"{name}.json": res})


def _numpy_means(runs: list[np.ndarray]) -> np.ndarray:
    """Mean F1 over ``runs`` on the full split, then on each draw, by fancy indexing."""
    rng = np.random.default_rng(0)
    draws = [np.arange(E)] + [rng.integers(0, E, E) for _ in range(R)]
    return np.array([np.mean([_f1(c[idx].sum(0)) for c in runs]) for idx in draws])


def _groups(root: Path) -> dict:
    return group_runs((p, Result.from_dict(o, str(p))) for p, o in iter_results(root))


def _counted_fixture(root: Path, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """bce and asl (2 seeds each) on one test set; returns their counts per loss."""
    gold = rng.integers(0, 5, E)
    runs = {"bce": [_counts(rng, gold, 0.5) for _ in range(2)],
            "asl": [_counts(rng, gold, 0.6) for _ in range(2)]}
    for loss, counts in runs.items():
        for seed, c in enumerate(counts):
            _counted_run(root, f"{loss}{seed}", loss, seed, c)
    return runs


def test_bootstrap_from_counts_equals_a_numpy_reimplementation(tmp_path: Path) -> None:
    runs = _counted_fixture(tmp_path / "r", np.random.default_rng(3))
    d = _numpy_means(runs["asl"]) - _numpy_means(runs["bce"])
    lo, hi = np.percentile(d[1:], [2.5, 97.5])
    (key, rows), = _groups(tmp_path / "r").items()
    delta, = compare_table(key, rows).deltas.values()
    assert delta.method == "bootstrap" and delta.loss_label == "asl"
    assert delta.delta == pytest.approx(d[0], abs=1e-12)
    assert (delta.lo, delta.hi) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
    assert delta.outcome == ("win" if lo > 0 else "tie")
    text = build(tmp_path / "r")
    asl = next(line for line in text.splitlines() if line.startswith("| tiny_mlp | asl |"))
    assert f"| {100 * d[0]:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]" in asl
    assert "fallback" not in asl


@pytest.mark.parametrize("spoil", ["metric", "gold", "examples"])
def test_counts_that_do_not_match_fall_back_to_seeds(tmp_path: Path, spoil: str) -> None:
    rng = np.random.default_rng(4)
    root = tmp_path / "r"
    runs = _counted_fixture(root, rng)
    c = runs["asl"][1]
    if spoil == "metric":  # recorded metric 1e-6 away from what the counts give: not its counts
        _counted_run(root, "asl1", "asl", 1, c, shift=1e-6)
    elif spoil == "gold":  # another test set (the gold column differs)
        other = c.copy()
        other[0, 2] += 1
        _counted_run(root, "asl1", "asl", 1, other)
    else:  # one example fewer
        _counted_run(root, "asl1", "asl", 1, c[:-1])
    (key, rows), = _groups(root).items()
    delta, = compare_table(key, rows).deltas.values()
    assert delta.method == "seeds"
    bce = {s: _f1(x.sum(0)) for s, x in enumerate(runs["bce"])}
    asl = {0: _f1(runs["asl"][0].sum(0)),
           1: next(r.metrics["entity_micro_f1"] for row in rows for _, r in row.runs
                   if r.loss.name == "asl" and r.seed == 1)}
    diffs = [asl[s] - bce[s] for s in (0, 1)]
    half = 12.706 * np.std(diffs, ddof=1) / math.sqrt(2)  # t(0.975, 1)
    assert delta.delta == pytest.approx(np.mean(diffs), abs=1e-12)
    assert delta.lo == pytest.approx(np.mean(diffs) - half, abs=1e-12)
    assert "(fallback: seeds)" in build(root)


def _seed_run(loss: str, seed: int, value: float, model: str = "tiny_mlp") -> dict:
    res = _run(loss, seed, value=value)
    res["model"]["name"] = model
    return res


def test_wins_ties_losses_and_mean_rank_on_hand_built_rows(tmp_path: Path) -> None:
    base = {0: 0.40, 1: 0.41, 2: 0.42}
    # tiny_mlp: asl +0.05 +- 0.01 (win), aam -0.05 +- 0.01 (loss), apl +0.05/-0.04/0 (tie);
    # other: asl -0.05 +- 0.01 (loss)
    shifts = {("tiny_mlp", "asl"): (0.05, 0.06, 0.04), ("tiny_mlp", "aam"): (-0.05, -0.06, -0.04),
              ("tiny_mlp", "apl"): (0.05, -0.04, 0.0), ("other", "asl"): (-0.05, -0.06, -0.04)}
    runs = {}
    for model in ("tiny_mlp", "other"):
        for s, v in base.items():
            runs[f"{model}_bce{s}.json"] = _seed_run("bce", s, v, model)
    for (model, loss), deltas in shifts.items():
        for s, dv in enumerate(deltas):
            src = "asl" if loss in ("asl", "apl") else "aam"  # fixtures exist for these
            res = _seed_run(src, s, base[s] + dv, model)
            res["loss"]["name"] = loss
            runs[f"{model}_{loss}{s}.json"] = res
    summary = summarize(_groups(_write(tmp_path / "r", runs)))
    by = {(d.model, d.loss_label): d for d in summary.deltas}
    assert {k: d.outcome for k, d in by.items()} == {
        ("tiny_mlp", "asl"): "win", ("tiny_mlp", "aam"): "loss", ("tiny_mlp", "apl"): "tie",
        ("other", "asl"): "loss"}
    for (model, loss), deltas in shifts.items():  # the paired t-interval, computed here
        half = T975_2 * np.std(deltas, ddof=1) / math.sqrt(3)
        d = by[(model, loss)]
        assert d.method == "seeds"
        assert (d.delta, d.lo, d.hi) == pytest.approx(
            (np.mean(deltas), np.mean(deltas) - half, np.mean(deltas) + half), abs=1e-12)
    totals = {s.loss_label: (s.wins, s.ties, s.losses, s.n_tasks) for s in summary.losses}
    assert totals == {"asl": (1, 0, 1, 2), "aam": (0, 0, 1, 1), "apl": (0, 1, 0, 1),
                      "bce": (0, 0, 0, 2)}
    # ranks by mean: tiny_mlp asl .46 > apl .4133 > bce .41 > aam .36; other bce > asl
    ranks = {s.loss_label: s.mean_rank for s in summary.losses}
    assert ranks == {"asl": pytest.approx(1.5), "apl": 2.0, "bce": pytest.approx(2.0),
                     "aam": 4.0}
    assert summary.losses[0].loss_label == "asl"  # sorted by mean rank
    assert all(s.rank_lo <= s.mean_rank <= s.rank_hi for s in summary.losses)
    assert len(summary.seed_groups) == 2  # no saved outputs: both groups resampled seeds


def test_mean_rank_interval_equals_a_numpy_reimplementation(tmp_path: Path) -> None:
    # two models on one test set, three losses each, one seed: the rank interval resamples the
    # test examples with the same draws in both groups
    rng = np.random.default_rng(5)
    gold = rng.integers(0, 5, E)
    skill = {"bce": 0.50, "asl": 0.53, "aam": 0.55}
    counts = {(model, loss): _counts(rng, gold, p)
              for model in ("tiny_mlp", "other") for loss, p in skill.items()}
    for (model, loss), c in counts.items():
        _counted_run(tmp_path / "r", f"{model}_{loss}", loss, 0, c, model=model)
    summary = summarize(_groups(tmp_path / "r"))
    assert not summary.seed_groups
    losses = ["aam", "asl", "bce"]
    per_group = []
    for model in ("other", "tiny_mlp"):
        means = np.stack([_numpy_means([counts[(model, loss)]]) for loss in losses])
        per_group.append(np.stack([rankdata(-means[:, j], method="average")
                                   for j in range(1 + R)], axis=1))  # [loss, 1 + R]
    mean_rank = np.mean(per_group, axis=0)
    got = {s.loss_label: s for s in summary.losses}
    for i, loss in enumerate(losses):
        lo, hi = np.percentile(mean_rank[i, 1:], [2.5, 97.5])
        assert got[loss].mean_rank == pytest.approx(mean_rank[i, 0])
        assert (got[loss].rank_lo, got[loss].rank_hi) == (pytest.approx(lo), pytest.approx(hi))
        assert got[loss].n_tasks == 2


def test_the_leaderboard_begins_with_the_summary(tmp_path: Path) -> None:
    text = build(FIX, skip_invalid=True)
    lines = text.splitlines()
    assert lines[0] == "# MLLB leaderboard" and lines[2].startswith("Generated by")
    assert lines[4] == "## Summary across tasks"
    summary = text.split("## Summary across tasks")[1].split("\n## ")[0]
    assert "| loss | wins | ties | losses | groups | mean rank [95% CI] |" in summary
    assert "| task · model | primary | " in summary and "bootstrap" in summary
    assert text.index("## Summary across tasks") < text.index("## aapd (v1")


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {p.splitlines()[0]: p for p in parts}


def test_task_tables_show_at_most_six_metrics_and_the_appendix_all(tmp_path: Path) -> None:
    out = tmp_path / "LB.md"
    assert main([str(FIX), "-o", str(out), "--skip-invalid"]) == 0
    appendix = (tmp_path / "LB_APPENDIX.md").read_text(encoding="utf-8")
    main_sections, appendix_sections = _sections(out.read_text()), _sections(appendix)
    raw = [json.loads(p.read_text()) for p in FIX.glob("*/*.json") if p.parent.name != "invalid"]
    for res in raw:
        task = res["task"]
        title = f"{task['name']} (v{task['version']}, {task['dataset']})"
        header = next(line for line in main_sections[title].splitlines()
                      if line.startswith("| model |"))
        cells = header.strip("|").split(" | ")
        metric_cells = cells[3:cells.index(next(c for c in cells if c.startswith("Δ")))]
        assert 1 <= len(metric_cells) <= 6, header
        assert metric_cells[0].startswith(res["selection"]["metric"] + " ")
        assert f"(LB_APPENDIX.md#{task['name']}-v{task['version']}-" in main_sections[title]
        full = next(line for line in appendix_sections[title].splitlines()
                    if line.startswith("| model |"))
        for metric in res["metrics"]:
            assert f" {metric} ↑ |" in full or f" {metric} ↓ |" in full, (title, metric)
    # the synthetic fixtures have 8 metrics: the section shows the headline ones only
    assert "| CP ↑ |" not in main_sections["synthetic (v1, synthetic-12l-missing0-seed0)"]


def test_rows_below_a_min_primary_rule_are_left_out_and_listed(tmp_path: Path) -> None:
    def docred(model: str, loss: str, seed: int, dev: float, test: float) -> dict:
        res = _run(loss, seed, value=test)
        res["task"]["name"], res["model"]["name"] = "docred", model
        res["selection"]["metric"] = "ign_f1"
        res["metrics"] = {"ign_f1": test}
        res["higher_is_better"] = {"ign_f1": True}
        for i, h in enumerate(res["history"]):
            h["dev"] = {"ign_f1": dev - 0.01 * i}  # best dev at the first epoch
        return res

    root = _write(tmp_path / "r", {
        "b_bce.json": docred("bert_re", "bce", 0, 0.061, 0.05),
        "b_asl.json": docred("bert_re", "asl", 0, 0.35, 0.33),
        "m_bce.json": docred("mrn", "bce", 0, 0.10, 0.09),  # no rule for mrn: kept
        "m_asl.json": docred("mrn", "asl", 0, 0.12, 0.11)})
    text = build(root)
    section = _sections(text)[next(t for t in _sections(text) if t.startswith("docred"))]
    assert "| bert_re | bce |" not in section and "| bert_re | asl | 1 |" in section
    assert "| mrn | bce | 1 |" in section and "| mrn | asl | 1 |" in section
    assert "best dev ign_f1 (best epoch of each run, mean over seeds) is below 30.00" in section
    assert "- bert_re bce: 6.10" in section
    # bert_re asl lost its baseline: no Δ, said so
    assert "n/a (no comparable baseline)" in section
    summary = summarize(_groups(root))
    assert [(e.model, e.row_label) for e in summary.excluded] == [("bert_re", "bce")]
    assert {d.model for d in summary.deltas} == {"mrn"}
    # a caller's own rule, e.g. on the synthetic fixtures
    own = summarize(_groups(FIX / "synthetic"), rules=(MinPrimary(
        "synthetic", "tiny_mlp", "map", 0.9, "test rule"),))
    assert not own.deltas and len(own.excluded) == 3
