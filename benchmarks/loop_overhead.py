"""Training-loop overhead: ``run_task.py``'s loop per epoch against a bare training loop.

What it measures, per batch size (default: 128, the run default, and 32, four times as many steps
so that a fixed per-step cost weighs more):

* **engine**: ``run_task.main([...])`` in this process, on the synthetic task (default sizes:
  8000 train examples, 64 features, 80 labels), model ``mlp`` (256x256, linear head), loss
  ``bce``, seed 0, AdamW with the config's lr and weight decay, onecycle scheduler, a fresh
  temporary ``--output_dir`` per run (a finished cell whose results file exists would be skipped).
  Time per epoch = ``results["timing"]["train_s"] / results["extra"]["epochs_run"]``. ``train_s``
  is measured by run_task around the per-epoch training loop only, so the dev evaluation,
  checkpointing (``save_state``, ``best.pt``) and test evaluation that run_task also does are
  excluded by construction. What is included: the Accelerate-prepared DataLoader (seedable
  sampler), the forward, the loss, the auxiliary-loss lookup, the non-finite check (one
  ``.item()``), ``loss.backward()``, the optimizer's ``step()``, ``scheduler.step()`` (onecycle),
  ``zero_grad()``, the running-loss sum and tqdm (with gradient accumulation, an fp16 scaler or
  DeepSpeed, run_task goes through ``accelerator.accumulate``/``backward`` and the wrapped
  optimizer and scheduler instead).
* **bare**: the same task (``tasks.create_task("synthetic", ...)``), the same model
  (``models.create_model("mlp", ..., head="linear")``, same initial weights: ``torch.manual_seed``
  is set as run_task's ``set_seed`` does, before the task, loss and model are built), the same loss
  (``losses.create_loss("bce")``), ``torch.optim.AdamW`` with the same lr / weight decay, the same
  batch size over a plain ``DataLoader(task.dataset("train"), shuffle=True,
  collate_fn=task.collate)``; per batch: forward, loss, backward, ``optimizer.step()``,
  ``zero_grad()``, nothing else (no scheduler, no sync, no progress bar). Time per epoch = wall
  time of one full pass over the loader, averaged over the same number of epochs as the engine.

Both sides run ``--repeats`` times, interleaved (engine, bare[, what-if], engine, bare, ...) after
one untimed warm-up pair per batch size, in one process with the default torch thread count. The
table reports the median engine and bare seconds per epoch, the median over repetitions of the
per-pair ratio engine / bare, and the overhead = that ratio - 1. Under the table, one line per batch
size shows the noise: the range of the per-pair ratios and the ratio of the fastest engine run to
the fastest bare run (on a shared machine other processes only ever add time, so the minima are the
least disturbed runs), with the overhead per optimizer step in microseconds. The output ends with
one target line per batch size (target: overhead at most 5%, judged on the median per-pair ratio).

Unless ``--no-what-if``, every repetition also runs the engine a third time (after the bare run)
with accelerate's ``is_lomo_available`` memoized for that run only (``functools.cache``; same
answer): ``AcceleratedOptimizer.step`` calls it twice per step and each call is an uncached
``importlib.util.find_spec`` over ``sys.path``. One line per batch size gives that run's median
and its median per-pair ratio to the bare run: what a fix of that one call would gain.

Then (with ``--breakdown``) one more engine run per batch size, instrumented: timers are put
around the per-step extras of run_task's loop that the bare loop lacks (``instrumented_pieces``
lists them: the OneCycle scheduler's step, the prepared DataLoader's per-batch work, tqdm's
postfix; they are removed afterwards, so the timed runs above are untouched) and a second table
gives each piece's microseconds per optimizer step, their sum in % of the bare step, and the
measured overhead per step for comparison. The extras are timed in place because that is what
they cost in the loop (caches as cold as the loop leaves them). Not timed: the non-finite check
and the running-loss ``.item()`` (CPU tensors) and tqdm's per-item iteration; they, the timer
calls and any indirect cost of the extras are in the difference to the measured overhead.

With ``--pieces``, ``--repeats`` more interleaved engine / bare pairs per batch size run with the
same timers around the work both loops share (the task's ``logits_and_targets``, the loss's
``forward``, ``Tensor.backward``, the optimizer's ``step`` and ``zero_grad``), counted only while
gradients are enabled (so not the engine's dev / test evaluation). One more table gives each
piece's microseconds per step on each side (median over the pairs) and the remainder: the
epoch's time minus the timed pieces, i.e. the data loading and whatever the loop itself adds
(the engine's ``loss.item()``, scheduler step, tqdm, prepared DataLoader; the bare loop's plain
DataLoader). The cells are as exposed to a drifting host as the timed runs; what the table adds
is where a difference sits: a cost of the engine's loop shows in the remainder alone, a slower
phase of the host in every piece. The target is still judged on the timed runs' per-pair
ratio.

Benchmarks are not tests: nothing is asserted and the exit status is 0. run_task's own console
output (per-epoch lines, results table) is suppressed; its tqdm bar still goes to stderr as in a
real run, as do the per-repetition progress lines (``2>/dev/null`` hides both).

Run (repository root)::

    python benchmarks/loop_overhead.py
    python benchmarks/loop_overhead.py --repeats 7 --epochs 3 --batch_sizes 128,32
    python benchmarks/loop_overhead.py --breakdown 2>/dev/null
    python benchmarks/loop_overhead.py --pieces --no-what-if --repeats 7 2>/dev/null
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import io
import math
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import accelerate
import accelerate.data_loader as acc_data_loader
import accelerate.optimizer as acc_optimizer
import torch
import tqdm.std as tqdm_std
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run_task.py is a script at the repository root, not a package
    sys.path.insert(0, str(REPO))

import run_task  # noqa: E402
from engine.recipe import TabulatedOneCycleLR  # noqa: E402
from losses import create_loss  # noqa: E402
from mllb_core.provenance import code_version  # noqa: E402
from mllb_core.runconfig import RunConfig  # noqa: E402
from models import create_model  # noqa: E402
from tasks import create_task  # noqa: E402
from tasks.base import ArrayTask  # noqa: E402

TARGET_OVERHEAD = 0.05
TASK = "synthetic"
MODEL = "mlp"
LOSS = "bce"
SEED = 0


@dataclass
class Row:
    """Timings of one batch size: seconds per epoch of each repetition, engine and bare."""

    batch_size: int
    engine: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    memo: list[float] = field(default_factory=list)  # what-if: is_lomo_available memoized

    @property
    def ratios(self) -> list[float]:
        """Per-pair ratios engine / bare (same repetition)."""
        return [e / b for e, b in zip(self.engine, self.bare, strict=True)]

    @property
    def overhead(self) -> float:
        """Median per-pair ratio minus one."""
        return statistics.median(self.ratios) - 1.0

    @property
    def memo_ratios(self) -> list[float]:
        """Per-pair ratios of the what-if engine run to the bare run of the same repetition."""
        return [m / b for m, b in zip(self.memo, self.bare, strict=True)]


def engine_epoch_s(batch_size: int, epochs: int, task_kwargs: dict[str, Any]) -> float:
    """Seconds per epoch of run_task's training loop: ``train_s / epochs_run``, fresh output dir."""
    task_args = [a for k, v in task_kwargs.items() for a in (f"--task.{k}", str(v))]
    with tempfile.TemporaryDirectory(prefix="mllb_loop_") as out:
        argv = ["--task", TASK, "--model", MODEL, "--loss", LOSS, "--seed", str(SEED),
                "--epochs", str(epochs), "--batch_size", str(batch_size), "--output_dir", out,
                *task_args]
        with contextlib.redirect_stdout(io.StringIO()):
            results = run_task.main(argv)
    if len(results) != 1:
        raise RuntimeError(f"run_task.main returned {len(results)} results, expected 1")
    res = results[0]
    return res["timing"]["train_s"] / res["extra"]["epochs_run"]


def engine_memo_epoch_s(batch_size: int, epochs: int, task_kwargs: dict[str, Any]) -> float:
    """What-if: ``engine_epoch_s`` with accelerate's ``is_lomo_available`` memoized for the run.

    ``AcceleratedOptimizer.step`` calls it twice per step and each call is an
    ``importlib.util.find_spec`` over ``sys.path``; the patch (``functools.cache``, the same
    answer) is removed after the run.
    """
    memo = functools.cache(acc_optimizer.is_lomo_available)
    with _patched([(acc_optimizer, "is_lomo_available", memo)]):
        return engine_epoch_s(batch_size, epochs, task_kwargs)


def bare_epoch_s(batch_size: int, epochs: int, task_kwargs: dict[str, Any]) -> float:
    """Seconds per epoch of forward, loss, backward, step, zero_grad over a plain DataLoader."""
    cfg = RunConfig()  # the run defaults: AdamW, lr, weight decay
    torch.manual_seed(SEED)
    task = create_task(TASK, **task_kwargs)
    loss_fn = create_loss(LOSS)
    model = create_model(MODEL, task.num_labels, **task.model_kwargs(), head="linear")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader = DataLoader(task.dataset("train"), batch_size=batch_size, shuffle=True,
                        collate_fn=task.collate)
    model.train()
    loss_fn.train()
    total = 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        for batch in loader:
            logits, targets = task.logits_and_targets(model, batch)
            loss = loss_fn(logits, targets)
            loss.backward()
            opt.step()
            opt.zero_grad()
        total += time.perf_counter() - t0
    return total / epochs


def measure(batch_sizes: list[int], repeats: int, epochs: int, task_kwargs: dict[str, Any],
            what_if: bool = True) -> list[Row]:
    """Interleaved engine / bare (/ what-if) runs per batch size, after one untimed warm-up each."""
    rows = []
    for bs in batch_sizes:
        engine_epoch_s(bs, epochs, task_kwargs)
        bare_epoch_s(bs, epochs, task_kwargs)
        row = Row(bs)
        for r in range(repeats):
            gc.collect()
            row.engine.append(engine_epoch_s(bs, epochs, task_kwargs))
            gc.collect()
            row.bare.append(bare_epoch_s(bs, epochs, task_kwargs))
            if what_if:
                gc.collect()
                row.memo.append(engine_memo_epoch_s(bs, epochs, task_kwargs))
            print(f"batch {bs} rep {r + 1}/{repeats}: engine {row.engine[-1]:.4f} s/epoch, "
                  f"bare {row.bare[-1]:.4f} s/epoch"
                  + (f", what-if {row.memo[-1]:.4f} s/epoch" if what_if else ""),
                  file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def steps_per_epoch(batch_size: int, task_kwargs: dict[str, Any]) -> int:
    """Optimizer steps per epoch (the train loader keeps the last, smaller batch)."""
    return math.ceil(create_task(TASK, **task_kwargs).kwargs["num_train"] / batch_size)


def report(rows: list[Row], repeats: int, epochs: int, task_kwargs: dict[str, Any]) -> str:
    """The markdown table, then a noise / per-step line (and a what-if line) per batch size."""
    sizes = ", ".join(f"{k}={v}" for k, v in task_kwargs.items()) or "defaults"
    lines = [
        f"task {TASK} ({sizes}), model {MODEL}, loss {LOSS}; repeats = {repeats}, "
        f"epochs per run = {epochs}; {code_version()}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), accelerate {accelerate.__version__}, "
        f"Python {platform.python_version()}",
        "",
        "| batch size | engine s/epoch | bare s/epoch | median ratio | overhead % |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row.batch_size} | {statistics.median(row.engine):.4f} | "
                     f"{statistics.median(row.bare):.4f} | {statistics.median(row.ratios):.3f} | "
                     f"{100 * row.overhead:.1f} |")
    lines.append("")
    for row in rows:
        steps = steps_per_epoch(row.batch_size, task_kwargs)
        per_step = (statistics.median(row.engine) - statistics.median(row.bare)) / steps
        lines.append(f"- batch size {row.batch_size}: per-pair ratios {min(row.ratios):.3f} to "
                     f"{max(row.ratios):.3f}; fastest engine / fastest bare "
                     f"{min(row.engine) / min(row.bare):.3f}; {steps} steps/epoch, "
                     f"overhead {1e6 * per_step:.0f} us/step (difference of the medians)")
    if any(row.memo for row in rows):
        lines.append("")
    for row in rows:
        if row.memo:
            lines.append(f"- batch size {row.batch_size}, what-if (accelerate's is_lomo_available "
                         f"memoized): engine {statistics.median(row.memo):.4f} s/epoch, median "
                         f"ratio {statistics.median(row.memo_ratios):.3f}, overhead "
                         f"{100 * (statistics.median(row.memo_ratios) - 1):.1f}%")
    return "\n".join(lines)


def report_target(rows: list[Row]) -> str:
    """One target line per batch size (median per-pair overhead against 5%)."""
    lines = [f"Target: overhead (median per-pair ratio - 1) under "
             f"{100 * TARGET_OVERHEAD:.0f}%.", ""]
    for row in rows:
        ok = row.overhead < TARGET_OVERHEAD
        lines.append(f"- batch size {row.batch_size}: overhead {100 * row.overhead:.1f}% "
                     f"{'<' if ok else '>='} {100 * TARGET_OVERHEAD:.0f}%: "
                     f"{'PASS' if ok else 'FAIL'}")
    return "\n".join(lines)


class _Timers:
    """Accumulated wall time and call count per key; ``wrap`` returns a timed version of ``fn``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def add(self, key: str, seconds: float) -> None:
        """Record one call of ``key``."""
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
        self.calls[key] = self.calls.get(key, 0) + 1

    def wrap(self, key: str, fn: Callable[..., Any],
             only_with_grad: bool = False) -> Callable[..., Any]:
        """``fn`` with every call timed under ``key`` (signature kept for ``inspect``); with
        ``only_with_grad``, only the calls made while autograd records (training, not the
        evaluation's ``no_grad``)."""
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if only_with_grad and not torch.is_grad_enabled():
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(key, time.perf_counter() - t0)
        return timed

    def mean_us(self, key: str) -> float:
        """Mean microseconds per call of ``key`` (0 if never called)."""
        return 1e6 * self.seconds.get(key, 0.0) / max(self.calls.get(key, 0), 1)


_MISSING = object()


@contextlib.contextmanager
def _patched(patches: list[tuple[Any, str, Any]]) -> Iterator[None]:
    """Set ``obj.name = value`` for each patch; restore (or remove) the attributes afterwards."""
    saved = [(obj, name, obj.__dict__[name] if name in vars(obj) else _MISSING)
             for obj, name, _ in patches]
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, old in reversed(saved):
            if old is _MISSING:
                delattr(obj, name)
            else:
                setattr(obj, name, old)


# name of a timed piece -> its calls per optimizer step in run_task's loop
PIECES: dict[str, tuple[str, int]] = {
    "sched": ("`scheduler.step()` (OneCycle, tabulated, called directly)", 1),
    "dl": ("prepared DataLoader: `send_to_device` + `_update_state_dict`", 1),
    "postfix": ("tqdm `set_postfix`", 1),
}


def instrumented_pieces(batch_size: int, epochs: int,
                        task_kwargs: dict[str, Any]) -> dict[str, float]:
    """One extra engine run with timers around run_task's per-step extras: us per step of each.

    The timers wrap, only during this run (they are removed afterwards; the timed runs above
    are untouched): the OneCycle scheduler's ``step`` (``engine.recipe.TabulatedOneCycleLR``;
    run_task calls the scheduler itself
    unless it needs accelerate's wrappers: gradient accumulation, an fp16 scaler, DeepSpeed),
    the prepared DataLoader's per-batch ``send_to_device`` and ``_update_state_dict`` and
    tqdm's ``set_postfix``. Costs are means per call (the DataLoader pieces also run for the
    dev / test batches) times the calls per step, measured inside the loop, so with the caches
    as cold as the loop leaves them.
    """
    timers = _Timers()
    one_cycle = TabulatedOneCycleLR  # what make_scheduler returns for the default onecycle
    patches = [
        (one_cycle, "step", timers.wrap("sched", one_cycle.step)),
        (acc_data_loader, "send_to_device", timers.wrap("send", acc_data_loader.send_to_device)),
        (acc_data_loader.DataLoaderShard, "_update_state_dict",
         timers.wrap("state", acc_data_loader.DataLoaderShard._update_state_dict)),
        (tqdm_std.tqdm, "set_postfix", timers.wrap("postfix", tqdm_std.tqdm.set_postfix)),
    ]
    with _patched(patches):
        engine_epoch_s(batch_size, epochs, task_kwargs)
    us = timers.mean_us
    return {"sched": us("sched"), "dl": us("send") + us("state"), "postfix": us("postfix")}


# name of a shared piece -> (label, class, attribute): timed alike in the engine and the bare loop
SHARED: dict[str, tuple[str, Any, str]] = {
    "forward": ("forward (`task.logits_and_targets`)", ArrayTask, "logits_and_targets"),
    "loss": ("loss (`forward` of the loss module)", type(create_loss(LOSS)), "forward"),
    "backward": ("`Tensor.backward`", torch.Tensor, "backward"),
    "step": ("optimizer `step` (AdamW)", torch.optim.AdamW, "step"),
    "zero_grad": ("optimizer `zero_grad`", torch.optim.Optimizer, "zero_grad"),
}


def shared_pieces_run(side: str, batch_size: int, epochs: int, task_kwargs: dict[str, Any],
                      steps: int) -> dict[str, float]:
    """One engine or bare run with the shared pieces timed: us per optimizer step of each
    (``steps``: the run's optimizer steps, ``epochs`` x :func:`steps_per_epoch`).

    ``"rest"`` is the run's training time per step minus the timed pieces: data loading plus
    whatever that loop adds around them. The wrappers cost the same on both sides.
    """
    timers = _Timers()
    patches = []
    for key, (_, owner, attr) in SHARED.items():
        patches.append((owner, attr, timers.wrap(key, getattr(owner, attr),
                                                 only_with_grad=True)))
    with _patched(patches):
        per_epoch = (engine_epoch_s if side == "engine" else bare_epoch_s)(
            batch_size, epochs, task_kwargs)
    miscounted = {key: timers.calls.get(key, 0) for key in SHARED
                  if timers.calls.get(key, 0) != steps}
    if miscounted:  # a piece the loop calls more or less than once a step: not comparable
        raise RuntimeError(f"{side} run at batch {batch_size}: expected {steps} calls of each "
                           f"timed piece, got {miscounted}")
    out = {key: 1e6 * timers.seconds.get(key, 0.0) / steps for key in SHARED}
    total = 1e6 * per_epoch * epochs / steps
    out["rest"] = total - sum(out.values())
    out["total"] = total
    return out


# batch size -> "engine" / "bare" -> one dict of us per step per run
SharedRuns = dict[int, dict[str, list[dict[str, float]]]]


def measure_shared_pieces(batch_sizes: list[int], repeats: int, epochs: int,
                          task_kwargs: dict[str, Any]) -> SharedRuns:
    """``repeats`` interleaved instrumented engine / bare runs per batch size (after a warm-up)."""
    out: SharedRuns = {}
    for bs in batch_sizes:
        steps = epochs * steps_per_epoch(bs, task_kwargs)  # builds a task: once, not per run
        shared_pieces_run("engine", bs, epochs, task_kwargs, steps)
        shared_pieces_run("bare", bs, epochs, task_kwargs, steps)
        runs: dict[str, list[dict[str, float]]] = {"engine": [], "bare": []}
        for r in range(repeats):
            for side in ("engine", "bare"):
                gc.collect()
                runs[side].append(shared_pieces_run(side, bs, epochs, task_kwargs, steps))
            print(f"batch {bs} pieces rep {r + 1}/{repeats}: engine "
                  f"{runs['engine'][-1]['total']:.0f} us/step, bare "
                  f"{runs['bare'][-1]['total']:.0f} us/step", file=sys.stderr, flush=True)
        out[bs] = runs
    return out


def report_shared_pieces(runs: SharedRuns) -> str:
    """Per-step microseconds of each shared piece, engine and bare, medians over the runs."""
    sizes = list(runs)
    lines = ["the work both loops share, timed alike in interleaved instrumented runs (us per "
             "optimizer step, median over the runs; engine - bare in the last column of each "
             "batch size)", "",
             "| piece | " + " | ".join(f"batch {bs} engine | bare | difference" for bs in sizes)
             + " |",
             "|---|" + "---:|---:|---:|" * len(sizes)]
    labels = {key: label for key, (label, _, _) in SHARED.items()}
    labels["rest"] = "rest: data loading and the loop's own work"
    labels["total"] = "training time per step"
    for key, label in labels.items():
        cells = []
        for bs in sizes:
            e = statistics.median(r[key] for r in runs[bs]["engine"])
            b = statistics.median(r[key] for r in runs[bs]["bare"])
            cells.append(f"{e:.0f} | {b:.0f} | {e - b:+.0f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_pieces(pieces: dict[int, dict[str, float]], rows: list[Row],
                  task_kwargs: dict[str, Any]) -> str:
    """Per-step cost of each timed piece per batch size, against the measured overhead."""
    sizes = [row.batch_size for row in rows]
    lines = ["per-step extras of run_task's loop, timed in place in one instrumented engine run "
             "per batch size (us per optimizer step)", "",
             "| piece | " + " | ".join(f"batch {bs}" for bs in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for key, (label, _) in PIECES.items():
        lines.append(f"| {label} | " + " | ".join(f"{pieces[bs][key]:.0f}" for bs in sizes) + " |")
    total = {bs: sum(pieces[bs].values()) for bs in sizes}
    measured, bare = {}, {}
    for row in rows:
        steps = steps_per_epoch(row.batch_size, task_kwargs)
        bare[row.batch_size] = 1e6 * statistics.median(row.bare) / steps
        measured[row.batch_size] = 1e6 * (statistics.median(row.engine)
                                          - statistics.median(row.bare)) / steps
    lines += ["| sum of the timed pieces | " + " | ".join(f"{total[bs]:.0f}" for bs in sizes)
              + " |",
              "| same, in % of the bare step | "
              + " | ".join(f"{100 * total[bs] / bare[bs]:.1f}" for bs in sizes) + " |",
              "| measured overhead (table above: engine - bare medians) | "
              + " | ".join(f"{measured[bs]:.0f}" for bs in sizes) + " |",
              "| bare step (table above) | " + " | ".join(f"{bare[bs]:.0f}" for bs in sizes)
              + " |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse the options, measure, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="interleaved engine/bare pairs")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run")
    ap.add_argument("--batch_sizes", default="128,32", help="comma list")
    ap.add_argument("--num_train", type=int, default=None,
                    help="synthetic train examples (default: the task's 8000)")
    ap.add_argument("--breakdown", action="store_true",
                    help="instrumented runs timing accelerate's per-step wrappers; run_task "
                    "bypasses them without gradient accumulation or an fp16 scaler, so this "
                    "only describes runs with --grad_accum > 1 or fp16")
    ap.add_argument("--pieces", action="store_true",
                    help="interleaved instrumented runs timing the work both loops share")
    ap.add_argument("--no-what-if", dest="what_if", action="store_false",
                    help="skip the third run per repetition (is_lomo_available memoized)")
    args = ap.parse_args(argv)
    task_kwargs: dict[str, Any] = {}
    if args.num_train is not None:
        task_kwargs["num_train"] = args.num_train
    sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    rows = measure(sizes, args.repeats, args.epochs, task_kwargs, args.what_if)
    pieces: dict[int, dict[str, float]] = {}
    if args.breakdown:
        pieces = {bs: instrumented_pieces(bs, args.epochs, task_kwargs) for bs in sizes}
    shared = (measure_shared_pieces(sizes, args.repeats, args.epochs, task_kwargs)
              if args.pieces else {})
    print(report(rows, args.repeats, args.epochs, task_kwargs))
    if args.breakdown:
        print()
        print(report_pieces(pieces, rows, task_kwargs))
    if shared:
        print()
        print(report_shared_pieces(shared))
    print()
    print(report_target(rows))


if __name__ == "__main__":
    main()
