"""Multi-label image classification tasks: ``image_multilabel``, ``coco``, ``nus_wide``, ``voc``.

Sources (``tasks/image_classification/data.py`` reads and validates them):

- ``format: coco``: ``data_dir`` with ``annotations/instances_<split>.json`` and the images in
  ``images/<split>/`` or ``<split>/`` (the official layout; splits default to train2017 / val2017,
  use ``--task.train_split train2014 --task.test_split val2014`` for the papers' COCO-2014).
- ``format: yolo``: ``data_dir`` with ``images/<split>/``, ``labels/<split>/`` and the class names
  in ``data.yaml`` (``--task.names_file``, ``--task.labels_dir`` for other layouts).
- ``format: nus_wide``: the ASL / ML-Decoder CSV (``--task.csv_file``, default
  ``nus_wide_data.csv`` in ``data_dir``) with images under ``data_dir/images``.
- ``format: voc``: a ``VOCdevkit/VOC2007`` directory, image sets trainval / test.
- ``format: hf``: ``--task.hf`` a ``datasets`` directory saved with ``save_to_disk`` (or a hub
  name, which needs the network).
- ``dataset: coco128``: the shared 256-image COCO copy (YOLO layout; train2017 / val2017; its
  train2017 folder has 2 label files without an image, skipped and counted, and 2 images without
  objects, skipped like every image without labels).

Images without labels are skipped by default (``empty: skip``; the ASL / ML-Decoder COCO loaders
iterate ``coco.imgToAnns``, which never lists them); every skip is counted in
``extra.task_info.skipped``.

Model selection never looks at the evaluation split: a fixed part of the train split (the
``holdout`` fraction of image ids with the smallest sha256, independent of file order) is held out
as the ``dev`` split; the evaluation split (val2017, NUS-WIDE's val, VOC test) is ``test``.

Metrics over the whole split: mAP (primary, ``map``: classes without positives in the split are
left out of the mean) and ``map_zero`` (those classes score AP 0 and the mean is over all C, as
the ASL / ML-Decoder ``mAP`` helpers compute it; a fraction, theirs is in percent),
CP/CR/CF1/OP/OR/OF1 at probability 0.5 (CF1 = ML-GCN's harmonic mean of CP and CR; ASL's
validate.py prints the mean per-class F1 under that name, not reported here) and their top-3
variants (a label also has to be among the image's 3 best), and the AAM paper's adaptive
per-class-threshold metrics (section 4.5): thresholds maximizing each class's F1 on the dev split
(the AAM paper tunes on the train subset; MLLB tunes on held-out data the model never trained
on), applied to the test split: ``calibrate`` returns them as the ``per_class`` of a
``DecisionRule`` (policy ``per_class_dev_tuned``, global ``value`` 0.5 for the other metrics),
which ``evaluate`` takes as an argument and the results JSON records as ``threshold``. A class
without positives in dev keeps 0.5 (counted in ``extra.task_info``). Uncalibrated
(``rule=None``), the adaptive metrics are an error (they have no thresholds to use).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from tasks import metrics as M
from tasks.base import (
    SHARED_DATA,
    TASKS,
    DecisionRule,
    Task,
    check_split,
    held_out,
)
from tasks.image_classification.data import (
    ImageDataError,
    ImageRecord,
    ImageSplit,
    label_matrix,
    open_image,
    read_coco,
    read_hf,
    read_nus_wide_csv,
    read_voc,
    read_yolo,
    read_yolo_names,
)
from tasks.image_classification.data import (
    check_images as verify_images,
)
from tasks.image_classification.transforms import build_transform, normalize, resolve_config

# named variants of the shared data: format, layout and the held-out fraction that defines them
NAMED: dict[str, dict[str, Any]] = {
    "coco128": {"format": "yolo", "data_dir": SHARED_DATA / "coco128_lightly",
                "labels_dir": "object_detection/labels",
                "names_file": "object_detection/config.yaml", "orphan_labels": "skip",
                "train_split": "train2017", "test_split": "val2017", "holdout": 0.2},
}
FORMATS = ("coco", "yolo", "nus_wide", "voc", "hf")
DEFAULT_SPLITS = {"coco": ("train2017", "val2017"), "yolo": ("train", "val"),
                  "nus_wide": ("train", "val"), "voc": ("trainval", "test"),
                  "hf": ("train", "test")}
DEFAULT_HOLDOUT = 0.1
F1_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1")


class ImageFiles(Dataset):
    """Items ``{"index", "image" uint8 [3, H, W], "targets" [C]}``; images decoded on access."""

    def __init__(self, records: list[ImageRecord], targets: np.ndarray, transform: Any) -> None:
        self.records, self.transform = records, transform
        self.targets = torch.from_numpy(targets.astype(np.float32))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"index": i, "image": self.transform(open_image(self.records[i])),
                "targets": self.targets[i]}


def _first_dir(root: Path, candidates: list[str], what: str) -> Path:
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    raise ImageDataError(f"{root}: no {what} directory; looked for "
                         + ", ".join(str(root / c) for c in candidates))


@TASKS.register("image_multilabel")
class ImageMultilabelTask(Task):
    """Multi-label image classification from any supported source (see the module docstring)."""

    name = "image_multilabel"
    version = "1"
    primary_metric = "map"
    metrics = ("map", "map_zero", *F1_KEYS, *(f"{k}_top3" for k in F1_KEYS),
               *(f"adaptive_{k}" for k in F1_KEYS))
    default_model = "effnet_lite0"
    fixed_format: ClassVar[str] = ""

    def __init__(self, dataset: str = "", data_dir: str = "", format: str = "",
                 hf: str = "", train_split: str = "", test_split: str = "",
                 holdout: float = -1.0, empty: str = "skip", missing_images: str = "error",
                 check_images: str = "error", labels_dir: str = "", names_file: str = "",
                 orphan_labels: str = "",
                 csv_file: str = "nus_wide_data.csv", difficult: str = "positive",
                 image_size: int = 0, mean: list[float] | None = None,
                 std: list[float] | None = None, interpolation: str = "",
                 augment: str = "papers", randaugment: str = "rand-m9-mstd0.5",
                 cutout: float = 0.5) -> None:
        self.kwargs = dict(dataset=dataset, data_dir=data_dir, format=format, hf=hf,
                           train_split=train_split, test_split=test_split, holdout=holdout,
                           empty=empty, missing_images=missing_images, check_images=check_images,
                           labels_dir=labels_dir, names_file=names_file,
                           orphan_labels=orphan_labels, csv_file=csv_file,
                           difficult=difficult, image_size=image_size, mean=mean, std=std,
                           interpolation=interpolation, augment=augment, randaugment=randaugment,
                           cutout=cutout)
        named: dict[str, Any] = {}
        if dataset:
            if data_dir or hf:
                raise ValueError(f"task {self.name!r}: give dataset or data_dir/hf, not both")
            if dataset not in NAMED:
                raise ValueError(f"task {self.name!r}: unknown dataset {dataset!r}; known: "
                                 f"{sorted(NAMED)} (or pass data_dir with format)")
            named = NAMED[dataset]
            if not Path(named["data_dir"]).is_dir():
                raise ImageDataError(
                    f"dataset {dataset!r} reads the shared data at {named['data_dir']}, which is "
                    f"not a directory; set MLLB_SHARED_DATA to the folder holding "
                    f"{Path(named['data_dir']).name}/")
        elif not (data_dir or hf):
            raise ValueError(f"task {self.name!r}: give one of dataset (one of {sorted(NAMED)}), "
                             f"data_dir (with format, one of {FORMATS}) or hf")
        fmt = format or named.get("format") or self.fixed_format or ("hf" if hf else "")
        if fmt not in FORMATS:
            raise ValueError(f"task {self.name!r}: format must be one of {FORMATS}, got {fmt!r}")
        if check_images not in ("error", "skip", "off"):
            raise ValueError(f"task {self.name!r}: check_images must be 'error', 'skip' or "
                             f"'off', got {check_images!r}")
        default_holdout = named.get("holdout", DEFAULT_HOLDOUT)
        self.holdout = default_holdout if holdout < 0 else float(holdout)
        train_split = train_split or named.get("train_split") or DEFAULT_SPLITS[fmt][0]
        test_split = test_split or named.get("test_split") or DEFAULT_SPLITS[fmt][1]
        root = Path(named.get("data_dir") or data_dir)
        opts = dict(labels_dir=labels_dir or named.get("labels_dir", "labels"),
                    names_file=names_file or named.get("names_file", "data.yaml"),
                    orphan_labels=orphan_labels or named.get("orphan_labels", "error"),
                    csv_file=csv_file, difficult=difficult, empty=empty, missing=missing_images)
        self.label_names, splits = self._read(fmt, root, hf, train_split, test_split, opts)
        self.num_labels = len(self.label_names)
        if dataset:
            self.dataset_name = dataset
        elif fmt == "hf":
            self.dataset_name = f"{Path(hf).name}-{test_split}"
        else:
            self.dataset_name = f"{root.resolve().name}-{test_split}"
        if self.holdout != default_holdout:  # the held-out part defines the data variant
            self.dataset_name += f"-holdout{self.holdout:g}"

        self.skipped = {s: dict(split.skipped) for s, split in splits.items()}
        self.records: dict[str, list[ImageRecord]] = {}
        for split, key in (("train", train_split), ("test", test_split)):
            records = splits[key].records
            if check_images != "off":
                records, bad = verify_images(records, policy=check_images)
                if bad:
                    self.skipped[key]["bad_image"] = bad
            self.records[split] = records
        dev_ids = held_out([r.id for r in self.records["train"]], self.holdout,
                           salt=self.dataset_name)
        train = self.records.pop("train")
        self.records["train"] = [r for r in train if r.id not in dev_ids]
        self.records["dev"] = [r for r in train if r.id in dev_ids]
        if not self.records["dev"] or not self.records["train"] or not self.records["test"]:
            raise ImageDataError(
                f"{self.dataset_name}: empty split after holding out {self.holdout:g} of "
                f"{len(train)} train images: " + ", ".join(
                    f"{s} {len(r)}" for s, r in self.records.items()))
        self.target_arrays = {s: label_matrix(r, self.num_labels)
                              for s, r in self.records.items()}
        self.splits = {"train": train_split, "dev": f"{train_split} (held out)",
                       "test": test_split}
        self.data_config = resolve_config(None, image_size, mean, std, interpolation)

    @staticmethod
    def _read(fmt: str, root: Path, hf: str, train_split: str, test_split: str,
              opts: dict[str, Any]) -> tuple[list[str], dict[str, ImageSplit]]:
        """(class names, {split name: ImageSplit}) of the two source splits."""
        empty, missing = opts["empty"], opts["missing"]
        if fmt != "hf" and not root.is_dir():
            raise ImageDataError(f"data_dir {root} is not a directory")
        if fmt == "coco":
            out: dict[str, ImageSplit] = {}
            names: list[str] = []
            for split in (train_split, test_split):
                ann = root / "annotations" / f"instances_{split}.json"
                if not ann.is_file():
                    raise ImageDataError(f"{root}: missing COCO annotation file {ann}")
                images = _first_dir(root, [f"images/{split}", split], f"{split} image")
                split_names, out[split] = read_coco(ann, images, empty=empty, missing=missing)
                if names and split_names != names:
                    raise ImageDataError(f"{ann}: categories differ from the {train_split} file's")
                names = split_names
            return names, out
        if fmt == "yolo":
            names = read_yolo_names(root / opts["names_file"])
            return names, {split: read_yolo(
                _first_dir(root, [f"images/{split}"], f"{split} image"),
                _first_dir(root, [f"{opts['labels_dir']}/{split}"], f"{split} label"),
                len(names), empty=empty, orphan_labels=opts["orphan_labels"])
                for split in (train_split, test_split)}
        if fmt == "nus_wide":
            names, by_split = read_nus_wide_csv(root / opts["csv_file"], root / "images",
                                                empty=empty, missing=missing)
            for split in (train_split, test_split):
                if split not in by_split:
                    raise ImageDataError(f"{root / opts['csv_file']}: no rows with split "
                                         f"{split!r}; found {sorted(by_split)}")
            return names, by_split
        if fmt == "voc":
            out = {}
            for split in (train_split, test_split):
                names, out[split] = read_voc(root, split, difficult=opts["difficult"],
                                             missing=missing)
            return names, out
        names, train = read_hf(hf, train_split, empty=empty)
        _, test = read_hf(hf, test_split, class_names=names, empty=empty)
        return names, {train_split: train, test_split: test}

    def dataset(self, split: str) -> Dataset:
        """The split's images with the training or the evaluation transform."""
        check_split(self, split)
        kw = self.kwargs
        transform = build_transform(self.data_config, train=split == "train",
                                    augment=kw["augment"], randaugment=kw["randaugment"],
                                    cutout=kw["cutout"])
        return ImageFiles(self.records[split], self.target_arrays[split], transform)

    def prepare_model(self, model: nn.Module) -> None:
        """Take input size, mean/std and interpolation from the model's timm data config."""
        kw = self.kwargs
        self.data_config = resolve_config(getattr(model, "data_config", None), kw["image_size"],
                                          kw["mean"], kw["std"], kw["interpolation"])

    def logits_and_targets(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """model(normalized images [N, 3, H, W]) -> [N, C]; targets [N, C]."""
        return model(normalize(batch["image"], self.data_config)), batch["targets"]

    def targets(self, split: str) -> np.ndarray:
        """The split's label matrix [N, C] (0/1), rows in dataset order."""
        check_split(self, split)
        return self.target_arrays[split]

    def calibrate(self, index: Tensor, scores: Tensor,
                  declared: Mapping[str, Any] | None = None) -> DecisionRule:
        """Per-class thresholds maximizing each class's F1 on dev (0.5 without a dev positive)."""
        self.check_declared_rule(declared)
        s = self.ordered_scores("dev", index, scores)
        tuned = M.tune_class_thresholds(s, self.targets("dev"))
        per_class = np.where(np.isfinite(tuned), tuned, 0.5)
        return DecisionRule("per_class_dev_tuned", 0.5, tuple(per_class.tolist()))

    def info(self) -> dict[str, Any]:
        """Counts, skip reasons, class names and the transform config (thresholds: the rule)."""
        dev_pos = self.target_arrays["dev"].sum(axis=0)
        return {
            "num_examples": {s: len(r) for s, r in self.records.items()},
            "source_splits": self.splits, "skipped": self.skipped, "holdout": self.holdout,
            "class_names": self.label_names, "data_config": {
                k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config.items()},
            "adaptive_fallback_classes": int((dev_pos == 0).sum()),
        }

    def fingerprint_arrays(self, split: str) -> list[np.ndarray]:
        """Image ids (not paths: the same data elsewhere has the same fingerprint) and targets."""
        ids = "\n".join(r.id for r in self.records[split]).encode()
        return [np.frombuffer(hashlib.sha256(ids).digest(), dtype=np.uint8),
                self.target_arrays[split]]


@TASKS.register("coco")
class CocoTask(ImageMultilabelTask):
    """MS-COCO: ``--data_dir`` in the official layout, or the shared ``coco128`` (the default)."""

    name = "coco"
    fixed_format = "coco"

    def __init__(self, dataset: str = "", data_dir: str = "", **kwargs: Any) -> None:
        if not (dataset or data_dir or kwargs.get("hf")):
            dataset = "coco128"
        super().__init__(dataset=dataset, data_dir=data_dir, **kwargs)


@TASKS.register("nus_wide")
class NusWideTask(ImageMultilabelTask):
    """NUS-WIDE in the ASL / ML-Decoder CSV layout: ``--data_dir`` (not bundled)."""

    name = "nus_wide"
    fixed_format = "nus_wide"


@TASKS.register("voc")
class VocTask(ImageMultilabelTask):
    """PASCAL VOC 2007: ``--data_dir VOCdevkit/VOC2007`` (trainval for training, test for eval)."""

    name = "voc"
    fixed_format = "voc"
