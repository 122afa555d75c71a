#!/usr/bin/env bash
# Instructions fbpixel executes (callgrind: deterministic, whatever else the machine does) to
# take EVENTS events through http_server and through the segment source into the same
# Conversions API sink and counting stand-in, for each binary given, so sources and builds can
# be compared paired.
#
#   EXAMPLES=target/release/examples scripts/segment-callgrind.sh EVENTS BATCH BINARY...
#
# Prints per binary and source: total instructions and instructions per event (the startup and
# shutdown of the process included; with 50,000 events or more they are a small share).
set -euo pipefail
cd "$(dirname "$0")/.."
events=$1 batch=$2
shift 2
examples=${EXAMPLES:-target/release/examples}
export BENCH_ADDRESS=${BENCH_ADDRESS:-127.0.0.1:18081} STANDIN_ADDRESS=${STANDIN_ADDRESS:-127.0.0.1:18090}
export BENCH_DATA_DIR=${BENCH_DATA_DIR:-target/bench-data}
out=${CG_DIR:-$(mktemp -d)}   # CG_DIR=dir keeps each profile there, for callgrind_annotate
mkdir -p "$out"
"$examples/graph_standin" --address "$STANDIN_ADDRESS" 2> /dev/null &
standin=$!
trap 'kill $standin 2>/dev/null || true; [ -n "${CG_DIR:-}" ] || rm -rf "$out"' EXIT
n=0
for bin in "$@"; do
  n=$((n + 1))
  for source in http segment; do
    FBPIXEL_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out/cg.$n.$source" \
      "$bin" --config "examples/configs/bench-$source-to-capi.toml" 2> "$out/log" &
    pid=$!
    for _ in $(seq 600); do
      (exec 3<>/dev/tcp/${BENCH_ADDRESS%:*}/${BENCH_ADDRESS#*:}) 2>/dev/null && break
      sleep 0.1
    done
    flag=()
    [ "$source" = segment ] && flag=(--segment bench-key)
    "$examples/http_load" --address "$BENCH_ADDRESS" --events "$events" --batch "$batch" \
      --connections 4 "${flag[@]}" > /dev/null
    kill -TERM $pid
    wait $pid || true
    total=$(grep -E '^summary:' "$out/cg.$n.$source" | awk '{ print $2 }')
    awk -v b="$bin" -v s="$source" -v t="$total" -v n="$events" \
      'BEGIN { printf "%-32s %-7s %14.0f instructions  %8.0f per event\n", b, s, t, t / n }'
  done
done
