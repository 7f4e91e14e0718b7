"""ArrayDataset's batched fetch (``__getitems__`` -> RowBatch) against the row-by-row reference.

The reference is torch's own path: a dataset with only ``__getitem__``, batched by
``torch.utils.data.default_collate``. Every batch of an epoch (the last one partial) must hold
the same keys, values, dtypes and shapes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, Subset, default_collate

from tasks import create_task
from tasks.base import ArrayDataset, RowBatch


class RowByRow(Dataset):
    """The same rows, without ``__getitems__``: the DataLoader fetches them one at a time."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i]


def _batches(dataset: Dataset, collate: Any, batch_size: int, seed: int, **kw: Any) -> list[Any]:
    g = torch.Generator().manual_seed(seed)
    return list(DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g,
                           collate_fn=collate, **kw))


def _small_task() -> Any:
    return create_task("synthetic", num_train=90, num_dev=20, num_test=20, num_labels=7,
                       num_features=4)


def _assert_same_batch(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        assert got[key].shape == want[key].shape, key
        assert torch.equal(got[key], want[key]), key


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_batches_equal_row_by_row_default_collate(batch_size: int) -> None:
    task = create_task("synthetic", num_train=150, num_dev=40, num_test=40, num_labels=12,
                       num_features=5)
    ds = task.dataset("train")
    got = _batches(ds, task.collate, batch_size, seed=3)
    want = _batches(RowByRow(ds), default_collate, batch_size, seed=3)
    assert len(got) == len(want) == -(-150 // batch_size)
    for g, w in zip(got, want, strict=True):
        _assert_same_batch(g, w)
    assert sorted(torch.cat([b["index"] for b in got]).tolist()) == list(range(150))
    # default_collate itself, given a RowBatch, walks its rows: the same batches again
    for g, w in zip(_batches(ds, default_collate, batch_size, seed=3), want, strict=True):
        _assert_same_batch(g, w)


def test_multidimensional_features_and_other_dtypes() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((23, 3, 4)).astype(np.float64)  # [N, 3, 4], not float32
    y = (rng.random((23, 6)) < 0.3).astype(np.float32)
    ds = ArrayDataset(x, y)
    for g, w in zip(_batches(ds, lambda items: items.collated, 5, 1),
                    _batches(RowByRow(ds), default_collate, 5, 1), strict=True):
        _assert_same_batch(g, w)


def test_a_collate_that_wants_rows_gets_the_rows() -> None:
    task = create_task("synthetic", num_train=50, num_dev=20, num_test=20, num_labels=8,
                       num_features=3)
    ds = task.dataset("train")

    def ids(items: Any) -> list[int]:  # a user's collate: per-row items, in the sampler's order
        return [item["index"] for item in items]

    got = _batches(ds, ids, 8, seed=5)
    want = _batches(RowByRow(ds), ids, 8, seed=5)
    assert got == want
    rows = ds.__getitems__([4, 0, 9])
    assert isinstance(rows, RowBatch) and len(rows) == 3
    assert [r["index"] for r in rows[1:]] == [0, 9]
    assert torch.equal(rows[2]["features"], ds[9]["features"])
    with pytest.raises(IndexError):
        rows[3]


def test_subset_fetches_through_the_batched_path() -> None:
    task = create_task("synthetic", num_train=60, num_dev=20, num_test=20, num_labels=8,
                       num_features=3)
    ds = task.dataset("train")
    sub = Subset(ds, list(range(59, -1, -3)))  # torch's Subset forwards __getitems__
    got = _batches(sub, task.collate, 6, seed=2)
    want = _batches(RowByRow(sub), default_collate, 6, seed=2)
    for g, w in zip(got, want, strict=True):
        _assert_same_batch(g, w)


def test_the_task_collation_takes_the_batched_rows_as_they_are() -> None:
    task = _small_task()
    seen: list[type] = []

    def collate(items: Any) -> Any:
        seen.append(type(items))
        return task.collate(items)

    _batches(task.dataset("train"), collate, 16, seed=0)
    assert seen and set(seen) == {RowBatch}
    rows = task.dataset("train").__getitems__([3, 1])
    assert task.collate(rows) is rows.collated


def test_a_subclass_that_overrides_getitem_keeps_its_items() -> None:
    class Shifted(ArrayDataset):
        def __getitem__(self, i: int) -> dict[str, Any]:
            item = super().__getitem__(i)
            return {**item, "features": item["features"] + 100}

    task = _small_task()
    ds = Shifted(task._x["train"], task._y["train"])
    got = _batches(ds, task.collate, 8, seed=4)
    want = _batches(RowByRow(ds), default_collate, 8, seed=4)
    for g, w in zip(got, want, strict=True):
        _assert_same_batch(g, w)
    assert bool((got[0]["features"] >= 90).all())


class _Int32Order(Sampler[np.int32]):
    """Indices as numpy int32 scalars, as a user's sampler may yield them."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Any:
        return iter(np.arange(self.n - 1, -1, -1, dtype=np.int32))

    def __len__(self) -> int:
        return self.n


def test_index_dtype_follows_the_sampler_and_no_rows_fail_alike() -> None:
    task = _small_task()
    ds = task.dataset("train")
    got = list(DataLoader(ds, batch_size=16, sampler=_Int32Order(len(ds)),
                          collate_fn=task.collate))
    want = list(DataLoader(RowByRow(ds), batch_size=16, sampler=_Int32Order(len(ds)),
                           collate_fn=default_collate))
    assert got[0]["index"].dtype == torch.int32
    for g, w in zip(got, want, strict=True):
        _assert_same_batch(g, w)
    with pytest.raises(IndexError):
        default_collate([])
    with pytest.raises(IndexError):
        task.collate(ds.__getitems__([]))


def test_concat_workers_and_an_accelerate_prepared_loader() -> None:
    task = _small_task()
    ds = task.dataset("train")
    both = ConcatDataset([ds, task.dataset("dev")])  # no __getitems__: row by row
    for g, w in zip(_batches(both, task.collate, 16, 1),
                    _batches(RowByRow(both), default_collate, 16, 1), strict=True):
        _assert_same_batch(g, w)
    for g, w in zip(_batches(ds, task.collate, 16, 2, num_workers=1),
                    _batches(RowByRow(ds), default_collate, 16, 2), strict=True):
        _assert_same_batch(g, w)
    try:
        acc = Accelerator(cpu=True)
        for split_batches in (False, True):
            acc.dataloader_config.split_batches = split_batches
            got, want = (list(acc.prepare(DataLoader(
                d, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(3),
                collate_fn=c))) for d, c in ((ds, task.collate), (RowByRow(ds), default_collate)))
            assert len(got) == len(want) == 6
            for g, w in zip(got, want, strict=True):
                _assert_same_batch(g, w)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
