"""Which of MLLB's own kernels computed a run's numbers: recorded in every results file.

Where one computation has several implementations whose float32 results differ in their last
bits, which one ran depends on the machine (a C++ compiler, AVX-512 or AVX2, a GPU with Triton)
and on switches (``MLLB_CPU_KERNEL``, ``MLLB_RANKING_KERNEL``). The run's options say that a
loss was compiled, not which kernel then served it. So each path notes here that it ran, and
``run_task.py`` writes the names it saw during a cell as the results' ``extra.kernels``
(sorted): a number is identified by what made it.

The names (:data:`NAMES`):

* ``cpu_fused``: the asymmetric family's AVX-512 loop, ``create_loss(..., compile=True)`` on
  CPU (``losses/_cpu_fused.py``);
* ``triton``: the same closed form as a Triton kernel, compiled on CUDA (``losses/_triton.py``);
* ``torch_compile``: ``torch.compile`` of that closed form (inductor's loop by default), where
  neither applies (no AVX-512 or no compiler, ``MLLB_CPU_KERNEL=0``, float64 or bfloat16,
  ``reduction="none"``, coefficients the loop does not take);
* ``two_way_cpp``: the two-way loss's C++ kernel, eager float32 on CPU (``losses/ranking.py``);
* ``ap_cpp``: AP per class in C++ (``tasks/_native_ap.py``; the same bits as the numpy path,
  recorded for completeness).

Not recorded: the eager family's positive-target scan (``losses/_positives_kernel.cpp``), which
computes positions, not floats: every value and gradient is the same bits with it or with the
torch ops it replaces (``tests/test_losses/test_positives_kernel.py``).

A path the run did not take is absent: an eager asl run records no loss kernel, and a compiled
one records ``cpu_fused`` or ``torch_compile`` (both, if some calls took each). A loss that
``torch.compile`` compiles whole (``--compile loss`` with a loss outside the family, two_way
included) records nothing here: the run's ``compile`` option, part of its identity, already
says what computed it. ``run_task.py`` keeps the names in its checkpoints (a resumed run records
what both parts used) and merges every process's names (a DDP run records what any rank used).
A set add per call (under the GIL, safe from any thread) is the whole cost.
"""

from __future__ import annotations

NAMES = frozenset({"cpu_fused", "triton", "torch_compile", "two_way_cpp", "ap_cpp"})

_SERVED: set[str] = set()


def note(name: str) -> None:
    """Record that kernel ``name`` (one of :data:`NAMES`) computed something in this process."""
    if name not in NAMES:
        raise ValueError(f"unknown kernel name {name!r}; expected one of {sorted(NAMES)}")
    _SERVED.add(name)


def served() -> list[str]:
    """The kernels noted since the last :func:`reset`, sorted."""
    return sorted(_SERVED)


def reset() -> None:
    """Forget what was noted (``run_task.py`` calls it as each cell starts training)."""
    _SERVED.clear()
