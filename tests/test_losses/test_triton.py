"""The Triton kernel of the compiled family (losses/_triton.py) against float64 eager.

The GPU path of ``create_loss(..., compile=True)``; here it runs under Triton's interpreter on
the CPU (``TRITON_INTERPRET=1`` must be set before Triton is imported, hence a subprocess):
every family loss and the presets with margins, caps, polynomial terms and positive focusing,
every reduction, binary/soft/bool targets, float32 and bfloat16 logits
(tests/test_losses/triton_check.py, which benchmarks/gpu_speed_check.sh also runs on a GPU).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECK = Path(__file__).with_name("triton_check.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton not installed")
def test_triton_kernel_equals_float64_eager_under_the_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)
    bad = [line for line in proc.stdout.splitlines() if line.startswith("BAD")]
    assert proc.returncode == 0 and not bad, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.stdout.count("\nok ") + proc.stdout.startswith("ok ") == 480
