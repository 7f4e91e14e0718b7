"""``benchmarks/loss_speed.py``'s header names every environment variable that changes where CPU
tensors' memory comes from (part of what made its numbers), and only those."""

from __future__ import annotations

import os
from types import ModuleType

import pytest

SETTINGS = ["MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "MALLOC_CONF",
            "GLIBC_TUNABLES", "LD_PRELOAD", "THP_MEM_ALLOC_ENABLE"]


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("MALLOC_")] + SETTINGS:
        monkeypatch.delenv(name, raising=False)


def test_defaults_when_no_allocator_variable_is_set(loss_speed: ModuleType,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("MALLOCX", "not an allocator variable")
    assert loss_speed.allocator_settings() == "defaults"


@pytest.mark.parametrize("name", SETTINGS)
def test_each_allocator_variable_is_named_with_its_value(loss_speed: ModuleType, name: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv(name, "1")
    assert loss_speed.allocator_settings() == f"{name}=1"
