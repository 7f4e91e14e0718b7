"""Run identity: everything that can change a run's numbers, and its stable hash, the ``run_id``.

The identity is computed from the sections of a results object (``task``, ``model``, ``loss``,
``config``, ``env``, ``seed`` and ``extra.task_kwargs``), so the engine (before training, from the
resolved objects) and every reader (from a results file, including files written before run ids
existed) derive it with this one function. Two runs share a ``run_id`` exactly when they share
every key below:

- ``task.name``, ``task.version``, ``task.dataset``, ``task.data_fingerprint``, ``task.kwargs``
  (the resolved task options, without path options -- ``data_dir`` and ``*_file`` / ``*_dir`` --
  because the data fingerprint identifies the data itself, wherever it lies);
- ``model.name``, ``model.kwargs`` (resolved, the head included), ``model.version`` (the model
  module's ``MODEL_VERSION``, bumped when a changed default changes the numbers; left out while
  it is "1");
- ``loss.name``, ``loss.kwargs`` (fully resolved hyper-parameters; a preset's name is a label, its
  values are what count);
- ``train.*``: optimizer, lr, weight decay, momentum (SGD only), scheduler, warm-up ratio, epochs,
  global and per-device batch size, gradient accumulation, clipping, EMA decay, early-stopping
  patience, mixed precision, world size, data-loader workers (augmentation RNG streams depend on
  them); where they act, the Adam epsilon and beta2 (when not 1e-8, 0.999), the step
  schedule's size and factor and the compile mode;
- ``seed``.

Not part of it: output paths, ``resume``, ``stop_after_epoch``, logging, ``eval_batch_size``
(evaluation runs in eval mode, batch-independent up to float rounding), the code version (stored
beside the run id as ``env.git_commit``: a code change that changes numbers bumps a task version).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

# config fields of the training recipe that can change the numbers
TRAIN_KEYS = ("optimizer", "lr", "weight_decay", "scheduler", "warmup_ratio", "epochs",
              "batch_size", "grad_accum", "grad_clip", "ema_decay", "early_stopping_patience",
              "num_workers")


def _is_path_option(key: str) -> bool:
    return key == "data_dir" or key.endswith("_file") or key.endswith("_dir")


def run_identity(result: Mapping[str, Any]) -> dict[str, Any]:
    """The flat identity dict (dotted keys -> JSON values) of a results object (see module doc).

    ``result`` needs ``task`` (name, version, dataset, data_fingerprint), ``model`` (name,
    kwargs), ``loss`` (name, kwargs), ``config`` (the resolved run config), ``env`` (world_size,
    mixed_precision), ``seed`` and ``extra.task_kwargs``; a missing section is a KeyError naming it.
    """
    task, model, loss = result["task"], result["model"], result["loss"]
    cfg, env = result["config"], result["env"]
    task_kwargs = (result.get("extra") or {}).get("task_kwargs") or {}
    world = int(env["world_size"])
    ident: dict[str, Any] = {
        "task.name": task["name"], "task.version": str(task["version"]),
        "task.dataset": task["dataset"], "task.data_fingerprint": task["data_fingerprint"],
        "task.kwargs": {k: v for k, v in sorted(task_kwargs.items()) if not _is_path_option(k)},
        "model.name": model["name"], "model.kwargs": dict(sorted(model["kwargs"].items())),
        # a model family bumps MODEL_VERSION when a default changes the numbers; "1" (or none,
        # in files written before versions existed) is left out, so their run ids stay stable
        "loss.name": loss["name"], "loss.kwargs": dict(sorted(loss["kwargs"].items())),
    }
    if model.get("version") not in (None, "1"):
        ident["model.version"] = str(model["version"])
    for key in TRAIN_KEYS:
        ident[f"train.{key}"] = cfg[key]
    if cfg["optimizer"] == "sgd":
        ident["train.momentum"] = cfg["momentum"]
    # options added later count only where they act and differ from the old behaviour, so the
    # run ids of earlier results stay what they were
    if cfg["optimizer"] != "sgd" and cfg.get("adam_eps", 1e-8) != 1e-8:
        ident["train.adam_eps"] = cfg["adam_eps"]
    if cfg["optimizer"] != "sgd" and cfg.get("adam_beta2", 0.999) != 0.999:
        ident["train.adam_beta2"] = cfg["adam_beta2"]
    if cfg.get("fused_optimizer", False):  # other last bits than the default implementation
        ident["train.fused_optimizer"] = True
    if cfg["scheduler"] == "step":
        ident["train.step_size"], ident["train.step_gamma"] = cfg["step_size"], cfg["step_gamma"]
    ident["train.per_device_batch_size"] = int(cfg["batch_size"]) // max(world, 1)
    ident["train.mixed_precision"] = env["mixed_precision"]
    ident["train.world_size"] = world
    if cfg.get("compile", "none") not in ("none", None):
        ident["train.compile"] = cfg["compile"]
    ident["seed"] = int(result["seed"])
    return ident


def run_id(identity: Mapping[str, Any]) -> str:
    """16 hex digits of sha256 over the canonical JSON of ``identity`` (sorted keys)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differing_keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Sorted identity keys whose values differ (or exist on one side only), nested kwargs
    expanded one level (``loss.kwargs.gamma_neg``) so a message names the exact option."""
    out: list[str] = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if va == vb:
            continue
        if isinstance(va, dict) and isinstance(vb, dict):
            out += [f"{key}.{k}" for k in sorted(set(va) | set(vb))
                    if va.get(k, "<absent>") != vb.get(k, "<absent>")]
        else:
            out.append(key)
    return out


def describe_difference(a: Mapping[str, Any], b: Mapping[str, Any], limit: int = 8) -> str:
    """``key: old -> new`` for each differing key (at most ``limit``), for error messages."""
    parts = []
    for key in differing_keys(a, b)[:limit]:
        head, _, sub = key.partition(".kwargs.")
        va = a.get(f"{head}.kwargs", {}).get(sub, "<absent>") if sub else a.get(key, "<absent>")
        vb = b.get(f"{head}.kwargs", {}).get(sub, "<absent>") if sub else b.get(key, "<absent>")
        parts.append(f"{key}: {_short(va)} -> {_short(vb)}")
    more = len(differing_keys(a, b)) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _short(value: Any) -> str:
    # a data fingerprint is 71 characters; its first 12 hex digits tell two apart
    text = repr(value)
    return text if len(text) <= 40 else text[:24] + "...'"
