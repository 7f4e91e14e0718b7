"""Engine tests build Accelerators in this process: each test starts from a fresh state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from accelerate.state import AcceleratorState


@pytest.fixture(autouse=True)
def _fresh_accelerate_state() -> Iterator[None]:
    """Reset accelerate's process-wide state after every test of this directory."""
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
