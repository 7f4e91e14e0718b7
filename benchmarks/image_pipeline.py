"""Image data pipeline against the model step: is the loader the bottleneck it is assumed not to be?

What it measures, per repetition (interleaved, after one untimed warm-up round):

* **load, W workers** (W = 0 and 2 by default): one pass of a ``DataLoader`` over the image
  task's training split with the training transform (JPEG decode, square resize, flip,
  RandAugment, Cutout, uint8 tensor), ``batch_size`` images per batch, the default collate, nothing
  else: images/s = images / wall time from creating the iterator (worker start-up included, as
  every epoch of ``run_task.py`` pays it with non-persistent workers) to the last batch.
* **step**: the model's training step alone on one uint8 batch already on the device
  (normalization, forward, loss, backward, AdamW step, zero_grad), ``steps`` times: images/s.
  On CUDA the model is channels-last and cuDNN times its algorithms, as in run_task.py
  (``--channels_last``; the GPU figures of 2026-11-22 in BENCHMARKS.md predate both).
* **epoch, W workers**: the two together, as ``run_task.py`` runs them: one pass over the loader
  with the training step on every batch: images/s.

The table gives medians over ``--repeats`` repetitions and, per loader setting, the ratio
load / step (above 1: decoding alone outruns the model) and epoch / step (the fraction of the
model's speed a real epoch keeps; 1.0 means the loader costs nothing). The per-repetition ratios
are measured within the same repetition, so machine noise shared by both sides cancels.

Data: ``--data coco128`` (the shared COCO images, train2017 minus the held-out part, 101 images)
or ``--data synthetic`` (generated 640x480 JPEGs, smooth gradients plus shapes at COCO's typical
size and quality, written to a temporary directory; used where the shared data is absent, e.g. on
the GPU machine). ``--device cuda --mixed_precision bf16`` times the step on a GPU with autocast.

Benchmarks are not tests: nothing is asserted. Run (repository root)::

    python benchmarks/image_pipeline.py                          # 2 CPU cores, effnet_lite0 224
    python benchmarks/image_pipeline.py --model effnet_lite0_mldecoder --repeats 5
    python benchmarks/image_pipeline.py --data synthetic --device cuda --mixed_precision bf16 \
        --model effnetv2_s_mldecoder --image_size 448 --batch_size 64 --workers 0,8
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.recipe import for_device
from losses import create_loss
from mllb_core.provenance import code_version
from models import create_model
from tasks import create_task


def _synthetic_image(path: Path, seed: tuple[int, int]) -> list[int]:
    """Write one 640x480 JPEG (quality 90): smooth gradients plus 8 filled ellipses; return the
    3 distinct category indices of its labels. Seeded per image, so the set does not depend on
    how many processes write it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:480, 0:640]
    base = np.stack([(xx * rng.uniform(0.1, 0.4) + yy * rng.uniform(0.1, 0.4)
                      + rng.uniform(0, 255)) % 256 for _ in range(3)], -1)
    img = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x, y = int(rng.integers(0, 600)), int(rng.integers(0, 440))
        draw.ellipse([x, y, x + int(rng.integers(20, 200)), y + int(rng.integers(20, 200))],
                     fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    img.save(path, quality=90)
    return [int(c) for c in rng.choice(80, 3, replace=False)]


def synthetic_coco(root: Path, n: int, n_val: int = 4) -> Path:
    """``n`` training and ``n_val`` validation 640x480 JPEGs (quality 90) in a COCO-layout
    directory (``images/<split>/``, ``annotations/instances_<split>.json``) with 80 categories,
    3 per image; written by every core in parallel."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    cats = [{"id": i + 1, "name": f"c{i}"} for i in range(80)]
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count()) as pool:
        for k, (split, count) in enumerate((("train2017", n), ("val2017", n_val))):
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            names = [f"{i:012d}.jpg" for i in range(count)]
            labels = pool.map(_synthetic_image, [root / "images" / split / name for name in names],
                              [(k, i) for i in range(count)], chunksize=16)
            images, anns = [], []
            for i, (name, cls) in enumerate(zip(names, labels, strict=True)):
                images.append({"id": i, "file_name": name, "height": 480, "width": 640})
                anns += [{"id": len(anns) + 1, "image_id": i, "category_id": c + 1,
                          "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 0} for c in cls]
            (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
                {"images": images, "annotations": anns, "categories": cats}))
    return root


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of ``fn()`` (CUDA work included)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    """Parse options, measure, print the markdown table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="coco128", choices=["coco128", "synthetic"])
    p.add_argument("--synthetic_images", type=int, default=128)
    p.add_argument("--model", default="effnet_lite0")
    p.add_argument("--image_size", type=int, default=0, help="0: the model's data config")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--workers", default="0,2")
    p.add_argument("--steps", type=int, default=5, help="timed model steps per repetition")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--mixed_precision", default="no", choices=["no", "bf16"])
    p.add_argument("--channels_last", default="auto", choices=["auto", "yes", "no"],
                   help="the model's memory layout, as run_task.py's option (auto: "
                        "channels-last on CUDA)")
    args = p.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        if args.data == "synthetic":
            task = create_task("coco", data_dir=str(synthetic_coco(Path(tmp) / "synth",
                                                                   args.synthetic_images)),
                               image_size=args.image_size)
        else:
            task = create_task("coco", dataset="coco128", image_size=args.image_size)
        torch.manual_seed(0)
        loss_fn = create_loss("bce")
        model = create_model(args.model, task.num_labels, head="linear", pretrained_path="")
        task.prepare_model(model)
        model = for_device(model, args.channels_last, device)  # as run_task.py
        model.to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        train = task.dataset("train")
        batch = next(iter(DataLoader(train, batch_size=args.batch_size)))
        images, targets = batch["image"].to(device), batch["targets"].to(device)
        autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                    if args.mixed_precision == "bf16" else contextlib.nullcontext())

        def step(x: torch.Tensor, y: torch.Tensor) -> None:
            with autocast:  # the task normalizes the uint8 batch on the device, as in run_task
                logits, y = task.logits_and_targets(model, {"image": x, "targets": y})
            loss_fn(logits.float(), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        def load(w: int) -> None:
            for _ in DataLoader(train, batch_size=args.batch_size, num_workers=w, shuffle=True):
                pass

        def epoch(w: int) -> None:
            for b in DataLoader(train, batch_size=args.batch_size, num_workers=w, shuffle=True):
                step(b["image"].to(device, non_blocking=True), b["targets"].to(device))

        def steps() -> None:
            for _ in range(args.steps):
                step(images, targets)

        n_img, n_step = len(train), args.steps * len(images)
        rows: dict[str, list[float]] = {}
        for rep in range(args.repeats + 1):  # repetition 0 warms up and is discarded
            r = {"step": n_step / timed(steps)}
            for w in workers:
                r[f"load{w}"] = n_img / timed(lambda w=w: load(w))
                r[f"epoch{w}"] = n_img / timed(lambda w=w: epoch(w))
            if rep:
                for k, v in r.items():
                    rows.setdefault(k, []).append(v)
                for w in workers:
                    rows.setdefault(f"load{w}/step", []).append(r[f"load{w}"] / r["step"])
                    rows.setdefault(f"epoch{w}/step", []).append(r[f"epoch{w}"] / r["step"])
            print(f"repetition {rep}{' (warm-up)' if rep == 0 else ''}: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in r.items()), file=sys.stderr)

    med = {k: statistics.median(v) for k, v in rows.items()}
    dev = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"\n{code_version()}; model {args.model}, input "
          f"{tuple(task.data_config['input_size'])}, batch {args.batch_size}, data {args.data} "
          f"({n_img} train images), device {dev}, "
          f"mixed precision {args.mixed_precision}, channels-last {args.channels_last}, "
          f"torch threads {torch.get_num_threads()}, "
          f"cpu count {os.cpu_count()}; medians of {args.repeats} repetitions\n")
    print(f"model step alone: {med['step']:.1f} images/s\n")
    print("| workers | load images/s | load / step | epoch images/s | epoch / step |")
    print("|---:|---:|---:|---:|---:|")
    for w in workers:
        print(f"| {w} | {med[f'load{w}']:.1f} | {med[f'load{w}/step']:.2f} | "
              f"{med[f'epoch{w}']:.1f} | {med[f'epoch{w}/step']:.2f} |")
    print("\nper-repetition ratios (min-max): " + "; ".join(
        f"{k} {min(v):.2f}-{max(v):.2f}" for k, v in rows.items() if "/" in k))


if __name__ == "__main__":
    main()
