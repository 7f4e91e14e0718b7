"""Image classification tasks: sources, held-out selection split, transforms, metrics, tiny runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from accelerate.state import AcceleratorState
from PIL import Image
from sklearn.metrics import average_precision_score

import run_task
from tasks import create_task
from tasks.base import SHARED_DATA
from tasks.image_classification.data import ImageDataError
from tasks.image_classification.transforms import (
    Cutout,
    build_transform,
    normalize,
    resolve_config,
)

COCO_TINY = SHARED_DATA / "coco_tiny_supergradients"
COCO128 = SHARED_DATA / "coco128_lightly"
# sparse COCO-style category ids, as in the official files
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"},
              {"id": 90, "name": "toothbrush"}]


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def _image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)


def make_coco(root: Path, n_train: int = 20, n_val: int = 8) -> dict[str, dict[int, set[int]]]:
    """A COCO-layout directory; returns split -> image id -> set of category ids."""
    rng = np.random.default_rng(0)
    truth: dict[str, dict[int, set[int]]] = {}
    (root / "annotations").mkdir(parents=True)
    ann_id = 1
    for split, n, offset in (("train2017", n_train, 100), ("val2017", n_val, 500)):
        (root / "images" / split).mkdir(parents=True)
        images, anns, truth[split] = [], [], {}
        for i in range(n):
            image_id = offset + i
            name = f"{image_id:012d}.jpg"
            _image(root / "images" / split / name, image_id)
            images.append({"id": image_id, "file_name": name, "height": 24, "width": 32})
            cats = rng.choice([c["id"] for c in CATEGORIES], size=int(rng.integers(1, 4)))
            truth[split][image_id] = set(int(c) for c in cats)
            for c in cats:  # repeated categories: one label, as in the COCO protocol
                anns.append({"id": ann_id, "image_id": image_id, "category_id": int(c),
                             "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0})
                ann_id += 1
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": anns, "categories": CATEGORIES}))
    return truth


@pytest.fixture
def coco_dir(tmp_path: Path) -> tuple[Path, dict[str, dict[int, set[int]]]]:
    root = tmp_path / "mini_coco"
    return root, make_coco(root)


def test_coco_task_splits_and_targets(coco_dir) -> None:
    root, truth = coco_dir
    task = create_task("coco", data_dir=str(root))
    assert task.num_labels == 4 and task.label_names == ["person", "car", "dog", "toothbrush"]
    assert task.dataset_name == "mini_coco-val2017"
    n = {s: len(task.dataset(s)) for s in ("train", "dev", "test")}
    assert n == {"train": 18, "dev": 2, "test": 8}  # 10% of the 20 train images held out
    dense = {1: 0, 3: 1, 18: 2, 90: 3}
    for split, source in (("train", "train2017"), ("dev", "train2017"), ("test", "val2017")):
        for rec, row in zip(task.records[split], task.targets(split), strict=True):
            expected = np.zeros(4)
            expected[[dense[c] for c in truth[source][int(rec.id)]]] = 1
            np.testing.assert_array_equal(row, expected)
    train_ids = {r.id for r in task.records["train"]}
    assert train_ids.isdisjoint(r.id for r in task.records["dev"])


def test_held_out_split_is_fixed_and_named(coco_dir) -> None:
    root, _ = coco_dir
    a = create_task("coco", data_dir=str(root))
    b = create_task("coco", data_dir=str(root))
    assert [r.id for r in a.records["dev"]] == [r.id for r in b.records["dev"]]
    assert a.data_fingerprint() == b.data_fingerprint()
    c = create_task("coco", data_dir=str(root), holdout=0.3)
    assert len(c.records["dev"]) == 6 and c.dataset_name == "mini_coco-val2017-holdout0.3"
    assert c.data_fingerprint() != a.data_fingerprint()


def test_item_shapes_follow_the_model_data_config(coco_dir) -> None:
    root, _ = coco_dir
    task = create_task("coco", data_dir=str(root))

    class FakeModel(torch.nn.Module):
        data_config: ClassVar[dict] = {"input_size": (3, 40, 40), "mean": (0.5, 0.5, 0.5),
                       "std": (0.5, 0.5, 0.5), "interpolation": "bicubic", "crop_pct": 0.9}

    task.prepare_model(FakeModel())
    item = task.dataset("train")[0]
    assert item["image"].shape == (3, 40, 40) and item["targets"].shape == (4,)
    assert item["image"].dtype == torch.uint8  # normalized later, on the batch
    images = torch.stack([task.dataset("test")[i]["image"] for i in range(3)])
    expected = torch.stack([TF.normalize(TF.to_tensor(TF.to_pil_image(x)), [0.5] * 3, [0.5] * 3)
                            for x in images])
    torch.testing.assert_close(normalize(images, task.data_config), expected)
    task2 = create_task("coco", data_dir=str(root), image_size=16)
    task2.prepare_model(FakeModel())
    assert task2.dataset("test")[3]["image"].shape == (3, 16, 16)


def test_eval_transform_is_deterministic_and_train_is_not() -> None:
    cfg = resolve_config(None, image_size=32)
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 60, 3), dtype=np.uint8))
    ev = build_transform(cfg, train=False)
    assert torch.equal(ev(img), ev(img))
    tr = build_transform(cfg, train=True)
    torch.manual_seed(0)
    outs = [tr(img) for _ in range(4)]
    assert not all(torch.equal(outs[0], o) for o in outs[1:])
    with pytest.raises(ValueError, match="augment must be one of"):
        build_transform(cfg, train=True, augment="heavy")


def test_cutout_paints_one_square_of_the_stated_size() -> None:
    img = Image.new("RGB", (40, 40), (0, 0, 0))
    torch.manual_seed(3)
    out = np.asarray(Cutout(0.5)(img))
    painted = (out != 0).any(axis=2)
    ys, xs = np.nonzero(painted)
    if painted.any():  # a black fill colour is possible but has probability 1 / 2^24
        assert painted[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()  # a filled box
        assert ys.max() - ys.min() + 1 <= 21 and xs.max() - xs.min() + 1 <= 21
    assert np.asarray(img).max() == 0  # the input is left untouched


def _sklearn_map(scores: np.ndarray, targets: np.ndarray) -> float:
    keep = targets.sum(axis=0) > 0
    return float(np.mean([average_precision_score(targets[:, c], scores[:, c])
                          for c in np.flatnonzero(keep)]))


def test_evaluate_matches_independent_computations(coco_dir) -> None:
    root, _ = coco_dir
    task = create_task("coco", data_dir=str(root))
    rng = np.random.default_rng(0)
    dev_t, test_t = task.targets("dev"), task.targets("test")
    dev_s, test_s = rng.random(dev_t.shape), rng.random(test_t.shape)
    with pytest.raises(ValueError, match="needs per-class thresholds"):
        task.evaluate("test", torch.arange(len(test_t)), torch.from_numpy(test_s))
    dev_perm = torch.from_numpy(rng.permutation(len(dev_t)))
    rule = task.calibrate(dev_perm, torch.from_numpy(dev_s)[dev_perm])
    assert rule.policy == "per_class_dev_tuned" and rule.value == 0.5
    perm = torch.from_numpy(rng.permutation(len(test_t)))  # arrival order must not matter
    out = task.evaluate("test", perm, torch.from_numpy(test_s)[perm], rule)
    assert out["map"] == pytest.approx(_sklearn_map(test_s, test_t))
    # the ASL / ML-Decoder convention: classes without a test positive score 0, mean over all C
    keep = test_t.sum(axis=0) > 0
    assert out["map_zero"] == pytest.approx(_sklearn_map(test_s, test_t) * keep.sum() / len(keep))
    assert task.primary_metric == "map" and {"map", "map_zero"} <= set(task.metrics)
    pred = test_s >= 0.5
    tp, npred, npos = (pred & (test_t > 0)).sum(0), pred.sum(0), test_t.sum(0)
    op, orec = tp.sum() / npred.sum(), tp.sum() / npos.sum()
    assert out["OF1"] == pytest.approx(2 * op * orec / (op + orec))
    cp = np.mean(np.where(npred > 0, tp / np.maximum(npred, 1), 0))
    assert out["CP"] == pytest.approx(cp)
    # adaptive: per-class thresholds tuned on dev (0.5 for classes without dev positives)
    thr = np.array(rule.per_class)
    assert len(thr) == task.num_labels
    for c in range(task.num_labels):
        if dev_t[:, c].sum() == 0:
            assert thr[c] == 0.5
            continue
        f1 = [2 * ((dev_s[:, c] >= t) & (dev_t[:, c] > 0)).sum()
              / ((dev_s[:, c] >= t).sum() + dev_t[:, c].sum()) for t in np.unique(dev_s[:, c])]
        got = ((dev_s[:, c] >= thr[c]) & (dev_t[:, c] > 0)).sum() * 2 / (
            (dev_s[:, c] >= thr[c]).sum() + dev_t[:, c].sum())
        assert got == pytest.approx(max(f1))
    pred = test_s >= thr
    tp, npred = (pred & (test_t > 0)).sum(0), pred.sum(0)
    op, orec = tp.sum() / max(npred.sum(), 1), tp.sum() / npos.sum()
    assert out["adaptive_OF1"] == pytest.approx(2 * op * orec / (op + orec) if op + orec else 0)
    assert set(out) == set(task.higher_is_better)


def test_missing_image_is_an_error_naming_the_file(coco_dir) -> None:
    root, truth = coco_dir
    victim = root / "images" / "val2017" / f"{next(iter(truth['val2017'])):012d}.jpg"
    victim.unlink()
    with pytest.raises(ImageDataError, match=victim.name):
        create_task("coco", data_dir=str(root))


def test_corrupt_image_error_or_counted_skip(coco_dir) -> None:
    root, truth = coco_dir
    victim = root / "images" / "train2017" / f"{next(iter(truth['train2017'])):012d}.jpg"
    victim.write_bytes(victim.read_bytes()[:40])
    with pytest.raises(ImageDataError, match=victim.name):
        create_task("coco", data_dir=str(root))
    task = create_task("coco", data_dir=str(root), check_images="skip")
    assert task.skipped["train2017"]["bad_image"] == 1
    assert len(task.records["train"]) + len(task.records["dev"]) == 19
    assert task.info()["skipped"]["train2017"]["bad_image"] == 1


def test_unknown_options_are_clear_errors(coco_dir, tmp_path: Path) -> None:
    root, _ = coco_dir
    with pytest.raises(ValueError, match="format must be one of"):
        create_task("image_multilabel", data_dir=str(root), format="csv")
    with pytest.raises(ValueError, match=r"unknown dataset 'coco129'"):
        create_task("coco", dataset="coco129")
    with pytest.raises(ImageDataError, match="not a directory"):
        create_task("coco", data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(ImageDataError, match=r"instances_val2014\.json"):
        create_task("coco", data_dir=str(root), test_split="val2014")


def _run(out: Path, *args: str) -> list[dict]:
    return run_task.main(["--output_dir", str(out), "--epochs", "1", "--batch_size", "8",
                          "--eval_batch_size", "16", "--seed", "0", *args])


def test_tiny_end_to_end_linear_cosine_and_mldecoder(coco_dir, tmp_path: Path) -> None:
    root, _ = coco_dir
    rows = _run(tmp_path / "runs", "--task", "coco", "--data_dir", str(root), "--model",
                "tiny_image", "--loss", "bce,aam@aam_coco", "--task.image_size", "32")
    rows += _run(tmp_path / "runs", "--task", "coco", "--data_dir", str(root), "--model",
                 "tiny_image_mldecoder", "--loss", "apl@apl_coco", "--task.image_size", "32")
    assert [r["loss"]["name"] for r in rows] == ["bce", "aam", "apl"]
    assert [r["model"]["kwargs"]["head"] for r in rows] == ["linear", "cosine", "linear"]
    for r in rows:
        assert r["task"] | {"data_fingerprint": None} == {
            "name": "coco", "version": "1", "dataset": "mini_coco-val2017", "split": "test",
            "num_labels": 4, "num_examples": 8, "data_fingerprint": None}
        assert 0.0 <= r["metrics"]["map_zero"] <= r["metrics"]["map"] <= 1.0
        assert r["extra"]["task_info"]["num_examples"] == {"train": 18, "dev": 2, "test": 8}
        assert len(r["threshold"]["per_class"]) == 4
    files = sorted(p.name for p in (tmp_path / "runs" / "coco").glob("*.json"))
    assert "tiny_image_mldecoder__mini_coco-val2017__apl_coco__seed0.json" in files


def test_channels_last_changes_the_layout_not_the_results(coco_dir, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # --channels_last yes (auto: CUDA only) converts the 4-D weights before training; the
    # convolutions then compute the same function in another layout: same run id, metrics and
    # losses equal to float32 rounding
    import engine.recipe as recipe

    root, _ = coco_dir
    layouts: list[bool] = []
    prepare = recipe.prepare

    def spy(cell, acc):
        prepared = prepare(cell, acc)
        convs = [p for p in acc.unwrap_model(prepared.model).parameters() if p.dim() == 4]
        # a [C, 1, k, k] depthwise weight is both layouts at once; the others are one
        layouts.append(all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
                       and not all(p.is_contiguous() for p in convs))
        return prepared

    monkeypatch.setattr(run_task, "prepare", spy)
    common = ("--task", "coco", "--data_dir", str(root), "--model", "tiny_image", "--loss",
              "asl@asl_coco", "--task.image_size", "32", "--epochs", "2")
    (cl,) = _run(tmp_path / "cl", *common, "--channels_last", "yes")
    (plain,) = _run(tmp_path / "plain", *common, "--channels_last", "no")
    assert layouts == [True, False]
    assert cl["run_id"] == plain["run_id"]
    for a, b in zip(cl["history"], plain["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    for key, value in plain["metrics"].items():
        assert cl["metrics"][key] == pytest.approx(value, abs=1e-4), key


def test_association_penalty_reaches_the_training_loss(coco_dir, tmp_path: Path) -> None:
    root, _ = coco_dir
    common = ("--task", "coco", "--data_dir", str(root), "--model", "tiny_image_assoc",
              "--loss", "bce", "--task.image_size", "32", "--lr", "1e-30")
    low = _run(tmp_path / "a", *common, "--model.theta", "0.0")[0]
    high = _run(tmp_path / "b", *common, "--model.theta", "10.0")[0]
    # lr 1e-30 (the engine refuses 0): identical weights and batches, so the loss differs by
    # the penalty alone, which is
    # theta x (mean Frobenius norm of A > 0)
    diff = high["history"][0]["train_loss"] - low["history"][0]["train_loss"]
    assert diff > 1.0


@pytest.mark.skipif(not COCO_TINY.is_dir(), reason="shared coco_tiny_supergradients absent")
def test_must_show_command_on_the_shared_coco_json_copy(tmp_path: Path) -> None:
    rows = _run(tmp_path / "runs", "--task", "coco", "--data_dir", str(COCO_TINY),
                "--model", "tiny_image", "--loss", "asl@asl_coco", "--task.image_size", "32")
    r = rows[0]
    assert r["task"]["num_labels"] == 80 and r["task"]["num_examples"] == 6
    info = r["extra"]["task_info"]["num_examples"]
    # 2 of the 32 train2017 images have no annotation: skipped (counted), as ASL's loader does
    assert info["train"] + info["dev"] == 30 and info["dev"] == 3
    assert r["extra"]["task_info"]["skipped"]["train2017"] == {"no_labels": 2}


@pytest.mark.skipif(not COCO128.is_dir(), reason="shared coco128_lightly absent")
def test_coco128_named_dataset() -> None:
    task = create_task("coco")  # the default dataset
    assert task.dataset_name == "coco128" and task.num_labels == 80
    assert task.skipped["train2017"] == {"no_labels": 2, "label_without_image": 2}
    assert {s: len(r) for s, r in task.records.items()} == {"test": 128, "train": 101, "dev": 25}
    assert task.label_names[0] == "person" and task.label_names[79] == "toothbrush"


def _images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        _image(folder / name, i)


def test_voc_task_reads_trainval_and_test(tmp_path: Path) -> None:
    root = tmp_path / "VOC2007"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    objects = {f"{i:06d}": ["dog", "person"] if i % 2 else ["cat"] for i in range(1, 13)}
    objects["000012"] = ["tvmonitor", "tvmonitor"]
    for image_id, names in objects.items():
        body = "".join(f"<object><name>{n}</name><difficult>0</difficult></object>" for n in names)
        (root / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{body}</annotation>")
    _images(root / "JPEGImages", [f"{i}.jpg" for i in objects])
    ids = sorted(objects)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(ids[:10]) + "\n")
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids[10:]) + "\n")
    task = create_task("voc", data_dir=str(root))
    assert task.num_labels == 20 and task.label_names[7] == "cat"
    assert {s: len(r) for s, r in task.records.items()} == {"test": 2, "train": 9, "dev": 1}
    by_id = {r.id: row for r, row in zip(task.records["test"], task.targets("test"), strict=True)}
    assert np.flatnonzero(by_id["000012"]).tolist() == [task.label_names.index("tvmonitor")]
    assert np.flatnonzero(by_id["000011"]).tolist() == sorted(
        task.label_names.index(n) for n in ("dog", "person"))


def test_nus_wide_task_reads_the_csv_splits(tmp_path: Path) -> None:
    names = [f"{i}.jpg" for i in range(12)]
    _images(tmp_path / "nus" / "images" / "img", names)
    rows = ["filepath,label,split_name"] + [
        f"img/{n},\"['sky', 'clouds']\",train" if i < 9 else f"img/{n},\"['water']\",val"
        for i, n in enumerate(names)]
    rows[3] = "img/2.jpg,[],train"  # no labels: skipped and counted by default
    (tmp_path / "nus" / "nus_wide_data.csv").write_text("\n".join(rows) + "\n")
    task = create_task("nus_wide", data_dir=str(tmp_path / "nus"))
    assert task.label_names == ["clouds", "sky", "water"]
    assert task.skipped["train"] == {"no_labels": 1}
    assert {s: len(r) for s, r in task.records.items()} == {"test": 3, "train": 7, "dev": 1}
    assert task.targets("test").tolist() == [[0, 0, 1]] * 3


def test_image_multilabel_yolo_and_hf_sources(tmp_path: Path) -> None:
    import datasets

    root = tmp_path / "yolo"
    root.mkdir()
    (root / "data.yaml").write_text("names: [cat, dog, bird]\n")
    for split in ("train", "val"):
        _images(root / "images" / split, [f"{i}.jpg" for i in range(10)])
        (root / "labels" / split).mkdir(parents=True)
        for i in range(10):
            label = root / "labels" / split / f"{i}.txt"
            label.write_text(f"{i % 3} 0.5 0.5 0.1 0.1\n2 0 0 1 1\n")
    task = create_task("image_multilabel", data_dir=str(root), format="yolo")
    assert task.dataset_name == "yolo-val" and task.label_names == ["cat", "dog", "bird"]
    assert task.targets("test")[:3].tolist() == [[1, 0, 1], [0, 1, 1], [0, 0, 1]]

    buf = []
    for i in range(12):
        path = tmp_path / f"hf{i}.png"
        _image(path, i)
        buf.append(path.read_bytes())
    features = datasets.Features({
        "image": datasets.Image(),
        "labels": datasets.Sequence(datasets.ClassLabel(names=["a", "b"]))})
    make = lambda rows: datasets.Dataset.from_dict(  # noqa: E731
        {"image": [{"bytes": buf[i], "path": None} for i in rows],
         "labels": [[i % 2] for i in rows]}, features=features)
    datasets.DatasetDict({"train": make(range(10)), "test": make(range(10, 12))}).save_to_disk(
        str(tmp_path / "hfds"))
    task = create_task("image_multilabel", hf=str(tmp_path / "hfds"))
    assert task.dataset_name == "hfds-test" and task.label_names == ["a", "b"]
    assert task.targets("test").tolist() == [[1, 0], [0, 1]]
    assert task.dataset("test")[1]["image"].dtype == torch.uint8


def test_two_process_ddp_evaluates_every_image_once(tmp_path: Path,
                                                      launch_two_cpu_processes) -> None:
    root = tmp_path / "odd_coco"
    make_coco(root, n_train=20, n_val=7)
    # lr 1e-30 (the engine refuses 0) and a GroupNorm model: the weights stay the initial
    # ones, so 1 and 2 processes must
    # score the test images identically; 7 test images in batches of 4 split over 2 ranks leave
    # a padded last batch (3 -> 2 + 2) whose duplicate gather_for_metrics has to drop
    args = ["--task", "coco", "--data_dir", str(root), "--model", "tiny_image", "--loss", "bce",
            "--task.image_size", "32", "--lr", "1e-30", "--epochs", "1", "--batch_size", "4",
            "--eval_batch_size", "4", "--seed", "0"]
    (single,) = run_task.main([*args, "--output_dir", str(tmp_path / "one")])
    launch_two_cpu_processes(*args, "--output_dir", str(tmp_path / "two"))
    (path,) = (tmp_path / "two" / "coco").glob("*__seed0.json")
    double = json.loads(path.read_text())
    assert double["env"]["world_size"] == 2 and double["task"]["num_examples"] == 7
    for key, value in single["metrics"].items():
        assert double["metrics"][key] == pytest.approx(value, abs=1e-5), key
