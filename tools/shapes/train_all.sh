#!/usr/bin/env bash
# Retrains tiny-shapes from scratch with the fixed seed, exports it to models/tiny-shapes and
# evaluates it. Takes about an hour on 2 CPU cores; run it in the background:
#   nohup bash tools/shapes/train_all.sh > tools/shapes/runs/train_all.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")"
PY=/usr/bin/python3
RUN=runs/fresh-$(date +%Y%m%d-%H%M%S)
ITERS=${ITERS:-8000}
$PY evaluate.py selftest
# The shipped model: 9,671 iterations at batch 128 (edit share 0.45, lr 1e-3), resumed for 8,921
# more (edit share 0.65, lr 6e-4) and 6,078 more (edit share 0.6, lr 4e-4), on a GPU
# (--device cuda). On 2 CPU cores expect ~0.45 s per batch-32 iteration.
$PY train.py --out "$RUN" --iters "$ITERS" --batch 32 --seed 1234
$PY export.py --run "$RUN" --out ../../models/tiny-shapes
$PY evaluate.py model --model ../../models/tiny-shapes --out ../../models/tiny-shapes/eval.json
