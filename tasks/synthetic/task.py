"""A deterministic synthetic multi-label task that behaves like the real thing.

A hidden teacher (a random one-hidden-layer tanh network) maps Gaussian features to label scores;
logistic noise (scale ``label_noise``) makes the Bayes error non-zero (with the defaults the
teacher's own noiseless scores reach about 0.80 test mAP, a linear least-squares probe 0.65);
per-label thresholds give long-tailed (Zipf) label frequencies with ``avg_positives``
positives per example on average (about 3 of 80, like MS-COCO). ``missing_rate`` turns that
fraction of the *train* positives into negatives (the "missing labels" ASL's probability margin
is meant to absorb); dev and test stay clean. Everything derives from ``data_seed``, independent
of the training seed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from tasks import metrics as M
from tasks.base import TASKS, Task, as_scores, check_split, index_order


class ArrayDataset(Dataset):
    """Items ``{"index", "features" [D], "targets" [C]}`` over two aligned arrays."""

    def __init__(self, features: np.ndarray, targets: np.ndarray) -> None:
        self.features = torch.from_numpy(features)
        self.targets = torch.from_numpy(targets)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"index": i, "features": self.features[i], "targets": self.targets[i]}


@TASKS.register("synthetic")
class SyntheticTask(Task):
    """Synthetic multi-label classification; metrics mAP (primary), CP/CR/CF1, OP/OR/OF1."""

    name = "synthetic"
    version = "1"
    primary_metric = "map"
    higher_is_better: ClassVar[dict[str, bool]] = {
        k: True for k in ("map", "CP", "CR", "CF1", "OP", "OR", "OF1", "macro_f1")}
    default_model = "mlp"

    def __init__(self, num_labels: int = 80, num_features: int = 64, num_train: int = 8000,
                 num_dev: int = 2000, num_test: int = 4000, avg_positives: float = 3.0,
                 zipf: float = 1.0, label_noise: float = 0.1, missing_rate: float = 0.0,
                 data_seed: int = 0) -> None:
        if not 0 <= missing_rate < 1:
            raise ValueError(f"task 'synthetic': missing_rate must be in [0, 1), "
                             f"got {missing_rate}")
        if not 0 < avg_positives < num_labels / 2:
            raise ValueError(f"task 'synthetic': avg_positives must be in (0, num_labels/2), got "
                             f"{avg_positives}")
        self.kwargs = dict(num_labels=num_labels, num_features=num_features, num_train=num_train,
                           num_dev=num_dev, num_test=num_test, avg_positives=avg_positives,
                           zipf=zipf, label_noise=label_noise, missing_rate=missing_rate,
                           data_seed=data_seed)
        self.num_labels = num_labels
        self.num_features = num_features
        self.dataset_name = f"synthetic-{num_labels}l-missing{missing_rate:g}-seed{data_seed}"
        rng = np.random.default_rng(data_seed)
        n = num_train + num_dev + num_test
        x = rng.standard_normal((n, num_features)).astype(np.float32)
        hidden = rng.standard_normal((num_features, 2 * num_features)) / np.sqrt(num_features)
        out = rng.standard_normal((2 * num_features, num_labels))
        score = np.tanh(x @ hidden) @ out / np.sqrt(2 * num_features)  # [n, C], about unit scale
        score = score + label_noise * rng.logistic(size=score.shape)
        freq = 1.0 / np.arange(1, num_labels + 1) ** zipf
        freq = np.minimum(freq * avg_positives / freq.sum(), 0.5)  # [C] long-tailed frequencies
        # per-label threshold at the (1 - freq) quantile of that label's scores
        rank = np.floor((1.0 - freq) * (n - 1)).astype(np.int64)
        thresholds = np.sort(score, axis=0)[rank, np.arange(num_labels)]
        y = (score > thresholds).astype(np.float32)  # [n, C]
        cuts = {"train": (0, num_train), "dev": (num_train, num_train + num_dev),
                "test": (num_train + num_dev, n)}
        self._x = {s: x[a:b] for s, (a, b) in cuts.items()}
        self._y = {s: y[a:b].copy() for s, (a, b) in cuts.items()}
        drop = (rng.random(self._y["train"].shape) < missing_rate) & (self._y["train"] > 0)
        self._y["train"][drop] = 0.0
        self.num_missing_train_positives = int(drop.sum())

    def dataset(self, split: str) -> Dataset:
        """The split's examples."""
        check_split(self, split)
        return ArrayDataset(self._x[split], self._y[split])

    def model_kwargs(self) -> dict[str, Any]:
        """The MLP needs the feature size."""
        return {"in_features": self.num_features}

    def logits_and_targets(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """model(features) -> [N, C]; targets [N, C]."""
        return model(batch["features"]), batch["targets"]

    def evaluate(self, split: str, index: Tensor, scores: Tensor) -> dict[str, float]:
        """mAP, CP/CR/CF1, OP/OR/OF1 at 0.5 and macro F1 over the whole split."""
        check_split(self, split)
        targets = self._y[split]
        order = index_order(index, len(targets), self.name, split)
        s = as_scores(scores)[order]
        out = {"map": M.mean_average_precision(s, targets).value}
        f1 = M.label_f1_scores(s, targets)
        out.update({k: f1[k] for k in ("CP", "CR", "CF1", "OP", "OR", "OF1")})
        out["macro_f1"] = M.classification_scores(s, targets)["macro_f1"]
        return out

    def fingerprint_arrays(self, split: str) -> list[np.ndarray]:
        """Features and targets of the split."""
        return [self._x[split], self._y[split]]
