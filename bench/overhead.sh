#!/usr/bin/env bash
# System overhead: Kiln and a FastAPI + uvicorn + PyTorch peer (bench/peer/identity_server.py)
# serve the same model, test-identity, whose denoiser returns its input, so what is timed is the
# serving path (HTTP, parsing, scheduling, tokenizer, text encoder, sampler loop, PNG, base64).
# Both get the same request from the same closed-loop client (http_load), one server at a time,
# on 127.0.0.1 only, and the script prints a markdown table with the ratios. The machine's speed
# drifts, so the servers take turns for --rounds rounds and the table shows medians.
# A third server sets the floor: bench/null_server.cc answers every request with the bytes Kiln
# answered and does nothing else, so the client's figures against it are what loopback, the
# kernel and the client cost on this machine. Kiln's p50 minus the floor's is Kiln's own share.
# Each server's own CPU time (user + system, from /proc/PID/stat) over the run, divided by the
# requests it answered, is reported beside the wall-clock figures: it is far steadier than wall
# time on a shared machine, and it is what predicts the cost of serving.
#
# Usage: bench/overhead.sh [--kiln build/kiln] [--load build/kiln_bench_http_load]
#          [--null build/kiln_bench_null_server] [--client http_load|loadtest]
#          [--models build/test-models] [--python .venv/bin/python]
#          [--requests 5000] [--concurrency 8] [--warmup 200] [--rounds 3]
# --client loadtest drives both servers with `kiln loadtest` (the user-facing load tester)
# instead of the minimal benchmark client. The models folder comes from `make test-models`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KILN=build/kiln
LOAD=build/kiln_bench_http_load
NULL_SERVER=build/kiln_bench_null_server
MODELS=build/test-models
PYTHON=$ROOT/.venv/bin/python
REQUESTS=5000
CONCURRENCY=8
WARMUP=200
ROUNDS=3
MODEL=test-identity
READY_TIMEOUT_S=60

CLIENT=http_load

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [[ $# -gt 0 ]]; do
  [[ $# -ge 2 ]] || usage
  case "$1" in
    --kiln) KILN=$2 ;;
    --load) LOAD=$2 ;;
    --null) NULL_SERVER=$2 ;;
    --client) CLIENT=$2 ;;
    --models) MODELS=$2 ;;
    --python) PYTHON=$2 ;;
    --requests) REQUESTS=$2 ;;
    --concurrency) CONCURRENCY=$2 ;;
    --warmup) WARMUP=$2 ;;
    --rounds) ROUNDS=$2 ;;
    *) usage ;;
  esac
  shift 2
done

die() { echo "overhead.sh: $*" >&2; exit 1; }
[[ -x $KILN ]] || die "no kiln binary at $KILN (make build)"
[[ $CLIENT == http_load || $CLIENT == loadtest ]] || die "--client must be http_load or loadtest"
[[ $CLIENT == loadtest || -x $LOAD ]] ||
  die "no load generator at $LOAD (build the kiln_bench_http_load target)"
[[ -x $NULL_SERVER ]] || die "no null server at $NULL_SERVER (build the kiln_bench_null_server target)"
[[ -f $MODELS/$MODEL/model.yaml ]] || die "no $MODELS/$MODEL (make test-models)"
"$PYTHON" -c 'import fastapi, uvicorn, uvloop, httptools, torch, PIL, yaml' 2>/dev/null ||
  die "$PYTHON lacks the peer's modules (run scripts/install-deps.sh)"

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

# start_server NAME PORT COMMAND...: runs COMMAND in the background (log: $WORK/NAME.log) until
# http://127.0.0.1:PORT/healthz answers; sets SERVER_PID.
start_server() {
  local name=$1 port=$2
  shift 2
  "$@" >"$WORK/$name.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_ready "$SERVER_PID" "http://127.0.0.1:$port/healthz" "$WORK/$name.log"
}

# cpu_ticks PID: user + system CPU time of the process so far, in clock ticks (fields 14 and 15
# of /proc/PID/stat, counted after the command name, which may contain spaces).
cpu_ticks() {
  local stat
  stat=$(<"/proc/$1/stat")
  stat=${stat##*) }
  read -r -a f <<<"$stat"
  echo $((f[11] + f[12]))
}

# measure NAME ROUND PORT: loads the server started last (round ROUND's report, with the server's
# CPU time added to it), then stops it.
measure() {
  echo "round $2 $1: 127.0.0.1:$3, $REQUESTS requests at concurrency $CONCURRENCY" >&2
  local before after
  before=$(cpu_ticks "$SERVER_PID")
  load "$3" "$WORK/$1.$2.json"
  after=$(cpu_ticks "$SERVER_PID")
  echo "$((after - before)) $(getconf CLK_TCK)" >"$WORK/$1.$2.cpu"
  stop "$SERVER_PID"
}

# The machine's speed drifts (it is shared), so the servers take turns, round after round, and
# the table shows each figure's median over the rounds.
for ((round = 1; round <= ROUNDS; round++)); do
  port=$(free_port)
  rm -rf "$WORK/data"
  start_server kiln "$port" "$KILN" serve --host 127.0.0.1 --port "$port" \
    --models "$WORK/models" --data "$WORK/data" --threads 1 ${KILN_ARGS:-}
  wait_ready "$SERVER_PID" "http://127.0.0.1:$port/readyz" "$WORK/kiln.log"
  if [[ ! -s $WORK/answer.json ]]; then
    curl -sf -o "$WORK/answer.json" -H 'Content-Type: application/json' -d "$BODY" \
      "http://127.0.0.1:$port$PATH_" || die "kiln did not answer the benchmark request"
  fi
  measure kiln "$round" "$port"

  port=$(free_port)
  start_server peer "$port" "$PYTHON" "$ROOT/bench/peer/identity_server.py" \
    --model-dir "$MODELS/$MODEL" --host 127.0.0.1 --port "$port" --threads 1
  measure peer "$round" "$port"

  port=$(free_port)
  start_server null "$port" "$NULL_SERVER" --port "$port" --body "$WORK/answer.json"
  measure null "$round" "$port"
done

CLIENT=$CLIENT WARMUP=$WARMUP "$PYTHON" - "$WORK" "$ROUNDS" "$CONCURRENCY" "$REQUESTS" <<'EOF'
import json
import os
import statistics
import sys

work, rounds, concurrency, requests = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
runs = {name: [json.load(open(f"{work}/{name}.{r}.json")) for r in range(1, rounds + 1)]
        for name in ("kiln", "peer", "null")}
# The server's CPU time per answered request (warm-up included in both), in microseconds.
for name, rs in runs.items():
    for r, run in enumerate(rs, start=1):
        ticks, hz = (int(x) for x in open(f"{work}/{name}.{r}.cpu").read().split())
        answered = run["requests"] + int(os.environ.get("WARMUP", "0"))
        run["cpu_us"] = ticks / hz * 1e6 / answered if answered else 0.0


def median(name, key):
    return statistics.median(r[key] for r in runs[name])


print(f"System overhead ({os.environ.get('CLIENT', 'http_load')} client): {os.cpu_count()} CPUs, "
      f"test-identity 32x32, steps 1, guidance 1.0, {requests} requests at concurrency "
      f"{concurrency}, torch threads 1; medians of {rounds} rounds (servers take turns)\n")
print("| server | ok / requests | failed | rps | p50 ms | p90 ms | p99 ms | server CPU us / request |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for name, label in (("kiln", "Kiln"), ("peer", "FastAPI + uvicorn + PyTorch"),
                    ("null", "null server (the floor)")):
    ok = sum(r["ok"] for r in runs[name])
    sent = sum(r["requests"] for r in runs[name])
    failed = sum(r["non_200"] + r["errors"] for r in runs[name])
    print(f"| {label} | {ok} / {sent} | {failed} | {median(name, 'rps'):.1f} | "
          f"{median(name, 'p50_us') / 1e3:.3f} | {median(name, 'p90_us') / 1e3:.3f} | "
          f"{median(name, 'p99_us') / 1e3:.3f} | {median(name, 'cpu_us'):.0f} |")
ratios = [k["rps"] / p["rps"] for k, p in zip(runs["kiln"], runs["peer"]) if p["rps"]]
above = [k["p50_us"] - n["p50_us"] for k, n in zip(runs["kiln"], runs["null"])]
print(f"\nKiln / peer throughput, per round: {', '.join(f'{x:.2f}x' for x in ratios)} "
      f"(median {statistics.median(ratios):.2f}x)")
print(f"p50 medians: Kiln {median('kiln', 'p50_us'):.0f} us, "
      f"peer {median('peer', 'p50_us'):.0f} us, floor {median('null', 'p50_us'):.0f} us")
print(f"Kiln's p50 above the floor, per round: {', '.join(f'{x:.0f}' for x in above)} us "
      f"(median {statistics.median(above):.0f} us)")
cpu = [p["cpu_us"] / k["cpu_us"] for k, p in zip(runs["kiln"], runs["peer"]) if k["cpu_us"]]
print(f"Peer / Kiln server CPU per request, per round: {', '.join(f'{x:.2f}x' for x in cpu)} "
      f"(median {statistics.median(cpu):.2f}x)")
if any(r["ok"] != r["requests"] for rs in runs.values() for r in rs):
    print("\nWARNING: some requests failed; the numbers above are not comparable.")
    sys.exit(1)
EOF
