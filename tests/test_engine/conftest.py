"""Engine tests build Accelerators in this process: each test starts from a fresh state."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator

import pytest
from accelerate.state import AcceleratorState


@pytest.fixture(autouse=True)
def _fresh_accelerate_state() -> Iterator[None]:
    """Reset accelerate's process-wide state after every test of this directory."""
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture
def timm_compare(import_benchmark: Callable[[str], types.ModuleType]) -> types.ModuleType:
    """``benchmarks/timm_train_compare.py`` as a module."""
    return import_benchmark("timm_train_compare")
