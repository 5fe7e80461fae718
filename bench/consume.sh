#!/usr/bin/env bash
# One consumer draining one slot up to END, measured (sourced by bench/run.sh; usable alone).
#
#   consume.sh recv|walfold SLOT END HOST ROWS      (servers' env in the environment: . DIR/env)
#
# Prints one line: consumer slot rows seconds rows/s walfold_cpu_s walsender_cpu_s redis_cpu_s
# peak_rss_kib redis_used_memory jobs. walfold's reader (`run --role reader --stop-at-lsn END`)
# writes to the servers' Redis (flushed first, no workers: WAL -> Redis only). The walsender's
# CPU is sampled from /proc every 50 ms while it lives (pg_stat_replication names its pid); Redis's
# from INFO cpu (used_cpu_sys + used_cpu_user) before and after.
set -euo pipefail
kind=$1 slot=$2 end=$3 host=$4 rows=$5
root=$(cd "$(dirname "$0")/.." && pwd)
wf=${WALFOLD_BIN:-$root/build/ci/daemon/walfold}
db=${BENCH_DB:-bench}
port=$WALFOLD_TEST_PG_PORT user=$WALFOLD_TEST_PG_SUPERUSER
rc() { redis-cli -p "$WALFOLD_TEST_REDIS_PORT" "$@"; }
redis_cpu() { rc INFO cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.3f", s}'; }
jiffies() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo; }
tck=$(getconf CLK_TCK)
rc FLUSHALL >/dev/null
rc CONFIG RESETSTAT >/dev/null
work=$(mktemp -d /tmp/wf-consume-XXXXXX)
trap 'rm -rf "$work"' EXIT
if [ "$kind" = walfold ]; then
  cat >"$work/cfg.yaml" <<YAML
postgres: {dsn: "host=$host port=$port dbname=$db user=$user", slot: $slot, publication: cdc_pub}
redis: {host: 127.0.0.1, port: $WALFOLD_TEST_REDIS_PORT}
mongodb: {uri: "$WALFOLD_TEST_MONGODB_URI", database: bench_$slot}
state_dir: $work/state
log_level: warn
${BENCH_CONFIG:-}
YAML
  cmd=(/usr/bin/time -f '%e %U %S %M' -o "$work/time" "$wf" run --config "$work/cfg.yaml" --role reader --stop-at-lsn "$end")
else
  cmd=(/usr/bin/time -f '%e %U %S %M' -o "$work/time" "$WALFOLD_TEST_PG_BIN/pg_recvlogical" -h "$host" -p "$port" -U "$user" -d "$db"
    --slot "$slot" --start -o proto_version=1 -o publication_names=cdc_pub --endpos "$end" --no-loop -f /dev/null)
fi
r0=$(redis_cpu)
"${cmd[@]}" >"$work/out" 2>&1 &
cpid=$!
ws_pid='' ws_j=0
while kill -0 "$cpid" 2>/dev/null; do
  if [ -z "$ws_pid" ]; then
    ws_pid=$(psql -Atq -h 127.0.0.1 -p "$port" -U "$user" -d postgres -c \
      "SELECT pid FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = '$slot'" 2>/dev/null || true)
  fi
  if [ -n "$ws_pid" ]; then j=$(jiffies "$ws_pid"); [ -n "$j" ] && ws_j=$j; fi
  sleep 0.05
done
wait "$cpid" || { echo "consume.sh: $kind on $slot failed:" >&2; cat "$work/out" >&2; exit 1; }
r1=$(redis_cpu)
read -r wall user sys rss <"$work/time"
mem=0 jobs=0
if [ "$kind" = walfold ]; then
  mem=$(rc INFO memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}')
  prefix=$(rc --scan --pattern 'walfold:*:meta' | head -1)
  # Jobs queued: enqueued (meta seq) minus folded (meta done; none here, the reader runs alone).
  [ -n "$prefix" ] && jobs=$(( $(rc HGET "$prefix" seq) - $(rc HGET "$prefix" "done" | sed 's/^$/0/') ))
fi
awk -v k="$kind" -v s="$slot" -v rows="$rows" -v wall="$wall" -v u="$user" -v sy="$sys" \
  -v ws="$ws_j" -v tck="$tck" -v r0="$r0" -v r1="$r1" -v rss="$rss" -v mem="$mem" -v jobs="$jobs" 'BEGIN {
  wfcpu = (k == "walfold") ? u + sy : 0
  printf "%s %s %d %.3f %.0f %.3f %.3f %.3f %d %d %d\n", k, s, rows, wall, rows / wall, wfcpu,
    ws / tck, r1 - r0, rss, mem, jobs }'
