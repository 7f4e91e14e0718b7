"""python -m leaderboard: golden output, determinism, invalid files, confidence intervals."""

from __future__ import annotations

import copy
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from leaderboard.__main__ import main
from leaderboard.render import build
from leaderboard.schema import Result, SchemaError, Threshold, read_results
from leaderboard.stats import paired_bootstrap, seed_interval
from leaderboard.table import DuplicateRunError, distinguishing_suffixes, sweep_table
from mllb_core.identity import run_id, run_identity

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "leaderboard"


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
    assert (a / "LB_APPENDIX.md").read_bytes() == (b / "LB_APPENDIX.md").read_bytes()
    names = sorted(p.name for p in (a / "figs").iterdir())
    # bar chart + dev curves for each of the 3 groups, and the summary's forest plot
    assert len(names) == 7 and "summary-forest.png" in names
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
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "LEADERBOARD.md"
    assert main([str(repo / "results"), "-o", str(out), "--figures",
                 str(tmp_path / "figures" / "leaderboard")]) == 0
    expected = (repo / "LEADERBOARD.md").read_text(encoding="utf-8")
    assert out.read_text(encoding="utf-8") == expected
    appendix = (repo / "LEADERBOARD_APPENDIX.md").read_text(encoding="utf-8")
    assert (tmp_path / "LEADERBOARD_APPENDIX.md").read_text(encoding="utf-8") == appendix


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

    rules = [Threshold("dev_tuned", v) for v in (0.41956, 0.38, 0.5)]
    rules.append(Threshold("fixed", 0.5))
    assert _thresholds(rules) == "dev_tuned 0.38-0.5 over runs, fixed 0.5"
    assert _thresholds([Threshold("per_class_dev_tuned", [0.1, 0.2])]) == (
        "per_class_dev_tuned (per class or unset)")
    assert _thresholds([Threshold("per_class_dev_tuned", 0.5, per_class=[0.1, 0.2])]) == (
        "per_class_dev_tuned (per class or unset)")


# ----------------------------------------------------------------------------- rows = settings


def _run(loss: str, seed: int, *, epochs: int = 2, value: float | None = None,
         **loss_kwargs: float) -> dict:
    """A fixture run (synthetic v1) edited into another run: seed, epochs (config and a history
    of that length), test map and loss hyper-parameters."""
    src = FIX / "synthetic" / f"tiny_mlp__{loss}__seed0.json"
    res = json.loads(src.read_text(encoding="utf-8"))
    res["seed"] = res["config"]["seed"] = seed
    res["config"]["epochs"] = res["extra"]["epochs_run"] = epochs
    last = res["history"][-1]
    res["history"] = [{**copy.deepcopy(last), "epoch": e} for e in range(1, epochs + 1)]
    res["selection"]["epoch"] = epochs
    if value is not None:
        res["metrics"]["map"] = value
    res["loss"]["kwargs"].update(loss_kwargs)
    return res


def _write(root: Path, runs: dict[str, dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, res in runs.items():
        (root / name).write_text(json.dumps(res), encoding="utf-8")
    return root


def _line(text: str, start: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith(start)]
    assert len(lines) == 1, (start, lines)
    return lines[0]


def _pct(values: list[float]) -> str:
    """mean ± sample std in %, computed independently of the renderer."""
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def test_runs_with_different_epochs_are_never_pooled(tmp_path: Path) -> None:
    # the reported bug: one 1-epoch run and two 10-epoch runs of bce became one
    # "37.14 ± 15.93"-style row with n = 3
    root = _write(tmp_path / "r", {
        "bce0.json": _run("bce", 0, epochs=1, value=0.10),
        "bce1.json": _run("bce", 1, epochs=10, value=0.45),
        "bce2.json": _run("bce", 2, epochs=10, value=0.47),
        "asl1.json": _run("asl", 1, epochs=10, value=0.50),
        "asl2.json": _run("asl", 2, epochs=10, value=0.49),
    })
    text = build(root)
    one = _line(text, "| tiny_mlp | bce (epochs=1) |")
    ten = _line(text, "| tiny_mlp | bce (epochs=10) |")
    assert one.startswith(f"| tiny_mlp | bce (epochs=1) | 1 | {_pct([0.10])} |")
    assert ten.startswith(f"| tiny_mlp | bce (epochs=10) | 2 | {_pct([0.45, 0.47])} |")
    assert _pct([0.10, 0.45, 0.47]) not in text
    assert "| 3 |" not in text and "3 rows, 5 runs" in text
    assert "| baseline |" in one and "| baseline |" in ten  # each bce recipe is a baseline
    # asl (10 epochs) is compared with the 10-epoch bce: paired seed differences 0.05, 0.02
    asl = _line(text, "| tiny_mlp | asl |")
    assert f"| {100 * statistics.mean([0.05, 0.02]):+.2f} [" in asl


def test_same_run_twice_is_an_error_naming_both_files(tmp_path: Path, capsys) -> None:
    run = _run("bce", 0)
    root = _write(tmp_path / "r", {"a.json": run, "b.json": run})
    with pytest.raises(DuplicateRunError) as info:
        build(root)
    message = str(info.value)
    assert str(root / "a.json") in message and str(root / "b.json") in message
    assert Result.from_dict(run).full_run_id in message
    assert main([str(root), "-o", str(tmp_path / "LB.md")]) == 2
    assert "b.json" in capsys.readouterr().err


def test_loss_hyper_parameters_get_a_readable_suffix(tmp_path: Path) -> None:
    root = _write(tmp_path / "r", {
        "asl3.json": _run("asl", 0, gamma_neg=3.0), "asl4.json": _run("asl", 0, gamma_neg=4.0),
        "bce.json": _run("bce", 0)})
    text = build(root)
    _line(text, "| tiny_mlp | asl (loss.gamma_neg=3.0) | 1 |")
    _line(text, "| tiny_mlp | asl (loss.gamma_neg=4.0) | 1 |")
    _line(text, "| tiny_mlp | bce | 1 |")  # alone under its label: no suffix


def test_a_1_0_file_and_a_1_1_file_of_one_setting_share_a_row(tmp_path: Path) -> None:
    new = _run("bce", 1)
    new["schema_version"] = "1.1"
    new["identity"] = run_identity(new)
    new["run_id"] = run_id(new["identity"])
    root = _write(tmp_path / "r", {"old.json": _run("bce", 0), "new.json": new})
    _line(build(root), "| tiny_mlp | bce | 2 |")


def test_protocol_line_names_the_cpu_level_the_runs_recorded(tmp_path: Path) -> None:
    old, new = _run("bce", 0), _run("bce", 1)  # a file before 1.2 and one after
    new["schema_version"] = "1.2"
    new["env"]["cpu_capability"] = "AVX2"
    line = _line(build(_write(tmp_path / "a", {"old.json": old})), "Protocol:")
    assert line.startswith("Protocol: device cpu, world size 1,")  # as before 1.2
    line = _line(build(_write(tmp_path / "b", {"old.json": old, "new.json": new})), "Protocol:")
    assert line.startswith(
        "Protocol: device cpu (ATen CPU capability AVX2, not recorded), world size 1,")


def test_protocol_line_names_the_kernels_the_runs_recorded(tmp_path: Path) -> None:
    old, fused, eager = _run("bce", 0), _run("bce", 1), _run("bce", 2)
    fused["extra"] = {**(fused.get("extra") or {}), "kernels": ["cpu_fused", "ap_cpp"]}
    eager["extra"] = {**(eager.get("extra") or {}), "kernels": []}
    line = _line(build(_write(tmp_path / "a", {"old.json": old})), "Protocol:")
    assert "kernels" not in line  # files before extra.kernels: the line as before
    line = _line(build(_write(tmp_path / "b", {"old.json": old, "fused.json": fused,
                                               "eager.json": eager})), "Protocol:")
    assert "mixed precision no; MLLB kernels ap_cpp+cpu_fused, not recorded, torch only;" in line
    eager["extra"]["kernels"] = "ap_cpp"  # not a list: the file is refused, naming the field
    with pytest.raises(ValueError, match=r"extra\.kernels: expected a list of kernel names"):
        Result.from_dict(eager)


def test_distinguishing_suffixes() -> None:
    base = {"loss.name": "asl", "loss.kwargs": {"gamma_neg": 4.0, "clip": 0.05},
            "train.epochs": 10, "train.lr": 0.001, "task.data_fingerprint": "sha256:" + "ab" * 32}
    other = copy.deepcopy(base)
    other["loss.kwargs"]["gamma_neg"] = 3
    other["train.epochs"] = 1
    assert distinguishing_suffixes([base, other]) == [
        " (loss.gamma_neg=4.0, epochs=10)", " (loss.gamma_neg=3, epochs=1)"]
    many = copy.deepcopy(other)
    many["task.data_fingerprint"] = "sha256:" + "cd" * 32
    many["train.lr"] = 0.1
    many["loss.kwargs"]["new_option"] = "a-very-long-string-value"
    assert distinguishing_suffixes([base, many]) == [
        " (loss.gamma_neg=4.0, loss.new_option=absent, data=abababab, …)",
        " (loss.gamma_neg=3, loss.new_option=a-very-long…, data=cdcdcdcd, …)"]
    assert distinguishing_suffixes([base]) == [""]


# ----------------------------------------------------------------------------- sweep_table


def test_sweep_table_groups_by_setting_with_primary_metric_first() -> None:
    files = sorted((FIX / "synthetic").glob("*.json"))
    results: list = [read_results(p) for p in files]  # cells skipped because already on disk
    results[0] = Result.from_dict(results[0])  # ... mixed with fresh ones
    table = sweep_table(results)
    lines = table.splitlines()
    assert lines[0] == ("synthetic (v1, synthetic-12l-missing0-seed0): test split, metrics in %, "
                        "mean ± std over seeds")
    assert lines[2] == "| model | loss | n | map ↑ | CF1 ↑ | CP ↑ | CR ↑ | OF1 ↑ | train s |"
    raw = [json.loads(p.read_text(encoding="utf-8")) for p in files]
    for loss in ("aam", "asl", "bce"):
        runs = [r for r in raw if r["loss"]["name"] == loss]
        cells = [_pct([r["metrics"][m] for r in runs]) for m in ("map", "CF1", "CP", "CR", "OF1")]
        train = statistics.mean(r["timing"]["train_s"] for r in runs)
        _line(table, f"| tiny_mlp | {loss} | {len(runs)} | " + " | ".join(cells)
              + f" | {train:.1f} |")
    assert table.endswith("|\n") and len(lines) == 4 + 3


def test_sweep_table_never_pools_and_refuses_duplicates() -> None:
    runs = [_run("bce", 0, epochs=1, value=0.1), _run("bce", 1, epochs=10, value=0.45),
            _run("bce", 2, epochs=10, value=0.47)]
    table = sweep_table(runs)
    assert f"| tiny_mlp | bce (epochs=10) | 2 | {_pct([0.45, 0.47])} |" in table
    assert f"| tiny_mlp | bce (epochs=1) | 1 | {_pct([0.1])} |" in table
    with pytest.raises(DuplicateRunError, match=r"<result 1>: the same run as <result 0>"):
        sweep_table([runs[0], copy.deepcopy(runs[0])])
    with pytest.raises(SchemaError, match=r"cell\.json: selection\.split"):
        sweep_table([{**runs[0], "selection": {"metric": "map", "split": "test", "epoch": 1}}],
                    sources=["cell.json"])
    assert sweep_table([]) == ""
