"""MLLB's multi-label NER decoding + seqeval as a Hugging Face ``evaluate`` module.

A model gives each token 2K sigmoid scores (B and I of each of K entity types, independent
columns, so mentions of different types may nest or overlap). ``tasks.ner.decoding.decode``
turns them into one strict-IOB2 tag sequence per (type, sentence); the gold spans go through
``encode`` then ``decode`` (what a perfect model outputs); ``ner_scores`` runs seqeval (strict,
IOB2) over all those sequences. This script only declares the inputs and options.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import evaluate
import numpy as np

from tasks.ner.decoding import TYPES, decode, encode, ner_scores

_DESCRIPTION = """\
Entity-level precision, recall and F1 (seqeval, strict IOB2) of multi-label token
classification: per-token B/I scores of every entity type are decoded into one IOB2 sequence per
(sentence, type), so nested and overlapping mentions of different types are all scored.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: per sentence, the token scores [L, 2K]: one list of 2K floats per token,
        column 2k the B and 2k+1 the I score of types[k] (probabilities, e.g. sigmoid(logits)).
    references: per sentence, its gold spans: a list of {"start", "end", "type"} (token offsets
        in the sentence, end exclusive; type one of types).
Options (constructor arguments: evaluate.load(path, types=[...], threshold=...)):
    types: the K entity types, in column order (DocRED's PER, ORG, LOC, TIME, NUM, MISC).
    threshold: a score >= threshold is on: one number, one per type [K] or per column [2K] (0.5).
Returns:
    entity_micro_f1, entity_precision, entity_recall, entity_macro_f1 and f1_<TYPE> per type.
"""

_CITATION = """\
@misc{seqeval, title={seqeval: A Python framework for sequence labeling evaluation},
author={Hiroki Nakayama}, year={2018}, url={https://github.com/chakki-works/seqeval}}
"""


class MllbNer(evaluate.Metric):
    """seqeval entity scores of decoded multi-label B/I token scores."""

    def __init__(self, types: Sequence[str] = TYPES, threshold: float | Sequence[float] = 0.5,
                 **kwargs: Any) -> None:
        self.types = tuple(types)
        if not self.types or len(set(self.types)) != len(self.types):
            raise ValueError(f"types must be distinct names, got {list(types)}")
        self.threshold = threshold
        super().__init__(**kwargs)

    def _info(self) -> evaluate.MetricInfo:
        span = {"start": datasets.Value("int32"), "end": datasets.Value("int32"),
                "type": datasets.Value("string")}
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                "references": [span],  # a list of span dicts (Sequence(dict) is a dict of lists)
            }),
            codebase_urls=["https://github.com/chakki-works/seqeval"],
        )

    def _compute(self, predictions: list[list[list[float]]], references: list[Any]
                 ) -> dict[str, float]:
        width = 2 * len(self.types)
        blocks, lengths, spans = [], [], []
        for s, (rows, gold) in enumerate(zip(predictions, references, strict=True)):
            if any(len(row) != width for row in rows):
                raise ValueError(f"predictions[{s}]: every token needs {width} scores (B and I "
                                 f"of each of {len(self.types)} types)")
            blocks.append(np.asarray(rows, dtype=np.float64).reshape(len(rows), width))
            lengths.append(len(rows))
            # datasets hands a list of span dicts back as one dict of columns
            cols = gold if isinstance(gold, dict) else {
                k: [g[k] for g in gold] for k in ("start", "end", "type")}
            spans.append(list(zip(cols["start"], cols["end"], cols["type"], strict=True)))
        scores = np.concatenate(blocks) if blocks else np.zeros((0, width))  # [T, 2K]
        try:
            targets = encode(spans, lengths, self.types)  # [T, 2K] in {0, 1}
        except ValueError as err:
            raise ValueError(f"references: {err}") from err
        gold_tags = decode(targets, lengths, self.types, 0.5)
        pred_tags = decode(scores, lengths, self.types, self.threshold)
        return ner_scores(gold_tags, pred_tags, self.types)
