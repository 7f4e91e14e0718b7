"""Run configuration: dataclass defaults < YAML preset file(s) < command-line overrides.

``--key value`` or ``--key=value`` sets a field; ``--task.x v``, ``--model.x v`` and ``--loss.x v``
set keyword arguments of the task, the model and the loss (values parsed as YAML: ``2`` is an int,
``0.5`` a float, ``[1, 2]`` a list). ``--config FILE`` (repeatable, applied in order before the
other flags) reads a YAML mapping of the same keys; ``FILE`` may also be ``<task>/<name>``, meaning
``tasks/<task>/configs/<name>.yaml``. ``loss`` and ``seed`` accept comma lists: the run is then a
sweep over every (loss, seed) cell. A loss may name a preset as ``name@preset`` (``asl@asl_coco``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import itertools
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mllb_core.errors import UserError

# found without importing the tasks package (this layer imports nothing above it)
_SPEC = importlib.util.find_spec("tasks")
TASKS_DIR = Path(next(iter(_SPEC.submodule_search_locations))) if _SPEC else Path("tasks")


class ConfigError(UserError, ValueError):
    """A configuration mistake, with a message that names the key and the valid choices."""


@dataclass
class RunConfig:
    """Every option of ``run_task.py`` (defaults: the embedded synthetic benchmark)."""

    task: str = "synthetic"
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    data_dir: str = ""  # shortcut for --task.data_dir (e.g. an AAPD-format directory)
    model: str = ""  # empty: the task's default model
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # comma list -> sweep; name@preset selects a preset (default: the papers' MS-COCO settings,
    # the synthetic task being COCO-like: 80 labels, about 3 positives per example)
    loss: str = "bce,asl@asl_coco,apl@apl_coco,aam@aam_coco"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: str = "0"  # comma list -> sweep
    epochs: int = 30
    batch_size: int = 128  # global batch per optimizer step before accumulation
    eval_batch_size: int = 512
    grad_accum: int = 1
    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = 2e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    scheduler: str = "onecycle"  # onecycle | cosine | linear_warmup | constant
    warmup_ratio: float = 0.1
    grad_clip: float = 0.0  # max gradient norm; 0 disables
    ema_decay: float = 0.0  # 0 disables; else raw and EMA weights both compete on dev
    early_stopping_patience: int = 0  # epochs without dev improvement; 0 disables
    mixed_precision: str = "no"  # no | bf16 | fp16; the loss is always computed in float32
    num_workers: int = 0
    output_dir: str = "runs"
    resume: bool = False
    save_scores: bool = False  # also write test probabilities and targets (.npz, float32)
    report_to: str = ""  # comma list of accelerate trackers: tensorboard, wandb, ...
    print_commands: bool = False  # print one `accelerate launch` command per cell and exit
    # after the sweep, rebuild this markdown leaderboard from every results file under
    # output_dir (figures in a "figures" directory beside it); empty: do not
    leaderboard: str = ""
    stop_after_epoch: int = 0  # testing/preemption aid: stop after this epoch's checkpoint
    config: list[str] = field(default_factory=list)

    def cells(self) -> list[RunConfig]:
        """One config per (loss, seed) cell of a sweep."""
        losses = [x.strip() for x in self.loss.split(",") if x.strip()]
        seeds = [x.strip() for x in self.seed.split(",") if x.strip()]
        for s in seeds:
            if not s.lstrip("-").isdigit():
                raise ConfigError(f"--seed expects integers (comma-separated), got {s!r}")
        if not losses:
            raise ConfigError("--loss is empty")
        return [dataclasses.replace(self, loss=lo, seed=s) for s, lo in
                itertools.product(seeds, losses)]

    @property
    def loss_name(self) -> str:
        """The loss name of a single cell (without ``@preset``)."""
        return self.loss.split("@")[0]

    @property
    def loss_preset(self) -> str | None:
        """The preset of a single cell, if any."""
        return self.loss.split("@")[1] if "@" in self.loss else None

    def cell_label(self) -> str:
        """File-name label of a cell: loss (or preset), plus a hash of explicit loss kwargs."""
        label = self.loss_preset or self.loss_name
        if self.loss_kwargs:
            digest = hashlib.sha256(json.dumps(self.loss_kwargs, sort_keys=True).encode())
            label += "-" + digest.hexdigest()[:8]
        return f"{label}__seed{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable resolved config."""
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
_KWARG_GROUPS = {"task": "task_kwargs", "model": "model_kwargs", "loss": "loss_kwargs"}
_HINTS = typing.get_type_hints(RunConfig)


def _convert(key: str, raw: Any) -> Any:
    """Convert a command-line string (or YAML value) to the field's type, or fail clearly."""
    hint = _HINTS[key]
    origin = typing.get_origin(hint)
    if origin is dict:
        if not isinstance(raw, dict):
            raise ConfigError(f"{key} expects a mapping, got {raw!r}")
        return dict(raw)
    if origin is list:
        return list(raw) if isinstance(raw, list) else [raw]
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "true", "yes", "on"):
            return True
        if str(raw).lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--{key} expects a boolean (true/false), got {raw!r}")
    target = hint if not isinstance(hint, types.UnionType) else str
    if target is str and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return str(raw)
    try:
        value = target(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"--{key} expects {target.__name__}, got {raw!r}") from None
    if target is int and isinstance(raw, float) and raw != value:
        raise ConfigError(f"--{key} expects int, got {raw!r}")
    return value


def _unknown(key: str) -> ConfigError:
    valid = sorted(k for k in _FIELDS if not k.endswith("_kwargs"))
    return ConfigError(f"unknown option {key!r}; valid options: {valid}, plus --task.<arg>, "
                       f"--model.<arg>, --loss.<arg> for the task, model and loss arguments")


def _set(cfg: dict[str, Any], key: str, value: Any) -> None:
    if "." in key:
        group, _, sub = key.partition(".")
        if group not in _KWARG_GROUPS or not sub:
            raise _unknown(key)
        cfg[_KWARG_GROUPS[group]][sub] = yaml.safe_load(value) if isinstance(value, str) else value
        return
    if key not in _FIELDS:
        raise _unknown(key)
    if key.endswith("_kwargs"):
        cfg[key].update(_convert(key, value))
    else:
        cfg[key] = _convert(key, value)


def _resolve_config_path(spec: str) -> Path:
    path = Path(spec)
    if path.is_file():
        return path
    task, _, name = spec.partition("/")
    preset = TASKS_DIR / task / "configs" / f"{name}.yaml"
    if name and preset.is_file():
        return preset
    raise ConfigError(f"config file {spec!r} not found (neither a path nor tasks/{task}/configs/"
                      f"{name or '<name>'}.yaml)")


def _split_argv(argv: list[str]) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"unexpected argument {arg!r}; options look like --key value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            is_flag = key in _FIELDS and _HINTS[key] is bool
            if nxt is None or (nxt.startswith("--") and is_flag):
                if not is_flag:
                    raise ConfigError(f"--{key} needs a value")
                value = "true"
            else:
                value, i = nxt, i + 1
        pairs.append((key.replace("-", "_") if "." not in key else key, value))
        i += 1
    return pairs


def parse_config(argv: list[str]) -> RunConfig:
    """Build the resolved config from ``argv`` (see the module docstring)."""
    cfg = RunConfig().to_dict()
    pairs = _split_argv(argv)
    for key, value in pairs:
        if key == "config":
            path = _resolve_config_path(value)
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: expected a YAML mapping of options")
            for k, v in data.items():
                try:
                    _set(cfg, k, v)
                except ConfigError as exc:
                    raise ConfigError(f"{path}: {exc}") from None
            cfg["config"].append(str(path))
    for key, value in pairs:
        if key != "config":
            _set(cfg, key, value)
    return RunConfig(**cfg)


def cell_argv(argv: list[str], cell: RunConfig) -> list[str]:
    """``argv`` with the sweep options replaced by one cell's loss and seed."""
    out: list[str] = []
    pairs = _split_argv(argv)
    for key, value in pairs:
        if key not in ("loss", "seed", "print_commands"):
            out += [f"--{key}", str(value)]
    return [*out, "--loss", cell.loss, "--seed", cell.seed]
