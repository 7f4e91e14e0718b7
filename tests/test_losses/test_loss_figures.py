"""losses.figures: deterministic PNGs, curves computed by the registered losses, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from losses import RegistryError
from losses.figures import CurveSpec, build_loss, curve_data, main, parse_spec

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_main_writes_two_byte_identical_pngs(tmp_path: Path) -> None:
    first = main(["-o", str(tmp_path / "a"), "--points", "50"])
    second = main(["-o", str(tmp_path / "b"), "--points", "50"])
    assert [p.name for p in first] == ["loss_curves.png", "gradient_curves.png"]
    assert [p.name for p in second] == [p.name for p in first]
    for a, b in zip(first, second, strict=True):
        data = a.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)
        assert data == b.read_bytes(), f"{a.name} differs between two runs"


def test_bce_curves_match_closed_form() -> None:
    c = curve_data("bce", points=101)
    p = c["p"]
    assert p.dtype == np.float64 and p[0] == pytest.approx(1e-3) and p[-1] == pytest.approx(0.999)
    np.testing.assert_allclose(c["x"], np.log(p / (1 - p)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c["loss_pos"], -np.log(p), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(c["grad_pos"], p - 1, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(c["loss_neg"], -np.log1p(-p), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(c["grad_neg"], p, rtol=1e-9, atol=1e-9)


def test_asl_negative_curves_match_closed_form() -> None:
    c = curve_data(CurveSpec("asl", kwargs={"gamma_neg": 4.0, "clip": 0.05}), points=201)
    p = c["p"]
    pm = np.maximum(p - 0.05, 0.0)
    loss_neg = pm**4 * -np.log1p(-pm)
    # d/dz = dL/dp_m * dp_m/dz, dp_m/dz = p (1 - p) above the margin, 0 below it
    dl_dpm = 4 * pm**3 * -np.log1p(-pm) + pm**4 / (1 - pm)
    grad_neg = np.where(p > 0.05, dl_dpm * p * (1 - p), 0.0)
    np.testing.assert_allclose(c["loss_neg"], loss_neg, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(c["grad_neg"], grad_neg, rtol=1e-9, atol=1e-9)
    # gamma_pos = 0: the positive side is BCE's
    np.testing.assert_allclose(c["loss_pos"], -np.log(p), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(c["grad_pos"], p - 1, rtol=1e-9, atol=1e-9)


def test_sum_preset_is_plotted_per_element() -> None:
    # asl_coco's reduction is "sum"; the curves must still be one value per probability.
    preset = curve_data("asl@asl_coco", points=30)
    plain = curve_data(CurveSpec("asl", kwargs={"gamma_neg": 4.0, "clip": 0.05}), points=30)
    assert preset["loss_neg"].shape == (30,)
    np.testing.assert_allclose(preset["loss_neg"], plain["loss_neg"], rtol=1e-9, atol=1e-12)


def test_aam_uses_cosines_and_its_probabilities() -> None:
    c = curve_data("aam@aam_coco", points=40)
    assert np.all((c["x"] > -1) & (c["x"] < 1))
    assert np.all(np.diff(c["p"]) > 0)
    assert c["p"][0] == pytest.approx(1e-3, rel=1e-3)
    assert c["p"][-1] == pytest.approx(0.999, rel=1e-4)
    assert np.all(c["grad_pos"] < 0) and np.all(c["grad_neg"] > 0)


@pytest.mark.parametrize(
    "spec", ["poly1", "focal", "asl_adaptive", "apl_official", "apl@apl_docred", "aam@aam_voc"]
)
def test_other_per_element_losses_give_finite_curves(spec: str) -> None:
    c = curve_data(spec, points=20)
    assert all(v.shape == (20,) and np.all(np.isfinite(v)) for v in c.values())


def test_losses_are_built_per_element_and_in_eval_mode() -> None:
    # eval mode: asl_adaptive must not move its gamma_neg while being plotted
    loss = build_loss("apl@apl_aapd")
    assert loss.hparams["reduction"] == "none" and loss.hparams["alpha1"] == 2.5
    assert not build_loss("asl_adaptive").training


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("aplx", "unknown loss 'aplx'; did you mean 'apl'?"),
        ("apl@apl_nope", "unknown loss preset 'apl_nope'"),
        ("apl@asl_coco", "preset 'asl_coco' is for loss 'asl', not 'apl'"),
        ("zlpr", "loss 'zlpr' is not a per-element loss"),
        ("two_way", "loss 'two_way' is not a per-element loss"),
        ("apl@", "bad loss spec"),
    ],
)
def test_bad_spec_exits_with_the_registry_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["-o", str(tmp_path / "out"), "--losses", f"bce,{spec}"])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # validated before anything is written


def test_curve_data_raises_typed_errors() -> None:
    with pytest.raises(RegistryError, match="unknown loss 'nope'"):
        curve_data("nope")
    with pytest.raises(ValueError, match="'zlpr' is not a per-element loss"):
        curve_data("zlpr")
    assert parse_spec(" apl@apl_aapd ") == CurveSpec("apl", "apl_aapd")


def test_import_losses_does_not_import_matplotlib() -> None:
    code = (
        "import sys, losses, losses.figures; "
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
