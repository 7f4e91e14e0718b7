"""Engine tests build Accelerators in this process: each test starts from a fresh state."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from accelerate.state import AcceleratorState


@pytest.fixture(autouse=True)
def _fresh_accelerate_state() -> Iterator[None]:
    """Reset accelerate's process-wide state after every test of this directory."""
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture
def timm_compare() -> types.ModuleType:
    """``benchmarks/timm_train_compare.py`` as a module (benchmarks are scripts, not a package;
    the folder it and its ``image_pipeline`` import from leaves ``sys.path`` again)."""
    bench = str(Path(__file__).resolve().parents[2] / "benchmarks")
    sys.path.insert(0, bench)
    try:
        import timm_train_compare
    finally:  # the module adds the folder too
        sys.path[:] = [p for p in sys.path if p != bench]
    return timm_train_compare
