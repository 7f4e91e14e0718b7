"""Suites (``--suite``): the shipped suites parse, cells expand, errors name the cell, runs skip."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from accelerate.state import AcceleratorState

import run_task
from mllb_core.runconfig import ConfigError
from mllb_core.suite import check_one_launch, load_suite, parse_sweeps, suite_names

REPO = Path(__file__).resolve().parents[2]
TINY = {"model": "tiny_mlp", "epochs": 1, "batch_size": 32, "eval_batch_size": 40,
        "task_kwargs": {"num_train": 128, "num_dev": 32, "num_test": 40, "num_labels": 6,
                        "avg_positives": 2, "num_features": 8}}


def _suite(tmp: Path, cells: list[dict]) -> Path:
    cfg = tmp / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"task": "synthetic", **TINY}))
    path = tmp / "suite.yaml"
    path.write_text(yaml.safe_dump({"description": "test", "cells": [
        {"config": str(cfg), **c} for c in cells]}))
    return path


@pytest.mark.parametrize("name", suite_names())
def test_every_shipped_suite_parses_and_every_cell_config_resolves(name: str) -> None:
    sweeps = parse_sweeps(["--suite", name, "--loss", "bce", "--seed", "0"])
    assert len(sweeps) == len(load_suite(name)) >= 2
    assert all(cfg.loss == "bce" for _, _, cfg in sweeps)


def test_cpu_small_lists_every_task_family(capsys) -> None:
    assert run_task.main(["--suite", "cpu-small", "--loss", "bce", "--seed", "0",
                          "--print_commands"]) == []
    lines = capsys.readouterr().out.strip().splitlines()
    configs = [shlex.split(line)[shlex.split(line).index("--config") + 1] for line in lines]
    assert configs == ["synthetic/default", "ner/docred_ner_cpu",
                       "text_classification/goemotions_cpu", "text_classification/reuters_cpu",
                       "image_classification/coco128_cpu", "image_classification/coco128_cpu",
                       "docred/mrn_cpu"]
    assert "--model effnet_lite0_mldecoder" in lines[5]
    assert all(line.endswith("--loss bce --seed 0") for line in lines)


def test_without_loss_each_cell_keeps_its_configs_losses() -> None:
    sweeps = {name: cfg for name, _, cfg in parse_sweeps(["--suite", "cpu-small"])}
    assert sweeps["mrn-redocred"].loss.split(",")[-1] == "atl"  # the task's threshold class
    assert sweeps["docred_ner"].loss == "bce,asl@asl_ner,apl@apl_ner,aam@aam_ner"
    assert sweeps["coco128-mldecoder"].model == "effnet_lite0_mldecoder"


def test_a_suite_runs_every_cell_then_skips_by_run_identity(tmp_path: Path, capsys) -> None:
    suite = _suite(tmp_path, [{"name": "a"},
                              {"name": "b", "options": {"model": "mlp", "lr": 0.01}}])
    out = tmp_path / "runs"
    first = run_task.main(["--suite", str(suite), "--loss", "bce", "--seed", "0",
                           "--output_dir", str(out)])
    assert [r["config"]["lr"] for r in first] == [0.002, 0.01]
    assert first[0]["run_id"] != first[1]["run_id"]
    AcceleratorState._reset_state(reset_partial_state=True)
    capsys.readouterr()
    again = run_task.main(["--suite", str(suite), "--loss", "bce", "--seed", "0",
                           "--output_dir", str(out)])
    assert [r["run_id"] for r in again] == [r["run_id"] for r in first]
    assert capsys.readouterr().out.count("skip ") == 2


@pytest.mark.parametrize("cells, message", [
    ([{"name": "a"}, {"name": "a"}], "cells[1]: the name 'a' is used twice"),
    ([{"name": "Bad Name"}], "'name' must match"),
    ([{"name": "a", "options": {"output_dir": "x"}}], "'options' must be a mapping of run"),
    ([{"name": "a", "what": 1}], "cells[0]: expected a mapping with keys name, config"),
])
def test_bad_suites_name_the_file_and_cell(tmp_path: Path, cells: list, message: str) -> None:
    suite = _suite(tmp_path, cells)
    with pytest.raises(ConfigError, match=str(suite).replace(".", r"\.")) as err:
        parse_sweeps(["--suite", str(suite)])
    assert message in str(err.value)


def test_a_cell_option_error_names_the_cell(tmp_path: Path) -> None:
    suite = _suite(tmp_path, [{"name": "ok"}, {"name": "broken", "options": {"lr": -1}}])
    with pytest.raises(ConfigError, match=r"cell 'broken'.*--lr"):
        parse_sweeps(["--suite", str(suite)])


def test_two_cells_writing_one_results_file_are_refused_before_training(tmp_path: Path) -> None:
    from mllb_core.errors import UserError

    suite = _suite(tmp_path, [{"name": "a"}, {"name": "b", "options": {"lr": 0.01}}])
    with pytest.raises(UserError, match=r"two cells of this sweep write .*train\.lr"):
        run_task.main(["--suite", str(suite), "--loss", "bce", "--output_dir",
                       str(tmp_path / "runs")])
    assert not list((tmp_path / "runs").rglob("*.json"))


def test_cells_needing_different_launch_settings_are_refused_in_one_launch() -> None:
    sweeps = parse_sweeps(["--suite", "paper"])
    with pytest.raises(ConfigError, match="one launch shares one value"):
        check_one_launch(sweeps)


def test_unknown_suite_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "run_task.py", "--suite", "nope"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "cpu-small" in proc.stderr
