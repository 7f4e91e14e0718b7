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


# ---------------------------------------------------------------------------------------------
# lazy built-ins (``Registry.add_lazy``) and name patterns


@pytest.fixture
def lazy_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A module ``lazy_mllb_things`` that registers ``alpha`` and ``beta`` in a fresh registry."""
    reg: Registry[type] = Registry("thing")
    (tmp_path / "lazy_mllb_things.py").write_text(textwrap.dedent('''
        import lazy_mllb_registry
        REG = lazy_mllb_registry.REG

        @REG.register("alpha")
        class Alpha:
            pass

        @REG.register("beta")
        class Beta:
            pass
    '''))
    holder = type(sys)("lazy_mllb_registry")
    holder.REG = reg
    monkeypatch.setitem(sys.modules, "lazy_mllb_registry", holder)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield reg
    sys.modules.pop("lazy_mllb_things", None)


def test_lazy_name_is_listed_without_import_and_imported_on_first_get(lazy_module) -> None:
    reg = lazy_module
    reg.add_lazy("alpha", "lazy_mllb_things:Alpha")
    reg.add_lazy("beta", "lazy_mllb_things:Beta")
    assert reg.names() == ["alpha", "beta"] and "alpha" in reg and len(reg) == 2
    assert reg.lazy_target("alpha") == "lazy_mllb_things:Alpha"
    assert "lazy_mllb_things" not in sys.modules
    alpha = reg.get("alpha")  # the module's own decorator replaced the placeholder: no duplicate
    module = sys.modules["lazy_mllb_things"]
    assert alpha is module.Alpha and reg.get("beta") is module.Beta
    assert reg.lazy_target("alpha") is None and reg.names() == ["alpha", "beta"]


def test_importing_the_module_directly_also_replaces_the_placeholders(lazy_module) -> None:
    reg = lazy_module
    reg.add_lazy("alpha", "lazy_mllb_things:Alpha")
    module = importlib.import_module("lazy_mllb_things")
    assert reg.lazy_target("alpha") is None and reg.get("alpha") is module.Alpha


def test_lazy_target_that_does_not_register_its_name_is_an_error(lazy_module) -> None:
    reg = lazy_module
    reg.add_lazy("gamma", "lazy_mllb_things:Gamma")
    with pytest.raises(RegistryError, match=r"did not register it .*'Gamma'.*@register\('gamma'\)"):
        reg.get("gamma")
    reg.add_lazy("other", "json:dumps")
    with pytest.raises(RegistryError, match="importing 'json' did not register it"):
        reg.get("other")


def test_lazy_target_naming_another_object_is_an_error(lazy_module) -> None:
    reg = lazy_module
    reg.add_lazy("alpha", "lazy_mllb_things:Beta")
    with pytest.raises(RegistryError, match="declared as 'lazy_mllb_things:Beta'"):
        reg.get("alpha")


def test_lazy_declarations_conflict_only_when_they_differ() -> None:
    reg: Registry[type] = Registry("thing")
    reg.add_lazy("a", "pkg.mod:A")
    reg.add_lazy("a", "pkg.mod:A")  # the same declaration twice is harmless
    with pytest.raises(RegistryError, match=r"lazily as 'pkg\.mod:A', now as 'pkg\.mod:B'"):
        reg.add_lazy("a", "pkg.mod:B")
    reg.add("b", int)
    with pytest.raises(RegistryError, match="duplicate thing name 'b'"):
        reg.add_lazy("b", "pkg.mod:B")
    with pytest.raises(ValueError, match=r"'module\.path:attr'"):
        reg.add_lazy("c", "pkg.mod.C")


def test_a_missing_lazy_module_raises_its_import_error() -> None:
    reg: Registry[type] = Registry("thing")
    reg.add_lazy("a", "no_such_mllb_module:A")
    with pytest.raises(ModuleNotFoundError, match="no_such_mllb_module"):
        reg.get("a")


def test_unknown_name_suggests_lazy_names_too() -> None:
    reg: Registry[type] = Registry("thing")
    reg.add_lazy("tiny_mlp", "pkg.mod:tiny_mlp")
    with pytest.raises(RegistryError, match="did you mean 'tiny_mlp'"):
        reg.get("tiny_mpl")


def test_names_pattern_is_fnmatch_over_every_kind_of_entry() -> None:
    reg: Registry[type] = Registry("thing")
    reg.add("tiny_a", int)
    reg.add("big_a", int)
    reg.add_lazy("tiny_b", "pkg.mod:B")
    reg.add_lazy("Tiny_c", "pkg.mod:C")
    assert reg.names("tiny_*") == ["tiny_a", "tiny_b"]  # case-sensitive on every OS
    assert reg.names("*_a") == ["big_a", "tiny_a"]
    assert reg.names("tiny_[ab]") == ["tiny_a", "tiny_b"]
    assert reg.names("nothing*") == []
    assert reg.names() == ["Tiny_c", "big_a", "tiny_a", "tiny_b"]


def test_plugin_names_match_patterns(plugin_env: Registry) -> None:
    assert plugin_env.names("squ*") == ["squared"]
    assert "my_mllb_plugin" not in sys.modules


# Imports every module of tasks/ and models/ (walking the packages, not using the tables), then
# prints, per registry, what the modules' decorators registered and what each table entry names.
_EAGER = r'''
import importlib, json, pkgutil
import models, tasks
tables = {"models": (models.MODELS, dict(models.BUILTIN_MODELS)),
          "tasks": (tasks.TASKS, dict(tasks.BUILTIN_TASKS))}
for pkg in (models, tasks):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(info.name)
out = {}
for key, (reg, table) in tables.items():
    registered = {id(obj): name for name, obj in reg._items.items()}
    resolved = {}
    for name, target in table.items():
        module, attr = target.split(":")
        obj = getattr(importlib.import_module(module), attr)
        resolved[name] = registered.get(id(obj))
    out[key] = {"registered": sorted(reg._items), "never_registered": sorted(reg._lazy),
                "resolved": resolved}
print(json.dumps(out))
'''

# Starts from ``import models, tasks`` alone: lists names, then resolves every one through get().
_LAZY = r'''
import json, sys
import models, tasks
out = {}
for key, reg, table in (("models", models.MODELS, models.BUILTIN_MODELS),
                        ("tasks", tasks.TASKS, tasks.BUILTIN_TASKS)):
    listed = reg.names()
    imported_before = sorted({t.split(":")[0] for t in table.values()} & set(sys.modules))
    got = {name: reg.get(name) for name in listed}
    out[key] = {"listed": listed, "imported_before": imported_before,
                "same": all(reg.get(n) is obj for n, obj in got.items())}
print(json.dumps(out))
'''


def _run_json(code: str) -> dict:
    import json
    import subprocess

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_builtin_tables_list_every_registered_model_and_task() -> None:
    eager, lazy = _run_json(_EAGER), _run_json(_LAZY)
    for key in ("models", "tasks"):
        e, lz = eager[key], lazy[key]
        # every name a module registers is declared, and every declaration got registered
        assert lz["listed"] == e["registered"], key
        assert e["never_registered"] == [], key
        # each table entry's module:attr is the object its decorator registered under that name
        assert e["resolved"] == {name: name for name in e["registered"]}, key
        # listing imported no built-in's module; get() found every name
        assert lz["imported_before"] == [], key
        assert lz["same"], key
