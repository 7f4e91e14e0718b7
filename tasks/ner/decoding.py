"""Entity recognition as multi-label token classification: targets, decoding and seqeval scores.

Each token has 2 x K sigmoid outputs, column ``2k`` the B (begins an entity) and ``2k + 1`` the
I (inside, not first) output of ``types[k]``. Types are independent columns, so nested and
overlapping mentions of *different* types are representable; within one type a token is in at
most one entity (one IOB2 sequence per type).

* :func:`encode` turns spans into those targets [T, 2K];
* :func:`decode` turns scores [T, 2K] into one strict-IOB2 tag sequence per (type, sentence):
  per type, a token whose B score is >= the threshold starts an entity, following tokens whose
  I score is >= the threshold continue it; an I above the threshold with no B/I of that type
  right before it is dropped ("O"), so the output is always valid IOB2;
* :func:`ner_scores` scores tag sequences with ``seqeval`` in strict IOB2 mode over all the
  (sentence, type) sequences at once: an entity counts as correct when its type, start and end
  all match.

Gold tag sequences are ``decode(encode(spans), ..., 0.5)``: what a perfect model would output.
For mentions of different types this is exactly the spans; two overlapping mentions of the
same type cannot both be in one IOB2 sequence (the later B cuts the earlier mention short) and
are counted by the readers (``info()``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

TYPES = ("PER", "ORG", "LOC", "TIME", "NUM", "MISC")  # DocRED's entity types

Span = tuple[int, int, str]  # (start, end exclusive, type), token offsets within the sentence


def _check_lengths(num_tokens: int, lengths: Sequence[int]) -> np.ndarray:
    """Sentence start offsets [S + 1]; ValueError when the lengths do not add up to T."""
    lens = np.asarray(list(lengths), dtype=np.int64)
    if (lens < 0).any() or int(lens.sum()) != num_tokens:
        raise ValueError(f"sentence lengths must be >= 0 and sum to the {num_tokens} token rows, "
                         f"got {len(lens)} lengths summing to {int(lens.sum())}")
    return np.concatenate([[0], np.cumsum(lens)])


def _thresholds(threshold: float | Sequence[float], k: int) -> np.ndarray:
    """Per-column thresholds [2K] from one number, one per type [K] or one per column [2K]."""
    t = np.asarray(threshold, dtype=np.float64).reshape(-1)
    if t.size == 1:
        return np.full(2 * k, float(t[0]))
    if t.size == k:
        return np.repeat(t, 2)  # the type's threshold for its B and its I column
    if t.size == 2 * k:
        return t
    raise ValueError(f"threshold must be a number, one per type ({k}) or one per column "
                     f"({2 * k}), got {t.size} values")


def encode(spans_per_sentence: Sequence[Sequence[Span]], lengths: Sequence[int],
           types: Sequence[str]) -> np.ndarray:
    """Binary targets [T, 2K] (float32) of the spans of consecutive sentences.

    ``spans_per_sentence[s]``: the (start, end exclusive, type) spans of sentence ``s`` of
    ``lengths[s]`` tokens. B of the type at ``start``, I of the type at ``start + 1 .. end - 1``.
    ValueError for a span outside its sentence or a type not in ``types``.
    """
    k_of = {t: k for k, t in enumerate(types)}
    starts = _check_lengths(int(sum(lengths)), lengths)
    if len(spans_per_sentence) != len(lengths):
        raise ValueError(f"{len(spans_per_sentence)} span lists for {len(lengths)} sentences")
    y = np.zeros((int(starts[-1]), 2 * len(types)), dtype=np.float32)  # [T, 2K]
    for s, spans in enumerate(spans_per_sentence):
        off, n = int(starts[s]), int(lengths[s])
        for start, end, typ in spans:
            if typ not in k_of:
                raise ValueError(f"sentence {s}: span type {typ!r} is not one of {list(types)}")
            if not 0 <= start < end <= n:
                raise ValueError(f"sentence {s}: span [{start}, {end}) is not inside its {n} "
                                 f"tokens")
            k = k_of[typ]
            y[off + start, 2 * k] = 1.0
            y[off + start + 1:off + end, 2 * k + 1] = 1.0
    return y


def _codes(scores: np.ndarray, lengths: Sequence[int], types: Sequence[str],
           threshold: float | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per type and token the decoded code [K, T] (2 = B, 1 = I, 0 = O) and the sentence
    offsets [S + 1]."""
    s = np.asarray(scores)
    k = len(types)
    if s.ndim != 2 or s.shape[1] != 2 * k:
        raise ValueError(f"scores must be [T, 2K] = [T, {2 * k}] for {k} types, got shape "
                         f"{s.shape}")
    starts = _check_lengths(s.shape[0], lengths)
    on = s >= _thresholds(threshold, k)  # [T, 2K]
    b_on, i_on = on[:, 0::2].T, on[:, 1::2].T  # [K, T] each
    first = np.zeros(s.shape[0], dtype=bool)  # a sentence's first token: nothing open before
    first[starts[:-1][starts[:-1] < starts[1:]]] = True
    # an I continues an entity iff the run of (I on, B off) tokens it ends, inside one sentence,
    # directly follows a B: find the last token u <= t that does not "continue", check it is a B
    cont = i_on & ~b_on & ~first  # [K, T]
    idx = np.arange(s.shape[0])
    last = np.maximum.accumulate(np.where(cont, -1, idx), axis=1)  # [K, T]
    opened = np.take_along_axis(b_on, np.maximum(last, 0), axis=1) & (last >= 0)
    codes = np.where(b_on, 2, np.where(cont & opened, 1, 0)).astype(np.int8)  # [K, T]
    return codes, starts


def decode(scores: np.ndarray, lengths: Sequence[int], types: Sequence[str],
           threshold: float | Sequence[float] = 0.5) -> list[list[list[str]]]:
    """Per type, per sentence, the strict-IOB2 tags of scores [T, 2K] (see the module docstring).

    ``threshold``: one number, one per type [K] or one per column [2K]; a score >= it is on.
    Returns ``tags[k][s]``: the tags ("B-<type>", "I-<type>", "O") of sentence ``s`` for
    ``types[k]``, ``lengths[s]`` long.
    """
    codes, starts = _codes(scores, lengths, types, threshold)
    bounds = starts.tolist()
    out: list[list[list[str]]] = []
    for j, typ in enumerate(types):
        names = ["O", f"I-{typ}", f"B-{typ}"]
        tags = [names[c] for c in codes[j].tolist()]
        out.append([tags[a:b] for a, b in itertools.pairwise(bounds)])
    return out


def entity_set(scores: np.ndarray, lengths: Sequence[int], types: Sequence[str],
               threshold: float | Sequence[float] = 0.5) -> set[tuple[int, int, int]]:
    """The entities :func:`decode` finds, as (type index, first row, end row exclusive) over the
    split's token rows: seqeval's strict-mode entities, without building tag strings (the
    dev-threshold search decodes the dev split once per candidate)."""
    codes, _ = _codes(scores, lengths, types, threshold)
    out: set[tuple[int, int, int]] = set()
    for k in range(len(types)):
        c = codes[k]
        begin = np.flatnonzero(c == 2)
        # an entity ends at the first token after its B that is not a continuing I (every B is
        # such a token, so each B finds the next one; none left: the end of the split)
        stop = np.flatnonzero(c != 1)
        end = np.append(stop, len(c))[np.searchsorted(stop, begin, side="right")]
        out.update(zip([k] * len(begin), begin.tolist(), end.tolist(), strict=True))
    return out


def micro_f1(gold: set[tuple[int, int, int]], pred: set[tuple[int, int, int]]) -> float:
    """Entity micro F1 of two :func:`entity_set` results (0 when both are empty)."""
    total = len(gold) + len(pred)
    return 2 * len(gold & pred) / total if total else 0.0


def ner_scores(gold: list[list[list[str]]], pred: list[list[list[str]]],
               types: Sequence[str]) -> dict[str, float]:
    """seqeval (strict mode, IOB2) over every (type, sentence) tag sequence of ``gold``/``pred``.

    Keys: ``entity_micro_f1``, ``entity_precision``, ``entity_recall`` (micro over all
    entities), ``entity_macro_f1`` (seqeval's macro average: the mean F1 over the types that
    occur in gold or predictions) and ``f1_<TYPE>`` for each of ``types`` (0.0 for a type with
    neither a gold nor a predicted entity). A ratio with a zero denominator is 0.
    """
    from seqeval.metrics.v1 import precision_recall_fscore_support, unique_labels
    from seqeval.scheme import IOB2

    if len(gold) != len(types) or len(pred) != len(types):
        raise ValueError(f"gold and pred must hold one list of sentences per type ({len(types)})"
                         f", got {len(gold)} and {len(pred)}")
    y_true = [seq for per_type in gold for seq in per_type]
    y_pred = [seq for per_type in pred for seq in per_type]
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} gold sequences but {len(y_pred)} predicted")
    # a pair of all-O sequences holds no entity, gold or predicted: it changes no count, and
    # leaving it out saves seqeval most of its work (most (sentence, type) pairs are empty)
    keep = [i for i, (a, b) in enumerate(zip(y_true, y_pred, strict=True))
            if any(t != "O" for t in a) or any(t != "O" for t in b)]
    y_true, y_pred = [y_true[i] for i in keep] or [["O"]], [y_pred[i] for i in keep] or [["O"]]
    kw = dict(mode="strict", scheme=IOB2, zero_division=0)
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="micro", **kw)
    out = {"entity_micro_f1": float(f), "entity_precision": float(p), "entity_recall": float(r)}
    _, _, f_macro, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", **kw)
    out["entity_macro_f1"] = float(f_macro)
    labels = unique_labels(y_true, y_pred, scheme=IOB2, suffix=False)  # sorted type names
    _, _, f_per, _ = precision_recall_fscore_support(y_true, y_pred, average=None, **kw)
    per_type = dict(zip(labels, (float(v) for v in f_per), strict=True))
    for typ in types:
        out[f"f1_{typ}"] = per_type.get(typ, 0.0)
    return out


__all__ = ["TYPES", "Span", "decode", "encode", "entity_set", "micro_f1", "ner_scores"]
