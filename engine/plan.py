"""Plan a sweep: build and validate every cell and compute its run identity before training.

A cell is one (task, model, loss, seed) run. Planning builds each distinct task once (the data
fingerprint is part of the identity), each loss (its fully resolved hyper-parameters), checks the
model name and arguments, the output directory and any existing results file: a results file of
the same name but another ``run_id`` stops the sweep here, before anything trains.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from leaderboard.schema import read_results
from losses import create_loss
from mllb_core.checkpoint import Checkpoints
from mllb_core.errors import UserError
from mllb_core.identity import describe_difference, run_id, run_identity
from mllb_core.progress import heartbeat
from mllb_core.runconfig import ConfigError, RunConfig
from models import HEAD_FOR_INPUT_KIND, MODELS, create_model, model_version
from tasks import Task, create_task


@dataclass
class Cell:
    """One planned run: its config, built task and loss, identity and output paths."""

    cfg: RunConfig
    task: Task
    loss_fn: torch.nn.Module
    model_name: str
    model_kwargs: dict[str, Any]
    sections: dict[str, Any]  # the results sections the identity is computed from
    run_id: str
    path: Path  # the results file
    ckpt: Checkpoints
    finished: dict[str, Any] | None = None  # the existing results of the same run_id


def plan(cfgs: list[RunConfig], acc: Accelerator, env: dict[str, Any]) -> list[Cell]:
    """Validate every cell (registries, options, output dir, existing results) before training.

    Raises UserError naming the cell and what is wrong: a typo in the last loss of a sweep or a
    results file of another run is found before the first cell trains.
    """
    tasks: dict[str, tuple[Task, str]] = {}  # one build and one data fingerprint per task
    built: set[str] = set()
    cells = []
    for cfg in cfgs:
        if cfg.batch_size % acc.num_processes or cfg.eval_batch_size % acc.num_processes:
            raise ConfigError(f"--batch_size {cfg.batch_size} and --eval_batch_size "
                              f"{cfg.eval_batch_size} must be multiples of the {acc.num_processes}"
                              f" processes (they are global batches, split over the processes)")
        task_kwargs = {**cfg.task_kwargs, **({"data_dir": cfg.data_dir} if cfg.data_dir else {})}
        key = repr((cfg.task, sorted(task_kwargs.items())))
        if key not in tasks:
            with heartbeat(f"preparing task {cfg.task}", enabled=acc.is_main_process):
                built_task = build_task(cfg.task, task_kwargs)
                tasks[key] = built_task, built_task.data_fingerprint()
        task, fingerprint = tasks[key]
        try:
            loss_fn = create_loss(cfg.loss_name, preset=cfg.loss_preset,
                                  compile=cfg.compile in ("loss", "all"), **cfg.loss_kwargs)
        except (TypeError, ValueError, KeyError) as exc:  # KeyError: an unknown preset
            raise ConfigError(f"--loss {cfg.loss}: {exc.args[0] if exc.args else exc}") from exc
        task.check_declared_rule(loss_fn.decision_rule())
        model_name = cfg.model or task.default_model
        model_kwargs = {**task.model_kwargs(), "head": HEAD_FOR_INPUT_KIND[loss_fn.input_kind],
                        **cfg.model_kwargs}
        check_model(model_name, task.num_labels, model_kwargs, built)
        sections = {
            "task": {"name": task.name, "version": task.version, "dataset": task.dataset_name,
                     "data_fingerprint": fingerprint},
            "model": {"name": model_name, "kwargs": model_kwargs,
                      "version": model_version(model_name)},
            "loss": {"name": loss_fn.name, "preset": loss_fn.preset, "kwargs": loss_fn.hparams},
            "seed": int(cfg.seed), "config": cfg.to_dict(), "env": env,
            "extra": {"task_kwargs": task.kwargs}}
        identity = run_identity(sections)
        # the dataset too: two cells of one task and model on two data sets (a suite's LSAN on
        # Reuters and on GoEmotions) are two files, not one file claimed twice
        stem = f"{model_name}__{safe_name(task.dataset_name)}__{cfg.cell_label()}"
        out = Path(cfg.output_dir)
        cell = Cell(cfg, task, loss_fn, model_name, model_kwargs,
                    {**sections, "identity": identity}, run_id(identity),
                    out / task.name / f"{stem}.json",
                    Checkpoints(out / "checkpoints" / task.name / stem))
        twin = next((c for c in cells if c.path == cell.path), None)
        if twin is not None:  # two cells, one results file: the second would replace the first
            raise UserError(
                f"two cells of this sweep write {cell.path} (run_ids {twin.run_id} and "
                f"{cell.run_id}: {describe_difference(twin.sections['identity'], identity)}); "
                f"give them different models or --output_dir values")
        if cell.path.exists():
            old = read_results(cell.path)
            old_identity = old.get("identity") or run_identity(old)
            if run_id(old_identity) == cell.run_id:
                cell.finished = old
            elif not cfg.overwrite:
                raise UserError(
                    f"{cell.path} holds the results of another run (run_id {run_id(old_identity)}"
                    f", this one {cell.run_id}): {describe_difference(old_identity, identity)}. "
                    f"Use another --output_dir, or --overwrite to replace them")
        check_writable(cell.path.parent)
        cells.append(cell)
    return cells


def safe_name(text: str) -> str:
    """``text`` with every character outside ``[A-Za-z0-9._-]`` as ``-`` (a file-name part)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", text)


def build_task(name: str, kwargs: dict[str, Any]) -> Task:
    """``create_task`` with the task's own option and data errors as one UserError.

    A task refuses a bad option with ValueError/TypeError and missing data with OSError (its
    message names the option or path); a split without a single row is refused here.
    """
    try:
        task = create_task(name, **kwargs)
    except UserError:
        raise
    except (TypeError, ValueError, OSError) as exc:
        text = str(exc) if str(exc).startswith(f"task {name!r}") else f"task {name!r}: {exc}"
        raise UserError(f"{text} (the --task.<arg> options)") from exc
    for split in ("train", "dev", "test"):
        if task.num_rows(split) == 0:
            raise UserError(f"task {name!r} ({task.dataset_name}): the {split} split has no "
                            f"examples; training and selection need all three splits")
    return task


def check_model(name: str, num_labels: int, kwargs: dict[str, Any], built: set[str]) -> None:
    """Build the model once per distinct (name, arguments) of a sweep, on the CPU, and drop it.

    The only complete check of its arguments: factories pass ``**kwargs`` through, so a typo
    would otherwise surface when that cell starts training, after the cells before it.
    """
    key = repr((name, sorted(kwargs.items())))
    if key in built:
        return
    MODELS.get(name)  # an unknown name: RegistryError with a suggestion
    try:
        create_model(name, num_labels, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{exc} (the --model.<arg> options)") from exc
    except ImportError as exc:  # an optional extra the model's weights need (its message says)
        raise UserError(f"model {name!r}: {exc}") from exc
    built.add(key)


def check_writable(directory: Path) -> None:
    """Create ``directory`` and a file in it now, not after the first epoch."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".mllb-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"output directory {directory} is not writable: {exc.strerror}") from None



