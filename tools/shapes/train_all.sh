#!/usr/bin/env bash
# Retrains tiny-shapes from scratch with fixed seeds, exports it to models/tiny-shapes and
# evaluates it. Takes about two hours on 2 CPU cores; run it in the background:
#   nohup bash tools/shapes/train_all.sh > tools/shapes/runs/train_all.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-$(cd ../.. && pwd)/.venv/bin/python}
STAMP=$(date +%Y%m%d-%H%M%S)
BASE=runs/fresh-$STAMP
FT=runs/fresh-$STAMP-edits
ITERS=${ITERS:-8000}
FT_ITERS=${FT_ITERS:-6500}
$PY evaluate.py selftest
# 1. The base model, from scratch. The shipped one: 9,671 iterations at batch 128 (edit share
#    0.45, lr 1e-3), resumed for 8,921 more (edit share 0.65, lr 6e-4) and 6,078 more (edit
#    share 0.6, lr 4e-4), on a GPU (--device cuda). On 2 CPU cores expect ~0.45 s per batch-32
#    iteration.
$PY train.py --out "$BASE" --iters "$ITERS" --batch 32 --seed 1234
$PY export.py --run "$BASE" --out "$BASE/model"
# 2. The edit fine-tune that the shipped model had (6,533 iterations on 2 CPU cores): a summary
#    of the source image for every position (--source-summary), the noisy steps weighted by
#    their error in the image (--x0-weight), moves drawn 3x as often.
$PY train.py --out "$FT" --init "$BASE/model" --source-summary --x0-weight 25 --batch 32 \
  --lr 1e-3 --pretrained-lr-scale 0.1 --edit-frac 0.7 --move-weight 3 --iters "$FT_ITERS" \
  --seed 778
$PY export.py --run "$FT" --out ../../models/tiny-shapes
$PY evaluate.py model --model ../../models/tiny-shapes --out ../../models/tiny-shapes/eval.json
