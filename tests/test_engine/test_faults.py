"""The engine under faults and misuse: run identity, kill-safe checkpoints, DDP, errors, outputs.

Each test reproduces one finding of issue 13 (numbered as in its table) on the tiny synthetic
task and checks the delivered behaviour.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from accelerate.state import AcceleratorState

import run_task
from leaderboard.schema import read_results
from mllb_core.checkpoint import MARKER, CheckpointError
from mllb_core.errors import UserError
from mllb_core.progress import heartbeat

REPO = Path(__file__).resolve().parents[2]
STEM = "tiny_mlp__synthetic-12l-missing0-seed0__asl_adaptive__seed0"  # <model>__<dataset>__...
TINY = ["--model", "tiny_mlp", "--task.num_train", "256", "--task.num_dev", "64",
        "--task.num_test", "97", "--task.num_labels", "12", "--task.avg_positives", "2",
        "--task.num_features", "16", "--epochs", "3", "--batch_size", "32",
        "--eval_batch_size", "40", "--loss", "asl_adaptive", "--ema_decay", "0.9"]


def _run(out: Path, *args: str) -> list[dict]:
    return run_task.main([*TINY, "--output_dir", str(out), *args])


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *argv: str
         ) -> tuple[int, str, str]:
    """run_task's console entry in-process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["run_task.py", *argv])
    code = 0
    try:
        run_task.cli()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _ckpt_root(out: Path) -> Path:
    (root,) = (out / "checkpoints" / "synthetic").iterdir()
    return root


# 1. a results file of the same name but another run is never returned as this run's result
def test_same_name_other_run_stops_before_training(tmp_path: Path) -> None:
    (first,) = _run(tmp_path, "--epochs", "2")
    # another recipe and another noise level on the same data set: the same file name
    with pytest.raises(UserError) as err:
        _run(tmp_path, "--epochs", "4", "--task.label_noise", "0.3")
    message = str(err.value)
    for key in ("train.epochs: 2 -> 4", "task.kwargs.label_noise: 0.1 -> 0.3",
                "task.data_fingerprint", "--overwrite", "--output_dir"):
        assert key in message, message
    assert not list(tmp_path.rglob("epoch-*"))  # nothing trained
    (again,) = _run(tmp_path, "--epochs", "2")  # the same run: skipped, the stored results
    assert again["run_id"] == first["run_id"] and again["metrics"] == first["metrics"]
    (replaced,) = _run(tmp_path, "--epochs", "4", "--task.label_noise", "0.3", "--overwrite")
    assert replaced["run_id"] != first["run_id"]
    assert read_results(tmp_path / "synthetic" / f"{STEM}.json")["run_id"] == replaced["run_id"]
    # another data set (missing labels change its name) is another file, beside the first
    (other,) = _run(tmp_path, "--epochs", "2", "--task.missing_rate", "0.5")
    assert other["task"]["dataset"] == "synthetic-12l-missing0.5-seed0"
    assert len(list((tmp_path / "synthetic").glob("*__seed0.json"))) == 2


# 2. --resume refuses another run's checkpoint
def test_resume_refuses_a_checkpoint_of_another_run(tmp_path: Path) -> None:
    assert _run(tmp_path, "--stop_after_epoch", "1") == []
    with pytest.raises(CheckpointError, match=r"checkpoint of another run .*task\.kwargs\."
                                              r"label_noise: 0\.1 -> 0\.3; train\.lr: 0\.002 "
                                              r"-> 0\.05"):
        _run(tmp_path, "--lr", "0.05", "--task.label_noise", "0.3", "--resume")


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The uninterrupted run every interrupted one must reproduce exactly."""
    out = tmp_path_factory.mktemp("straight")
    (res,) = _run(out)
    AcceleratorState._reset_state(reset_partial_state=True)
    return res


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Complete checkpoint directories after epochs 1 and 2 of the same run."""
    keep = tmp_path_factory.mktemp("snapshots")
    out = tmp_path_factory.mktemp("interrupted")
    for epoch in (1, 2):
        _run(out, "--stop_after_epoch", str(epoch), *(["--resume"] if epoch > 1 else []))
        AcceleratorState._reset_state(reset_partial_state=True)
        src = _ckpt_root(out) / f"epoch-{epoch:04d}"
        shutil.copytree(src, keep / src.name)
    return {e: keep / f"epoch-{e:04d}" for e in (1, 2)}


def _state(out: Path, snapshots: dict[int, Path], layout: str) -> None:
    """Lay out one on-disk state a kill can leave behind (the run's checkpoint directory)."""
    root = out / "checkpoints" / "synthetic" / STEM
    root.mkdir(parents=True)
    one, two = snapshots[1], snapshots[2]
    if layout == "partial_new":  # killed while epoch 2's files were being written
        shutil.copytree(one, root / one.name)
        shutil.copytree(two, root / two.name)
        (root / two.name / MARKER).unlink()
        (root / two.name / "optimizer.bin").unlink()
    elif layout == "old_and_new":  # killed after the marker, before the old one was deleted
        shutil.copytree(one, root / one.name)
        shutil.copytree(two, root / two.name)
    elif layout == "marker_missing":  # killed before the first marker: nothing complete
        shutil.copytree(one, root / one.name)
        (root / one.name / MARKER).unlink()
    elif layout == "swap_leftovers":  # what the old next/last/prev swap left (issue row 4)
        shutil.copytree(two, root / two.name)
        shutil.copytree(two, root / "prev")
        shutil.copytree(one, root / "next")
    else:
        raise AssertionError(layout)


@pytest.mark.parametrize("layout", ["partial_new", "old_and_new", "marker_missing",
                                    "swap_leftovers"])
def test_every_kill_state_resumes_to_the_uninterrupted_metrics(
        tmp_path: Path, straight: dict, snapshots: dict[int, Path], layout: str) -> None:
    _state(tmp_path, snapshots, layout)
    (resumed,) = _run(tmp_path, "--resume")
    assert resumed["metrics"] == straight["metrics"]
    assert resumed["history"] == straight["history"]
    assert resumed["selection"] == straight["selection"]
    assert not (tmp_path / "checkpoints" / "synthetic" / STEM
                ).exists()  # a finished cell's checkpoints are deleted


@pytest.mark.parametrize(("damage", "message"), [
    ("delete_rng", r"random_states_0\.pkl: missing from a complete checkpoint"),
    ("corrupt_rng", r"random_states_0\.pkl: unreadable RNG state"),
    ("truncate_model", r"model\.safetensors: \d+ bytes, \d+ when written"),
    ("marker_garbage", r"unreadable checkpoint marker"),
])
def test_resume_refuses_a_damaged_checkpoint(tmp_path: Path, snapshots: dict[int, Path],
                                             damage: str, message: str) -> None:
    root = tmp_path / "checkpoints" / "synthetic" / STEM
    shutil.copytree(snapshots[2], root / "epoch-0002")
    ckpt = root / "epoch-0002"
    if damage == "delete_rng":  # issue row 6: was logged at INFO and ignored
        (ckpt / "random_states_0.pkl").unlink()
    elif damage == "corrupt_rng":
        size = (ckpt / "random_states_0.pkl").stat().st_size
        (ckpt / "random_states_0.pkl").write_bytes(b"\0" * size)
    elif damage == "truncate_model":
        data = (ckpt / "model.safetensors").read_bytes()
        (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    else:
        (ckpt / MARKER).write_text("{not json")
    with pytest.raises(CheckpointError, match=message):
        _run(tmp_path, "--resume")


def test_keep_checkpoints_keeps_only_the_newest_complete_one(tmp_path: Path) -> None:
    _run(tmp_path, "--keep_checkpoints")
    dirs = sorted(p.name for p in _ckpt_root(tmp_path).iterdir())
    assert dirs == ["epoch-0003"]
    marker = json.loads((_ckpt_root(tmp_path) / "epoch-0003" / MARKER).read_text())
    assert marker["world_size"] == 1 and "random_states_0.pkl" in marker["files"]
    assert marker["run_id"] == read_results(
        tmp_path / "synthetic" / f"{STEM}.json")["run_id"]


# 7. DDP: a sum-reduced loss is the sum over the global batch; the recorded loss is global
def test_two_processes_train_exactly_like_one(tmp_path: Path, launch_two_cpu_processes) -> None:
    args = [*TINY[:-4], "--loss", "bce,asl@asl_coco", "--model.dropout", "0", "--epochs", "2",
            "--optimizer", "sgd", "--momentum", "0", "--scheduler", "constant",
            "--warmup_ratio", "0", "--lr", "0.05", "--save_scores", "true"]
    single = run_task.main([*args, "--output_dir", str(tmp_path / "one")])
    launch_two_cpu_processes(*args, "--output_dir", str(tmp_path / "two"))
    for res in single:
        assert res["env"]["world_size"] == 1
        stem = (f"tiny_mlp__{res['task']['dataset']}__"
                f"{res['loss']['preset'] or res['loss']['name']}__seed0")
        double = read_results(tmp_path / "two" / "synthetic" / f"{stem}.json")
        assert double["env"]["world_size"] == 2
        assert double["identity"]["train.per_device_batch_size"] == 16
        assert res["identity"]["train.per_device_batch_size"] == 32
        assert double["identity"]["train.batch_size"] == res["identity"]["train.batch_size"]
        a = np.load(tmp_path / "one" / "synthetic" / f"{stem}.scores.npz")
        b = np.load(tmp_path / "two" / "synthetic" / f"{stem}.scores.npz")
        np.testing.assert_array_equal(a["index"], b["index"])
        np.testing.assert_allclose(b["scores"], a["scores"], atol=1e-5, rtol=0)
        for h1, h2 in zip(res["history"], double["history"], strict=True):
            assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-5)


# 5. a slow rank cannot race the checkpoint: the marker waits for every rank's files
SLOW_RANK_1 = """
import os, time
import accelerate.accelerator as acc_module  # save_state calls the name bound here

_save = acc_module.save_accelerator_state


def _slow(*args, **kwargs):
    if os.environ.get("RANK") == "1":
        time.sleep(0.3)
        open(os.environ["MLLB_SLOW_RANK_LOG"], "a").write("delayed ")
    return _save(*args, **kwargs)


acc_module.save_accelerator_state = _slow
"""


# three 2-process launches: 50 s on 2 cores (the default run stays under 10 minutes)
@pytest.mark.slow
def test_ddp_checkpoints_with_a_slow_rank_resume_exactly(tmp_path: Path,
                                                         launch_two_cpu_processes) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_RANK_1)
    log = tmp_path / "delays.log"
    env = {"PYTHONPATH": str(site), "MLLB_SLOW_RANK_LOG": str(log)}
    args = [*TINY, "--epochs", "2"]
    launch_two_cpu_processes(*args, "--output_dir", str(tmp_path / "straight"), env=env)
    launch_two_cpu_processes(*args, "--output_dir", str(tmp_path / "b"), "--stop_after_epoch",
                             "1", env=env)
    marker = json.loads((_ckpt_root(tmp_path / "b") / "epoch-0001" / MARKER).read_text())
    assert marker["world_size"] == 2
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= set(marker["files"])
    launch_two_cpu_processes(*args, "--output_dir", str(tmp_path / "b"), "--resume", env=env)
    assert log.read_text().count("delayed") == 2 + 1 + 1  # the slow rank really was slow
    name = f"{STEM}.json"
    straight = read_results(tmp_path / "straight" / "synthetic" / name)
    resumed = read_results(tmp_path / "b" / "synthetic" / name)
    assert resumed["metrics"] == straight["metrics"]
    assert resumed["history"] == straight["history"]


# 8. one clear message and exit code 2 for every user error, validated before training
@pytest.mark.parametrize(("argv", "message"), [
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--grad_accum", "0"], "--grad_accum"),
    (["--batch_size", "0"], "--batch_size"),
    (["--warmup_ratio", "2"], "--warmup_ratio"),
    (["--epochs", "true"], "--epochs"),
    (["--loss", "bce,asl,aplx"], "unknown loss 'aplx'; did you mean 'apl'?"),
    (["--loss", "asl@apl_coco"], "preset 'apl_coco' is for loss 'apl'"),
    (["--loss", "asl", "--loss.gama_neg", "2"], "unknown hyper-parameter 'gama_neg'"),
    (["--model", "tiny_mpl"], "unknown model 'tiny_mpl'"),
    (["--model.widht", "3"], "unexpected keyword argument 'widht' (the --model.<arg> options)"),
    (["--task", "synthtic"], "unknown task 'synthtic'"),
    (["--task.missing_rate", "2"], "task 'synthetic': missing_rate must be in [0, 1), got 2"),
    (["--task.foo", "1"], "task 'synthetic': got an unexpected keyword argument 'foo'"),
    (["--loss", "apl@nope"], "unknown loss preset 'nope'"),
    (["--report_to", "nope"], "Unsupported logging capability: nope"),
    (["--batch_size", "33", "--eval_batch_size", "40"], None),  # fine on one process
])
def test_user_errors_are_one_line_and_exit_2(tmp_path: Path, monkeypatch, capsys,
                                             argv: list[str], message: str | None) -> None:
    code, _, err = _cli(monkeypatch, capsys, *TINY, "--epochs", "1", "--output_dir",
                        str(tmp_path), *argv)
    if message is None:
        assert code == 0, err
        return
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "synthetic").exists() or not list(
        (tmp_path / "synthetic").glob("*.json"))  # nothing trained before the check


def test_yaml_errors_name_file_and_line(tmp_path: Path, monkeypatch, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nlr: [0.1\n")
    code, _, err = _cli(monkeypatch, capsys, "--config", str(bad))
    assert code == 2 and f"{bad}:" in err and "Traceback" not in err
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("loss: bce\n# caf\xe9\n".encode("latin-1"))
    code, _, err = _cli(monkeypatch, capsys, "--config", str(latin))
    assert code == 2 and str(latin) in err and "UTF-8" in err.upper()


def test_data_format_error_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    bad = tmp_path / "docs.json"
    bad.write_text('[{"text": "a b c", "labels": ["x"]}, {"text": 3, "labels": ["y"]}]')
    code, _, err = _cli(monkeypatch, capsys, "--task", "text_multilabel", "--task.json_file",
                        str(bad), "--model", "tiny_lsan", "--loss", "bce", "--epochs", "1",
                        "--output_dir", str(tmp_path / "out"))
    assert code == 2 and "Traceback" not in err and str(bad) in err, err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err


def test_missing_data_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    code, _, err = _cli(monkeypatch, capsys, "--task", "docred", "--data_dir",
                        str(tmp_path / "nowhere"), "--output_dir", str(tmp_path / "out"))
    assert code == 2 and "nowhere is not a directory" in err and "Traceback" not in err, err


def test_a_split_without_examples_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    one = tmp_path / "one.json"
    one.write_text('[{"text": "a b", "labels": ["x"]}]')
    code, _, err = _cli(monkeypatch, capsys, "--task", "text_multilabel", "--task.json_file",
                        str(one), "--model", "tiny_lsan", "--output_dir", str(tmp_path / "out"))
    assert code == 2 and "every split needs examples" in err and "Traceback" not in err, err


def test_unwritable_output_dir_fails_before_training(tmp_path: Path, monkeypatch,
                                                     capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = _cli(monkeypatch, capsys, *TINY, "--output_dir", str(blocker / "runs"))
    assert code == 2 and "is not writable" in err and "Traceback" not in err


def test_full_disk_is_named(tmp_path: Path, monkeypatch, capsys) -> None:
    import engine.outputs
    import mllb_core.checkpoint

    def no_space(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64")

    monkeypatch.setattr(mllb_core.checkpoint.torch, "save", no_space)
    monkeypatch.setattr(engine.outputs.shutil, "disk_usage",
                        lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    code, _, err = _cli(monkeypatch, capsys, *TINY, "--output_dir", str(tmp_path))
    assert code == 2 and "no space left on the device of" in err and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["run_task.py", "--epochs", "0", "--debug"])
    with pytest.raises(UserError):
        run_task.cli()


def test_help_lists_every_option_and_exits_0() -> None:
    proc = subprocess.run([sys.executable, "run_task.py", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for option in ("--epochs", "--keep_checkpoints", "--overwrite", "--leaderboard",
                   "--grad_accum", "--task.<"):
        assert option in proc.stdout


# 9. --leaderboard refreshes the run's own output dir, never the published LEADERBOARD.md
def test_leaderboard_refreshes_the_output_dir_only(tmp_path: Path) -> None:
    published = (REPO / "LEADERBOARD.md").read_bytes()
    _run(tmp_path, "--loss", "bce,asl", "--epochs", "1", "--leaderboard")
    text = (tmp_path / "LEADERBOARD.md").read_text()
    assert "tiny_mlp" in text and "asl" in text
    assert (REPO / "LEADERBOARD.md").read_bytes() == published


def test_sweep_table_keeps_the_primary_metric_when_cells_were_skipped(tmp_path: Path,
                                                                      capsys) -> None:
    _run(tmp_path, "--loss", "bce", "--epochs", "1", "--seed", "0")
    capsys.readouterr()
    _run(tmp_path, "--loss", "bce", "--epochs", "1", "--seed", "0,1")
    out = capsys.readouterr().out
    assert "map" in out and "±" in out


def test_heartbeat_prints_while_waiting(capsys) -> None:
    import time

    with heartbeat("preparing task x", every=0.05):
        time.sleep(0.2)
    err = capsys.readouterr().err
    assert err.count("preparing task x:") >= 2 and "done in" in err
