#!/usr/bin/env bash
# Events per second and peak memory of a running pipeline:
# examples/http_load → http_server → remap → blackhole (with acknowledgements).
#
#   scripts/runtime-load.sh [EVENTS] [BATCH] [CONNECTIONS]    # default 1000000 500 4
#   CONFIG=examples/configs/other.toml scripts/runtime-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
batch=${2:-500}
connections=${3:-4}
config=${CONFIG:-examples/configs/bench-http-remap-blackhole.toml}
export BENCH_ADDRESS=${BENCH_ADDRESS:-127.0.0.1:18081}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q --bin fbpixel --example http_load
log=$(mktemp)
trap 'rm -f "$log"' EXIT
/usr/bin/time -v target/release/fbpixel --config "$config" 2> "$log" &
wrapper=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/${BENCH_ADDRESS%:*}/${BENCH_ADDRESS#*:}) 2>/dev/null && break
  sleep 0.1
done
target/release/examples/http_load --address "$BENCH_ADDRESS" --events "$events" \
  --batch "$batch" --connections "$connections"
pkill -TERM -P "$wrapper" fbpixel || true
wait "$wrapper" || true
grep -E "Maximum resident set size|Elapsed \(wall clock\)|Percent of CPU" "$log" | sed 's/^\s*/fbpixel: /'
