"""benchmarks/timm_train_compare.py's data preparation: the two sides see the same images.

The benchmark itself needs a GPU and timm's train.py; what it builds before launching them is
checked here on a tiny generated set: timm's class-folder view links exactly the training
subset MLLB's COCO layout holds (same count, same files), and the validation split.
"""

from __future__ import annotations

import json
import types
from pathlib import Path


def test_timm_view_links_the_same_training_images(tmp_path: Path,
                                                  timm_compare: types.ModuleType) -> None:
    data = timm_compare.synthetic_coco(tmp_path / "coco", 10, n_val=3)
    timm_compare.make_subset(data, tmp_path / "part", 7)
    n_train, n_val = timm_compare.class_view(tmp_path / "part", tmp_path / "view")
    assert (n_train, n_val) == (7, 3)
    linked = sorted(p for p in (tmp_path / "view" / "train").rglob("*.jpg"))
    ann = json.loads((tmp_path / "part" / "annotations" / "instances_train2017.json").read_text())
    assert sorted(p.name for p in linked) == sorted(img["file_name"] for img in ann["images"])
    for link in linked:  # each image under the class of its first label, and readable
        first = next(a["category_id"] for a in ann["annotations"]
                     if a["image_id"] == int(link.stem))
        assert link.parent.name == f"c{first:02d}"
        assert link.resolve() == (data / "images" / "train2017" / link.name).resolve()
    assert len(list((tmp_path / "view" / "val").rglob("*.jpg"))) == 3
