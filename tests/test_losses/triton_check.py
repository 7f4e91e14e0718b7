"""The Triton kernel of the compiled family against float64 eager: run by test_triton.py.

On the CPU it must run under Triton's interpreter (``TRITON_INTERPRET=1`` in the environment,
set before Triton is imported); with ``--device cuda`` it runs the compiled kernel on a GPU.
Every family loss, default and with the presets that add margins, caps, polynomial terms and
positive focusing, every reduction, binary, soft and bool targets, float32 and bfloat16 logits,
a shape whose last block is partial, and a ``grad_out`` of 0.5; the scalar losses through
native autograd nodes (``_kernel._with_native_backward``) and through the Python
``_CompiledPolyLossFunction``. Prints one line per case and exits 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import sys

import torch

import losses._kernel as kernel
from losses import _triton, create_loss

CASES = [("focal", None), ("poly1", None), ("asl", None), ("asl", "asl_coco"),
         ("apl", None), ("apl", "apl_aapd_beta1"), ("apl", "apl_coco_gamma_pos1"),
         ("apl_official", None), ("aam", None), ("aam", "aam_coco")]


def main() -> int:
    """Check every case; return the exit status."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true",
                        help="mean reduction and binary targets only (fewer kernels to compile)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        kernel._TRITON_DEVICES = ("cpu",)
    calls = []
    real = _triton.value_and_grad

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    _triton.value_and_grad = counted
    gen = torch.Generator().manual_seed(0)
    bad = 0
    for name, preset in CASES:
        for reduction in ("mean",) if args.quick else ("mean", "sum", "batchmean", "none"):
            for kind in ("binary",) if args.quick else ("binary", "soft", "bool"):
                z = torch.randn(40, 131, generator=gen, dtype=torch.float64) * 4
                if name == "aam":
                    z = (z / 8).clamp(-1, 1)
                y = (torch.rand(z.shape, generator=gen) < 0.2).double()
                if kind == "soft":
                    y = torch.rand(z.shape, generator=gen, dtype=torch.float64)
                eager = create_loss(name, preset=preset, reduction=reduction)
                compiled = create_loss(name, preset=preset, reduction=reduction, compile=True)
                for dtype, native in ((torch.float32, True), (torch.bfloat16, True),
                                      (torch.float32, False), (torch.bfloat16, False)):
                    # scalar losses: native autograd nodes, or the Python autograd.Function
                    kernel.NATIVE_BACKWARD = native
                    zd = z.to(dtype)
                    yy = y.bool() if kind == "bool" else y.to(dtype)
                    # the reference: float64 eager on the same (rounded) inputs
                    x64 = zd.double().requires_grad_(True)
                    v64 = eager(x64, yy.double())
                    (v64.sum() * 0.5).backward()  # a grad_out other than 1, exact in bf16
                    x = zd.to(device).requires_grad_(True)
                    before = len(calls)
                    v = compiled(x, yy.to(device))
                    (v.sum() * 0.5).backward()
                    ran = len(calls) == before + 1
                    g, g64 = x.grad.double().cpu(), x64.grad
                    v_err = ((v.double().cpu() - v64.detach()).abs().max()
                             / v64.detach().abs().max().clamp(min=1e-30)).item()
                    # bf16: the float32 gradient rounded once, to nearest on a GPU (2**-8
                    # relative); Triton's interpreter rounds toward zero (2**-7)
                    tol = 3e-6 if dtype == torch.float32 else 2.0 ** (
                        -8 if device.type == "cuda" else -7)
                    g_ok = bool((g - g64).abs().le(tol * g64.abs() + 3e-6 * g64.abs().max())
                                .all())
                    ok = (ran and v.dtype == torch.float32 and x.grad.dtype == dtype
                          and v_err <= 1e-6 and g_ok)
                    bad += not ok
                    print(f"{'ok ' if ok else 'BAD'} {name} {preset} {reduction} {kind} "
                          f"{str(dtype)[6:]} {'native' if native else 'Function'}: "
                          f"triton ran {ran}, value rel err {v_err:.1e}, "
                          f"gradient within tolerance {g_ok}")
    print(f"{'FAIL' if bad else 'PASS'}: {bad} of {len(calls)} cases outside tolerance "
          f"(device {device})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
