#!/usr/bin/env bash
# nats-server alone, on this machine: examples/nats_bench publishes MESSAGES messages of SIZE
# bytes to a fresh JetStream stream (file storage, as scripts/nats-load.sh uses) with 500 PubAcks
# outstanding, then pulls and acks them; prints both rates and nats-server's CPU seconds per
# 100,000 messages in each phase. SIZE 700 is one event of scripts/nats-load.sh's mix; 70000
# is a message of 100 of them (the bench front tier's batch.max_events).
#
#   scripts/nats-server-bench.sh [MESSAGES] [SIZE]   # default 200000 700
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-200000}
size=${2:-700}
examples=${EXAMPLES:-${CARGO_TARGET_DIR:-target}/release/examples}
port=${NATS_PORT:-18222}
server=${FBPIXEL_NATS_SERVER:-target/ci-clients/nats/bin/nats-server}
[ -x "$server" ] || { echo "no nats-server at $server (set FBPIXEL_NATS_SERVER)" >&2; exit 1; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q --example nats_bench
work=$(mktemp -d)
"$server" -a 127.0.0.1 -p "$port" -js -sd "$work/js" -l "$work/nats.log" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
sleep 0.5
"$examples/nats_bench" --url "nats://127.0.0.1:$port" --messages "$messages" --size "$size" \
  --server-pid "$server_pid"
