"""The results JSON schema: the one place that knows what a results file looks like.

Every training run writes exactly one results file; the leaderboard reads them all. This module
validates such files (:func:`validate`), writes them atomically (:func:`write_results`), reads
them back (:func:`read_results`) and walks a results tree (:func:`iter_results`). A violation
raises :class:`SchemaError` (a ``ValueError``) whose message names the file, the field path
(``task.num_examples``, ``history[2].dev.map``), what is wrong and what was expected.

Schema version 1.0
------------------
Every key is required unless marked optional. ``int`` never accepts a boolean; ``number`` is an
int or a float, never a boolean, never NaN or infinity (NaN/inf are never written either).

``schema_version``  string ``"MAJOR.MINOR"``. Readers accept major 1 (``"1.x"``) and refuse any
                    other major version.
``task``            object:
    ``name``, ``version``, ``dataset``, ``split``   non-empty strings
    ``num_labels``, ``num_examples``                ints >= 1
    ``data_fingerprint``  ``"sha256:"`` + 64 lowercase hex digits (compared as strings, so the
                          lowercase ``hexdigest()`` spelling is the only one accepted)
``model``           object: ``name`` non-empty string, ``kwargs`` object,
                    ``num_parameters`` int >= 0
``loss``            object: ``name`` non-empty string, ``preset`` non-empty string or null,
                    ``kwargs`` object (the fully resolved hyper-parameters)
``seed``            int
``metrics``         non-empty object, metric name -> number. **Metrics are fractions**: every
                    value must lie in [0, 1] (a 61.0 that should be 0.61 is caught here), except
                    the names listed in ``extra.unbounded_metrics`` (a loss value, a count, ...).
``higher_is_better``  object with exactly the keys of ``metrics``, boolean values
``selection``       object: ``metric`` non-empty string (when ``history`` is non-empty it must
                    be a key of every ``history[i].dev``), ``split`` must be ``"dev"`` (model
                    selection never uses the evaluation split), ``epoch`` int >= 0 (0 means
                    "before training" or "final"; an epoch >= 1 must have a ``history`` entry
                    when ``history`` is non-empty)
``threshold``       object: ``policy`` one of ``fixed``, ``dev_tuned``, ``per_class_dev_tuned``,
                    ``loss_decide``; ``value`` a number, null, or a list of numbers (one per
                    class, so its length is ``task.num_labels``)
``history``         list (may be empty) of objects, epochs strictly increasing:
    ``epoch``       int >= 1
    ``train_loss``  number
    ``dev``         object, metric name -> number
    other keys      optional; each a number (``lr``) or an object name -> number (``dev_ema``)
``config``          object: the resolved run config
``env``             object: ``git_commit`` non-empty string (``"unknown"`` outside a checkout),
                    ``git_dirty`` bool, ``torch``, ``accelerate``, ``device`` non-empty strings
                    (``"cpu"``, ``"cuda:NVIDIA H100"``), ``world_size`` int >= 1,
                    ``mixed_precision`` one of ``no``, ``bf16``, ``fp16``, ``fp8``
``timing``          object: ``train_s``, ``eval_s``, ``examples_per_s`` numbers >= 0
``created_at``      ISO-8601 timestamp with a timezone, e.g. ``"2026-11-22T03:40:00+00:00"``

Optional top-level keys (any other top-level key is an error):

``extra``           free-form object for run facts that have no field of their own (which
                    weights were evaluated, e.g. EMA; counts; ...). One key has a meaning:
                    ``extra.unbounded_metrics``, a list of metric names exempt from the [0, 1]
                    rule.
``scores_file``     string: path of the saved ``.npz`` of test scores, relative to the directory
                    of the results file, with ``/`` separators and no ``..``.

The free-form objects (``model.kwargs``, ``loss.kwargs``, ``config``, ``extra``) must still be
plain JSON: string keys; values null, bool, int, finite float, string, list or object.

Sections have no keys beyond those listed. A file whose minor version is newer than
:data:`SCHEMA_VERSION` may carry keys that a later 1.x added; such keys are ignored rather than
refused, which is what lets a 1.0 reader read a 1.1 file.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

from mllb_core.errors import UserError
from mllb_core.io import write_json_atomic

__all__ = [
    "SCHEMA_VERSION",
    "SchemaError",
    "iter_results",
    "read_results",
    "validate",
    "write_json_atomic",
    "write_results",
]

SCHEMA_VERSION = "1.0"
_MAJOR, _MINOR = (int(part) for part in SCHEMA_VERSION.split("."))

THRESHOLD_POLICIES = ("fixed", "dev_tuned", "per_class_dev_tuned", "loss_decide")
MIXED_PRECISION = ("no", "bf16", "fp16", "fp8")

_VERSION_RE = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
_FINGERPRINT_RE = re.compile(r"sha256:[0-9a-f]{64}")
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


# ----------------------------------------------------------------------------- value predicates


def _is_int(v: Any) -> bool:
    # bool is a subclass of int in Python, but `"num_examples": true` is a bug, not a count.
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


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


# A field check is (what is expected, in words; predicate). The words serve both the
# "wrong value" and the "missing" message, so the two never disagree.
_Check = tuple[str, Callable[[Any], bool]]


def _non_empty_str() -> _Check:
    return "a non-empty string", lambda v: isinstance(v, str) and bool(v.strip())


def _int_at_least(lo: int) -> _Check:
    return f"an integer >= {lo}", lambda v: _is_int(v) and v >= lo


def _number_at_least(lo: float) -> _Check:
    return f"a finite number >= {lo:g}", lambda v: _is_finite(v) and v >= lo


def _one_of(choices: Sequence[str]) -> _Check:
    return ("one of " + ", ".join(repr(c) for c in choices),
            lambda v: isinstance(v, str) and v in choices)


def _of_type(kind: type, words: str) -> _Check:
    return words, lambda v: isinstance(v, kind)


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


_ANY: _Check = ("a value", lambda v: True)  # required key whose value the caller checks itself

_TASK: dict[str, _Check] = {
    "name": _non_empty_str(),
    "version": _non_empty_str(),
    "dataset": _non_empty_str(),
    "split": _non_empty_str(),
    "num_labels": _int_at_least(1),
    "num_examples": _int_at_least(1),
    "data_fingerprint": ("'sha256:' followed by 64 lowercase hex digits",
                         lambda v: isinstance(v, str) and _FINGERPRINT_RE.fullmatch(v) is not None),
}
_MODEL: dict[str, _Check] = {
    "name": _non_empty_str(),
    "kwargs": _of_type(dict, "an object"),
    "num_parameters": _int_at_least(0),
}
_LOSS: dict[str, _Check] = {
    "name": _non_empty_str(),
    "preset": ("a non-empty string or null",
               lambda v: v is None or (isinstance(v, str) and bool(v.strip()))),
    "kwargs": _of_type(dict, "an object"),
}
_SELECTION: dict[str, _Check] = {
    "metric": _non_empty_str(),
    "split": _ANY,
    "epoch": _int_at_least(0),
}
_THRESHOLD: dict[str, _Check] = {
    "policy": _one_of(THRESHOLD_POLICIES),
    "value": _ANY,
}
_ENV: dict[str, _Check] = {
    "git_commit": _non_empty_str(),
    "git_dirty": _of_type(bool, "a boolean"),
    "torch": _non_empty_str(),
    "accelerate": _non_empty_str(),
    "device": _non_empty_str(),
    "world_size": _int_at_least(1),
    "mixed_precision": _one_of(MIXED_PRECISION),
}
_TIMING: dict[str, _Check] = {
    "train_s": _number_at_least(0),
    "eval_s": _number_at_least(0),
    "examples_per_s": _number_at_least(0),
}
_TOP_LEVEL = (
    "schema_version", "task", "model", "loss", "seed", "metrics", "higher_is_better",
    "selection", "threshold", "history", "config", "env", "timing", "created_at",
)
_TOP_LEVEL_OPTIONAL = ("extra", "scores_file")


# ----------------------------------------------------------------------------- section checks


def _check_object(errs: list[str], path: str, obj: Any, fields: Mapping[str, _Check],
                  strict: bool) -> dict | None:
    """Check a fixed-key object; return it when it is an object at all, else None."""
    if not isinstance(obj, dict):
        errs.append(_fail(path, "an object", obj))
        return None
    for key, (expected, ok) in fields.items():
        if key not in obj:
            errs.append(f"{path}.{key}: missing (expected {expected})")
        elif not ok(obj[key]):
            errs.append(_fail(f"{path}.{key}", expected, obj[key]))
    if strict:
        for key in obj:
            if key not in fields:
                errs.append(f"{path}.{key}: unknown key (expected exactly: "
                            f"{', '.join(fields)})")
    return obj


def _check_json_value(errs: list[str], path: str, v: Any, _open: frozenset[int] = frozenset()
                      ) -> None:
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


def _unbounded_metrics(errs: list[str], extra: Any) -> set[str]:
    if not isinstance(extra, dict) or "unbounded_metrics" not in extra:
        return set()
    names = extra["unbounded_metrics"]
    expected = "a list of metric names"
    if not isinstance(names, list):
        errs.append(_fail("extra.unbounded_metrics", expected, names))
        return set()
    good = set()
    for i, name in enumerate(names):
        if isinstance(name, str) and name:
            good.add(name)
        else:
            errs.append(_fail(f"extra.unbounded_metrics[{i}]", "a non-empty string", name))
    return good


def _check_metrics(errs: list[str], obj: dict) -> None:
    """metrics and higher_is_better, whichever are present (absence is reported elsewhere)."""
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
        extra = [k for k in hib if k not in obj["metrics"]]
        if missing or extra:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(repr(k) for k in missing))
            if extra:
                parts.append("not in metrics " + ", ".join(repr(k) for k in extra))
            errs.append("higher_is_better: keys must be exactly the keys of metrics; "
                        + "; ".join(parts))
    for key, v in hib.items():
        if not isinstance(v, bool):
            errs.append(_fail(f"higher_is_better.{key}", "a boolean", v))


def _check_history(errs: list[str], history: Any) -> list[dict] | None:
    """Return the history entries (objects only) when history is a list, else None."""
    if not isinstance(history, list):
        errs.append(_fail("history", "a list of epoch objects (may be empty)", history))
        return None
    entries = []
    previous_epoch = None
    for i, entry in enumerate(history):
        path = f"history[{i}]"
        if not isinstance(entry, dict):
            errs.append(_fail(path, "an object", entry))
            continue
        entries.append(entry)
        _check_object(errs, path, entry, {
            "epoch": _int_at_least(1),
            "train_loss": ("a finite number", _is_finite),
        }, strict=False)
        if "dev" in entry:
            _check_number_map(errs, f"{path}.dev", entry["dev"])
        else:
            errs.append(f"{path}.dev: missing (expected an object of metric name -> number)")
        # Other keys are optional extras: a number ("lr") or a number map ("dev_ema").
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
            if previous_epoch is not None and epoch <= previous_epoch:
                errs.append(f"{path}.epoch: {epoch} after epoch {previous_epoch} "
                            "(epochs must be strictly increasing)")
            previous_epoch = epoch
    return entries


def _check_selection(errs: list[str], selection: Any, history: list[dict] | None,
                     strict: bool) -> None:
    sel = _check_object(errs, "selection", selection, _SELECTION, strict)
    if sel is None:
        return
    split = sel.get("split")
    if "split" in sel and split != "dev":
        errs.append("selection.split must be 'dev' (model selection never uses the evaluation "
                    f"split), got {split!r}")
    if not history:
        return
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


def _check_threshold(errs: list[str], threshold: Any, num_labels: Any, strict: bool) -> None:
    th = _check_object(errs, "threshold", threshold, _THRESHOLD, strict)
    if th is None or "value" not in th:
        return
    value = th["value"]
    expected = "a finite number, null, or a list of finite numbers (one per class)"
    if value is None or _is_finite(value):
        return
    if not isinstance(value, list):
        errs.append(_fail("threshold.value", expected, value))
        return
    for i, v in enumerate(value):
        if not _is_finite(v):
            errs.append(_fail(f"threshold.value[{i}]", "a finite number", v))
    if _is_int(num_labels) and len(value) != num_labels:
        errs.append(f"threshold.value: {len(value)} per-class thresholds, but task.num_labels "
                    f"is {num_labels}")


def _check_scores_file(errs: list[str], v: Any) -> None:
    expected = "a relative path to a .npz file, with '/' separators and no '..'"
    if not isinstance(v, str) or not v.endswith(".npz"):
        errs.append(_fail("scores_file", expected, v))
        return
    parts = v.split("/")
    # Relative to the results file, so the results tree can be moved or copied as a whole.
    if v.startswith("/") or "\\" in v or re.match(r"[A-Za-z]:", v) or ".." in parts:
        errs.append(_fail("scores_file", expected, v))


def _parse_version(errs: list[str], source: str, obj: dict) -> bool:
    """Check schema_version; raise at once on a foreign major. Return True when strict."""
    if "schema_version" not in obj:
        errs.append(f"schema_version: missing (expected '{SCHEMA_VERSION}')")
        return True
    version = obj["schema_version"]
    match = _VERSION_RE.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        errs.append(_fail("schema_version", "a string 'MAJOR.MINOR' such as "
                          f"'{SCHEMA_VERSION}'", version))
        return True
    major, minor = int(match[1]), int(match[2])
    if major != _MAJOR:
        # Nothing else is checked: another major version is another schema.
        _raise(source, [f"unsupported schema_version {version!r} "
                        f"(this reader understands {_MAJOR}.x)"])
    # A newer minor may add keys this reader does not know; they are ignored, not refused.
    return minor <= _MINOR


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
    strict = _parse_version(errs, source, obj)

    missing = [k for k in _TOP_LEVEL if k not in obj]
    for key in missing:
        errs.append(f"{key}: missing required top-level key")
    if strict:
        allowed = set(_TOP_LEVEL) | set(_TOP_LEVEL_OPTIONAL)
        for key in obj:
            if key not in allowed:
                errs.append(f"{key}: unknown top-level key (put free-form data under 'extra')")

    task = _check_object(errs, "task", obj["task"], _TASK, strict) if "task" in obj else None
    if "model" in obj:
        _check_object(errs, "model", obj["model"], _MODEL, strict)
    if "loss" in obj:
        _check_object(errs, "loss", obj["loss"], _LOSS, strict)
    if "seed" in obj and not _is_int(obj["seed"]):
        errs.append(_fail("seed", "an integer", obj["seed"]))
    _check_metrics(errs, obj)
    history = _check_history(errs, obj["history"]) if "history" in obj else None
    if "selection" in obj:
        _check_selection(errs, obj["selection"], history, strict)
    if "threshold" in obj:
        _check_threshold(errs, obj["threshold"], (task or {}).get("num_labels"), strict)
    if "config" in obj and not isinstance(obj["config"], dict):
        errs.append(_fail("config", "an object", obj["config"]))
    if "env" in obj:
        _check_object(errs, "env", obj["env"], _ENV, strict)
    if "timing" in obj:
        _check_object(errs, "timing", obj["timing"], _TIMING, strict)
    if "created_at" in obj and not _is_aware_timestamp(obj["created_at"]):
        errs.append(_fail("created_at", "an ISO-8601 timestamp with a timezone, such as "
                          "'2026-11-22T03:40:00+00:00'", obj["created_at"]))
    if "extra" in obj and not isinstance(obj["extra"], dict):
        errs.append(_fail("extra", "an object", obj["extra"]))
    if "scores_file" in obj:
        _check_scores_file(errs, obj["scores_file"])

    # Free-form parts: only JSON-ness is checked, so NaN in a config is caught with its path
    # here rather than by json.dumps(allow_nan=False) without one.
    free_form = [("config", obj.get("config")), ("extra", obj.get("extra"))]
    for section in ("model", "loss"):
        if isinstance(obj.get(section), dict):
            free_form.append((f"{section}.kwargs", obj[section].get("kwargs")))
    for path, value in free_form:
        if isinstance(value, dict):
            _check_json_value(errs, path, value)

    if errs:
        _raise(source, errs)


def write_results(path: str | os.PathLike[str], obj: dict) -> pathlib.Path:
    """Validate ``obj`` and write it atomically to ``path`` (see :func:`write_json_atomic`).

    Raises :class:`SchemaError` before touching the filesystem when ``obj`` is invalid or its
    ``schema_version`` is not this module's :data:`SCHEMA_VERSION` (a writer writes only the
    version it knows). Returns the path written.
    """
    source = os.fspath(path)
    validate(obj, source=source)
    if obj["schema_version"] != SCHEMA_VERSION:
        _raise(source, [f"schema_version: this writer writes {SCHEMA_VERSION!r}, "
                        f"got {obj['schema_version']!r}"])
    return write_json_atomic(path, obj)


def read_results(path: str | os.PathLike[str]) -> dict:
    """Read and validate one results file; return the object.

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


def iter_results(root: str | os.PathLike[str]
                 ) -> Iterator[tuple[pathlib.Path, dict | SchemaError]]:
    """Yield ``(path, results)`` or ``(path, SchemaError)`` for every results file below ``root``.

    Results files are the ``*.json`` files at any depth, sorted by path, except resolved
    configs (``*.config.json``), a task's own prediction files (``*.predictions.json``, e.g.
    DocRED submissions) and anything hidden (a name starting with ``.``, at any level
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
