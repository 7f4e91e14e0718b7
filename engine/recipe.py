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
    """AdamW / Adam / SGD over the model's parameter groups (default lr: ``cfg.lr``), through
    torch's multi-tensor implementation (``foreach=True``), or its fused kernels with
    ``cfg.fused_optimizer`` (adamw and adam; ``RunConfig.validate`` refuses it for sgd, whose
    fused kernel fails on parameters that get their first gradient late).

    torch takes the multi-tensor implementation by default on CUDA only; on the CPU its default
    is the loop over parameters, one Python-dispatched operation at a time. Both give the same
    bits (parameters and optimizer state; tests/test_engine/test_recipe.py checks it against
    ``foreach=False`` under a changing schedule, with missing gradients), so the choice changes
    no result and no run identity. The fused kernels round differently (1.5e-8 after 200 AdamW
    steps), hence an option that the run identity records. Measured on the synthetic task's
    MLP on 2 CPU threads, an AdamW step: 365-373 us per parameter, 348-349 us multi-tensor,
    114 us fused (BENCHMARKS.md "Training-loop overhead").
    """
    groups, wd = param_groups(model, cfg.lr), cfg.weight_decay
    kernels = {"fused": True} if cfg.fused_optimizer else {"foreach": True}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd,
                               **kernels)
    return {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[cfg.optimizer](
        groups, lr=cfg.lr, weight_decay=wd, eps=cfg.adam_eps, betas=(0.9, cfg.adam_beta2),
        **kernels)


class TabulatedOneCycleLR(torch.optim.lr_scheduler.OneCycleLR):
    """torch's ``OneCycleLR`` whose per-step values are computed once, at construction.

    ``OneCycleLR.step()`` costs ~25 us a step inside a training loop (pure Python: warnings
    checks, a context manager, the phase search and two cosines per group), 1.4% of a step of
    the synthetic task at batch 32 (``benchmarks/loop_overhead.py --breakdown``). Here the
    learning rates and momenta of every step come from ``OneCycleLR.get_lr`` itself, run for
    step 0..total at construction (~7 us a step, once; up to ``max_tabulated_steps``), and
    ``step()`` assigns them: the same floats (tests/test_engine/test_recipe.py compares every
    step with ``OneCycleLR``).
    Everything else is ``OneCycleLR``'s: the first step (its warnings), ``step(epoch)``, a step
    past ``total_steps`` (its error), ``state_dict`` (the table is left out: it follows from
    the constructor's arguments) and ``load_state_dict`` (which therefore keeps the table).
    """

    # 100k steps of two groups: 0.7 s and ~37 MB to build, measured; longer schedules step as
    # torch's does
    max_tabulated_steps = 100_000

    def __init__(self, optimizer: torch.optim.Optimizer, **kwargs: Any) -> None:
        super().__init__(optimizer, **kwargs)
        if self.total_steps > self.max_tabulated_steps:
            return
        groups = optimizer.param_groups
        keys = ("lr", "betas", "momentum")
        saved = [{k: g[k] for k in keys if k in g} for g in groups]
        epoch = self.last_epoch
        flag = getattr(self, "_get_lr_called_within_step", False)
        self._get_lr_called_within_step = True  # what LRScheduler.step sets around get_lr
        # tuples of floats: the garbage collector stops tracking them (a long run's table
        # then adds nothing to its scans); lists it would scan at every full collection
        self._table: list[tuple[tuple[float, ...], tuple[Any, ...]]] = []
        try:
            for step in range(self.total_steps + 1):
                self.last_epoch = step
                lrs = self.get_lr()  # sets the groups' momentum when cycle_momentum
                self._table.append((tuple(float(lr) for lr in lrs),
                                    tuple(g.get("betas", g.get("momentum")) for g in groups)))
        finally:
            self.last_epoch, self._get_lr_called_within_step = epoch, flag
            for g, values in zip(groups, saved, strict=True):
                g.update(values)

    def step(self, epoch: int | None = None) -> None:
        """``OneCycleLR.step()`` with the values looked up (see the class docstring)."""
        nxt = self.last_epoch + 1
        table = self.__dict__.get("_table")  # None in the step LRScheduler.__init__ takes
        if epoch is not None or table is None or self._step_count == 1 or nxt >= len(table):
            super().step(epoch)
            return
        self._step_count += 1
        self.last_epoch = nxt
        lrs, momenta = table[nxt]
        for group, lr, momentum in zip(self.optimizer.param_groups, lrs, momenta, strict=True):
            group["lr"] = lr
            if self.cycle_momentum:
                group["betas" if self.use_beta1 else "momentum"] = momentum
        self._last_lr = list(lrs)

    def state_dict(self) -> dict[str, Any]:
        """``OneCycleLR.state_dict()`` without the table."""
        state = super().state_dict()
        state.pop("_table", None)
        return state


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
        return TabulatedOneCycleLR(
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


def for_device(model: torch.nn.Module, channels_last: str,
               device: torch.device) -> torch.nn.Module:
    """``model`` in the memory layout ``channels_last`` (``--channels_last``: auto, yes, no)
    asks for on ``device``: channels-last for yes, and for auto on CUDA. On CUDA it also turns
    on cuDNN's algorithm search, as timm's train.py does (each shape's convolution algorithms
    are timed once)."""
    if channels_last == "yes" or (channels_last == "auto" and device.type == "cuda"):
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return model


def prepare(cell: Cell, acc: Accelerator) -> Prepared:
    """Seed, build the model (+ the task's initialization), loaders, optimizer and schedule."""
    cfg, task = cell.cfg, cell.task
    set_seed(int(cfg.seed))
    model = create_model(cell.model_name, task.num_labels, **cell.model_kwargs)
    task.prepare_model(model)
    # before accelerate's prepare: DDP's gradient buckets follow the parameters' strides
    model = for_device(model, cfg.channels_last, acc.device)
    if cfg.compile in ("model", "all"):
        model.compile()  # in place: parameter names, hence checkpoints, stay those of eager
    n_params = sum(p.numel() for p in model.parameters())
    cuda = acc.device.type == "cuda"
    # pinned batches: the host-to-device copy runs asynchronously (accelerate's non_blocking)
    loaders = [DataLoader(task.dataset(s), batch_size=cfg.eval_batch_size if s != "train" else
                          cfg.batch_size, shuffle=s == "train", collate_fn=task.collate,
                          num_workers=cfg.num_workers, pin_memory=cuda)
               for s in ("train", "dev", "test")]
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(cfg, opt, cfg.epochs * math.ceil(len(loaders[0]) / cfg.grad_accum))
    # batches are collated on the CPU: on a CPU run, accelerate's per-batch send_to_device is a
    # walk over the batch that moves nothing (~15 us a step, benchmarks/loop_overhead.py)
    place = None if acc.device.type != "cpu" else False  # None: accelerate's default
    model, opt, sched, *dls = acc.prepare(model, opt, sched, *loaders,
                                          device_placement=[None] * 3 + [place] * 3)
    ema = timm_ema(acc.unwrap_model(model), cfg.ema_decay) if cfg.ema_decay else None
    extras = {"loss": cell.loss_fn, **({"ema": ema} if ema else {})}
    return Prepared(model, opt, sched, *dls, ema, extras, len(loaders[2].dataset), n_params)
