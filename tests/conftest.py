"""Shared test setup: keep the text-corpus cache inside pytest's temporary directory."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_text_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    import tasks.text_classification.task as text_task

    monkeypatch.setattr(text_task, "CACHE", tmp_path_factory.getbasetemp() / "mllb-cache")


@pytest.fixture
def launch_two_cpu_processes():
    """Run ``run_task.py ARGS`` as 2 CPU DDP processes (accelerate launch); return the process."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("accelerate") is None:
        pytest.skip("accelerate CLI not installed")

    def launch(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
        cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
               "1", "--mixed_precision", "no", "--dynamo_backend", "no", "run_task.py", *args]
        proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    return launch
