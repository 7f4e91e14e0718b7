"""leaderboard/schema.py: validation messages, atomic writing, reading and walking results."""

from __future__ import annotations

import copy
import errno
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from leaderboard.schema import (
    SCHEMA_VERSION,
    Result,
    SchemaError,
    iter_results,
    load_result,
    read_results,
    validate,
    write_results,
)
from mllb_core import io as atomic_io
from mllb_core.identity import run_id, run_identity
from mllb_core.io import write_json_atomic


def valid_results() -> dict[str, Any]:
    """A realistic results object: APL on Re-DocRED, selected on dev Ign F1 at epoch 3."""
    return {
        "schema_version": SCHEMA_VERSION,
        "task": {
            "name": "docred",
            "version": "1",
            "dataset": "re-docred",
            "split": "test",
            "num_labels": 96,
            "num_examples": 500,
            "data_fingerprint": "sha256:" + "3f2a9c" * 10 + "0b1d",
        },
        "model": {
            "name": "bert_re",
            "kwargs": {"encoder": "all-MiniLM-L6-v2", "max_length": 512, "block_size": 64},
            "num_parameters": 22713216,
        },
        "loss": {
            "name": "apl",
            "preset": "apl_docred",
            "kwargs": {"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05, "alpha1": 0.0,
                       "alpha2": 1.75, "reduction": "mean"},
        },
        "seed": 0,
        "metrics": {"f1": 0.6134, "ign_f1": 0.5921, "intra_f1": 0.6502, "inter_f1": 0.5217},
        "higher_is_better": {"f1": True, "ign_f1": True, "intra_f1": True, "inter_f1": True},
        "selection": {"metric": "ign_f1", "split": "dev", "epoch": 3},
        "threshold": {"policy": "dev_tuned", "value": 0.42},
        "history": [
            {"epoch": 1, "train_loss": 0.0912, "lr": 5e-5, "dev": {"f1": 0.41, "ign_f1": 0.39}},
            {"epoch": 2, "train_loss": 0.0541, "lr": 3e-5, "dev": {"f1": 0.55, "ign_f1": 0.53},
             "dev_ema": {"f1": 0.56, "ign_f1": 0.54}},
            {"epoch": 3, "train_loss": 0.0433, "lr": 1e-5, "dev": {"f1": 0.60, "ign_f1": 0.58}},
        ],
        "config": {
            "task": "docred", "loss": "apl", "preset": "apl_docred", "epochs": 3,
            "batch_size": 4, "optimizer": {"name": "adamw", "lr": 5e-5, "betas": [0.9, 0.999]},
            "ema": None,
        },
        "env": {
            "git_commit": "58a6c8e1f0c2d9b7a4e3f5061728394a5b6c7d8e",
            "git_dirty": False,
            "torch": "2.5.1",
            "accelerate": "1.1.0",
            "device": "cuda:NVIDIA H100 80GB HBM3",
            "world_size": 1,
            "mixed_precision": "bf16",
            "cpu_capability": "AVX512",
        },
        "timing": {"train_s": 812.4, "eval_s": 9.1, "examples_per_s": 310.0},
        "created_at": "2026-11-22T03:40:00+00:00",
        "extra": {"weights": "ema", "dev_examples": 500, "train_examples": 3053},
        "scores_file": "docred/apl/seed0.scores.npz",
    }


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A mutation setting a dotted/indexed path, e.g. 'history[1].train_loss'."""
    def mutate(obj: dict) -> None:
        *parents, last = _split(path)
        for key in parents:
            obj = obj[key]
        obj[last] = value
    return mutate


def _delete(path: str) -> Callable[[dict], None]:
    def mutate(obj: dict) -> None:
        *parents, last = _split(path)
        for key in parents:
            obj = obj[key]
        del obj[last]
    return mutate


def _split(path: str) -> list[str | int]:
    keys: list[str | int] = []
    for part in path.split("."):
        name, *indices = part.replace("]", "").split("[")
        keys.append(name)
        keys.extend(int(i) for i in indices)
    return keys


def _validate_mutated(mutate: Callable[[dict], None]) -> SchemaError:
    obj = valid_results()
    mutate(obj)
    with pytest.raises(SchemaError) as info:
        validate(obj, source="runs/docred/apl/seed0.json")
    return info.value


# ----------------------------------------------------------------------------- validate


def test_valid_example_passes_and_is_not_modified() -> None:
    obj = valid_results()
    before = copy.deepcopy(obj)
    validate(obj)
    assert obj == before


def test_optional_keys_may_be_absent() -> None:
    obj = valid_results()
    del obj["extra"], obj["scores_file"]
    obj["history"] = []  # no dev evaluation: selection.metric is then only a non-empty string
    validate(obj)


MUTATIONS = [
    ("missing task.name", _delete("task.name"), ["task.name", "missing"]),
    ("num_examples 0", _set("task.num_examples", 0), ["task.num_examples", ">= 1"]),
    ("num_examples bool", _set("task.num_examples", True),
     ["task.num_examples", "a boolean is not a number"]),
    ("bad fingerprint", _set("task.data_fingerprint", "sha256:abc"),
     ["task.data_fingerprint", "64 lowercase hex"]),
    ("uppercase fingerprint", _set("task.data_fingerprint", "sha256:" + "AB" * 32),
     ["task.data_fingerprint"]),
    ("metric 1.7", _set("metrics.f1", 1.7),
     ["metrics.f1 = 1.7 is outside [0, 1]; metrics are fractions", "extra.unbounded_metrics"]),
    ("metric NaN", _set("metrics.ign_f1", math.nan), ["metrics.ign_f1", "finite"]),
    ("metric bool", _set("metrics.ign_f1", False), ["metrics.ign_f1"]),
    ("empty metrics", _set("metrics", {}), ["metrics", "non-empty"]),
    ("higher_is_better mismatch", _set("higher_is_better", {"f1": True, "ign_f1": True,
                                                            "intra_f1": True, "recall": True}),
     ["higher_is_better", "missing 'inter_f1'", "not in metrics 'recall'"]),
    ("higher_is_better not bool", _set("higher_is_better.f1", 1), ["higher_is_better.f1"]),
    ("selection on test", _set("selection.split", "test"),
     ["selection.split must be 'dev' (model selection never uses the evaluation split), "
      "got 'test'"]),
    ("selection metric not logged", _set("selection.metric", "map"),
     ["selection.metric", "history[0].dev"]),
    ("selection epoch not in history", _set("selection.epoch", 7), ["selection.epoch"]),
    ("selection epoch negative", _set("selection.epoch", -1), ["selection.epoch", ">= 0"]),
    ("threshold policy unknown", _set("threshold.policy", "oracle"),
     ["threshold.policy", "'per_class_dev_tuned'"]),
    ("threshold value string", _set("threshold.value", "0.5"), ["threshold.value"]),
    ("threshold list length", _set("threshold.value", [0.5, 0.4]),
     ["threshold.value", "task.num_labels is 96"]),
    ("history train_loss inf", _set("history[1].train_loss", math.inf),
     ["history[1].train_loss", "NaN and infinity are not allowed"]),
    ("history dev nan", _set("history[2].dev.f1", math.nan), ["history[2].dev.f1"]),
    ("history epoch 0", _set("history[0].epoch", 0), ["history[0].epoch", ">= 1"]),
    ("history epochs not increasing", _set("history[1].epoch", 3),
     ["history[2].epoch", "strictly increasing"]),
    ("history extra key not numeric", _set("history[0].lr", "5e-5"), ["history[0].lr"]),
    ("mixed precision fp12", _set("env.mixed_precision", "fp12"),
     ["env.mixed_precision", "'fp8'"]),
    ("world size 0", _set("env.world_size", 0), ["env.world_size"]),
    ("git_dirty string", _set("env.git_dirty", "no"), ["env.git_dirty", "boolean"]),
    ("negative train time", _set("timing.train_s", -1.0), ["timing.train_s", ">= 0"]),
    ("created_at naive", _set("created_at", "2026-11-22T03:40:00"),
     ["created_at", "timezone"]),
    ("created_at garbage", _set("created_at", "yesterday"), ["created_at"]),
    ("unknown top-level key", _set("ema", True), ["ema: unknown top-level key", "'extra'"]),
    ("unknown section key", _set("env.python", "3.11"), ["env.python: unknown key"]),
    ("missing top-level key", _delete("timing"), ["timing: missing"]),
    ("seed float", _set("seed", 0.0), ["seed", "an integer"]),
    ("preset empty", _set("loss.preset", ""), ["loss.preset"]),
    ("kwargs list", _set("loss.kwargs", []), ["loss.kwargs", "an object"]),
    ("NaN in config", _set("config.optimizer.lr", math.nan), ["config.optimizer.lr"]),
    ("path in extra", _set("extra.out", Path("runs")), ["extra.out", "not JSON data"]),
    ("int key in kwargs", _set("model.kwargs", {1: "a"}), ["model.kwargs", "not a string"]),
    ("absolute scores_file", _set("scores_file", "/tmp/s.npz"), ["scores_file"]),
    ("escaping scores_file", _set("scores_file", "../s.npz"), ["scores_file"]),
    ("scores_file not npz", _set("scores_file", "s.npy"), ["scores_file"]),
    ("unbounded_metrics not a list", _set("extra.unbounded_metrics", "loss"),
     ["extra.unbounded_metrics"]),
    ("schema_version 2.0", _set("schema_version", "2.0"),
     ["unsupported schema_version '2.0' (this reader understands 1.x)"]),
    ("schema_version number", _set("schema_version", 1.0), ["schema_version", "MAJOR.MINOR"]),
]


@pytest.mark.parametrize(("mutate", "fragments"), [m[1:] for m in MUTATIONS],
                         ids=[m[0] for m in MUTATIONS])
def test_mutation_raises_naming_source_and_field(mutate: Callable[[dict], None],
                                                  fragments: list[str]) -> None:
    error = _validate_mutated(mutate)
    message = str(error)
    assert isinstance(error, ValueError)
    assert message.startswith("runs/docred/apl/seed0.json: ")
    assert error.source == "runs/docred/apl/seed0.json"
    for fragment in fragments:
        assert fragment in message
    # Exactly one problem was introduced, so exactly one is reported.
    assert len(error.errors) == 1, error.errors


def test_unsupported_major_is_reported_alone() -> None:
    obj = valid_results()
    obj["schema_version"] = "2.0"
    obj["task"] = "anything: a 2.x file follows another schema"
    with pytest.raises(SchemaError) as info:
        validate(obj, source="r.json")
    assert str(info.value) == (
        "r.json: unsupported schema_version '2.0' (this reader understands 1.x)")


def test_all_problems_are_listed_together() -> None:
    obj = valid_results()
    obj["task"]["num_labels"] = 0
    obj["metrics"]["f1"] = 61.3
    obj["env"]["world_size"] = "1"
    with pytest.raises(SchemaError) as info:
        validate(obj, source="r.json")
    assert len(info.value.errors) == 3
    message = str(info.value)
    assert message.startswith("r.json: 3 schema errors:")
    for path in ("task.num_labels", "metrics.f1", "env.world_size"):
        assert path in message


def test_not_an_object() -> None:
    with pytest.raises(SchemaError, match=r"\(top level\): expected a JSON object, got list"):
        validate([valid_results()], source="r.json")


def test_unbounded_metrics_exempt_from_fraction_rule() -> None:
    obj = valid_results()
    obj["metrics"]["dev_loss"] = 3.25
    obj["metrics"]["num_predictions"] = 1204
    obj["higher_is_better"]["dev_loss"] = False
    obj["higher_is_better"]["num_predictions"] = True
    with pytest.raises(SchemaError, match=r"metrics\.dev_loss = 3\.25"):
        validate(obj)
    obj["extra"]["unbounded_metrics"] = ["dev_loss", "num_predictions"]
    validate(obj)


def test_accepted_variants() -> None:
    obj = valid_results()
    obj["schema_version"] = "1.0"
    obj["metrics"]["f1"] = 1  # an int is a number; the bounds are inclusive
    obj["loss"]["preset"] = None
    obj["threshold"] = {"policy": "per_class_dev_tuned", "value": [0.5] * 95 + [1]}
    obj["selection"]["epoch"] = 0
    obj["env"]["git_commit"] = "unknown"
    obj["created_at"] = "2026-11-22T05:40:00.123456+02:00"
    obj["config"]["betas"] = (0.9, 0.999)  # a tuple is written as a list
    validate(obj)
    obj["threshold"] = {"policy": "loss_decide", "value": None}
    obj["created_at"] = "2026-11-22T03:40:00Z"
    validate(obj)


def test_newer_minor_may_add_keys() -> None:
    obj = valid_results()
    obj["schema_version"] = "1.7"
    obj["carbon_kg"] = 0.3
    obj["env"]["cuda"] = "12.4"
    validate(obj)
    # Known fields are still checked.
    obj["task"]["num_labels"] = 0
    with pytest.raises(SchemaError, match=r"task\.num_labels"):
        validate(obj)


def test_circular_free_form_data() -> None:
    obj = valid_results()
    obj["config"]["self"] = obj["config"]
    with pytest.raises(SchemaError, match=r"config\.self: circular reference"):
        validate(obj)


# ----------------------------------------------------------------------------- write and read


def test_round_trip(tmp_path: Path) -> None:
    obj = valid_results()
    target = tmp_path / "runs" / "docred" / "seed0.json"  # parents are created
    assert write_results(target, obj) == target
    assert read_results(target) == obj
    assert read_results(str(target)) == obj


def test_output_is_canonical(tmp_path: Path) -> None:
    first = write_results(tmp_path / "a.json", valid_results())
    reordered = dict(reversed(list(valid_results().items())))
    second = write_results(tmp_path / "b.json", reordered)
    data = first.read_bytes()
    assert data == second.read_bytes()
    assert data.endswith(b"}\n") and not data.endswith(b"\n\n")
    assert data == (json.dumps(valid_results(), sort_keys=True, indent=2, ensure_ascii=False)
                    + "\n").encode("utf-8")
    # Written twice to the same place: same bytes, and no temp file left over.
    write_results(first, valid_results())
    assert first.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]


def test_non_ascii_written_as_utf8(tmp_path: Path) -> None:
    target = write_json_atomic(tmp_path / "c.config.json", {"note": "Zürich → 東京"})
    assert "Zürich → 東京".encode() in target.read_bytes()


def test_written_file_is_not_private(tmp_path: Path) -> None:
    # NamedTemporaryFile makes 0600 files; the results file gets the usual umask mode instead.
    target = write_results(tmp_path / "r.json", valid_results())
    assert stat.S_IMODE(target.stat().st_mode) == atomic_io._FILE_MODE


def test_write_json_atomic_refuses_nan_before_touching_disk(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.json"
    with pytest.raises(ValueError, match="Out of range float"):
        write_json_atomic(target, {"lr": math.nan})
    assert not (tmp_path / "sub").exists()


def test_invalid_object_is_not_written(tmp_path: Path) -> None:
    obj = valid_results()
    obj["selection"]["split"] = "test"
    target = tmp_path / "sub" / "r.json"
    with pytest.raises(SchemaError, match=r"selection\.split"):
        write_results(target, obj)
    assert not target.exists()
    assert not (tmp_path / "sub").exists()


def test_writer_writes_only_its_own_version(tmp_path: Path) -> None:
    obj = valid_results()
    obj["schema_version"] = "1.0"
    validate(obj)  # a reader accepts it ...
    with pytest.raises(SchemaError, match=f"this writer writes '{SCHEMA_VERSION}'"):
        write_results(tmp_path / "r.json", obj)  # ... but this writer does not produce it
    assert list(tmp_path.iterdir()) == []


class _BoomError(Exception):
    pass


def _fail_mid_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """The temp file's write puts half the text on disk, then the disk is 'full'."""
    real = tempfile.NamedTemporaryFile

    def named_temporary_file(*args: Any, **kwargs: Any) -> Any:
        tmp = real(*args, **kwargs)
        real_write = tmp.file.write

        def write(text: str) -> int:
            real_write(text[: len(text) // 2])
            tmp.file.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        tmp.write = write
        return tmp

    monkeypatch.setattr(atomic_io.tempfile, "NamedTemporaryFile", named_temporary_file)


def _fail_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")
    monkeypatch.setattr(atomic_io.os, "fsync", fsync)


def _fail_replace(monkeypatch: pytest.MonkeyPatch) -> None:
    def replace(src: Any, dst: Any) -> None:
        raise _BoomError("replace failed")
    monkeypatch.setattr(atomic_io.os, "replace", replace)


def _interrupt_replace(monkeypatch: pytest.MonkeyPatch) -> None:
    def replace(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(atomic_io.os, "replace", replace)


FAILURES = [
    ("write", _fail_mid_write, OSError),
    ("fsync", _fail_fsync, OSError),
    ("replace", _fail_replace, _BoomError),
    ("interrupt", _interrupt_replace, KeyboardInterrupt),
]


@pytest.mark.parametrize("existed", [False, True], ids=["new", "existing"])
@pytest.mark.parametrize(("inject", "exc"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES])
def test_failed_write_leaves_no_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      inject: Callable[[pytest.MonkeyPatch], None],
                                      exc: type[BaseException], existed: bool) -> None:
    target = tmp_path / "seed0.json"
    old = b'{"previous": "run"}\n'
    if existed:
        target.write_bytes(old)
    inject(monkeypatch)
    with pytest.raises(exc):
        write_results(target, valid_results())
    monkeypatch.undo()
    if existed:
        assert target.read_bytes() == old
    else:
        assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []
    assert sorted(os.listdir(tmp_path)) == (["seed0.json"] if existed else [])


def test_read_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "schema_version": "1.0",\n  "task": {,\n}\n', encoding="utf-8")
    with pytest.raises(SchemaError) as info:
        read_results(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid JSON at line 3, column")
    assert isinstance(info.value.__cause__, json.JSONDecodeError)


def test_read_validates_and_names_file(tmp_path: Path) -> None:
    obj = valid_results()
    obj["metrics"]["f1"] = 61.3  # a percentage where a fraction belongs
    path = tmp_path / "pct.json"
    path.write_text(json.dumps(obj), encoding="utf-8")
    with pytest.raises(SchemaError, match=r"pct\.json: metrics\.f1 = 61\.3 is outside \[0, 1\]"):
        read_results(path)


def test_read_nan_literal_is_reported_with_its_path(tmp_path: Path) -> None:
    # json.load reads the non-standard NaN literal; the validator then names the field.
    path = tmp_path / "nan.json"
    text = json.dumps(valid_results()).replace('"train_loss": 0.0541', '"train_loss": NaN')
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SchemaError, match=r"history\[1\]\.train_loss"):
        read_results(path)


def test_read_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"note": "Zürich"}'.encode("latin-1"))
    with pytest.raises(SchemaError, match="not UTF-8"):
        read_results(path)


# ----------------------------------------------------------------------------- iter_results


def test_iter_results(tmp_path: Path) -> None:
    good = valid_results()
    write_results(tmp_path / "b" / "seed1.json", good)
    write_results(tmp_path / "a" / "seed0.json", good)
    write_json_atomic(tmp_path / "a" / "seed0.config.json", good["config"])  # resolved config
    (tmp_path / "a" / "seed2.json").write_text("{not json", encoding="utf-8")
    bad = valid_results()
    bad["selection"]["split"] = "test"
    (tmp_path / "c.json").write_text(json.dumps(bad), encoding="utf-8")
    (tmp_path / ".tmp-abc.json").write_text("{", encoding="utf-8")  # a write in progress
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.json").write_text("{", encoding="utf-8")
    (tmp_path / "a" / "scores.npz").write_bytes(b"")
    (tmp_path / "d.json").mkdir()  # a directory named like a results file

    found = list(iter_results(tmp_path))
    paths = [p.relative_to(tmp_path).as_posix() for p, _ in found]
    assert paths == ["a/seed0.json", "a/seed2.json", "b/seed1.json", "c.json"]
    results = dict(found)
    assert results[tmp_path / "a" / "seed0.json"] == good
    assert results[tmp_path / "b" / "seed1.json"] == good
    assert isinstance(results[tmp_path / "a" / "seed2.json"], SchemaError)
    assert "invalid JSON at line 1" in str(results[tmp_path / "a" / "seed2.json"])
    assert isinstance(results[tmp_path / "c.json"], SchemaError)
    assert "selection.split" in str(results[tmp_path / "c.json"])


def test_iter_results_refuses_a_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(iter_results(tmp_path / "nope"))
    (tmp_path / "file.json").write_text("{}", encoding="utf-8")
    with pytest.raises(NotADirectoryError):
        list(iter_results(tmp_path / "file.json"))


# ----------------------------------------------------------------------------- 1.1: typed Result

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "leaderboard" / "synthetic" / (
    "tiny_mlp__bce__seed0.json")


def engine_result() -> dict[str, Any]:
    """A results object as the engine writes it: identity and run_id recorded."""
    obj = json.loads(FIXTURE.read_text(encoding="utf-8"))
    obj["schema_version"] = SCHEMA_VERSION
    obj["identity"] = run_identity(obj)
    obj["run_id"] = run_id(obj["identity"])
    return obj


def test_result_round_trip_and_typed_attributes() -> None:
    obj = valid_results()
    result = Result.from_dict(obj, "r.json")
    assert result.to_dict() == obj
    assert result.task.num_labels == 96 and result.loss.preset == "apl_docred"
    assert result.selection.metric == "ign_f1" and result.threshold.value == 0.42
    assert result.history[1].dev == {"f1": 0.55, "ign_f1": 0.53}
    assert result.history[1].logged == {"lr": 3e-5, "dev_ema": {"f1": 0.56, "ign_f1": 0.54}}
    assert result.env.world_size == 1 and result.timing.train_s == 812.4
    obj["config"]["epochs"] = 99  # the Result is a copy, not a view
    assert result.config["epochs"] == 3
    del obj["extra"], obj["scores_file"]
    obj["config"]["epochs"] = 3
    assert Result.from_dict(obj).to_dict() == obj  # absent optional keys stay absent
    with pytest.raises(SchemaError, match=r"^r\.json: selection\.split must be 'dev'"):
        Result.from_dict({**obj, "selection": {"metric": "f1", "split": "test", "epoch": 3}},
                         "r.json")


def test_write_and_load_a_result(tmp_path: Path) -> None:
    result = Result.from_dict(engine_result())
    path = write_results(tmp_path / "r.json", result)
    assert json.loads(path.read_text(encoding="utf-8")) == engine_result()
    assert load_result(path) == result


def test_identity_recomputed_for_a_1_0_file() -> None:
    obj = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert obj["schema_version"] == "1.0" and "identity" not in obj
    result = Result.from_dict(obj)
    assert result.identity is None and result.run_id is None
    ident = result.full_identity
    # read off the file by hand: the recipe, the loss, and the task options minus paths
    assert ident["train.epochs"] == 2 and ident["train.lr"] == 0.002
    assert ident["loss.name"] == "bce" and ident["loss.kwargs"] == obj["loss"]["kwargs"]
    assert ident["task.kwargs"] == obj["extra"]["task_kwargs"] and ident["seed"] == 0
    assert result.full_run_id == run_id(run_identity(obj))
    assert "seed" not in result.setting and len(result.setting) == len(ident) - 1
    other = copy.deepcopy(obj)
    other["seed"] = 7
    assert Result.from_dict(other).setting_id == result.setting_id
    assert Result.from_dict(other).full_run_id != result.full_run_id


def test_identity_of_an_old_file_missing_recipe_keys() -> None:
    # valid_results()'s config predates several recipe keys; it still gets a (partial) identity
    result = Result.from_dict(valid_results())
    assert result.full_identity["train.lr"] is None
    assert result.full_identity["train.epochs"] == 3


def test_engine_result_with_identity_passes() -> None:
    validate(engine_result())
    assert Result.from_dict(engine_result()).full_identity == engine_result()["identity"]


def _refused(obj: dict[str, Any]) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        validate(obj, source="runs/r.json")
    assert len(info.value.errors) == 1, info.value.errors
    return info.value


def test_hand_edited_section_is_refused() -> None:
    obj = engine_result()
    recorded = obj["run_id"]
    obj["config"]["epochs"] = 10  # the run trained 2 epochs; someone relabels the file
    message = str(_refused(obj))
    derived = run_id(run_identity(obj))
    assert message.startswith("runs/r.json: identity: ")
    assert recorded in message and derived in message and recorded != derived
    assert "train.epochs: 2 -> 10" in message


def test_mislabelled_loss_kwargs_are_named() -> None:
    obj = engine_result()
    obj["loss"]["kwargs"]["reduction"] = "sum"
    assert "loss.kwargs.reduction: 'mean' -> 'sum'" in str(_refused(obj))


def test_edited_run_id_is_refused() -> None:
    obj = engine_result()
    right = obj["run_id"]
    obj["run_id"] = "0123456789abcdef"
    message = str(_refused(obj))
    assert message.startswith("runs/r.json: run_id: ")
    assert "'0123456789abcdef'" in message and repr(right) in message
    assert "the recorded identity matches the sections" in message


def test_run_id_without_identity_is_checked() -> None:
    obj = engine_result()
    del obj["identity"]
    validate(obj)
    obj["seed"] = 1
    message = str(_refused(obj))
    assert repr(run_id(run_identity(obj))) in message and "records no identity" in message


def test_identity_that_cannot_be_recomputed() -> None:
    obj = engine_result()
    del obj["config"]["lr"]
    assert "identity: cannot be recomputed" in str(_refused(obj))


V11_MUTATIONS = [
    ("run_id not hex", _set("run_id", "XYZ"), ["run_id", "16 lowercase hex digits"]),
    ("identity not an object", _set("identity", ["a"]), ["identity", "an object"]),
    ("per_class too short", _set("threshold.per_class", [0.5, 0.4]),
     ["threshold.per_class: 2 per-class thresholds, but task.num_labels is 96"]),
    ("per_class NaN", _set("threshold.per_class", [0.5] * 95 + [math.nan]),
     ["threshold.per_class[95]"]),
    ("per_class not a list", _set("threshold.per_class", 0.5), ["threshold.per_class"]),
    ("threshold unknown key", _set("threshold.classes", 3), ["threshold.classes: unknown key"]),
    ("keep_checkpoints string", _set("config.keep_checkpoints", "yes"),
     ["config.keep_checkpoints", "a boolean"]),
    ("overwrite int", _set("config.overwrite", 1), ["config.overwrite"]),
    ("debug null", _set("config.debug", None), ["config.debug"]),
    ("leaderboard number", _set("config.leaderboard", 1), ["config.leaderboard",
                                                           "a boolean or a string"]),
    # 1.2
    ("cpu_capability empty", _set("env.cpu_capability", " "),
     ["env.cpu_capability: expected a non-empty string"]),
    ("cpu_capability number", _set("env.cpu_capability", 512), ["env.cpu_capability"]),
]


@pytest.mark.parametrize(("mutate", "fragments"), [m[1:] for m in V11_MUTATIONS],
                         ids=[m[0] for m in V11_MUTATIONS])
def test_v11_mutation_raises(mutate: Callable[[dict], None], fragments: list[str]) -> None:
    error = _validate_mutated(mutate)
    assert len(error.errors) == 1, error.errors
    for fragment in fragments:
        assert fragment in str(error)


def test_v11_optional_keys_accepted() -> None:
    obj = valid_results()
    obj["threshold"] = {"policy": "per_class_dev_tuned", "value": 0.5, "per_class": [0.3] * 96}
    obj["config"].update(keep_checkpoints=False, overwrite=True, debug=False, leaderboard=True)
    validate(obj)
    assert Result.from_dict(obj).threshold.per_class == [0.3] * 96
    obj["config"]["leaderboard"] = "LEADERBOARD.md"  # 1.0 files store the path
    obj["threshold"]["per_class"] = None
    validate(obj)
    obj["schema_version"] = "1.0"  # a 1.0 file with the 1.1 keys is read the same way
    validate(obj)


def test_v12_cpu_capability_is_optional() -> None:
    obj = valid_results()
    assert Result.from_dict(obj).env.cpu_capability == "AVX512"
    del obj["env"]["cpu_capability"]  # files written before 1.2
    obj["schema_version"] = "1.1"
    validate(obj)
    assert Result.from_dict(obj).env.cpu_capability is None
    assert "cpu_capability" not in Result.from_dict(obj).to_dict()["env"]


def test_a_loss_declared_threshold_class_rule_is_recorded_whole() -> None:
    good = valid_results()
    good["threshold"] = {"policy": "threshold_class", "value": None, "threshold_index": 0,
                         "top_k": 4}
    validate(good, "atl.json")
    for missing in ("threshold_index", "top_k"):
        bad = json.loads(json.dumps(good))
        del bad["threshold"][missing]
        with pytest.raises(SchemaError, match=f"threshold.{missing}: required by the policy"):
            validate(bad, "atl.json")
    stray = valid_results()
    stray["threshold"]["top_k"] = 4
    with pytest.raises(SchemaError, match=r"threshold\.top_k: only the policy 'threshold_class'"):
        validate(stray, "x.json")
    wide = json.loads(json.dumps(good))
    wide["threshold"]["threshold_index"] = good["task"]["num_labels"]
    with pytest.raises(SchemaError, match="is not a column of the"):
        validate(wide, "atl.json")
