#!/usr/bin/env bash
# Throughput of `fbpixel map` end to end (read NDJSON, map, write NDJSON) on one core, to
# compare with `cargo bench --bench mapping`.
#
#   scripts/map-load.sh [COPIES]     # default 20000 copies of examples/segment-events.ndjson
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-20000}
input=$(mktemp)
trap 'rm -f "$input"' EXIT
# Distinct messageIds per copy, as a real stream has.
awk -v n="$copies" '{ lines[NR] = $0 } END {
  for (c = 1; c <= n; c++) for (i = 1; i <= NR; i++) { l = lines[i]; gsub(/"ajs-msg-/, "\"c" c "-", l); print l }
}' examples/segment-events.ndjson > "$input"
total=$(wc -l < "$input")
cargo build --release -q
start=$(date +%s.%N)
taskset -c 0 target/release/fbpixel map --config ${CONFIG:-examples/pipeline.toml} --now 2024-06-15T12:00:00Z \
  < "$input" > /dev/null 2> >(tail -n 1 >&2)
end=$(date +%s.%N)
awk -v n="$total" -v s="$start" -v e="$end" \
  'BEGIN { printf "%d messages in %.2f s: %.0f messages/s\n", n, e - s, n / (e - s) }'
