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

import numpy as np

from tasks.base import TASKS, ArrayDataset, ArrayTask

__all__ = ["ArrayDataset", "SyntheticTask"]


@TASKS.register("synthetic")
class SyntheticTask(ArrayTask):
    """Synthetic multi-label classification; metrics mAP (primary), CP/CR/CF1, OP/OR/OF1."""

    name = "synthetic"
    version = "1"
    primary_metric = "map"
    metrics = ("map", "CP", "CR", "CF1", "OP", "OR", "OF1", "macro_f1")
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
        self.num_features = num_features
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
        a, b = num_train, num_train + num_dev
        train_y = y[:a].copy()
        drop = (rng.random(train_y.shape) < missing_rate) & (train_y > 0)
        train_y[drop] = 0.0
        self.num_missing_train_positives = int(drop.sum())
        self.set_arrays(f"synthetic-{num_labels}l-missing{missing_rate:g}-seed{data_seed}",
                        train=(x[:a], train_y), dev=(x[a:b], y[a:b].copy()),
                        test=(x[b:], y[b:].copy()))
