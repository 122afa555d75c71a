#!/usr/bin/env bash
# Events per second and peak memory end to end: examples/http_load → http_server →
# facebook_pixel_server_side → examples/graph_standin (counts only), with acknowledgements.
#
#   scripts/delivery-load.sh [EVENTS] [BATCH] [CONNECTIONS]   # default 1000000 500 4
#   DELAY_MS=500 scripts/delivery-load.sh 200000              # a slow Graph API: memory must stay flat
#   SOURCE=segment scripts/delivery-load.sh 1000000 100 16    # Segment batches of 100 to /v1/batch
#   BUFFER=disk scripts/delivery-load.sh 1000000 500 16       # through the disk buffer: the 200s
#                                     # come once events are on disk; also times full delivery
#   LEDGER=1 scripts/delivery-load.sh 1000000 500 16          # with the delivery ledger on
#                                     # (scripts/ledger-bench.sh pairs it with the ledger off)
#   FBPIXEL=/path/to/fbpixel EXAMPLES=/path/to/examples SKIP_BUILD=1 scripts/delivery-load.sh …
#                                     # other binaries (scripts/segment-paired.sh compares two)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
batch=${2:-500}
connections=${3:-4}
fbpixel=${FBPIXEL:-${CARGO_TARGET_DIR:-target}/release/fbpixel}
examples=${EXAMPLES:-${CARGO_TARGET_DIR:-target}/release/examples}
export BENCH_ADDRESS=${BENCH_ADDRESS:-127.0.0.1:18081}
export STANDIN_ADDRESS=${STANDIN_ADDRESS:-127.0.0.1:18090}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q --bin fbpixel --example http_load --example graph_standin
log=$(mktemp)
trap 'rm -f "$log" "$log.standin"; kill $standin 2>/dev/null || true' EXIT
export BENCH_DATA_DIR=${BENCH_DATA_DIR:-target/bench-data}
rm -rf "$BENCH_DATA_DIR"
"$examples/graph_standin" --address "$STANDIN_ADDRESS" --delay-ms "${DELAY_MS:-0}" 2> "$log.standin" &
standin=$!
FBPIXEL_LOG=${FBPIXEL_LOG:-warn} /usr/bin/time -v "$fbpixel" \
  --config "examples/configs/bench-${SOURCE:-http}-to-capi${BUFFER:+-$BUFFER}${LEDGER:+-ledger}.toml" 2> "$log" &
wrapper=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/${BENCH_ADDRESS%:*}/${BENCH_ADDRESS#*:}) 2>/dev/null && break
  sleep 0.1
done
# Its RSS while loaded, sampled every 0.2 s, for the slow-answer case.
pid=$(pgrep -P "$wrapper" fbpixel)
( while kill -0 "$pid" 2>/dev/null; do ps -o rss= -p "$pid"; sleep 0.2; done ) > "$log.rss" &
segment_flag=()
[ "${SOURCE:-http}" = segment ] && segment_flag=(--segment bench-key)
start=$(date +%s.%N)
"$examples/http_load" --address "$BENCH_ADDRESS" --events "$events" \
  --batch "$batch" --connections "$connections" "${segment_flag[@]}"
# With a disk buffer the load generator's rate is the rate into the buffer: also report the
# delivery rate the stand-in saw (its count stops growing once the buffer is drained; skipped
# messages, such as page calls, are not sent).
if [ -n "${BUFFER:-}" ]; then
  previous=""
  while sleep 2; do
    current=$(tail -1 "$log.standin")
    [ "$current" = "$previous" ] && break
    previous=$current
  done
  echo "$current" | awk '{ printf "delivered to the stand-in: %d events over %.2f s = %.0f events/s\n", $2, $8, $2 / $8 }'
fi
kill -TERM "$pid" || true
wait "$wrapper" || true
grep -E "Maximum resident set size|Percent of CPU|User time|System time" "$log" | sed 's/^\s*/fbpixel: /'
# A ledger that could not keep up dropped records (counted and logged): say so, or its cost is
# understated.
grep -o "ledger: records dropped ([a-z_]*)" "$log" | sort | uniq -c | sed 's/^\s*/fbpixel: /' || true
sort -n "$log.rss" | awk '{ v[NR] = $1 } END { if (NR) printf "fbpixel: RSS samples (KiB): min %d, median %d, max %d over %d samples\n", v[1], v[int((NR+1)/2)], v[NR], NR }'
rm -f "$log.rss"
