"""Suites: named lists of (task, model, config) cells, like lm-evaluation-harness task groups.

A suite is a YAML file ``tasks/suites/<name>.yaml`` (or any path)::

    description: one line
    cells:
      - name: coco128-mldecoder                       # unique, [a-z0-9_.-]
        config: image_classification/coco128_cpu       # a --config spec
        options: {model: effnet_lite0_mldecoder}       # optional: more --OPTION VALUE pairs

``run_task.py --suite NAME [options]`` runs, for every cell, the sweep of
``--config <config> <options...> <the command line's options>``: the command line comes last,
so ``--suite cpu-small --loss my_loss --seed 0,1,2`` judges ``my_loss`` on every cell and
``--loss`` left out keeps each config's own losses (with their presets). Run identity decides
what is already done, exactly as for a single config.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mllb_core.runconfig import TASKS_DIR, ConfigError, RunConfig, parse_config

SUITES_DIR = TASKS_DIR / "suites"
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
# options a suite cell may not set: they belong to the whole invocation
_INVOCATION_ONLY = ("suite", "output_dir", "print_commands", "resume", "launcher")


@dataclass(frozen=True)
class SuiteCell:
    """One (task, model, config) cell of a suite: its config spec and extra options."""

    name: str
    config: str
    options: dict[str, Any] = field(default_factory=dict)

    def argv(self) -> list[str]:
        """The cell's own ``--config``/``--OPTION VALUE`` arguments (before the command line)."""
        out = ["--config", self.config]
        for key, value in self.options.items():
            # JSON is YAML: the option parser reads the value back as the same number or list
            out += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
        return out


def suite_names() -> list[str]:
    """The suites shipped under ``tasks/suites/``."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def suite_path(spec: str) -> Path:
    """``tasks/suites/<spec>.yaml`` for a shipped suite name, else ``spec`` as a file path."""
    shipped = SUITES_DIR / f"{spec}.yaml"
    if shipped.is_file():
        return shipped
    path = Path(spec)
    if path.is_file():
        return path
    raise ConfigError(f"--suite {spec!r}: no such suite (shipped: {', '.join(suite_names())}; "
                      f"or a path to a suite YAML file)", "suite")


def load_suite(spec: str) -> list[SuiteCell]:
    """The cells of a suite; ONE ConfigError naming the file and the faulty cell or field."""
    path = suite_path(spec)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}", "suite") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cells"), list) or not doc["cells"]:
        raise ConfigError(f"{path}: a suite is a mapping with a non-empty list 'cells' of "
                          f"{{name, config, options}} entries", "suite")
    cells, seen = [], set()
    for i, raw in enumerate(doc["cells"]):
        where = f"{path}: cells[{i}]"
        if not isinstance(raw, dict) or set(raw) - {"name", "config", "options"}:
            raise ConfigError(f"{where}: expected a mapping with keys name, config and optional "
                              f"options, got {raw!r}", "suite")
        name, config, options = raw.get("name"), raw.get("config"), raw.get("options") or {}
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(f"{where}: 'name' must match [a-z0-9][a-z0-9_.-]*, got {name!r}",
                              "suite")
        if name in seen:
            raise ConfigError(f"{where}: the name {name!r} is used twice", "suite")
        if not isinstance(config, str) or not config:
            raise ConfigError(f"{where} ({name}): 'config' must be a --config spec such as "
                              f"docred/mrn_cpu, got {config!r}", "suite")
        if not isinstance(options, dict) or any(k in _INVOCATION_ONLY for k in options):
            raise ConfigError(f"{where} ({name}): 'options' must be a mapping of run options "
                              f"other than {', '.join(_INVOCATION_ONLY)}", "suite")
        seen.add(name)
        cells.append(SuiteCell(name, config, dict(options)))
    return cells


def without_suite(argv: list[str]) -> tuple[str | None, list[str]]:
    """(the ``--suite`` value or None, ``argv`` without it)."""
    out, spec, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--suite":
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ConfigError("--suite needs a value (a suite name or file)", "suite")
            spec, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--suite="):
            spec = arg.split("=", 1)[1]
        else:
            out.append(arg)
        i += 1
    return spec, out


def parse_sweeps(argv: list[str]) -> list[tuple[str, list[str], RunConfig]]:
    """The sweeps of a command line: ``[(cell name, argv, config)]``.

    Without ``--suite``: one sweep, ``("", argv, parse_config(argv))``. With it: one per suite
    cell, its argv being the cell's arguments followed by the command line's (the command
    line wins). A cell whose options fail names the suite cell.
    """
    spec, rest = without_suite(argv)
    if spec is None:
        return [("", argv, parse_config(argv))]
    sweeps = []
    for cell in load_suite(spec):
        cell_argv = [*cell.argv(), *rest]
        try:
            sweeps.append((cell.name, cell_argv, parse_config(cell_argv)))
        except ConfigError as exc:
            raise ConfigError(f"suite {spec!r}, cell {cell.name!r}: {exc}", exc.option) from None
    return sweeps


def check_one_launch(sweeps: list[tuple[str, list[str], RunConfig]]) -> None:
    """Refuse to run sweeps in ONE process when they need different launch-wide settings.

    The Accelerator (precision, gradient accumulation, trackers) is created once per launch;
    such a suite runs one launch per cell instead (``--print_commands`` or ``--launcher``).
    """
    first_name, _, first = sweeps[0]
    for name, _, cfg in sweeps[1:]:
        for key in ("mixed_precision", "grad_accum", "report_to", "output_dir"):
            if getattr(cfg, key) != getattr(first, key):
                raise ConfigError(
                    f"suite cell {name!r} sets --{key} {getattr(cfg, key)!r} but cell "
                    f"{first_name!r} {getattr(first, key)!r}: one launch shares one value; run "
                    f"one launch per cell (--print_commands, or --launcher local|submitit)", key)
