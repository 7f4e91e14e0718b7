"""MLLB's DocRED scorer (official ``evaluation.py`` semantics) as an ``evaluate`` module.

Every number comes from ``tasks.docred.scorer.score``. evaluate stores inputs as rows of equal
count, while a submission has one record per predicted fact and the gold file one record per
document: a row here is one gold document (a JSON string) and the JSON list of the submission
records of that document's title (``tasks.hf_evaluate.docred_inputs`` builds both lists).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import datasets
import evaluate

from tasks.docred.data import DocREDFormatError, read_json
from tasks.docred.scorer import score

_DESCRIPTION = """\
DocRED relation-extraction scores with the semantics of the official evaluation script
(thunlp/DocRED code/evaluation.py), computed by MLLB's tasks.docred.scorer: precision, recall,
F1, Ign F1 / Ign precision (facts seen in the training files ignored), evidence P/R/F1, and
intra-/inter-sentence F1.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: one string per row: the JSON list of official submission records
        {"title", "h_idx", "t_idx", "r", "evidence"?} (any titles; the rows are concatenated in
        order before scoring, so grouping the records by document changes nothing).
    references: one string per row: one gold DocRED document (JSON, with "title", "vertexSet",
        "labels").
Options (constructor arguments: evaluate.load(path, train_files=[...]), not compute arguments):
    train_files: paths of DocRED training files for Ign F1 (none: Ign F1 = F1 on correct facts).
    train_docs: the same as already-parsed lists of documents.
    allow_unknown_titles: count records of titles absent from the references as wrong (the
        official behaviour) instead of raising (False).
Returns:
    precision, recall, f1, ign_precision, ign_f1, evidence_precision, evidence_recall,
    evidence_f1, intra_f1, inter_f1, num_predictions, num_gold, correct, correct_in_train.
"""

_CITATION = """\
@inproceedings{yao2019docred, title={{DocRED}: A Large-Scale Document-Level Relation Extraction
Dataset}, author={Yao, Yuan and others}, booktitle={ACL}, year={2019}}
"""


def _parse(text: str, what: str, row: int) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        expected = ("a JSON list of submission records" if what == "predictions"
                    else "one DocRED document as JSON")
        raise DocREDFormatError(f"{what}[{row}]: not valid JSON ({err}); expected {expected}"
                                ) from err


class MllbDocred(evaluate.Metric):
    """DocRED P/R/F1 and Ign F1 from ``tasks.docred.scorer.score``."""

    def __init__(self, train_files: Sequence[str] = (),
                 train_docs: Sequence[Sequence[Any]] = (),
                 allow_unknown_titles: bool = False, **kwargs: Any) -> None:
        if isinstance(train_files, str):
            train_files = [train_files]
        # read once at load time: a wrong path fails before the evaluation loop
        self.train_docs = [*(read_json(p, "DocRED train file") for p in train_files),
                           *train_docs]
        self.allow_unknown_titles = bool(allow_unknown_titles)
        super().__init__(**kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
            codebase_urls=["https://github.com/thunlp/DocRED"],
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        records: list[Any] = []
        for i, text in enumerate(predictions):
            rows = _parse(text, "predictions", i)
            if not isinstance(rows, list):
                raise DocREDFormatError(f"predictions[{i}]: expected a JSON list of submission "
                                        f"records, got a {type(rows).__name__}")
            records.extend(rows)
        gold = [_parse(text, "references", i) for i, text in enumerate(references)]
        return score(records, gold, self.train_docs,
                     allow_unknown_titles=self.allow_unknown_titles)
