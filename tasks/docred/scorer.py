"""DocRED scorer with the semantics of the official ``code/evaluation.py`` (thunlp/DocRED).

Predictions are records ``{"title", "h_idx", "t_idx", "r", "evidence"?}`` (the official
submission format). As in the official script:

* predictions are deduplicated on (title, h_idx, t_idx, r), the first occurrence kept;
* precision = correct / #deduplicated predictions (those of titles missing from the gold file
  included, when they are allowed); recall = correct / #distinct gold (title, r, h, t) facts;
* Ign F1: a correct prediction is "in train" when some (head mention name, tail mention name, r)
  is a fact of the training file (facts = every mention-name pair of every labelled triple);
  Ign precision = (correct - correct_in_train) / (#predictions - correct_in_train); recall is not
  adjusted;
* evidence: predicted sentences counted over the predictions of known titles, correct ones only
  over correct relations, gold ones over every gold label.

Additions (not in the official script), documented here: intra- and inter-sentence F1, where a
(title, h, t) pair is intra-sentence when some mention of h and some mention of t share a
sentence; gold facts and predictions are split by that rule and scored separately. Unlike the
official script, a prediction whose title is not in the gold file is an error unless
``allow_unknown_titles`` is set (then it counts as a wrong prediction, as officially), because it
almost always means the wrong gold file.

CLI: ``python -m tasks.docred.scorer --pred P.json --gold G.json [--train T.json ...]`` prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.docred.data import DocREDFormatError, read_json

Fact = tuple[str, str, int, int]  # (title, r, h, t), the official key order


@dataclass
class Gold:
    """Gold facts of one DocRED file, indexed for scoring."""

    facts: dict[Fact, set[int]] = field(default_factory=dict)  # fact -> gold evidence
    total_evidence: int = 0
    vertex_sets: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)


def _fail(source: str, index: int | None, fld: str, problem: str) -> DocREDFormatError:
    where = f"{source}: record {index}" if index is not None else source
    return DocREDFormatError(f"{where}: field {fld!r}: {problem}")


def _require_list(obj: Any, source: str) -> list[Any]:
    if not isinstance(obj, list):
        raise DocREDFormatError(
            f"{source}: expected a JSON list of records, got {type(obj).__name__}")
    return obj


def _get(rec: Any, key: str, types: type | tuple[type, ...], source: str, index: int) -> Any:
    if not isinstance(rec, dict):
        raise _fail(source, index, key, f"record is a {type(rec).__name__}, expected an object")
    if key not in rec:
        raise _fail(source, index, key, "missing")
    value = rec[key]
    if not isinstance(value, types) or isinstance(value, bool):
        names = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise _fail(source, index, key, f"expected {names}, got {value!r}")
    return value


def _vertex_set(doc: Any, source: str, index: int) -> list[list[dict[str, Any]]]:
    vs = _get(doc, "vertexSet", list, source, index)
    for e, entity in enumerate(vs):
        if not isinstance(entity, list) or not entity:
            raise _fail(source, index, f"vertexSet[{e}]", "expected a non-empty list of mentions")
        for m, mention in enumerate(entity):
            for key, types in (("name", str), ("sent_id", int)):
                if not isinstance(mention, dict) or not isinstance(mention.get(key), types):
                    raise _fail(source, index, f"vertexSet[{e}][{m}].{key}",
                                f"expected {types.__name__}")
    return vs


def _labels(doc: dict[str, Any], n_entities: int, source: str, index: int):
    labels = doc.get("labels", [])
    if not isinstance(labels, list):
        raise _fail(source, index, "labels", "expected a list")
    for j, lab in enumerate(labels):
        fld = f"labels[{j}]"
        if not isinstance(lab, dict):
            raise _fail(source, index, fld, "expected an object")
        for key in ("h", "t"):
            v = lab.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < n_entities:
                raise _fail(source, index, f"{fld}.{key}",
                            f"{v!r} is not an entity index of vertexSet (0..{n_entities - 1})")
        if not isinstance(lab.get("r"), str):
            raise _fail(source, index, f"{fld}.r", f"expected a relation id string, got "
                                                   f"{lab.get('r')!r}")
        evidence = lab.get("evidence", [])
        if not isinstance(evidence, list) or not all(isinstance(x, int) for x in evidence):
            raise _fail(source, index, f"{fld}.evidence", "expected a list of sentence ids")
        yield lab["h"], lab["t"], lab["r"], evidence


def load_gold(docs: Sequence[Any], source: str = "gold") -> Gold:
    """Index the gold facts of DocRED-format documents (validated; errors name the record)."""
    gold = Gold()
    for i, doc in enumerate(_require_list(docs, source)):
        title = _get(doc, "title", str, source, i)
        vs = _vertex_set(doc, source, i)
        gold.vertex_sets[title] = vs
        for h, t, r, evidence in _labels(doc, len(vs), source, i):
            gold.facts[(title, r, h, t)] = set(evidence)
            gold.total_evidence += len(evidence)
    return gold


def load_train_facts(docs: Sequence[Any], source: str = "train") -> set[tuple[str, str, str]]:
    """(head mention name, tail mention name, r) for every mention pair of every train label."""
    facts: set[tuple[str, str, str]] = set()
    for i, doc in enumerate(_require_list(docs, source)):
        vs = _vertex_set(doc, source, i)
        for h, t, r, _ in _labels(doc, len(vs), source, i):
            for m1 in vs[h]:
                for m2 in vs[t]:
                    facts.add((m1["name"], m2["name"], r))
    return facts


def _is_intra(vs: list[list[dict[str, Any]]], h: int, t: int) -> bool:
    return bool({m["sent_id"] for m in vs[h]} & {m["sent_id"] for m in vs[t]})


def _prf(correct: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = correct / n_pred if n_pred else 0.0
    r = correct / n_gold if n_gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r > 0 else 0.0)


def _checked_predictions(preds: Any, gold: Gold, allow_unknown_titles: bool, source: str):
    """Validate submission records and deduplicate them (first occurrence kept)."""
    seen: set[tuple[str, int, int, str]] = set()
    out = []
    for i, rec in enumerate(_require_list(preds, source)):
        title = _get(rec, "title", str, source, i)
        h = _get(rec, "h_idx", int, source, i)
        t = _get(rec, "t_idx", int, source, i)
        r = _get(rec, "r", str, source, i)
        evidence = rec.get("evidence", [])
        if not isinstance(evidence, list) or not all(isinstance(x, int) for x in evidence):
            raise _fail(source, i, "evidence", f"expected a list of sentence ids, got {evidence!r}")
        vs = gold.vertex_sets.get(title)
        if vs is None and not allow_unknown_titles:
            raise _fail(source, i, "title", f"{title!r} is not a title of the gold file")
        if vs is not None:
            for key, v in (("h_idx", h), ("t_idx", t)):
                if not 0 <= v < len(vs):
                    raise _fail(source, i, key, f"{v} is outside the vertexSet of {title!r} "
                                                f"(0..{len(vs) - 1})")
        key = (title, h, t, r)
        if key not in seen:
            seen.add(key)
            out.append((title, h, t, r, set(evidence)))
    return out


def score(
    predictions: Any,
    gold_docs: Sequence[Any],
    train_docs: Iterable[Sequence[Any]] = (),
    *,
    allow_unknown_titles: bool = False,
    sources: tuple[str, str] = ("predictions", "gold"),
) -> dict[str, float]:
    """Score a DocRED submission against gold documents (see the module docstring).

    Args:
        predictions: list of ``{"title", "h_idx", "t_idx", "r", "evidence"?}`` records.
        gold_docs: DocRED-format documents with ``labels``.
        train_docs: zero or more training files (lists of documents) for Ign F1.
        allow_unknown_titles: count predictions of titles absent from the gold file as wrong
            (the official behaviour) instead of raising.
        sources: names of the prediction and gold inputs, for error messages.

    Returns:
        precision, recall, f1, ign_precision, ign_f1, evidence_precision, evidence_recall,
        evidence_f1, intra_f1, inter_f1 (fractions) and the counts behind them.
    """
    gold = load_gold(gold_docs, sources[1])
    in_train_facts: set[tuple[str, str, str]] = set()
    for k, docs in enumerate(train_docs):
        in_train_facts |= load_train_facts(docs, f"train[{k}]")
    preds = _checked_predictions(predictions, gold, allow_unknown_titles, sources[0])

    correct = correct_in_train = correct_evidence = predicted_evidence = 0
    split_pred = {True: 0, False: 0}
    split_correct = {True: 0, False: 0}
    for title, h, t, r, evidence in preds:
        vs = gold.vertex_sets.get(title)
        if vs is None:
            continue  # counted in the precision denominator only, as officially
        predicted_evidence += len(evidence)
        intra = _is_intra(vs, h, t)
        split_pred[intra] += 1
        gold_evidence = gold.facts.get((title, r, h, t))
        if gold_evidence is None:
            continue
        correct += 1
        split_correct[intra] += 1
        correct_evidence += len(gold_evidence & evidence)
        if any((m1["name"], m2["name"], r) in in_train_facts for m1 in vs[h] for m2 in vs[t]):
            correct_in_train += 1

    n_pred, n_gold = len(preds), len(gold.facts)
    p, rec, f1 = _prf(correct, n_pred, n_gold)
    ign_den = n_pred - correct_in_train
    ign_p = (correct - correct_in_train) / ign_den if ign_den else 0.0
    ign_f1 = 2 * ign_p * rec / (ign_p + rec) if ign_p + rec > 0 else 0.0
    evi_p = correct_evidence / predicted_evidence if predicted_evidence else 0.0
    evi_r = correct_evidence / gold.total_evidence if gold.total_evidence else 0.0
    evi_f1 = 2 * evi_p * evi_r / (evi_p + evi_r) if evi_p + evi_r > 0 else 0.0
    gold_split = {True: 0, False: 0}
    for title, _r, h, t in gold.facts:
        gold_split[_is_intra(gold.vertex_sets[title], h, t)] += 1
    return {
        "precision": p, "recall": rec, "f1": f1,
        "ign_precision": ign_p, "ign_f1": ign_f1,
        "evidence_precision": evi_p, "evidence_recall": evi_r, "evidence_f1": evi_f1,
        "intra_f1": _prf(split_correct[True], split_pred[True], gold_split[True])[2],
        "inter_f1": _prf(split_correct[False], split_pred[False], gold_split[False])[2],
        "num_predictions": float(n_pred), "num_gold": float(n_gold), "correct": float(correct),
        "correct_in_train": float(correct_in_train),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints one JSON object (or one error line, exit status 2)."""
    ap = argparse.ArgumentParser(prog="python -m tasks.docred.scorer", description=__doc__.split(
        "\n")[0])
    ap.add_argument("--pred", required=True, help="submission JSON (list of records)")
    ap.add_argument("--gold", required=True, help="DocRED-format gold file")
    ap.add_argument("--train", action="append", default=[],
                    help="training file(s) for Ign F1 (repeatable)")
    ap.add_argument("--allow-unknown-titles", action="store_true",
                    help="count predictions of titles absent from the gold file as wrong")
    args = ap.parse_args(argv)
    try:
        result = score(
            read_json(args.pred, "prediction"),
            read_json(args.gold, "gold"),
            [read_json(p, "train") for p in args.train],
            allow_unknown_titles=args.allow_unknown_titles,
            sources=(str(Path(args.pred)), str(Path(args.gold))),
        )
    except DocREDFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
