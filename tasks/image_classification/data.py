"""Validated readers of multi-label image datasets: COCO, YOLO folders, NUS-WIDE CSV, VOC, HF.

Every reader returns :class:`ImageRecord` rows (an id unique within the split, the absolute image
path or the encoded bytes, and the sorted distinct class ids of the image) grouped in an
:class:`ImageSplit`. Class ids are always contiguous 0..K-1; each reader says where the K class
names come from.

Bad input never silently drops an example. Malformed files raise :class:`ImageDataError` naming
the file, the line/record/element and what was expected; examples excluded on purpose (a policy
argument such as ``empty="skip"`` or ``missing="skip"``) are counted per reason in
``ImageSplit.skipped``:

* ``no_labels``: the image has an empty label set,
* ``missing_image``: the annotation names an image file that is not there,
* ``label_without_image``: (YOLO) a label file whose image is not in the image directory.

Images are not decoded while reading; :func:`check_images` probes the files before training and
:func:`open_image` turns any decoding failure into an :class:`ImageDataError`.
"""

from __future__ import annotations

import ast
import collections
import csv
import io
import itertools
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from mllb_core.errors import UserError
from mllb_core.io import read_json

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")
NUS_WIDE_COLUMNS = ("filepath", "label", "split_name")
_CLASS_ID = re.compile(r"[0-9]+")


class ImageDataError(UserError, ValueError):
    """Malformed or inconsistent image data; the message names the file, line/field, what is
    wrong and what is expected."""


@dataclass(frozen=True)
class ImageRecord:
    """One image: a split-unique id, where its pixels are, and its sorted distinct class ids."""

    id: str
    path: str
    labels: tuple[int, ...]
    data: bytes | None = None

    def __post_init__(self) -> None:
        labels = self.labels
        if not isinstance(labels, tuple) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in labels):
            raise ValueError(f"record {self.id!r}: labels must be a tuple of class ids >= 0, "
                             f"got {labels!r}")
        if any(a >= b for a, b in itertools.pairwise(labels)):
            raise ValueError(f"record {self.id!r}: labels must be sorted and distinct, "
                             f"got {labels!r}")


@dataclass
class ImageSplit:
    """The records of one split and, per reason, how many examples were excluded."""

    records: list[ImageRecord]
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)


# ---------------------------------------------------------------------------------------------
# small helpers


def _check_policy(argument: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{argument}={value!r}: expected one of {', '.join(map(repr, allowed))}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id(value: Any) -> bool:
    # COCO ids are integers; strings are tolerated (some converters write them), bools are not
    # (True == 1 would silently alias image 1)
    return _is_int(value) or isinstance(value, str)


def _abspath(path: Path) -> str:
    # abspath rather than resolve(): keeps symlinked data folders recognisable in messages
    return os.path.abspath(path)


def _skipped(counts: collections.Counter[str]) -> dict[str, int]:
    return {reason: n for reason, n in sorted(counts.items()) if n}


def _require_dir(path: Path, what: str) -> None:
    # checked up front: with missing="skip" an absent directory would otherwise "skip" everything
    if not path.is_dir():
        raise ImageDataError(f"{path}: {what} directory not found")


def _empty_label_set(empty: str, skips: collections.Counter[str], where: str,
                     policies: str) -> bool:
    """Apply an ``empty`` policy to an image without labels; True when the image is kept."""
    if empty == "error":
        raise ImageDataError(f"{where}: empty label set; expected at least one label (or pass "
                             f"empty={policies})")
    if empty == "skip":
        skips["no_labels"] += 1
        return False
    return True


def _image_present(path: Path, missing: str, skips: collections.Counter[str], where: str) -> bool:
    """Apply a ``missing`` policy; True when the image file exists."""
    if path.is_file():
        return True
    if missing == "error":
        raise ImageDataError(f"{where}: image file not found: {path} (or pass missing='skip')")
    skips["missing_image"] += 1
    return False


# ---------------------------------------------------------------------------------------------
# COCO


def _read_json(path: Path) -> Any:
    return read_json(path, ImageDataError, f"{path}: annotation file not found")


def read_coco(annotation_file: str | Path, image_dir: str | Path, *, empty: str = "skip",
              missing: str = "error") -> tuple[list[str], ImageSplit]:
    """COCO ``instances_*.json`` + image directory -> (class names, split).

    The label set of an image is the distinct ``category_id`` of its annotations (``iscrowd``
    ones included, as the ASL / ML-Decoder loaders do). Classes are the json's ``categories``
    sorted by id and numbered 0..K-1 (COCO's sparse ids 1..90 -> 0..79), named by ``name``.
    Records follow the order of the json's ``images`` list; id = str(COCO image id).

    ``empty`` (images without annotations): "skip" (default; ASL / ML-Decoder iterate
    ``coco.imgToAnns``, so such images are not in their datasets; counted as
    ``skipped["no_labels"]``), "keep" (all-zero target) or "error". ``missing`` (image file not
    in ``image_dir``): "error" (default) or "skip" (``skipped["missing_image"]``). An image
    excluded for both reasons is counted once, as ``no_labels``.
    """
    _check_policy("empty", empty, ("skip", "keep", "error"))
    _check_policy("missing", missing, ("error", "skip"))
    src, root = Path(annotation_file), Path(image_dir)
    data = _read_json(src)
    if not isinstance(data, dict):
        raise ImageDataError(f"{src}: expected a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ImageDataError(f"{src}: missing key {key!r} (a COCO instances file has "
                                 f"'images', 'annotations' and 'categories' lists)")
    _require_dir(root, "image")

    categories: dict[int, str] = {}
    for i, cat in enumerate(data["categories"]):
        cid = cat.get("id") if isinstance(cat, dict) else None
        if not _is_int(cid):
            raise ImageDataError(f"{src}: categories[{i}]: field 'id': expected an integer")
        if cid in categories:
            raise ImageDataError(f"{src}: categories[{i}]: duplicate category id {cid}")
        name = cat.get("name")
        if not isinstance(name, str) or not name:
            raise ImageDataError(f"{src}: category {cid}: field 'name': expected a string")
        categories[cid] = name
    column = {cid: k for k, cid in enumerate(sorted(categories))}

    files: dict[int | str, str] = {}
    for i, img in enumerate(data["images"]):
        iid = img.get("id") if isinstance(img, dict) else None
        if not _is_id(iid):
            raise ImageDataError(f"{src}: images[{i}]: field 'id': expected an integer")
        if iid in files:
            raise ImageDataError(f"{src}: images[{i}]: duplicate image id {iid!r}")
        name = img.get("file_name")
        if not isinstance(name, str) or not name:
            raise ImageDataError(f"{src}: image {iid!r}: field 'file_name': expected a string")
        files[iid] = name

    labels: dict[int | str, set[int]] = {iid: set() for iid in files}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise ImageDataError(f"{src}: annotations[{i}]: expected an object")
        where = f"{src}: annotation {ann.get('id', '?')!r} (annotations[{i}])"
        iid, cid = ann.get("image_id"), ann.get("category_id")
        if not _is_id(iid) or iid not in files:
            raise ImageDataError(f"{where}: field 'image_id': {iid!r} is not an id in 'images'")
        if not _is_int(cid) or cid not in column:
            raise ImageDataError(f"{where}: field 'category_id': {cid!r} is not an id in "
                                 f"'categories'")
        labels[iid].add(column[cid])

    records, skips = [], collections.Counter[str]()
    for iid, name in files.items():
        where = f"{src}: image {iid!r} ({name})"
        if not labels[iid] and not _empty_label_set(empty, skips, where, "'keep' or 'skip'"):
            continue
        path = root / name
        if _image_present(path, missing, skips, f"{where}: field 'file_name'"):
            records.append(ImageRecord(str(iid), _abspath(path), tuple(sorted(labels[iid]))))
    return [categories[c] for c in sorted(categories)], ImageSplit(records, _skipped(skips))


# ---------------------------------------------------------------------------------------------
# YOLO


def read_yolo_names(config_yaml: str | Path) -> list[str]:
    """Class names from a YOLO data YAML.

    ``names:`` is a list, or a mapping {0: name, 1: name, ...} whose keys must be exactly
    0..K-1. Names must be distinct non-empty strings; an ``nc:`` entry, if present, must equal K.
    """
    path = Path(config_yaml)
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImageDataError(f"{path}: YOLO data YAML not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ImageDataError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(cfg, dict) or "names" not in cfg:
        raise ImageDataError(f"{path}: no 'names:' entry (expected a list of class names or a "
                             f"mapping 0: name, 1: name, ...)")
    raw = cfg["names"]
    if isinstance(raw, list):
        items = list(enumerate(raw))
    elif isinstance(raw, dict):
        keys = list(raw)
        if not all(_is_int(k) for k in keys) or sorted(keys) != list(range(len(keys))):
            raise ImageDataError(f"{path}: field 'names': keys must be exactly 0..{len(keys) - 1}"
                                 f", got {sorted(keys, key=str)}")
        items = sorted(raw.items())
    else:
        raise ImageDataError(f"{path}: field 'names': expected a list or a mapping, got "
                             f"{type(raw).__name__}")
    if not items:
        raise ImageDataError(f"{path}: field 'names' is empty")
    for k, name in items:
        # YAML turns unquoted yes/no/1.5 into bool/float: a name that is not a string is a typo
        if not isinstance(name, str) or not name.strip():
            raise ImageDataError(f"{path}: names[{k}]: expected a class name string, got "
                                 f"{name!r}")
    names = [name for _, name in items]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ImageDataError(f"{path}: field 'names': duplicate class name(s) {dups}")
    if "nc" in cfg and cfg["nc"] != len(names):
        raise ImageDataError(f"{path}: field 'nc': {cfg['nc']!r} but 'names' has {len(names)}")
    return names


def _read_yolo_labels(path: Path, num_classes: int) -> tuple[int, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ImageDataError(f"{path}: not a UTF-8 text label file: {exc}") from None
    expected = (f"expected 'class cx cy w h' (an integer class id in [0, {num_classes}) and 4 "
                f"numbers) or a lone class id")
    classes = set()
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (1, 5):
            raise ImageDataError(f"{path}: line {n}: {line.strip()!r} has {len(parts)} fields; "
                                 f"{expected}")
        if not _CLASS_ID.fullmatch(parts[0]) or int(parts[0]) >= num_classes:
            raise ImageDataError(f"{path}: line {n}: {line.strip()!r}: class id {parts[0]!r} "
                                 f"is not an integer in [0, {num_classes}); {expected}")
        for value in parts[1:]:
            try:
                ok = math.isfinite(float(value))
            except ValueError:
                ok = False
            if not ok:
                raise ImageDataError(f"{path}: line {n}: {line.strip()!r}: box value {value!r} "
                                     f"is not a finite number; {expected}")
        classes.add(int(parts[0]))
    return tuple(sorted(classes))


def read_yolo(image_dir: str | Path, label_dir: str | Path, num_classes: int, *,
              empty: str = "keep", missing_labels: str = "empty",
              orphan_labels: str = "error") -> ImageSplit:
    """YOLO detection folders -> one record per image, sorted by file name; id = file stem.

    Images are the files of ``image_dir`` with extension .jpg .jpeg .png .bmp .webp (any case);
    ``label_dir/<stem>.txt`` holds lines ``class cx cy w h`` (a lone class id is accepted too) and
    the label set is its distinct class ids. Blank lines are ignored; any other malformed line is
    an ImageDataError naming the file, the line number, the text and what is expected.

    ``missing_labels`` (an image without label file): "empty" (default; YOLO's convention: no
    file = no objects) or "error". ``orphan_labels`` (a label file without image): "error"
    (default) or "skip" (counted as ``skipped["label_without_image"]``; the shared
    coco128_lightly train2017 folder has two such files). ``empty`` (an image whose label set is
    empty): "keep" (default, YOLO marks background images this way), "skip"
    (``skipped["no_labels"]``) or "error".
    """
    _check_policy("empty", empty, ("keep", "skip", "error"))
    _check_policy("missing_labels", missing_labels, ("empty", "error"))
    _check_policy("orphan_labels", orphan_labels, ("error", "skip"))
    if not _is_int(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r}: expected a positive integer")
    img_root, lab_root = Path(image_dir), Path(label_dir)
    _require_dir(img_root, "image")
    _require_dir(lab_root, "label")

    images: dict[str, Path] = {}
    for path in sorted(img_root.iterdir(), key=lambda p: p.name):
        if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if path.stem in images:
            raise ImageDataError(f"{path}: shares the stem {path.stem!r} with "
                                 f"{images[path.stem].name}; expected one image per stem (the "
                                 f"stem is the record id and names the label file)")
        images[path.stem] = path
    label_files = {p.stem: p for p in lab_root.iterdir()
                   if p.is_file() and p.suffix.lower() == ".txt"}

    skips = collections.Counter[str]()
    orphans = sorted(set(label_files) - set(images))
    if orphans and orphan_labels == "error":
        raise ImageDataError(f"{label_files[orphans[0]]}: label file without an image: no "
                             f"{orphans[0]}{{{','.join(IMAGE_EXTENSIONS)}}} in {img_root} "
                             f"({len(orphans)} such label file(s); or pass orphan_labels='skip')")
    skips["label_without_image"] += len(orphans)

    records = []
    for stem, path in images.items():
        label_file = label_files.get(stem)
        if label_file is not None:
            labels = _read_yolo_labels(label_file, num_classes)
        elif missing_labels == "error":
            raise ImageDataError(f"{path}: no label file {lab_root / (stem + '.txt')}; expected "
                                 f"one per image (or pass missing_labels='empty')")
        else:
            labels = ()
        if not labels and not _empty_label_set(empty, skips, str(path), "'keep' or 'skip'"):
            continue
        records.append(ImageRecord(stem, _abspath(path), labels))
    return ImageSplit(records, _skipped(skips))


# ---------------------------------------------------------------------------------------------
# NUS-WIDE (ASL / ML-Decoder CSV)


def _parse_label_list(text: str) -> list[str] | None:
    """``"['sky', 'clouds']"`` -> ['sky', 'clouds']; None when it is not a list of names."""
    text = text.strip()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        # ML-Decoder's parse_csv_data strips the brackets and splits on ", ", so an unquoted
        # "[sky, clouds]" is read the same way; anything else with quotes is malformed
        if not (text.startswith("[") and text.endswith("]")) or re.search(r"['\"\[\]]",
                                                                          text[1:-1]):
            return None
        value = [part.strip() for part in text[1:-1].split(",")] if text[1:-1].strip() else []
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) and v.strip() for v in value):
        return None
    return [v.strip() for v in value]


def read_nus_wide_csv(csv_file: str | Path, image_dir: str | Path,
                      class_names: list[str] | None = None, *,
                      splits: Sequence[str] | None = None, empty: str = "keep",
                      missing: str = "error") -> tuple[list[str], dict[str, ImageSplit]]:
    """The NUS-WIDE CSV of the ASL / ML-Decoder code (``nus_wid_data.csv``) -> (names, splits).

    Layout: a header ``filepath,label,split_name`` (any extra columns are ignored); ``filepath``
    is relative to ``image_dir``, ``label`` is a Python list literal of class names such as
    ``"['sky', 'clouds']"``, ``split_name`` is ``train`` or ``val``. This is the
    ``nus_wid_data.csv`` Alibaba-MIIL publishes for ASL (model-zoo/ASL/nus_wid_data.csv on
    miil-public-eu.oss-eu-central-1.aliyuncs.com). Readers it was checked against:
    Alibaba-MIIL/ASL ``src/helper_functions/nuswide_asl.py`` (commit ab3ac92; ``df['label']``,
    row[0] = path, row[2] = split, ``str_to_list("['clouds', 'sky']")``, class ids = sorted
    distinct names), Alibaba-MIIL/ML_Decoder ``src_files/helper_functions/helper_functions.py``
    (``parse_csv_data``: the same three columns by position, split values "train"/"val"; it also
    reads an unquoted ``[sky, clouds]``, which is accepted here too) and third-party loaders that
    select ``df['split_name']`` and ``item['filepath']`` by name.

    Class names: ``class_names`` if given, else the sorted distinct labels over all rows (as ASL
    does). Returns {split_name: ImageSplit} in order of first appearance, or, when ``splits`` is
    given, exactly those keys (a row with another split name is an error). id = the CSV
    ``filepath``. ``empty`` (a row with ``[]``): "keep" (default), "skip" (counted in
    ``skipped["no_labels"]``) or "error"; ``missing`` (image file absent): "error" (default) or
    "skip" (``skipped["missing_image"]``). Errors name the CSV file, the line and the column:
    missing column, unparsable label list, label not in ``class_names``, duplicate filepath,
    unknown split name.
    """
    _check_policy("empty", empty, ("keep", "skip", "error"))
    _check_policy("missing", missing, ("error", "skip"))
    src, root = Path(csv_file), Path(image_dir)
    rows: list[tuple[int, str, list[str], str]] = []
    first_line: dict[str, int] = {}
    try:
        with open(src, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            absent = [c for c in NUS_WIDE_COLUMNS if c not in (reader.fieldnames or [])]
            if absent:
                raise ImageDataError(f"{src}: line 1: missing column(s) {absent}; expected a "
                                     f"header with {','.join(NUS_WIDE_COLUMNS)}")
            for row in reader:
                line = reader.line_num
                cells = {}
                for col in NUS_WIDE_COLUMNS:
                    value = row[col]
                    if value is None or not value.strip():
                        raise ImageDataError(f"{src}: line {line}: column {col!r}: empty value")
                    cells[col] = value.strip()
                filepath, split = cells["filepath"], cells["split_name"]
                if filepath in first_line:
                    raise ImageDataError(f"{src}: line {line}: column 'filepath': duplicate "
                                         f"{filepath!r} (first on line {first_line[filepath]})")
                first_line[filepath] = line
                names = _parse_label_list(cells["label"])
                if names is None:
                    raise ImageDataError(f"{src}: line {line}: column 'label': cannot parse "
                                         f"{cells['label']!r}; expected a list of class names "
                                         f"such as \"['sky', 'clouds']\"")
                if splits is not None and split not in splits:
                    raise ImageDataError(f"{src}: line {line}: column 'split_name': unknown "
                                         f"split {split!r}; expected one of {list(splits)}")
                rows.append((line, filepath, names, split))
    except FileNotFoundError:
        raise ImageDataError(f"{src}: CSV file not found") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ImageDataError(f"{src}: not a readable UTF-8 CSV: {exc}") from None
    _require_dir(root, "image")

    if class_names is None:
        names_out = sorted({n for _, _, names, _ in rows for n in names})
    else:
        names_out = _check_class_names(class_names)
    column = {n: i for i, n in enumerate(names_out)}
    order = list(splits) if splits is not None else list(dict.fromkeys(r[3] for r in rows))
    records: dict[str, list[ImageRecord]] = {s: [] for s in order}
    skips: dict[str, collections.Counter[str]] = {s: collections.Counter() for s in order}
    for line, filepath, names, split in rows:
        where = f"{src}: line {line}"
        unknown = [n for n in names if n not in column]
        if unknown:
            raise ImageDataError(f"{where}: column 'label': {unknown[0]!r} is not in "
                                 f"class_names")
        labels = tuple(sorted({column[n] for n in names}))
        if not labels and not _empty_label_set(empty, skips[split], where, "'keep' or 'skip'"):
            continue
        path = root / filepath
        if _image_present(path, missing, skips[split], f"{where}: column 'filepath'"):
            records[split].append(ImageRecord(filepath, _abspath(path), labels))
    return names_out, {s: ImageSplit(records[s], _skipped(skips[s])) for s in order}


def _check_class_names(class_names: Sequence[str]) -> list[str]:
    names = list(class_names)
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"class_names: expected distinct non-empty strings, got {names!r}")
    return names


# ---------------------------------------------------------------------------------------------
# PASCAL VOC


def read_voc(root: str | Path, image_set: str, *, difficult: str = "positive",
             missing: str = "error") -> tuple[list[str], ImageSplit]:
    """PASCAL VOC (a ``VOCdevkit/VOC2007``-style folder) -> (the 20 VOC class names, split).

    ``root`` holds ``ImageSets/Main/<image_set>.txt`` (one image id per line; records follow
    it), ``Annotations/<id>.xml`` and ``JPEGImages/<id>.jpg``. The label set is the distinct
    ``<object><name>`` of the XML, numbered by the fixed VOC class order.

    ``difficult``: "positive" (default; the ML-GCN / ASL VOC training targets count a class whose
    objects are all difficult as present) or "exclude" (a class counts only if one of its objects
    has ``<difficult>0``; a missing ``<difficult>`` means 0). An image left with no class this
    way is kept with an all-zero target. ``missing`` (JPEG absent): "error" (default) or "skip"
    (``skipped["missing_image"]``). Errors name the file and element: missing XML for a listed
    id, XML parse error, missing ``<name>``, a name outside the 20 classes, a bad
    ``<difficult>``, a malformed or duplicate image-set line.
    """
    _check_policy("difficult", difficult, ("positive", "exclude"))
    _check_policy("missing", missing, ("error", "skip"))
    base = Path(root)
    set_file = base / "ImageSets" / "Main" / f"{image_set}.txt"
    try:
        lines = set_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ImageDataError(f"{set_file}: image set file not found") from None
    ids: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 1:
            raise ImageDataError(f"{set_file}: line {n}: {line.strip()!r}: expected one image id "
                                 f"per line (ImageSets/Main/<class>_<set>.txt files are per-class "
                                 f"label lists, not image sets)")
        if parts[0] in ids:
            raise ImageDataError(f"{set_file}: line {n}: duplicate image id {parts[0]!r} (first "
                                 f"on line {ids[parts[0]]})")
        ids[parts[0]] = n
    column = {name: i for i, name in enumerate(VOC_CLASSES)}

    records, skips = [], collections.Counter[str]()
    for image_id in ids:
        xml = base / "Annotations" / f"{image_id}.xml"
        if not xml.is_file():
            raise ImageDataError(f"{xml}: annotation not found for image id {image_id!r} listed "
                                 f"in {set_file}")
        try:
            tree = ET.parse(xml)
        except ET.ParseError as exc:
            raise ImageDataError(f"{xml}: XML parse error: {exc}") from None
        labels = set()
        for k, obj in enumerate(tree.getroot().findall("object"), 1):
            name_el = obj.find("name")
            name = (name_el.text or "").strip() if name_el is not None else ""
            if not name:
                raise ImageDataError(f"{xml}: <object> #{k}: missing <name>")
            if name not in column:
                raise ImageDataError(f"{xml}: <object> #{k}: <name> {name!r} is not one of the "
                                     f"20 VOC classes")
            diff_el = obj.find("difficult")
            flag = (diff_el.text or "").strip() if diff_el is not None else "0"
            if flag not in ("0", "1"):
                raise ImageDataError(f"{xml}: <object> #{k}: <difficult> {flag!r}: expected 0 "
                                     f"or 1")
            if difficult == "positive" or flag == "0":
                labels.add(column[name])
        path = base / "JPEGImages" / f"{image_id}.jpg"
        if _image_present(path, missing, skips, f"{xml}: image id {image_id!r}"):
            records.append(ImageRecord(image_id, _abspath(path), tuple(sorted(labels))))
    return list(VOC_CLASSES), ImageSplit(records, _skipped(skips))


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets


def read_hf(source: str, split: str, *, image_column: str = "image",
            labels_column: str = "labels", class_names: list[str] | None = None,
            empty: str = "keep") -> tuple[list[str], ImageSplit]:
    """A ``datasets`` DatasetDict -> (class names, split).

    ``source`` is a local directory saved with ``DatasetDict.save_to_disk`` or a hub name
    (``load_dataset``, which needs the network). The image column is cast to
    ``datasets.Image(decode=False)``: rows with bytes give ``record.data`` (and ``path=""``),
    rows with only a path give ``record.path`` (a relative one is made absolute against the
    current directory). The labels column holds per row a list of class ids (names from the
    ``ClassLabel`` inside the list feature, else ``class_names``, which is then required) or a
    list of class names (mapped through ``class_names``, else numbered in
    sorted order of the names present in this split: pass ``class_names`` for dev/test so the
    columns agree with train). id = str(row index). ``empty`` (a row with no label): "keep"
    (default), "skip" (``skipped["no_labels"]``) or "error". Errors name the source, split, row
    and column.
    """
    _check_policy("empty", empty, ("keep", "skip", "error"))
    import datasets  # lazy: the other readers must not pay for importing datasets

    try:
        everything = (datasets.load_from_disk(source) if Path(source).exists()
                      else datasets.load_dataset(source))
    except Exception as exc:  # any loader failure (no such hub name, no network) is a data error
        raise ImageDataError(f"{source}: cannot load the dataset: {exc}") from exc
    if not isinstance(everything, datasets.DatasetDict):
        raise ImageDataError(f"{source}: expected a DatasetDict (saved with "
                             f"DatasetDict.save_to_disk), got {type(everything).__name__}")
    if split not in everything:
        raise ImageDataError(f"{source}: no split {split!r}; available: {sorted(everything)}")
    ds = everything[split]
    where = f"{source}: split {split!r}"
    for col in (image_column, labels_column):
        if col not in ds.column_names:
            raise ImageDataError(f"{where}: no column {col!r}; columns: {ds.column_names}")
    try:
        ds = ds.cast_column(image_column, datasets.Image(decode=False))
    except Exception as exc:  # datasets raises several types for an uncastable column
        raise ImageDataError(f"{where}: column {image_column!r}: not castable to an image "
                             f"column: {exc}") from exc
    inner = getattr(ds.features[labels_column], "feature", None)
    label_names = list(inner.names) if isinstance(inner, datasets.ClassLabel) else None
    if label_names is not None and class_names is not None and list(class_names) != label_names:
        raise ImageDataError(f"{where}: column {labels_column!r}: its ClassLabel names "
                             f"{label_names} differ from class_names {list(class_names)}")

    values: list[list[Any]] = []
    kind = None  # "id" or "name", fixed by the first label seen
    for i, value in enumerate(ds[labels_column]):
        if not isinstance(value, list):
            raise ImageDataError(f"{where}: row {i}: column {labels_column!r}: expected a list "
                                 f"of class ids or names, got {value!r}")
        for v in value:
            this = "id" if _is_int(v) else "name" if isinstance(v, str) and v else None
            if this is None or (kind is not None and this != kind):
                wanted = f"a class {kind}" if kind else "a class id or name"
                raise ImageDataError(f"{where}: row {i}: column {labels_column!r}: {v!r}: "
                                     f"expected {wanted} like the rows before")
            kind = this
        values.append(value)

    if kind == "name":
        names = (_check_class_names(class_names) if class_names is not None
                 else sorted({v for value in values for v in value}))
    elif label_names is not None:
        names = label_names
    elif class_names is not None:
        names = _check_class_names(class_names)
    elif kind == "id":
        raise ImageDataError(f"{where}: column {labels_column!r} holds class ids but has no "
                             f"ClassLabel feature; pass class_names")
    else:
        names = []
    column = {n: i for i, n in enumerate(names)}

    records, skips = [], collections.Counter[str]()
    for i, (value, image) in enumerate(zip(values, ds[image_column], strict=True)):
        row = f"{where}: row {i}"
        if kind == "name":
            unknown = [v for v in value if v not in column]
            if unknown:
                raise ImageDataError(f"{row}: column {labels_column!r}: {unknown[0]!r} is not in "
                                     f"class_names")
            labels = tuple(sorted({column[v] for v in value}))
        else:
            bad = [v for v in value if not 0 <= v < len(names)]
            if bad:
                raise ImageDataError(f"{row}: column {labels_column!r}: class id {bad[0]} is not "
                                     f"in [0, {len(names)})")
            labels = tuple(sorted(set(value)))
        if not labels and not _empty_label_set(empty, skips, row, "'keep' or 'skip'"):
            continue
        data, path = (image or {}).get("bytes"), (image or {}).get("path")
        if data is not None:
            records.append(ImageRecord(str(i), "", labels, data=bytes(data)))
        elif path:
            records.append(ImageRecord(str(i), _abspath(Path(path)), labels))
        else:
            raise ImageDataError(f"{row}: column {image_column!r}: neither image bytes nor a "
                                 f"path")
    return names, ImageSplit(records, _skipped(skips))


# ---------------------------------------------------------------------------------------------
# splits, targets, images


def label_matrix(records: list[ImageRecord], num_classes: int) -> np.ndarray:
    """uint8 multi-hot targets [N, num_classes]; a class id out of range is a ValueError."""
    out = np.zeros((len(records), num_classes), dtype=np.uint8)
    for row, rec in enumerate(records):
        if rec.labels and rec.labels[-1] >= num_classes:
            raise ValueError(f"record {rec.id!r}: class id {rec.labels[-1]} >= num_classes="
                             f"{num_classes}")
        out[row, list(rec.labels)] = 1
    return out


def _describe(record: ImageRecord) -> str:
    return record.path or f"record {record.id!r} (embedded image bytes)"


def open_image(record: ImageRecord) -> Image.Image:
    """Decode a record's image to RGB.

    Any failure (missing file, truncated or corrupt data, unknown format) raises an
    ImageDataError naming ``record.path`` (or the id for embedded bytes) and PIL's error.
    """
    source = io.BytesIO(record.data) if record.data is not None else record.path
    try:
        with Image.open(source) as img:
            img.load()  # decode now, so truncation surfaces here and not inside a transform
            return img.convert("RGB")
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
        raise ImageDataError(f"{_describe(record)}: cannot decode image: "
                             f"{type(exc).__name__}: {exc}") from exc


def _probe(record: ImageRecord, decode: bool) -> str | None:
    """Why the record's image is unusable, or None."""
    if record.data is None and not Path(record.path).is_file():
        return "file not found"
    try:
        with Image.open(io.BytesIO(record.data) if record.data is not None
                        else record.path) as img:
            img.verify()
        if decode:
            open_image(record)
    except ImageDataError as exc:
        return str(exc.__cause__ or exc)
    except Exception as exc:  # as in open_image: any PIL failure means a bad file
        return f"{type(exc).__name__}: {exc}"
    return None


def check_images(records: list[ImageRecord], *, policy: str = "error",
                 decode: bool = False) -> tuple[list[ImageRecord], int]:
    """Probe every image before training: ``PIL.Image.open`` + ``verify`` (header and, for PNG,
    checksums), plus a full decode when ``decode=True`` (slower; catches truncated JPEG data).

    ``policy`` "error": raise an ImageDataError naming the first bad file and why; "skip":
    return (the good records, number of bad ones skipped).
    """
    _check_policy("policy", policy, ("error", "skip"))
    good = []
    for rec in records:
        reason = _probe(rec, decode)
        if reason is None:
            good.append(rec)
        elif policy == "error":
            raise ImageDataError(f"{_describe(rec)}: unusable image: {reason}")
    return good, len(records) - len(good)
