#!/usr/bin/env bash
# Delivery throughput with the delivery ledger off and on, alternated in one run so the
# machine's drift hits both alike; prints each run and the ratio of the medians.
#
#   scripts/ledger-bench.sh [ROUNDS] [EVENTS] [BATCH] [CONNECTIONS]   # default 5 500000 500 16
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
events=${2:-500000}
batch=${3:-500}
connections=${4:-16}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q --bin fbpixel --example http_load --example graph_standin
rate() { grep -oE '[0-9.]+ events/s' | head -1 | cut -d' ' -f1; }
off=() on=()
for round in $(seq "$rounds"); do
  a=$(SKIP_BUILD=1 scripts/delivery-load.sh "$events" "$batch" "$connections" | rate)
  b=$(LEDGER=1 SKIP_BUILD=1 scripts/delivery-load.sh "$events" "$batch" "$connections" | rate)
  echo "round $round: ledger off $a events/s, on $b events/s"
  off+=("$a") on+=("$b")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR+1)/2)] }'; }
m_off=$(median "${off[@]}") m_on=$(median "${on[@]}")
awk -v a="$m_off" -v b="$m_on" 'BEGIN { printf "median: off %.0f, on %.0f events/s; on/off = %.3f\n", a, b, b / a }'
