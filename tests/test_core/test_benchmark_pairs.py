"""``benchmarks/loss_speed.py``'s alone pairs: the ratios it judges and the milliseconds of each
side it prints beside them, computed by hand from scripted call times."""

from __future__ import annotations

import importlib
import statistics
from types import ModuleType

import pytest
import torch


def test_time_pair_alternates_and_reports_both_sides(loss_speed: ModuleType,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    loss = loss_speed.Case("loss", None)
    reference = loss_speed.Case(loss_speed.REFERENCE, None)
    # seconds per call, per side, in the order each side is called
    scripted = {"loss": iter([4.0, 5.0, 4.5, 9.0, 4.2]),
                loss_speed.REFERENCE: iter([10.0, 9.0, 12.0, 9.5, 11.0])}
    calls: list[str] = []

    def fake_time_step(case: object, inputs: object, device: object) -> float:
        calls.append(case.label)  # type: ignore[attr-defined]
        return next(scripted[case.label])  # type: ignore[attr-defined]

    monkeypatch.setattr(loss_speed, "time_step", fake_time_step)
    alone = loss_speed.time_pair(loss, reference, None, torch.device("cpu"), 5)

    ref = loss_speed.REFERENCE
    assert calls == ["loss", ref, ref, "loss", "loss", ref, ref, "loss", "loss", ref]
    # pairs 0, 2, 4 have the loss first; pairs 1, 3 the reference first
    assert alone.ratio == statistics.median([4.0 / 10.0, 4.5 / 12.0, 4.2 / 11.0])
    assert alone.reverse == statistics.median([5.0 / 9.0, 9.0 / 9.5])
    assert alone.loss_s == 4.5  # median of 4.0, 5.0, 4.5, 9.0, 4.2
    assert alone.reference_s == 10.0  # median of 10.0, 9.0, 12.0, 9.5, 11.0


def _results(loss_speed: ModuleType, ratio: float) -> list[object]:
    ref = loss_speed.Result(loss_speed.REFERENCE, times=[10e-3, 10e-3])
    row = loss_speed.Result("asl (compiled)", times=[4e-3, 6e-3],
                            alone=loss_speed.Alone(ratio, 0.47, 4.44e-3, 9.31e-3))
    return [ref, row]


@pytest.mark.parametrize(("ratio", "verdict"), [(0.49, "PASS"), (0.5, "PASS"), (0.501, "FAIL")])
def test_target_line_judges_the_alone_ratio_and_prints_both_times(
        loss_speed: ModuleType, ratio: float, verdict: str) -> None:
    lines = loss_speed.target_lines({(4096, 1000): _results(loss_speed, ratio)})
    assert lines == [
        f"- {verdict} asl (compiled) 4096x1000: alone {ratio:.2f}x (reverse order 0.47x; "
        f"4.44 ms against 9.31 ms) <= 0.5x; inside the interleaving 0.50x"
    ]


@pytest.mark.parametrize(("wrapper", "module_name", "flag", "inside"), [
    ("with_inductor_loop", "losses._cpu_fused", "ENABLED", False),
    ("with_triton_backward", "losses._kernel", "NATIVE_BACKWARD", True),
    ("with_triton_backward", "losses._kernel", "NATIVE_BACKWARD", False),
], ids=["inductor loop", "native backward", "function backward"])
def test_row_wrappers_set_their_flag_for_their_call_only(
        loss_speed: ModuleType, monkeypatch: pytest.MonkeyPatch, wrapper: str,
        module_name: str, flag: str, inside: bool) -> None:
    """The inductor-loop rows switch the AVX-512 loop off, the other-backward rows switch
    ``NATIVE_BACKWARD``, each for its own call only, also when that call raises."""
    module = importlib.import_module(module_name)
    monkeypatch.setattr(module, flag, not inside)
    seen: list[bool] = []

    def loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(getattr(module, flag))
        if len(seen) == 2:
            raise RuntimeError("a failing call")
        return z.sum()

    wrap = getattr(loss_speed, wrapper)
    row = wrap(loss) if wrapper == "with_inductor_loop" else wrap(loss, inside)
    row(torch.ones(2), torch.ones(2))
    with pytest.raises(RuntimeError, match="a failing call"):
        row(torch.ones(2), torch.ones(2))
    assert seen == [inside, inside] and getattr(module, flag) is (not inside)


@pytest.mark.parametrize("native", [True, False])
def test_compiled_only_cases_with_the_other_backward(
        loss_speed: ModuleType, monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    import losses._kernel as kernel

    monkeypatch.setattr(kernel, "NATIVE_BACKWARD", native)
    cases = loss_speed.build_cases(torch.device("cpu"), other_backward_rows=True,
                                   compiled_only=True)
    other = "function" if native else "native"
    assert [case.label for case in cases] == [
        loss_speed.REFERENCE, loss_speed.FLOOR,
        *(f"{name} (compiled)" for name in loss_speed.COMPILED),
        *(f"{name} (compiled, {other} backward)" for name in loss_speed.COMPILED)]
    assert [case.uses_cosine for case in cases[-6:]] == [
        name == "aam" for name in loss_speed.COMPILED]
    # the other backward's rows are the same loss: equal values on the CPU (no Triton here)
    z, y = torch.randn(4, 5), (torch.rand(4, 5) < 0.3).float()
    by_label = {case.label: case for case in cases}
    assert torch.equal(by_label["asl (compiled)"].loss(z, y),
                       by_label[f"asl (compiled, {other} backward)"].loss(z, y))


def test_gpu_target_lines_judge_the_library_backward_only(
        loss_speed: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    import losses._kernel as kernel

    monkeypatch.setattr(kernel, "NATIVE_BACKWARD", True)
    ref = loss_speed.Result(loss_speed.REFERENCE, times=[1e-3, 1e-3])
    judged = loss_speed.Result("asl (compiled)", times=[0.6e-3, 0.6e-3],
                               alone=loss_speed.Alone(0.62, 0.71, 0.6e-3, 0.97e-3))
    other = loss_speed.Result("asl (compiled, function backward)", times=[1.2e-3, 1.2e-3],
                              alone=loss_speed.Alone(1.21, 1.4, 1.2e-3, 1e-3))
    lines = loss_speed.target_lines({(1024, 9605): [ref, judged, other]}, gpu=True)
    assert lines == [
        "- PASS asl (compiled) 1024x9605: alone 0.62x (reverse order 0.71x; 0.60 ms against "
        "0.97 ms) <= 1x; inside the interleaving 0.60x",
        "- (not judged: not the library's backward) FAIL asl (compiled, function backward) "
        "1024x9605: alone 1.21x (reverse order 1.40x; 1.20 ms against 1.00 ms) <= 1x; inside "
        "the interleaving 1.20x",
    ]


@pytest.mark.parametrize(("aten", "loop"), [("AVX512", "the AVX-512 loop"),
                                            ("AVX2", "inductor's loop")])
def test_cpu_header_names_atens_capability_and_the_loop_it_gives(
        loss_speed: ModuleType, monkeypatch: pytest.MonkeyPatch, aten: str, loop: str) -> None:
    # ATEN_CPU_CAPABILITY changes eager BCE's kernels, inductor's loops and whether MLLB's
    # AVX-512 loop runs: a run's header must say which it was
    cpu_fused = importlib.import_module("losses._cpu_fused")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: aten)
    monkeypatch.setattr(torch.cpu, "get_capabilities",
                        lambda: {"avx512_f": True, "avx512_dq": True})
    monkeypatch.setattr(cpu_fused, "_cpu_has_avx512", cpu_fused._cpu_has_avx512.__wrapped__)
    monkeypatch.setattr(cpu_fused, "ENABLED", True)
    line = loss_speed.header(torch.device("cpu"))
    assert f"ATen CPU capability {aten}, compiled family on CPU: {loop}" in line


def test_compiled_error_measures_the_distance_to_the_eager_loss(
        loss_speed: ModuleType) -> None:
    from losses import create_loss

    inputs = loss_speed.make_inputs(16, 40, torch.device("cpu"), 0)
    eager = create_loss("asl")

    def half(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # what a loop over half the elements computes (the stale inductor cache of that session)
        return eager(z[:, :20], y[:, :20]) * 0.5

    def case(loss: object) -> object:
        return loss_speed.Case("asl (compiled)", loss, compiled=True, eager=eager)

    assert loss_speed.compiled_error(case(eager), inputs) == 0.0
    # the gradient of the left-out half is 0 where the eager loss's is not: error 1
    assert loss_speed.compiled_error(case(half), inputs) == pytest.approx(1.0)
    scaled = loss_speed.compiled_error(case(lambda z, y: eager(z, y) * (1 + 3e-4)), inputs)
    assert scaled == pytest.approx(3e-4, rel=1e-3)


@pytest.mark.parametrize(("error", "verdict"), [(None, "PASS"), (5e-7, "PASS"), (3e-4, "FAIL")])
def test_a_compiled_row_off_the_eager_loss_fails_whatever_its_time(
        loss_speed: ModuleType, error: float | None, verdict: str) -> None:
    results = _results(loss_speed, 0.3)
    results[1].value_error = error  # type: ignore[attr-defined]
    (line,) = loss_speed.target_lines({(4096, 1000): results}, tolerance=1e-4)
    assert line.startswith(f"- {verdict} asl (compiled) 4096x1000: alone 0.30x")
    assert ("not a valid timing" in line) == (verdict == "FAIL")
    check = loss_speed.compiled_check_line(results, 1e-4)
    assert (check == "") == (error is None)
    assert ("(their times are not valid)" in check) == (verdict == "FAIL")
