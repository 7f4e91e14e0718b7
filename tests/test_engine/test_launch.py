"""``--launcher local``: the cells run as submitit jobs (local executor), skipped by run identity.

The local executor runs each job as a process on this machine through the same path as SLURM
(pickled command, job folder, logs); only the submission differs (tests never need a cluster).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.state import AcceleratorState

import run_task
from engine.launch import job_command
from leaderboard.schema import read_results
from mllb_core.errors import UserError
from mllb_core.runconfig import parse_config

pytest.importorskip("submitit")

TINY = ["--model", "tiny_mlp", "--task.num_train", "128", "--task.num_dev", "32",
        "--task.num_test", "40", "--task.num_labels", "6", "--task.avg_positives", "2",
        "--task.num_features", "8", "--epochs", "1", "--batch_size", "32",
        "--eval_batch_size", "40"]


def test_job_command_is_one_cell_without_the_launcher_options() -> None:
    argv = [*TINY, "--loss", "bce,asl", "--seed", "0,1", "--launcher", "submitit",
            "--gpus_per_job", "4", "--slurm_partition", "gpu", "--output_dir", "x"]
    cells = parse_config(argv).cells()
    command = job_command(argv, cells[3])
    assert command[:6] == ["accelerate", "launch", "--multi_gpu", "--num_processes", "4",
                           "run_task.py"]
    joined = " ".join(command)
    assert joined.endswith("--loss asl --seed 1") and "--output_dir x" in joined
    for option in ("--launcher", "--gpus_per_job", "--slurm_partition"):
        assert option not in joined
    assert job_command([*TINY, "--gpus_per_job", "1"], parse_config(TINY))[:4] == [
        "accelerate", "launch", "--num_processes", "1"]


def test_local_launcher_runs_each_cell_as_a_job_then_skips(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    argv = [*TINY, "--loss", "bce,asl", "--launcher", "local", "--gpus_per_job", "0",
            "--output_dir", str(out)]
    results = run_task.main(argv)
    assert [r["loss"]["name"] for r in results] == ["bce", "asl"]
    files = sorted(p.name for p in (out / "synthetic").glob("*__seed0.json"))
    assert len(files) == 2 and all(read_results(out / "synthetic" / f) for f in files)
    assert len(list((out / "submitit").glob("*_log.err"))) >= 2  # one log per job
    capsys.readouterr()
    AcceleratorState._reset_state(reset_partial_state=True)
    again = run_task.main(argv)  # nothing left to do: no job submitted
    assert [r["run_id"] for r in again] == [r["run_id"] for r in results]
    assert capsys.readouterr().out.count("skip ") == 2
    # the jobs' results are ordinary runs: the same identity as an in-process run
    AcceleratorState._reset_state(reset_partial_state=True)
    (local,) = run_task.main([*TINY, "--loss", "bce", "--output_dir", str(tmp_path / "here")])
    assert local["run_id"] == results[0]["run_id"]
    assert local["metrics"] == results[0]["metrics"]


def test_submitit_without_slurm_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    with pytest.raises(UserError, match="sbatch is not on PATH"):
        run_task.main([*TINY, "--launcher", "submitit", "--output_dir", str(tmp_path / "o")])
