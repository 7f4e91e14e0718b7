"""A regular (non-editable) install works like the editable one: the data files ship.

Builds the wheel from a copy of the sources (so that the build leaves no ``build/`` or
``*.egg-info`` in the repository), installs it into a private directory, and runs MLLB from there
with the repository out of reach (another working directory, only the install on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# every top-level package of the repository but the tests ships (run_task.py imports them)
PACKAGES = tuple(sorted(p.parent.name for p in ROOT.glob("*/__init__.py")
                        if p.parent.name not in ("tests", "benchmarks")))
TOP_FILES = ("pyproject.toml", "README.md", "run_task.py")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def _package_files() -> list[str]:
    """Every file of the packages, as wheel paths (``tasks/synthetic/configs/smoke.yaml``)."""
    return sorted(
        str(path.relative_to(ROOT).as_posix())
        for package in PACKAGES
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build the wheel and ``pip install --target`` it; return the wheel and the site dir."""
    base = tmp_path_factory.mktemp("packaging")
    src = base / "src"
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package, ignore=SKIP)
    for name in TOP_FILES:
        shutil.copy2(ROOT / name, src / name)
    wheels = base / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    env = {**os.environ, "PIP_NO_INDEX": "1"}  # everything is local: never reach the network
    build = subprocess.run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation",
                            "-w", str(wheels)], cwd=base, env=env, capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-3000:]
    (wheel,) = wheels.glob("mllb-*.whl")
    site = base / "site"
    install = subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                             cwd=base, env=env, capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    return {"wheel": wheel, "site": site, "base": base}


def _run_installed(installed: dict[str, Path], code: str, cwd: Path) -> dict:
    """Run ``code`` with only the installed copy importable (cwd outside the repository)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(installed["site"])
    # -I would drop PYTHONPATH too; -s keeps user site-packages out, -P (3.11+) would drop cwd
    proc = subprocess.run([sys.executable, "-s", "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_file_of_the_packages_is_in_the_wheel(installed: dict[str, Path]) -> None:
    with zipfile.ZipFile(installed["wheel"]) as wheel:
        shipped = set(wheel.namelist())
    missing = [name for name in _package_files() if name not in shipped]
    assert not missing, f"not in the wheel (add them to [tool.setuptools.package-data]): {missing}"
    assert "run_task.py" in shipped and "mllb_core/registry.py" in shipped


def test_the_installed_copy_renders_the_leaderboard_and_finds_its_data(
        installed: dict[str, Path], tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(ROOT / "tests" / "fixtures" / "leaderboard", results)
    out = tmp_path / "LEADERBOARD.md"
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = f"""
import json, sys
from importlib import resources
import leaderboard, losses, mllb_core, models, tasks
from leaderboard.__main__ import main
status = main([{str(results)!r}, "-o", {str(out)!r}, "--skip-invalid"])
preset = losses.get_preset("apl_aapd")
config = resources.files("tasks").joinpath("synthetic/configs/smoke.yaml")
print(json.dumps({{
    "status": status,
    "files": {{m.__name__: m.__file__ for m in (leaderboard, losses, mllb_core, models, tasks)}},
    "preset": preset["loss"],
    "config": config.is_file() and "synthetic" in config.read_text(encoding="utf-8"),
    "tasks": tasks.TASKS.names(),
}}))
"""
    got = _run_installed(installed, code, cwd=work)
    site = str(installed["site"])
    assert all(path.startswith(site) for path in got["files"].values()), got["files"]
    assert got["status"] == 0
    text = out.read_text(encoding="utf-8")
    assert "### Published: aapd" in text  # leaderboard/references.yaml was found
    assert got["preset"] == "apl" and got["config"]
    assert "synthetic" in got["tasks"] and "coco" in got["tasks"]


def test_the_installed_run_task_answers_help(installed: dict[str, Path], tmp_path: Path) -> None:
    # the py-module run_task and every package it imports (engine/, mllb_core/, ...) are there
    code = """
import contextlib, io, json, runpy, sys
sys.argv = ["run_task.py", "--help"]
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    try:
        runpy.run_module("run_task", run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
import run_task
print(json.dumps({"code": code, "help": buf.getvalue(), "file": run_task.__file__}))
"""
    got = _run_installed(installed, code, cwd=tmp_path)
    assert got["code"] in (0, None) and "--epochs" in got["help"], got["help"][-2000:]
    assert got["file"].startswith(str(installed["site"])), got["file"]


def test_run_config_names_resolve_from_the_installed_copy(installed: dict[str, Path],
                                                          tmp_path: Path) -> None:
    # ``--config synthetic/smoke`` looks in the tasks package, wherever it is installed
    code = """
import json
from pathlib import Path
import mllb_core.runconfig as rc
resolve = getattr(rc, "_resolve_config_path", None) or getattr(rc, "resolve_config_path")
print(json.dumps({"path": str(Path(resolve("synthetic/smoke")).resolve())}))
"""
    got = _run_installed(installed, code, cwd=tmp_path)
    assert got["path"].startswith(str(installed["site"].resolve())), got
