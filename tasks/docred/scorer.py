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
import gc
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import reduce
from itertools import chain, compress, islice, repeat
from operator import is_not, itemgetter, or_
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tasks.docred.data import DocREDFormatError, read_json

# (title, h, t, r): the official script keys (title, r, h, t); this order is the one of a
# submission record, so the records' own key tuples look the facts up without new tuples
Fact = tuple[str, int, int, str]


@dataclass
class Gold:
    """Gold facts of one DocRED file, indexed for scoring."""

    # fact -> gold evidence sentence ids, as listed (only intersected with predicted sets, so
    # no set is built per gold fact)
    facts: dict[Fact, list[int]] = field(default_factory=dict)
    total_evidence: int = 0
    vertex_sets: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)
    # the intra/inter-sentence split: per entity of every document in turn, a bitmask of its
    # mentions' sentences (see _sentence_masks); a document's entities start at its offset
    doc_index: dict[str, int] = field(default_factory=dict)  # title -> (last) document row
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    masks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # distinct gold facts whose head and tail share a sentence
    n_intra: int = 0

    def index_entities(self, titles: list[str], vss: list[list[list[dict[str, Any]]]],
                       sent_ids: list[int], n_mentions: list[int]) -> None:
        """Fill the entity index from each document's title and vertexSet, every mention's
        sentence id in turn and each entity's mention count.

        A title given twice names its last document, as in ``vertex_sets`` (and officially).
        """
        self.doc_index = dict(zip(titles, range(len(titles)), strict=True))
        self.counts = np.fromiter(map(len, vss), dtype=np.int64, count=len(vss))
        self.offsets = np.cumsum(self.counts) - self.counts
        self.masks = _sentence_masks(sent_ids, n_mentions)

    def pair_masks(self, rows: np.ndarray, hs: Sequence[int], ts: Sequence[int]
                   ) -> np.ndarray | None:
        """``mask[h] & mask[t]`` of each (document row, h, t): 0 for an inter-sentence pair.

        None when some h or t is not an entity index of its document (the fast paths' range
        check, so valid input spends no separate pass on it).
        """
        n = len(hs)
        try:
            h = np.fromiter(hs, dtype=np.int64, count=n)
            t = np.fromiter(ts, dtype=np.int64, count=n)
        except OverflowError:
            return None
        count, offset = self.counts[rows], self.offsets[rows]
        if not ((h >= 0) & (h < count) & (t >= 0) & (t < count)).all():
            return None
        return self.masks[offset + h] & self.masks[offset + t]


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
    gold = _load_gold_fast(docs)
    if gold is not None:
        return gold
    # something is off (or merely unusual, e.g. a dict subclass): the record-by-record
    # validation below either accepts it or raises naming the record and field
    gold = Gold()
    titles, vss, rows, keys = [], [], [], []
    for i, doc in enumerate(_require_list(docs, source)):
        title = _get(doc, "title", str, source, i)
        vs = _vertex_set(doc, source, i)
        gold.vertex_sets[title] = vs
        titles.append(title)
        vss.append(vs)
        for h, t, r, evidence in _labels(doc, len(vs), source, i):
            keys.append((title, h, t, r))
            rows.append(i)
            gold.facts[(title, h, t, r)] = evidence
            gold.total_evidence += len(evidence)
    entities = list(chain.from_iterable(vss))
    gold.index_entities(titles, vss, [m["sent_id"] for e in entities for m in e],
                        list(map(len, entities)))
    # every label was range-checked against its own document above, so this cannot fail
    _count_intra(gold, keys, np.array(rows, dtype=np.int64))
    return gold


def _count_intra(gold: Gold, keys: list[Fact], rows: np.ndarray) -> bool:
    """Set ``gold.n_intra`` from every label's key and document row; False if some label's
    h or t is not an entity index of its document (then ``n_intra`` is left as it was).

    Each label is classified in its own document; a fact labelled twice counts once (the
    last label's document, as the last one's evidence is kept).
    """
    if not keys:
        return True
    _titles, hs, ts, _rs = zip(*keys, strict=True)
    pairs = gold.pair_masks(rows, hs, ts)
    if pairs is None:
        return False
    intra = pairs != 0
    if len(gold.facts) != len(keys):  # a fact labelled twice counts once, as officially
        intra = list(dict(zip(keys, intra.tolist(), strict=True)).values())
    gold.n_intra = int(np.count_nonzero(intra))
    return True


def _sentence_masks(sent_ids: list[int], lens: list[int]) -> np.ndarray:
    """Per entity, the bitmask of its mentions' sentences.

    ``sent_ids`` lists every entity's mentions in turn, ``lens`` how many each has (>= 1).
    Two entities share a sentence exactly when ``mask_h & mask_t`` is not 0: array operations
    over all pairs at once, where sets cost one set per entity and a ``set.isdisjoint`` call
    per pair (~3x the time). Sentence s is bit s when every id is in 0..62 (DocRED's case);
    otherwise bit k for the k-th smallest distinct id, so any ints work: int64 masks while
    there are at most 63 distinct ids, Python ints (dtype object, any size) beyond.
    """
    if not sent_ids:
        return np.zeros(0, dtype=np.int64)
    try:
        ids = np.fromiter(sent_ids, dtype=np.int64, count=len(sent_ids))
    except OverflowError:  # an id beyond int64: ranks below
        ids = None
    if ids is None or ids.min() < 0 or ids.max() > 62:
        rank = {s: k for k, s in enumerate(sorted(set(sent_ids)))}
        bits = list(map(rank.__getitem__, sent_ids))
        if len(rank) > 63:
            it = iter(bits)
            out = np.empty(len(lens), dtype=object)
            out[:] = [reduce(or_, [1 << b for b in islice(it, k)]) for k in lens]
            return out
        ids = np.array(bits, dtype=np.int64)
    starts = np.zeros(len(lens), dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    return np.bitwise_or.reduceat(np.left_shift(np.int64(1), ids), starts)


def _only(values: Iterable[Any], typ: type) -> bool:
    """Every value is exactly of type ``typ`` (so no bool passes for int)."""
    return set(map(type, values)) <= {typ}


def _all_str(values: Iterable[Any]) -> bool:
    """Every value is a str (subclasses too, as ``isinstance`` in the slow validation).

    ``str.join`` checks each item in C, about 5x faster than ``_only``'s ``set(map(type, ...))``.
    """
    try:
        "".join(values)
    except TypeError:
        return False
    return True


_NAME = itemgetter("name")
_SENT_ID = itemgetter("sent_id")
_NONE: list[Any] = []  # the default of a missing "labels" / "evidence" (never modified)
_PRED = itemgetter("title", "h_idx", "t_idx", "r")
_H, _T, _R = itemgetter("h"), itemgetter("t"), itemgetter("r")
_MISS = ()  # what the fact lookup returns for a wrong prediction (no gold evidence)


def _column(records: list[dict[str, Any]], key: str) -> list[Any]:
    """``[rec.get(key, [])...]`` for exact dicts: ``dict.get`` mapped directly is ~3x faster
    than a ``methodcaller("get", ...)``."""
    return list(map(dict.get, records, repeat(key), repeat(_NONE)))


def _load_gold_fast(docs: Any) -> Gold | None:
    """:func:`load_gold` for well-formed input, with whole-column type checks; None otherwise.

    The same checks as the record-by-record validation, done once over all documents' columns
    (``set(map(type, ...))`` and friends run in C), which is what makes the scorer faster than
    the official loop; on any failure the caller reruns the slow validation for its message.
    The labels' entity indices are range-checked by the intra/inter split itself
    (:meth:`Gold.pair_masks`), so no pass is spent on it.
    """
    if type(docs) is not list or not _only(docs, dict):
        return None
    try:
        titles = list(map(itemgetter("title"), docs))
        vss = list(map(itemgetter("vertexSet"), docs))
        labelss = _column(docs, "labels")
        if not (_all_str(titles) and _only(vss, list) and _only(labelss, list)):
            return None
        entities = list(chain.from_iterable(vss))
        if not (_only(entities, list) and all(entities)):
            return None
        mentions = list(chain.from_iterable(entities))
        if not _only(mentions, dict):
            return None
        sent_ids = list(map(_SENT_ID, mentions))
        if not (_all_str(map(_NAME, mentions)) and _only(sent_ids, int)):
            return None
        n_mentions = list(map(len, entities))
        labels = list(chain.from_iterable(labelss))
        if not _only(labels, dict):
            return None
        hs, ts, rs = list(map(_H, labels)), list(map(_T, labels)), list(map(_R, labels))
        evs = _column(labels, "evidence")
        if labels and not (_only(hs, int) and _only(ts, int) and _all_str(rs)
                           and _only(evs, list) and _only(chain.from_iterable(evs), int)):
            return None
    except (KeyError, TypeError):
        return None
    gold = Gold()
    gold.vertex_sets = dict(zip(titles, vss, strict=True))
    gold.index_entities(titles, vss, sent_ids, n_mentions)
    if labels:
        n_labels = list(map(len, labelss))
        label_titles = chain.from_iterable(map(repeat, titles, n_labels))
        keys = list(zip(label_titles, hs, ts, rs, strict=False))  # len(labels) of each
        gold.facts = dict(zip(keys, evs, strict=True))
        gold.total_evidence = sum(map(len, evs))
        rows = np.repeat(np.arange(len(docs)), n_labels)
        if not _count_intra(gold, keys, rows):  # an entity index outside its vertexSet
            return None
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


def _prf(correct: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = correct / n_pred if n_pred else 0.0
    r = correct / n_gold if n_gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r > 0 else 0.0)


def _checked_predictions(preds: Any, gold: Gold, allow_unknown_titles: bool,
                         source: str) -> tuple[list[Fact], list[list[int]]]:
    """Validate submission records and deduplicate them (first occurrence kept).

    Returns the distinct (title, h, t, r) keys and the evidence of each, in one order.
    """
    out: dict[tuple[str, int, int, str], list[int]] = {}
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
        out.setdefault((title, h, t, r), evidence)
    return list(out), list(out.values())


class _Known(NamedTuple):
    """Distinct predictions of titles in the gold file, as columns, and the distinct count."""

    n_pred: int  # distinct predictions, those of unknown titles included (the P denominator)
    keys: list[Fact]
    evidence: list[list[int]]
    pairs: np.ndarray  # the entity pair's shared-sentence mask: 0 for an inter-sentence pair


def _known_predictions(keys: list[Fact], evs: list[list[int]], gold: Gold,
                       allow_unknown_titles: bool,
                       columns: tuple[Sequence[str], Sequence[int], Sequence[int]] | None = None,
                       ) -> _Known | None:
    """Split off unknown titles and classify intra/inter; None where a record is invalid.

    ``keys`` are distinct; ``columns`` their (titles, h, t) when the caller has them. The
    document lookup doubles as the title check and the intra/inter split as the range check
    of ``h_idx`` / ``t_idx`` (:meth:`Gold.pair_masks`), so valid input pays for no separate
    validation pass.
    """
    n_pred = len(keys)
    empty = _Known(n_pred, [], [], np.zeros(0, dtype=np.int64))
    if not keys:
        return empty
    titles, hs, ts = columns or tuple(zip(*keys, strict=True))[:3]
    rows = np.fromiter(map(gold.doc_index.get, titles, repeat(-1)), dtype=np.int64,
                       count=len(titles))
    known = rows >= 0
    if not known.all():  # some title is not in the gold file
        if not allow_unknown_titles:
            return None
        rows = rows[known]
        keys, evs, hs, ts = (list(compress(x, known.tolist())) for x in (keys, evs, hs, ts))
        if not keys:
            return empty
    pairs = gold.pair_masks(rows, hs, ts)
    return None if pairs is None else _Known(n_pred, keys, evs, pairs)


def _predictions_fast(preds: Any, gold: Gold, allow_unknown_titles: bool) -> _Known | None:
    """Validated, deduplicated known predictions for well-formed input; None otherwise.

    The checks of :func:`_checked_predictions` over whole columns (C loops); on any failure
    the caller reruns that record-by-record validation for its message.
    """
    if type(preds) is not list or not _only(preds, dict):
        return None
    try:
        keys = list(map(_PRED, preds))
    except KeyError:
        return None
    if not keys:
        return _Known(0, [], [], np.zeros(0, dtype=np.int64))
    evs = _column(preds, "evidence")
    columns = titles, hs, ts, rs = tuple(zip(*keys, strict=True))
    if not (_all_str(titles) and _only(hs, int) and _only(ts, int) and _all_str(rs)
            and _only(evs, list) and _only(chain.from_iterable(evs), int)):
        return None
    if len(set(keys)) == len(keys):  # no duplicate: the columns as they are
        return _known_predictions(keys, evs, gold, allow_unknown_titles, columns[:3])
    # reversed: the first occurrence of a key is inserted last, so its evidence is the one kept
    first = dict(zip(reversed(keys), reversed(evs), strict=True))
    return _known_predictions(list(first), list(first.values()), gold, allow_unknown_titles)


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
    # The scorer allocates tens of thousands of tuples and sets that live until it returns; with
    # a parsed DocRED file (millions of objects) in memory, the cyclic collector's full passes
    # that this triggers cost several times the scoring itself. Nothing here creates a cycle,
    # so the collector is paused for the call and restored after.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _score(predictions, gold_docs, train_docs, allow_unknown_titles, sources)
    finally:
        if enabled:
            gc.enable()


def _score(predictions: Any, gold_docs: Sequence[Any], train_docs: Iterable[Sequence[Any]],
           allow_unknown_titles: bool, sources: tuple[str, str]) -> dict[str, float]:
    """:func:`score` with the collector paused."""
    gold = load_gold(gold_docs, sources[1])
    in_train_facts: set[tuple[str, str, str]] = set()
    for k, docs in enumerate(train_docs):
        in_train_facts |= load_train_facts(docs, f"train[{k}]")
    known = _predictions_fast(predictions, gold, allow_unknown_titles)
    if known is None:  # the record-by-record validation raises naming the record, or accepts
        keys, evs = _checked_predictions(predictions, gold, allow_unknown_titles, sources[0])
        known = _known_predictions(keys, evs, gold, allow_unknown_titles=True)
        assert known is not None  # validated: every title is known or allowed, indices in range
    n_pred, keys, evs, pairs = known

    # every step below is a map over columns (C loops), not a Python loop over predictions
    facts = gold.facts
    found = list(map(facts.get, keys, repeat(_MISS)))  # gold evidence, or () for a wrong one
    hit = list(map(is_not, found, repeat(_MISS)))
    correct = sum(hit)
    # evidence: distinct sentences, as officially (a sentence listed twice counts once), over
    # the predictions of known titles; an empty list (most of them, and all of them for a
    # model without evidence) adds nothing, so sets are built only for the others
    # (``compress(x, evs)`` keeps the entries whose evidence list is not empty)
    pred_evidence = list(map(set, filter(None, evs)))
    predicted_evidence = sum(map(len, pred_evidence))
    correct_evidence = sum(map(len, map(set.intersection, pred_evidence, compress(found, evs))))
    inter = pairs == 0
    n_inter = int(np.count_nonzero(inter))
    correct_inter = n_inter if correct == len(hit) else int(np.count_nonzero(
        inter & np.fromiter(hit, dtype=bool, count=len(hit))))
    split_pred = {False: n_inter, True: len(pairs) - n_inter}
    split_correct = {False: correct_inter, True: correct - correct_inter}
    correct_in_train = 0
    if in_train_facts:
        for title, h, t, r in compress(keys, hit):
            vs = gold.vertex_sets[title]
            if any((m1["name"], m2["name"], r) in in_train_facts
                   for m1 in vs[h] for m2 in vs[t]):
                correct_in_train += 1

    n_gold = len(facts)
    p, rec, f1 = _prf(correct, n_pred, n_gold)
    ign_den = n_pred - correct_in_train
    ign_p = (correct - correct_in_train) / ign_den if ign_den else 0.0
    ign_f1 = 2 * ign_p * rec / (ign_p + rec) if ign_p + rec > 0 else 0.0
    evi_p = correct_evidence / predicted_evidence if predicted_evidence else 0.0
    evi_r = correct_evidence / gold.total_evidence if gold.total_evidence else 0.0
    evi_f1 = 2 * evi_p * evi_r / (evi_p + evi_r) if evi_p + evi_r > 0 else 0.0
    gold_split = {True: gold.n_intra, False: n_gold - gold.n_intra}
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
