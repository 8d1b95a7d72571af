#!/usr/bin/env bash
# Step-level vs request-level batching on tiny-shapes with two image sizes (docs/benchmarks.md).
# The model was trained at 32x32; a temporary copy of its folder also lists 64x64, used as load.
# Usage: bench/batching.sh [REQUESTS=120] [RATE=25] [ROUNDS=2] [THREADS=1] [MAX_ROWS=16]
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r models/tiny-shapes "$tmp/"
sed -i 's/^sizes: \["32x32"\]$/sizes: ["32x32", "64x64"]/' "$tmp/tiny-shapes/model.yaml"
grep -q '"64x64"' "$tmp/tiny-shapes/model.yaml" || { echo "could not add 64x64 to model.yaml" >&2; exit 1; }
build/kiln_bench_batching "$tmp" tiny-shapes "${1:-120}" "${2:-25}" "${3:-2}" "${4:-1}" "${5:-16}"
