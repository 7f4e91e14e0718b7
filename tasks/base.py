"""The Task contract and the task registry.

A task owns its data, its collation, how a batch becomes ``(logits, targets)`` and its
corpus-level metrics; ``run_task.py`` knows nothing else about it. ``evaluate`` receives the
gathered example indices with the scores, so the order in which DDP shards arrive cannot matter.
"""

from __future__ import annotations

import abc
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate

from mllb_core.registry import Registry

# the read-only real data beside the repository (../shared/data), or $MLLB_SHARED_DATA
SHARED_DATA = Path(os.environ.get("MLLB_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))
TASKS: Registry[Callable[..., Task]] = Registry("task", entry_point_group="mllb.tasks")
SPLITS = ("train", "dev", "test")


class Task(abc.ABC):
    """A multi-label task plugin (see DESIGN.md, "The Task contract").

    Class attributes:
        name: registry name. version: bump when data processing or metric code changes numbers.
        primary_metric: used for dev-set model selection and leaderboard sorting.
        higher_is_better: one entry per metric ``evaluate`` returns.
        default_model: the model used when the run config names none.

    Instance attributes set by ``__init__``: ``num_labels``, ``dataset_name`` (the data variant,
    e.g. "re-docred-devtrain"), ``kwargs`` (the resolved task options, for the results JSON).
    """

    name: ClassVar[str]
    version: ClassVar[str]
    primary_metric: ClassVar[str]
    higher_is_better: ClassVar[dict[str, bool]]
    default_model: ClassVar[str]
    # decision rule of the threshold-based metrics, recorded in the results JSON
    threshold: ClassVar[dict[str, Any]] = {"policy": "fixed", "value": 0.5}
    # True when evaluate("dev") tunes the decision rule (DocRED's threshold): the loop then
    # evaluates dev once more with the selected weights before the test split
    tunes_on_dev: bool = False
    num_labels: int
    dataset_name: str
    kwargs: dict[str, Any]

    @abc.abstractmethod
    def dataset(self, split: str) -> Dataset:
        """The examples of ``split`` (one of train/dev/test); every item carries an int "index".

        When one example yields several output rows (DocRED: a document, its entity pairs),
        ``collate`` adds ``row_index`` [N] numbering the rows over the split; ``evaluate`` then
        receives those row ids and row scores instead of example ids.
        """

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Batch a list of items (default: ``torch.utils.data.default_collate``)."""
        return default_collate(items)

    @abc.abstractmethod
    def logits_and_targets(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Run the model on a batch: logits [N, C] (cosines for a cosine head), targets [N, C]."""

    @abc.abstractmethod
    def evaluate(self, split: str, index: Tensor, scores: Tensor) -> dict[str, float]:
        """Corpus-level metrics of ``scores`` [N, C] (probabilities) for examples ``index`` [N]."""

    def write_predictions(self, split: str, index: Tensor, scores: Tensor,
                          stem: Path) -> str | None:
        """Write the task's own prediction file for ``split`` beside the results.

        ``stem`` is the results path without ``.json``; return the written file's name (it is
        recorded in the results' ``extra.predictions_file``), or None when the task has no
        prediction format of its own (the default). DocRED writes the official submission
        format.
        """
        return None

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
    """Instantiate the registered task ``name`` with its options."""
    return TASKS.get(name)(**kwargs)


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
