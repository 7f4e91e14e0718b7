"""Training throughput of MLLB's image plugin against timm's own ``train.py``, same settings.

Both train the same timm backbone (default ``tf_efficientnetv2_s``, random init) with a
global-average-pool + linear head, at the same square image size, global batch and autocast
precision, from the same generated JPEGs, with the same number of loader workers, in one
process on one device:

* **MLLB**: ``python run_task.py --task coco --model timm_image --model.backbone B ...`` (the
  image plugin: flip + RandAugment ``rand-m9-mstd0.5`` + Cutout on a square resize, multi-label
  targets, BCE-with-logits, AdamW, OneCycle). Its per-epoch rate is the ``ex/s`` that
  run_task.py prints after each epoch: examples / wall time of the epoch's training loop (the
  loader included, dev evaluation and checkpointing not).
* **timm**: ``python TRAIN_PY --data-dir VIEW ...`` with the same work per image: the same
  RandAugment policy (``--aa rand-m9-mstd0.5``), flip, and MLLB's geometry (its random resized
  crop pinned to the whole image, ``--scale 1 1 --ratio 4/3 4/3``, resized to the square with
  bicubic interpolation, as MLLB resizes with the backbone's data config); single-label
  cross-entropy over the same 80 classes (an image's first label), AdamW, cosine. Its per-epoch
  rate is the average in the last ``Train:`` log line of the epoch: batch / mean update time
  over the epoch (loader waits included; its validation and checkpointing not). ``VIEW`` is a
  folder-per-class view (symbolic links) of the same training images.

What still differs: MLLB's Cutout (about 0.5 ms of a 10 ms image on one core), the loss
(multi-label against single-label: negligible at 80 classes), timm's persistent loader workers
(MLLB starts its workers every epoch, which keeps a resumed run's augmentations those of an
uninterrupted one), the memory layout (on CUDA MLLB converts the model to channels-last,
``--channels_last auto``; timm's train.py does so only with ``--channels-last``, which
``--timm-channels-last`` adds as a third side) and each side's own loop. Both set
``cudnn.benchmark``. The table shows each side's first epoch (cuDNN autotuning, worker start)
apart from the steady state (epochs 2 and later). Every repetition runs every side once, in an
order rotated each repetition (R interleaved repetitions); the table gives medians over
repetitions and the median of the per-repetition ratio MLLB / side.

``TRAIN_PY`` is timm's training script from the pytorch-image-models repository (it is not part
of the ``timm`` wheel); take the one of the installed timm's release. Benchmarks are not tests:
nothing is asserted. Run (repository root, a CUDA machine)::

    python benchmarks/timm_train_compare.py --timm-train /path/to/pytorch-image-models/train.py
    python benchmarks/timm_train_compare.py --timm-train train.py --precision no --device cpu \\
        --backbone test_efficientnet_gn --image-size 64 --batch-size 8 --images 64 --workers 0
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from image_pipeline import synthetic_coco  # noqa: E402

from mllb_core.provenance import code_version  # noqa: E402
from tasks import create_task  # noqa: E402

OURS_EPOCH = re.compile(r" epoch (\d+): train loss .*, ([0-9.]+) ex/s$", re.M)
# "Train: 1 [  23/24 (100%)]  Loss: ... Time: 0.180s,  355.1/s  (0.190s,  336.8/s)  LR: ..."
TIMM_EPOCH = re.compile(
    r"Train: (\d+) \[\s*\d+/\d+ \(100%\)\].*?Time: [0-9.]+s,\s*[0-9.]+/s\s+"
    r"\(([0-9.]+)s,\s*([0-9.]+)/s\)")


def class_view(data: Path, view: Path) -> tuple[int, int]:
    """timm's folder-per-class layout (``VIEW/train/<class>/``, ``VIEW/val/<class>/``) of the
    COCO-layout synthetic set, as symbolic links; an image's class is its first label.
    Returns (training images, validation images)."""
    counts = []
    for split, sub in (("train2017", "train"), ("val2017", "val")):
        ann = json.loads((data / "annotations" / f"instances_{split}.json").read_text())
        first: dict[int, int] = {}
        for a in ann["annotations"]:
            first.setdefault(a["image_id"], a["category_id"])
        for img in ann["images"]:
            folder = view / sub / f"c{first[img['id']]:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / img["file_name"]).symlink_to(data / "images" / split / img["file_name"])
        counts.append(len(ann["images"]))
    return counts[0], counts[1]


def ours_command(args: argparse.Namespace, data: Path, out: Path) -> list[str]:
    """run_task.py on the synthetic COCO set: one cell, BCE, the plugin's default augmentation."""
    return [sys.executable, str(REPO / "run_task.py"), "--task", "coco", "--data_dir", str(data),
            "--model", "timm_image", "--model.backbone", args.backbone,
            "--model.image_size", str(args.image_size), "--loss", "bce",
            "--mixed_precision", args.precision, "--epochs", str(args.epochs),
            "--batch_size", str(args.batch_size), "--eval_batch_size", str(2 * args.batch_size),
            "--num_workers", str(args.workers), "--lr", "0.002", "--output_dir", str(out),
            "--save_scores", "false", "--overwrite"]


def timm_command(args: argparse.Namespace, view: Path, out: Path) -> list[str]:
    """timm's train.py on the class view of the same images, same model and settings."""
    cmd = [sys.executable, str(args.timm_train), "--data-dir", str(view), "--train-split",
           "train", "--val-split", "val", "--model", args.backbone, "--num-classes", "80",
           "--img-size", str(args.image_size), "--batch-size", str(args.batch_size),
           "--validation-batch-size", str(2 * args.batch_size), "--epochs", str(args.epochs),
           "--opt", "adamw", "--lr", "0.002", "--weight-decay", "1e-4", "--sched", "cosine",
           "--warmup-epochs", "0", "--workers", str(args.workers), "--aa", "rand-m9-mstd0.5",
           # MLLB's geometry: the whole 640x480 image (area 1, aspect 4:3) resized to a square
           # with the backbone's bicubic, not a random resized crop
           "--scale", "1.0", "1.0", "--ratio", str(640 / 480), str(640 / 480),
           "--train-interpolation", "bicubic",
           "--log-interval", "100000", "--checkpoint-hist", "1", "--output", str(out),
           "--device", args.device]
    if args.precision != "no":
        cmd += ["--amp", "--amp-dtype", {"bf16": "bfloat16", "fp16": "float16"}[args.precision]]
    return cmd


def run(cmd: list[str], pattern: re.Pattern[str], rate_group: int, log: Path,
        env: dict[str, str]) -> list[float]:
    """Run ``cmd`` (output appended to ``log``); the per-epoch rates its log reports."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    text = proc.stdout + proc.stderr
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(cmd)}\n# rc {proc.returncode}, "
                 f"{time.perf_counter() - t0:.1f} s\n{text}\n")
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[1]} failed (rc {proc.returncode}); its output is in {log}:\n"
                         + text[-3000:])
    rates = {int(m.group(1)): float(m.group(rate_group)) for m in pattern.finditer(text)}
    if not rates:
        raise SystemExit(f"no per-epoch rate found in the output of {cmd[1]}; see {log}")
    return [rates[k] for k in sorted(rates)]


def main(argv: list[str] | None = None) -> int:
    """Generate the images, run the interleaved repetitions, print the markdown table."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--timm-train", type=Path, required=True, help="timm's train.py")
    p.add_argument("--backbone", default="tf_efficientnetv2_s")
    p.add_argument("--image-size", type=int, default=448)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--precision", default="bf16", choices=["no", "bf16", "fp16"])
    p.add_argument("--device", default="cuda", help="timm's --device; run_task.py picks "
                   "the accelerator accelerate finds")
    p.add_argument("--images", type=int, default=1280,
                   help="generated training images of the COCO set; MLLB holds out its dev "
                        "split (the task's hold-out fraction) and trains on the rest, timm's "
                        "view gets as many")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--timm-channels-last", action="store_true",
                   help="also run timm's train.py with --channels-last (MLLB's default layout "
                        "on CUDA, --channels_last auto), a third side of every repetition")
    p.add_argument("--time-budget", type=float, default=0.0,
                   help="seconds for the whole benchmark (0: no limit): a repetition that "
                        "would end past it, judged by the longest one so far, is not started; "
                        "the table then gives the repetitions that finished")
    p.add_argument("--log", type=Path, default=None, help="full output of every run "
                   "(default: a file in the temporary directory, deleted)")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be >= 2: the steady state is epochs 2 and later")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        log = args.log or tmp / "runs.log"
        t0 = time.perf_counter()
        data = synthetic_coco(tmp / "coco", args.images, n_val=2 * args.batch_size)
        # timm's view: as many training images as MLLB trains on (the task's own split)
        subset = tmp / "coco_train_part"
        n_train = create_task("coco", data_dir=str(data), check_images="off").num_rows("train")
        make_subset(data, subset, n_train)
        n_view, n_val = class_view(subset, tmp / "view")
        print(f"generated {args.images} + {2 * args.batch_size} images in "
              f"{time.perf_counter() - t0:.1f} s; timm's view: {n_view} train, {n_val} val",
              flush=True)
        sides = {
            "MLLB run_task.py": lambda out: (ours_command(args, data, out), OURS_EPOCH, 2),
            "timm train.py": lambda out: (timm_command(args, tmp / "view", out), TIMM_EPOCH, 3),
        }
        if args.timm_channels_last:
            sides["timm train.py --channels-last"] = lambda out: (
                [*timm_command(args, tmp / "view", out), "--channels-last"], TIMM_EPOCH, 3)
        rates: dict[str, list[list[float]]] = {name: [] for name in sides}
        names = list(sides)
        longest = 0.0
        for rep in range(args.repeats):
            if args.time_budget and time.perf_counter() - t0 + longest > args.time_budget:
                print(f"time budget of {args.time_budget:g} s: {rep} of {args.repeats} "
                      "repetitions ran", flush=True)
                break
            t_rep = time.perf_counter()
            # every side first once in a while: rotate the order each repetition
            for k in range(len(names)):
                name = names[(rep + k) % len(names)]
                rates[name].append(run(*sides[name](tmp / f"out{rep}_{k}"), log, env))
            longest = max(longest, time.perf_counter() - t_rep)
            print(f"repetition {rep + 1}: " + "; ".join(
                f"{name} {fmt(r[-1])}" for name, r in rates.items()) + " images/s per epoch",
                flush=True)
        if not rates["MLLB run_task.py"]:
            print("no repetition finished within the time budget")
            return 0
        print(table(args, rates, n_train))
    return 0


def make_subset(data: Path, dest: Path, n: int) -> None:
    """A COCO-layout copy (links) of ``data`` with the first ``n`` training images."""
    for split in ("train2017", "val2017"):
        ann = json.loads((data / "annotations" / f"instances_{split}.json").read_text())
        if split == "train2017":
            keep = {img["id"] for img in ann["images"][:n]}
            ann["images"] = [img for img in ann["images"] if img["id"] in keep]
            ann["annotations"] = [a for a in ann["annotations"] if a["image_id"] in keep]
        (dest / "annotations").mkdir(parents=True, exist_ok=True)
        (dest / "annotations" / f"instances_{split}.json").write_text(json.dumps(ann))
        (dest / "images").mkdir(parents=True, exist_ok=True)
        if not (dest / "images" / split).exists():
            (dest / "images" / split).symlink_to(data / "images" / split)


def fmt(rates: list[float]) -> str:
    """'312.4, 340.1' for a list of per-epoch rates."""
    return ", ".join(f"{r:.1f}" for r in rates)


def steady(rates: list[float]) -> float:
    """Mean rate of the epochs after the first."""
    return statistics.mean(rates[1:])


def table(args: argparse.Namespace, rates: dict[str, list[list[float]]], n_train: int) -> str:
    """The markdown table of medians and per-repetition ratios (MLLB / each timm side)."""
    import torch

    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    med = statistics.median
    ours_name = next(iter(rates))
    ours = rates[ours_name]
    lines = [
        f"backbone {args.backbone} + GAP + linear, {args.image_size} px, batch {args.batch_size}"
        f", precision {args.precision}, {args.workers} loader workers, {n_train} training images"
        f" per epoch, {args.epochs} epochs; {code_version()}; device {dev}, torch "
        f"{torch.__version__}, cpu count {os.cpu_count()}; medians of {len(ours)} interleaved "
        "repetitions",
        "",
        "| side | epoch 1 images/s | epochs 2+ images/s (steady) | MLLB / side, epoch 1 "
        "| MLLB / side, steady |",
        "|---|---:|---:|---:|---:|",
    ]
    verdict = []
    for name, runs in rates.items():
        first = med(a[0] / b[0] for a, b in zip(ours, runs, strict=True))
        per_rep = [steady(a) / steady(b) for a, b in zip(ours, runs, strict=True)]
        lines.append(f"| {name} | {med(r[0] for r in runs):.1f} "
                     f"| {med(steady(r) for r in runs):.1f} | {first:.2f}x | {med(per_rep):.2f}x |")
        if name != ours_name:
            verdict.append(f"MLLB / {name}, steady, per repetition: "
                           + ", ".join(f"{r:.2f}" for r in per_rep))
            if name == "timm train.py":
                verdict.append(f"- {'PASS' if med(per_rep) >= 1.0 else 'FAIL'} MLLB / timm "
                               f"train.py (its defaults otherwise) steady throughput "
                               f"{med(per_rep):.2f}x >= 1.0x")
    return "\n".join([*lines, "", *verdict])


if __name__ == "__main__":
    sys.exit(main())
