"""The dependency rules of the layout, checked on what Python really imports.

``mllb_core`` is the bottom layer; ``losses``, ``models`` and ``tasks`` stand side by side on it
(tasks and models never import losses); the leaderboard renders results without the image stack.
Each check runs in a fresh interpreter, because this test process has imported everything.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("timm", "torchvision")


def _imported_after(code: str, *, cwd: Path = ROOT) -> set[str]:
    """Top-level package names in ``sys.modules`` after running ``code`` in a new interpreter."""
    probe = (f"{code}\nimport json, sys\n"
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_tasks_and_models_do_not_import_losses() -> None:
    loaded = _imported_after("import tasks, models")
    assert {"tasks", "models"} <= loaded
    assert "losses" not in loaded
    assert not loaded & set(HEAVY), "import tasks, models pulled in the image stack"


def test_building_the_synthetic_task_and_tiny_mlp_do_not_import_losses() -> None:
    loaded = _imported_after(
        "from tasks import create_task\n"
        "from models import create_model\n"
        "task = create_task('synthetic', num_train=16, num_dev=8, num_test=8)\n"
        "create_model('tiny_mlp', task.num_labels, **task.model_kwargs())"
    )
    assert "losses" not in loaded


def test_loss_creation_imports_neither_timm_nor_torchvision() -> None:
    loaded = _imported_after("import losses\nlosses.create_loss('asl')\nlosses.create_loss('apl')")
    assert "losses" in loaded
    assert not loaded & set(HEAVY)
    assert not loaded & {"tasks", "models", "leaderboard", "transformers"}


def test_leaderboard_cli_imports_neither_timm_nor_torchvision(tmp_path: Path) -> None:
    fixture = tmp_path / "results"
    shutil.copytree(ROOT / "tests" / "fixtures" / "leaderboard", fixture)
    out = tmp_path / "LB.md"
    # ``python -m leaderboard DIR -o OUT`` exactly, run through runpy to read sys.modules after
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['leaderboard', {str(fixture)!r}, '-o', {str(out)!r}, '--skip-invalid']\n"
        "try:\n"
        "    runpy.run_module('leaderboard', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code"
    )
    loaded = _imported_after(code)
    assert out.is_file() and "## synthetic" in out.read_text(encoding="utf-8")
    assert "leaderboard" in loaded
    assert not loaded & set(HEAVY)
    assert not loaded & {"losses", "models", "transformers"}


# ---------------------------------------------------------------------------------------------
# the same rules read from the source: catches an import inside a function the runs above miss


def _imports(path: Path) -> set[str]:
    """Top-level package of every import statement in ``path`` (function bodies included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            found.add(node.args[0].value.split(".")[0])  # type: ignore[attr-defined]
    return found


def _is_dynamic_import(node: ast.Call) -> bool:
    """``importlib.import_module("pkg...")`` or ``__import__("pkg...")`` with a literal name."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return (name in ("import_module", "__import__") and bool(node.args)
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


# package -> the MLLB packages it must never import (engine/ and run_task.py are the top layer)
TOP = {"engine", "run_task"}
FORBIDDEN = {
    "mllb_core": {"losses", "models", "tasks", "leaderboard"} | TOP,
    "tasks": {"losses", "models", "leaderboard"} | TOP,
    "models": {"losses", "tasks", "leaderboard"} | TOP,
    "losses": {"models", "tasks", "leaderboard"} | TOP,
    "leaderboard": {"losses", "models"} | TOP,
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_forbidden_import_in_the_source(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN[package])
        for path in _sources(package)
    }
    offenders = {path: names for path, names in offenders.items() if names}
    assert not offenders, f"{package} must not import {sorted(FORBIDDEN[package])}: {offenders}"


def test_the_source_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from losses import create_loss\n"
                      "    import importlib\n    importlib.import_module('leaderboard.render')\n")
    assert {"losses", "leaderboard", "importlib"} <= _imports(sample)
