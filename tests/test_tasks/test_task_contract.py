"""The Task contract (v2), checked on every registered task in a tiny mode.

Every name in ``TASKS`` is built once (``TINY`` lists small options and a tiny model for the
built-ins; any other registered task is built with its defaults and its ``default_model``) and
must: number its items with ``index``; collate batches whose rows match ``row_ids`` and
``targets``; return exactly its declared ``metrics`` from ``evaluate``, whatever the order of
the rows; keep ``evaluate`` and ``calibrate`` pure; and change its fingerprint when one target
changes. ``create_task`` must refuse a task class that breaks the contract, naming the attribute.
The README's "Add your own task" example runs through the same checks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mllb_core.errors import UserError
from tasks import TASKS, create_task
from tasks.base import (
    ArrayTask,
    DecisionRule,
    Task,
    TaskContractError,
    check_task_class,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
README = Path(__file__).resolve().parents[2] / "README.md"

# The README's "Add your own task" example, exactly (a test checks the README holds it).
README_EXAMPLE = '''\
import numpy as np

from tasks import TASKS, create_task
from tasks.base import ArrayTask


@TASKS.register("toy_blobs")
class ToyBlobsTask(ArrayTask):
    """Points around random class centres; a label is on when its centre is near."""

    name = "toy_blobs"
    version = "1"  # bump when a change moves the numbers
    primary_metric = "map"
    metrics = ("map", "CF1", "OF1", "P@1")  # names from tasks.metrics.METRICS
    default_model = "mlp"

    def __init__(self, num_labels: int = 6, num_features: int = 8, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((num_labels, num_features))
        x = rng.standard_normal((300, num_features)).astype(np.float32)
        dist = ((x[:, None, :] - centres[None]) ** 2).sum(axis=2)  # [300, C]
        y = (dist < np.quantile(dist, 0.3)).astype(np.float32)
        self.set_arrays(f"toy-blobs-seed{seed}", train=(x[:200], y[:200]),
                        dev=(x[200:250], y[200:250]), test=(x[250:], y[250:]))


task = create_task("toy_blobs", seed=1)
print(task.num_labels, task.kwargs, task.higher_is_better)
assert task.num_labels == 6 and task.kwargs["seed"] == 1 and task.higher_is_better["map"]
'''


# -- building each task in a tiny mode ---------------------------------------------------------

def _image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)


def _coco(root: Path) -> Path:
    """20 train / 8 val images over 3 sparse COCO category ids."""
    rng = np.random.default_rng(0)
    cats = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]
    (root / "annotations").mkdir(parents=True)
    ann = 1
    for split, n, offset in (("train2017", 20, 100), ("val2017", 8, 500)):
        images, anns = [], []
        for i in range(offset, offset + n):
            _image(root / "images" / split / f"{i:012d}.jpg", i)
            images.append({"id": i, "file_name": f"{i:012d}.jpg", "height": 16, "width": 16})
            for c in rng.choice([1, 3, 18], size=int(rng.integers(1, 3))):
                anns.append({"id": ann, "image_id": i, "category_id": int(c), "bbox": [0, 0, 2, 2],
                             "area": 4, "iscrowd": 0})
                ann += 1
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": anns, "categories": cats}))
    return root


def _voc(root: Path) -> Path:
    """A VOC2007 directory: 10 trainval and 4 test images."""
    names = ["cat", "dog", "person", "car"]
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    ids = [f"{i:06d}" for i in range(1, 15)]
    for k, image_id in enumerate(ids):
        objs = {names[k % 4], names[(k * 3) % 4]}
        body = "".join(f"<object><name>{n}</name><difficult>0</difficult></object>" for n in objs)
        (root / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{body}</annotation>")
        _image(root / "JPEGImages" / f"{image_id}.jpg", k)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(ids[:10]) + "\n")
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids[10:]) + "\n")
    return root


def _nus(root: Path) -> Path:
    """The NUS-WIDE CSV layout: 10 train and 4 val images."""
    labels = ["['sky', 'clouds']", "['water']", "['sky', 'water']"]
    rows = ["filepath,label,split_name"]
    for i in range(14):
        _image(root / "images" / "img" / f"{i}.jpg", i)
        rows.append(f"img/{i}.jpg,\"{labels[i % 3]}\",{'train' if i < 10 else 'val'}")
    (root / "nus_wide_data.csv").write_text("\n".join(rows) + "\n")
    return root


def _conll(root: Path) -> Path:
    """CoNLL-2003-style train/dev/test files in IOB2: 6 / 3 / 3 sentences, 3 types."""
    words = [("Ann", "B-PER"), ("Lee", "I-PER"), ("met", "O"), ("IBM", "B-ORG"), ("in", "O"),
             ("Paris", "B-LOC"), (".", "O")]
    root.mkdir(parents=True)
    for split, n in (("train", 6), ("dev", 3), ("test", 3)):
        blocks = ["\n".join(f"{w} NNP {t}" for w, t in words[i % 3:]) for i in range(n)]
        (root / f"{split}.txt").write_text("-DOCSTART- -X- O\n\n" + "\n\n".join(blocks) + "\n")
    return root


def _flip(array: np.ndarray | torch.Tensor) -> None:
    array[0, 0] = 1 - array[0, 0]


def _flip_docred(task: Any) -> None:
    _flip(task.items["test"][0]["targets"])  # what DocRED fingerprints: the per-document items


@dataclass
class Tiny:
    """How to build a registered task small: options (given a scratch folder), a model."""

    build: Callable[[Path], dict[str, Any]]
    model: str
    flip_one_target: Callable[[Any], None] | None = None  # default: targets("test") in place


IMAGE = {"image_size": 32}
TINY: dict[str, Tiny] = {
    "synthetic": Tiny(lambda d: dict(num_labels=6, num_features=5, num_train=40, num_dev=20,
                                     num_test=30, avg_positives=1.5), "tiny_mlp"),
    "text_multilabel": Tiny(lambda d: dict(data_dir=str(FIXTURES / "aapd_mini")), "tiny_lsan"),
    "aapd": Tiny(lambda d: dict(data_dir=str(FIXTURES / "aapd_mini")), "tiny_lsan"),
    "docred": Tiny(lambda d: dict(data_dir=str(FIXTURES / "docred_task")), "tiny_mrn",
                   _flip_docred),
    "docred_ner": Tiny(lambda d: dict(data_dir=str(FIXTURES / "docred_task")),
                       "tiny_bilstm_tagger"),
    "token_ner": Tiny(lambda d: dict(data_dir=str(_conll(d / "conll"))), "tiny_bilstm_tagger"),
    "image_multilabel": Tiny(lambda d: dict(data_dir=str(_coco(d / "coco")), format="coco",
                                            **IMAGE), "tiny_image"),
    "coco": Tiny(lambda d: dict(data_dir=str(_coco(d / "coco")), **IMAGE), "tiny_image"),
    "voc": Tiny(lambda d: dict(data_dir=str(_voc(d / "VOC2007")), **IMAGE), "tiny_image"),
    "nus_wide": Tiny(lambda d: dict(data_dir=str(_nus(d / "nus")), **IMAGE), "tiny_image"),
}
EXAMPLE = "readme_example"


def _scratch_name(mp: pytest.MonkeyPatch, name: str) -> None:
    """Free ``name`` in TASKS until ``mp`` is undone (then whatever was there comes back)."""
    mp.setitem(TASKS._items, name, None)
    del TASKS._items[name]


def _build(name: str, folder: Path) -> tuple[Task, str, Tiny | None]:
    with pytest.MonkeyPatch.context() as mp:
        import tasks.text_classification.task as text_task

        mp.setattr(text_task, "CACHE", folder / "text-cache")  # never the user's cache
        if name == EXAMPLE:
            _scratch_name(mp, "toy_blobs")
            namespace: dict[str, Any] = {}
            exec(compile(README_EXAMPLE, "README example", "exec"), namespace)
            task = namespace["task"]
            return task, task.default_model, None
        tiny = TINY.get(name)
        if tiny is None:  # a plugin: its defaults, its default model
            task = create_task(name)
            return task, task.default_model, None
        return create_task(name, **tiny.build(folder)), tiny.model, tiny


@pytest.fixture(scope="module", params=[*TASKS.names(), EXAMPLE])
def built(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Task, str, Tiny | None]]:
    yield _build(request.param, tmp_path_factory.mktemp(request.param))


def _scores(task: Task, split: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(row ids in a shuffled order, random probabilities in that order)."""
    g = torch.Generator().manual_seed(seed)
    n = task.num_rows(split)
    return torch.randperm(n, generator=g), torch.rand(n, task.num_labels, generator=g)


def _rule(task: Task) -> DecisionRule:
    return task.calibrate(*_scores(task, "dev", seed=1))


# -- the contract, on every task ----------------------------------------------------------------

def test_every_builtin_task_has_a_tiny_mode() -> None:
    import tasks

    assert set(tasks.BUILTIN_TASKS) == set(TINY)


def test_class_attributes_and_directions(built) -> None:
    task, _, _ = built
    check_task_class(type(task))
    assert task.primary_metric in task.metrics
    assert list(task.higher_is_better) == list(task.metrics)
    assert all(isinstance(v, bool) for v in task.higher_is_better.values())
    assert isinstance(task.num_labels, int) and task.num_labels > 0 and task.dataset_name
    json.dumps(task.kwargs)  # recorded in the results JSON


def test_items_carry_their_index_and_batches_give_the_split_rows(built) -> None:
    task, model_name, _ = built
    from models import create_model

    torch.manual_seed(0)
    model = create_model(model_name, task.num_labels, **task.model_kwargs())
    task.prepare_model(model)
    model.eval()
    for split in ("train", "dev", "test"):
        ds = task.dataset(split)
        assert len(ds) > 0
        for i in sorted({0, len(ds) - 1}):
            assert int(ds[i]["index"]) == i
    ds = task.dataset("test")
    batch = task.collate([ds[i] for i in reversed(range(min(3, len(ds))))])
    rows = task.row_ids(batch)
    with torch.no_grad():
        logits, targets = task.logits_and_targets(model, batch)
    assert rows.ndim == 1 and logits.shape == targets.shape == (len(rows), task.num_labels)
    assert torch.isfinite(logits).all()
    assert 0 <= int(rows.min()) and int(rows.max()) < task.num_rows("test")
    # the batch's targets are the split's targets at the batch's row ids
    np.testing.assert_array_equal(targets.numpy(), task.targets("test")[rows.numpy()])


def test_evaluate_returns_the_declared_metrics(built) -> None:
    task, _, _ = built
    rule = _rule(task)
    out = task.evaluate("test", *_scores(task, "test"), rule)
    assert list(out) == list(task.metrics)
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    assert DecisionRule.from_json(json.loads(json.dumps(rule.to_json()))) == rule
    if rule.per_class is not None:
        assert len(rule.per_class) == task.num_labels


def test_evaluate_is_invariant_to_the_order_of_the_rows(built) -> None:
    task, _, _ = built
    rule = _rule(task)
    index, scores = _scores(task, "test")
    order = index.argsort()
    in_order = task.evaluate("test", index[order], scores[order], rule)
    assert task.evaluate("test", index, scores, rule) == in_order
    back = order.flip(0)
    assert task.evaluate("test", index[back], scores[back], rule) == in_order
    dev_index, dev_scores = _scores(task, "dev", seed=1)
    assert task.calibrate(dev_index.flip(0), dev_scores.flip(0)) == rule


def test_evaluate_and_calibrate_are_pure(built) -> None:
    task, _, _ = built
    rule = _rule(task)
    test = _scores(task, "test")
    info, fingerprint = json.dumps(task.info(), sort_keys=True), task.data_fingerprint()
    first = task.evaluate("test", *test, rule)
    other = task.calibrate(*_scores(task, "dev", seed=7))  # other dev scores, other rule
    task.evaluate("dev", *_scores(task, "dev", seed=7), other)
    assert task.evaluate("test", *test, rule) == first
    assert _rule(task) == rule  # a calibration depends on its arguments alone
    assert json.dumps(task.info(), sort_keys=True) == info
    assert task.data_fingerprint() == fingerprint


def test_evaluate_wants_every_row_once(built) -> None:
    task, _, _ = built
    index, scores = _scores(task, "test")
    with pytest.raises(ValueError, match="exactly once"):
        task.evaluate("test", index[1:], scores[1:], _rule(task))
    with pytest.raises(ValueError, match="unknown split"):
        task.evaluate("val", index, scores, _rule(task))


def test_fingerprint_changes_when_one_target_changes(built) -> None:
    task, _, tiny = built
    before = task.data_fingerprint()
    flip = (tiny and tiny.flip_one_target) or (lambda t: _flip(t.targets("test")))
    flip(task)
    try:
        assert task.data_fingerprint() != before
    finally:
        flip(task)  # the task is shared by this module's tests
    assert task.data_fingerprint() == before


# -- DecisionRule ----------------------------------------------------------------------------

def test_decision_rule_values_json_and_equality() -> None:
    assert DecisionRule() == DecisionRule("fixed", 0.5)
    assert DecisionRule().to_json() == {"policy": "fixed", "value": 0.5}
    rule = DecisionRule("per_class_dev_tuned", 0.5, [0.25, np.float32(0.75)])
    assert rule.per_class == (0.25, 0.75) and hash(rule) == hash(
        DecisionRule("per_class_dev_tuned", 0.5, (0.25, 0.75)))
    assert rule.to_json() == {"policy": "per_class_dev_tuned", "value": 0.5,
                              "per_class": [0.25, 0.75]}
    assert DecisionRule.from_json(rule.to_json()) == rule
    assert DecisionRule("dev_tuned", 0.3) != DecisionRule("fixed", 0.3)
    with pytest.raises(FrozenInstanceError):
        rule.value = 0.1  # type: ignore[misc]
    for bad, message in ((dict(policy="best"), "policy must be one of"),
                         (dict(value=float("nan")), "finite number"),
                         (dict(policy="per_class_dev_tuned"), "per_class is given exactly"),
                         (dict(per_class=(0.5,)), "per_class is given exactly"),
                         (dict(policy="per_class_dev_tuned", per_class=(0.5, math.inf)),
                          "finite numbers")):
        with pytest.raises(ValueError, match=message):
            DecisionRule(**bad)


# -- create_task refuses a broken task ---------------------------------------------------------

class _Good(ArrayTask):
    name = "contract_probe"
    version = "1"
    primary_metric = "map"
    metrics = ("map", "OF1")
    default_model = "mlp"

    def __init__(self, n: int = 12) -> None:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, 3)).astype(np.float32)
        y = (rng.random((n, 4)) < 0.5).astype(np.float32)
        self.set_arrays("probe", train=(x, y), dev=(x, y), test=(x, y))


def _variant(**attrs: Any) -> type:
    """A subclass of _Good with ``attrs`` set (a value None deletes the attribute)."""
    cls = type("Broken", (_Good,), {k: v for k, v in attrs.items() if v is not None})
    for key, value in attrs.items():
        if value is None:  # shadow the inherited attribute with "missing"
            setattr(cls, key, None)
    return cls


def _init_setting(**values: Any) -> type:
    class Broken(_Good):
        def __init__(self) -> None:
            super().__init__()
            self.__dict__.update(values)

    return Broken


@pytest.mark.parametrize(("cls", "attr", "problem"), [
    (_variant(metrics=None), "metrics", "is missing"),
    (_variant(version=None), "version", "is missing"),
    (_variant(name=""), "name", "non-empty string"),
    (_variant(default_model=3), "default_model", "non-empty string"),
    (_variant(metrics=("map", "OF2")), "metrics", "names ['OF2']"),
    (_variant(metrics=("map", "map")), "metrics", "lists a name twice"),
    (_variant(metrics="map"), "metrics", "non-empty tuple"),
    (_variant(primary_metric="P@1"), "primary_metric", "not one of metrics"),
    (_variant(higher_is_better={"map": True}), "higher_is_better", "derived from"),
    (_init_setting(num_labels=0), "num_labels", "positive int"),
    (_init_setting(num_labels=True), "num_labels", "positive int"),
    (_init_setting(dataset_name=""), "dataset_name", "non-empty string"),
    (_init_setting(kwargs=None), "kwargs", "dict"),
])
def test_create_task_names_the_broken_attribute(monkeypatch, cls: type, attr: str,
                                                problem: str) -> None:
    _scratch_name(monkeypatch, "contract_probe")
    TASKS.add("contract_probe", cls)
    with pytest.raises(TaskContractError) as err:
        create_task("contract_probe")
    msg = str(err.value)
    assert "'contract_probe'" in msg and f"attribute {attr!r}" in msg and problem in msg
    assert isinstance(err.value, UserError)


def test_create_task_checks_the_class_before_reading_data(monkeypatch) -> None:
    class Costly(_variant(metrics=("map", "nope"))):
        def __init__(self) -> None:
            raise AssertionError("the data was read before the contract check")

    _scratch_name(monkeypatch, "contract_probe")
    TASKS.add("contract_probe", Costly)
    with pytest.raises(TaskContractError, match="'nope'"):
        create_task("contract_probe")


def test_abstract_methods_and_non_tasks_are_refused(monkeypatch) -> None:
    class NoTargets(Task):
        name, version, primary_metric, default_model = "contract_probe", "1", "map", "mlp"
        metrics = ("map",)

        def dataset(self, split: str) -> Any:
            return []

        def logits_and_targets(self, model: Any, batch: Any) -> Any:
            return None

    _scratch_name(monkeypatch, "contract_probe")
    TASKS.add("contract_probe", NoTargets)
    with pytest.raises(TaskContractError, match="attribute 'targets' is not implemented"):
        create_task("contract_probe")
    TASKS._items["contract_probe"] = lambda: object()
    with pytest.raises(TaskContractError, match=r"not a tasks\.base\.Task"):
        create_task("contract_probe")


def test_extra_metrics_must_cover_the_undeclared_ones(monkeypatch) -> None:
    class Scorer(_Good):
        metrics = ("map", "f1")  # "f1" has no function in METRICS: extra_metrics computes it

        def extra_metrics(self, split, scores, targets, rule):
            return {"f1": 0.25} if rule.value == 0.5 else {}

    _scratch_name(monkeypatch, "contract_probe")
    TASKS.add("contract_probe", Scorer)
    task = create_task("contract_probe")
    index, scores = torch.arange(12), torch.rand(12, 4)
    assert task.evaluate("test", index, scores)["f1"] == 0.25
    with pytest.raises(TaskContractError, match="extra_metrics must return"):
        task.evaluate("test", index, scores, DecisionRule("fixed", 0.4))


def test_array_task_records_its_init_arguments() -> None:
    class Sub(_Good):
        def __init__(self, n: int = 12, extra: str = "x", **more: Any) -> None:
            super().__init__(n)

    assert _Good().kwargs == {"n": 12}
    assert Sub(14, color="red").kwargs == {"n": 14, "extra": "x", "color": "red"}
    task = _Good(12)
    assert task.num_labels == 4 and task.model_kwargs() == {"in_features": 3}
    with pytest.raises(ValueError, match="targets must be 0 or 1"):
        task.set_arrays("bad", train=(np.zeros((2, 3)), np.full((2, 4), 2.0)),
                        dev=(np.zeros((2, 3)), np.zeros((2, 4))),
                        test=(np.zeros((2, 3)), np.zeros((2, 4))))


def test_readme_holds_the_example() -> None:
    text = README.read_text(encoding="utf-8")
    if "Add your own task" not in text:
        pytest.skip("README section 'Add your own task' not merged yet")
    assert f"```python\n{README_EXAMPLE}```" in text
