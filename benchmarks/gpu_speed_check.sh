#!/bin/bash
# Issue 16's GPU checks in one call, on a CUDA machine, from the repository root:
#   1. benchmarks/loss_speed.py at 1024x9605, float32 and bfloat16 inputs, the reference, the
#      memory floor and the compiled family only (--compiled-only), each loss through both
#      backwards in one process (--triton-backward both: the library's, judged, and the other,
#      not judged): the compiled family against eager BCE-with-logits;
#   1b. benchmarks/gpu_loss_breakdown.py, float32 and bfloat16: one compiled call's host and
#      device time layer by layer, the Python backward node against native autograd nodes;
#   2. a bf16 end-to-end run_task.py of the coco config aam_coco_paper (2 epochs) on COCO_DIR;
#   3. benchmarks/timm_train_compare.py: the image plugin's training throughput against timm's
#      train.py (TIMM_TRAIN), EfficientNetV2-S, 448 px, batch 64, bf16. 1280 images: 1152 to
#      train on (18 full batches) and 128 held out (1 full evaluation batch), so that no
#      partial batch makes cuDNN time its algorithms again (on 2026-11-27 runs with 1024
#      images, whose MLLB side had partial batches, took 35-77 s each); two sides, to fit 5
#      repetitions (add --timm-channels-last for timm with channels-last as a third);
#   4. tests/test_losses/triton_check.py --device cuda --quick: the compiled family's Triton
#      kernel, through both backwards, against float64 eager on the GPU (last: it times
#      nothing).
# Environment: OUT (output folder, default /tmp/mllb_gpu), TIMM_TRAIN (timm's train.py of the
# installed timm's release; step 3 is skipped without it), COCO_DIR (a COCO-layout folder with
# instances_train2017/val2017.json, e.g. the shared coco_tiny_supergradients; step 2 is skipped
# without it). LIMIT (default 580): seconds for the whole script; each step has its own limit
# inside it, and a failed step does not stop the others. STEPS (default "loss breakdown e2e
# timm check"): the steps to run.
set -o pipefail
OUT=${OUT:-/tmp/mllb_gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
T0=$SECONDS
LIMIT=${LIMIT:-580}
STEPS=${STEPS:-loss breakdown e2e timm check}
nvidia-smi -L
python3 -c "import torch, timm, accelerate, triton; print('torch', torch.__version__, 'timm', \
timm.__version__, 'accelerate', accelerate.__version__, 'triton', triton.__version__)"
if [[ " $STEPS " == *" loss "* ]]; then
for dtype in float32 bfloat16; do
  timeout 140 python3 benchmarks/loss_speed.py --device cuda --dtype "$dtype" \
    --shapes 1024x9605 --triton-backward both --compiled-only \
    --markdown "$OUT/loss_speed_cuda_$dtype.md" > /dev/null \
    2> >(grep -v "^W[0-9]" >&2) || echo "loss_speed $dtype: rc $?"
  echo "[$((SECONDS - T0)) s] loss_speed $dtype done"
done
fi
if [[ " $STEPS " == *" breakdown "* ]]; then
for dtype in float32 bfloat16; do
  timeout 60 python3 benchmarks/gpu_loss_breakdown.py --dtype "$dtype" --out "$OUT/breakdown" \
    > "$OUT/breakdown_$dtype.txt" 2>&1 || echo "gpu_loss_breakdown $dtype: rc $?"
  sed -n '/^| call/,/^$/p;/launches directly/p' "$OUT/breakdown_$dtype.txt"
  echo "[$((SECONDS - T0)) s] breakdown $dtype done"
done
fi
if [ -n "$COCO_DIR" ] && [[ " $STEPS " == *" e2e "* ]]; then
  timeout 90 python3 run_task.py --config image_classification/aam_coco_paper \
    --data_dir "$COCO_DIR" --epochs 2 --model.pretrained_path "" --num_workers 8 \
    --output_dir "$OUT/e2e" --save_scores false 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" \
    | tail -25 || echo "end-to-end run: rc $?"
  echo "[$((SECONDS - T0)) s] end-to-end done"
fi
if [ -n "$TIMM_TRAIN" ] && [[ " $STEPS " == *" timm "* ]]; then
  LEFT=$((LIMIT - (SECONDS - T0) - 10))
  timeout "$LEFT" python3 benchmarks/timm_train_compare.py --timm-train "$TIMM_TRAIN" \
    --images 1280 --repeats 5 --time-budget $((LEFT - 10)) \
    --log "$OUT/timm_compare_runs.log" | tee "$OUT/timm_compare.md" \
    || echo "timm_train_compare: rc $?"
  echo "[$((SECONDS - T0)) s] timm comparison done"
fi
if [[ " $STEPS " == *" check "* ]]; then
  LEFT=$((LIMIT - (SECONDS - T0) - 5))
  timeout "$((LEFT < 150 ? LEFT : 150))" python3 tests/test_losses/triton_check.py \
    --device cuda --quick | grep -v "^ok" \
    || echo "triton_check: rc $?"
  echo "[$((SECONDS - T0)) s] triton_check done"
fi
for dtype in float32 bfloat16; do
  echo "== loss_speed cuda $dtype"
  sed -n '1p;/^| loss |/,/^$/p;/^- \(PASS\|FAIL\|(not judged\)/p' "$OUT/loss_speed_cuda_$dtype.md" \
    2>/dev/null
done
