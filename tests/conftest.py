"""Shared test setup: keep MLLB's cache (the text corpora, the built CPU loss loops) inside
pytest's temporary directory.

Nothing here imports MLLB: a loss or leaderboard test must not pay for (or depend on) the text
task, transformers or timm.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

TEXT_TASK = "tasks.text_classification.task"


@pytest.fixture(autouse=True)
def _private_text_cache(tmp_path_factory: pytest.TempPathFactory,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Point MLLB's cache (``$MLLB_CACHE``: the text task's corpora, ``losses/_cpu_fused.py``'s
    built loops) into the session's temp directory.

    The variable covers a text task imported later in the test and any subprocess the test
    starts; the module attribute covers a text task imported earlier (at collection time).
    """
    cache = tmp_path_factory.getbasetemp() / "mllb-cache"
    monkeypatch.setenv("MLLB_CACHE", str(cache))
    module = sys.modules.get(TEXT_TASK)
    if module is not None and hasattr(module, "CACHE"):
        monkeypatch.setattr(module, "CACHE", cache / "text")


@pytest.fixture
def launch_two_cpu_processes():
    """Run ``run_task.py ARGS`` as 2 CPU DDP processes (accelerate launch); return the process."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("accelerate") is None:
        pytest.skip("accelerate CLI not installed")

    def launch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", **(env or {})}
        cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
               "1", "--mixed_precision", "no", "--dynamo_backend", "no", "run_task.py", *args]
        proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    return launch


@pytest.fixture
def import_benchmark() -> Callable[[str], ModuleType]:
    """Import ``benchmarks/NAME.py`` as the module ``NAME`` (benchmarks are scripts, not a
    package, and import each other by name); the folder leaves ``sys.path`` again afterwards."""
    import importlib
    from pathlib import Path

    def load(name: str) -> ModuleType:
        bench = str(Path(__file__).resolve().parents[1] / "benchmarks")
        sys.path.insert(0, bench)
        try:
            return importlib.import_module(name)
        finally:  # some benchmarks add the folder themselves
            sys.path[:] = [p for p in sys.path if p != bench]

    return load


@pytest.fixture
def fresh_kernel_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty build cache for MLLB's C++ kernels (``mllb_core/native.py``), and no kernel
    loaded in this process (each loader's per-process cache cleared) for the test's duration;
    yields the folder the libraries go to.

    Imports the four loaders when used (the AVX-512 loss loop, the positive-target scan, the
    AP kernel, the two-way kernel), so that this file imports nothing of MLLB otherwise.
    """
    from losses._cpu_fused import _library
    from losses._kernel import _positives_library
    from losses.ranking import _two_way_library
    from tasks._native_ap import library

    loaders = (_library, _positives_library, _two_way_library, library)
    monkeypatch.setenv("MLLB_CACHE", str(tmp_path))
    for load in loaders:
        load.cache_clear()
    yield tmp_path / "cpu_kernels"
    for load in loaders:
        load.cache_clear()
