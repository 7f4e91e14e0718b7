"""The AVX-512 loop of the compiled family on CPU (``losses/_cpu_fused.py``): float64 eager's
value and gradient, the behaviour of the same closed form in torch ops at extreme logits,
every tail length, and the fallbacks to the compiled closed form (unsupported inputs, no
compiler, a failing build).

The loop runs where ``create_loss(name, compile=True)`` gets float32 CPU logits and targets;
every check goes through the compiled path and counts the loop's calls, so a silent fallback
fails the test. Skipped (with the reason) on a CPU without AVX-512 or without a
C++ compiler. Never timed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import losses._cpu_fused as cpu_fused
from losses import create_loss
from mllb_core import native

HAS_LOOP = cpu_fused._cpu_has_avx512() and cpu_fused._compiler() is not None
pytestmark = pytest.mark.skipif(not HAS_LOOP, reason="needs AVX-512 (F, DQ) and a C++ compiler")

FAMILY = ["focal", "poly1", "asl", "apl", "apl_official", "aam"]
# what the defaults lack: ASL's eps clamp, APL's polynomial terms and positive focusing,
# AAM's margin
PRESETS = ["asl_coco", "apl_aapd_beta1", "apl_coco_gamma_pos1", "aam_coco"]
# the loop's other branches: the masked negative branch (gamma- <= 1 with a margin), no
# weight on it, the cap on the negative branch (eps without a margin), focal's alpha
# (scale+ / scale-), b1 with a margin, detached weights, sum and batchmean
CONFIGS = [
    ("asl", {"gamma_neg": 1.0}),
    ("asl", {"gamma_neg": 0.0, "gamma_pos": 2.0}),
    ("asl", {"clip": 0.0, "eps": 1e-3}),
    ("asl", {"detach_focal_weight": True, "reduction": "sum"}),
    ("focal", {"alpha": 0.25, "reduction": "batchmean"}),
    ("apl", {"alpha1": 2.5, "beta1": 2.0, "gamma_pos": 1.0}),
]


@pytest.fixture
def loop_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the loop's calls (``value_and_grad``)."""
    calls: list[int] = []
    real = cpu_fused.value_and_grad

    def counted(*args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cpu_fused, "value_and_grad", counted)
    yield calls


def _inputs(name: str, shape: tuple[int, int], seed: int, scale: float = 3.0,
            soft: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(*shape, generator=g, dtype=torch.float64) * scale
    if name == "aam":  # cosines
        z = (z / 4).clamp(-1, 1)
    y = torch.rand(*shape, generator=g, dtype=torch.float64)
    return z, (y if soft else (y < 0.2).double())


def _value_and_grad(loss: torch.nn.Module, z: torch.Tensor,
                    y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = z.clone().requires_grad_(True)
    value = loss(x, y)
    (grad,) = torch.autograd.grad(value.sum(), x)  # sum: reduction="none" too
    return value.detach(), grad


def _traced(name: str, **kwargs: object) -> torch.nn.Module:
    """The compiled path with dynamo + AOT autograd but no code generation (about a second a
    test here, against 7-9 s with inductor's compilation): the loop serves it all the same, and
    where the loop does not, the traced closed form runs (``_kernel.compiled_poly_caller``)."""
    return create_loss(name, **kwargs).compile_functional(backend="aot_eager")


def _check_against_float64(name: str, kwargs: dict[str, object], loop_calls: list[int],
                           shape: tuple[int, int] = (37, 53)) -> None:
    # eager float32 itself is up to ~2.3e-6 away from float64 on such inputs
    # (tests/test_losses/test_compile.py); 37 x 53 leaves a tail of 1961 mod 256 elements
    eager = create_loss(name, **kwargs)
    compiled = create_loss(name, compile=True, **kwargs)
    for seed, (scale, soft) in enumerate(((1.0, False), (4.0, True), (12.0, False))):
        z, y = _inputs(name, shape, seed, scale, soft)
        before = len(loop_calls)
        v64, g64 = _value_and_grad(eager, z, y)
        v32, g32 = _value_and_grad(compiled, z.float(), y.float())
        assert len(loop_calls) == before + 1, "the compiled loss did not run the CPU loop"
        assert v32.dtype == torch.float32 and g32.dtype == torch.float32
        assert abs(v32.item() - v64.item()) <= 3e-6 * abs(v64.item()), (name, kwargs, scale)
        err = ((g32.double() - g64).abs().max() / g64.abs().max()).item()
        assert err < 3e-6, (name, kwargs, scale, err)


@pytest.mark.parametrize("name", FAMILY)
def test_every_family_loss_matches_float64_eager(name: str, loop_calls: list[int]) -> None:
    _check_against_float64(name, {}, loop_calls)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_asymmetric_preset_matches_float64_eager(preset: str,
                                                       loop_calls: list[int]) -> None:
    name = preset.split("_")[0]
    _check_against_float64(name, {"preset": preset}, loop_calls)


@pytest.mark.parametrize(("name", "kwargs"), CONFIGS)
def test_every_branch_of_the_loop_matches_float64_eager(name: str, kwargs: dict[str, object],
                                                         loop_calls: list[int]) -> None:
    _check_against_float64(name, kwargs, loop_calls)


EXTREMES = [math.inf, -math.inf, math.nan, 110.0, -110.0, 104.0, -104.0, 88.0, -88.0, 17.0,
            -17.0, 3.0, -3.0, 1e-30, -1e-30, 0.0]


@pytest.mark.parametrize("name", ["asl", "apl_official", "focal", "poly1"])
def test_extreme_logits_behave_as_the_closed_form_in_torch_ops(
        name: str, loop_calls: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    # each logit alone (a NaN would make every sum NaN), as a positive and as a negative:
    # the same infinities and NaNs as the same closed form in float32 torch ops
    # (``_fused_dense``, traced without the loop), and values within float32 rounding of it
    loop = create_loss(name, reduction="sum", compile=True)
    with monkeypatch.context() as m:
        m.setattr(cpu_fused, "ENABLED", False)
        torch_ops = _traced(name, reduction="sum")
        reference = {}
        for v in EXTREMES:
            z = torch.tensor([[v], [v]])
            y = torch.tensor([[1.0], [0.0]])
            reference[v] = _value_and_grad(torch_ops, z, y)
    assert not loop_calls
    for v in EXTREMES:
        z = torch.tensor([[v], [v]])
        y = torch.tensor([[1.0], [0.0]])
        value, grad = _value_and_grad(loop, z, y)
        ref_value, ref_grad = reference[v]
        torch.testing.assert_close(value, ref_value, rtol=2e-6, atol=1e-30, equal_nan=True,
                                   msg=f"{name} value at logit {v}")
        torch.testing.assert_close(grad, ref_grad, rtol=5e-6, atol=1e-12, equal_nan=True,
                                   msg=f"{name} gradient at logit {v}")
    assert len(loop_calls) == len(EXTREMES)


def test_a_default_device_context_does_not_move_the_loops_result(
        loop_calls: list[int]) -> None:
    # the loss value is made from the loop's double sum: without a device, under
    # `with torch.device("meta")` it became a meta tensor beside a CPU gradient
    z, y = _inputs("asl", (20, 30), 0)
    loss = create_loss("asl", compile=True)
    want = _value_and_grad(loss, z.float(), y.float())
    cpu_fused._constants.cache_clear()  # the loop's constants are first made in the context
    with torch.device("meta"):
        got = _value_and_grad(loss, z.float(), y.float())
    assert len(loop_calls) == 2
    assert got[0].device.type == "cpu"
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_exp_rounds_to_the_subnormals_as_exp_does(loop_calls: list[int]) -> None:
    # a negative's gradient without focusing or margin is sigmoid(z) ~ exp(z): below z = -87.3
    # a subnormal float32, where the loop's 2^n scaling (vscalefps) must round once, to within
    # a few subnormal steps (2^-149) of the exact value (the test above allows 1e-12 there)
    loss = create_loss("asl", gamma_neg=0.0, gamma_pos=0.0, clip=0.0, reduction="sum",
                       compile=True)
    z = torch.linspace(-103.5, -80.0, 1001).reshape(7, 143)  # a tail of 1001 mod 16
    _, grad = _value_and_grad(loss, z, torch.zeros_like(z))
    exact = torch.sigmoid(z.double())
    assert len(loop_calls) == 1
    subnormal = exact < 2.0**-126
    assert subnormal.sum() > 500  # most of the range
    err = (grad.double() - exact).abs()
    assert err[subnormal].max().item() <= 3 * 2.0**-149
    assert (err[~subnormal] / exact[~subnormal]).max().item() < 3e-6


@pytest.mark.parametrize(("aten", "flags", "expected"), [
    ("AVX512", {"avx512_f", "avx512_dq"}, True),
    ("AVX2", {"avx512_f", "avx512_dq"}, False),  # ATEN_CPU_CAPABILITY=avx2
    ("DEFAULT", {"avx512_f", "avx512_dq"}, False),  # ATEN_CPU_CAPABILITY=default
    ("AVX512", {"avx512_f"}, False),  # no DQ
    ("AVX2", set(), False),
])
def test_the_loop_runs_only_where_aten_uses_avx512_too(
        aten: str, flags: set[str], expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: aten)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: dict.fromkeys(flags, True))
    assert cpu_fused._cpu_has_avx512.__wrapped__() is expected


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (1, 16), (16, 16), (1, 257), (33, 100)])
def test_every_tail_length_and_thread_count_gives_the_same_gradient(
        shape: tuple[int, int], loop_calls: list[int]) -> None:
    # elements past a multiple of 16 go through masked loads and stores; each element's
    # gradient is computed on its own, so the threads' split cannot change it
    loss = create_loss("asl", compile=True)
    z, y = _inputs("asl", shape, 0)
    z, y = z.float(), y.float()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        v1, g1 = _value_and_grad(loss, z, y)
        torch.set_num_threads(2)
        v2, g2 = _value_and_grad(loss, z, y)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(g1, g2)
    assert v1.item() == pytest.approx(v2.item(), rel=1e-6)
    v64, g64 = _value_and_grad(create_loss("asl"), z.double(), y.double())
    assert v1.item() == pytest.approx(v64.item(), rel=3e-6)
    assert ((g1.double() - g64).abs().max() / g64.abs().max()).item() < 3e-6
    assert len(loop_calls) == 2


@pytest.mark.parametrize(("case", "kwargs"), [
    ("float64 logits", {}),
    ("bfloat16 logits", {}),
    ("bool targets", {}),
    ("reduction none", {"reduction": "none"}),
    ("non-integer exponent", {"gamma_neg": 2.5}),
    ("switched off", {}),
])
def test_inputs_the_loop_does_not_serve_take_the_traced_closed_form(
        case: str, kwargs: dict[str, object], loop_calls: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    z, y = _inputs("asl", (8, 20), 0)
    z, y = z.float(), y.float()
    if case == "float64 logits":
        z, y = z.double(), y.double()
    elif case == "bfloat16 logits":
        z = z.bfloat16()
    elif case == "bool targets":
        y = y.bool()
    elif case == "switched off":
        monkeypatch.setattr(cpu_fused, "ENABLED", False)
    value, grad = _value_and_grad(_traced("asl", **kwargs), z, y)
    assert not loop_calls, case
    v64, g64 = _value_and_grad(create_loss("asl", **kwargs), z.double(), y.double())
    tol = 1e-2 if z.dtype == torch.bfloat16 else 3e-6  # bf16: the gradient is rounded to it
    torch.testing.assert_close(value.double(), v64, rtol=tol, atol=1e-9)
    assert grad.dtype == z.dtype
    assert ((grad.double() - g64).abs().max() / g64.abs().max()).item() < tol


@pytest.fixture
def fresh_cache(fresh_kernel_cache: Path) -> Path:
    """An empty build cache, and no loop loaded in this process for the test's duration."""
    return fresh_kernel_cache


@pytest.mark.parametrize("compiler", ["false", "/nonexistent/c++"])
def test_a_failing_build_warns_once_and_the_loss_takes_the_traced_closed_form(
        compiler: str, fresh_cache: Path, loop_calls: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", compiler)
    loss = _traced("asl")
    z, y = _inputs("asl", (8, 20), 0)
    with pytest.warns(RuntimeWarning, match="did not build with " + compiler):
        value, _ = _value_and_grad(loss, z.float(), y.float())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per set of coefficients, not per call
        _value_and_grad(loss, z.float(), y.float())
    assert not loop_calls
    assert not list(fresh_cache.glob("*.so"))  # no half-written library left behind
    v64, _ = _value_and_grad(create_loss("asl"), z, y)
    assert value.item() == pytest.approx(v64.item(), rel=3e-6)


def test_a_built_loop_is_reused_from_the_cache(fresh_cache: Path, loop_calls: list[int],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    z, y = _inputs("asl", (8, 20), 0)
    _value_and_grad(create_loss("asl", compile=True), z.float(), y.float())
    built = list(fresh_cache.glob("*.so"))
    assert len(built) == 1 and len(loop_calls) == 1
    cpu_fused._library.cache_clear()  # a new process: only the disk cache remains

    def no_compiler(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached loop was built again")

    with monkeypatch.context() as m:
        m.setattr(native.subprocess, "run", no_compiler)
        _value_and_grad(create_loss("asl", compile=True), z.float(), y.float())
    assert len(loop_calls) == 2
    # other coefficients: a library of their own
    _value_and_grad(create_loss("asl", gamma_neg=2.0, compile=True), z.float(), y.float())
    assert len(list(fresh_cache.glob("*.so"))) == 2 and len(loop_calls) == 3


def test_an_unwritable_cache_or_an_unloadable_library_warns_and_falls_back(
        fresh_cache: Path, tmp_path: Path, loop_calls: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    z, y = _inputs("asl", (8, 20), 0)
    v64, _ = _value_and_grad(create_loss("asl"), z, y)
    # a cache folder that cannot be created (a file is in the way)
    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setenv("MLLB_CACHE", str(tmp_path / "a_file"))
    with pytest.warns(RuntimeWarning, match="did not build .*cannot write to"):
        value, _ = _value_and_grad(_traced("asl"), z.float(), y.float())
    assert value.item() == pytest.approx(v64.item(), rel=3e-6) and not loop_calls
    # a cached library that does not load (truncated; coefficients no loss of this process
    # has loaded, as the dynamic loader hands out a loaded library again by its name)
    monkeypatch.setenv("MLLB_CACHE", str(fresh_cache.parent))
    constants = cpu_fused._constants(cpu_fused.PolyParams(gamma_neg=7.0, clip=0.3), 1.0)
    path = cpu_fused.library_path(cpu_fused._compiler(), constants)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x7fELF truncated")
    with pytest.warns(RuntimeWarning, match="did not load"):
        assert cpu_fused._library(constants) is None
