"""What a finished cell writes, the code state it records, and full-disk errors."""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import accelerate
import numpy as np
import torch
from accelerate import Accelerator

from leaderboard.schema import SCHEMA_VERSION, write_results
from mllb_core.errors import UserError
from mllb_core.io import write_json_atomic, write_text_atomic
from mllb_core.provenance import git_state

if TYPE_CHECKING:
    from engine.plan import Cell

REPO = Path(__file__).resolve().parents[1]


def write_outputs(cell: Cell, results: dict[str, Any], index: torch.Tensor, scores: torch.Tensor,
                  targets: torch.Tensor, rule: Any) -> None:
    """Scores (optional), the task's predictions, the config, then the results file last."""
    stem = cell.path.with_suffix("")
    for stale in cell.path.parent.glob(f"{stem.name}.*"):  # outputs of a replaced run
        stale.unlink()
    if cell.cfg.save_scores:
        counts = cell.task.example_counts("test", index, scores, rule)
        if counts is not None:
            # the task's per-example counts of its primary metric (tasks.metrics.COUNTED_METRICS)
            # instead of scores too large to publish; the bootstrap resamples these rows
            np.savez_compressed(f"{stem}.scores.npz", counts=counts,
                                metric=np.array(cell.task.primary_metric))
        else:
            order = index.argsort()
            # targets too, so the leaderboard's paired bootstrap can recompute the metric;
            # float32 because float16 rounding creates ties that move mAP by tenths of a point
            np.savez_compressed(f"{stem}.scores.npz", index=index[order].numpy(),
                                scores=scores[order].numpy().astype(np.float32),
                                targets=targets[order].numpy().astype(np.uint8))
        results["scores_file"] = f"{stem.name}.scores.npz"
    predictions = cell.task.write_predictions("test", index, scores, stem, rule)
    if predictions:
        results["extra"]["predictions_file"] = predictions
    write_json_atomic(f"{stem}.config.json", cell.cfg.to_dict())
    write_results(cell.path, results)


@contextlib.contextmanager
def disk_guard(where: Path) -> Iterator[None]:
    """A full disk while writing under ``where`` becomes one UserError naming the directory."""
    try:
        yield
    except (OSError, RuntimeError) as exc:  # torch.save reports ENOSPC as "enforce fail"
        free = shutil.disk_usage(where if where.exists() else where.parent).free
        if getattr(exc, "errno", None) == errno.ENOSPC or free < 2**20:
            raise UserError(f"no space left on the device of {where} ({free} bytes free) "
                            f"while writing; free space and rerun with --resume") from None
        raise


def results_of(cell: Cell, state: Any, metrics: dict[str, float], rule: Any, prepared: Any,
               eval_s: float) -> dict[str, Any]:
    """The results object of a finished cell (validated by leaderboard.schema when written)."""
    task = cell.task
    out = {**cell.sections, "schema_version": SCHEMA_VERSION, "run_id": cell.run_id,
           "metrics": metrics, "higher_is_better": {k: task.higher_is_better[k] for k in metrics},
           "selection": {"metric": task.primary_metric, "split": "dev",
                         "epoch": state.best_epoch},
           "threshold": rule.to_json(), "history": state.history,
           "timing": {"train_s": state.train_s, "eval_s": eval_s,
                      "examples_per_s": state.examples / max(state.train_s, 1e-9)},
           "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    out["task"] = {**out["task"], "split": "test", "num_labels": task.num_labels,
                   "num_examples": prepared.num_test_examples}  # examples, not output rows
    out["model"] = {**out["model"], "num_parameters": prepared.num_parameters}
    out["extra"] = {**out["extra"], "selected_weights": state.best_source,
                    "epochs_run": state.epoch, "task_info": task.info(),
                    "kernels": state.kernels}  # which of MLLB's kernels computed it
    return out


def environment(acc: Accelerator) -> dict[str, Any]:
    """Versions, device, ATen's CPU capability and git state recorded with every result (the
    code version)."""
    commit, dirty = git_state()
    dev = acc.device
    name = f"cuda:{torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else dev.type
    return {"git_commit": commit, "git_dirty": dirty,
            "torch": torch.__version__, "accelerate": accelerate.__version__, "device": name,
            "world_size": acc.num_processes, "mixed_precision": acc.mixed_precision,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def refresh_leaderboard(output_dir: Path) -> Path:
    """Rebuild ``<output_dir>/LEADERBOARD.md`` (figures beside it) from its results files.

    Only an output directory that IS the repository's ``results/`` refreshes the published
    ``LEADERBOARD.md`` (and ``figures/leaderboard/``): local runs never overwrite it.
    """
    from leaderboard.render import build

    published = output_dir.resolve() == (REPO / "results").resolve()
    md = REPO / "LEADERBOARD.md" if published else output_dir / "LEADERBOARD.md"
    figures = REPO / "figures" / "leaderboard" if published else output_dir / "figures"
    with disk_guard(md.parent):
        write_text_atomic(md, build(output_dir, figures_dir=figures, output=md))
    return md
