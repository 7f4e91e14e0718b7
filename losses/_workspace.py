"""Scratch [N, C] memory that the eager CPU kernels reuse from one call to the next.

Why: glibc hands a freed tensor of a few MiB back to the kernel once enough is free at the top
of its heap (above 32 MiB every tensor is its own mmap, unmapped at ``free``), so a fresh
[N, C] temporary is page-faulted in again on every call. On the 2-vCPU AMD EPYC virtual machine
of BENCHMARKS.md ("Session of 2026-11-28 03:22 UTC") asl's eager forward faulted 218 pages a
call at (256, 1000), about 0.23 ms of its 1.25 ms; with glibc keeping its memory it took 1.03 ms.
CUDA needs none of this: PyTorch's caching allocator already keeps freed blocks.

What may live here: a temporary that is consumed inside one kernel call (``p = sigmoid(z)``,
``p (1 - p)``, a mask, a buffer that a reduction reads). Never a tensor that leaves the call:
not the saved gradient, not a ``reduction="none"`` result, nothing autograd records. Each use
site has its own slot name, so two temporaries alive at once never share memory.

Bounded: one tensor per slot and thread, replaced when the shape, dtype or inference mode
changes, so the memory held is the slots' tensors of the last shapes seen (three [N, C]
tensors for asl). :func:`clear_workspace` frees it; ``MLLB_LOSS_WORKSPACE=0`` turns reuse off
(every request then allocates, as before).

Values do not depend on it: the same ATen ops write into reused memory instead of fresh memory
(``tests/test_losses/test_workspace.py`` compares every loss with reuse on and off, bit for bit,
after calls at other shapes).
"""

from __future__ import annotations

import os
import threading

import torch
from torch import Tensor

# read once at import; tests switch the module attribute
ENABLED = os.environ.get("MLLB_LOSS_WORKSPACE", "1") != "0"

_local = threading.local()


def scratch(slot: str, like: Tensor) -> Tensor:
    """An uninitialized contiguous tensor with ``like``'s shape, dtype and device for ``slot``.

    On CPU (with reuse on, not traced by ``torch.compile``) the same memory as the previous
    request of ``slot`` in this thread when shape, dtype and inference mode match; otherwise,
    and on other devices, a new tensor.
    The caller must not let it leave the kernel call (see the module docstring).
    """
    # traced by torch.compile: a plain allocation (the compiled graph plans its own memory;
    # thread-local state would only become guards)
    if not ENABLED or like.device.type != "cpu" or torch.compiler.is_compiling():
        return torch.empty_like(like, memory_format=torch.contiguous_format)
    cache: dict[str, Tensor] | None = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    held = cache.get(slot)
    # a tensor made in inference mode cannot be written outside it, nor the other way round
    inference = torch.is_inference_mode_enabled()
    if (held is None or held.shape != like.shape or held.dtype != like.dtype
            or held.is_inference() != inference):
        held = cache[slot] = torch.empty_like(like, memory_format=torch.contiguous_format)
    return held


def clear_workspace() -> None:
    """Free the scratch tensors this thread holds (they are made again when next needed)."""
    _local.cache = {}


def held_bytes() -> int:
    """Bytes of scratch memory this thread holds."""
    cache: dict[str, Tensor] = getattr(_local, "cache", None) or {}
    return sum(t.untyped_storage().nbytes() for t in cache.values())
