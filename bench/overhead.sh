#!/usr/bin/env bash
# System overhead: Kiln and a FastAPI + uvicorn + PyTorch peer (bench/peer/identity_server.py)
# serve the same model, test-identity, whose denoiser returns its input, so what is timed is the
# serving path (HTTP, parsing, scheduling, tokenizer, text encoder, sampler loop, PNG, base64).
# Both get the same request from the same closed-loop client (http_load), one server at a time,
# on 127.0.0.1 only, and the script prints a markdown table with the ratios.
#
# Usage: bench/overhead.sh [--kiln build/kiln] [--load build/kiln_bench_http_load]
#          [--client http_load|loadtest] [--models build/test-models] [--python /usr/bin/python3]
#          [--requests 5000] [--concurrency 8] [--warmup 200]
# --client loadtest drives both servers with `kiln loadtest` (the user-facing load tester)
# instead of the minimal benchmark client. The models folder comes from `make test-models`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KILN=build/kiln
LOAD=build/kiln_bench_http_load
MODELS=build/test-models
PYTHON=/usr/bin/python3
REQUESTS=5000
CONCURRENCY=8
WARMUP=200
MODEL=test-identity
READY_TIMEOUT_S=60

CLIENT=http_load

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [[ $# -gt 0 ]]; do
  [[ $# -ge 2 ]] || usage
  case "$1" in
    --kiln) KILN=$2 ;;
    --load) LOAD=$2 ;;
    --client) CLIENT=$2 ;;
    --models) MODELS=$2 ;;
    --python) PYTHON=$2 ;;
    --requests) REQUESTS=$2 ;;
    --concurrency) CONCURRENCY=$2 ;;
    --warmup) WARMUP=$2 ;;
    *) usage ;;
  esac
  shift 2
done

die() { echo "overhead.sh: $*" >&2; exit 1; }
[[ -x $KILN ]] || die "no kiln binary at $KILN (make build)"
[[ $CLIENT == http_load || $CLIENT == loadtest ]] || die "--client must be http_load or loadtest"
[[ $CLIENT == loadtest || -x $LOAD ]] ||
  die "no load generator at $LOAD (build the kiln_bench_http_load target)"
[[ -f $MODELS/$MODEL/model.yaml ]] || die "no $MODELS/$MODEL (make test-models)"
"$PYTHON" -c 'import fastapi, uvicorn, torch, PIL, yaml' 2>/dev/null ||
  die "$PYTHON lacks the peer's modules (apt-get install python3-fastapi python3-uvicorn python3-pil)"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready PID URL LOG: polls URL until it answers 2xx, for at most READY_TIMEOUT_S seconds.
wait_ready() {
  local pid=$1 url=$2 log=$3 deadline=$((SECONDS + READY_TIMEOUT_S))
  until curl -sf --max-time 2 -o /dev/null "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2
      die "the server exited before answering $url"
    fi
    ((SECONDS < deadline)) || die "$url did not answer within ${READY_TIMEOUT_S} s (log: $log)"
    sleep 0.2
  done
}

# stop PID: ends one server started here and forgets it.
stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local kept=()
  for pid in "${PIDS[@]}"; do [[ $pid == "$1" ]] || kept+=("$pid"); done
  PIDS=("${kept[@]}")
}

BODY="{\"prompt\":\"a red circle\",\"model\":\"$MODEL\",\"steps\":1,\"seed\":1,\"size\":\"32x32\",\"guidance_scale\":1.0,\"n\":1}"
PATH_=/v1/images/generations

# load PORT OUT: the same client run against either server.
load() {
  if [[ $CLIENT == loadtest ]]; then
    echo "{\"request\": $BODY}" >"$WORK/mix.jsonl"
    "$KILN" loadtest --server "http://127.0.0.1:$1" --mix "$WORK/mix.jsonl" --json --quiet \
      --concurrency "$CONCURRENCY" --requests "$WARMUP" >/dev/null || true
    "$KILN" loadtest --server "http://127.0.0.1:$1" --mix "$WORK/mix.jsonl" --json --quiet \
      --concurrency "$CONCURRENCY" --requests "$REQUESTS" >"$2.loadtest" || true
    [[ -s $2.loadtest ]] || die "kiln loadtest printed nothing for port $1"
    # The same fields as http_load's report.
    "$PYTHON" -c '
import json, sys
r = json.load(open(sys.argv[1])); l = r["latency_seconds"]
print(json.dumps({"requests": r["sent"], "ok": r["ok"], "non_200": r["failed"], "errors": 0,
                  "rps": r["throughput_rps"], "p50_us": l["p50"] * 1e6, "p90_us": l["p90"] * 1e6,
                  "p99_us": l["p99"] * 1e6, "max_us": l["max"] * 1e6}))' "$2.loadtest" >"$2"
    return
  fi
  "$LOAD" --url "http://127.0.0.1:$1$PATH_" --body "$BODY" --concurrency "$CONCURRENCY" \
    --requests "$REQUESTS" --warmup "$WARMUP" >"$2" || true
  [[ -s $2 ]] || die "the load generator printed nothing for port $1"
}

# Kiln serves a folder with only test-identity in it, as the peer does.
mkdir -p "$WORK/models" "$WORK/data"
ln -s "$(cd "$MODELS/$MODEL" && pwd)" "$WORK/models/$MODEL"

PORT=$(free_port)
"$KILN" serve --host 127.0.0.1 --port "$PORT" --models "$WORK/models" --data "$WORK/data" \
  --threads 1 ${KILN_ARGS:-} >"$WORK/kiln.log" 2>&1 &
KILN_PID=$!
PIDS+=("$KILN_PID")
wait_ready "$KILN_PID" "http://127.0.0.1:$PORT/healthz" "$WORK/kiln.log"
wait_ready "$KILN_PID" "http://127.0.0.1:$PORT/readyz" "$WORK/kiln.log"
echo "kiln: 127.0.0.1:$PORT, $REQUESTS requests at concurrency $CONCURRENCY (warm-up $WARMUP)" >&2
load "$PORT" "$WORK/kiln.json"
stop "$KILN_PID"

PORT=$(free_port)
"$PYTHON" "$ROOT/bench/peer/identity_server.py" --model-dir "$MODELS/$MODEL" --host 127.0.0.1 \
  --port "$PORT" --threads 1 >"$WORK/peer.log" 2>&1 &
PEER_PID=$!
PIDS+=("$PEER_PID")
wait_ready "$PEER_PID" "http://127.0.0.1:$PORT/healthz" "$WORK/peer.log"
echo "peer: 127.0.0.1:$PORT, $REQUESTS requests at concurrency $CONCURRENCY (warm-up $WARMUP)" >&2
load "$PORT" "$WORK/peer.json"
stop "$PEER_PID"

CLIENT=$CLIENT "$PYTHON" - "$WORK/kiln.json" "$WORK/peer.json" "$CONCURRENCY" "$REQUESTS" <<'EOF'
import json
import os
import sys

kiln, peer = (json.load(open(p)) for p in sys.argv[1:3])
concurrency, requests = sys.argv[3], sys.argv[4]
print(f"System overhead ({os.environ.get('CLIENT', 'http_load')} client): {os.cpu_count()} CPUs, test-identity 32x32, steps 1, guidance 1.0, "
      f"{requests} requests at concurrency {concurrency}, torch threads 1\n")
print("| server | ok / requests | failed | rps | p50 ms | p90 ms | p99 ms |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, r in (("Kiln", kiln), ("FastAPI + uvicorn + PyTorch", peer)):
    failed = r["non_200"] + r["errors"]
    print(f"| {name} | {r['ok']} / {r['requests']} | {failed} | {r['rps']:.1f} | "
          f"{r['p50_us'] / 1e3:.2f} | {r['p90_us'] / 1e3:.2f} | {r['p99_us'] / 1e3:.2f} |")
ratio = kiln["rps"] / peer["rps"] if peer["rps"] else float("nan")
diff = (peer["p50_us"] - kiln["p50_us"]) / 1e3
print(f"\nKiln / peer throughput: {ratio:.2f}x; p50: Kiln {kiln['p50_us'] / 1e3:.2f} ms, "
      f"peer {peer['p50_us'] / 1e3:.2f} ms (peer - Kiln = {diff:+.2f} ms)")
if any(r["ok"] != r["requests"] for r in (kiln, peer)):
    print("\nWARNING: some requests failed; the numbers above are not comparable.")
    sys.exit(1)
EOF
