"""Readers of multi-label image datasets (tasks/image_classification/data.py).

Every fixture is written into tmp_path by the test itself (8x8 images, hand-written annotation
files); the last tests read ../shared/data and skip when it is absent.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.base import SHARED_DATA, held_out
from tasks.image_classification.data import (
    VOC_CLASSES,
    ImageDataError,
    ImageRecord,
    check_images,
    label_matrix,
    open_image,
    read_coco,
    read_hf,
    read_nus_wide_csv,
    read_voc,
    read_yolo,
    read_yolo_names,
)


def _image(path: Path, fmt: str = "JPEG", size: int = 8, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size), 128).save(path, fmt)
    return path


def _png_bytes(value: int = 50) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (value, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


def _noise_jpeg(size: int = 64) -> bytes:
    # random pixels so the entropy-coded data is long enough to cut in the middle
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _ids(split) -> list[str]:
    return [r.id for r in split.records]


def _labels(split) -> dict[str, tuple[int, ...]]:
    return {r.id: r.labels for r in split.records}


# ---------------------------------------------------------------------------------------------
# COCO


def _coco(tmp_path: Path, **override) -> tuple[Path, Path]:
    """instances.json with sparse category ids 1, 3, 90 (listed out of order) and 3 images."""
    images = tmp_path / "images"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _image(images / name)
    data = {
        "images": [{"id": 10, "file_name": "a.jpg"}, {"id": 20, "file_name": "b.jpg"},
                   {"id": 30, "file_name": "c.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 3, "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 90, "iscrowd": 0},
            {"id": 3, "image_id": 10, "category_id": 3, "iscrowd": 1},
            {"id": 4, "image_id": 20, "category_id": 1, "iscrowd": 1},
        ],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"},
                       {"id": 3, "name": "car"}],
    }
    data.update(override)
    ann = tmp_path / "instances_val.json"
    ann.write_text(json.dumps(data))
    return ann, images


def test_read_coco_maps_sparse_ids_and_skips_unannotated_images(tmp_path):
    ann, images = _coco(tmp_path)
    names, split = read_coco(ann, images)
    assert names == ["person", "car", "toothbrush"]  # sorted by COCO id 1, 3, 90 -> 0, 1, 2
    assert _labels(split) == {"10": (1, 2), "20": (0,)}  # crowd annotations count
    assert split.skipped == {"no_labels": 1}
    assert split.records[0].path == os.path.abspath(images / "a.jpg")
    assert all(r.data is None for r in split.records)


def test_read_coco_empty_policies(tmp_path):
    ann, images = _coco(tmp_path)
    _, split = read_coco(ann, images, empty="keep")
    assert _labels(split) == {"10": (1, 2), "20": (0,), "30": ()}
    assert split.skipped == {}
    with pytest.raises(ImageDataError, match=r"instances_val\.json: image 30 \(c\.jpg\)"):
        read_coco(ann, images, empty="error")


def test_read_coco_missing_image_policies(tmp_path):
    ann, images = _coco(tmp_path)
    (images / "b.jpg").unlink()
    with pytest.raises(ImageDataError, match=r"instances_val\.json: image 20.*b\.jpg"):
        read_coco(ann, images)
    _, split = read_coco(ann, images, missing="skip")
    assert _ids(split) == ["10"]
    assert split.skipped == {"no_labels": 1, "missing_image": 1}


@pytest.mark.parametrize(("override", "pattern"), [
    ({"categories": None}, r"missing key 'categories'"),
    ({"annotations": [{"id": 7, "image_id": 10, "category_id": 5}]},
     r"annotation 7 \(annotations\[0\]\): field 'category_id': 5 is not an id"),
    ({"annotations": [{"id": 8, "image_id": 99, "category_id": 1}]},
     r"annotation 8 \(annotations\[0\]\): field 'image_id': 99 is not an id"),
    ({"images": [{"id": 10, "file_name": "a.jpg"}, {"id": 10, "file_name": "b.jpg"}]},
     r"images\[1\]: duplicate image id 10"),
    ({"categories": [{"id": 1, "name": "person"}, {"id": 1, "name": "man"}]},
     r"categories\[1\]: duplicate category id 1"),
    ({"categories": [{"id": 1}]}, r"category 1: field 'name'"),
    ({"images": [{"id": 10}]}, r"image 10: field 'file_name'"),
])
def test_read_coco_malformed(tmp_path, override, pattern):
    ann, images = _coco(tmp_path, **override)
    with pytest.raises(ImageDataError, match=r"instances_val\.json: .*" + pattern):
        read_coco(ann, images)


def test_read_coco_invalid_json_and_policies(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [')
    with pytest.raises(ImageDataError, match=r"broken\.json: not valid JSON"):
        read_coco(bad, tmp_path)
    with pytest.raises(ImageDataError, match=r"nothere\.json: annotation file not found"):
        read_coco(tmp_path / "nothere.json", tmp_path)
    ann, images = _coco(tmp_path)
    with pytest.raises(ValueError, match=r"empty='drop'.*'skip', 'keep', 'error'"):
        read_coco(ann, images, empty="drop")
    with pytest.raises(ValueError, match=r"missing='ignore'"):
        read_coco(ann, images, missing="ignore")


# ---------------------------------------------------------------------------------------------
# YOLO


def test_read_yolo_names_list_and_mapping(tmp_path):
    cfg = tmp_path / "data.yaml"
    cfg.write_text("names: [person, bicycle, car]\n")
    assert read_yolo_names(cfg) == ["person", "bicycle", "car"]
    cfg.write_text("path: .\nnames:\n  1: bicycle\n  0: person\n  2: traffic light\n")
    assert read_yolo_names(cfg) == ["person", "bicycle", "traffic light"]


@pytest.mark.parametrize(("text", "pattern"), [
    ("names:\n  0: person\n  2: car\n", r"field 'names': keys must be exactly 0\.\.1"),
    ("names:\n  a: person\n", r"field 'names': keys must be exactly 0\.\.0"),
    ("train: images\n", r"no 'names:' entry"),
    ("names: [person, yes]\n", r"names\[1\]: expected a class name string, got True"),
    ("names: [person, person]\n", r"duplicate class name"),
    ("nc: 3\nnames: [person, car]\n", r"field 'nc'"),
    ("names: [a, b\n", r"not valid YAML"),
])
def test_read_yolo_names_malformed(tmp_path, text, pattern):
    cfg = tmp_path / "data.yaml"
    cfg.write_text(text)
    with pytest.raises(ImageDataError, match=r"data\.yaml: .*" + pattern):
        read_yolo_names(cfg)


def _yolo(tmp_path: Path) -> tuple[Path, Path]:
    images, labels = tmp_path / "images", tmp_path / "labels"
    _image(images / "a.jpg")
    _image(images / "b.PNG", "PNG")
    _image(images / "c.jpeg")
    _image(images / "d.jpg")  # no label file: no objects
    (images / "notes.txt").write_text("not an image")
    labels.mkdir()
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n2 0.1 0.1 0.1 0.1\n0 0.3 0.3 0.1 0.1\n")
    (labels / "b.txt").write_text("1\n\n")  # a lone class id and a blank line
    (labels / "c.txt").write_text("")  # background image
    return images, labels


def test_read_yolo_good(tmp_path):
    images, labels = _yolo(tmp_path)
    split = read_yolo(images, labels, 3)
    assert _ids(split) == ["a", "b", "c", "d"]
    assert _labels(split) == {"a": (0, 2), "b": (1,), "c": (), "d": ()}
    assert split.skipped == {}
    assert split.records[1].path == os.path.abspath(images / "b.PNG")


def test_read_yolo_policies(tmp_path):
    images, labels = _yolo(tmp_path)
    split = read_yolo(images, labels, 3, empty="skip")
    assert _labels(split) == {"a": (0, 2), "b": (1,)}
    assert split.skipped == {"no_labels": 2}
    with pytest.raises(ImageDataError, match=r"c\.jpeg: empty label set"):
        read_yolo(images, labels, 3, empty="error")
    with pytest.raises(ImageDataError, match=r"d\.jpg: no label file .*d\.txt"):
        read_yolo(images, labels, 3, missing_labels="error")
    with pytest.raises(ValueError, match=r"missing_labels='skip'"):
        read_yolo(images, labels, 3, missing_labels="skip")


def test_read_yolo_label_file_without_image(tmp_path):
    images, labels = _yolo(tmp_path)
    (labels / "e.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    with pytest.raises(ImageDataError, match=r"e\.txt: label file without an image"):
        read_yolo(images, labels, 3)
    split = read_yolo(images, labels, 3, orphan_labels="skip", empty="skip")
    assert _ids(split) == ["a", "b"]
    assert split.skipped == {"label_without_image": 1, "no_labels": 2}


def test_read_yolo_duplicate_stem(tmp_path):
    images, labels = _yolo(tmp_path)
    _image(images / "a.png", "PNG")
    with pytest.raises(ImageDataError, match=r"a\.png: shares the stem 'a' with a\.jpg"):
        read_yolo(images, labels, 3)


@pytest.mark.parametrize(("line", "pattern"), [
    ("3 0.5 0.5 0.1 0.1", r"class id '3' is not an integer in \[0, 3\)"),
    ("-1 0.5 0.5 0.1 0.1", r"class id '-1' is not an integer"),
    ("1.0 0.5 0.5 0.1 0.1", r"class id '1\.0' is not an integer"),
    ("car 0.5 0.5 0.1 0.1", r"class id 'car' is not an integer"),
    ("1 0.5 0.5 0.1", r"has 4 fields; expected 'class cx cy w h'"),
    ("1 0.5 0.5 0.1 0.1 0.9", r"has 6 fields"),
    ("1 0.5 x 0.1 0.1", r"box value 'x' is not a finite number"),
    ("1 0.5 nan 0.1 0.1", r"box value 'nan' is not a finite number"),
])
def test_read_yolo_malformed_line(tmp_path, line, pattern):
    images, labels = _yolo(tmp_path)
    (labels / "a.txt").write_text(f"0 0.5 0.5 0.2 0.2\n{line}\n")
    with pytest.raises(ImageDataError, match=r"a\.txt: line 2: " + re.escape(repr(line)) + ".*"
                       + pattern):
        read_yolo(images, labels, 3)


# ---------------------------------------------------------------------------------------------
# NUS-WIDE CSV


def _nus(tmp_path: Path, rows: list[str], header: str = "filepath,label,split_name") -> Path:
    for name in ("1.jpg", "2.jpg", "3.jpg", "4.jpg"):
        _image(tmp_path / "images" / "img" / name)
    csv_file = tmp_path / "nus_wid_data.csv"
    csv_file.write_text("\n".join([header, *rows]) + "\n")
    return csv_file


_NUS_ROWS = [
    "img/1.jpg,\"['sky', 'clouds']\",train",
    "img/2.jpg,['water'],val",
    "img/3.jpg,\"[sky, water]\",train",  # unquoted names, as ML-Decoder's parser accepts
    "img/4.jpg,[],train",
]


def test_read_nus_wide_csv_good(tmp_path):
    csv_file = _nus(tmp_path, _NUS_ROWS)
    names, splits = read_nus_wide_csv(csv_file, tmp_path / "images")
    assert names == ["clouds", "sky", "water"]
    assert list(splits) == ["train", "val"]
    assert _labels(splits["train"]) == {"img/1.jpg": (0, 1), "img/3.jpg": (1, 2), "img/4.jpg": ()}
    assert _labels(splits["val"]) == {"img/2.jpg": (2,)}
    assert splits["val"].records[0].path == os.path.abspath(tmp_path / "images/img/2.jpg")

    names, splits = read_nus_wide_csv(csv_file, tmp_path / "images",
                                      ["water", "sky", "clouds", "person"],
                                      splits=("train", "val", "test"))
    assert names == ["water", "sky", "clouds", "person"]
    assert _labels(splits["train"]) == {"img/1.jpg": (1, 2), "img/3.jpg": (0, 1), "img/4.jpg": ()}
    assert splits["test"].records == []


def test_read_nus_wide_csv_policies(tmp_path):
    csv_file = _nus(tmp_path, _NUS_ROWS)
    (tmp_path / "images/img/3.jpg").unlink()
    with pytest.raises(ImageDataError, match=r"nus_wid_data\.csv: line 4: column 'filepath'"):
        read_nus_wide_csv(csv_file, tmp_path / "images")
    _, splits = read_nus_wide_csv(csv_file, tmp_path / "images", missing="skip", empty="skip")
    assert _ids(splits["train"]) == ["img/1.jpg"]
    assert splits["train"].skipped == {"missing_image": 1, "no_labels": 1}
    assert splits["val"].skipped == {}
    with pytest.raises(ImageDataError, match=r"nus_wid_data\.csv: line 5: empty label set"):
        read_nus_wide_csv(csv_file, tmp_path / "images", empty="error", missing="skip")


@pytest.mark.parametrize(("rows", "kwargs", "pattern"), [
    (["img/1.jpg,\"['sky', 'clouds'\",train"], {},
     r"line 2: column 'label': cannot parse \"\['sky', 'clouds'\""),
    (["img/1.jpg,sky,train"], {}, r"line 2: column 'label': cannot parse 'sky'"),
    (["img/1.jpg,\"[1, 2]\",train"], {}, r"line 2: column 'label': cannot parse"),
    (["img/1.jpg,['sky'],train", "img/2.jpg,['dog'],val"], {"class_names": ["sky"]},
     r"line 3: column 'label': 'dog' is not in class_names"),
    (["img/1.jpg,['sky'],train", "img/1.jpg,['sky'],val"], {},
     r"line 3: column 'filepath': duplicate 'img/1.jpg' \(first on line 2\)"),
    (["img/1.jpg,['sky'],train", "img/2.jpg,['sky'],test"], {"splits": ("train", "val")},
     r"line 3: column 'split_name': unknown split 'test'"),
    (["img/1.jpg,['sky']"], {}, r"line 2: column 'split_name': empty value"),
])
def test_read_nus_wide_csv_malformed(tmp_path, rows, kwargs, pattern):
    csv_file = _nus(tmp_path, rows)
    with pytest.raises(ImageDataError, match=r"nus_wid_data\.csv: " + pattern):
        read_nus_wide_csv(csv_file, tmp_path / "images", **kwargs)


def test_read_nus_wide_csv_missing_column(tmp_path):
    csv_file = _nus(tmp_path, ["img/1.jpg,['sky'],train"], header="filepath,labels,split_name")
    with pytest.raises(ImageDataError,
                       match=r"nus_wid_data\.csv: line 1: missing column\(s\) \['label'\]"):
        read_nus_wide_csv(csv_file, tmp_path / "images")


# ---------------------------------------------------------------------------------------------
# PASCAL VOC


def _voc_xml(*objects: tuple[str, str | None]) -> str:
    parts = []
    for name, difficult in objects:
        diff = f"<difficult>{difficult}</difficult>" if difficult is not None else ""
        parts.append(f"<object><name>{name}</name><pose>Left</pose>{diff}"
                     f"<bndbox><xmin>1</xmin></bndbox></object>")
    return f"<annotation><filename>x.jpg</filename>{''.join(parts)}</annotation>"


def _voc(tmp_path: Path) -> Path:
    root = tmp_path / "VOC2007"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n000002\n\n000003\n")
    xmls = {
        "000001": _voc_xml(("dog", "0"), ("person", "1"), ("dog", "1")),
        "000002": _voc_xml(("cat", "1")),
        "000003": _voc_xml(("tvmonitor", None)),
    }
    for image_id, text in xmls.items():
        (root / "Annotations" / f"{image_id}.xml").write_text(text)
        _image(root / "JPEGImages" / f"{image_id}.jpg")
    return root


def test_read_voc_difficult_policies(tmp_path):
    root = _voc(tmp_path)
    names, split = read_voc(root, "trainval")
    assert names == list(VOC_CLASSES) and len(names) == 20
    dog, person, cat, tv = (VOC_CLASSES.index(n) for n in ("dog", "person", "cat", "tvmonitor"))
    assert _labels(split) == {"000001": (dog, person), "000002": (cat,), "000003": (tv,)}
    assert split.records[0].path == os.path.abspath(root / "JPEGImages/000001.jpg")
    _, split = read_voc(root, "trainval", difficult="exclude")
    assert _labels(split) == {"000001": (dog,), "000002": (), "000003": (tv,)}
    with pytest.raises(ValueError, match=r"difficult='ignore'"):
        read_voc(root, "trainval", difficult="ignore")


def test_read_voc_missing_image(tmp_path):
    root = _voc(tmp_path)
    (root / "JPEGImages" / "000002.jpg").unlink()
    with pytest.raises(ImageDataError, match=r"000002\.xml: image id '000002'.*000002\.jpg"):
        read_voc(root, "trainval")
    _, split = read_voc(root, "trainval", missing="skip")
    assert _ids(split) == ["000001", "000003"]
    assert split.skipped == {"missing_image": 1}


@pytest.mark.parametrize(("xml", "pattern"), [
    (None, r"000002\.xml: annotation not found for image id '000002'"),
    ("<annotation><object><name>dog</name></object>", r"000002\.xml: XML parse error"),
    (_voc_xml(("dog", "0"), ("unicorn", "0")),
     r"000002\.xml: <object> #2: <name> 'unicorn' is not one of the 20 VOC classes"),
    ("<annotation><object><difficult>0</difficult></object></annotation>",
     r"000002\.xml: <object> #1: missing <name>"),
    (_voc_xml(("dog", "maybe")), r"000002\.xml: <object> #1: <difficult> 'maybe'"),
])
def test_read_voc_malformed(tmp_path, xml, pattern):
    root = _voc(tmp_path)
    target = root / "Annotations" / "000002.xml"
    if xml is None:
        target.unlink()
    else:
        target.write_text(xml)
    with pytest.raises(ImageDataError, match=pattern):
        read_voc(root, "trainval")


def test_read_voc_bad_image_set(tmp_path):
    root = _voc(tmp_path)
    main = root / "ImageSets" / "Main"
    (main / "dog_trainval.txt").write_text("000001  1\n000002 -1\n")
    with pytest.raises(ImageDataError, match=r"dog_trainval\.txt: line 1: .*one image id per"):
        read_voc(root, "dog_trainval")
    (main / "dup.txt").write_text("000001\n000001\n")
    with pytest.raises(ImageDataError, match=r"dup\.txt: line 2: duplicate image id '000001'"):
        read_voc(root, "dup")
    with pytest.raises(ImageDataError, match=r"test\.txt: image set file not found"):
        read_voc(root, "test")


# ---------------------------------------------------------------------------------------------
# datasets (save_to_disk directories only: no network)


def _save(tmp_path: Path, columns: dict, features=None, split: str = "train") -> str:
    import datasets

    ds = datasets.Dataset.from_dict(columns, features=features)
    out = tmp_path / "hf"
    datasets.DatasetDict({split: ds}).save_to_disk(str(out))
    return str(out)


def test_read_hf_classlabel_ids_with_embedded_bytes(tmp_path):
    import datasets

    blobs = [_png_bytes(10), _png_bytes(20), _png_bytes(30)]
    features = datasets.Features({
        "image": datasets.Image(),
        "labels": datasets.Sequence(datasets.ClassLabel(names=["cat", "dog", "bird"]))})
    source = _save(tmp_path, {"image": [{"bytes": b, "path": None} for b in blobs],
                              "labels": [[2, 0, 2], [1], []]}, features)
    names, split = read_hf(source, "train")
    assert names == ["cat", "dog", "bird"]
    assert _labels(split) == {"0": (0, 2), "1": (1,), "2": ()}
    assert [r.data for r in split.records] == blobs
    assert all(r.path == "" for r in split.records)
    assert open_image(split.records[1]).getpixel((0, 0)) == (20, 0, 0)

    _, split = read_hf(source, "train", empty="skip")
    assert _ids(split) == ["0", "1"] and split.skipped == {"no_labels": 1}
    with pytest.raises(ImageDataError, match=r"hf: no split 'validation'; available: \['train'\]"):
        read_hf(source, "validation")
    with pytest.raises(ImageDataError, match=r"hf: split 'train': no column 'tags'"):
        read_hf(source, "train", labels_column="tags")
    with pytest.raises(ImageDataError, match=r"ClassLabel names .* differ from class_names"):
        read_hf(source, "train", class_names=["a", "b", "c"])


def test_read_hf_string_labels_and_paths(tmp_path):
    paths = [str(_image(tmp_path / "img" / f"{i}.png", "PNG")) for i in range(2)]
    source = _save(tmp_path, {"image": paths, "tags": [["dog", "cat"], ["cat"]]})
    names, split = read_hf(source, "train", labels_column="tags")
    assert names == ["cat", "dog"]
    assert _labels(split) == {"0": (0, 1), "1": (0,)}
    assert [r.path for r in split.records] == paths
    assert all(r.data is None for r in split.records)

    names, split = read_hf(source, "train", labels_column="tags",
                           class_names=["dog", "bird", "cat"])
    assert _labels(split) == {"0": (0, 2), "1": (2,)}
    with pytest.raises(ImageDataError, match=r"hf: split 'train': row 0: column 'tags': 'dog' "
                                             r"is not in class_names"):
        read_hf(source, "train", labels_column="tags", class_names=["cat"])


def test_read_hf_plain_int_labels(tmp_path):
    blobs = [{"bytes": _png_bytes(), "path": None}] * 2
    import datasets

    features = datasets.Features({"image": datasets.Image(),
                                  "labels": datasets.Sequence(datasets.Value("int64"))})
    source = _save(tmp_path, {"image": blobs, "labels": [[0], [3, 1]]}, features)
    with pytest.raises(ImageDataError, match=r"hf: split 'train': column 'labels' holds class ids"
                                             r" but has no ClassLabel feature; pass class_names"):
        read_hf(source, "train")
    with pytest.raises(ImageDataError, match=r"split 'train': row 1: column 'labels': class id 3 "
                                             r"is not in \[0, 3\)"):
        read_hf(source, "train", class_names=["a", "b", "c"])
    names, split = read_hf(source, "train", class_names=["a", "b", "c", "d"])
    assert names == ["a", "b", "c", "d"] and _labels(split) == {"0": (0,), "1": (1, 3)}


# ---------------------------------------------------------------------------------------------
# held_out, label_matrix, ImageRecord


def test_held_out_deterministic_and_order_independent():
    ids = [f"img{i:03d}" for i in range(40)]
    chosen = held_out(ids, 0.25, salt="dev")
    assert len(chosen) == 10
    shuffled = ids[:]
    random.Random(0).shuffle(shuffled)
    assert held_out(shuffled, 0.25, salt="dev") == chosen
    expected = sorted(ids, key=lambda i: hashlib.sha256(f"dev{i}".encode()).hexdigest())[:10]
    assert chosen == set(expected)
    assert held_out(ids, 0.25) != chosen  # the salt changes the selection


def test_held_out_sizes_and_validation():
    assert held_out(["a", "b", "c"], 0.01) and len(held_out(["a", "b", "c"], 0.01)) == 1
    assert held_out(["a", "b", "c"], 0.0) == set()
    assert len(held_out(["a", "b"], 0.9)) == 1  # never the whole split
    assert held_out(["a"], 0.5) == set() and held_out([], 0.5) == set()
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="fraction"):
            held_out(["a", "b"], bad)
    with pytest.raises(ValueError, match="duplicate"):
        held_out(["a", "a", "b"], 0.5)


def test_label_matrix_and_record_validation():
    records = [ImageRecord("x", "/x.jpg", (0, 2)), ImageRecord("y", "/y.jpg", ()),
               ImageRecord("z", "/z.jpg", (3,))]
    matrix = label_matrix(records, 4)
    assert matrix.dtype == np.uint8
    np.testing.assert_array_equal(matrix, [[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    assert label_matrix([], 4).shape == (0, 4)
    with pytest.raises(ValueError, match=r"record 'z': class id 3 >= num_classes=3"):
        label_matrix(records, 3)
    with pytest.raises(ValueError, match="sorted and distinct"):
        ImageRecord("w", "/w.jpg", (2, 1))
    with pytest.raises(ValueError, match="tuple of class ids"):
        ImageRecord("w", "/w.jpg", [1])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# open_image, check_images


def test_open_image_good_truncated_and_missing(tmp_path):
    gray = _image(tmp_path / "gray.png", "PNG", mode="L")
    img = open_image(ImageRecord("g", str(gray), (0,)))
    assert img.mode == "RGB" and img.size == (8, 8)

    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(_image(tmp_path / "full.jpg").read_bytes()[:100])
    with pytest.raises(ImageDataError, match=r"truncated\.jpg: cannot decode image: .*Error"):
        open_image(ImageRecord("t", str(truncated), (0,)))
    with pytest.raises(ImageDataError, match=r"missing\.jpg: cannot decode image: "
                                             r"FileNotFoundError"):
        open_image(ImageRecord("m", str(tmp_path / "missing.jpg"), (0,)))
    with pytest.raises(ImageDataError, match=r"record 'b' \(embedded image bytes\): cannot decode"):
        open_image(ImageRecord("b", "", (0,), data=b"not an image"))


def test_check_images_policies(tmp_path):
    good = ImageRecord("good", str(_image(tmp_path / "good.jpg")), (0,))
    head = tmp_path / "head.jpg"
    head.write_bytes(_image(tmp_path / "src.jpg").read_bytes()[:100])
    cut = tmp_path / "cut.jpg"
    jpeg = _noise_jpeg()
    cut.write_bytes(jpeg[: len(jpeg) // 2])  # header intact, entropy-coded data cut
    embedded = ImageRecord("emb", "", (1,), data=_png_bytes())
    records = [good, ImageRecord("head", str(head), (0,)), embedded,
               ImageRecord("gone", str(tmp_path / "gone.jpg"), (0,)),
               ImageRecord("cut", str(cut), (0,))]

    with pytest.raises(ImageDataError, match=r"head\.jpg: unusable image"):
        check_images(records)
    assert check_images(records, policy="skip") == ([good, embedded, records[4]], 2)
    assert check_images(records, policy="skip", decode=True) == ([good, embedded], 3)
    with pytest.raises(ImageDataError, match=r"gone\.jpg: unusable image: file not found"):
        check_images([good, records[3]])
    with pytest.raises(ImageDataError, match=r"cut\.jpg: unusable image: .*truncated"):
        check_images([records[4]], decode=True)
    with pytest.raises(ValueError, match=r"policy='warn'"):
        check_images(records, policy="warn")


# ---------------------------------------------------------------------------------------------
# real data in ../shared/data (skipped when absent)


def test_real_coco128_yolo():
    root = SHARED_DATA / "coco128_lightly"
    images = root / "images" / "train2017"
    labels = root / "object_detection" / "labels" / "train2017"
    if not (images.is_dir() and labels.is_dir()):
        pytest.skip(f"{root} not available")
    names = read_yolo_names(root / "object_detection" / "config.yaml")
    assert len(names) == 80 and names[0] == "person" and names[79] == "toothbrush"
    # the lightly copy has 2 label files (000000000656, 000000000659) without their image
    with pytest.raises(ImageDataError, match=r"000000000656\.txt: label file without an image"):
        read_yolo(images, labels, 80)
    split = read_yolo(images, labels, 80, orphan_labels="skip")
    assert len(split) == 128
    assert split.skipped == {"label_without_image": 2}
    assert sum(not r.labels for r in split.records) == 2
    assert len({c for r in split.records for c in r.labels}) == 71
    for rec in split.records:  # label sets recomputed with plain text parsing
        txt = labels / f"{rec.id}.txt"
        lines = txt.read_text().split("\n") if txt.exists() else []
        assert rec.labels == tuple(sorted({int(x.split()[0]) for x in lines if x.strip()}))


def test_real_coco_tiny_instances():
    root = SHARED_DATA / "coco_tiny_supergradients"
    ann = root / "annotations" / "instances_val2017.json"
    if not ann.is_file():
        pytest.skip(f"{root} not available")
    names, split = read_coco(ann, root / "images" / "val2017")
    data = json.loads(ann.read_text())
    cats = sorted(data["categories"], key=lambda c: c["id"])
    assert names == [c["name"] for c in cats] and len(names) == 80
    column = {c["id"]: k for k, c in enumerate(cats)}
    expected: dict[str, set[int]] = {}
    for a in data["annotations"]:
        expected.setdefault(str(a["image_id"]), set()).add(column[a["category_id"]])
    assert len(split) == 6 and split.skipped == {}
    assert _labels(split) == {k: tuple(sorted(v)) for k, v in expected.items()}
