"""DocRED-format documents: validated reading, entity-pair enumeration, targets and encodings.

A document (``title``, ``sents``, ``vertexSet`` of mentions with ``pos``/``sent_id``/``type``,
``labels`` of ``h``/``t``/``r``/``evidence``) becomes a :class:`Document` with doc-level token
positions. Every ordered pair (h, t), h != t, is one example row; its target is multi-hot over
the ids of ``rel2id`` including the no-relation class ``Na`` (set iff the pair has no fact), as
MRN and ATLOP both do (ATLOP calls it the threshold class). Metrics and predictions ignore ``Na``.

Relation and entity-type ids come from the ``rel2id``/``ner2id`` files; nothing here assumes 97
relations or 7 types. Malformed input raises :class:`DocREDFormatError` naming the file, the
document title and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mllb_core import io
from mllb_core.errors import UserError
from tasks.base import held_out

NA = "Na"


class DocREDFormatError(UserError, ValueError):
    """Malformed DocRED or submission data; the message names the file, record and field."""


def read_json(path: str | Path, what: str) -> Any:
    """Load a JSON file; a missing file or invalid JSON is a DocREDFormatError naming it."""
    return io.read_json(path, DocREDFormatError, f"{what} file not found: {path}")


@dataclass(frozen=True)
class Mention:
    """One mention: doc-level token span [start, end), its sentence, type and surface name."""

    start: int
    end: int
    sent_id: int
    type: str
    name: str


@dataclass
class Document:
    """A validated DocRED document; ``facts`` holds (h, t, relation id) triples, deduplicated."""

    title: str
    sents: list[list[str]]
    entities: list[list[Mention]]
    facts: list[tuple[int, int, int]]
    raw: dict[str, Any]

    @property
    def tokens(self) -> list[str]:
        """The document's words, sentence after sentence."""
        return [w for s in self.sents for w in s]

    def pairs(self) -> np.ndarray:
        """All ordered entity pairs (h, t), h != t, head-major: [E * (E - 1), 2]."""
        e = len(self.entities)
        h, t = np.meshgrid(np.arange(e), np.arange(e), indexing="ij")
        keep = h != t
        return np.stack([h[keep], t[keep]], axis=1).astype(np.int64)

    def pair_row(self, h: int, t: int) -> int:
        """Row of pair (h, t) in :meth:`pairs` (head-major, the diagonal skipped)."""
        return h * (len(self.entities) - 1) + (t if t < h else t - 1)


@dataclass(frozen=True)
class Schema:
    """Relation and entity-type vocabularies (from ``rel2id``, ``rel_info``, ``ner2id``)."""

    rel2id: dict[str, int]
    ner2id: dict[str, int]
    rel_names: dict[str, str]

    @property
    def num_labels(self) -> int:
        """Number of target columns (relations incl. Na)."""
        return max(self.rel2id.values()) + 1

    @property
    def na_id(self) -> int:
        """Column of the no-relation class."""
        return self.rel2id[NA]

    @property
    def id2rel(self) -> dict[int, str]:
        """Column -> relation id (e.g. 17 -> "P17")."""
        return {i: r for r, i in self.rel2id.items()}


def read_schema(rel2id: str | Path, ner2id: str | Path, rel_info: str | Path | None) -> Schema:
    """Load and check the id files: ids are distinct, contiguous from 0, and rel2id has "Na"."""
    schema = {}
    for name, path in (("rel2id", rel2id), ("ner2id", ner2id)):
        table = read_json(Path(path), name)
        if not isinstance(table, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in table.values()):
            raise DocREDFormatError(f"{path}: {name} must be an object of name -> integer id")
        if sorted(table.values()) != list(range(len(table))):
            raise DocREDFormatError(
                f"{path}: {name} ids must be distinct and run 0..{len(table) - 1}")
        schema[name] = table
    if NA not in schema["rel2id"]:
        raise DocREDFormatError(f"{rel2id}: rel2id has no {NA!r} entry (the no-relation class "
                                f"MRN/ATLOP train as a target column)")
    names = read_json(Path(rel_info), "rel_info") if rel_info else {}
    if not isinstance(names, dict):
        raise DocREDFormatError(f"{rel_info}: rel_info must be an object of relation id -> name")
    return Schema(schema["rel2id"], schema["ner2id"], {str(k): str(v) for k, v in names.items()})


def _fail(source: str, title: str, fld: str, problem: str) -> DocREDFormatError:
    return DocREDFormatError(f"{source}: document {title!r}: field {fld!r}: {problem}")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_document(doc: Any, schema: Schema, source: str, position: int,
                   labelled: bool) -> Document:
    """Validate one record and convert its mention positions to document-level token offsets."""
    if not isinstance(doc, dict):
        raise DocREDFormatError(f"{source}: record {position}: expected an object, got "
                                f"{type(doc).__name__}")
    title = doc.get("title")
    if not isinstance(title, str):
        raise DocREDFormatError(f"{source}: record {position}: field 'title': expected a string")
    sents = doc.get("sents")
    if not isinstance(sents, list) or not sents or not all(
            isinstance(s, list) and all(isinstance(w, str) for w in s) for s in sents):
        raise _fail(source, title, "sents", "expected a non-empty list of lists of words")
    offsets = np.cumsum([0] + [len(s) for s in sents]).tolist()
    vertex_set = doc.get("vertexSet")
    if not isinstance(vertex_set, list) or not vertex_set:
        raise _fail(source, title, "vertexSet", "expected a non-empty list of entities (a "
                    "document without entities has no pair to classify)")
    entities: list[list[Mention]] = []
    for e, mentions in enumerate(vertex_set):
        if not isinstance(mentions, list) or not mentions:
            raise _fail(source, title, f"vertexSet[{e}]", "expected a non-empty list of mentions")
        ent = []
        for k, m in enumerate(mentions):
            where = f"vertexSet[{e}][{k}]"
            if not isinstance(m, dict):
                raise _fail(source, title, where, "expected a mention object")
            sid, pos, typ = m.get("sent_id"), m.get("pos"), m.get("type")
            if not _int(sid) or not 0 <= sid < len(sents):
                raise _fail(source, title, f"{where}.sent_id",
                            f"{sid!r} is not a sentence index (0..{len(sents) - 1})")
            if (not isinstance(pos, list) or len(pos) != 2 or not all(map(_int, pos))
                    or not 0 <= pos[0] < pos[1] <= len(sents[sid])):
                raise _fail(source, title, f"{where}.pos",
                            f"{pos!r} is not a span [start, end) inside sentence {sid} "
                            f"({len(sents[sid])} words)")
            if typ not in schema.ner2id:
                raise _fail(source, title, f"{where}.type", f"unknown entity type {typ!r}; "
                            f"known: {sorted(schema.ner2id)}")
            name = m.get("name", " ".join(sents[sid][pos[0]:pos[1]]))
            ent.append(Mention(offsets[sid] + pos[0], offsets[sid] + pos[1], sid, typ, str(name)))
        entities.append(ent)
    facts: set[tuple[int, int, int]] = set()
    labels = doc.get("labels")
    if labels is None:
        if labelled:
            raise _fail(source, title, "labels", "missing (this split must be labelled)")
        labels = []
    if not isinstance(labels, list):
        raise _fail(source, title, "labels", "expected a list of {h, t, r} objects")
    for k, lab in enumerate(labels):
        if not isinstance(lab, dict):
            raise _fail(source, title, f"labels[{k}]", "expected an object with h, t, r")
        for key in ("h", "t"):
            if not _int(lab.get(key)) or not 0 <= lab[key] < len(entities):
                raise _fail(source, title, f"labels[{k}].{key}",
                            f"{lab.get(key)!r} is not an entity index (0..{len(entities) - 1})")
        if lab["h"] == lab["t"]:
            raise _fail(source, title, f"labels[{k}]", f"head and tail are the same entity "
                        f"({lab['h']}); DocRED relations hold between two entities")
        r = lab.get("r")
        if r not in schema.rel2id or r == NA:
            raise _fail(source, title, f"labels[{k}].r", f"unknown relation {r!r} (not in "
                        f"rel2id, or the no-relation class)")
        facts.add((lab["h"], lab["t"], schema.rel2id[r]))
    return Document(title, sents, entities, sorted(facts), doc)


def read_documents(path: str | Path, schema: Schema, labelled: bool = True) -> list[Document]:
    """Read a DocRED-format JSON file (a list of documents); titles must be unique."""
    path = Path(path)
    records = read_json(path, "DocRED")
    if not isinstance(records, list):
        raise DocREDFormatError(f"{path}: expected a JSON list of documents, got "
                                f"{type(records).__name__}")
    docs = [parse_document(r, schema, str(path), i, labelled) for i, r in enumerate(records)]
    seen: dict[str, int] = {}
    for i, d in enumerate(docs):
        if d.title in seen:
            raise DocREDFormatError(f"{path}: records {seen[d.title]} and {i} share the title "
                                    f"{d.title!r}; titles identify documents in predictions")
        seen[d.title] = i
    return docs


def has_labels(path: str | Path) -> bool:
    """Whether a DocRED file carries ``labels`` (the official test file does not)."""
    records = read_json(Path(path), "DocRED")
    return isinstance(records, list) and any(isinstance(r, dict) and "labels" in r
                                             for r in records)


def held_out_titles(docs: Sequence[Document], fraction: float = 0.1) -> set[str]:
    """The fixed selection split: the ``fraction`` of titles with the smallest sha256 digests.

    Hashing titles (not file positions) keeps the split the same under any reordering of the
    file; ``round(fraction * n)`` documents, at least one and never all (``tasks.base.held_out``,
    shared with the image tasks; titles are unique, the reader rejects duplicates).
    """
    return held_out([d.title for d in docs], fraction)


def targets_of(doc: Document, schema: Schema) -> np.ndarray:
    """Multi-hot targets of the document's pairs [P, C]; the Na column is 1 iff no fact."""
    pairs = doc.pairs()
    y = np.zeros((len(pairs), schema.num_labels), dtype=np.float32)
    for h, t, r in doc.facts:
        y[doc.pair_row(h, t), r] = 1.0
    y[:, schema.na_id] = y.sum(1) == 0
    return y


def entity_type_ids(doc: Document, schema: Schema, length: int,
                    position: Sequence[int] | None = None) -> list[int]:
    """Entity-type id per position (0 outside mentions); ``position`` maps word -> position."""
    ids = [0] * length
    for ent in doc.entities:
        for m in ent:
            for w in range(m.start, m.end):
                ids[w if position is None else position[w]] = schema.ner2id[m.type]
    return ids


def encode_words(doc: Document, word2id: dict[str, int], unk: int = 1) -> dict[str, Any]:
    """Word-level model inputs (MRN): lower-cased word ids, mention word spans."""
    ids = [word2id.get(w.lower(), unk) for w in doc.tokens]
    mentions = [(m.start, m.end, e) for e, ent in enumerate(doc.entities) for m in ent]
    return {"input_ids": ids, "mentions": mentions}


MARKER = "*"


def encode_subwords(doc: Document, tokenizer: Any, markers: str = "word") -> dict[str, Any]:
    """Subword model inputs (ATLOP): "*" around the mentions, [CLS] ... [SEP].

    ``markers="word"`` (ATLOP's prepro.py): one "*" before a word where any mention starts and
    one after a word where any mention ends, however many mentions start or end there;
    ``"mention"``: one "*" per mention starting / ending there (MLLB's earlier encoding).
    A mention is represented by its start marker: its span here starts at the start marker and
    ends one past the end marker. Markers are separate words for the tokenizer, so their
    positions come from ``word_ids()``; nothing is truncated (the model windows long inputs).
    """
    if markers not in ("word", "mention"):
        raise ValueError(f"markers must be 'word' or 'mention', got {markers!r}")
    cap = 1 if markers == "word" else None
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    for ent in doc.entities:
        for m in ent:
            starts[m.start] = starts.get(m.start, 0) + 1
            ends[m.end - 1] = ends.get(m.end - 1, 0) + 1
    if cap is not None:
        starts = {w: min(n, cap) for w, n in starts.items()}
        ends = {w: min(n, cap) for w, n in ends.items()}
    words: list[str] = []
    first = []  # index in ``words`` of each document word's first start marker or itself
    last = []  # index in ``words`` after the word and its end markers
    for w, word in enumerate(doc.tokens):
        first.append(len(words))
        words += [MARKER] * starts.get(w, 0) + [word]
        words += [MARKER] * ends.get(w, 0)
        last.append(len(words))
    # no truncation and no length warning: the model encodes long documents in windows
    enc = tokenizer(words, is_split_into_words=True, add_special_tokens=True, verbose=False)
    word_ids = enc.word_ids()
    first_piece: dict[int, int] = {}
    for p, wid in enumerate(word_ids):
        if wid is not None and wid not in first_piece:
            first_piece[wid] = p
    # a word the tokenizer turns into no piece (stray control characters) takes the position of
    # the next word that has one; past the last word is the [SEP]
    pos = [len(enc["input_ids"]) - 1] * (len(words) + 1)
    for i in range(len(words) - 1, -1, -1):
        pos[i] = first_piece.get(i, pos[i + 1])
    mentions = []
    for e, ent in enumerate(doc.entities):
        for m in ent:
            # several mentions may start at one word; each uses the first marker there
            mentions.append((pos[first[m.start]], pos[last[m.end - 1]], e))
    word_pos = [pos[first[w]] for w in range(len(doc.tokens))]
    return {"input_ids": list(enc["input_ids"]), "mentions": mentions, "word_pos": word_pos}
