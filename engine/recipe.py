"""The training recipe: model, data loaders, optimizer, learning-rate schedule, weight EMA."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from engine.plan import Cell
from mllb_core.runconfig import RunConfig
from models import create_model


def param_groups(model: torch.nn.Module, lr: float) -> list[dict[str, Any]]:
    """The model's own parameter groups (``model.param_groups(lr)``, e.g. a pretrained encoder at
    a lower learning rate than its head), or one group; every parameter exactly once."""
    declare = getattr(model, "param_groups", None)
    if declare is None:
        return [{"params": list(model.parameters())}]
    groups = declare(lr)
    seen = [id(p) for g in groups for p in g["params"]]
    if sorted(seen) != sorted(id(p) for p in model.parameters()):
        raise ValueError(f"{type(model).__name__}.param_groups must list every parameter of the "
                         f"model exactly once ({len(seen)} listed, "
                         f"{sum(1 for _ in model.parameters())} in the model)")
    return groups


def make_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD over the model's parameter groups (default lr: ``cfg.lr``)."""
    groups, wd = param_groups(model, cfg.lr), cfg.weight_decay
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)
    return {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[cfg.optimizer](
        groups, lr=cfg.lr, weight_decay=wd, eps=cfg.adam_eps, betas=(0.9, cfg.adam_beta2))


def make_scheduler(cfg: RunConfig, opt: torch.optim.Optimizer, total: int
                   ) -> torch.optim.lr_scheduler.LRScheduler:
    """OneCycle, warm-up then cosine / linear decay / constant, or StepLR, over ``total`` steps.

    Every schedule scales each parameter group's own learning rate. ``step`` multiplies it by
    ``step_gamma`` every ``step_size`` epochs, as torch's StepLR stepped once per epoch (no
    warm-up): the loop steps schedules per optimizer step, so the epoch is ``step // per_epoch``.
    """
    warm = max(1, int(cfg.warmup_ratio * total))
    if cfg.scheduler == "onecycle":
        pct = max(cfg.warmup_ratio, 1e-3)
        if math.isclose(pct * total, 1.0):  # OneCycleLR divides by pct_start * total - 1
            pct = min(1.5 / total, 0.75)
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total, pct_start=pct)
    if cfg.scheduler == "step":
        per_epoch = max(1, total // cfg.epochs)
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: cfg.step_gamma ** ((s // per_epoch) // cfg.step_size))
    shape = {"cosine": lambda f: 0.5 * (1 + math.cos(math.pi * f)),
             "linear_warmup": lambda f: 1 - f, "constant": lambda f: 1.0}[cfg.scheduler]
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else shape((s - warm) / max(1, total - warm)))


def timm_ema(model: torch.nn.Module, decay: float) -> torch.nn.Module:
    """timm's ModelEmaV3 (imported here: timm is needed only when EMA is on)."""
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=decay)


class Prepared(NamedTuple):
    """The accelerate-prepared objects of one cell, plus what the results record."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    train_dl: DataLoader
    dev_dl: DataLoader
    test_dl: DataLoader
    ema: torch.nn.Module | None
    extras: dict[str, Any]  # stateful objects saved beside accelerate's state (loss, EMA)
    num_test_examples: int  # examples, not output rows
    num_parameters: int


def prepare(cell: Cell, acc: Accelerator) -> Prepared:
    """Seed, build the model (+ the task's initialization), loaders, optimizer and schedule."""
    cfg, task = cell.cfg, cell.task
    set_seed(int(cfg.seed))
    model = create_model(cell.model_name, task.num_labels, **cell.model_kwargs)
    task.prepare_model(model)
    if cfg.compile in ("model", "all"):
        model.compile()  # in place: parameter names, hence checkpoints, stay those of eager
    n_params = sum(p.numel() for p in model.parameters())
    loaders = [DataLoader(task.dataset(s), batch_size=cfg.eval_batch_size if s != "train" else
                          cfg.batch_size, shuffle=s == "train", collate_fn=task.collate,
                          num_workers=cfg.num_workers) for s in ("train", "dev", "test")]
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(cfg, opt, cfg.epochs * math.ceil(len(loaders[0]) / cfg.grad_accum))
    model, opt, sched, *dls = acc.prepare(model, opt, sched, *loaders)
    ema = timm_ema(acc.unwrap_model(model), cfg.ema_decay) if cfg.ema_decay else None
    extras = {"loss": cell.loss_fn, **({"ema": ema} if ema else {})}
    return Prepared(model, opt, sched, *dls, ema, extras, len(loaders[2].dataset), n_params)
