"""MLLB multi-label metrics as a Hugging Face ``evaluate`` module (see README.md).

Every number is computed by ``tasks.metrics`` (MLLB's one functional core); this script only
declares the inputs and the options. Options are constructor arguments, which ``evaluate.load``
forwards (``evaluate.load(path, threshold=0.3)``), so they survive ``evaluate.combine``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import evaluate
import numpy as np

from tasks import metrics as M

_DESCRIPTION = """\
Corpus-level multi-label metrics of MLLB (the Multi-Label Loss Benchmark): mAP (classes without a
positive skipped or scored 0), CP/CR/CF1/OP/OR/OF1 and their top-k variants, micro/macro
precision/recall/F1, hamming loss, subset accuracy, P@k and nDCG@k. Computed over everything
added (add_batch), never as a mean of per-batch values.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: scores [N, C], one list of C floats per example (probabilities for the
        threshold-based metrics, e.g. sigmoid(logits); any real scores for mAP / P@k / nDCG@k).
    references: targets [N, C], one list of C ints in {0, 1} per example.
Options (constructor arguments: evaluate.load(path, threshold=..., ...), not compute arguments):
    threshold: float or C floats, a label is predicted when its score >= threshold (0.5).
    top_k: int or None, the k of the CP_top{k}... variants (3); None leaves them out.
    ks: the k of P@k and nDCG@k ((1, 3, 5)).
    missing: "skip" (a class without a positive is left out of mAP, MLLB's map) or "zero"
        (AP 0 for it, the ASL / ML-Decoder convention) ("skip").
Returns:
    map, map_classes_scored, map_classes_skipped, CP, CR, CF1, OP, OR, OF1,
    classes_without_predictions, classes_without_positives, CP_top3 ... OF1_top3,
    micro_/macro_ precision/recall/f1, hamming_loss, subset_accuracy, P@k, nDCG@k.
Examples:
    >>> from tasks.hf_evaluate import load
    >>> load("mllb_multilabel").compute(predictions=[[0.9, 0.1], [0.2, 0.8]],
    ...                                 references=[[1, 0], [0, 1]])["map"]
    1.0
"""

_CITATION = """\
@misc{mllb, title={MLLB: the Multi-Label Loss Benchmark}}
"""

_LABEL_F1 = ("CP", "CR", "CF1", "OP", "OR", "OF1")


def _matrix(rows: list[list[Any]], what: str) -> np.ndarray:
    """[N, C] array of the rows; ValueError naming the first row whose length differs."""
    for i, row in enumerate(rows):
        if len(row) != len(rows[0]):
            raise ValueError(f"{what}: row {i} has {len(row)} values, row 0 has {len(rows[0])}; "
                             f"expected [N, C] (the same C for every example)")
    return np.asarray(rows)


class MllbMultilabel(evaluate.Metric):
    """mAP, label F1 (ML-GCN), classification and ranking metrics from ``tasks.metrics``."""

    def __init__(self, threshold: float | Sequence[float] = 0.5, top_k: int | None = 3,
                 ks: Sequence[int] = (1, 3, 5), missing: str = "skip", **kwargs: Any) -> None:
        # validated here so that a bad option fails at load time, not after a whole eval loop
        if missing not in M.MISSING_AP:
            raise ValueError(f"missing must be one of {M.MISSING_AP}, got {missing!r}")
        if top_k is not None and (isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1):
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        ks = tuple(int(k) for k in ks)
        if not ks or min(ks) < 1:
            raise ValueError(f"ks must be positive ints, got {ks!r}")
        self.threshold = threshold if np.isscalar(threshold) else np.asarray(threshold, float)
        self.top_k, self.ks, self.missing = top_k, ks, missing
        super().__init__(**kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # float64: the scores reach tasks.metrics exactly as given (float32 would round them)
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("float64")),
                "references": datasets.Sequence(datasets.Value("int32")),
            }),
            reference_urls=["https://github.com/Alibaba-MIIL/ASL",
                            "https://github.com/megvii-research/ML-GCN"],
        )

    def _compute(self, predictions: list[list[float]], references: list[list[int]]
                 ) -> dict[str, float]:
        # (format="numpy" is refused for Sequence features: the rows come as Python lists)
        s, t = _matrix(predictions, "predictions"), _matrix(references, "references")
        s, t = M.check_scores_targets(s, t)  # [N, C] float64, [N, C] bool
        ap = M.mean_average_precision(s, t, missing=self.missing)
        out: dict[str, float] = {"map": ap.value, "map_classes_scored": float(ap.classes_scored),
                                 "map_classes_skipped": float(ap.classes_skipped)}
        out.update(M.label_f1_scores(s, t, self.threshold))
        if self.top_k is not None:
            top = M.label_f1_scores(s, t, self.threshold, top_k=int(self.top_k))
            out.update({f"{k}_top{self.top_k}": top[k] for k in _LABEL_F1})
        out.update(M.classification_scores(s, t, self.threshold))
        out.update(M.ranking_scores(s, t, self.ks))
        return out
