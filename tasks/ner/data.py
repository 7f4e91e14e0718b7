"""Readers for entity recognition data: DocRED-format documents, CoNLL-style files and a
``datasets`` token-classification layout, all into sentences with typed spans.

* DocRED format (:func:`read_docred`): a JSON list of documents with ``title``, ``sents`` (lists
  of words) and ``vertexSet`` (entities, each a list of mentions with ``sent_id``, ``pos``
  [start, end) within the sentence and ``type``). Every mention becomes a span of its sentence;
  the entity grouping and the relation ``labels`` are not used (the official test file, which
  has no labels, has mentions and works too).
* CoNLL style (:func:`read_conll`): one ``token ... tag`` per line (the tag in the last column),
  a blank line between sentences, ``-DOCSTART-`` lines skipped; tags in IOB1, IOB2 or BIOES
  (:func:`tags_to_spans`), given or detected (:func:`detect_scheme`).
* ``datasets`` (:func:`read_hf`): splits with ``tokens`` and ``ner_tags`` (a sequence of
  ``ClassLabel`` whose names are the tags), from a ``save_to_disk`` directory or a hub name.

Identical duplicate mentions (same sentence, span and type: DocRED lists a mention once per
entity it belongs to, and sometimes twice) are kept once and counted. Malformed input raises
:class:`NERDataError` naming the file, the document or sentence (and the line for CoNLL), the
field, what is wrong and what is expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllb_core import io
from mllb_core.errors import UserError
from tasks.ner.decoding import TYPES, Span

SCHEMES = ("iob1", "iob2", "bioes")


class NERDataError(UserError, ValueError):
    """Malformed entity recognition data; the message names file, record, field and problem."""


@dataclass
class Sentence:
    """One sentence: its tokens and typed spans [start, end) (deduplicated, sorted)."""

    tokens: list[str]
    spans: list[Span]
    where: str  # "document 'Title', sentence 3" or "sentence 12 (line 40)": for messages


@dataclass
class Document:
    """A titled group of sentences (DocRED documents; a CoNLL file is one untitled group)."""

    title: str
    sentences: list[Sentence]


@dataclass
class Counts:
    """What the readers dropped or could not represent, for ``Task.info()``."""

    duplicate_mentions: int = 0
    same_type_overlaps: int = 0  # overlapping spans of one type: one IOB2 sequence cuts one
    schemes: dict[str, str] = field(default_factory=dict)  # file -> tag scheme read

    def add(self, other: Counts) -> None:
        """Accumulate ``other`` into this."""
        self.duplicate_mentions += other.duplicate_mentions
        self.same_type_overlaps += other.same_type_overlaps
        self.schemes.update(other.schemes)


def _finish(tokens: list[str], spans: Iterable[Span], where: str, counts: Counts) -> Sentence:
    """Deduplicate and sort the spans; count same-type overlaps."""
    spans = list(spans)
    unique = sorted(set(spans))
    counts.duplicate_mentions += len(spans) - len(unique)
    for i, (_, b, t) in enumerate(unique):
        counts.same_type_overlaps += sum(1 for a2, _, t2 in unique[i + 1:] if t2 == t and a2 < b)
    return Sentence(tokens, unique, where)


# -- DocRED format ------------------------------------------------------------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_docred(path: str | Path, types: Sequence[str] = TYPES) -> tuple[list[Document], Counts]:
    """Documents of a DocRED-format JSON file, every mention a span of its sentence.

    Titles must be unique (the held-out selection split is chosen by title).
    """
    path = Path(path)
    records = io.read_json(path, NERDataError, f"DocRED file not found: {path}")
    if not isinstance(records, list):
        raise NERDataError(f"{path}: expected a JSON list of documents, got "
                           f"{type(records).__name__}")
    counts, docs, seen = Counts(), [], {}
    for i, doc in enumerate(records):
        if not isinstance(doc, dict) or not isinstance(doc.get("title"), str):
            raise NERDataError(f"{path}: record {i}: field 'title': expected an object with a "
                               f"string title")
        title = doc["title"]
        if title in seen:
            raise NERDataError(f"{path}: records {seen[title]} and {i}: field 'title': "
                               f"{title!r} twice; expected unique titles (the held-out split "
                               f"is chosen by title)")
        seen[title] = i
        sents = doc.get("sents")
        if not isinstance(sents, list) or not sents or not all(
                isinstance(s, list) and s and all(isinstance(w, str) for w in s) for s in sents):
            raise NERDataError(f"{path}: document {title!r}: field 'sents': expected a non-empty "
                               f"list of non-empty lists of words")
        vertex_set = doc.get("vertexSet", [])
        if not isinstance(vertex_set, list):
            raise NERDataError(f"{path}: document {title!r}: field 'vertexSet': expected a list "
                               f"of entities (lists of mentions)")
        spans: list[list[Span]] = [[] for _ in sents]
        for e, mentions in enumerate(vertex_set):
            if not isinstance(mentions, list):
                raise NERDataError(f"{path}: document {title!r}: field 'vertexSet[{e}]': "
                                   f"expected a list of mentions")
            for k, m in enumerate(mentions):
                fld = f"vertexSet[{e}][{k}]"
                if not isinstance(m, dict):
                    raise NERDataError(f"{path}: document {title!r}: field {fld!r}: expected a "
                                       f"mention object with sent_id, pos, type")
                sid, pos, typ = m.get("sent_id"), m.get("pos"), m.get("type")
                if not _is_int(sid) or not 0 <= sid < len(sents):
                    raise NERDataError(f"{path}: document {title!r}: field '{fld}.sent_id': "
                                       f"{sid!r} is not a sentence index; expected 0.."
                                       f"{len(sents) - 1}")
                n = len(sents[sid])
                if (not isinstance(pos, list) or len(pos) != 2 or not all(map(_is_int, pos))
                        or not 0 <= pos[0] < pos[1] <= n):
                    raise NERDataError(f"{path}: document {title!r}: sentence {sid}: field "
                                       f"'{fld}.pos': {pos!r} is outside the sentence; expected "
                                       f"[start, end) with 0 <= start < end <= {n}")
                if typ not in types:
                    raise NERDataError(f"{path}: document {title!r}: sentence {sid}: field "
                                       f"'{fld}.type': unknown type {typ!r}; expected one of "
                                       f"{list(types)}")
                spans[sid].append((pos[0], pos[1], typ))
        docs.append(Document(title, [_finish(list(s), spans[j], f"document {title!r}, sentence "
                                              f"{j}", counts) for j, s in enumerate(sents)]))
    return docs, counts


# -- tag sequences ------------------------------------------------------------------------------

def _split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") of "B-PER", ("O", "") of "O"; ValueError for anything else."""
    if tag == "O":
        return "O", ""
    prefix, sep, typ = tag.partition("-")
    if not sep or prefix not in ("B", "I", "E", "S") or not typ:
        raise ValueError(f"tag {tag!r} is not O or <B|I|E|S>-<type>")
    return prefix, typ


def detect_scheme(sentences: Iterable[Sequence[str]]) -> str:
    """"bioes" when any tag starts with E- or S-; else "iob1" when an I- tag begins an entity
    (after O, at a sentence start or after another type: IOB1's way); else "iob2"."""
    iob1 = False
    for tags in sentences:
        prev = ("O", "")
        for tag in tags:
            p, t = _split_tag(tag)
            if p in ("E", "S"):
                return "bioes"
            if p == "I" and (prev[0] == "O" or prev[1] != t):
                iob1 = True
            prev = (p, t)
    return "iob1" if iob1 else "iob2"


def tags_to_spans(tags: Sequence[str], scheme: str) -> list[Span]:
    """Spans (start, end exclusive, type) of one sentence's tags in ``scheme``.

    IOB1: I-X continues an X entity or starts one, B-X starts one only right after an X.
    IOB2 (strict): B-X starts, I-X must follow B-X or I-X. BIOES: B-X ... E-X or S-X, I-X only
    inside. ValueError ("token i: ...") for a tag the scheme does not allow there.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    spans: list[Span] = []
    start, typ = -1, ""  # the open entity (start -1: none)
    for i, tag in enumerate(tags):
        try:
            p, t = _split_tag(tag)
        except ValueError as exc:
            raise ValueError(f"token {i}: {exc}") from None
        if scheme == "bioes" and start >= 0 and not (p in ("I", "E") and t == typ):
            raise ValueError(f"token {i}: {tag!r} after an unfinished {typ} entity; BIOES "
                             f"expects I-{typ} or E-{typ}")
        if p == "O":
            if start >= 0:
                spans.append((start, i, typ))
            start = -1
        elif p == "B" or p == "S" or (p == "I" and t != typ) or (p == "I" and start < 0):
            if p == "I" and scheme != "iob1":
                raise ValueError(f"token {i}: {tag!r} follows "
                                 f"{'O' if start < 0 else tags[i - 1]!r} (or the sentence "
                                 f"start); strict {scheme.upper()} expects B-{t} first")
            if start >= 0:
                spans.append((start, i, typ))
            start, typ = i, t
            if p == "S":
                spans.append((i, i + 1, t))
                start = -1
        elif p == "E":
            if start < 0 or t != typ:
                raise ValueError(f"token {i}: {tag!r} ends no open {t} entity; BIOES expects "
                                 f"B-{t} first")
            spans.append((start, i + 1, t))
            start = -1
        # else: an I continuing the open entity of its type
    if start >= 0:
        if scheme == "bioes":
            raise ValueError(f"token {len(tags) - 1}: the {typ} entity is not closed; BIOES "
                             f"expects E-{typ}")
        spans.append((start, len(tags), typ))
    return spans


def _check_types(spans: list[Span], types: Sequence[str] | None, where: str) -> None:
    if types is not None:
        for _, _, t in spans:
            if t not in types:
                raise NERDataError(f"{where}: field 'ner_tags': unknown type {t!r}; expected one "
                                   f"of {list(types)}")


def read_conll(path: str | Path, scheme: str = "auto", types: Sequence[str] | None = None
               ) -> tuple[list[Sentence], Counts]:
    """Sentences of a CoNLL-style file (see the module docstring).

    ``scheme``: one of :data:`SCHEMES` or "auto" (:func:`detect_scheme`, per file, recorded in
    ``Counts.schemes``). ``types``: the allowed entity types (None: any).
    """
    path = Path(path)
    if not path.is_file():
        raise NERDataError(f"CoNLL file not found: {path}")
    blocks: list[list[tuple[int, str, str]]] = [[]]  # per sentence: (line, token, tag)
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            cols = line.split()
            if not cols:
                if blocks[-1]:
                    blocks.append([])
                continue
            if cols[0].startswith("-DOCSTART-"):
                continue
            if len(cols) < 2:
                raise NERDataError(f"{path}: sentence {len(blocks) - 1}, line {lineno}: field "
                                   f"'tag': missing; expected 'token ... tag' (tag in the last "
                                   f"column)")
            blocks[-1].append((lineno, cols[0], cols[-1]))
    blocks = [b for b in blocks if b]
    for s, block in enumerate(blocks):
        for lineno, _, tag in block:
            try:
                _split_tag(tag)
            except ValueError as exc:
                raise NERDataError(f"{path}: sentence {s}, line {lineno}: field 'tag': {exc}; "
                                   f"expected O or B-/I-/E-/S-<type>") from None
    if scheme == "auto":
        scheme = detect_scheme([tag for _, _, tag in b] for b in blocks)
    elif scheme not in SCHEMES:
        raise NERDataError(f"scheme must be 'auto' or one of {SCHEMES}, got {scheme!r}")
    counts = Counts(schemes={str(path): scheme})
    out = []
    for s, block in enumerate(blocks):
        tags = [tag for _, _, tag in block]
        try:
            spans = tags_to_spans(tags, scheme)
        except ValueError as exc:
            i = int(str(exc).split(":")[0].split()[1])
            raise NERDataError(f"{path}: sentence {s}, line {block[i][0]}: field 'tag': {exc}"
                               ) from None
        where = f"{path}: sentence {s} (line {block[0][0]})"
        for a, _, t in spans:
            if types is not None and t not in types:
                raise NERDataError(f"{path}: sentence {s}, line {block[a][0]}: field 'tag': "
                                   f"unknown type {t!r}; expected one of {list(types)}")
        out.append(_finish([tok for _, tok, _ in block], spans, where, counts))
    return out, counts


def read_hf_split(rows: Iterable[dict[str, Any]], tag_names: Sequence[str], source: str,
                  scheme: str = "auto", types: Sequence[str] | None = None
                  ) -> tuple[list[Sentence], Counts]:
    """Sentences of one ``datasets`` split: rows with ``tokens`` and ``ner_tags`` (ids into
    ``tag_names``, the ClassLabel names). ``source`` names the split in messages."""
    sentences: list[tuple[list[str], list[str]]] = []
    for i, row in enumerate(rows):
        tokens, ids = row.get("tokens"), row.get("ner_tags")
        if not isinstance(tokens, list) or not isinstance(ids, list):
            raise NERDataError(f"{source}: row {i}: fields 'tokens', 'ner_tags': expected two "
                               f"lists")
        if len(tokens) != len(ids):
            raise NERDataError(f"{source}: row {i}: field 'ner_tags': {len(ids)} tags for "
                               f"{len(tokens)} tokens; expected one tag per token")
        if not all(_is_int(t) and 0 <= t < len(tag_names) for t in ids):
            raise NERDataError(f"{source}: row {i}: field 'ner_tags': expected ids into the "
                               f"{len(tag_names)} ClassLabel names {list(tag_names)}")
        if tokens:
            sentences.append((list(map(str, tokens)), [tag_names[t] for t in ids]))
    for i, (_, tags) in enumerate(sentences):
        for tag in tags:
            try:
                _split_tag(tag)
            except ValueError as exc:
                raise NERDataError(f"{source}: row {i}: field 'ner_tags': {exc}") from None
    if scheme == "auto":
        scheme = detect_scheme(tags for _, tags in sentences)
    counts, out = Counts(schemes={source: scheme}), []
    for i, (tokens, tags) in enumerate(sentences):
        where = f"{source}: row {i}"
        try:
            spans = tags_to_spans(tags, scheme)
        except ValueError as exc:
            raise NERDataError(f"{where}: field 'ner_tags': {exc}") from None
        _check_types(spans, types, where)
        out.append(_finish(tokens, spans, where, counts))
    return out, counts


def load_hf(name_or_path: str) -> tuple[Any, list[str]]:
    """A DatasetDict (``load_from_disk`` for a directory, else ``load_dataset``) and its tag
    names (the ``ner_tags`` ClassLabel names)."""
    import datasets

    path = Path(name_or_path)
    ds = datasets.load_from_disk(str(path)) if path.is_dir() else \
        datasets.load_dataset(name_or_path)
    first = next(iter(ds.values()))
    feature = first.features.get("ner_tags")
    names = getattr(getattr(feature, "feature", None), "names", None)
    if not names:
        raise NERDataError(f"{name_or_path}: field 'ner_tags': expected a Sequence of ClassLabel "
                           f"with tag names (e.g. O, B-PER, I-PER)")
    return ds, list(names)


def types_of(sentences: Iterable[Sentence]) -> tuple[str, ...]:
    """The sorted entity types of ``sentences``."""
    return tuple(sorted({t for s in sentences for _, _, t in s.spans}))


__all__ = ["SCHEMES", "Counts", "Document", "NERDataError", "Sentence", "detect_scheme",
           "load_hf", "read_conll", "read_docred", "read_hf_split", "tags_to_spans", "types_of"]
