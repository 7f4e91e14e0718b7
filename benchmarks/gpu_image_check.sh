#!/bin/bash
# GPU checks of the image plugin (run on a CUDA machine from the repository root; OUT = a folder
# for the outputs): bf16 training through run_task.py for every image head and loss on generated
# COCO-layout images (no data or weights needed), then benchmarks/image_pipeline.py at the papers'
# GPU setting (EfficientNet-V2-s + ML-Decoder, 448 px, bf16).
set -eo pipefail
OUT=${OUT:-/tmp/mllb_gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch, timm, accelerate; print('torch', torch.__version__, 'timm', timm.__version__, 'accelerate', accelerate.__version__)"
python3 -c "
import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path
from image_pipeline import synthetic_coco; synthetic_coco(Path('/tmp/synth'), 256)"
run() { accelerate launch --num_processes 1 --num_machines 1 --mixed_precision bf16 --dynamo_backend no \
  run_task.py --task coco --data_dir /tmp/synth --mixed_precision bf16 --epochs 2 --batch_size 32 \
  --eval_batch_size 64 --num_workers 8 --output_dir "$OUT/gpu_runs" --model.pretrained_path "" "$@"; }
run --model effnetv2_s_mldecoder --loss bce,asl@asl_coco,apl@apl_coco,aam@aam_coco
run --model effnet_lite0 --loss bce,aam@aam_coco
run --model effnet_lite0_assoc --loss asl@asl_assocformer
run --model tresnet_l_mldecoder --loss apl@apl_coco --batch_size 16
python3 benchmarks/image_pipeline.py --data synthetic --synthetic_images 1024 --device cuda \
  --mixed_precision bf16 --model effnetv2_s_mldecoder --image_size 448 --batch_size 64 \
  --workers 8,15 --steps 10 --repeats 5
