"""``mllb_core.inductor_cache``: a process that sets ``ATEN_CPU_CAPABILITY`` compiles into a
cache folder of its own, so that inductor cannot hand it a loop generated for another vector
width (torch 2.14.1's FX graph cache key leaves the width out)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mllb_core.inductor_cache import _default_cache_dir, separate_inductor_cache

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("environ", "expected"), [
    ({"ATEN_CPU_CAPABILITY": "avx2"}, "_aten_avx2"),
    ({"ATEN_CPU_CAPABILITY": " AVX512 "}, "_aten_avx512"),
    ({"ATEN_CPU_CAPABILITY": "../x y"}, "_aten____x_y"),  # no path out of the folder name
    ({}, None),
    ({"ATEN_CPU_CAPABILITY": ""}, None),
    ({"ATEN_CPU_CAPABILITY": "avx2", "TORCHINDUCTOR_CACHE_DIR": "/mine"}, None),  # the user's
    # inductor's default, which its first compilation writes into the variable
    ({"ATEN_CPU_CAPABILITY": "avx2", "TORCHINDUCTOR_CACHE_DIR": _default_cache_dir()},
     "_aten_avx2"),
    ({"ATEN_CPU_CAPABILITY": "avx2",
      "TORCHINDUCTOR_CACHE_DIR": _default_cache_dir() + "_aten_avx2"}, None),  # separated
])
def test_the_cache_folder_is_separated_only_for_a_set_capability(
        environ: dict[str, str], expected: str | None) -> None:
    before = dict(environ)
    folder = separate_inductor_cache(environ)
    if expected is None:
        assert folder is None and environ == before
    else:
        assert folder == _default_cache_dir() + expected
        assert environ == {**before, "TORCHINDUCTOR_CACHE_DIR": folder}


def test_create_loss_separates_the_cache_after_another_compilation(tmp_path: Path) -> None:
    # a user's script: something compiled first (inductor then writes its default folder into
    # TORCHINDUCTOR_CACHE_DIR), then MLLB's compiled loss
    code = textwrap.dedent("""
        import os, torch
        from mllb_core.inductor_cache import _default_cache_dir
        print(_default_cache_dir())
        torch.compile(lambda x: x + 1)(torch.ones(3))
        print(os.environ["TORCHINDUCTOR_CACHE_DIR"])
        from losses import create_loss
        create_loss("asl", compile=True)
        print(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    """)
    # the default folder under the test's own temporary folder: the loop compiled under
    # another capability must not enter the machine's shared default cache
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env.update(TMPDIR=str(tmp_path), ATEN_CPU_CAPABILITY="default")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    default, first, then = done.stdout.split()
    assert default.startswith(str(tmp_path)) and first == os.path.abspath(default)
    assert then == default + "_aten_default"


def test_run_task_separates_the_cache_before_anything_compiles() -> None:
    source = (REPO / "run_task.py").read_text()
    assert source.index("separate_inductor_cache()") < source.index("train(cell, acc)")


_AVX512 = torch.cpu.get_capabilities().get("avx512_f", False)

# the compiled asl through inductor's loop (MLLB's own loop off) at 4096x1000, as the session
# that found the problem ran it; prints the loss and float64 eager's. "unprotected": with
# create_loss's separation of the cache switched off (the control)
_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    import losses._cpu_fused as cpu_fused
    import losses.base
    from losses import create_loss
    if sys.argv[1] == "unprotected":
        losses.base.separate_inductor_cache = lambda: None
    cpu_fused.ENABLED = False
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4096, 1000, generator=g) * 3
    y = (torch.rand(4096, 1000, generator=g) < 0.2).float()
    eager = create_loss("asl")(z.double(), y.double()).item()
    print(create_loss("asl", compile=True)(z, y).item(), eager)
""")


@pytest.mark.slow
@pytest.mark.skipif(not _AVX512, reason="needs a CPU with AVX-512 (to run under AVX2 too)")
def test_an_avx2_process_after_an_avx512_one_computes_the_loss(tmp_path: Path) -> None:
    # inductor's default cache folder is under the temporary folder: one of the test's own
    env = {**os.environ, "TMPDIR": str(tmp_path), "MLLB_CACHE": str(tmp_path / "mllb")}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    env.pop("ATEN_CPU_CAPABILITY", None)

    def run(mode: str, **extra: str) -> tuple[float, float]:
        done = subprocess.run([sys.executable, "-c", _SCRIPT, mode], cwd=REPO,
                              env={**env, **extra}, capture_output=True, text=True,
                              check=True)
        value, reference = map(float, done.stdout.split())
        return value, reference

    value, reference = run("library")  # AVX-512: fills the default cache
    assert value == pytest.approx(reference, rel=1e-5)
    # create_loss(compile=True) gives the AVX2 process a cache folder of its own
    value, reference = run("library", ATEN_CPU_CAPABILITY="avx2")
    assert value == pytest.approx(reference, rel=1e-5)
    # the control: the same process without the separation reads the AVX-512 entry
    value, reference = run("unprotected", ATEN_CPU_CAPABILITY="avx2")
    assert value != pytest.approx(reference, rel=1e-2), "torch keys the cache by width now"
