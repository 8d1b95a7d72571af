#!/usr/bin/env bash
# Instructions a kiln server executes per request, counted by valgrind's callgrind (repeatable for
# the same binary and inputs, whatever else the machine is doing, unlike wall or CPU time). The
# server serves test-identity (see overhead.sh); 100 warm-up requests, then the counters are
# zeroed, N requests at concurrency 1 from build/kiln_bench_http_load, and the counters dumped.
#
# Usage: bench/instructions.sh [--kiln build/kiln] [--requests 400]
# Prints "<instructions per request> <kiln binary>". Takes about a minute (the server runs under
# valgrind). Only 127.0.0.1 is used.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KILN=$ROOT/build/kiln
REQUESTS=400
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kiln) KILN=$2 ;;
    --requests) REQUESTS=$2 ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
  esac
  shift 2
done
LOAD=$ROOT/build/kiln_bench_http_load
[[ -x $LOAD ]] || { echo "instructions.sh: build the kiln_bench_http_load target" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed" >&2; exit 1; }

WORK=$(mktemp -d)
PID=
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/models"
ln -s "$ROOT/build/test-models/test-identity" "$WORK/models/test-identity"
PORT=$("$ROOT/.venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" "$KILN" serve --host 127.0.0.1 \
  --port "$PORT" --models "$WORK/models" --data "$WORK/data" --threads 1 --log-level warn \
  >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 600); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz" && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.5
done
BODY='{"prompt":"a red circle","model":"test-identity","steps":1,"seed":1,"size":"32x32","guidance_scale":1.0,"n":1}'
URL=http://127.0.0.1:$PORT/v1/images/generations
"$LOAD" --url "$URL" --body "$BODY" --concurrency 1 --requests 100 --warmup 0 >/dev/null
callgrind_control -z "$PID" >/dev/null 2>&1
"$LOAD" --url "$URL" --body "$BODY" --concurrency 1 --requests "$REQUESTS" --warmup 0 >/dev/null
callgrind_control -d "$PID" >/dev/null 2>&1
total=$(callgrind_annotate "$WORK/cg.$PID.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
echo "$((total / REQUESTS)) $KILN"
