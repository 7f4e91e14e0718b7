"""The README's "Add your own loss" and "Add your own model" examples pass the contract suites.

Each example is installed the way the README says: its ```python blocks (each starting with a
``# my_pkg/<file>.py`` comment) are written to a package directory, its ```toml block's entry
points become a (fake) installed distribution, and the registry loads the plugin from there.
The loss then runs through every check of ``tests/test_losses/test_loss_contract.py`` and the model
through those of ``tests/test_models/test_model_contract.py``; both are finally trained one step
together on the synthetic task, as ``run_task.py --model ... --loss ...`` would.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
# the contract suites live in tests/losses and tests/models (the tests mirror the packages)
for _suite in ("test_losses", "test_models"):
    if str(ROOT / "tests" / _suite) not in sys.path:
        sys.path.insert(0, str(ROOT / "tests" / _suite))

import test_loss_contract as loss_contract  # noqa: E402
import test_model_contract as model_contract  # noqa: E402

README = ROOT / "README.md"
LOSS_HEADING = "### Add your own loss"
MODEL_HEADING = "### Add your own model"
FENCE = re.compile(r"^```(\w*)\s*$")
HEADING = re.compile(r"^#{1,6} ")


def section_blocks(text: str, heading: str) -> list[tuple[str, str]]:
    """(language, code) of the fenced blocks between ``heading`` and the next heading.

    Lines inside fences are never headings (a ``# my_pkg/x.py`` comment is code).
    """
    blocks: list[tuple[str, str]] = []
    inside, found, lang, lines = False, False, "", []
    for line in text.splitlines():
        fence = FENCE.match(line)
        if inside:
            if fence and not fence.group(1):
                if found:
                    blocks.append((lang, "\n".join(lines) + "\n"))
                inside = False
            else:
                lines.append(line)
        elif fence:
            inside, lang, lines = True, fence.group(1), []
        elif HEADING.match(line):
            if found:
                break
            found = line.strip() == heading
    assert found, f"README.md has no section {heading!r}"
    return blocks


def install_example(heading: str, root: Path, group: str) -> dict[str, str]:
    """Write the section's python files under ``root``, declare its entry points; return them."""
    blocks = section_blocks(README.read_text(encoding="utf-8"), heading)
    python = [code for lang, code in blocks if lang == "python"]
    toml = [code for lang, code in blocks if lang == "toml"]
    assert python and len(toml) == 1, f"{heading}: expected python blocks and one toml block"
    for code in python:
        first = code.splitlines()[0]
        match = re.fullmatch(r"# ([\w/]+\.py)", first.strip())
        assert match, f"{heading}: a python block must start with '# my_pkg/<file>.py': {first!r}"
        path = root / match.group(1)
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            if str(parent) != ".":
                (root / parent / "__init__.py").touch()
        path.write_text(code, encoding="utf-8")
    entry_points = tomllib.loads(toml[0])["project"]["entry-points"][group]
    dist = root / "readme_example-0.1.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: readme-example\nVersion: 0.1\n")
    with (dist / "entry_points.txt").open("a", encoding="utf-8") as out:
        out.write(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    return entry_points


@pytest.fixture
def example_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for the example package; registries forget it afterwards."""
    from losses import LOSSES
    from models import MODELS

    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for registry in (LOSSES, MODELS):
        table = registry._plugin_table()
        for name in [n for n, ep in table.items() if ep.value.startswith("my_pkg.")]:
            registry._items.pop(name, None)
        registry.refresh_plugins()
    for module in [m for m in sys.modules if m == "my_pkg" or m.startswith("my_pkg.")]:
        del sys.modules[module]
    importlib.invalidate_caches()


def _install(heading: str, root: Path, group: str) -> dict[str, str]:
    from losses import LOSSES
    from models import MODELS

    entry_points = install_example(heading, root, group)
    importlib.invalidate_caches()
    LOSSES.refresh_plugins()
    MODELS.refresh_plugins()
    return entry_points


# ---------------------------------------------------------------------------------------------
# the loss contract suite, applied to one name


def contract_calls(module: Any, name: str) -> Iterator[tuple[Callable[..., Any], dict]]:
    """Every ``test_*`` of ``module`` that takes ``name``, with each of its other parameter sets.

    Read from the functions' ``parametrize`` marks, so a check added to the contract suite is
    applied to the README's example too.
    """
    for attr, fn in sorted(vars(module).items()):
        if not (attr.startswith("test_") and callable(fn)):
            continue
        if "name" not in inspect.signature(fn).parameters:
            continue
        grid: list[dict[str, Any]] = [{}]
        for mark in getattr(fn, "pytestmark", []):
            if mark.name != "parametrize":
                continue
            argnames, values = mark.args[0], mark.args[1]
            keys = ([a.strip() for a in argnames.split(",")] if isinstance(argnames, str)
                    else list(argnames))
            if keys == ["name"]:
                continue
            rows = [getattr(v, "values", v) for v in values]
            rows = [r if len(keys) > 1 else (r,) for r in rows]
            grid = [{**g, **dict(zip(keys, r, strict=True))} for g in grid for r in rows]
        for params in grid:
            yield fn, {"name": name, **params}


def test_add_your_own_loss_passes_the_loss_contract(example_env: Path) -> None:
    from losses import create_loss, list_losses

    entry_points = _install(LOSS_HEADING, example_env, "mllb.losses")
    assert list(entry_points) == ["squared_hinge"]
    assert "squared_hinge" in list_losses() and "my_pkg.losses" not in sys.modules
    loss = create_loss("squared_hinge", margin=0.5)  # as the README promises
    assert loss.hparams == {"margin": 0.5, "reduction": "mean"}
    with pytest.raises(ValueError, match="loss 'squared_hinge': margin must be > 0, got -1"):
        create_loss("squared_hinge", margin=-1)
    # an independent value: squared hinge of (z, y) = ((1, 1), (-2, 0), (0.5, 0)) at margin 1
    z, y = torch.tensor([[1.0, -2.0, 0.5]]), torch.tensor([[1.0, 0.0, 0.0]])
    expected = (0.0 + 0.0 + 1.5**2) / 3
    torch.testing.assert_close(create_loss("squared_hinge")(z, y), torch.tensor(expected))
    ran = []
    for check, kwargs in contract_calls(loss_contract, "squared_hinge"):
        if check is loss_contract.test_mean_invariant_to_duplicating_the_batch \
                and not loss.decomposable:
            continue
        check(**kwargs)
        ran.append(check.__name__)
    assert {"test_reductions", "test_bad_inputs_get_clear_errors",
            "test_finite_scalar_and_gradient"} <= set(ran)


def test_add_your_own_model_passes_the_model_contract(example_env: Path) -> None:
    from models import MODELS, create_model

    entry_points = _install(MODEL_HEADING, example_env, "mllb.models")
    tiny = [name for name in entry_points if name.startswith("tiny_")]
    assert tiny, "the example must register a tiny_* variant for the contract suite"
    assert set(tiny) <= set(MODELS.names("tiny_*"))  # the suite's own parametrization sees it
    for name in tiny:
        assert model_contract.run_all_checks(MODELS.get(name)) == ["linear", "cosine"]
    full = [name for name in entry_points if not name.startswith("tiny_")]
    for name in full:
        model = create_model(name, 80, in_features=64)  # as the README promises
        assert model_contract.input_signature(model) in model_contract.INPUTS


def test_both_examples_train_a_step_on_the_synthetic_task(example_env: Path) -> None:
    from losses import create_loss
    from models import HEAD_FOR_INPUT_KIND, create_model
    from tasks import create_task

    _install(LOSS_HEADING, example_env, "mllb.losses")
    models = _install(MODEL_HEADING, example_env, "mllb.models")
    name = next(n for n in models if n.startswith("tiny_"))
    task = create_task("synthetic", num_labels=12, num_features=8, num_train=32, num_dev=16,
                       num_test=16)
    loss = create_loss("squared_hinge")
    torch.manual_seed(0)
    model = create_model(name, task.num_labels, **task.model_kwargs(),
                         head=HEAD_FOR_INPUT_KIND[loss.input_kind])
    data = task.dataset("train")
    batch = task.collate([data[i] for i in range(16)])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    logits, targets = task.logits_and_targets(model, batch)
    before = loss(logits, targets)
    before.backward()
    optimizer.step()
    after = loss(*task.logits_and_targets(model, batch))
    assert logits.shape == targets.shape == (16, 12)
    assert torch.isfinite(before) and after < before


def test_section_parser_skips_comments_inside_fences() -> None:
    text = ("### A\n\n```python\n# my_pkg/a.py\nx = 1\n```\n\n```toml\n[t]\n```\n"
            "### B\n```python\ny = 2\n```\n")
    assert section_blocks(text, "### A") == [("python", "# my_pkg/a.py\nx = 1\n"),
                                             ("toml", "[t]\n")]
    assert section_blocks(text, "### B") == [("python", "y = 2\n")]
    with pytest.raises(AssertionError, match="no section"):
        section_blocks(text, "### C")
