"""run_task.py end to end on a tiny synthetic task: config, results, sweeps, resume, guards, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState

import run_task
from engine.recipe import make_scheduler
from leaderboard.schema import read_results
from losses import LOSSES, MultiLabelLoss
from losses.functional import bce_loss
from mllb_core.runconfig import RunConfig

REPO = Path(__file__).resolve().parents[2]
TINY = ["--model", "tiny_mlp", "--task.num_train", "256", "--task.num_dev", "64",
        "--task.num_test", "97", "--task.num_labels", "12", "--task.avg_positives", "2",
        "--task.num_features", "16", "--epochs", "2", "--batch_size", "32",
        "--eval_batch_size", "40"]


def _run(tmp: Path, *args: str) -> list[dict]:
    return run_task.main([*TINY, "--output_dir", str(tmp), *args])


def test_end_to_end_writes_valid_results(tmp_path: Path) -> None:
    (res,) = _run(tmp_path, "--loss", "asl", "--loss.gamma_neg", "2", "--save_scores", "true")
    files = sorted(p.name for p in (tmp_path / "synthetic").glob("*.json"))
    stem = ("tiny_mlp__synthetic-12l-missing0-seed0__asl-"
            + files[0].split("asl-")[1].split("__")[0] + "__seed0")
    assert files == [f"{stem}.config.json", f"{stem}.json"]
    on_disk = read_results(tmp_path / "synthetic" / f"{stem}.json")  # validates the schema
    assert on_disk == json.loads(json.dumps(res))
    assert res["task"]["num_examples"] == 97 and res["task"]["split"] == "test"
    assert res["selection"]["split"] == "dev" and res["loss"]["kwargs"]["gamma_neg"] == 2
    assert len(res["history"]) == 2 and set(res["metrics"]) == set(res["higher_is_better"])
    scores = __import__("numpy").load(tmp_path / "synthetic" / res["scores_file"])
    assert scores["scores"].shape == (97, 12) and (scores["index"] == range(97)).all()
    config = json.loads((tmp_path / "synthetic" / f"{stem}.config.json").read_text())
    assert config["loss"] == "asl" and config["loss_kwargs"] == {"gamma_neg": 2}
    assert res["env"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def _expected_kernels(loss_kernel: str | None) -> list[str]:
    """What extra.kernels must say: the loss's kernel, and AP's where it can run here."""
    from tasks import _native_ap

    return sorted({*([loss_kernel] if loss_kernel else []),
                   *(["ap_cpp"] if _native_ap.available() else [])})


def test_results_name_the_kernels_that_computed_them(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from losses import _cpu_fused, ranking
    from losses.asl import _asl_params
    from tasks import _native_ap

    probe = torch.zeros(4, 12)
    two_way_kernel = "two_way_cpp" if ranking.two_way_kernel_serves(probe) else None
    # a sweep of two cells: each file names its own cell's kernels only
    eager, two_way = _run(tmp_path / "sweep", "--loss", "asl,two_way", "--epochs", "1")
    assert eager["extra"]["kernels"] == _expected_kernels(None)  # eager: no loss kernel
    assert two_way["extra"]["kernels"] == _expected_kernels(two_way_kernel)
    (res,) = _run(tmp_path / "compiled", "--loss", "asl", "--epochs", "1", "--compile", "loss")
    hparams = LOSSES.get("asl")().hparams  # the defaults the run used
    hp = _asl_params(*(hparams[k] for k in ("gamma_pos", "gamma_neg", "clip", "eps",
                                            "detach_focal_weight")))
    fused = _cpu_fused.kernel_for(probe, probe, hp, "mean", 1.0) is not None
    assert res["extra"]["kernels"] == _expected_kernels("cpu_fused" if fused else
                                                        "torch_compile")
    # switched off, a kernel is not named: MLLB_RANKING_KERNEL=0, MLLB_AP_KERNEL=0
    with monkeypatch.context() as m:
        m.setattr(ranking, "KERNEL_ENABLED", False)
        m.setattr(_native_ap, "ENABLED", False)
        (res,) = _run(tmp_path / "off", "--loss", "two_way", "--epochs", "1")
        assert res["extra"]["kernels"] == []
    # a resumed run names what computed both parts: the kernel of epoch 1 is kept although
    # the resumed part (epoch 2) ran with it switched off
    args = ["--loss", "two_way", "--epochs", "2"]
    assert _run(tmp_path / "resume", *args, "--stop_after_epoch", "1") == []
    monkeypatch.setattr(ranking, "KERNEL_ENABLED", False)
    (res,) = _run(tmp_path / "resume", *args, "--resume")
    assert res["extra"]["kernels"] == _expected_kernels(two_way_kernel)


def test_environment_records_the_capability_aten_runs_at() -> None:
    # ATEN_CPU_CAPABILITY lowers the level ATen dispatches to ("default" exists on every CPU);
    # the results must say the level the kernels ran at, not the CPU's best
    code = ("from accelerate import Accelerator; from engine.outputs import environment; "
            "print(environment(Accelerator(cpu=True))['cpu_capability'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "ATEN_CPU_CAPABILITY": "default"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "DEFAULT"


def test_loss_declares_the_head(tmp_path: Path) -> None:
    (res,) = _run(tmp_path, "--loss", "aam", "--epochs", "1")
    assert res["model"]["kwargs"]["head"] == "cosine"
    (res,) = _run(tmp_path, "--loss", "bce", "--epochs", "1")
    assert res["model"]["kwargs"]["head"] == "linear"


def test_sweep_runs_cells_and_skips_finished_ones(tmp_path: Path, capsys) -> None:
    first = _run(tmp_path, "--loss", "bce,asl@asl_coco", "--seed", "0,1", "--epochs", "1")
    assert [(r["loss"]["preset"] or r["loss"]["name"], r["seed"]) for r in first] == [
        ("bce", 0), ("asl_coco", 0), ("bce", 1), ("asl_coco", 1)]
    out = tmp_path / "synthetic"
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.json")}
    capsys.readouterr()
    again = _run(tmp_path, "--loss", "bce,asl@asl_coco", "--seed", "0,1", "--epochs", "1")
    assert again == first
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert capsys.readouterr().out.count("skip ") == 4


def test_print_commands(tmp_path: Path, capsys) -> None:
    assert _run(tmp_path, "--loss", "bce,aam", "--seed", "0,1", "--print_commands") == []
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("accelerate launch run_task.py ")
    assert lines[3].endswith("--loss aam --seed 1") and "--print_commands" not in lines[3]
    assert not (tmp_path / "synthetic").exists()


def test_resume_gives_identical_results(tmp_path: Path) -> None:
    args = ["--loss", "asl_adaptive", "--epochs", "3", "--ema_decay", "0.9"]
    (straight,) = _run(tmp_path / "a", *args)
    assert _run(tmp_path / "b", *args, "--stop_after_epoch", "1") == []  # "killed" after epoch 1
    assert not list((tmp_path / "b" / "synthetic").glob("*__seed0.json"))
    (resumed,) = _run(tmp_path / "b", *args, "--resume")
    assert resumed["metrics"] == straight["metrics"]
    assert resumed["history"] == straight["history"]
    assert resumed["selection"] == straight["selection"]


class _NanLater(MultiLabelLoss):
    """BCE that returns NaN on its 11th call (epoch 2, step 3 with 8 steps per epoch)."""

    name = "nan_later"
    functional = staticmethod(bce_loss)
    calls = 0

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        value = super().forward(logits, targets)
        return value * float("nan") if type(self).calls == 11 else value


def test_non_finite_loss_stops_with_epoch_step_and_value(tmp_path: Path) -> None:
    LOSSES.add("nan_later", _NanLater)
    _NanLater.calls = 0
    try:
        with pytest.raises(run_task.NonFiniteLossError,
                           match=r"non-finite loss nan at epoch 2, step 3; last complete "
                                 r"checkpoint: .*epoch-0001 \(epoch 1\)"):
            _run(tmp_path, "--loss", "nan_later", "--epochs", "3")
    finally:
        LOSSES._items.pop("nan_later")
    ckpt = next((tmp_path / "checkpoints" / "synthetic").iterdir())
    assert json.loads((ckpt / "epoch-0001" / "complete.json").read_text())["epoch"] == 1
    assert (ckpt / "epoch-0001" / "best.pt").is_file()
    assert not list((tmp_path / "synthetic").glob("*.json"))


def test_two_process_ddp_matches_one_process(tmp_path: Path, launch_two_cpu_processes) -> None:
    args = [*TINY, "--loss", "bce", "--model.dropout", "0", "--epochs", "2"]
    (single,) = run_task.main([*args, "--output_dir", str(tmp_path / "one")])
    launch_two_cpu_processes(*args, "--output_dir", str(tmp_path / "two"))
    (path,) = (tmp_path / "two" / "synthetic").glob("*__seed0.json")
    double = read_results(path)
    assert double["env"]["world_size"] == 2 and single["env"]["world_size"] == 1
    # 97 test examples in batches of 40 split over 2 ranks: the padding of the last batch is
    # dropped by gather_for_metrics; the task's evaluate raises unless each index occurs once
    assert double["task"]["num_examples"] == single["task"]["num_examples"] == 97
    for key, value in single["metrics"].items():
        assert double["metrics"][key] == pytest.approx(value, abs=1e-6), key
    # every process's kernels, merged into one sorted list of names
    assert double["extra"]["kernels"] == single["extra"]["kernels"] == _expected_kernels(None)


def test_cli_reports_config_errors_without_traceback() -> None:
    proc = subprocess.run([sys.executable, "run_task.py", "--epochs", "ten"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --epochs expects int, got 'ten'"


def test_bf16_autocast_keeps_the_loss_in_float32(tmp_path: Path) -> None:
    (res,) = _run(tmp_path, "--loss", "asl", "--mixed_precision", "bf16", "--epochs", "1")
    assert res["env"]["mixed_precision"] == "bf16"
    assert all(0 <= v <= 1 for v in res["metrics"].values())
    assert res["history"][0]["train_loss"] > 0


@pytest.mark.parametrize("warmup", [0.0, 0.1, 0.2, 0.5])
def test_onecycle_survives_tiny_schedules(warmup: float) -> None:
    # OneCycleLR divides by zero when pct_start * total == 1 (2 steps x 5 epochs at 0.1: a
    # 27-image split with batch 16 hit it); every length must build and step
    for total in range(1, 40):
        cfg = RunConfig(scheduler="onecycle", warmup_ratio=warmup, lr=0.01)
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
        sched = make_scheduler(cfg, opt, total)
        lrs = []
        for _ in range(total):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert all(0 < v <= cfg.lr + 1e-12 for v in lrs), (total, lrs)


def test_compile_option_is_validated_and_named_in_the_identity() -> None:
    from mllb_core.identity import run_identity
    from mllb_core.runconfig import ConfigError, parse_config

    with pytest.raises(ConfigError, match="--compile must be one of"):
        parse_config(["--compile", "yes"])
    sections = {"task": {"name": "t", "version": "1", "dataset": "d", "data_fingerprint": "x"},
                "model": {"name": "m", "kwargs": {}}, "loss": {"name": "bce", "kwargs": {}},
                "env": {"world_size": 1, "mixed_precision": "no"}, "seed": 0, "extra": {}}
    eager = run_identity({**sections, "config": parse_config([]).to_dict()})
    compiled = run_identity({**sections, "config": parse_config(["--compile", "all"]).to_dict()})
    assert "train.compile" not in eager and compiled["train.compile"] == "all"


@pytest.mark.slow
def test_compiled_run_trains_and_is_another_run(tmp_path: Path) -> None:
    (eager,) = _run(tmp_path / "a", "--loss", "asl")
    AcceleratorState._reset_state(reset_partial_state=True)
    (compiled,) = _run(tmp_path / "b", "--loss", "asl", "--compile", "all")
    assert compiled["identity"]["train.compile"] == "all"
    assert compiled["run_id"] != eager["run_id"]
    # the same training up to float rounding of fused kernels
    assert compiled["metrics"]["map"] == pytest.approx(eager["metrics"]["map"], abs=1e-3)


def test_epoch_lines_carry_the_throughput_the_timm_comparison_reads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        timm_compare: types.ModuleType) -> None:
    # benchmarks/timm_train_compare.py reads MLLB's per-epoch ex/s from these lines and timm's
    # epoch average from the last "Train:" line of an epoch (format of timm's train.py, as
    # printed on the GPU machine)
    OURS_EPOCH, TIMM_EPOCH = timm_compare.OURS_EPOCH, timm_compare.TIMM_EPOCH  # noqa: N806
    _run(tmp_path, "--loss", "bce")
    out = capsys.readouterr().out
    found = {int(m.group(1)): float(m.group(2)) for m in OURS_EPOCH.finditer(out)}
    assert sorted(found) == [1, 2] and all(rate > 0 for rate in found.values())
    timm_log = ("Train: 1 [  11/12 (100%)]  Loss: 4.61 (4.49)  Time: 0.171s,  374.14/s  "
                "(0.293s,  218.61/s)  LR: 1.000e-03  Data: 0.000 (0.118)\n"
                "Train: 1 [   0/12 (  8%)]  Loss: 4.61 (4.61)  Time: 1.2s,  53.3/s  "
                "(1.2s,  53.3/s)  LR: 1.000e-03  Data: 1.0 (1.0)\n")
    assert [(m.group(1), m.group(3)) for m in TIMM_EPOCH.finditer(timm_log)] == [("1", "218.61")]
