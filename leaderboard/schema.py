"""The results schema: one typed :class:`Result`, its validator, and atomic reading and writing.

Every training run writes exactly one results file; the leaderboard reads them all. The schema is
the dataclasses below: one field per JSON key, with a comment saying what it holds. A generic
validator walks those dataclasses (required keys, types, bounds, unknown keys), then a few named
rules check what types cannot say (:data:`RULES`). A violation raises :class:`SchemaError` (a
``ValueError``) whose message names the file, the field path (``task.num_examples``,
``history[2].dev.map``), what is wrong and what was expected; all problems are reported together.

Conventions: ``int`` never accepts a boolean; a number is an int or a float, never a boolean,
never NaN or infinity. Free-form objects (``model.kwargs``, ``loss.kwargs``, ``config``,
``extra``, ``identity``) must still be plain JSON. **Metrics are fractions** in [0, 1], except the
names listed in ``extra.unbounded_metrics`` (a loss value, a count).

Versions: ``schema_version`` is ``"MAJOR.MINOR"``; readers accept major 1 and refuse any other.
1.1 added the optional ``run_id`` and ``identity`` (:mod:`mllb_core.identity`) and
``threshold.per_class``; a 1.0 file is a valid 1.1 file, and its identity is derived from its
sections. 1.2 added the optional ``env.cpu_capability``; a 1.1 file is a valid 1.2 file. A
file whose minor version is newer than :data:`SCHEMA_VERSION` may carry keys a later 1.x
added: they are ignored rather than refused (and dropped by :meth:`Result.to_dict`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import pathlib
import re
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, NoReturn

from mllb_core.errors import UserError
from mllb_core.identity import TRAIN_KEYS, describe_difference, run_id, run_identity
from mllb_core.io import write_json_atomic

__all__ = [
    "SCHEMA_VERSION",
    "Env",
    "Epoch",
    "LossInfo",
    "ModelInfo",
    "Result",
    "SchemaError",
    "Selection",
    "TaskInfo",
    "Threshold",
    "Timing",
    "iter_results",
    "load_result",
    "read_results",
    "validate",
    "write_json_atomic",
    "write_results",
]

SCHEMA_VERSION = "1.2"
_MAJOR, _MINOR = (int(part) for part in SCHEMA_VERSION.split("."))

THRESHOLD_POLICIES = ("fixed", "dev_tuned", "per_class_dev_tuned", "loss_decide",
                      "threshold_class")
MIXED_PRECISION = ("no", "bf16", "fp16", "fp8")

_VERSION_RE = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
_FINGERPRINT_RE = re.compile(r"sha256:[0-9a-f]{64}")
_RUN_ID_RE = re.compile(r"[0-9a-f]{16}")
# A long error list helps nobody; the full list stays on SchemaError.errors.
_MAX_LISTED_ERRORS = 20


class SchemaError(UserError, ValueError):
    """A results object or file does not follow the schema.

    ``str(error)`` is the full message, starting with the source (usually the file path).
    ``source`` is that source and ``errors`` the individual problems, each starting with the
    field path.
    """

    def __init__(self, message: str, *, source: str | None = None,
                 errors: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.source = source
        self.errors = list(errors) or [message]


def _raise(source: str, errors: Sequence[str]) -> NoReturn:
    if len(errors) == 1:
        message = f"{source}: {errors[0]}"
    else:
        shown = "\n".join(f"  - {e}" for e in errors[:_MAX_LISTED_ERRORS])
        more = len(errors) - _MAX_LISTED_ERRORS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        message = f"{source}: {len(errors)} schema errors:\n{shown}{tail}"
    raise SchemaError(message, source=source, errors=errors)


# ----------------------------------------------------------------------------- value checks


def _is_int(v: Any) -> bool:
    # bool is a subclass of int in Python, but `"num_examples": true` is a bug, not a count.
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _show(v: Any) -> str:
    """`type value`, shortened, plus a hint for the two classic number mistakes."""
    text = repr(v)
    if len(text) > 80:
        text = text[:77] + "..."
    shown = f"{type(v).__name__} {text}"
    if isinstance(v, bool):
        shown += " (a boolean is not a number)"
    elif isinstance(v, float) and not math.isfinite(v):
        shown += " (NaN and infinity are not allowed)"
    return shown


def _fail(path: str, expected: str, v: Any) -> str:
    return f"{path}: expected {expected}, got {_show(v)}"


def _is_aware_timestamp(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    # Python 3.10's fromisoformat does not read a trailing "Z"; spell it as an offset.
    text = v[:-1] + "+00:00" if v.endswith("Z") else v
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return False
    return parsed.tzinfo is not None and parsed.utcoffset() is not None


# A check is (what is expected, in words; predicate). The words serve both the "wrong value" and
# the "missing" message, so the two never disagree.
_Check = tuple[str, Callable[[Any], bool]]
_TEXT: _Check = ("a non-empty string", lambda v: isinstance(v, str) and bool(v.strip()))
_OBJECT: _Check = ("an object", lambda v: isinstance(v, dict))
_BOOL: _Check = ("a boolean", lambda v: isinstance(v, bool))
# Checked by a named rule (metrics, history, threshold values, ...), here only required.
_BY_RULE: _Check = ("a value", lambda v: True)


def _at_least(lo: int) -> _Check:
    return f"an integer >= {lo}", lambda v: _is_int(v) and v >= lo


def _number_at_least(lo: float) -> _Check:
    return f"a finite number >= {lo:g}", lambda v: _is_finite(v) and v >= lo


def _one_of(choices: Sequence[str]) -> _Check:
    return ("one of " + ", ".join(repr(c) for c in choices),
            lambda v: isinstance(v, str) and v in choices)


def _is_scores_path(v: Any) -> bool:
    if not isinstance(v, str) or not v.endswith(".npz"):
        return False
    # Relative to the results file, so the results tree can be moved or copied as a whole.
    return not (v.startswith("/") or "\\" in v or re.match(r"[A-Za-z]:", v)
                or ".." in v.split("/"))


_INT: _Check = ("an integer", _is_int)
_PRESET: _Check = ("a non-empty string or null",
                   lambda v: v is None or (isinstance(v, str) and bool(v.strip())))
_FINGERPRINT: _Check = ("'sha256:' followed by 64 lowercase hex digits",
                        lambda v: isinstance(v, str) and _FINGERPRINT_RE.fullmatch(v) is not None)
_RUN_ID: _Check = ("16 lowercase hex digits",
                   lambda v: isinstance(v, str) and _RUN_ID_RE.fullmatch(v) is not None)
_TIMESTAMP: _Check = ("an ISO-8601 timestamp with a timezone, such as "
                      "'2026-11-22T03:40:00+00:00'", _is_aware_timestamp)
_SCORES_FILE: _Check = ("a relative path to a .npz file, with '/' separators and no '..'",
                        _is_scores_path)
_POLICY = _one_of(THRESHOLD_POLICIES)
_PRECISION = _one_of(MIXED_PRECISION)
_COUNT = _at_least(0)
_POSITIVE = _at_least(1)
_SECONDS = _number_at_least(0)


# ----------------------------------------------------------------------------- the schema


@dataclass(frozen=True)
class TaskInfo:
    """What was evaluated: the task, its data and the split the metrics are on."""

    name: Annotated[str, _TEXT]  # registry name, e.g. "docred"
    version: Annotated[str, _TEXT]  # bumped whenever numbers stop being comparable
    dataset: Annotated[str, _TEXT]  # dataset variant, e.g. "re-docred", "coco128"
    split: Annotated[str, _TEXT]  # the evaluation split of `metrics`, e.g. "test"
    num_labels: Annotated[int, _POSITIVE]  # number of classes
    num_examples: Annotated[int, _POSITIVE]  # examples of `split` (an image, a document)
    # "sha256:" + 64 lowercase hex digits (compared as strings: only the hexdigest() spelling)
    data_fingerprint: Annotated[str, _FINGERPRINT]


@dataclass(frozen=True)
class ModelInfo:
    """The network."""

    name: Annotated[str, _TEXT]  # registry name
    kwargs: Annotated[dict[str, Any], _OBJECT]  # resolved constructor options, the head included
    num_parameters: Annotated[int, _COUNT]  # trainable and frozen parameters
    # the model family's MODEL_VERSION (bumped when a default changes the numbers); 1.1, optional
    version: Annotated[str | None, _TEXT] = None


@dataclass(frozen=True)
class LossInfo:
    """The loss."""

    name: Annotated[str, _TEXT]  # registry name
    # the preset the run was launched with (a label; the values are in kwargs), or null
    preset: Annotated[str | None, _PRESET]
    kwargs: Annotated[dict[str, Any], _OBJECT]  # the fully resolved hyper-parameters


@dataclass(frozen=True)
class Selection:
    """How the reported weights were chosen."""

    metric: Annotated[str, _TEXT]  # the task's primary metric; logged in every history[i].dev
    split: Annotated[str, _BY_RULE]  # always "dev": selection never uses the evaluation split
    epoch: Annotated[int, _COUNT]  # selected epoch; 0 = "before training" or "final"


@dataclass(frozen=True)
class Threshold:
    """The decision rule of the thresholded metrics (the JSON of a task's ``DecisionRule``)."""

    policy: Annotated[str, _POLICY]  # how the rule was chosen
    # one threshold, null (no thresholded metric), or (1.0 files) one per class
    value: Annotated[float | list[float] | None, _BY_RULE]
    # one threshold per class (len == task.num_labels), calibrated on dev; 1.1, optional
    per_class: Annotated[list[float] | None, _BY_RULE] = None
    # policy "threshold_class" (a loss-declared rule, ATLOP's): the column of the threshold
    # class and the most labels predicted per row; 1.1, optional
    threshold_index: Annotated[int | None, _COUNT] = None
    top_k: Annotated[int | None, _POSITIVE] = None


@dataclass(frozen=True)
class Epoch:
    """One entry of ``history``: the end of a training epoch (checked by a rule)."""

    epoch: int  # >= 1, strictly increasing along history
    train_loss: float  # mean training loss of the epoch, over all ranks
    dev: dict[str, float]  # dev metrics, metric name -> value
    # any other logged key: a number ("lr") or a number map ("dev_ema")
    logged: dict[str, float | dict[str, float]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Epoch:
        """An entry from its (validated) JSON object."""
        rest = {k: copy.deepcopy(v) for k, v in d.items()
                if k not in ("epoch", "train_loss", "dev")}
        return cls(d["epoch"], d["train_loss"], dict(d["dev"]), rest)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: ``epoch``, ``train_loss``, ``dev`` and the logged keys."""
        return {"epoch": self.epoch, "train_loss": self.train_loss, "dev": dict(self.dev),
                **copy.deepcopy(self.logged)}


@dataclass(frozen=True)
class Env:
    """Where and with what code the run ran."""

    git_commit: Annotated[str, _TEXT]  # "unknown" outside a checkout
    git_dirty: Annotated[bool, _BOOL]  # uncommitted changes at launch
    torch: Annotated[str, _TEXT]  # torch.__version__
    accelerate: Annotated[str, _TEXT]  # accelerate.__version__
    device: Annotated[str, _TEXT]  # "cpu", "cuda:NVIDIA H100 80GB HBM3"
    world_size: Annotated[int, _POSITIVE]  # number of processes
    mixed_precision: Annotated[str, _PRECISION]
    # 1.2: ATen's CPU kernel level, torch.backends.cpu.get_cpu_capability() ("AVX512", "AVX2",
    # "DEFAULT"; ATEN_CPU_CAPABILITY lowers it): which vectorized CPU kernels ran, and whether
    # a compiled family loss could take the AVX-512 loop (losses/_cpu_fused.py). Float32
    # results move in their last bits with it; it is where the run ran, not what it is
    cpu_capability: Annotated[str | None, _TEXT] = None


@dataclass(frozen=True)
class Timing:
    """Wall-clock cost."""

    train_s: Annotated[float, _SECONDS]  # training seconds (all epochs)
    eval_s: Annotated[float, _SECONDS]  # seconds of the final test evaluation
    examples_per_s: Annotated[float, _SECONDS]  # training examples per second


@dataclass(frozen=True)
class Result:
    """One results file: one training run (one task, model, loss, recipe and seed)."""

    schema_version: Annotated[str, _BY_RULE]  # "MAJOR.MINOR"; readers accept major 1
    task: TaskInfo
    model: ModelInfo
    loss: LossInfo
    seed: Annotated[int, _INT]  # the run's seed
    metrics: Annotated[dict[str, float], _BY_RULE]  # test metrics (fractions), name -> value
    higher_is_better: Annotated[dict[str, bool], _BY_RULE]  # exactly the keys of metrics
    selection: Selection
    threshold: Threshold
    history: Annotated[list[Epoch], _BY_RULE]  # one entry per evaluated epoch (may be empty)
    config: Annotated[dict[str, Any], _OBJECT]  # the resolved run config
    env: Env
    timing: Timing
    # ISO-8601 with a timezone, e.g. "2026-11-22T03:40:00+00:00"
    created_at: Annotated[str, _TIMESTAMP]
    # free-form run facts without a field of their own; `unbounded_metrics` lists the metric
    # names exempt from the [0, 1] rule; run_task.py also writes `kernels` (which of MLLB's
    # own kernels computed the run, mllb_core/served.py), `task_info`, `epochs_run` and
    # `selected_weights`
    extra: Annotated[dict[str, Any] | None, _OBJECT] = None
    # saved test scores (.npz), relative to the results file's directory, '/'-separated, no '..'
    scores_file: Annotated[str | None, _SCORES_FILE] = None
    # 1.1: mllb_core.identity.run_id(identity); recomputed and compared when present
    run_id: Annotated[str | None, _RUN_ID] = None
    # 1.1: mllb_core.identity.run_identity(this result); recomputed and compared when present
    identity: Annotated[dict[str, Any] | None, _OBJECT] = None

    @classmethod
    def from_dict(cls, d: Any, source: str = "<results>") -> Result:
        """Validate ``d`` (see :func:`validate`; raises :class:`SchemaError` naming ``source``)
        and build the typed result. ``d`` is not modified and not aliased."""
        validate(d, source)
        return _build(cls, d)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (absent optional keys stay absent); ``from_dict`` reads it back."""
        return _unbuild(self)

    @functools.cached_property
    def full_identity(self) -> dict[str, Any]:
        """The run identity: the recorded one, else derived from the sections (1.0 files).

        Old files whose config lacks a recipe key get that key as null, so they still group.
        """
        if self.identity is not None:
            return self.identity
        d = self.to_dict()
        try:
            return run_identity(d)
        except KeyError:
            d["config"] = {**{k: None for k in (*TRAIN_KEYS, "momentum")}, **d["config"]}
            return run_identity(d)

    @property
    def full_run_id(self) -> str:
        """The recorded ``run_id``, else the id of :attr:`full_identity`."""
        return self.run_id or run_id(self.full_identity)

    @functools.cached_property
    def setting(self) -> dict[str, Any]:
        """The identity minus the seed: runs sharing it are seeds of one leaderboard row."""
        return {k: v for k, v in self.full_identity.items() if k != "seed"}

    @property
    def setting_id(self) -> str:
        """``run_id`` of :attr:`setting`."""
        return run_id(self.setting)


# ----------------------------------------------------------------------------- building


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Field name -> type, with ``Annotated`` checks kept (resolved once per class)."""
    return typing.get_type_hints(cls, include_extras=True)


def _check_of(cls: type, name: str) -> _Check:
    return _hints(cls)[name].__metadata__[0]


def _optional(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _build(cls: type, d: Mapping[str, Any]) -> Any:
    """Dataclass ``cls`` from a validated JSON object, nested sections included."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue  # optional: the dataclass default
        v, kind = d[f.name], _hints(cls)[f.name]
        if dataclasses.is_dataclass(kind):
            kwargs[f.name] = _build(kind, v)
        elif f.name == "history":
            kwargs[f.name] = [Epoch.from_dict(e) for e in v]
        else:
            kwargs[f.name] = copy.deepcopy(v)
    return cls(**kwargs)


def _unbuild(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if v is None and _optional(f):
            continue
        if dataclasses.is_dataclass(v):
            out[f.name] = _unbuild(v)
        elif f.name == "history":
            out[f.name] = [e.to_dict() for e in v]
        else:
            out[f.name] = copy.deepcopy(v)
    return out


# ----------------------------------------------------------------------------- generic validator


def _check_fields(errs: list[str], path: str, obj: Any, cls: type, strict: bool) -> dict | None:
    """Walk dataclass ``cls`` over ``obj``: required keys, checks, nested sections, unknown keys.

    ``path`` "" is the top level. Returns ``obj`` when it is an object at all, else None.
    """
    if not isinstance(obj, dict):
        errs.append(_fail(path or "(top level)", "a JSON object" if not path else "an object",
                          obj))
        return None
    where = f"{path}." if path else ""
    for f in dataclasses.fields(cls):
        kind = _hints(cls)[f.name]
        nested = dataclasses.is_dataclass(kind)
        expected, ok = _OBJECT if nested else _check_of(cls, f.name)
        if f.name not in obj:
            if not _optional(f):
                errs.append(f"{where}{f.name}: missing (expected {expected})" if path
                            else f"{f.name}: missing required top-level key")
        elif nested:
            _check_fields(errs, f"{where}{f.name}", obj[f.name], kind, strict)
        elif not ok(obj[f.name]):
            errs.append(_fail(f"{where}{f.name}", expected, obj[f.name]))
    if strict:
        names = [f.name for f in dataclasses.fields(cls)]
        for key in obj:
            if key in names:
                continue
            errs.append(f"{key}: unknown top-level key (put free-form data under 'extra')"
                        if not path else
                        f"{path}.{key}: unknown key (expected exactly: {', '.join(names)})")
    return obj


def _check_json_value(errs: list[str], path: str, v: Any,
                      _open: frozenset[int] = frozenset()) -> None:
    """Free-form data must survive json.dumps(allow_nan=False) and come back equal."""
    if v is None or isinstance(v, (bool, int, str)):
        return
    if isinstance(v, float):
        if not math.isfinite(v):
            errs.append(_fail(path, "a finite number", v))
        return
    if isinstance(v, (list, tuple, dict)):
        # A container that contains itself would recurse forever (json.dumps refuses it too).
        if id(v) in _open:
            errs.append(f"{path}: circular reference")
            return
        inner = _open | {id(v)}
        if isinstance(v, dict):
            for key, item in v.items():
                if not isinstance(key, str):
                    errs.append(f"{path}: key {key!r} is not a string (JSON keys are strings)")
                _check_json_value(errs, f"{path}.{key}", item, inner)
        else:
            for i, item in enumerate(v):
                _check_json_value(errs, f"{path}[{i}]", item, inner)
        return
    errs.append(f"{path}: {type(v).__name__} is not JSON data (expected null, bool, int, float, "
                "string, list or object)")


def _check_number_map(errs: list[str], path: str, obj: Any, *, non_empty: bool = False) -> dict:
    """An object name -> finite number; return the entries that passed."""
    words = "a non-empty object of metric name -> number" if non_empty else (
        "an object of metric name -> number")
    if not isinstance(obj, dict) or (non_empty and not obj):
        errs.append(_fail(path, words, obj))
        return {}
    good = {}
    for key, v in obj.items():
        if not isinstance(key, str) or not key:
            errs.append(f"{path}: key {key!r} is not a non-empty string")
        elif not _is_finite(v):
            errs.append(_fail(f"{path}.{key}", "a finite number", v))
        else:
            good[key] = v
    return good


# ----------------------------------------------------------------------------- named rules
# Each rule gets the error list and the whole object; a rule skips parts that are absent or of
# the wrong type (the generic walk reports those), so one mistake gives one message.


def _section(obj: dict, key: str) -> dict:
    v = obj.get(key)
    return v if isinstance(v, dict) else {}


def _extra_names(errs: list[str], extra: Any, key: str, what: str) -> set[str]:
    """The names of ``extra[key]`` (a list of non-empty strings), reporting what is not one."""
    if not isinstance(extra, dict) or key not in extra:
        return set()
    names = extra[key]
    if not isinstance(names, list):
        errs.append(_fail(f"extra.{key}", f"a list of {what}", names))
        return set()
    good = set()
    for i, name in enumerate(names):
        if isinstance(name, str) and name:
            good.add(name)
        else:
            errs.append(_fail(f"extra.{key}[{i}]", "a non-empty string", name))
    return good


def _unbounded_metrics(errs: list[str], extra: Any) -> set[str]:
    return _extra_names(errs, extra, "unbounded_metrics", "metric names")


def rule_kernels_are_names(errs: list[str], obj: dict) -> None:
    """extra.kernels, where present (run_task.py writes it): a list of kernel names
    (``mllb_core/served.py``; a later version may add names, so any non-empty string)."""
    _extra_names(errs, obj.get("extra"), "kernels", "kernel names")


def rule_metrics_are_fractions(errs: list[str], obj: dict) -> None:
    """metrics: finite numbers in [0, 1] unless listed in extra.unbounded_metrics;
    higher_is_better: booleans for exactly the keys of metrics."""
    unbounded = _unbounded_metrics(errs, obj.get("extra"))
    if "metrics" in obj:
        metrics = _check_number_map(errs, "metrics", obj["metrics"], non_empty=True)
        for name, v in metrics.items():
            if name not in unbounded and not 0 <= v <= 1:
                errs.append(f"metrics.{name} = {v!r} is outside [0, 1]; metrics are fractions "
                            "(a metric that is not, such as a loss or a count, must be listed "
                            "in extra.unbounded_metrics)")
    if "higher_is_better" not in obj:
        return
    hib = obj["higher_is_better"]
    if not isinstance(hib, dict):
        errs.append(_fail("higher_is_better", "an object of metric name -> boolean", hib))
        return
    # Compared only against a usable metrics object; an empty one is already reported.
    if isinstance(obj.get("metrics"), dict) and obj["metrics"]:
        missing = [k for k in obj["metrics"] if k not in hib]
        unknown = [k for k in hib if k not in obj["metrics"]]
        if missing or unknown:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(repr(k) for k in missing))
            if unknown:
                parts.append("not in metrics " + ", ".join(repr(k) for k in unknown))
            errs.append("higher_is_better: keys must be exactly the keys of metrics; "
                        + "; ".join(parts))
    for key, v in hib.items():
        if not isinstance(v, bool):
            errs.append(_fail(f"higher_is_better.{key}", "a boolean", v))


def rule_history_epochs_increase(errs: list[str], obj: dict) -> None:
    """history: a list of epoch objects (epoch >= 1 strictly increasing, finite train_loss,
    dev a number map, other keys a number or a number map)."""
    if "history" not in obj:
        return
    history = obj["history"]
    if not isinstance(history, list):
        errs.append(_fail("history", "a list of epoch objects (may be empty)", history))
        return
    previous = None
    for i, entry in enumerate(history):
        path = f"history[{i}]"
        if not isinstance(entry, dict):
            errs.append(_fail(path, "an object", entry))
            continue
        for key, (expected, ok) in (("epoch", _at_least(1)),
                                    ("train_loss", ("a finite number", _is_finite))):
            if key not in entry:
                errs.append(f"{path}.{key}: missing (expected {expected})")
            elif not ok(entry[key]):
                errs.append(_fail(f"{path}.{key}", expected, entry[key]))
        if "dev" in entry:
            _check_number_map(errs, f"{path}.dev", entry["dev"])
        else:
            errs.append(f"{path}.dev: missing (expected an object of metric name -> number)")
        for key, v in entry.items():
            if key in ("epoch", "train_loss", "dev"):
                continue
            if isinstance(v, dict):
                _check_number_map(errs, f"{path}.{key}", v)
            elif not _is_finite(v):
                errs.append(_fail(f"{path}.{key}", "a finite number or an object of "
                                  "name -> number", v))
        epoch = entry.get("epoch")
        if _is_int(epoch):
            if previous is not None and epoch <= previous:
                errs.append(f"{path}.epoch: {epoch} after epoch {previous} "
                            "(epochs must be strictly increasing)")
            previous = epoch


def rule_selection_on_dev(errs: list[str], obj: dict) -> None:
    """selection.split is "dev"; selection.metric is logged every epoch; a selected epoch >= 1
    has a history entry."""
    sel = _section(obj, "selection")
    if "split" in sel and sel["split"] != "dev":
        errs.append("selection.split must be 'dev' (model selection never uses the evaluation "
                    f"split), got {sel['split']!r}")
    history = obj.get("history")
    if not isinstance(history, list) or not history:
        return
    history = [e for e in history if isinstance(e, dict)]
    metric = sel.get("metric")
    if isinstance(metric, str) and metric:
        for i, entry in enumerate(history):
            dev = entry.get("dev")
            if isinstance(dev, dict) and metric not in dev:
                # One report is enough: the selection metric is missing, not n problems.
                have = ", ".join(repr(k) for k in dev) or "nothing"
                errs.append(f"selection.metric: {metric!r} is not a key of history[{i}].dev "
                            f"(it has {have}); the selection metric must be logged every epoch")
                break
    epoch = sel.get("epoch")
    epochs = [e["epoch"] for e in history if _is_int(e.get("epoch"))]
    if _is_int(epoch) and epoch >= 1 and epochs and epoch not in epochs:
        errs.append(f"selection.epoch: {epoch} has no history entry (history epochs "
                    f"{epochs[0]}..{epochs[-1]}); use 0 for 'before training' or 'final'")


def rule_per_class_thresholds(errs: list[str], obj: dict) -> None:
    """threshold.value is a number, null or a list; a per-class list (``value`` or
    ``per_class``) has one finite number per class (task.num_labels)."""
    th = _section(obj, "threshold")
    num_labels = _section(obj, "task").get("num_labels")
    expected = "a finite number, null, or a list of finite numbers (one per class)"
    for key in ("value", "per_class"):
        if key not in th or th[key] is None or (key == "value" and _is_finite(th[key])):
            continue
        values = th[key]
        if not isinstance(values, list):
            errs.append(_fail(f"threshold.{key}", expected if key == "value"
                              else "a list of finite numbers (one per class) or null", values))
            continue
        for i, v in enumerate(values):
            if not _is_finite(v):
                errs.append(_fail(f"threshold.{key}[{i}]", "a finite number", v))
        if _is_int(num_labels) and len(values) != num_labels:
            errs.append(f"threshold.{key}: {len(values)} per-class thresholds, but "
                        f"task.num_labels is {num_labels}")
    declared = th.get("policy") == "threshold_class"
    for key in ("threshold_index", "top_k"):
        if declared and th.get(key) is None:
            errs.append(f"threshold.{key}: required by the policy 'threshold_class'")
        if not declared and th.get(key) is not None:
            errs.append(f"threshold.{key}: only the policy 'threshold_class' has it")
    index = th.get("threshold_index")
    if declared and _is_int(index) and _is_int(num_labels) and index >= num_labels:
        errs.append(f"threshold.threshold_index: {index} is not a column of the "
                    f"{num_labels} labels")


def rule_free_form_is_json(errs: list[str], obj: dict) -> None:
    """config, extra, identity and the kwargs are plain JSON; the engine's own config flags
    have their types (keep_checkpoints, overwrite, debug: bool; leaderboard: bool or path)."""
    # Checked here rather than by json.dumps(allow_nan=False), which names no path.
    free_form = [(key, obj.get(key)) for key in ("config", "extra", "identity")]
    free_form += [(f"{s}.kwargs", _section(obj, s).get("kwargs")) for s in ("model", "loss")]
    for path, value in free_form:
        if isinstance(value, dict):
            _check_json_value(errs, path, value)
    config = _section(obj, "config")
    for key in ("keep_checkpoints", "overwrite", "debug"):
        if key in config and not isinstance(config[key], bool):
            errs.append(_fail(f"config.{key}", "a boolean", config[key]))
    # 1.0 files store the leaderboard path (a string, "" for none); 1.1 a boolean.
    if "leaderboard" in config and not isinstance(config["leaderboard"], (bool, str)):
        errs.append(_fail("config.leaderboard", "a boolean or a string", config["leaderboard"]))


def rule_identity_matches(errs: list[str], obj: dict) -> None:
    """A recorded ``identity`` / ``run_id`` equals the one recomputed from the file's sections,
    so a hand-edited or mislabelled results file cannot pass."""
    recorded, rid = obj.get("identity"), obj.get("run_id")
    if (recorded is None and rid is None) or errs:
        return  # nothing recorded, or the sections themselves are already wrong
    try:
        derived = run_identity(obj)
    except (KeyError, TypeError, ValueError) as e:
        errs.append(f"identity: cannot be recomputed from the file's sections ({type(e).__name__}"
                    f" {e}), so the recorded run identity cannot be checked")
        return
    derived_id = run_id(derived)
    if isinstance(recorded, dict) and run_id(recorded) != derived_id:
        ids = f"run_id {rid!r}" if rid is not None else f"identity {run_id(recorded)!r}"
        errs.append(f"identity: the file records {ids}, but its sections give run_id "
                    f"{derived_id!r} (recorded -> sections: "
                    f"{describe_difference(recorded, derived)}); was the file edited by hand "
                    "or mislabelled?")
    elif rid is not None and rid != derived_id:
        why = ("the recorded identity matches the sections, so the run_id itself is wrong"
               if isinstance(recorded, dict) else "the file records no identity to compare")
        errs.append(f"run_id: the file records {rid!r}, but its sections give {derived_id!r} "
                    f"({why}); was the file edited by hand or mislabelled?")


# Applied in this order after the generic walk; rule_identity_matches runs only on an otherwise
# valid object (its recomputation needs sound sections).
RULES: tuple[Callable[[list[str], dict], None], ...] = (
    rule_metrics_are_fractions, rule_history_epochs_increase, rule_selection_on_dev,
    rule_per_class_thresholds, rule_free_form_is_json, rule_identity_matches,
    rule_kernels_are_names)


def rule_major_version(errs: list[str], source: str, obj: dict) -> bool:
    """schema_version is "MAJOR.MINOR" with this reader's major (anything else is refused at
    once, alone: another major is another schema). Return True when unknown keys are errors
    (minor <= this reader's; a newer minor may add keys, which are then ignored)."""
    if "schema_version" not in obj:
        errs.append(f"schema_version: missing (expected '{SCHEMA_VERSION}')")
        return True
    version = obj["schema_version"]
    match = _VERSION_RE.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        errs.append(_fail("schema_version", "a string 'MAJOR.MINOR' such as "
                          f"'{SCHEMA_VERSION}'", version))
        return True
    if int(match[1]) != _MAJOR:
        _raise(source, [f"unsupported schema_version {version!r} "
                        f"(this reader understands {_MAJOR}.x)"])
    return int(match[2]) <= _MINOR


# ----------------------------------------------------------------------------- public API


def validate(obj: Any, source: str = "<results>") -> None:
    """Check ``obj`` against the results schema; return None or raise :class:`SchemaError`.

    All problems are collected and reported together (``SchemaError.errors``), except that a
    foreign major ``schema_version`` is reported alone. ``source`` (usually the file path)
    starts the message. ``obj`` is not modified.
    """
    errs: list[str] = []
    if not isinstance(obj, dict):
        _raise(source, [_fail("(top level)", "a JSON object", obj)])
    strict = rule_major_version(errs, source, obj)
    _check_fields(errs, "", obj, Result, strict)
    for rule in RULES:
        rule(errs, obj)
    if errs:
        _raise(source, errs)


def write_results(path: str | os.PathLike[str], obj: Result | dict) -> pathlib.Path:
    """Validate ``obj`` (a :class:`Result` or its dict) and write it atomically to ``path``.

    Raises :class:`SchemaError` before touching the filesystem when ``obj`` is invalid or its
    ``schema_version`` is not :data:`SCHEMA_VERSION` (a writer writes only the version it
    knows). Returns the path written (see :func:`mllb_core.io.write_json_atomic`).
    """
    source = os.fspath(path)
    data = obj.to_dict() if isinstance(obj, Result) else obj
    validate(data, source=source)
    if data["schema_version"] != SCHEMA_VERSION:
        _raise(source, [f"schema_version: this writer writes {SCHEMA_VERSION!r}, "
                        f"got {data['schema_version']!r}"])
    return write_json_atomic(path, data)


def read_results(path: str | os.PathLike[str]) -> dict:
    """Read and validate one results file; return the object (a dict).

    Raises :class:`SchemaError` naming the file: with line and column for invalid JSON, or
    the schema problems. ``OSError`` (e.g. a missing file) propagates unchanged.
    """
    source = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        try:
            text = f.read()
        except UnicodeDecodeError as e:
            raise SchemaError(f"{source}: not UTF-8 text ({e})", source=source) from e
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise SchemaError(f"{source}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}",
                          source=source) from e
    validate(obj, source=source)
    return obj


def load_result(path: str | os.PathLike[str]) -> Result:
    """Read, validate and type one results file (see :func:`read_results`)."""
    return _build(Result, read_results(path))


def iter_results(root: str | os.PathLike[str]
                 ) -> Iterator[tuple[pathlib.Path, dict | SchemaError]]:
    """Yield ``(path, results)`` or ``(path, SchemaError)`` for every results file below ``root``.

    Results files are the ``*.json`` files at any depth, sorted by path, except resolved
    configs (``*.config.json``), a task's own prediction files (``*.predictions.json``, e.g.
    DocRED submissions), files under a ``checkpoints`` directory (the engine's checkpoints of
    unfinished cells) and anything hidden (a name starting with ``.``, at any level
    below ``root``, which also skips ``.tmp-*`` files of a write in progress). A file that
    cannot be read or does not validate yields its error instead of raising, so the caller
    decides whether to stop or skip. Raises ``NotADirectoryError``/``FileNotFoundError`` when
    ``root`` is not a directory, since an empty leaderboard from a mistyped path would look
    like a valid answer.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        if root.exists():
            raise NotADirectoryError(f"results root is not a directory: {root}")
        raise FileNotFoundError(f"results root does not exist: {root}")
    paths = sorted(
        p for p in root.rglob("*.json")
        if p.is_file()
        and not p.name.endswith((".config.json", ".predictions.json"))
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        # the engine's checkpoints of unfinished cells (<output_dir>/checkpoints/...)
        and "checkpoints" not in p.relative_to(root).parts[:-1]
    )
    for p in paths:
        try:
            yield p, read_results(p)
        except SchemaError as e:
            yield p, e
        except OSError as e:
            # Unreadable (permissions, removed since the listing): the caller's decision too.
            error = SchemaError(f"{p}: cannot read: {e}", source=str(p))
            error.__cause__ = e
            yield p, error
