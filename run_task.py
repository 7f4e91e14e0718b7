"""Train any registered model with any registered loss on any registered task; write results JSON.

    accelerate launch run_task.py                                   # the synthetic benchmark
    accelerate launch run_task.py --loss asl --loss.gamma_neg 2 --seed 1
    accelerate launch run_task.py --loss bce,asl@asl_coco --seed 0,1,2 --print_commands

Options: mllb_core/runconfig.py. One Accelerator; per (loss, seed) cell: build, train with dev-only
model selection (raw and, if enabled, EMA weights), checkpoint every epoch (``--resume``), evaluate
the test split once with the selected weights, write one results JSON (leaderboard/schema.py).
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import accelerate
import accelerate.optimizer
import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from leaderboard.schema import SCHEMA_VERSION, read_results, write_results
from losses import create_loss
from mllb_core.io import write_json_atomic, write_text_atomic
from mllb_core.runconfig import ConfigError, RunConfig, cell_argv, parse_config
from models import HEAD_FOR_INPUT_KIND, auxiliary_loss, create_model
from tasks import TASKS, create_task

REPO = Path(__file__).resolve().parent
# AcceleratedOptimizer.step asks is_lomo_available() (an import-system lookup) twice per step,
# ~0.18 ms, about 9% of a small model's step (benchmarks/loop_overhead.py); whether a package is
# installed does not change during a run, so the answer is cached.
accelerate.optimizer.is_lomo_available = functools.lru_cache(maxsize=1)(
    accelerate.optimizer.is_lomo_available)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the last good checkpoint is kept."""


def make_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD over the model's parameters."""
    params, kinds = model.parameters(), ("adamw", "adam", "sgd")
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    raise ConfigError(f"--optimizer must be one of {kinds}, got {cfg.optimizer!r}")


def make_scheduler(cfg: RunConfig, opt: torch.optim.Optimizer, total: int):
    """OneCycle, or warmup then cosine / linear decay / constant, over ``total`` optimizer steps."""
    warm = max(1, int(cfg.warmup_ratio * total))
    if cfg.scheduler == "onecycle":
        pct = max(cfg.warmup_ratio, 1e-3)
        if math.isclose(pct * total, 1.0):  # OneCycleLR divides by pct_start * total - 1
            pct = min(1.5 / total, 0.75)
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total,
                                                   pct_start=pct)
    decay = {"cosine": lambda f: 0.5 * (1 + math.cos(math.pi * f)),
             "linear_warmup": lambda f: 1 - f, "constant": lambda f: 1.0}
    if cfg.scheduler not in decay:
        raise ConfigError(f"--scheduler must be one of {['onecycle', *decay]}, "
                          f"got {cfg.scheduler!r}")
    shape = decay[cfg.scheduler]
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else shape((s - warm) / max(1, total - warm)))


@torch.no_grad()
def predict(acc: Accelerator, task, model, loss_fn, loader) -> tuple[torch.Tensor, ...]:
    """Gathered (index [N], probabilities [N, C], targets [N, C]) of a split, each row once.

    Rows are examples, or, when the batch carries ``row_index``, rows of examples (entity pairs
    of documents). gather_for_metrics drops the duplicated padding examples by counting rows,
    which only works when one example is one row; otherwise the row ids are gathered (padded
    across ranks with -1) and the duplicates of padded examples are dropped by id.
    """
    model.eval()
    parts: list[list[torch.Tensor]] = [[], [], []]
    grouped = False
    for batch in loader:
        outputs, targets = task.logits_and_targets(model, batch)
        grouped = "row_index" in batch
        data = (batch.get("row_index", batch["index"]), loss_fn.probabilities(outputs), targets)
        if not grouped:
            gathered = acc.gather_for_metrics(data)
        elif acc.num_processes > 1:
            gathered = acc.gather(acc.pad_across_processes(list(data), pad_index=-1))
        else:
            gathered = data
        for part, t in zip(parts, gathered, strict=True):
            part.append(t.float().cpu() if t.is_floating_point() else t.cpu())
    index, scores, targets = (torch.cat(p) for p in parts)
    if grouped and acc.num_processes > 1:
        ids, first = np.unique(index.numpy(), return_index=True)
        keep = torch.from_numpy(first[ids >= 0])
        index, scores, targets = index[keep], scores[keep], targets[keep]
    return index, scores, targets


def environment(acc: Accelerator) -> dict[str, Any]:
    """Versions, device and git state recorded with every result."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"
    dev = acc.device
    name = f"cuda:{torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else dev.type
    return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": git("status", "--porcelain") != "",
            "torch": torch.__version__, "accelerate": accelerate.__version__, "device": name,
            "world_size": acc.num_processes, "mixed_precision": acc.mixed_precision}


def run_cell(cfg: RunConfig, acc: Accelerator, out: Path, env: dict[str, Any]
             ) -> dict[str, Any] | None:
    """Train and evaluate one (loss, seed) cell; return its results (None if stopped early)."""
    set_seed(int(cfg.seed))
    task = create_task(cfg.task, **cfg.task_kwargs,
                       **({"data_dir": cfg.data_dir} if cfg.data_dir else {}))
    loss_fn = create_loss(cfg.loss_name, preset=cfg.loss_preset, **cfg.loss_kwargs)
    model_name = cfg.model or task.default_model
    model_kwargs = {**task.model_kwargs(), "head": HEAD_FOR_INPUT_KIND[loss_fn.input_kind],
                    **cfg.model_kwargs}
    model = create_model(model_name, task.num_labels, **model_kwargs)
    task.prepare_model(model)
    n_params = sum(p.numel() for p in model.parameters())
    loader = {s: DataLoader(task.dataset(s), batch_size=cfg.batch_size if s == "train" else
                            cfg.eval_batch_size, shuffle=s == "train", collate_fn=task.collate,
                            num_workers=cfg.num_workers) for s in ("train", "dev", "test")}
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(cfg, opt, cfg.epochs * math.ceil(len(loader["train"]) / cfg.grad_accum))
    model, opt, sched, train_dl, dev_dl, test_dl = acc.prepare(
        model, opt, sched, loader["train"], loader["dev"], loader["test"])
    ema = ModelEmaV3(acc.unwrap_model(model), decay=cfg.ema_decay) if cfg.ema_decay else None
    # stateful extras (asl_adaptive's gamma_neg, the EMA weights) go beside save_state's files
    extras = {"loss": loss_fn, **({"ema": ema} if ema else {})}

    stem = f"{model_name}__{cfg.cell_label()}"
    ckpt = out / "checkpoints" / stem
    # trainer_state.ckpt is JSON but not *.json, so results readers never mistake it for results
    st: dict[str, Any] = {"epoch": 0, "best": None, "best_epoch": 0, "best_source": "raw",
                          "bad_epochs": 0, "history": [], "train_s": 0.0, "eval_s": 0.0,
                          "examples": 0}
    if cfg.resume and acc.is_main_process and not (ckpt / "last").exists():
        # killed between the two renames of the checkpoint swap: finish it
        for name in ("next", "prev"):
            if (ckpt / name / "trainer_state.ckpt").exists():
                (ckpt / name).rename(ckpt / "last")
                break
    acc.wait_for_everyone()
    if cfg.resume and (ckpt / "last" / "trainer_state.ckpt").exists():
        st = json.loads((ckpt / "last" / "trainer_state.ckpt").read_text())
        acc.load_state(str(ckpt / "last"))
        saved = torch.load(ckpt / "last" / "extras.pt", weights_only=True)
        for key, obj in extras.items():
            obj.load_state_dict(saved[key])
        acc.print(f"resumed {stem} after epoch {st['epoch']}")
    primary, better = task.primary_metric, task.higher_is_better[task.primary_metric]
    for epoch in range(st["epoch"] + 1, cfg.epochs + 1):
        model.train()
        loss_fn.train()
        train_dl.set_epoch(epoch)  # the seedable sampler: order depends on (seed, epoch) only
        t0, total, n_seen = time.perf_counter(), 0.0, 0
        bar = tqdm(train_dl, desc=f"{stem} epoch {epoch}", leave=False,
                   disable=not acc.is_local_main_process)
        for step, batch in enumerate(bar, 1):
            with acc.accumulate(model):
                logits, targets = task.logits_and_targets(model, batch)
                loss = loss_fn(logits, targets)
                aux = auxiliary_loss(model)  # a model's own regularizer (AssocFormer's penalty)
                if aux is not None:
                    loss = loss + aux
                value = loss.item()  # the one host sync per step: the guard and the running mean
                bad = not math.isfinite(value)
                if acc.num_processes > 1:  # every rank must stop together
                    bad = acc.reduce(torch.tensor(float(bad), device=loss.device), "sum").item()
                if bad:
                    raise NonFiniteLossError(
                        f"{stem}: non-finite loss {value} at epoch {epoch}, step {step}; "
                        f"last good checkpoint: {ckpt / 'last'} (epoch {st['epoch']})")
                acc.backward(loss)
                if cfg.grad_clip and acc.sync_gradients:
                    acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                if acc.sync_gradients:  # what opt.zero_grad() does, minus its per-call inspect
                    opt.optimizer.zero_grad(set_to_none=True)
            if ema is not None and acc.sync_gradients:
                ema.update(acc.unwrap_model(model))
            total += value
            n_seen += len(batch["index"]) * acc.num_processes  # examples, not output rows
            if step % 10 == 0:
                bar.set_postfix(loss=f"{total / step:.4f}", refresh=False,
                                ex_s=f"{n_seen / (time.perf_counter() - t0):.0f}")
        st["train_s"] += time.perf_counter() - t0
        st["examples"] += n_seen
        t1 = time.perf_counter()
        candidates = {"raw": model, **({"ema": ema.module} if ema else {})}
        dev = {k: task.evaluate("dev", *predict(acc, task, m, loss_fn, dev_dl)[:2])
               for k, m in candidates.items()}
        st["eval_s"] += time.perf_counter() - t1
        source = max(dev, key=lambda k: dev[k][primary] * (1 if better else -1))
        value = dev[source][primary]
        entry = {"epoch": epoch, "train_loss": total / max(step, 1), "dev": dev["raw"],
                 "lr": sched.get_last_lr()[0]}
        if ema:
            entry["dev_ema"] = dev["ema"]
        st["history"].append(entry)
        if st["best"] is None or (value > st["best"] if better else value < st["best"]):
            st.update(best=value, best_epoch=epoch, best_source=source, bad_epochs=0)
            ckpt.mkdir(parents=True, exist_ok=True)
            acc.save(acc.unwrap_model(candidates[source]).state_dict(), ckpt / "best.pt")
        else:
            st["bad_epochs"] += 1
        st["epoch"] = epoch
        # write the new checkpoint beside the old one, then swap: a kill mid-save keeps "last"
        acc.save_state(str(ckpt / "next"))
        acc.save({k: obj.state_dict() for k, obj in extras.items()}, ckpt / "next" / "extras.pt")
        if acc.is_main_process:
            write_json_atomic(ckpt / "next" / "trainer_state.ckpt", st)
            if (ckpt / "last").exists():
                (ckpt / "last").rename(ckpt / "prev")
            (ckpt / "next").rename(ckpt / "last")
            shutil.rmtree(ckpt / "prev", ignore_errors=True)
        acc.wait_for_everyone()
        acc.log({f"{stem}/dev_{primary}": dev["raw"][primary], f"{stem}/train_loss":
                 entry["train_loss"]}, step=epoch)
        acc.print(f"{stem} epoch {epoch}: train loss {entry['train_loss']:.4f}, dev {primary} "
                  f"{dev['raw'][primary]:.4f}"
                  + (f" (ema {dev['ema'][primary]:.4f})" if ema else ""))
        if cfg.stop_after_epoch == epoch:
            return None
        if cfg.early_stopping_patience and st["bad_epochs"] >= cfg.early_stopping_patience:
            acc.print(f"{stem}: early stop after epoch {epoch} (best epoch {st['best_epoch']})")
            break

    acc.unwrap_model(model).load_state_dict(torch.load(ckpt / "best.pt", weights_only=True))
    t2 = time.perf_counter()
    if task.tunes_on_dev:  # calibrate on the selected weights, not on whatever ran last
        task.evaluate("dev", *predict(acc, task, model, loss_fn, dev_dl)[:2])
    index, scores, targets = predict(acc, task, model, loss_fn, test_dl)
    metrics = task.evaluate("test", index, scores)  # the only look at the test split
    eval_s = st["eval_s"] + time.perf_counter() - t2
    results = {
        "schema_version": SCHEMA_VERSION,
        "task": {"name": task.name, "version": task.version, "dataset": task.dataset_name,
                 "split": "test", "num_labels": task.num_labels,
                 "num_examples": len(loader["test"].dataset),  # examples, not output rows
                 "data_fingerprint": task.data_fingerprint()},
        "model": {"name": model_name, "kwargs": model_kwargs, "num_parameters": n_params},
        "loss": {"name": loss_fn.name, "preset": loss_fn.preset, "kwargs": loss_fn.hparams},
        "seed": int(cfg.seed),
        "metrics": metrics,
        "higher_is_better": {k: task.higher_is_better[k] for k in metrics},
        "selection": {"metric": primary, "split": "dev", "epoch": st["best_epoch"]},
        "threshold": dict(task.threshold),
        "history": st["history"],
        "config": cfg.to_dict(),
        "env": env,
        "timing": {"train_s": st["train_s"], "eval_s": eval_s,
                   "examples_per_s": st["examples"] / max(st["train_s"], 1e-9)},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "extra": {"selected_weights": st["best_source"], "epochs_run": st["epoch"],
                  "task_kwargs": task.kwargs, "task_info": task.info()},
    }
    if acc.is_main_process:
        if cfg.save_scores:
            order = index.argsort()
            # targets too, so the leaderboard's paired bootstrap can recompute the metric; float32
            # because float16 rounding creates ties that move mAP by tenths of a point
            np.savez_compressed(out / f"{stem}.scores.npz", index=index[order].numpy(),
                                scores=scores[order].numpy().astype(np.float32),
                                targets=targets[order].numpy().astype(np.uint8))
            results["scores_file"] = f"{stem}.scores.npz"
        predictions = task.write_predictions("test", index, scores, out / stem)
        if predictions:
            results["extra"]["predictions_file"] = predictions
        write_json_atomic(out / f"{stem}.config.json", cfg.to_dict())
        write_results(out / f"{stem}.json", results)
    acc.wait_for_everyone()
    return results


def print_table(rows: list[dict[str, Any]]) -> None:
    """One line per finished cell: loss, test metrics, selected epoch, training time."""
    if not rows:
        return
    keys = list(rows[0]["metrics"])[:7]
    print("\n| loss | seed | " + " | ".join(f"test {k}" for k in keys) + " | epoch | train s |")
    print("|---|---|" + "---:|" * (len(keys) + 2))
    for r in rows:
        label = r["loss"]["preset"] or r["loss"]["name"]
        cells = " | ".join(f"{100 * r['metrics'][k]:.2f}" for k in keys)
        print(f"| {label} | {r['seed']} | {cells} | {r['selection']['epoch']} | "
              f"{r['timing']['train_s']:.1f} |")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run every cell of the configured sweep; return the results of the finished cells."""
    argv = sys.argv[1:] if argv is None else argv
    base = parse_config(argv)
    cells = base.cells()
    if base.print_commands:
        for cell in cells:
            print(" ".join(["accelerate", "launch", "run_task.py", *cell_argv(argv, cell)]))
        return []
    acc = Accelerator(mixed_precision=base.mixed_precision,
                      gradient_accumulation_steps=base.grad_accum,
                      log_with=[t for t in base.report_to.split(",") if t] or None,
                      project_dir=base.output_dir,
                      dataloader_config=DataLoaderConfiguration(split_batches=True,
                                                                use_seedable_sampler=True))
    if base.report_to:
        acc.init_trackers("mllb", config={k: str(v) for k, v in base.to_dict().items()})
    out = Path(base.output_dir) / base.task
    env = environment(acc)  # the code state at launch, not at the time each cell finishes
    done: list[dict[str, Any]] = []
    for cell in cells:
        model_name = cell.model or TASKS.get(cell.task).default_model
        path = out / f"{model_name}__{cell.cell_label()}.json"
        if path.exists():  # finished cells are skipped, so a killed sweep resumes where it stopped
            acc.print(f"skip {path} (exists)")
            done.append(read_results(path))
            continue
        result = run_cell(cell, acc, out, env)
        acc.free_memory()
        if result is not None:
            done.append(result)
    if acc.is_main_process:
        print_table(done)
        if base.leaderboard:
            from leaderboard.render import build

            md = Path(base.leaderboard)
            write_text_atomic(md, build(Path(base.output_dir), figures_dir=md.parent / "figures",
                                        output=md))
            print(f"leaderboard: {md}")
    acc.end_training()
    return done


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, NonFiniteLossError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
