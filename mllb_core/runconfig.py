"""Run configuration: dataclass defaults < YAML preset file(s) < command-line overrides.

``--key value`` or ``--key=value`` sets a field; ``--task.x v``, ``--model.x v`` and ``--loss.x v``
set keyword arguments of the task, the model and the loss (values parsed as YAML: ``2`` is an int,
``0.5`` a float, ``[1, 2]`` a list). ``--config FILE`` (repeatable, applied in order before the
other flags) reads a YAML mapping of the same keys; ``FILE`` may also be ``<task>/<name>``, meaning
``tasks/<task>/configs/<name>.yaml``. ``loss`` and ``seed`` accept comma lists: the run is then a
sweep over every (loss, seed) cell. A loss may name a preset as ``name@preset`` (``asl@asl_coco``).

Every option is documented once, in its field's ``metadata["help"]``; ``help_text()`` renders
``--help`` from the dataclass. ``parse_config`` checks types and ranges (``RunConfig.validate``)
and raises ONE ``ConfigError`` naming the option, and for a YAML file the file and line; names
that need a registry (tasks, models, losses, presets) are the engine's to check, for every cell
before the first trains.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.util
import itertools
import json
import math
import re
import textwrap
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mllb_core.errors import UserError

# found without importing the tasks package (this layer imports nothing above it)
_SPEC = importlib.util.find_spec("tasks")
TASKS_DIR = Path(next(iter(_SPEC.submodule_search_locations))) if _SPEC else Path("tasks")

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("onecycle", "cosine", "linear_warmup", "constant", "step")
MIXED_PRECISION = ("no", "bf16", "fp16")
COMPILE_MODES = ("none", "loss", "model", "all")
LAUNCHERS = ("none", "local", "submitit")
# options of a launching process (--launcher and its job options), never part of a cell's command
LAUNCH_ONLY = ("launcher", "slurm_partition", "slurm_time", "gpus_per_job", "array_parallelism",
               "submitit_dir")
_MAX_SEED = 2**32  # numpy's seed range, which accelerate's set_seed also seeds


class ConfigError(UserError, ValueError):
    """A configuration mistake, with a message that names the option and the valid choices.

    ``option`` is the field at fault when one is (``None`` for e.g. a YAML syntax error).
    """

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class HelpRequested(Exception):  # noqa: N818 - not an error: the engine prints .text, exits 0
    """``--help`` / ``-h`` was given; ``text`` is the rendered help (see ``help_text``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass(frozen=True)
class Bounds:
    """A numeric range, e.g. ``Bounds(0, 1)`` is [0, 1) and ``Bounds(0, lo_open=True)`` is > 0."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = True

    def __contains__(self, value: float) -> bool:
        """Whether ``value`` lies in the range (NaN never does)."""
        if self.lo is not None and not (value > self.lo if self.lo_open else value >= self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def __str__(self) -> str:
        """``>= 1``, ``> 0`` or ``in [0, 1)``."""
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo}"
        return (f"in {'(' if self.lo_open else '['}{self.lo}, {self.hi}"
                f"{')' if self.hi_open else ']'}")


_GROUPS = {"run": "what to run", "train": "training", "output": "output and resuming",
           "launch": "jobs (--launcher local|submitit; optional extra mllb[slurm])",
           "debug": "debugging"}


def _doc(group: str, doc: str, *, bounds: Bounds | None = None,
         choices: tuple[str, ...] | None = None, comma_list: bool = False,
         error_hint: str = "") -> dict[str, Any]:
    """A RunConfig field's metadata: its one line of help (the one source of ``--help``), its
    ``--help`` group, and what ``validate`` checks: range, choices; ``comma_list``: a YAML list is
    joined with commas; ``error_hint``: appended to a type error."""
    return {"help": doc, "group": group, "bounds": bounds, "choices": choices,
            "comma_list": comma_list, "error_hint": error_hint}


@dataclass
class RunConfig:
    """Every option of ``run_task.py`` (defaults: the embedded synthetic benchmark)."""

    task: str = field(default="synthetic", metadata=_doc(
        "run", "task plugin to run (a directory under tasks/)"))
    task_kwargs: dict[str, Any] = field(default_factory=dict, metadata=_doc(
        "run", "keyword arguments of the task; usually one at a time: --task.<arg> VALUE"))
    data_dir: str = field(default="", metadata=_doc(
        "run", "shortcut for --task.data_dir: the directory of the task's data files; empty: the "
        "task's default location"))
    model: str = field(default="", metadata=_doc(
        "run", "model plugin; empty: the task's default model"))
    model_kwargs: dict[str, Any] = field(default_factory=dict, metadata=_doc(
        "run", "keyword arguments of the model; usually one at a time: --model.<arg> VALUE"))
    # default: the papers' MS-COCO settings, the synthetic task being COCO-like (80 labels,
    # about 3 positives per example)
    loss: str = field(default="bce,asl@asl_coco,apl@apl_coco,aam@aam_coco", metadata=_doc(
        "run", "loss, or loss@preset for a preset's hyper-parameters; a comma list (or a YAML "
        "list) makes a sweep over every loss x seed", comma_list=True))
    loss_kwargs: dict[str, Any] = field(default_factory=dict, metadata=_doc(
        "run", "keyword arguments of the loss, over the preset's; usually --loss.<arg> VALUE"))
    seed: str = field(default="0", metadata=_doc(
        "run", "random seed in [0, 2**32); a comma list (or a YAML list) makes a sweep over "
        "every loss x seed", comma_list=True))
    epochs: int = field(default=30, metadata=_doc(
        "train", "passes over the training split", bounds=Bounds(1)))
    batch_size: int = field(default=128, metadata=_doc(
        "train", "global training batch per step, summed over processes and before gradient "
        "accumulation", bounds=Bounds(1)))
    eval_batch_size: int = field(default=512, metadata=_doc(
        "train", "batch size of dev and test evaluation", bounds=Bounds(1)))
    grad_accum: int = field(default=1, metadata=_doc(
        "train", "batches whose gradients add up to one optimizer step", bounds=Bounds(1)))
    optimizer: str = field(default="adamw", metadata=_doc(
        "train", "optimizer", choices=OPTIMIZERS))
    lr: float = field(default=2e-3, metadata=_doc(
        "train", "peak learning rate", bounds=Bounds(0, lo_open=True)))
    weight_decay: float = field(default=1e-4, metadata=_doc(
        "train", "weight decay (decoupled for adamw)", bounds=Bounds(0)))
    momentum: float = field(default=0.9, metadata=_doc(
        "train", "momentum (sgd only)", bounds=Bounds(0, 1)))
    scheduler: str = field(default="onecycle", metadata=_doc(
        "train", "learning-rate schedule over all optimizer steps", choices=SCHEDULERS))
    warmup_ratio: float = field(default=0.1, metadata=_doc(
        "train", "fraction of the optimizer steps spent warming up", bounds=Bounds(0, 1)))
    step_size: int = field(default=10, metadata=_doc(
        "train", "scheduler 'step': epochs between two learning-rate decays (torch StepLR)",
        bounds=Bounds(1)))
    step_gamma: float = field(default=0.1, metadata=_doc(
        "train", "scheduler 'step': factor of each decay", bounds=Bounds(0, 1, lo_open=True)))
    adam_eps: float = field(default=1e-8, metadata=_doc(
        "train", "epsilon of adam / adamw (ATLOP uses 1e-6)", bounds=Bounds(0, lo_open=True)))
    adam_beta2: float = field(default=0.999, metadata=_doc(
        "train", "second-moment decay of adam / adamw (LSAN's released code uses 0.99)",
        bounds=Bounds(0, 1)))
    fused_optimizer: bool = field(default=False, metadata=_doc(
        "train", "torch's fused optimizer kernels (adamw, adam): optimizer steps about 3x "
        "faster on a CPU, but not the default's bits, so it is part of the run identity"))
    grad_clip: float = field(default=0.0, metadata=_doc(
        "train", "max gradient norm; 0 disables clipping", bounds=Bounds(0)))
    ema_decay: float = field(default=0.0, metadata=_doc(
        "train", "decay of an EMA of the weights; 0 disables; else raw and EMA weights both "
        "compete on dev", bounds=Bounds(0, 1)))
    early_stopping_patience: int = field(default=0, metadata=_doc(
        "train", "stop after this many epochs without dev improvement; 0 disables",
        bounds=Bounds(0)))
    mixed_precision: str = field(default="no", metadata=_doc(
        "train", "autocast precision; the loss is always computed in float32",
        choices=MIXED_PRECISION))
    compile: str = field(default="none", metadata=_doc(
        "train", "torch.compile the loss's functional core, the model (nn.Module.compile, "
        "state_dict keys unchanged), both, or nothing; recorded in the run identity "
        "(train.compile) when not none: compiled numbers are not pooled with eager ones",
        choices=COMPILE_MODES))
    channels_last: str = field(default="auto", metadata=_doc(
        "train", "channels-last memory format for the model's 4-D (convolution) weights, which "
        "the convolutions then propagate to their outputs: auto = on CUDA only (faster "
        "mixed-precision convolutions), yes, no; it changes results by rounding only and is not "
        "part of the run identity", choices=("auto", "yes", "no")))
    num_workers: int = field(default=0, metadata=_doc(
        "train", "DataLoader worker processes; 0 loads in the main process", bounds=Bounds(0)))
    output_dir: str = field(default="runs", metadata=_doc(
        "output", "directory of results (<output_dir>/<task>/) and checkpoints"))
    resume: bool = field(default=False, metadata=_doc(
        "output", "continue an interrupted cell from its newest complete checkpoint (refused if "
        "the checkpoint belongs to another run)"))
    keep_checkpoints: bool = field(default=False, metadata=_doc(
        "output", "keep a finished cell's checkpoints; by default they are deleted once its "
        "results are written"))
    overwrite: bool = field(default=False, metadata=_doc(
        "output", "replace a results file that holds another run (another run_id) under the "
        "same name instead of stopping"))
    save_scores: bool = field(default=True, metadata=_doc(
        "output", "also write <results>.scores.npz: the test probabilities and targets "
        "(float32), or the per-example counts of the primary metric where the task provides "
        "them (DocRED, NER); the leaderboard's paired bootstrap resamples them"))
    report_to: str = field(default="", metadata=_doc(
        "output", "comma list of accelerate trackers (tensorboard, wandb, ...); empty: none",
        comma_list=True))
    print_commands: bool = field(default=False, metadata=_doc(
        "output", "print one `accelerate launch` command per cell and exit"))
    leaderboard: bool = field(default=False, metadata=_doc(
        "output", "after the sweep, refresh <output_dir>/LEADERBOARD.md (figures beside it) from "
        "every results file under output_dir",
        error_hint="; --leaderboard is a switch now: it writes <output_dir>/LEADERBOARD.md"))
    launcher: str = field(default="none", metadata=_doc(
        "launch", "run the cells not done yet as jobs instead of in this process: submitit = "
        "one SLURM job array (each job an `accelerate launch` of one cell), local = the same "
        "through submitit's local executor on this machine", choices=LAUNCHERS))
    slurm_partition: str = field(default="", metadata=_doc(
        "launch", "SLURM partition of the jobs; empty: the cluster's default"))
    slurm_time: int = field(default=240, metadata=_doc(
        "launch", "time limit per job in minutes (also the local executor's)", bounds=Bounds(1)))
    gpus_per_job: int = field(default=1, metadata=_doc(
        "launch", "GPUs (= processes of its `accelerate launch`) per job; 0 or 1: one process",
        bounds=Bounds(0)))
    array_parallelism: int = field(default=32, metadata=_doc(
        "launch", "most jobs of the array running at once (SLURM)", bounds=Bounds(1)))
    submitit_dir: str = field(default="", metadata=_doc(
        "launch", "directory of submitit's job scripts and logs; empty: <output_dir>/submitit"))
    debug: bool = field(default=False, metadata=_doc(
        "debug", "show the traceback of a user error (bad option, malformed data) instead of "
        "one message"))
    stop_after_epoch: int = field(default=0, metadata=_doc(
        "debug", "stop after this epoch's checkpoint (testing a resume); 0 disables",
        bounds=Bounds(0)))
    suite: str = field(default="", metadata=_doc(
        "run", "run every cell of a suite (tasks/suites/<name>.yaml, or a path): each cell's "
        "--config and options, then this command line's; e.g. --suite cpu-small --loss my_loss"))
    config: list[str] = field(default_factory=list, metadata=_doc(
        "run", "YAML file of options, or <task>/<name> for tasks/<task>/configs/<name>.yaml; "
        "repeatable, applied in order before the command-line options"))

    def validate(self) -> None:
        """Check every field's type, range and choices; raise ONE ConfigError naming the option.

        Registry names (task, model, losses, presets) are left to the engine.
        """
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name))
        for f in dataclasses.fields(self):
            value, bounds = getattr(self, f.name), f.metadata["bounds"]
            choices = f.metadata["choices"]
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"--{f.name} must be a finite number, got {value}", f.name)
            if bounds is not None and value not in bounds:
                raise ConfigError(f"--{f.name} must be {bounds}, got {value}", f.name)
            if choices is not None and value not in choices:
                raise ConfigError(f"--{f.name} must be one of {list(choices)}, got {value!r}",
                                  f.name)
        if not self.output_dir.strip():
            raise ConfigError("--output_dir must not be empty", "output_dir")
        if self.fused_optimizer and self.optimizer == "sgd":
            # torch's fused SGD raises when a parameter gets its first gradient after another
            # one's first step (a frozen embedding released later, as MRN's recipe does)
            raise ConfigError("--fused_optimizer works with adamw and adam, not sgd (torch's "
                              "fused SGD fails on parameters that start receiving gradients "
                              "later)", "fused_optimizer")
        self._losses()
        self._seeds()

    def _losses(self) -> list[str]:
        """The sweep's losses, checked for form (``name`` or ``name@preset``) and repeats."""
        losses = [x.strip() for x in self.loss.split(",") if x.strip()]
        if not losses:
            raise ConfigError("--loss is empty", "loss")
        for lo in losses:
            name, at, preset = lo.partition("@")
            if not name or (at and (not preset or "@" in preset)):
                raise ConfigError(f"--loss expects name or name@preset, got {lo!r}", "loss")
        _no_repeats("loss", losses)
        return losses

    def _seeds(self) -> list[str]:
        """The sweep's seeds as canonical decimal strings, checked for form, range and repeats."""
        seeds = []
        for s in (x.strip() for x in self.seed.split(",") if x.strip()):
            if not re.fullmatch(r"[+-]?\d+", s):
                raise ConfigError(f"--seed expects integers (comma-separated), got {s!r}", "seed")
            if not 0 <= int(s) < _MAX_SEED:
                raise ConfigError(f"--seed must be in [0, 2**32), got {s}", "seed")
            seeds.append(str(int(s)))  # "01" and "1" are the same run and the same file name
        if not seeds:
            raise ConfigError("--seed is empty", "seed")
        _no_repeats("seed", seeds)
        return seeds

    def cells(self) -> list[RunConfig]:
        """One config per (loss, seed) cell of a sweep, seeds outermost."""
        losses, seeds = self._losses(), self._seeds()
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


def _no_repeats(key: str, items: list[str]) -> None:
    """Refuse a sweep list naming an item twice (two cells, one file name)."""
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise ConfigError(f"--{key} lists {item!r} twice", key)
        seen.add(item)


def _kind(key: str) -> str:
    """The option's value type as shown by ``--help`` and in type errors."""
    hint = _HINTS[key]
    origin = typing.get_origin(hint)
    if origin is dict:
        return "mapping"
    if origin is list:
        return "list"
    return hint.__name__


def _check_type(key: str, value: Any) -> None:
    """Refuse a value of the wrong type (a bool is not an int; an int is a valid float)."""
    kind = _kind(key)
    ok = {"mapping": isinstance(value, dict),
          "list": isinstance(value, list) and all(isinstance(v, str) for v in value),
          "bool": isinstance(value, bool),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool),
          "str": isinstance(value, str)}[kind]
    if not ok:
        raise ConfigError(f"--{key} expects {kind}, got {value!r}", key)


def _yaml_value(key: str, text: str) -> Any:
    """A command-line value parsed as YAML (``--task.x``), or a ConfigError naming the option."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"--{key}: cannot parse {text!r} as YAML: {problem}", key) from None


def _convert(key: str, raw: Any, cli: bool) -> Any:
    """A command-line string (``cli``) or YAML value as the field's type, or a ConfigError."""
    kind = _kind(key)
    meta = _FIELDS[key].metadata
    if kind == "mapping":
        value = _yaml_value(key, raw) if cli and isinstance(raw, str) else raw
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"--{key} expects a mapping of names to values, got {raw!r}", key)
        return dict(value)
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, (str, int)) and str(raw).lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(raw, (str, int)) and str(raw).lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--{key} expects a boolean (true/false), got {raw!r}"
                          f"{meta['error_hint']}", key)
    if isinstance(raw, bool):  # YAML's true is an int in Python: epochs: true is not 1 epoch
        raise ConfigError(f"--{key} expects {kind}, got {raw!r}", key)
    if kind == "str":
        if meta["comma_list"] and isinstance(raw, list) and all(
                isinstance(v, (str, int)) and not isinstance(v, bool) for v in raw):
            return ",".join(str(v) for v in raw)
        if isinstance(raw, (int, float)):
            return str(raw)
        if not isinstance(raw, str):
            raise ConfigError(f"--{key} expects str, got {raw!r}", key)
        return raw
    if kind == "int":
        if isinstance(raw, int):
            return raw
        if isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d+\s*", raw):
            return int(raw)
        raise ConfigError(f"--{key} expects int, got {raw!r}", key)
    if kind == "float":
        if isinstance(raw, (int, float)):
            return float(raw)
        try:
            return float(raw)  # also 1e-3, which YAML 1.1 would read as a string
        except (TypeError, ValueError):
            raise ConfigError(f"--{key} expects float, got {raw!r}", key) from None
    raise ConfigError(f"--{key} cannot be set here", key)  # list (config) is handled by the caller


def _unknown(key: Any) -> ConfigError:
    """The error for an option that does not exist: the valid ones, and the nearest if any."""
    valid = sorted(k for k in _FIELDS if not k.endswith("_kwargs"))
    near = difflib.get_close_matches(str(key), valid, n=1)
    return ConfigError(f"unknown option {key!r}; valid options: {valid}, plus --task.<arg>, "
                       f"--model.<arg>, --loss.<arg> for the task, model and loss arguments"
                       + (f"; did you mean {near[0]!r}?" if near else ""))


def _set(cfg: dict[str, Any], key: Any, value: Any, cli: bool) -> str | None:
    """Set ``key`` in the config dict; return the field it set (None for a kwarg sub-key).

    ``cli``: ``value`` is a command-line string (kwarg values are then read as YAML); else a value
    already loaded from a YAML file.
    """
    if not isinstance(key, str):
        raise _unknown(key)
    if "." in key:
        group, _, sub = key.partition(".")
        if group not in _KWARG_GROUPS or not sub:
            raise _unknown(key)
        cfg[_KWARG_GROUPS[group]][sub] = _yaml_value(key, value) if cli else value
        return None
    if key not in _FIELDS:
        raise _unknown(key)
    if key == "config":
        raise ConfigError("config files cannot include other config files (give --config "
                          "twice instead)", "config")
    if key.endswith("_kwargs"):
        cfg[key].update(_convert(key, value, cli))
    else:
        cfg[key] = _convert(key, value, cli)
    return key


def _resolve_config_path(spec: str) -> Path:
    path = Path(spec)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"--config {spec!r} is a directory, not a YAML file", "config")
    task, _, name = spec.partition("/")
    preset = TASKS_DIR / task / "configs" / f"{name}.yaml"
    if name and preset.is_file():
        return preset
    raise ConfigError(f"config file {spec!r} not found (neither a path nor tasks/{task}/configs/"
                      f"{name or '<name>'}.yaml)", "config")


def _line_of(text: str, index: int) -> int:
    """1-based line of a character index."""
    return text.count("\n", 0, index) + 1


def read_config_file(path: Path) -> list[tuple[Any, Any, int]]:
    """The (key, value, 1-based line) entries of a YAML config file, in order.

    Raises ConfigError as ``FILE:LINE[:COL]: problem`` for unreadable, non-UTF-8 or invalid YAML,
    a document that is not a mapping, and a key given twice.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}", "config") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at byte "
                          f"offset {exc.start})", "config") from None
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # checks the characters already
        root = loader.get_single_node()
        if root is None:  # empty, or only comments
            return []
        if not isinstance(root, yaml.MappingNode):
            raise ConfigError(f"{path}:{root.start_mark.line + 1}: expected a YAML mapping of "
                              f"options (key: value), got a {root.id}", "config")
        first: dict[Any, int] = {}
        for knode, _ in root.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` entries may be overridden; they are not repeats
            key, line = loader.construct_object(knode, deep=True), knode.start_mark.line + 1
            if not isinstance(key, str):
                continue  # refused as an unknown option by the caller, with its line
            if key in first:
                raise ConfigError(f"{path}:{line}: option {key!r} given twice (first on line "
                                  f"{first[key]})", key)
            first[key] = line
        loader.flatten_mapping(root)  # resolves merge keys in place
        return [(loader.construct_object(k, deep=True), loader.construct_object(v, deep=True),
                 k.start_mark.line + 1) for k, v in root.value]
    except yaml.MarkedYAMLError as exc:
        # marks are 0-based; FILE:LINE:COL is 1-based like every editor and compiler
        mark, ctx = exc.problem_mark or exc.context_mark, exc.context_mark
        where = f"{mark.line + 1}:{mark.column + 1}" if mark else "1"
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context and ctx:
            problem += f" ({exc.context} at {ctx.line + 1}:{ctx.column + 1})"
        raise ConfigError(f"{path}:{where}: {problem}", "config") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (e.g. NUL)
        raise ConfigError(f"{path}:{_line_of(text, exc.position)}: character "
                          f"U+{exc.character:04X} is not allowed in YAML", "config") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}", "config") from None
    finally:
        if loader is not None:
            loader.dispose()


def _split_argv(argv: list[str]) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"unexpected argument {arg!r}; options look like --key value")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_") if "." not in key else key
        if not eq:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            is_flag = key in _FIELDS and _HINTS[key] is bool
            if nxt is None or nxt.startswith("--"):
                if not is_flag:
                    raise ConfigError(f"--{key} needs a value", key if key in _FIELDS else None)
                value = "true"
            else:
                value, i = nxt, i + 1
        pairs.append((key, value))
        i += 1
    return pairs


def wants_help(argv: list[str]) -> bool:
    """Whether ``--help`` or ``-h`` appears anywhere in ``argv``."""
    return any(a in ("--help", "-h") or a.startswith("--help=") for a in argv)


def debug_requested(argv: list[str]) -> bool:
    """Whether ``argv`` asks for ``--debug`` (any spelling parse_config accepts), even when the
    rest of ``argv`` is malformed, so the engine can decide how to report that very error."""
    debug = False
    for i, arg in enumerate(argv):
        key, eq, value = arg.partition("=")
        if key != "--debug":
            continue
        if not eq:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            value = "true" if nxt is None or nxt.startswith("--") else nxt
        debug = value.lower() in ("1", "true", "yes", "on")
    return debug


def parse_config(argv: list[str]) -> RunConfig:
    """Build and validate the resolved config from ``argv`` (see the module docstring).

    Raises HelpRequested (with the help text) when ``--help``/``-h`` appears anywhere, and ONE
    ConfigError naming the option (and, for a value from a YAML file, ``FILE:LINE``) otherwise.
    """
    if wants_help(argv):
        raise HelpRequested(help_text())
    cfg = RunConfig().to_dict()
    origin: dict[str, str] = {}  # field -> "FILE:LINE" of the YAML value that set it
    pairs = _split_argv(argv)
    for key, value in pairs:
        if key == "config":
            path = _resolve_config_path(value)
            for k, v, line in read_config_file(path):
                try:
                    name = _set(cfg, k, v, cli=False)
                except ConfigError as exc:
                    raise ConfigError(f"{path}:{line}: {exc}", exc.option) from None
                if name:
                    origin[name] = f"{path}:{line}"
            cfg["config"].append(str(path))
    for key, value in pairs:
        if key != "config":
            origin.pop(_set(cfg, key, value, cli=True) or "", None)
    config = RunConfig(**cfg)
    try:
        config.validate()
    except ConfigError as exc:
        if exc.option in origin:
            raise ConfigError(f"{origin[exc.option]}: {exc}", exc.option) from None
        raise
    return config


def cell_argv(argv: list[str], cell: RunConfig) -> list[str]:
    """``argv`` with the sweep options replaced by one cell's loss and seed (and without the
    options of a launching process: a cell's command runs that one cell)."""
    out: list[str] = []
    pairs = _split_argv(argv)
    for key, value in pairs:
        if key not in ("loss", "seed", "print_commands", *LAUNCH_ONLY):
            out += [f"--{key}", str(value)]
    return [*out, "--loss", cell.loss, "--seed", cell.seed]


def _show_default(value: Any) -> str:
    """A default as it would be typed: ``true``, ``""``, ``0.002``, ``{}``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value if value else '""'
    return repr(value)


def _config_presets() -> list[str]:
    """The ``<task>/<name>`` presets shipped under tasks/*/configs/."""
    return sorted(f"{p.parent.parent.name}/{p.stem}" for p in TASKS_DIR.glob("*/configs/*.yaml"))


def help_text(width: int = 100) -> str:
    """``--help``: every option with its type, default and doc, grouped, from RunConfig's fields."""
    lines = [
        "usage: python run_task.py [--config FILE]... [--OPTION VALUE]... [--task.<arg> VALUE]...",
        "                          [--model.<arg> VALUE]... [--loss.<arg> VALUE]...",
        "       accelerate launch [--num_processes N] run_task.py [same options]",
        "",
    ]
    for paragraph in (
        "Trains and evaluates every (loss, seed) cell of a sweep and writes one results JSON per "
        "cell under <output_dir>/<task>/.",
        "Options apply in layers: defaults < --config files (in order) < the command line. "
        "--OPTION VALUE or --OPTION=VALUE; a BOOL option alone means true (--resume). "
        "--task.<arg> VALUE, --model.<arg> VALUE and --loss.<arg> VALUE set one keyword argument "
        "of the task, the model or the loss; VALUE is read as YAML (2 is an int, 0.5 a float, "
        "[1, 2] a list, 'x' a string).",
        "A user error (bad option, malformed data) exits with code 2 and one message; --debug "
        "shows its traceback.",
    ):
        lines += [*textwrap.wrap(paragraph, width, break_on_hyphens=False), ""]
    del lines[-1]
    indent = " " * 6
    for group, title in _GROUPS.items():
        lines += ["", f"{title}:"]
        for f in dataclasses.fields(RunConfig):
            meta = f.metadata
            if meta["group"] != group:
                continue
            kind = _kind(f.name).upper()
            usage = {"BOOL": f"--{f.name} [BOOL]", "LIST": f"--{f.name} FILE"}.get(
                kind, f"--{f.name} {kind}")
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            doc = meta["help"]
            if meta["choices"]:
                doc += f"; one of: {', '.join(meta['choices'])}"
            if meta["bounds"] is not None:
                doc += f"; {meta['bounds']}"
            doc += f" (default: {_show_default(default)})"
            lines.append(f"  {usage}")
            lines += textwrap.wrap(doc, width, initial_indent=indent, subsequent_indent=indent,
                                   break_on_hyphens=False)
            if f.name.endswith("_kwargs"):
                lines.append(f"  --{f.name.removesuffix('_kwargs')}.<arg> VALUE")
                lines.append(f"{indent}one entry of --{f.name}")
    presets = _config_presets()
    if presets:
        lines += ["", "config presets (--config <task>/<name>):"]
        lines += textwrap.wrap(", ".join(presets), width, initial_indent="  ",
                               subsequent_indent="  ", break_on_hyphens=False)
    lines += [
        "",
        "examples:",
        "  python run_task.py --config synthetic/smoke --loss bce,asl@asl_coco --seed 0,1,2",
        "  python run_task.py --config synthetic/smoke --loss asl --loss.gamma_neg 2 "
        "--task.missing_rate 0.5",
        "  python run_task.py --config synthetic/smoke --print_commands   # one launch per cell",
        "  python run_task.py --suite cpu-small --loss my_loss --seed 0,1,2 --print_commands",
        "  accelerate launch --num_processes 2 run_task.py --config synthetic/smoke --lr 1e-3",
    ]
    return "\n".join(lines) + "\n"
