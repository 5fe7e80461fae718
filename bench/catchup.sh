#!/usr/bin/env bash
# Catch-up benchmark: a backlog of bank activity waits in two logical slots; pg_recvlogical
# drains one, walfold's reader (WAL -> Redis, no workers) drains the other, in the same run and
# over the same transport. Then walfold's workers fold the backlog into MongoDB and the script
# prints MongoDB write commands per source row. Prints figures; asserts nothing about speed.
#
#   bash bench/catchup.sh [transactions=50000] [transport=tcp|unix] [runs=3]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tx=${1:-50000}
transport=${2:-tcp}
runs=${3:-3}
build=${WALFOLD_BUILD_DIR:-$root/build}
wf=$build/daemon/walfold
[ -x "$wf" ] || cmake --build "$build" --target walfold
dir=$(mktemp -d /tmp/wf-bench-XXXXXX)
bash "$root/tests/harness/servers.sh" start "$dir" >/dev/null
trap 'bash "$root/tests/harness/servers.sh" stop "$dir" --clean >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
. "$dir/env"
bin=$WALFOLD_TEST_PG_BIN
host=127.0.0.1
[ "$transport" = unix ] && host=$WALFOLD_TEST_PG_SOCKET_DIR
pg() { psql -Atq -h 127.0.0.1 -p "$WALFOLD_TEST_PG_PORT" -U "$WALFOLD_TEST_PG_SUPERUSER" -d bank -c "$1"; }
psql -q -h 127.0.0.1 -p "$WALFOLD_TEST_PG_PORT" -U "$WALFOLD_TEST_PG_SUPERUSER" -d postgres -c "CREATE DATABASE bank"
cfg=$dir/walfold.yaml
cat > "$cfg" <<YAML
postgres: {dsn: "host=$host port=$WALFOLD_TEST_PG_PORT dbname=bank user=$WALFOLD_TEST_PG_SUPERUSER"}
redis: {host: 127.0.0.1, port: $WALFOLD_TEST_REDIS_PORT}
mongodb: {uri: "$WALFOLD_TEST_MONGODB_URI", database: bench}
log_level: warn
YAML
"$wf" setup --config "$cfg" --schema >/dev/null 2>&1
"$wf" loadgen --config "$cfg" --users 10000 --transactions 0 --no-progress >/dev/null 2>&1

echo "walfold catch-up benchmark: $tx transactions (20% transfers), transport $transport, $runs runs"
printf '%-4s %10s %14s %14s %8s\n' run rows "pg_recvlogical" "walfold reader" ratio
for run in $(seq 1 "$runs"); do
  for s in wf_bench recv_bench; do pg "SELECT pg_drop_replication_slot('$s') FROM pg_replication_slots WHERE slot_name = '$s'" >/dev/null; done
  pg "SELECT pg_create_logical_replication_slot('recv_bench', 'pgoutput')" >/dev/null
  pg "SELECT pg_create_logical_replication_slot('wf_bench', 'pgoutput')" >/dev/null
  before=$(pg "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables")
  "$wf" loadgen --config "$cfg" --reuse --transactions "$tx" --seed "$run" --no-progress >/dev/null 2>&1
  pg "SELECT pg_logical_emit_message(true, 'bench', 'end')" >/dev/null
  end=$(pg "SELECT pg_current_wal_lsn()")
  sleep 1
  rows=$(( $(pg "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables") - before ))
  t0=$(date +%s.%N)
  "$bin/pg_recvlogical" -h "$host" -p "$WALFOLD_TEST_PG_PORT" -U "$WALFOLD_TEST_PG_SUPERUSER" -d bank --slot recv_bench \
    --start -o proto_version=1 -o publication_names=walfold --endpos "$end" --no-loop -f /dev/null
  t1=$(date +%s.%N)
  redis-cli -p "$WALFOLD_TEST_REDIS_PORT" FLUSHALL >/dev/null
  printf 'postgres: {dsn: "host=%s port=%s dbname=bank user=%s", slot: wf_bench}\nredis: {host: 127.0.0.1, port: %s}\nmongodb: {uri: "%s", database: bench}\nlog_level: warn\n' \
    "$host" "$WALFOLD_TEST_PG_PORT" "$WALFOLD_TEST_PG_SUPERUSER" "$WALFOLD_TEST_REDIS_PORT" "$WALFOLD_TEST_MONGODB_URI" > "$cfg.run"
  "$wf" run --config "$cfg.run" --role reader --stop-at-lsn "$end" >/dev/null 2>&1
  t2=$(date +%s.%N)
  awk -v run="$run" -v rows="$rows" -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {
    r = rows / (b - a); w = rows / (c - b);
    printf "%-4s %10d %12.0f/s %12.0f/s %8.2f\n", run, rows, r, w, w / r }'
done
# Folding: a fresh database whose whole history is in the slot (users and accounts included),
# folded into MongoDB by walfold's workers; MongoDB write commands per source row.
psql -q -h 127.0.0.1 -p "$WALFOLD_TEST_PG_PORT" -U "$WALFOLD_TEST_PG_SUPERUSER" -d postgres -c "CREATE DATABASE fold"
printf 'postgres: {dsn: "host=%s port=%s dbname=fold user=%s", slot: wf_fold}\nredis: {host: 127.0.0.1, port: %s}\nmongodb: {uri: "%s", database: fold}\nlog_level: warn\n' \
  "$host" "$WALFOLD_TEST_PG_PORT" "$WALFOLD_TEST_PG_SUPERUSER" "$WALFOLD_TEST_REDIS_PORT" "$WALFOLD_TEST_MONGODB_URI" > "$dir/fold.yaml"
"$wf" setup --config "$dir/fold.yaml" --schema >/dev/null 2>&1
fold_tx=$(( tx < 20000 ? tx : 20000 ))
"$wf" loadgen --config "$dir/fold.yaml" --users 2000 --transactions "$fold_tx" --seed 9 --no-progress >/dev/null 2>&1
t0=$(date +%s.%N)
out=$("$wf" --log-level info run --config "$dir/fold.yaml" --stop-at-lsn current 2>&1 | grep 'run: stopped' || true)
t1=$(date +%s.%N)
echo "fold ($fold_tx transactions into MongoDB: $WALFOLD_TEST_MONGO_KIND): $out"
cmds=$(echo "$out" | sed -n 's/.* \([0-9]*\) MongoDB write commands for \([0-9]*\) changes.*/\1 \2/p')
set -- $cmds
[ $# -eq 2 ] && awk -v c="$1" -v n="$2" -v a="$t0" -v b="$t1" 'BEGIN {
  printf "MongoDB write commands per source row: %.4f; fold rate %.0f changes/s (bounded by the MongoDB server)\n", c / n, n / (b - a) }'
