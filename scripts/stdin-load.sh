#!/usr/bin/env bash
# Events per second end to end from a file on stdin: N Segment track messages (the examples',
# each with a distinct messageId and a fresh timestamp, generated once) → stdin →
# facebook_pixel_server_side → examples/graph_standin (counts only). fbpixel exits at end of
# input once every event is delivered, so the rate is events over the time from its start to
# its exit. Compares `mapping.workers` settings in the same session, alternating their order
# each round, and reports every run: events/s, fbpixel's CPU seconds (per 100,000 events too,
# which other load on the machine tilts less), its peak RSS, and what the stand-in counted.
#
#   scripts/stdin-load.sh [EVENTS] [ROUNDS] [WORKERS...]   # default 1000000 3 1 default
#                          # WORKERS: a number for mapping.workers, or `default` (unset)
#   FBPIXEL=/path/to/fbpixel EXAMPLES=/path/to/examples SKIP_BUILD=1 scripts/stdin-load.sh …
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
rounds=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
settings=("$@")
[ ${#settings[@]} -gt 0 ] || settings=(1 default)
target=${CARGO_TARGET_DIR:-target}
fbpixel=${FBPIXEL:-$target/release/fbpixel}
examples=${EXAMPLES:-$target/release/examples}
# Its own port, so that it can run beside scripts/delivery-load.sh.
export STANDIN_ADDRESS=${STANDIN_ADDRESS:-127.0.0.1:18290}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q --bin fbpixel --example graph_standin
work=$(mktemp -d)
standin=""
trap 'rm -rf "$work"; [ -z "$standin" ] || kill "$standin" 2>/dev/null || true' EXIT

# The input: the examples' track calls that map (some are there to be rejected), repeated;
# copy c's messageIds are prefixed with c, and every timestamp is now, inside Meta's 7-day
# window. So every line is one event the stand-in must count.
now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
grep '"type": "track"' examples/segment-events.ndjson |
  awk -v now="$now" '{ gsub(/"timestamp": "[^"]*"/, "\"timestamp\": \"" now "\""); print }' > "$work/fresh"
"$fbpixel" map --config examples/configs/bench-stdin-to-capi.toml < "$work/fresh" 2> /dev/null |
  grep -o '"event_id":"[^"]*"' | sed 's/"event_id":\(.*\)/"messageId": \1/' > "$work/mapped"
grep -F -f "$work/mapped" "$work/fresh" > "$work/tracks"
awk -v n="$events" -v now="$now" '{ lines[NR] = $0 } END {
  for (i = 0; i < n; i++) {
    l = lines[i % NR + 1]
    gsub(/"ajs-msg-/, "\"c" int(i / NR) "-", l)
    print l
  }
}' "$work/tracks" > "$work/input.ndjson"
echo "input: $(wc -l < "$work/input.ndjson") lines ($(wc -l < "$work/tracks") distinct track calls), $(du -m "$work/input.ndjson" | cut -f1) MB; fbpixel $fbpixel; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# One run: a fresh stand-in (so its count is this run's), fbpixel until it exits.
run() {
  local setting=$1 config="$work/config.toml"
  cp examples/configs/bench-stdin-to-capi.toml "$config"
  [ "$setting" = default ] || echo "mapping.workers = $setting" >> "$config"
  "$examples/graph_standin" --address "$STANDIN_ADDRESS" 2> "$work/standin.log" &
  standin=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/${STANDIN_ADDRESS%:*}/${STANDIN_ADDRESS#*:}") 2>/dev/null && break
    sleep 0.1
  done
  kill -0 "$standin" 2>/dev/null || { cat "$work/standin.log" >&2; exit 1; }
  local start end
  start=$(date +%s.%N)
  FBPIXEL_LOG=${FBPIXEL_LOG:-warn} /usr/bin/time -v "$fbpixel" --config "$config" \
    < "$work/input.ndjson" 2> "$work/time.log" || { cat "$work/time.log" >&2; exit 1; }
  end=$(date +%s.%N)
  sleep 1.2 # the stand-in prints its count every second
  # Its CPU time too: it shares the cores, so it bounds what fbpixel can reach.
  local standin_cpu
  standin_cpu=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$standin/stat")
  kill "$standin"; wait "$standin" 2>/dev/null || true; standin=""
  local counted user sys rss
  counted=$(tail -1 "$work/standin.log" | awk '{ print $2 }')
  user=$(awk -F': ' '/User time/ { print $2 }' "$work/time.log")
  sys=$(awk -F': ' '/System time/ { print $2 }' "$work/time.log")
  rss=$(awk -F': ' '/Maximum resident/ { print $2 }' "$work/time.log")
  awk -v w="$setting" -v n="$events" -v s="$start" -v e="$end" -v u="$user" -v y="$sys" \
      -v r="$rss" -v c="${counted:-0}" -v g="$standin_cpu" 'BEGIN {
    t = e - s
    printf "workers=%-7s %d events in %.2f s = %6.1fk events/s; CPU %.2f s (user %.2f + sys %.2f) = %.3f CPU-s/100k; peak RSS %d MB; stand-in counted %d, its CPU %.2f s\n",
      w, n, t, n / t / 1000, u + y, u, y, (u + y) * 100000 / n, r / 1024, c, g
  }' | tee -a "$work/results"
}

for round in $(seq "$rounds"); do
  order=("${settings[@]}")
  # Every other round in reverse, so drift over the session does not favour one setting.
  if (( round % 2 == 0 )); then
    order=(); for (( i = ${#settings[@]} - 1; i >= 0; i-- )); do order+=("${settings[$i]}"); done
  fi
  for setting in "${order[@]}"; do
    printf 'round %d: ' "$round"
    run "$setting"
  done
done

# Medians per setting, and each against the first.
awk '{ split($1, a, "="); w = a[2]; rate[w] = rate[w] " " ($8 + 0); cpu[w] = cpu[w] " " ($19 + 0); if (!(w in order)) { order[w] = ++k; name[k] = w } }
function median(list,   v, n, i, j, t) {
  n = split(list, v, " ")
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
  return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
END {
  for (i = 1; i <= k; i++) {
    w = name[i]; r = median(rate[w]); c = median(cpu[w])
    if (i == 1) { r1 = r; c1 = c }
    printf "median workers=%-7s %6.1fk events/s (%.2f× workers=%s), %.3f CPU-s/100k (%.2f×)\n", w, r, r / r1, name[1], c, c / c1
  }
}' "$work/results"
