#!/usr/bin/env bash
# scripts/nats-load.sh for two builds of fbpixel (a baseline and a new one, both tiers), paired:
# each round runs both, their order alternating between rounds, so drift of the machine hits
# both alike.
#
#   BASE=/tmp/nats-base/fbpixel NEW=target/release/fbpixel EXAMPLES=target/release/examples \
#     FBPIXEL_NATS_SERVER=… scripts/nats-paired.sh [ROUNDS] [EVENTS] [BATCH] [CONNECTIONS]
#                                                       # default 3 500000 500 16
#
# The baseline's front tier runs the bench config without its `batch.` settings (a build from
# before them refuses them), or BASE_FRONT_CONFIG; the new one runs it as it is, or
# NEW_FRONT_CONFIG.
#
# Prints one line per run: round, build, events/s into the stream, events/s delivered, and each
# process's CPU seconds per 100,000 events.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
events=${2:-500000}
batch=${3:-500}
connections=${4:-16}
: "${BASE:?set BASE to the baseline fbpixel binary}" "${NEW:?set NEW to the new fbpixel binary}"
export EXAMPLES=${EXAMPLES:-${CARGO_TARGET_DIR:-target}/release/examples} SKIP_BUILD=1
front=examples/configs/bench-http-to-nats.toml
base_front=${BASE_FRONT_CONFIG:-}
if [ -z "$base_front" ]; then
  base_front=$(mktemp --suffix=.toml)
  trap 'rm -f "$base_front"' EXIT
  grep -v '^batch\.' "$front" > "$base_front"
fi
new_front=${NEW_FRONT_CONFIG:-$front}
for round in $(seq "$rounds"); do
  if (( round % 2 )); then order=(base new); else order=(new base); fi
  for build in "${order[@]}"; do
    if [ "$build" = base ]; then bin=$BASE config=$base_front; else bin=$NEW config=$new_front; fi
    out=$(FBPIXEL=$bin FRONT_CONFIG=$config scripts/nats-load.sh "$events" "$batch" "$connections" 2>&1)
    into=$(echo "$out" | grep -oE '[0-9]+ events/s' | head -1 | cut -d' ' -f1)
    out_rate=$(echo "$out" | grep -oE '= [0-9]+ events/s' | grep -oE '[0-9]+')
    delivered=$(echo "$out" | awk '/delivered to the stand-in/ { print $5 }')
    cpu=$(echo "$out" | grep 'cpu-s per 100k' | sed 's/cpu-s per 100k events: //')
    printf "round %d %-4s in %7d/s  out %7d/s  delivered %d  cpu-s/100k: %s\n" \
      "$round" "$build" "$into" "$out_rate" "$delivered" "$cpu"
  done
done
