#!/usr/bin/env bash
# The segment source against http_server into the same sink with the same events, for two
# builds of fbpixel (a baseline and a new one), paired: each round runs every combination,
# the builds' order alternating between rounds, so drift of the machine hits both alike.
#
#   BASE=/work/cg-fbpixel-base2 NEW=target/release/fbpixel EXAMPLES=target/release/examples \
#     scripts/segment-paired.sh [ROUNDS] [EVENTS] [BATCH] [CONNECTIONS]   # default 3 500000 500 16
#
# Prints one line per run: round, build, source, the load generator's events/s, and fbpixel's
# CPU seconds (user + system) per 100,000 events.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
events=${2:-500000}
batch=${3:-500}
connections=${4:-16}
: "${BASE:?set BASE to the baseline fbpixel binary}" "${NEW:?set NEW to the new fbpixel binary}"
export EXAMPLES=${EXAMPLES:-target/release/examples} SKIP_BUILD=1
for round in $(seq "$rounds"); do
  if (( round % 2 )); then order=(base new); else order=(new base); fi
  for build in "${order[@]}"; do
    [ "$build" = base ] && bin=$BASE || bin=$NEW
    for source in http segment; do
      out=$(SOURCE=$source FBPIXEL=$bin scripts/delivery-load.sh "$events" "$batch" "$connections" 2>&1)
      rate=$(echo "$out" | grep -oE '[0-9]+ events/s' | head -1 | cut -d' ' -f1)
      cpu=$(echo "$out" | awk '/User time|System time/ { s += $NF } END { print s }')
      rss=$(echo "$out" | awk '/Maximum resident/ { printf "%.0f", $NF / 1024 }')
      awk -v r="$round" -v b="$build" -v s="$source" -v rate="$rate" -v cpu="$cpu" -v n="$events" -v rss="$rss" \
        'BEGIN { printf "round %d %-4s %-7s %7d events/s  %.2f cpu-s/100k events  %s MB\n", r, b, s, rate, cpu * 100000 / n, rss }'
    done
  done
done
