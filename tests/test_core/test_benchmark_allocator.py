"""``benchmarks/loss_speed.py``'s header names every environment variable that changes where CPU
tensors' memory comes from (part of what made its numbers), and only those."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "loss_speed.py"


@pytest.fixture(scope="module")
def loss_speed() -> ModuleType:
    # benchmarks are scripts, not a package: load the file itself
    spec = importlib.util.spec_from_file_location("_mllb_loss_speed_under_test", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


SETTINGS = ["MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "MALLOC_CONF",
            "GLIBC_TUNABLES", "LD_PRELOAD", "THP_MEM_ALLOC_ENABLE"]


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("MALLOC_")] + SETTINGS:
        monkeypatch.delenv(name, raising=False)


def test_defaults_when_no_allocator_variable_is_set(loss_speed: ModuleType,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("MALLOCX", "not an allocator variable")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # threads are in the header's own field
    assert loss_speed.allocator_settings() == "defaults"


@pytest.mark.parametrize("name", SETTINGS)
def test_each_allocator_variable_is_named_with_its_value(loss_speed: ModuleType, name: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv(name, "1")
    assert loss_speed.allocator_settings() == f"{name}=1"
