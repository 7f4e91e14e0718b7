"""Train any registered model with any registered loss on any registered task; write results JSON.

    accelerate launch run_task.py                                   # the synthetic benchmark
    accelerate launch run_task.py --loss asl --loss.gamma_neg 2 --seed 1
    accelerate launch run_task.py --loss bce,asl@asl_coco --seed 0,1,2 --print_commands
    python run_task.py --help                                       # every option

Read top to bottom: ``plan`` validates every cell of the sweep and computes its run identity
before anything trains; ``train`` is the loop (dev-only model selection, kill-safe checkpoints,
the test split evaluated once); ``main`` runs the plan; ``cli`` turns user errors into one line
and exit code 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import accelerate.optimizer
import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedType
from accelerate.utils import gather_object
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from engine.outputs import disk_guard, environment, refresh_leaderboard, results_of, write_outputs
from engine.plan import Cell, plan
from engine.recipe import prepare
from mllb_core import served
from mllb_core.errors import UserError
from mllb_core.inductor_cache import separate_inductor_cache
from mllb_core.runconfig import ConfigError, HelpRequested, cell_argv, debug_requested
from mllb_core.suite import check_one_launch, parse_sweeps
from models import aux_loss_modules, auxiliary_loss, frozen_parameters
from tasks import Task

# Measured (benchmarks/loop_overhead.py): AcceleratedOptimizer.step asks is_lomo_available(), an
# import-system lookup, twice per step (~9% of a small model's step); the answer cannot change.
accelerate.optimizer.is_lomo_available = functools.lru_cache(maxsize=1)(
    accelerate.optimizer.is_lomo_available)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the last complete checkpoint is kept."""


@dataclass
class TrainerState:
    """What the loop carries from epoch to epoch (saved in every checkpoint's marker)."""

    epoch: int = 0
    best: float | None = None
    best_epoch: int = 0
    best_source: str = "raw"  # "raw" or "ema": which weights won on dev
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_s: float = 0.0
    eval_s: float = 0.0
    examples: int = 0
    kernels: list[str] = field(default_factory=list)  # MLLB's kernels so far (mllb_core/served)


@torch.no_grad()
def predict(acc: Accelerator, task: Task, model: torch.nn.Module, loss_fn: torch.nn.Module,
            loader: DataLoader, desc: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gathered (row ids [R], probabilities [R, C], targets [R, C]) of a split, each row once.

    One path for every task: rows are padded across ranks (id -1) and gathered, then the padding
    and the examples the distributed sampler repeated are dropped by id.
    """
    model.eval()
    parts: list[list[torch.Tensor]] = [[], [], []]
    for batch in tqdm(loader, desc=desc, leave=False, disable=not acc.is_local_main_process):
        outputs, targets = task.logits_and_targets(model, batch)
        data = [task.row_ids(batch), loss_fn.probabilities(outputs), targets.float()]
        if acc.num_processes > 1:
            data = acc.gather(acc.pad_across_processes(data, pad_index=-1))
        for part, t in zip(parts, data, strict=True):
            part.append(t.cpu())
    ids, scores, targets = (torch.cat(p) for p in parts)
    if acc.num_processes > 1:
        uniq, first = np.unique(ids.numpy(), return_index=True)
        keep = torch.from_numpy(first[uniq >= 0])
        ids, scores, targets = ids[keep], scores[keep], targets[keep]
    return ids, scores, targets


def train(cell: Cell, acc: Accelerator) -> dict[str, Any] | None:
    """Train one cell with dev-only selection; return its results (None if stopped early)."""
    cfg, task, loss_fn, stem = cell.cfg, cell.task, cell.loss_fn, cell.path.stem
    served.reset()  # the kernels this cell's numbers come from: the results' extra.kernels
    model, opt, sched, train_dl, dev_dl, test_dl, ema, extras, *_ = prepared = prepare(cell, acc)
    # a sum-reduced loss is the sum over the GLOBAL batch: undo DDP's mean over ranks and
    # accelerate's division by the accumulation steps, so the gradient is the 1-process one
    is_sum = loss_fn.hparams.get("reduction") == "sum"
    scale = acc.num_processes * cfg.grad_accum if is_sum else 1
    meta = {"run_id": cell.run_id, "identity": cell.sections["identity"],
            "git_commit": cell.sections["env"]["git_commit"]}
    state = TrainerState()
    if not cfg.resume:
        cell.ckpt.clear(acc)
    elif (marker := cell.ckpt.restore(acc, meta["identity"], cell.run_id, extras)) is not None:
        state = TrainerState(**marker["state"])
        for name in state.kernels:  # what computed the epochs before the resume
            served.note(name)
        acc.print(f"resumed {stem} after epoch {state.epoch}")
    primary, better = task.primary_metric, task.higher_is_better[task.primary_metric]
    # Accelerate's per-step wrappers cost ~100 us a step (benchmarks/loop_overhead.py), 5% of
    # a step at batch 32; without gradient accumulation, a loss scaler or DeepSpeed/Megatron
    # they only forward the call: accumulate() sets sync_gradients, already True, the wrapped
    # optimizer and scheduler step once (split_batches) unless an fp16 scaler skipped a step,
    # and backward() divides the loss by 1 (one more autograd node and its backward)
    plain = (cfg.grad_accum == 1 and acc.scaler is None
             and acc.distributed_type not in (DistributedType.DEEPSPEED,
                                              DistributedType.MEGATRON_LM))
    accumulate = (lambda m: contextlib.nullcontext()) if plain else acc.accumulate
    opt_step = opt.optimizer.step if plain else opt.step
    sched_step = sched.scheduler.step if plain else sched.step
    backward = Tensor.backward if plain else acc.backward
    aux_modules: list[torch.nn.Module] | None = None
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        model.train()
        loss_fn.train()
        train_dl.set_epoch(epoch)  # the seedable sampler: order depends on (seed, epoch) only
        frozen = frozen_parameters(acc.unwrap_model(model), epoch)  # e.g. MRN's embeddings
        t0, total, n_seen = time.perf_counter(), 0.0, 0
        bar = tqdm(train_dl, desc=f"{stem} epoch {epoch}", leave=False,
                   disable=not acc.is_local_main_process)
        for step, batch in enumerate(bar, 1):
            with accumulate(model):
                logits, targets = task.logits_and_targets(model, batch)
                loss = loss_fn(logits, targets)
                if aux_modules is None:  # after the first forward: who declares aux_loss
                    aux_modules = aux_loss_modules(model)
                # a model's own regularizer (AssocFormer's penalty)
                aux = auxiliary_loss(model, aux_modules) if aux_modules else None
                loss = loss if aux is None else loss + aux
                value = loss.item()  # the one host sync per step: the guard and the running mean
                if acc.num_processes > 1:  # one all-reduce: every rank sees the global loss
                    value = acc.reduce(loss.detach().reshape(1), "sum").item() / (
                        1 if is_sum else acc.num_processes)
                if not math.isfinite(value):  # every rank sees the same value: all stop
                    raise NonFiniteLossError(
                        f"{stem}: non-finite loss {value} at epoch {epoch}, step {step}; last "
                        f"complete checkpoint: {cell.ckpt.latest_complete()} (epoch "
                        f"{state.epoch})")
                backward(loss * scale if scale != 1 else loss)
                for p in frozen if acc.sync_gradients else ():  # as requires_grad=False would
                    p.grad = None
                if cfg.grad_clip and acc.sync_gradients:
                    acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt_step()
                sched_step()
                if acc.sync_gradients:  # what opt.zero_grad() does, minus its per-call inspect
                    opt.optimizer.zero_grad(set_to_none=True)
            if ema is not None and acc.sync_gradients:
                ema.update(acc.unwrap_model(model))
            total += value
            n_seen += len(batch["index"]) * acc.num_processes  # examples, not output rows
            if step % 50 == 0:  # a postfix costs ~0.3 ms; every step would be 10% at batch 32
                bar.set_postfix_str(f"loss={total / step:.4f}", refresh=False)
        train_s = time.perf_counter() - t0
        state.train_s += train_s
        state.examples += n_seen
        t1 = time.perf_counter()
        candidates = {"raw": model, **({"ema": ema.module} if ema else {})}
        dev = {k: dev_metrics(acc, task, m, loss_fn, dev_dl, "dev", f"{stem} dev")[0]
               for k, m in candidates.items()}
        state.eval_s += time.perf_counter() - t1
        source = max(dev, key=lambda k: dev[k][primary] * (1 if better else -1))
        entry = {"epoch": epoch, "train_loss": total / max(step, 1), "dev": dev["raw"],
                 "lr": sched.get_last_lr()[0], **({"dev_ema": dev["ema"]} if ema else {})}
        state.history.append(entry)
        value = dev[source][primary]
        improved = state.best is None or (value > state.best if better else value < state.best)
        if improved:
            state.best, state.best_epoch, state.best_source, state.bad_epochs = (
                value, epoch, source, 0)
        else:
            state.bad_epochs += 1
        state.epoch = epoch
        state.kernels = served.served()
        best = acc.unwrap_model(candidates[source]).state_dict() if improved else None
        with disk_guard(cell.ckpt.root):
            cell.ckpt.save(acc, epoch, {**meta, "state": dataclasses.asdict(state)}, extras, best)
        # the epoch's training throughput (loader included, dev evaluation not): what
        # benchmarks/timm_train_compare.py reads
        acc.print(f"{stem} epoch {epoch}: train loss {entry['train_loss']:.4f}, dev {primary} "
                  + " ".join(f"{k} {v[primary]:.4f}" for k, v in dev.items())
                  + f", {n_seen / max(train_s, 1e-9):.1f} ex/s")
        if cfg.stop_after_epoch == epoch:
            return None
        if cfg.early_stopping_patience and state.bad_epochs >= cfg.early_stopping_patience:
            acc.print(f"{stem}: early stop after epoch {epoch} (best epoch {state.best_epoch})")
            break

    best_path = cell.ckpt.latest_complete() / "best.pt"
    acc.unwrap_model(model).load_state_dict(torch.load(best_path, weights_only=True))
    t2 = time.perf_counter()
    _, rule = dev_metrics(acc, task, model, loss_fn, dev_dl, "dev", f"{stem} dev")
    index, scores, targets = predict(acc, task, model, loss_fn, test_dl, f"{stem} test")
    metrics = task.evaluate("test", index, scores, rule)  # the only look at the test split
    state.kernels = served.served()
    if acc.num_processes > 1:  # what any process used (every rank reaches this line)
        state.kernels = sorted(set(gather_object(state.kernels)))
    results = results_of(cell, state, metrics, rule, prepared,
                         state.eval_s + time.perf_counter() - t2)
    if acc.is_main_process:
        with disk_guard(cell.path.parent):
            write_outputs(cell, results, index, scores, targets, rule)
        if not cfg.keep_checkpoints:
            cell.ckpt.clear()
    acc.wait_for_everyone()
    return results


def dev_metrics(acc: Accelerator, task: Task, model: torch.nn.Module, loss_fn: torch.nn.Module,
                loader: DataLoader, split: str, desc: str) -> tuple[dict[str, float], Any]:
    """Dev metrics under the decision rule calibrated on those same dev predictions."""
    index, scores, _ = predict(acc, task, model, loss_fn, loader, desc)
    rule = task.calibrate(index, scores, declared=loss_fn.decision_rule())
    return task.evaluate(split, index, scores, rule), rule


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run every cell of the configured sweep; return the results of the finished cells."""
    argv = sys.argv[1:] if argv is None else argv
    sweeps = parse_sweeps(argv)  # one per suite cell; without --suite, one
    base = sweeps[0][2]
    if base.print_commands:
        for _, sweep_argv, sweep in sweeps:
            for cell in sweep.cells():
                print(shlex.join(["accelerate", "launch", "run_task.py",
                                  *cell_argv(sweep_argv, cell)]))
        return []
    if base.launcher != "none":  # every cell its own job (engine/launch.py)
        from engine.launch import launch_cells

        return launch_cells(sweeps, base, Path(__file__).resolve().parent)
    check_one_launch(sweeps)
    separate_inductor_cache()  # before --compile model compiles (losses separate it too)
    try:
        acc = Accelerator(mixed_precision=base.mixed_precision,
                          gradient_accumulation_steps=base.grad_accum,
                          log_with=[t for t in base.report_to.split(",") if t] or None,
                          project_dir=base.output_dir,
                          # non_blocking: batches from pinned memory (GPU runs, engine.recipe)
                          # are copied while the host queues the step
                          dataloader_config=DataLoaderConfiguration(split_batches=True,
                                                                    use_seedable_sampler=True,
                                                                    non_blocking=True))
    except ValueError as exc:  # accelerate's own check of the trackers and the precision
        raise ConfigError(f"--report_to / --mixed_precision: {exc}") from exc
    # every cell of every sweep validated before the first trains
    cells = plan([c for *_, sweep in sweeps for c in sweep.cells()], acc, environment(acc))
    done = []
    for cell in cells:
        if cell.finished is not None:
            acc.print(f"skip {cell.path} (same run_id {cell.run_id})")
            done.append(cell.finished)
            continue
        result = train(cell, acc)
        acc.free_memory()
        if result is not None:
            done.append(result)
    if acc.is_main_process and done:
        from leaderboard.render import sweep_table

        print("\n" + sweep_table(done))
        if base.leaderboard:
            print(f"leaderboard: {refresh_leaderboard(Path(base.output_dir))}")
    acc.end_training()
    return done


def cli() -> None:
    """``main`` with user errors as ONE line on stderr and exit code 2 (``--debug``: traceback)."""
    debug = debug_requested(sys.argv[1:])
    rank0 = os.environ.get("RANK", "0") == "0"  # under accelerate launch, say it once
    try:
        main()
    except HelpRequested as exc:
        if rank0:
            print(exc.text, end="")
    except (UserError, NonFiniteLossError) as exc:
        if debug:
            raise
        if rank0:
            print(f"error: {exc}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, UserError) else 1)


if __name__ == "__main__":
    cli()
