"""Fixtures of the core tests."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest


@pytest.fixture
def loss_speed(import_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    """``benchmarks/loss_speed.py`` as a module."""
    return import_benchmark("loss_speed")
