"""Registry behaviour: suggestions, duplicates, entry-point plugins (good and broken)."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import losses
from losses import LOSSES, Registry, RegistryError, create_loss, get_preset, preset_names


def test_unknown_name_suggests_the_closest_and_lists_known() -> None:
    with pytest.raises(RegistryError) as info:
        create_loss("aplx")
    msg = str(info.value)
    assert "unknown loss 'aplx'" in msg
    assert "did you mean 'apl'?" in msg
    assert "known: [" in msg and "'asl'" in msg and "'bce'" in msg


def test_duplicate_registration_is_an_error() -> None:
    reg: Registry[type] = Registry("thing")

    @reg.register("a")
    class A:
        pass

    with pytest.raises(RegistryError, match="duplicate thing name 'a'"):

        @reg.register("a")
        class B:
            pass

    assert reg.get("a") is A


def test_builtin_names() -> None:
    assert set(losses.list_losses()) >= {
        "bce", "focal", "poly1", "asl", "asl_adaptive", "apl", "apl_official", "aam", "zlpr",
        "two_way",
    }


def _fake_dist(tmp_path: Path, name: str, entry_points: dict[str, str]) -> None:
    """Create an importable *.dist-info with entry points in ``tmp_path``."""
    dist = tmp_path / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[mllb.losses]\n{lines}\n")


@pytest.fixture
def plugin_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    pkg = tmp_path / "my_mllb_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        import torch
        from losses import MultiLabelLoss

        def squared_loss(logits, targets, *, scale: float = 1.0, reduction: str = "mean"):
            """A toy loss: scale * (sigmoid(z) - y)^2."""
            out = scale * (torch.sigmoid(logits.float()) - targets.float()) ** 2
            return out.mean() if reduction == "mean" else out.sum()

        class SquaredLoss(MultiLabelLoss):
            name = "squared"
            functional = staticmethod(squared_loss)
    '''))
    (tmp_path / "broken_mllb_plugin.py").write_text("raise ImportError('no such dependency')\n")
    _fake_dist(tmp_path, "my_mllb_plugin", {
        "squared": "my_mllb_plugin:SquaredLoss",
        "broken": "broken_mllb_plugin:Nothing",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    LOSSES.refresh_plugins()
    yield LOSSES
    LOSSES._items.pop("squared", None)
    LOSSES.refresh_plugins()
    sys.modules.pop("my_mllb_plugin", None)
    sys.modules.pop("broken_mllb_plugin", None)


def test_entry_point_plugin_loads_lazily(plugin_env: Registry) -> None:
    assert "squared" in plugin_env.names()
    assert "my_mllb_plugin" not in sys.modules  # listed without importing
    loss = create_loss("squared", scale=2.0)
    assert loss.hparams == {"scale": 2.0, "reduction": "mean"}
    z, y = torch.zeros(2, 3), torch.ones(2, 3)
    assert torch.allclose(loss(z, y), torch.tensor(2.0 * 0.25))


def test_broken_plugin_breaks_only_its_own_name(plugin_env: Registry) -> None:
    assert float(create_loss("bce")(torch.zeros(1, 2), torch.ones(1, 2))) > 0
    with pytest.raises(RegistryError, match="failed to import: ImportError: no such dependency"):
        create_loss("broken")
    assert create_loss("squared").hparams["scale"] == 1.0
    with pytest.warns(UserWarning, match="broken"):
        loaded = plugin_env.load_all()
    assert "squared" in loaded and "broken" not in loaded


def test_unknown_hyper_parameter_names_the_valid_keys() -> None:
    with pytest.raises(TypeError, match=r"unknown hyper-parameter 'gama_neg'; did you mean "
                                        r"'gamma_neg'\? valid: \["):
        create_loss("asl", gama_neg=2)


@pytest.mark.parametrize(("name", "kwargs", "field"), [
    ("asl", {"clip": 1.5}, "clip"),
    ("asl", {"gamma_neg": -1}, "gamma_neg"),
    ("apl", {"alpha1": float("nan")}, "alpha1"),
    ("focal", {"alpha": 2.0}, "alpha"),
    ("aam", {"s": 0.0}, "s"),
    ("bce", {"reduction": "avg"}, "reduction"),
    ("zlpr", {"reduction": "sum"}, "reduction"),
])
def test_invalid_values_name_the_field(name: str, kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"loss '{name}': {field} must be"):
        create_loss(name, **kwargs)


def test_presets_resolve_and_cite_their_source() -> None:
    names = preset_names()
    assert {"asl_coco", "apl_aapd", "apl_docred", "apl_coco", "apl_nus_wide", "aam_coco",
            "aam_voc", "aam_nus_wide"} <= set(names)
    for name in names:
        entry = get_preset(name)
        assert len(entry["source"]) > 20
        loss = create_loss(entry["loss"], preset=name)
        assert loss.preset == name
        for key, value in entry["kwargs"].items():
            assert loss.hparams[key] == value


def test_preset_values_and_overrides() -> None:
    loss = create_loss("apl", preset="apl_aapd")
    hp = loss.hparams
    assert (hp["alpha1"], hp["gamma_neg"], hp["p_th"]) == (2.5, 3.0, 0.05)
    assert create_loss("apl", preset="apl_aapd", alpha1=2.0).hparams["alpha1"] == 2.0
    with pytest.raises(ValueError, match="preset 'aam_coco' is for loss 'aam', not 'asl'"):
        create_loss("asl", preset="aam_coco")
    with pytest.raises(KeyError, match="did you mean 'apl_aapd'"):
        create_loss("apl", preset="apl_aapdd")


def test_entry_points_group_is_the_documented_one() -> None:
    assert LOSSES.entry_point_group == "mllb.losses"
