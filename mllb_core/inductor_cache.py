"""Inductor's on-disk cache, kept apart per ``ATEN_CPU_CAPABILITY``.

``ATEN_CPU_CAPABILITY`` picks the vector width of ATen's CPU kernels and of the C++ loops
inductor generates, but in torch 2.14.1 the key of inductor's FX graph cache leaves it out: a
process reuses loop source generated under another capability and compiles it with its own
vector width. Measured on the AVX-512 machine of BENCHMARKS.md (session of 2026-11-27 23:13
UTC), with the compiled asl at 4096x1000: under ``ATEN_CPU_CAPABILITY=avx2`` after a run
without it, the loss came out 0.3448 instead of 0.6894 (half the elements, no error); the
other way round, every store wrote 16 floats per 8-element step and glibc aborted the process.

``create_loss(..., compile=True)`` calls ``separate_inductor_cache`` before it compiles (so
``benchmarks/loss_speed.py`` and a script of the user's that compiles MLLB's losses are kept
apart), and ``run_task.py`` calls it before anything is compiled (``--compile model``): a
process that sets the capability gets a cache folder of its own. A
``TORCHINDUCTOR_CACHE_DIR`` the user set is left alone; inductor's own default folder is not
a user's choice (inductor writes it into the variable at its first compilation).
"""

from __future__ import annotations

import getpass
import os
import re
import tempfile
from collections.abc import MutableMapping


def _default_cache_dir() -> str:
    """Inductor's default cache folder (``torch._inductor.runtime.cache_dir_utils``; written
    out here where that private module is missing)."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # pragma: no cover - depends on the torch version
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown_user"
        return os.path.join(tempfile.gettempdir(), "torchinductor_" + user)
    return default_cache_dir()


def separate_inductor_cache(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Point ``TORCHINDUCTOR_CACHE_DIR`` at a folder of this capability's own when
    ``ATEN_CPU_CAPABILITY`` is set and the cache folder is unset or inductor's default; returns
    that folder (None: nothing changed). Compilations before the call are not moved: call it
    before the first one of the process where that is possible."""
    capability = environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if not capability:
        return None
    current = environ.get("TORCHINDUCTOR_CACHE_DIR")
    # inductor sets the variable to its default folder at its first use (cache_dir_utils):
    # that value is an earlier compilation's doing, not a choice to share the folder
    if current and os.path.abspath(current) != os.path.abspath(_default_cache_dir()):
        return None
    folder = f"{_default_cache_dir()}_aten_{re.sub(r'[^a-z0-9_]', '_', capability)}"
    environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    return folder
