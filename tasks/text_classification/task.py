"""Multi-label text classification: ``aapd`` (the AAPD/SGM layout) and ``text_multilabel``.

``text_multilabel`` reads any supported source (``tasks/text_classification/data.py``):
``data_dir`` in the AAPD layout, ``json_file`` (records; re-split 7:1:2 by id hash, dataset
variant ``<name>-resplit``), ``hf`` (a ``datasets`` directory or hub name), or one of the named
variants of the shared data: ``reuters21578-test-resplit`` and ``goemotions-test-resplit`` (the
shared copies hold only the official *test* split, so MLLB re-splits it; results on them are
never comparable with the standard splits, hence the distinct dataset name).

Documents become word ids (vocabulary from the train split only, truncated to ``max_len``, 500
as in LSAN), cached on disk as a ``datasets.DatasetDict`` keyed by the corpus content and the
options (``$MLLB_CACHE``, default ``~/.cache/mllb``); the model gets ``input_ids`` [N, L] and
``attention_mask`` [N, L], padded per batch.
Metrics over the whole split: P@1/3/5 and nDCG@1/3/5 (primary P@1, the APL paper's tuning
metric), micro/macro F1 and hamming loss at probability 0.5.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from tasks.base import SHARED_DATA, TASKS, Task, check_split
from tasks.text_classification.data import (
    PAD,
    TextDataError,
    TextExample,
    Vocab,
    load_word_vectors,
    read_aapd,
    read_hf,
    read_json_records,
    resplit,
    tokenize,
)

# encoded corpora are cached here (a datasets.DatasetDict per corpus x options x code version)
CACHE = Path(os.environ.get("MLLB_CACHE", Path.home() / ".cache" / "mllb")) / "text"
NAMED = {
    "reuters21578-test-resplit": SHARED_DATA / "mltext_fallback" / "reuters" / "test_data.json",
    "goemotions-test-resplit": SHARED_DATA / "mltext_fallback" / "goemotions" / "test_data.json",
}


class EncodedText(Dataset):
    """Items ``{"index", "input_ids" [L], "targets" [C]}``."""

    def __init__(self, ids: list[list[int]], targets: np.ndarray) -> None:
        self.ids = ids
        self.targets = torch.from_numpy(targets)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"index": i, "input_ids": self.ids[i], "targets": self.targets[i]}


@TASKS.register("text_multilabel")
class TextMultilabelTask(Task):
    """Multi-label text classification over word ids (see the module docstring)."""

    name = "text_multilabel"
    version = "1"
    primary_metric = "P@1"
    metrics = ("P@1", "nDCG@1", "P@3", "nDCG@3", "P@5", "nDCG@5", "micro_f1", "macro_f1",
               "hamming_loss")
    default_model = "lsan"

    def __init__(self, dataset: str = "", data_dir: str = "", json_file: str = "",
                 hf: str = "", max_len: int = 500, min_freq: int = 1,
                 vectors: str = "", unseen_labels: str = "error", tokenizer: str = "") -> None:
        sources = [x for x in (dataset, data_dir, json_file, hf) if x]
        if len(sources) != 1:
            raise ValueError(f"task {self.name!r}: give exactly one of dataset (one of "
                             f"{sorted(NAMED)}), data_dir, json_file, hf; got {len(sources)}")
        if unseen_labels not in ("error", "drop"):
            raise ValueError(f"task {self.name!r}: unseen_labels must be 'error' or 'drop', "
                             f"got {unseen_labels!r}")
        self.kwargs = dict(dataset=dataset, data_dir=data_dir, json_file=json_file, hf=hf,
                           max_len=max_len, min_freq=min_freq, vectors=vectors,
                           unseen_labels=unseen_labels, tokenizer=tokenizer)
        if dataset:
            if dataset not in NAMED:
                raise ValueError(f"task {self.name!r}: unknown dataset {dataset!r}; known: "
                                 f"{sorted(NAMED)} (or pass data_dir / json_file / hf)")
            splits, self.dataset_name = resplit(read_json_records(NAMED[dataset])), dataset
        elif data_dir:
            splits, self.dataset_name = read_aapd(data_dir), Path(data_dir).name or "aapd"
        elif json_file:
            splits = resplit(read_json_records(json_file))
            self.dataset_name = f"{Path(json_file).stem}-resplit"
        else:
            splits, self.dataset_name = read_hf(hf), hf
        self._setup(splits, max_len, min_freq, vectors, unseen_labels, tokenizer)

    def _setup(self, splits: dict[str, list[TextExample]], max_len: int, min_freq: int,
               vectors: str, unseen_labels: str, tokenizer: str) -> None:
        sizes = {s: len(exs) for s, exs in splits.items()}
        if not all(sizes.values()):  # a handful of documents resplit 7:1:2 leaves a split empty
            raise TextDataError(f"{self.dataset_name}: every split needs examples, got {sizes}")
        key = hashlib.sha256(json.dumps([self.name, self.version, self.kwargs, [
            (s, [(e.id, e.text, e.labels) for e in exs]) for s, exs in sorted(splits.items())]],
            sort_keys=True).encode()).hexdigest()[:20]
        self.pad_id, self.hf_tokenizer = PAD, None
        if tokenizer:  # a transformers tokenizer (local directory) for text_encoder_cls models
            from transformers import AutoTokenizer

            self.hf_tokenizer = AutoTokenizer.from_pretrained(tokenizer)
            self.pad_id = self.hf_tokenizer.pad_token_id or 0
        cache = CACHE / key
        if (cache / "meta.json").is_file():
            self._load_cache(cache)
        else:
            self._encode(splits, max_len, min_freq, unseen_labels)
            self._save_cache(cache)
        self.embeddings = None
        if vectors:
            self.embeddings, self.vectors_found = load_word_vectors(vectors, self.vocab)

    def _save_cache(self, cache: Path) -> None:
        """Encoded splits as a ``datasets.DatasetDict`` plus vocabulary/labels, atomically."""
        import datasets

        tmp = cache.with_name(cache.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        datasets.DatasetDict({s: datasets.Dataset.from_dict(
            {"input_ids": self._ids[s], "targets": self._y[s]}) for s in self._ids}
        ).save_to_disk(str(tmp))
        (tmp / "meta.json").write_text(json.dumps({
            "vocab": self.vocab.itos, "labels": self.label_names,
            "dropped_unseen": self.dropped_unseen}))
        shutil.rmtree(cache, ignore_errors=True)
        tmp.rename(cache)

    def _load_cache(self, cache: Path) -> None:
        import datasets

        meta = json.loads((cache / "meta.json").read_text())
        self.vocab, self.label_names = Vocab(meta["vocab"]), meta["labels"]
        self.num_labels, self.dropped_unseen = len(self.label_names), meta["dropped_unseen"]
        ds = datasets.load_from_disk(str(cache)).with_format("numpy")
        self._ids = {s: [list(map(int, x)) for x in ds[s]["input_ids"]] for s in ds}
        self._y = {s: np.asarray(ds[s]["targets"], dtype=np.float32).reshape(
            len(ds[s]), self.num_labels) for s in ds}

    def _encode(self, splits: dict[str, list[TextExample]], max_len: int, min_freq: int,
                unseen_labels: str) -> None:
        tokens = {s: [tokenize(ex.text) for ex in exs] for s, exs in splits.items()}
        self.vocab = Vocab.build(tokens["train"], min_freq=min_freq)
        self.label_names = sorted({lab for ex in splits["train"] for lab in ex.labels})
        index = {lab: i for i, lab in enumerate(self.label_names)}
        self.num_labels = len(self.label_names)
        self.dropped_unseen: dict[str, int] = {}
        self._ids, self._y = {}, {}
        for split, exs in splits.items():
            y = np.zeros((len(exs), self.num_labels), dtype=np.float32)
            unseen = 0
            for i, ex in enumerate(exs):
                for lab in ex.labels:
                    if lab in index:
                        y[i, index[lab]] = 1.0
                    elif unseen_labels == "error":
                        raise TextDataError(
                            f"{self.dataset_name}: {split} example {ex.id!r} has label {lab!r}, "
                            f"which the train split never shows; pass unseen_labels='drop' to "
                            f"drop such labels from the targets (they are counted)")
                    else:
                        unseen += 1
            self.dropped_unseen[split] = unseen
            if self.hf_tokenizer is not None:
                self._ids[split] = self.hf_tokenizer(
                    [ex.text for ex in exs], truncation=True, max_length=max_len)["input_ids"]
            else:
                self._ids[split] = [self.vocab.encode(t, max_len) for t in tokens[split]]
            self._y[split] = y

    def dataset(self, split: str) -> Dataset:
        """The split's encoded documents."""
        check_split(self, split)
        return EncodedText(self._ids[split], self._y[split])

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Pad ``input_ids`` to the longest document of the batch; mask the padding."""
        length = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), length), dtype=torch.bool)
        for row, it in enumerate(items):
            ids[row, :len(it["input_ids"])] = torch.tensor(it["input_ids"])
            mask[row, :len(it["input_ids"])] = True
        return {"index": torch.tensor([it["index"] for it in items]), "input_ids": ids,
                "attention_mask": mask,
                "targets": torch.stack([it["targets"] for it in items])}

    def model_kwargs(self) -> dict[str, Any]:
        """Vocabulary size and embedding size (that of the pretrained vectors, if any)."""
        if self.hf_tokenizer is not None:
            return {"vocab_size": len(self.hf_tokenizer)}
        kw: dict[str, Any] = {"vocab_size": len(self.vocab)}
        if self.embeddings is not None:
            kw["embed_dim"] = int(self.embeddings.shape[1])
        return kw

    def prepare_model(self, model: nn.Module) -> None:
        """Copy pretrained word vectors into the model's embedding, when configured."""
        if self.embeddings is not None:
            with torch.no_grad():
                model.embedding.weight.copy_(torch.from_numpy(self.embeddings))

    def logits_and_targets(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """model(input_ids, attention_mask) -> [N, C]; targets [N, C]."""
        return model(batch["input_ids"], batch["attention_mask"]), batch["targets"]

    def targets(self, split: str) -> np.ndarray:
        """The split's label matrix [N, C] (float32 0/1)."""
        check_split(self, split)
        return self._y[split]

    def info(self) -> dict[str, Any]:
        """Counts worth recording with the results."""
        return {"vocab_size": len(self.vocab), "num_examples": {s: len(v) for s, v in
                                                                self._ids.items()},
                "dropped_unseen_labels": self.dropped_unseen}

    def fingerprint_arrays(self, split: str) -> list[np.ndarray]:
        """Encoded documents and targets of the split."""
        flat = hashlib.sha256(repr(self._ids[split]).encode()).digest()
        return [np.frombuffer(flat, dtype=np.uint8), self._y[split]]


@TASKS.register("aapd")
class AAPDTask(TextMultilabelTask):
    """AAPD (Yang et al., COLING 2018) in its SGM layout: ``--data_dir PATH`` (download it)."""

    name = "aapd"

    def __init__(self, data_dir: str = "", **kwargs: Any) -> None:
        if not data_dir:
            raise ValueError("task 'aapd' needs data_dir: a directory with text_{train,val,test} "
                             "and label_{train,val,test} (AAPD is not bundled; see the README)")
        super().__init__(data_dir=data_dir, **kwargs)
        self.dataset_name = "aapd"
