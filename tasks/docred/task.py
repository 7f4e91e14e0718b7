"""DocRED document-level relation extraction as a multi-label task over entity pairs.

Each document is one dataset item; each ordered entity pair (h, t), h != t, is one row of the
model's output [P, C] (``row_index`` in the batch numbers the rows of a split, so ``evaluate``
gets every pair of every document exactly once whatever the DDP sharding). Columns are the ids of
``rel2id`` including the no-relation class ``Na``, a target of its own as in MRN and ATLOP
(``tasks/docred/data.py``); metrics and predictions ignore it.

Data (one of):

* ``dataset="re-docred-devtrain"`` (the default; the shared files): train on Re-DocRED
  ``dev_revised.json`` minus a held-out 10% of its documents (the 50 titles with the smallest
  sha256, ``data.held_out_titles``) used for model selection and threshold tuning; evaluate on
  ``test_revised.json``. Only Re-DocRED dev and test are available here, hence the distinct name.
* ``data_dir``: a directory with DocRED or Re-DocRED files under their official names
  (``train_annotated.json`` or ``train_revised.json``, ``dev[_revised].json``,
  ``test[_revised].json``) and the id files (``rel2id.json``, ``ner2id.json``, ``word2id.json``)
  in it or in ``meta/``. With a labelled test file: train / dev / test as given (``re-docred``
  or ``docred``). The original DocRED test labels are hidden: then 10% of train is held out for
  selection and the dev file is the evaluation split (``docred-dev``).
* ``train_file``/``test_file`` (+ ``dev_file``, else 10% of train is held out) and ``meta_dir``.

Decision rule: a relation is predicted for a pair when its probability exceeds one global
threshold tuned on the selection split, never on the evaluation split (``threshold="dev_tuned"``),
for Ign F1 as MRN's code tunes it (``threshold_objective="ign_f1"``, the default: main.py:160-167
takes the argmax of ``nt_f1_arr``; here "in train" is the official evaluation's rule, any
mention-name pair, not MRN's preprocess flag) or for F1 (``threshold_objective="f1"``, MLLB's
rule before issue 14): ``calibrate`` returns it as a ``DecisionRule``
(policy ``dev_tuned``), which ``evaluate`` and ``write_predictions`` take as an argument (and the
results JSON records); or a fixed ``threshold=<float>`` (policy ``fixed``; ``calibrate`` tunes
nothing). Uncalibrated (``rule=None``), a ``dev_tuned`` task uses the fixed 0.5. A loss that
declares its own decision rule (``declared_rules``: policy ``threshold_class``, ATLOP's ``atl``)
replaces the tuned threshold: a relation is predicted for a pair when its score exceeds the
score of the threshold column (which must be the ``Na`` column, as ATLOP's TH class), at most
``top_k`` per pair, and ``Na`` never (``DecisionRule.decide``). Metrics come from
``tasks/docred/scorer.py`` (the official evaluation semantics, ``extra_metrics``): F1, Ign F1
(train facts = the training split), precision, recall, intra/inter-sentence F1; primary Ign F1.
Subword models (``tokenizer``): entity markers ``*`` once per marked word as ATLOP's prepro.py
(``markers="word"``, the default) or once per mention (``markers="mention"``).
Predictions are written in the official submission format (``write_predictions``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from mllb_core.errors import UserError
from mllb_core.registry import resolve_local_dir
from tasks.base import SHARED_DATA, TASKS, DecisionRule, ListDataset, Task, check_split, find_file
from tasks.docred import data as D
from tasks.docred.data import DocREDFormatError, read_json
from tasks.metrics import tune_threshold

SHARED = SHARED_DATA / "docred"
NAMED = ("re-docred-devtrain",)
DOCRED_METRICS = ("ign_f1", "f1", "precision", "recall", "ign_precision", "intra_f1",
                  "inter_f1")
TRAIN_NAMES = ("train_revised.json", "train_annotated.json")
DEV_NAMES = ("dev_revised.json", "dev.json")
TEST_NAMES = ("test_revised.json", "test.json")


def tune_threshold_ign(scores: np.ndarray, targets: np.ndarray, in_train: np.ndarray
                       ) -> tuple[float, float]:
    """The global threshold maximizing Ign F1 of ``scores > threshold``, as MRN's ``nt_f1_arr``
    (main.py:145-167): Ign precision = (correct - correct in train) / (predicted - correct in
    train), recall = correct / gold (not adjusted). ``in_train`` [R, C] flags the gold facts
    seen in training. Cuts only between distinct scores, the threshold the midpoint of the two
    scores around the best cut, as :func:`tune_threshold` (MRN predicts ``score > theta`` with
    theta the score at its best position, which leaves that one prediction out). Returns
    (threshold, Ign F1)."""
    s, y = np.asarray(scores).ravel(), np.asarray(targets).ravel().astype(np.float64)
    it = (np.asarray(in_train).ravel() & (y > 0)).astype(np.float64)
    gold = y.sum()
    if gold == 0 or s.size == 0:
        return 0.5, 0.0
    order = np.argsort(-s, kind="stable")
    s, tp, tp_train = s[order], np.cumsum(y[order]), np.cumsum(it[order])
    den = np.arange(1, s.size + 1) - tp_train
    precision = np.divide(tp - tp_train, den, out=np.zeros(s.size), where=den > 0)
    recall = tp / gold
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(s.size),
                   where=precision + recall > 0)
    valid = np.ones(s.size, dtype=bool)
    valid[:-1] = s[:-1] > s[1:]
    f1 = np.where(valid, f1, -1.0)
    k = int(np.argmax(f1))
    if f1[k] <= 0:  # nothing new right at any cut: predict nothing
        return float(s[0]), 0.0
    below = s[k + 1] if k + 1 < s.size else s[k] - 1.0
    return float((s[k] + below) / 2), float(f1[k])


@TASKS.register("docred")
class DocREDTask(Task):
    """Document-level relation extraction on DocRED-format files (see the module docstring)."""

    name = "docred"
    version = "2"  # 2: threshold tuned for Ign F1 and ATLOP word markers by default
    primary_metric = "ign_f1"
    metrics = DOCRED_METRICS
    declared_rules = ("threshold_class",)
    default_model = "mrn"

    def __init__(self, dataset: str = "", data_dir: str = "", train_file: str = "",
                 dev_file: str = "", test_file: str = "", meta_dir: str = "",
                 rel_info: str = "", vectors: str = "", tokenizer: str = "",
                 threshold: str | float = "dev_tuned", holdout: float = 0.1,
                 markers: str = "word", threshold_objective: str = "ign_f1") -> None:
        self.kwargs = dict(dataset=dataset, data_dir=data_dir, train_file=train_file,
                           dev_file=dev_file, test_file=test_file, meta_dir=meta_dir,
                           rel_info=rel_info, vectors=vectors, tokenizer=tokenizer,
                           threshold=threshold, holdout=holdout, markers=markers,
                           threshold_objective=threshold_objective)
        if threshold_objective not in ("ign_f1", "f1"):
            # what the dev_tuned threshold maximizes: MRN's Ign F1, or F1
            raise ValueError(f"task 'docred': threshold_objective must be 'ign_f1' or 'f1', got "
                             f"{threshold_objective!r}")
        if markers not in ("word", "mention"):
            # subword models: one "*" per marked word (ATLOP) or one per mention (earlier MLLB)
            raise ValueError(f"task 'docred': markers must be 'word' or 'mention', got "
                             f"{markers!r}")
        if threshold != "dev_tuned" and not isinstance(threshold, (int, float)):
            raise ValueError(f"task 'docred': threshold must be 'dev_tuned' or a number, got "
                             f"{threshold!r}")
        if not 0 < holdout < 1:
            raise ValueError(f"task 'docred': holdout must be in (0, 1), got {holdout!r}")
        # None: tuned on dev by calibrate(); a number: the fixed threshold
        self.fixed_threshold = None if threshold == "dev_tuned" else float(threshold)
        files, meta = self._locate(dataset, data_dir, train_file, dev_file, test_file, meta_dir)
        info = rel_info or next((str(p) for p in (meta / "rel_info.json",
                                                  SHARED / "docred" / "rel_info.json")
                                 if p.is_file()), "")
        self.schema = D.read_schema(meta / "rel2id.json", meta / "ner2id.json", info or None)
        self.num_labels = self.schema.num_labels
        self.docs = self._split(files, holdout)
        self.hf_tokenizer = None
        self.embeddings = None
        self.word_embedding = "as the model builds it"
        if tokenizer:
            from transformers import AutoTokenizer

            self.hf_tokenizer = AutoTokenizer.from_pretrained(resolve_local_dir(tokenizer))
            self.pad_id = self.hf_tokenizer.pad_token_id or 0
        else:
            word2id = read_json(meta / "word2id.json", "word2id")
            self.word2id = {str(k): int(v) for k, v in word2id.items()}
            self.pad_id = 0
            if vectors:
                from tasks.text_classification.data import Vocab, load_word_vectors

                itos = [""] * (max(self.word2id.values()) + 1)
                for w, i in self.word2id.items():
                    itos[i] = w
                self.embeddings, self.vectors_found = load_word_vectors(vectors, Vocab(itos))
        self.items = {s: self._encode(docs) for s, docs in self.docs.items()}
        self.rows = {s: sum(len(it["pairs"]) for it in items) for s, items in self.items.items()}
        self._target_cache: dict[str, np.ndarray] = {}

    # -- data sources ----------------------------------------------------------------------
    def _locate(self, dataset: str, data_dir: str, train_file: str, dev_file: str,
                test_file: str, meta_dir: str) -> tuple[dict[str, Path | None], Path]:
        """Files of each split (dev None: hold out part of train) and the id-file folder."""
        if sum(map(bool, (dataset, data_dir, train_file or test_file))) > 1:
            raise ValueError("task 'docred': give one of dataset, data_dir, or train_file + "
                             "test_file")
        if train_file or test_file:
            if not (train_file and test_file):
                raise ValueError("task 'docred': train_file and test_file go together")
            self.dataset_name = Path(test_file).parent.name or "docred-files"
            meta = Path(meta_dir) if meta_dir else SHARED / "meta"
            return ({"train": Path(train_file), "dev": Path(dev_file) if dev_file else None,
                     "test": Path(test_file)}, meta)
        if data_dir:
            folder = Path(data_dir)
            if not folder.is_dir():
                raise FileNotFoundError(f"task 'docred': data_dir {folder} is not a directory")
            train, dev, test = (find_file(folder, n) for n in (TRAIN_NAMES, DEV_NAMES, TEST_NAMES))
            if train is None or dev is None:
                raise FileNotFoundError(
                    f"task 'docred': {folder} needs a train file (one of {TRAIN_NAMES}) and a "
                    f"dev file (one of {DEV_NAMES})")
            meta = Path(meta_dir) if meta_dir else (
                folder / "meta" if (folder / "meta" / "rel2id.json").is_file() else folder)
            revised = train.name.endswith("_revised.json")
            if test is not None and D.has_labels(test):
                self.dataset_name = "re-docred" if revised else "docred"
                return {"train": train, "dev": dev, "test": test}, meta
            self.dataset_name = "re-docred-dev" if revised else "docred-dev"
            return {"train": train, "dev": None, "test": dev}, meta
        dataset = dataset or NAMED[0]
        if dataset not in NAMED:
            raise ValueError(f"task 'docred': unknown dataset {dataset!r}; known: {list(NAMED)} "
                             f"(or pass data_dir / train_file + test_file)")
        self.dataset_name = dataset
        red = SHARED / "redocred"
        return ({"train": red / "dev_revised.json", "dev": None,
                 "test": red / "test_revised.json"},
                Path(meta_dir) if meta_dir else SHARED / "meta")

    def _split(self, files: dict[str, Path | None], holdout: float) -> dict[str, list[D.Document]]:
        """Read every split; without a dev file, hold out a fixed part of train (by title hash)."""
        train = D.read_documents(files["train"], self.schema)
        docs = {"train": train, "test": D.read_documents(files["test"], self.schema)}
        if files["dev"] is not None:
            docs["dev"] = D.read_documents(files["dev"], self.schema)
            self.selection = f"dev file {files['dev'].name}"
        else:
            held = D.held_out_titles(train, holdout)
            docs["train"] = [d for d in train if d.title not in held]
            docs["dev"] = [d for d in train if d.title in held]
            self.selection = (f"{len(held)} of {len(train)} documents of {files['train'].name} "
                              f"held out (smallest sha256 of title)")
        self.files = {s: str(p) for s, p in files.items() if p is not None}
        return docs

    def _encode(self, docs: list[D.Document]) -> list[dict[str, Any]]:
        """Per document: model inputs, pairs [P, 2], targets [P, C] (uint8), row offset."""
        items, offset = [], 0
        for i, doc in enumerate(docs):
            if self.hf_tokenizer is not None:
                enc = D.encode_subwords(doc, self.hf_tokenizer, self.kwargs["markers"])
                ner = D.entity_type_ids(doc, self.schema, len(enc["input_ids"]), enc["word_pos"])
            else:
                enc = D.encode_words(doc, self.word2id)
                ner = D.entity_type_ids(doc, self.schema, len(enc["input_ids"]))
            pairs = doc.pairs()
            items.append({"index": i, "input_ids": torch.tensor(enc["input_ids"]),
                          "ner_ids": torch.tensor(ner),
                          "mentions": torch.tensor(enc["mentions"], dtype=torch.long),
                          "num_entities": len(doc.entities), "pairs": torch.from_numpy(pairs),
                          "targets": torch.from_numpy(D.targets_of(doc, self.schema)
                                                      .astype(np.uint8)),
                          "row_offset": offset})
            offset += len(pairs)
        return items

    # -- the Task contract -----------------------------------------------------------------
    def dataset(self, split: str) -> Dataset:
        """The split's documents (one item each)."""
        check_split(self, split)
        return ListDataset(self.items[split])

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Pad tokens; number entities, mentions and pair rows over the batch."""
        length = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), length), self.pad_id, dtype=torch.long)
        ner = torch.zeros((len(items), length), dtype=torch.long)
        mask = torch.zeros((len(items), length), dtype=torch.bool)
        mentions, entity_doc, pairs, rows = [], [], [], []
        first = 0  # global id of the document's first entity
        for b, it in enumerate(items):
            n = len(it["input_ids"])
            ids[b, :n], ner[b, :n], mask[b, :n] = it["input_ids"], it["ner_ids"], True
            m = it["mentions"]  # [M, 3] (start, end, entity)
            mentions.append(torch.cat([m.new_full((len(m), 1), b), m[:, :2],
                                       m[:, 2:] + first], 1))
            entity_doc.append(torch.full((it["num_entities"],), b, dtype=torch.long))
            pairs.append(it["pairs"] + first)
            rows.append(it["row_offset"] + torch.arange(len(it["pairs"])))
            first += it["num_entities"]
        return {"index": torch.tensor([it["index"] for it in items]), "input_ids": ids,
                "attention_mask": mask, "ner_ids": ner, "mentions": torch.cat(mentions),
                "entity_doc": torch.cat(entity_doc), "pairs": torch.cat(pairs),
                "row_index": torch.cat(rows),
                "targets": torch.cat([it["targets"] for it in items]).float()}

    def logits_and_targets(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """model(...) -> [P, C] over the batch's entity pairs; targets [P, C]."""
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       mentions=batch["mentions"], entity_doc=batch["entity_doc"],
                       pairs=batch["pairs"], ner_ids=batch["ner_ids"])
        return logits, batch["targets"]

    def row_ids(self, batch: dict[str, Any]) -> Tensor:
        """The entity-pair rows of the batch, numbered over the split (``row_index``)."""
        return batch["row_index"]

    def num_rows(self, split: str) -> int:
        """Entity pairs of the split (every ordered pair of every document)."""
        return self.rows[split]

    def targets(self, split: str) -> np.ndarray:
        """Targets [R, C] (uint8) of every pair row of the split, ``Na`` column included."""
        check_split(self, split)
        if split not in self._target_cache:
            self._target_cache[split] = torch.cat(
                [it["targets"] for it in self.items[split]]).numpy()
        return self._target_cache[split]

    def default_rule(self) -> DecisionRule:
        """The fixed threshold option, else (``dev_tuned``, uncalibrated) the fixed 0.5."""
        return DecisionRule("fixed", 0.5 if self.fixed_threshold is None
                            else self.fixed_threshold)

    def check_declared_rule(self, declared: Mapping[str, Any] | None) -> None:
        """As :meth:`Task.check_declared_rule`, and the threshold column must be ``Na`` (the
        no-relation target; ATLOP's TH class is its ``Na`` column 0)."""
        super().check_declared_rule(declared)
        if declared is not None and declared.get("threshold_index") != self.schema.na_id:
            raise UserError(f"task 'docred': the loss's threshold column "
                            f"{declared.get('threshold_index')!r} must be the no-relation column "
                            f"{D.NA!r} ({self.schema.na_id}); pass threshold_index="
                            f"{self.schema.na_id} to the loss")

    def calibrate(self, index: Tensor, scores: Tensor,
                  declared: Mapping[str, Any] | None = None) -> DecisionRule:
        """``dev_tuned``: the global threshold maximizing Ign F1 (``threshold_objective``
        "ign_f1", :func:`tune_threshold_ign`) or F1 ("f1", :func:`tasks.metrics.tune_threshold`)
        over the dev pairs (``Na`` left out); a fixed threshold: that one; a rule the
        loss declares (``threshold_class``): that rule, nothing tuned."""
        self.check_declared_rule(declared)
        if declared is not None:  # the loss's own rule replaces any threshold
            return DecisionRule.from_declared(declared)
        if self.fixed_threshold is not None:
            return self.default_rule()
        s = self.ordered_scores("dev", index, scores)
        keep = np.arange(self.num_labels) != self.schema.na_id
        if self.kwargs["threshold_objective"] == "ign_f1":  # MRN main.py:160-167
            value, _ = tune_threshold_ign(s[:, keep], self.targets("dev")[:, keep],
                                          self.in_train("dev")[:, keep])
        else:
            value, _ = tune_threshold(s[:, keep], self.targets("dev")[:, keep])
        return DecisionRule("dev_tuned", value)

    def in_train(self, split: str) -> np.ndarray:
        """[R, C] bool: gold facts of ``split`` that Ign F1 ignores, i.e. some (head mention
        name, tail mention name, r) of the fact is a fact of the training split (the official
        evaluation's rule, as ``tasks/docred/scorer.py``)."""
        from tasks.docred.scorer import load_train_facts

        key = f"in_train:{split}"
        if key not in self._target_cache:
            facts = load_train_facts([d.raw for d in self.docs["train"]])
            out = np.zeros((self.rows[split], self.num_labels), dtype=bool)
            id2rel = self.schema.id2rel
            for doc, it in zip(self.docs[split], self.items[split], strict=True):
                vs = doc.raw["vertexSet"]
                for h, t, r in doc.facts:
                    if any((m1["name"], m2["name"], id2rel[r]) in facts
                           for m1 in vs[h] for m2 in vs[t]):
                        out[it["row_offset"] + doc.pair_row(h, t), r] = True
            self._target_cache[key] = out
        return self._target_cache[key]

    def predictions(self, split: str, scores: np.ndarray,
                    rule: DecisionRule) -> list[dict[str, Any]]:
        """Official submission records: the decisions of ``rule`` on ``scores`` [R, C] (row
        order), ``Na`` never."""
        above = rule.decide(scores)
        above[:, self.schema.na_id] = False
        id2rel, out = self.schema.id2rel, []
        for doc, it in zip(self.docs[split], self.items[split], strict=True):
            rows, cols = np.nonzero(above[it["row_offset"]:it["row_offset"] + len(it["pairs"])])
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                h, t = it["pairs"][r].tolist()
                out.append({"title": doc.title, "h_idx": h, "t_idx": t, "r": id2rel[c],
                            "evidence": []})
        return out

    def extra_metrics(self, split: str, scores: np.ndarray, targets: np.ndarray,
                      rule: DecisionRule) -> dict[str, float]:
        """The official scorer's metrics of the predictions under ``rule`` (train facts =
        the training split)."""
        # imported here so that `python -m tasks.docred.scorer` does not find itself imported
        from tasks.docred.scorer import score

        result = score(self.predictions(split, scores, rule), [d.raw for d in self.docs[split]],
                       [[d.raw for d in self.docs["train"]]],
                       sources=(f"{split} predictions", f"{split} gold"))
        return {k: float(result[k]) for k in DOCRED_METRICS}

    def example_counts(self, split: str, index: Tensor, scores: Tensor,
                       rule: DecisionRule | None = None) -> np.ndarray | None:
        """Per document (correct, correct_in_train, predicted, gold) [D, 4] of Ign F1 under
        ``rule`` (``Na`` never predicted), as the official scorer counts them."""
        rule = self.default_rule() if rule is None else rule
        above = rule.decide(self.ordered_scores(split, index, scores))  # [R, C]
        above[:, self.schema.na_id] = False
        gold = self.targets(split).astype(bool)
        gold[:, self.schema.na_id] = False
        hit = above & gold
        per_row = np.stack([hit.sum(1), (hit & self.in_train(split)).sum(1), above.sum(1),
                            gold.sum(1)], axis=1)  # [R, 4]
        sizes = [len(it["pairs"]) for it in self.items[split]]
        out = np.zeros((len(sizes), 4), dtype=np.int64)
        np.add.at(out, np.repeat(np.arange(len(sizes)), sizes), per_row)  # rows are in doc order
        return out

    def write_predictions(self, split: str, index: Tensor, scores: Tensor, stem: Path,
                          rule: DecisionRule | None = None) -> str | None:
        """``<stem>.<split>.predictions.json`` in the official submission format."""
        rule = self.default_rule() if rule is None else rule
        path = stem.with_name(f"{stem.name}.{split}.predictions.json")
        tmp = path.with_name(path.name + ".tmp")
        records = self.predictions(split, self.ordered_scores(split, index, scores), rule)
        tmp.write_text(json.dumps(records))
        tmp.replace(path)
        return path.name

    def model_kwargs(self) -> dict[str, Any]:
        """Vocabulary and entity-type sizes (word models) or the tokenizer's special ids."""
        if self.hf_tokenizer is not None:
            tok = self.hf_tokenizer
            return {"vocab_size": len(tok), "cls_token_id": tok.cls_token_id,
                    "sep_token_id": tok.sep_token_id}
        kw: dict[str, Any] = {"vocab_size": max(self.word2id.values()) + 1,
                              "num_entity_types": len(self.schema.ner2id)}
        if self.embeddings is not None:
            kw["embed_dim"] = int(self.embeddings.shape[1])
        return kw

    def prepare_model(self, model: nn.Module) -> None:
        """Copy the pretrained word vectors into ``model.embedding`` (word-level models).

        Without vectors a frozen word embedding would stay random, so it is trained instead
        (recorded in ``info()["word_embedding"]``).
        """
        emb = getattr(model, "embedding", None)
        if self.embeddings is None:
            # frozen, or frozen for the first epochs (MRN's unfreeze_embeddings_after): trained
            # from the start, as MRN's trainer does without pretrained embeddings (main.py:302)
            scheduled = getattr(model, "unfreeze_embeddings_after", None)
            if isinstance(emb, nn.Embedding) and (not emb.weight.requires_grad or scheduled):
                emb.weight.requires_grad_(True)
                if scheduled:
                    model.unfreeze_embeddings_after = 0
                self.word_embedding = "random init, trained (no --task.vectors given)"
            return
        self.word_embedding = f"{self.kwargs['vectors']} ({self.vectors_found} words found)"
        if not isinstance(emb, nn.Embedding) or emb.weight.shape != self.embeddings.shape:
            raise ValueError(f"task 'docred': vectors {self.kwargs['vectors']!r} need a model "
                             f"with an nn.Embedding 'embedding' of shape "
                             f"{tuple(self.embeddings.shape)} (a word-level model such as mrn)")
        with torch.no_grad():
            emb.weight.copy_(torch.from_numpy(self.embeddings))

    def info(self) -> dict[str, Any]:
        """Documents, pairs and facts per split, the selection split and the Na policy."""
        return {"files": self.files, "selection": self.selection,
                "documents": {s: len(d) for s, d in self.docs.items()},
                "pairs": dict(self.rows),
                "facts": {s: sum(len(d.facts) for d in docs) for s, docs in self.docs.items()},
                "no_relation_class": {"name": D.NA, "column": self.schema.na_id,
                                      "policy": "target column set iff no fact; never predicted"},
                "word_embedding": self.word_embedding}

    def fingerprint_arrays(self, split: str) -> list[np.ndarray]:
        """Titles, encoded inputs, pairs and targets of the split."""
        h = hashlib.sha256()
        for doc, it in zip(self.docs[split], self.items[split], strict=True):
            h.update(doc.title.encode("utf-8"))
            for key in ("input_ids", "mentions", "pairs", "targets"):
                h.update(it[key].numpy().tobytes())
        return [np.frombuffer(h.digest(), dtype=np.uint8)]


__all__ = ["DocREDFormatError", "DocREDTask", "tune_threshold", "tune_threshold_ign"]
