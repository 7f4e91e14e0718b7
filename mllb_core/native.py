"""Build, cache and load MLLB's small C++ kernels (``ctypes``), with a warning and a fallback.

Four kernels use it: the asymmetric family's AVX-512 loop (``losses/_cpu_fused.py``), the
family's positive-target scan (``losses/_positives_kernel.cpp``, loaded by
``losses/_kernel.py``), AP per class (``tasks/_native_ap.py``) and the two-way loss
(``losses/ranking.py``). Each is one C++
file compiled at first use with the C++ compiler inductor needs anyway (``$CXX``, else ``c++``,
else ``g++``) into a shared library cached under ``$MLLB_CACHE/cpu_kernels`` (default
``~/.cache/mllb/cpu_kernels``), named by a hash of the source, the compiler, its flags and the
``-D`` defines, written to a temporary name and renamed into place (concurrent processes never
load a half-written file). A build that fails, a cache folder that cannot be written or a
library that does not load warns once (per library) with the compiler's last output lines, and
the caller keeps its pure Python/torch path: :func:`load` returns None.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def compiler() -> str | None:
    """The C++ compiler: ``$CXX``, else ``c++`` or ``g++`` on the PATH."""
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


def cache_dir() -> Path:
    """Where built kernels are kept: ``$MLLB_CACHE/cpu_kernels`` (MLLB's cache, default
    ``~/.cache/mllb``, as the text task's corpus cache)."""
    return Path(os.environ.get("MLLB_CACHE", Path.home() / ".cache" / "mllb")) / "cpu_kernels"


def library_path(prefix: str, source: Path, cxx: str, flags: Sequence[str]) -> Path:
    """Where ``source`` built by ``cxx`` with ``flags`` (defines included) is cached: named by
    ``prefix`` and a hash of the source, the compiler and the flags."""
    key = hashlib.sha256(b"\0".join([source.read_bytes(), cxx.encode(),
                                     *(f.encode() for f in flags)]))
    return cache_dir() / f"{prefix}_{key.hexdigest()[:24]}.so"


def build(cxx: str, source: Path, flags: Sequence[str], target: Path) -> str | None:
    """Compile ``source`` into ``target`` (via a temporary file in the same folder, renamed
    into place); None when it worked, else what went wrong (the compiler's last output lines)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    except OSError as exc:
        return f"cannot write to {target.parent}: {exc}"
    os.close(fd)
    cmd = [cxx, *flags, str(source), "-o", tmp]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        done = subprocess.CompletedProcess(cmd, 1, "", str(exc))
    if done.returncode != 0:
        os.unlink(tmp)
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        return f"exit {done.returncode}; compiler output:\n{tail}"
    os.replace(tmp, target)
    return None


def load(what: str, prefix: str, source: Path, flags: Sequence[str], fallback: str,
         signatures: Mapping[str, tuple[Any, list[Any]]], stacklevel: int = 3
         ) -> ctypes.CDLL | None:
    """``source`` built with ``flags`` (from the cache when it is there), loaded, with each
    function of ``signatures`` given its ``(restype, argtypes)``; None after one
    ``RuntimeWarning`` naming ``what`` and the ``fallback`` when there is no compiler, the build
    fails, the cache cannot be written or the library does not load."""
    cxx = compiler()
    if cxx is None:
        warnings.warn(f"{what} needs a C++ compiler ($CXX, c++ or g++) and found none; "
                      f"{fallback}", RuntimeWarning, stacklevel=stacklevel)
        return None
    target = library_path(prefix, source, cxx, flags)
    if not target.exists() and (problem := build(cxx, source, flags, target)) is not None:
        warnings.warn(f"{what} did not build with {cxx} ({problem}); {fallback}",
                      RuntimeWarning, stacklevel=stacklevel)
        return None
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:  # e.g. a cache folder mounted noexec
        warnings.warn(f"{what} {target} did not load ({exc}); {fallback}", RuntimeWarning,
                      stacklevel=stacklevel)
        return None
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib
