#!/usr/bin/env bash
# Commit -> visible in MongoDB at a steady rate (issue #12): private servers, `walfold setup`,
# 1,000 users, then `walfold run` (defaults: two workers) under `walfold loadgen --rate R`
# (20% transfers, corrections and deletes) while bench/latency_poll.py polls MongoDB's
# transactions collection and prints p50/p99/max of (seen - created_at) over the run.
#
#   bash bench/latency.sh [rate=200] [seconds=60]
#   LAT_CONFIG='reader: {enqueue_max_delay_ms: 5}' bash bench/latency.sh   (settings to compare)
#   LAT_POLL_MS=10 (the poller's interval: it loads the MongoDB stand-in too, and adds up to that)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rate=${1:-200}
seconds=${2:-60}
wf=${WALFOLD_BIN:-$root/build/ci/daemon/walfold}
[ -x "$wf" ] || { echo "build walfold first (cmake --build build/ci)" >&2; exit 1; }
dir=$(mktemp -d /tmp/wf-lat-XXXXXX)
bash "$root/tests/harness/servers.sh" start "$dir" >/dev/null
daemon=
cleanup() {
  if [ -n "$daemon" ]; then
    kill "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
  fi
  bash "$root/tests/harness/servers.sh" stop "$dir" --clean >/dev/null 2>&1 || true
}
trap cleanup EXIT
# shellcheck disable=SC1091
. "$dir/env"
psql -q -h 127.0.0.1 -p "$WALFOLD_TEST_PG_PORT" -U "$WALFOLD_TEST_PG_SUPERUSER" -d postgres -c "CREATE DATABASE bank"
cfg=$dir/walfold.yaml
cat >"$cfg" <<YAML
postgres: {dsn: "host=127.0.0.1 port=$WALFOLD_TEST_PG_PORT dbname=bank user=$WALFOLD_TEST_PG_SUPERUSER"}
redis: {host: 127.0.0.1, port: $WALFOLD_TEST_REDIS_PORT}
mongodb: {uri: "$WALFOLD_TEST_MONGODB_URI", database: lat}
state_dir: $dir/state
log_level: warn
${LAT_CONFIG:-}
YAML
"$wf" setup --config "$cfg" --schema >/dev/null 2>&1
"$wf" loadgen --config "$cfg" --users 1000 --transactions 0 --no-progress >/dev/null 2>&1
"$wf" run --config "$cfg" >"$dir/run.log" 2>&1 &
daemon=$!
sleep 3
echo "walfold latency, $(date -u +%F), $(nproc) cores, rate $rate/s for ${seconds}s, settings: ${LAT_CONFIG:-defaults}, poll every ${LAT_POLL_MS:-10} ms"
"$wf" loadgen --config "$cfg" --reuse --transactions $((rate * (seconds + 10))) --rate "$rate" \
  --no-progress >/dev/null 2>&1 &
lg=$!
/usr/bin/python3 "$root/bench/latency_poll.py" --uri "$WALFOLD_TEST_MONGODB_URI" --db lat \
  --seconds "$seconds" --every "${LAT_POLL_MS:-10}"
kill "$lg" 2>/dev/null || true
wait "$lg" 2>/dev/null || true
# Where the time went: CPU seconds of each process over the whole run (setup included).
cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / t}' "/proc/$1/stat" 2>/dev/null || echo "?"; }
echo "CPU s: walfold $(cpu "$daemon"), MongoDB $(cpu "$WALFOLD_TEST_MONGO_PID") ($WALFOLD_TEST_MONGO_KIND), Redis $(cpu "$WALFOLD_TEST_REDIS_PID")"
