"""The Task contract (v2) and the task registry.

A task owns its data, its collation, how a batch becomes ``(logits, targets)``, its decision
rule and its corpus-level metrics; ``run_task.py`` knows nothing else about it. ``evaluate``
receives the gathered row ids with the scores, so the order in which DDP shards arrive cannot
matter, and it is *pure*: the decision rule (a threshold tuned on dev, per-class thresholds) is
an explicit :class:`DecisionRule` from :meth:`Task.calibrate`, never hidden state.

A plain array task implements ``dataset``, ``targets`` and ``logits_and_targets`` (or derives
from :class:`ArrayTask` and implements only ``__init__``); the metrics it reports are names of
``tasks.metrics.METRICS`` listed in ``metrics``. ``create_task`` checks the contract before any
training starts.
"""

from __future__ import annotations

import abc
import difflib
import functools
import hashlib
import inspect
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, overload

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate

from mllb_core.errors import UserError
from mllb_core.registry import Registry
from tasks.metrics import METRICS, compute_metrics

# the read-only real data beside the repository (../shared/data), or $MLLB_SHARED_DATA
SHARED_DATA = Path(os.environ.get("MLLB_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))
TASKS: Registry[Callable[..., Task]] = Registry("task", entry_point_group="mllb.tasks")
SPLITS = ("train", "dev", "test")
POLICIES = ("fixed", "dev_tuned", "per_class_dev_tuned", "threshold_class")


class TaskContractError(UserError, TypeError):
    """A task plugin breaks the Task contract; the message names the task and the attribute."""


@dataclass(frozen=True)
class DecisionRule:
    """How scores become label decisions; recorded as the results' ``threshold``.

    Attributes:
        policy: ``"fixed"`` (a constant), ``"dev_tuned"`` (one global threshold tuned on the
            dev split) or ``"per_class_dev_tuned"`` (``per_class`` tuned on dev).
        value: the global threshold, used by every ``"decisions"`` metric.
        per_class: one threshold per class (policy ``per_class_dev_tuned`` only), used by the
            ``"rule"`` metrics (``adaptive_*``); a class without a dev positive keeps ``value``.
        threshold_index, top_k: policy ``"threshold_class"`` only, a rule a loss declares
            (``MultiLabelLoss.decision_rule()``, e.g. ATLOP's ``atl``): a class is predicted when
            its score exceeds the score of column ``threshold_index`` of the same row, at most
            the ``top_k`` best per row (0: no cap); that column is never predicted. ``value`` is
            then None: there is no global threshold, so only a task that computes its decisions
            itself (:meth:`decide`) lists the policy in ``Task.declared_rules``.

    Frozen and compared by value, so two calibrations of the same dev scores are equal.
    """

    policy: Literal["fixed", "dev_tuned", "per_class_dev_tuned", "threshold_class"] = "fixed"
    value: float | None = 0.5
    per_class: tuple[float, ...] | None = None
    threshold_index: int | None = None
    top_k: int | None = None

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"DecisionRule: policy must be one of {POLICIES}, "
                             f"got {self.policy!r}")
        declared = self.policy == "threshold_class"
        if declared:
            for name in ("threshold_index", "top_k"):
                v = getattr(self, name)
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                    raise ValueError(f"DecisionRule: {name} must be an integer >= 0 for policy "
                                     f"'threshold_class', got {v!r}")
                object.__setattr__(self, name, int(v))
            if self.value is not None:
                raise ValueError(f"DecisionRule: policy 'threshold_class' has no global "
                                 f"threshold (value None), got {self.value!r}")
            if self.per_class is not None:
                raise ValueError("DecisionRule: per_class is given exactly when the policy is "
                                 "'per_class_dev_tuned' (policy 'threshold_class')")
            return
        if self.threshold_index is not None or self.top_k is not None:
            raise ValueError(f"DecisionRule: threshold_index and top_k belong to the policy "
                             f"'threshold_class' (policy {self.policy!r})")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) or \
                not math.isfinite(self.value):
            raise ValueError(f"DecisionRule: value must be a finite number, got {self.value!r}")
        object.__setattr__(self, "value", float(self.value))
        if (self.per_class is None) != (self.policy != "per_class_dev_tuned"):
            raise ValueError(f"DecisionRule: per_class is given exactly when the policy is "
                             f"'per_class_dev_tuned' (policy {self.policy!r})")
        if self.per_class is not None:
            values = tuple(float(v) for v in np.asarray(self.per_class, dtype=np.float64).ravel())
            if not values or not all(map(math.isfinite, values)):
                raise ValueError("DecisionRule: per_class must be a non-empty list of finite "
                                 "numbers")
            object.__setattr__(self, "per_class", values)

    def to_json(self) -> dict[str, Any]:
        """``{"policy", "value"}`` plus ``"per_class"`` (a list) when set, and
        ``"threshold_index"``, ``"top_k"`` for ``threshold_class``: results ``threshold``."""
        out: dict[str, Any] = {"policy": self.policy, "value": self.value}
        if self.per_class is not None:
            out["per_class"] = list(self.per_class)
        if self.policy == "threshold_class":
            out["threshold_index"], out["top_k"] = self.threshold_index, self.top_k
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DecisionRule:
        """The rule of a results file's ``threshold`` (inverse of :meth:`to_json`)."""
        per_class = obj.get("per_class")
        return cls(obj["policy"], obj["value"], None if per_class is None else tuple(per_class),
                   obj.get("threshold_index"), obj.get("top_k"))

    @classmethod
    def from_declared(cls, declared: Mapping[str, Any]) -> DecisionRule:
        """The rule a loss declares (``MultiLabelLoss.decision_rule()``), e.g.
        ``{"policy": "threshold_class", "threshold_index": 0, "top_k": 4}``."""
        extra = sorted(set(declared) - {"policy", "threshold_index", "top_k"})
        if declared.get("policy") != "threshold_class" or extra:
            raise ValueError(f"DecisionRule: a declared rule is {{policy: 'threshold_class', "
                             f"threshold_index, top_k}}, got {dict(declared)!r}")
        return cls("threshold_class", None, None, declared.get("threshold_index"),
                   declared.get("top_k"))

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Boolean decisions [N, C] of ``scores`` [N, C] under this rule.

        ``threshold_class``: ``scores[i, c] > scores[i, threshold_index]``, and ``c`` among the
        ``top_k`` best columns of row ``i`` (ties broken by column order; ATLOP's ``get_label``
        ranks the threshold column too, which is the same: a column above it outranks it);
        the threshold column is never predicted. Otherwise ``scores > per_class`` (per-class
        policy) or ``scores > value``.
        """
        s = np.asarray(scores)
        if self.policy != "threshold_class":
            return s > (np.asarray(self.per_class) if self.per_class is not None else self.value)
        k = self.threshold_index
        if not 0 <= k < s.shape[1]:
            raise ValueError(f"DecisionRule: threshold_index {k} is not a column of scores "
                             f"with {s.shape[1]} columns")
        above = s > s[:, k:k + 1]  # [N, C]
        if 0 < self.top_k < s.shape[1]:
            best = np.argsort(-s, axis=1, kind="stable")[:, :self.top_k]  # [N, top_k]
            keep = np.zeros_like(above)
            np.put_along_axis(keep, best, True, axis=1)
            above &= keep
        above[:, k] = False
        return above


class Task(abc.ABC):
    """A multi-label task plugin (see DESIGN.md, "The Task contract").

    Class attributes:
        name: registry name. version: bump when data processing or metric code changes numbers.
        metrics: the metric names ``evaluate`` returns, from ``tasks.metrics.METRICS``.
        primary_metric: one of ``metrics``; dev-set model selection and leaderboard sorting.
        default_model: the model used when the run config names none.
    ``higher_is_better`` is derived from ``METRICS`` (do not set it).

    Instance attributes set by ``__init__``: ``num_labels``, ``dataset_name`` (the data variant,
    e.g. "re-docred-devtrain"), ``kwargs`` (the resolved task options, for the results JSON).
    """

    name: ClassVar[str]
    version: ClassVar[str]
    primary_metric: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]
    # the loss-declared decision-rule policies calibrate() can apply (e.g. "threshold_class")
    declared_rules: ClassVar[tuple[str, ...]] = ()
    default_model: ClassVar[str]
    num_labels: int
    dataset_name: str
    kwargs: dict[str, Any]

    @property
    def higher_is_better(self) -> dict[str, bool]:
        """{metric: direction} for every name in ``metrics``, from ``METRICS``."""
        return {m: METRICS.get(m).higher_is_better for m in self.metrics}

    # -- data --------------------------------------------------------------------------------
    @abc.abstractmethod
    def dataset(self, split: str) -> Dataset:
        """The examples of ``split`` (one of train/dev/test); every item carries an int "index".

        When one example yields several output rows (DocRED: a document, its entity pairs),
        ``collate`` numbers the rows over the split and ``row_ids`` returns those numbers;
        ``evaluate`` then receives row ids and row scores instead of example ids.
        """

    @abc.abstractmethod
    def targets(self, split: str) -> np.ndarray:
        """Binary targets [num_rows(split), C] of the split in row-id order (what is scored)."""

    def num_rows(self, split: str) -> int:
        """How many output rows ``evaluate`` expects for ``split`` (default: targets' rows)."""
        return len(self.targets(split))

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Batch a list of items (default: ``torch.utils.data.default_collate``)."""
        return default_collate(items)

    def row_ids(self, batch: dict[str, Any]) -> Tensor:
        """Ids [N] of the output rows of ``batch`` over its split (default ``batch["index"]``)."""
        return batch["index"]

    @abc.abstractmethod
    def logits_and_targets(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Run the model on a batch: logits [N, C] (cosines for a cosine head), targets [N, C]."""

    # -- decisions and metrics -----------------------------------------------------------------
    def default_rule(self) -> DecisionRule:
        """The uncalibrated decision rule ``evaluate`` uses when given none (fixed 0.5)."""
        return DecisionRule()

    def calibrate(self, index: Tensor, scores: Tensor,
                  declared: Mapping[str, Any] | None = None) -> DecisionRule:
        """The decision rule from the gathered DEV rows (row ids [N], probabilities [N, C]).

        ``declared``: the rule the loss was trained for (``MultiLabelLoss.decision_rule()``);
        a task applies it when its policy is in ``declared_rules`` (checked by
        :meth:`check_declared_rule` before training). Default: :meth:`default_rule` (nothing is
        tuned). Pure: it changes no state.
        """
        self.check_declared_rule(declared)
        return self.default_rule()

    def check_declared_rule(self, declared: Mapping[str, Any] | None) -> None:
        """UserError when the loss declares a decision rule this task cannot apply."""
        if declared is not None and declared.get("policy") not in self.declared_rules:
            raise UserError(
                f"task {self.name!r} cannot apply the decision rule the loss declares "
                f"({declared.get('policy')!r}); it applies {list(self.declared_rules) or 'none'}")

    def evaluate(self, split: str, index: Tensor, scores: Tensor,
                 rule: DecisionRule | None = None) -> dict[str, float]:
        """The declared ``metrics`` of ``scores`` [N, C] (probabilities) for the rows ``index``.

        Pure: the same arguments give the same result, whatever ran before. ``rule`` None is
        :meth:`default_rule`. The rows may arrive in any order but must cover every row of the
        split exactly once. Metrics with a function in ``METRICS`` are computed here over
        :meth:`targets`; the rest come from :meth:`extra_metrics`.
        """
        check_split(self, split)
        rule = self.default_rule() if rule is None else rule
        targets = self.targets(split)
        s = self.ordered_scores(split, index, scores)
        if s.shape != targets.shape:
            raise ValueError(f"task {self.name!r}, split {split!r}: scores have shape "
                             f"{tuple(s.shape)}, targets {tuple(targets.shape)}")
        own = [m for m in self.metrics if METRICS.get(m).fn is not None]
        out = compute_metrics(own, s, targets, threshold=rule.value, per_class=rule.per_class)
        out.update(self.extra_metrics(split, s, targets, rule))
        if set(out) != set(self.metrics):
            raise TaskContractError(
                f"task {self.name!r}: evaluate computed {sorted(out)} but metrics declares "
                f"{sorted(self.metrics)}; extra_metrics must return exactly the declared metrics "
                f"that METRICS has no function for")
        return {m: float(out[m]) for m in self.metrics}

    def extra_metrics(self, split: str, scores: np.ndarray, targets: np.ndarray,
                      rule: DecisionRule) -> dict[str, float]:
        """Metrics the task computes itself (``METRICS`` entries with ``fn`` None).

        ``scores`` float64 [R, C] and ``targets`` [R, C] are in row-id order. Default: none.
        """
        return {}

    def example_counts(self, split: str, index: Tensor, scores: Tensor,
                       rule: DecisionRule | None = None) -> np.ndarray | None:
        """Per-example counts [E, K] of the primary metric under ``rule``, or None (default).

        For a primary metric in ``tasks.metrics.COUNTED_METRICS`` (a ratio of counts summed
        over examples, e.g. entity micro F1 from (correct, predicted, gold) per sentence): row
        ``e`` holds example ``e``'s counts in that entry's column order, so that the summed
        rows give the metric ``evaluate`` reports. The leaderboard's paired bootstrap resamples
        these rows when a task's test scores are too large to publish. None: the bootstrap
        resamples score rows (``resamplable`` metrics) or falls back to seeds.
        """
        return None

    def ordered_scores(self, split: str, index: Tensor, scores: Tensor) -> np.ndarray:
        """``scores`` as float64 numpy in row-id order (checks every row comes exactly once)."""
        return as_scores(scores)[index_order(index, self.num_rows(split), self.name, split)]

    def write_predictions(self, split: str, index: Tensor, scores: Tensor, stem: Path,
                          rule: DecisionRule | None = None) -> str | None:
        """Write the task's own prediction file for ``split`` beside the results.

        ``stem`` is the results path without ``.json``; ``rule`` the decision rule of the run
        (None: :meth:`default_rule`). Return the written file's name (it is recorded in the
        results' ``extra.predictions_file``), or None when the task has no prediction format of
        its own (the default). DocRED writes the official submission format.
        """
        return None

    # -- model and provenance ----------------------------------------------------------------
    def model_kwargs(self) -> dict[str, Any]:
        """Model constructor arguments the data dictates (e.g. the input feature size)."""
        return {}

    def prepare_model(self, model: nn.Module) -> None:
        """Initialize a freshly built model from the data (e.g. pretrained word vectors)."""
        return None

    def info(self) -> dict[str, Any]:
        """Data counts and policies worth recording in the results JSON (``extra.task_info``)."""
        return {}

    def data_fingerprint(self) -> str:
        """sha256 over what the task feeds the model and scores against (all splits)."""
        h = hashlib.sha256()
        h.update(f"{self.name}:{self.version}:{self.dataset_name}".encode())
        for split in SPLITS:
            for array in self.fingerprint_arrays(split):
                h.update(np.ascontiguousarray(array).tobytes())
        return "sha256:" + h.hexdigest()

    def fingerprint_arrays(self, split: str) -> list[np.ndarray]:
        """Arrays that identify a split's data; override for non-tensor datasets."""
        return []


class ArrayDataset(Dataset):
    """Items ``{"index", "features", "targets" [C]}`` over two aligned arrays.

    A ``DataLoader`` with a batch size asks for a batch's rows at once (``__getitems__``): one
    indexing per array, where the row-by-row path builds a dict and two views per row and the
    collation stacks them again (about a third of the time at batch 32; BENCHMARKS.md,
    "Training-loop overhead").
    """

    def __init__(self, features: np.ndarray, targets: np.ndarray) -> None:
        self.features = torch.from_numpy(features)
        self.targets = torch.from_numpy(targets)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"index": i, "features": self.features[i], "targets": self.targets[i]}

    def __getitems__(self, indices: list[int]) -> Sequence[dict[str, Any]]:
        """The rows ``indices`` (what a ``DataLoader`` fetches per batch): a :class:`RowBatch`,
        or, for a subclass that overrides ``__getitem__``, the list of its items (a batched
        gather would bypass the override)."""
        if type(self).__getitem__ is not ArrayDataset.__getitem__:
            return [self[i] for i in indices]
        return RowBatch(self, indices)


class RowBatch(Sequence[dict[str, Any]]):
    """Rows of an :class:`ArrayDataset`, as ``DataLoader`` fetches a batch.

    ``collated`` is the batch ``default_collate`` makes of the rows one by one, gathered at
    once: the same values, dtypes and shapes (``index`` [B] as ``default_collate`` types the
    indices, ``features`` [B, ...], ``targets`` [B, C]); :meth:`ArrayTask.collate` returns it
    as it is. It is built on first use, so a ``collate_fn`` that wants the rows themselves
    (indexing or iterating this sequence gives the items ``ArrayDataset[i]`` gives) does not
    pay for it.
    """

    def __init__(self, dataset: ArrayDataset, indices: Sequence[int]) -> None:
        self._dataset = dataset
        self._indices = list(indices)

    @functools.cached_property
    def collated(self) -> dict[str, Any]:
        """The batch: ``index`` [B], ``features`` [B, ...], ``targets`` [B, C]."""
        index = default_collate(self._indices)  # [B]; its dtype, and its error on no rows
        rows = index.long()  # index itself when it is int64 already
        return {"index": index, "features": self._dataset.features[rows],
                "targets": self._dataset.targets[rows]}

    def __len__(self) -> int:
        return len(self._indices)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self._dataset[j] for j in self._indices[i]]
        return self._dataset[self._indices[i]]


class ArrayTask(Task):
    """A task whose splits are in-memory arrays: features [N, ...] and binary targets [N, C].

    A subclass declares the class attributes and, in ``__init__``, builds its arrays and calls
    :meth:`set_arrays`. Dataset, collation (a batch's rows gathered at once, as
    ``default_collate`` would batch them), targets, ``model_kwargs``
    (``in_features`` for 2-D features), the fingerprint and ``kwargs`` (the ``__init__``
    arguments, defaults included) come from here; ``evaluate`` is the base template.
    """

    _x: dict[str, np.ndarray]
    _y: dict[str, np.ndarray]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording_kwargs(cls.__dict__["__init__"])  # type: ignore[misc]

    def set_arrays(self, dataset_name: str, *, train: tuple[np.ndarray, np.ndarray],
                   dev: tuple[np.ndarray, np.ndarray],
                   test: tuple[np.ndarray, np.ndarray]) -> None:
        """Install the splits as (features, targets) pairs; sets num_labels and dataset_name.

        Targets must be 0/1 with the same number of columns in every split; they are stored
        as float32 (the losses' dtype), features as given.
        """
        self._x, self._y = {}, {}
        for split, (x, y) in zip(SPLITS, (train, dev, test), strict=True):
            x, y = np.asarray(x), np.asarray(y)
            if y.ndim != 2 or len(x) != len(y) or len(y) == 0:
                raise ValueError(f"task {self.name!r}, split {split!r}: expected features "
                                 f"[N, ...] and targets [N, C] with N > 0, got shapes "
                                 f"{x.shape} and {y.shape}")
            if not np.isin(y, (0, 1)).all():
                raise ValueError(f"task {self.name!r}, split {split!r}: targets must be 0 or 1")
            self._x[split], self._y[split] = x, y.astype(np.float32, copy=False)
        widths = {s: y.shape[1] for s, y in self._y.items()}
        if len(set(widths.values())) != 1:
            raise ValueError(f"task {self.name!r}: targets differ in width per split: {widths}")
        self.num_labels = widths["train"]
        self.dataset_name = dataset_name

    def dataset(self, split: str) -> Dataset:
        """The split's (features, targets) rows."""
        check_split(self, split)
        return ArrayDataset(self._x[split], self._y[split])

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Batch rows: a :class:`RowBatch` is already batched; other lists of items go through
        ``default_collate`` (the same result, row by row)."""
        if isinstance(items, RowBatch):
            return items.collated
        return default_collate(items)

    def targets(self, split: str) -> np.ndarray:
        """The split's targets [N, C] (float32 0/1)."""
        check_split(self, split)
        return self._y[split]

    def logits_and_targets(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """model(features) -> [N, C]; targets [N, C]."""
        return model(batch["features"]), batch["targets"]

    def model_kwargs(self) -> dict[str, Any]:
        """``in_features`` for flat feature vectors (the ``mlp`` model's argument)."""
        x = self._x["train"]
        return {"in_features": int(x.shape[1])} if x.ndim == 2 else {}

    def fingerprint_arrays(self, split: str) -> list[np.ndarray]:
        """Features and targets of the split."""
        return [self._x[split], self._y[split]]


def _recording_kwargs(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap an ``__init__`` so ``self.kwargs`` holds its bound arguments, defaults applied.

    The outermost ``__init__`` of a subclass chain records (inner ones see ``kwargs`` set);
    an ``__init__`` that assigns ``self.kwargs`` itself wins.
    """
    sig = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        if "kwargs" not in vars(self):
            bound = sig.bind(self, *args, **kwargs)
            bound.apply_defaults()
            recorded: dict[str, Any] = {}
            for pname, param in list(sig.parameters.items())[1:]:
                if param.kind is inspect.Parameter.VAR_KEYWORD:
                    recorded.update(bound.arguments.get(pname, {}))
                elif param.kind is not inspect.Parameter.VAR_POSITIONAL:
                    recorded[pname] = bound.arguments[pname]
            self.kwargs = recorded
        init(self, *args, **kwargs)

    return wrapper



class ListDataset(Dataset):
    """Items held in a list, one per example (a document, a sentence); the task collates them."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def find_file(folder: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` that is a file in ``folder`` (official file names, in order)."""
    return next((folder / n for n in names if (folder / n).is_file()), None)


def held_out(ids: list[str], fraction: float, salt: str = "") -> set[str]:
    """The fixed held-out part of a train split (e.g. MLLB's dev set when only train is given).

    The ``round(fraction * len(ids))`` ids with the smallest ``sha256(salt + id)`` hex digest:
    independent of file order, RNGs and machines. At least 1 when ``fraction > 0`` and there
    are 2+ ids, and never all of them (a split with nothing left to train on is useless).
    ``fraction`` must be in [0, 1) and ids distinct, else ValueError.
    """
    if not (isinstance(fraction, (int, float)) and 0 <= fraction < 1):
        raise ValueError(f"fraction={fraction!r}: expected a number in [0, 1)")
    if len(set(ids)) != len(ids):
        raise ValueError("ids: duplicate ids; a held-out selection needs unique ids")
    n = round(fraction * len(ids))
    if fraction > 0 and len(ids) > 1:
        n = max(n, 1)
    n = min(n, max(len(ids) - 1, 0))
    ranked = sorted(ids, key=lambda i: hashlib.sha256((salt + i).encode()).hexdigest())
    return set(ranked[:n])


def create_task(name: str, **kwargs: Any) -> Task:
    """Instantiate the registered task ``name`` with its options, checking the Task contract.

    The class attributes are checked before the data is read, the instance attributes right
    after ``__init__``; a violation is a :class:`TaskContractError` naming task and attribute.
    """
    factory = TASKS.get(name)
    if isinstance(factory, type):
        check_task_class(factory, name)
    task = factory(**kwargs)
    if not isinstance(task, Task):
        raise TaskContractError(f"task {name!r}: the registered factory returned "
                                f"{type(task).__name__}, not a tasks.base.Task")
    check_task_class(type(task), name)
    check_task_instance(task, name)
    return task


def _contract(label: str, attr: str, problem: str) -> TaskContractError:
    return TaskContractError(f"task {label}: attribute {attr!r} {problem} (Task contract v2, "
                             f"tasks/base.py)")


def check_task_class(cls: type, registered_as: str | None = None) -> None:
    """Check a task class's declared attributes; raise :class:`TaskContractError` if broken.

    ``name``, ``version``, ``primary_metric`` and ``default_model`` non-empty strings;
    ``metrics`` a non-empty tuple of distinct ``METRICS`` names holding ``primary_metric``;
    ``higher_is_better`` not overridden (it is derived from ``METRICS``); nothing abstract left.
    """
    label = repr(registered_as or getattr(cls, "name", None) or cls.__name__)
    label += f" ({cls.__module__}.{cls.__qualname__})"
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TaskContractError(f"task {label}: not a subclass of tasks.base.Task")
    for attr in ("name", "version", "primary_metric", "default_model"):
        value = getattr(cls, attr, None)
        if value is None:
            raise _contract(label, attr, "is missing; declare it as a class attribute")
        if not isinstance(value, str) or not value:
            raise _contract(label, attr, f"must be a non-empty string, got {value!r}")
    metrics = getattr(cls, "metrics", None)
    if metrics is None:
        raise _contract(label, "metrics", "is missing; declare metrics: ClassVar[tuple[str, "
                        "...]] with names from tasks.metrics.METRICS")
    if not isinstance(metrics, (tuple, list)) or not metrics or \
            not all(isinstance(m, str) for m in metrics):
        raise _contract(label, "metrics", f"must be a non-empty tuple of metric names, got "
                        f"{metrics!r}")
    if len(set(metrics)) != len(metrics):
        raise _contract(label, "metrics", f"lists a name twice: {list(metrics)}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        close = [c for m in unknown for c in difflib.get_close_matches(m, METRICS.names(), n=1)]
        hint = f" (did you mean {close}?)" if close else ""
        raise _contract(label, "metrics", f"names {unknown}{hint}, which tasks.metrics.METRICS "
                        f"does not have (tasks.metrics.register_metric adds one; "
                        f"METRICS.names() lists the {len(METRICS)} known)")
    if cls.primary_metric not in metrics:
        raise _contract(label, "primary_metric", f"{cls.primary_metric!r} is not one of metrics "
                        f"{list(metrics)}")
    for klass in cls.__mro__:
        if klass is Task:
            break
        if "higher_is_better" in vars(klass):
            raise _contract(label, "higher_is_better", f"is set in {klass.__qualname__}; it is "
                            f"derived from tasks.metrics.METRICS, remove it")
    abstract = sorted(getattr(cls, "__abstractmethods__", ()))
    if abstract:
        raise _contract(label, abstract[0], f"is not implemented (abstract: {abstract})")


def check_task_instance(task: Task, registered_as: str | None = None) -> None:
    """Check what ``__init__`` sets: ``num_labels`` a positive int, ``dataset_name`` a non-empty
    string, ``kwargs`` a dict; raise :class:`TaskContractError` if not."""
    label = repr(registered_as or task.name) + f" ({type(task).__module__}." \
        f"{type(task).__qualname__})"
    n = getattr(task, "num_labels", None)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise _contract(label, "num_labels", f"must be a positive int after __init__, got {n!r}")
    ds = getattr(task, "dataset_name", None)
    if not isinstance(ds, str) or not ds:
        raise _contract(label, "dataset_name", f"must be a non-empty string after __init__, got "
                        f"{ds!r}")
    kw = getattr(task, "kwargs", None)
    if not isinstance(kw, dict):
        raise _contract(label, "kwargs", f"must be the dict of resolved task options after "
                        f"__init__, got {kw!r}")


def check_split(task: Task, split: str) -> None:
    """Raise a clear error for a split name the task does not have."""
    if split not in SPLITS:
        raise ValueError(f"task {task.name!r}: unknown split {split!r}; expected one of {SPLITS}")


def index_order(index: Tensor, n: int, task: str, split: str) -> np.ndarray:
    """Check that ``index`` holds every example of a split exactly once; return its argsort."""
    idx = index.detach().cpu().numpy().astype(np.int64).reshape(-1)
    order = np.argsort(idx, kind="stable")
    if len(idx) != n or not np.array_equal(idx[order], np.arange(n)):
        seen = np.bincount(idx[(idx >= 0) & (idx < n)], minlength=n)
        raise ValueError(
            f"task {task!r}, split {split!r}: scores must cover every one of the {n} examples "
            f"exactly once; got {len(idx)} scores, {int((seen == 0).sum())} examples missing, "
            f"{int((seen > 1).sum())} duplicated"
        )
    return order


def as_scores(scores: Tensor) -> np.ndarray:
    """Scores tensor -> float64 numpy [N, C]."""
    return scores.detach().to("cpu", torch.float64).numpy()
