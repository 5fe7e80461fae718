#!/usr/bin/env bash
# Commit -> visible in MongoDB at a steady rate (issue #12): private servers, `walfold setup`,
# 1,000 users, then `walfold run` (defaults: two workers) under `walfold loadgen --rate R`
# (20% transfers, corrections and deletes) while bench/latency_poll.py polls MongoDB's
# transactions collection and prints p50/p99/max of (seen - created_at) over the run.
#
#   bash bench/latency.sh [rate=200] [seconds=60]
#   LAT_CONFIG='reader: {enqueue_max_delay_ms: 5}' bash bench/latency.sh   (settings to compare)
#   LAT_LOADGENS=2 (the rate split over two loadgen connections, for rates one cannot reach)
#   LAT_POLL_MS=5 (the poller's interval: each figure is late by up to that plus one poll)
#   LAT_DUMP=FILE (the poller writes "<_id> <seen> <created>" per row there, for bench/README's
#   breakdown of where the time goes)
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
http_port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$cfg" <<YAML
postgres: {dsn: "host=127.0.0.1 port=$WALFOLD_TEST_PG_PORT dbname=bank user=$WALFOLD_TEST_PG_SUPERUSER"}
redis: {host: 127.0.0.1, port: $WALFOLD_TEST_REDIS_PORT}
mongodb: {uri: "$WALFOLD_TEST_MONGODB_URI", database: lat}
state_dir: $dir/state
log_level: warn
http: {listen: "127.0.0.1:$http_port"}
${LAT_CONFIG:-}
YAML
"$wf" setup --config "$cfg" --schema >/dev/null 2>&1
"$wf" loadgen --config "$cfg" --users 1000 --transactions 0 --no-progress >/dev/null 2>&1
"$wf" run --config "$cfg" >"$dir/run.log" 2>&1 &
daemon=$!
sleep 3
echo "walfold latency, $(date -u '+%F %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), rate $rate/s for ${seconds}s, settings: ${LAT_CONFIG:-defaults}, poll every ${LAT_POLL_MS:-5} ms"
/usr/bin/python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
  "http://127.0.0.1:$http_port/metrics" >"$dir/hist.start" 2>/dev/null || true
# One loadgen is one PostgreSQL connection, one commit at a time (~600/s at most on a loaded
# 2-core machine): LAT_LOADGENS=N splits the rate over N of them.
n_lg=${LAT_LOADGENS:-1}
lgs=()
for _ in $(seq "$n_lg"); do
  "$wf" loadgen --config "$cfg" --reuse --transactions $((rate * (seconds + 10) / n_lg)) \
    --rate "$(awk -v r="$rate" -v n="$n_lg" 'BEGIN { print r / n }')" --no-progress >/dev/null 2>&1 &
  lgs+=($!)
done
/usr/bin/python3 "$root/bench/latency_poll.py" --uri "$WALFOLD_TEST_MONGODB_URI" --db lat \
  --seconds "$seconds" --every "${LAT_POLL_MS:-5}" ${LAT_DUMP:+--dump "$LAT_DUMP"}
for lg in "${lgs[@]}"; do
  kill "$lg" 2>/dev/null || true
  wait "$lg" 2>/dev/null || true
done
# Where the time went: CPU seconds of each process over the whole run (setup included).
cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / t}' "/proc/$1/stat" 2>/dev/null || echo "?"; }
# walfold's own view (walfold_commit_to_mongodb_seconds: commit -> MongoDB acknowledged the fold),
# over the jobs of the run (the histogram at the end minus at the start), as the share of jobs
# within each bucket.
/usr/bin/python3 - "$http_port" "$dir/hist.start" <<'PY' || true
import re, sys, urllib.request
def hist(text):
    return {float(m.group(1)): float(m.group(2)) for m in re.finditer(
        r'^walfold_commit_to_mongodb_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)}
end = hist(urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode())
try:
    start = hist(open(sys.argv[2]).read())
except OSError:
    start = {}
b = {le: c - start.get(le, 0) for le, c in end.items()}
n = b.get(float("inf"), 0)
if n:
    print("walfold's histogram, commit -> MongoDB ack, %d jobs: " % n + ", ".join(
        "<= %g ms %.1f%%" % (le * 1000, 100 * c / n) for le, c in sorted(b.items()) if le <= 0.25))
PY
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "CPU s: walfold $(cpu "$daemon"), MongoDB $(cpu "$WALFOLD_TEST_MONGO_PID") ($WALFOLD_TEST_MONGO_KIND), Redis $(cpu "$WALFOLD_TEST_REDIS_PID")"
