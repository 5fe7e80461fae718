#!/usr/bin/env bash
# README command 1: on a fresh Debian 12 machine, install everything from apt, build walfold,
# start private PostgreSQL 15 (wal_level=logical), Redis and the MongoDB stand-in on loopback,
# write a bank's activity and show that PostgreSQL and MongoDB report the same balances.
#
#   bash scripts/demo.sh                       # 10,000 transactions, MongoDB stand-in
#   WALFOLD_DEMO_TRANSACTIONS=50000 bash scripts/demo.sh
#   WALFOLD_TEST_MONGODB_URI=mongodb://host:27017 bash scripts/demo.sh   # a real MongoDB
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tx=${WALFOLD_DEMO_TRANSACTIONS:-10000}
users=${WALFOLD_DEMO_USERS:-2000}
state=${WALFOLD_DEMO_DIR:-$root/.wf/demo}
build=${WALFOLD_BUILD_DIR:-$root/build}

step() { printf '\n== %s\n' "$*"; }

step "installing build and test dependencies from apt"
bash tests/harness/servers.sh install-deps

step "building walfold ($build)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target walfold
wf="$build/daemon/walfold"

step "starting PostgreSQL 15, Redis and MongoDB on loopback ($state)"
bash tests/harness/servers.sh stop "$state" --clean >/dev/null 2>&1 || true
bash tests/harness/servers.sh start "$state"
# shellcheck disable=SC1091
. "$state/env"
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
  if [ -z "${WALFOLD_DEMO_KEEP:-}" ]; then bash tests/harness/servers.sh stop "$state" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
psql -q -h 127.0.0.1 -p "$WALFOLD_TEST_PG_PORT" -U "$WALFOLD_TEST_PG_SUPERUSER" -d postgres -c "CREATE DATABASE bank"
cat > "$state/walfold.yaml" <<YAML
postgres:
  dsn: "host=127.0.0.1 port=$WALFOLD_TEST_PG_PORT dbname=bank user=$WALFOLD_TEST_PG_SUPERUSER"
redis:
  host: 127.0.0.1
  port: $WALFOLD_TEST_REDIS_PORT
mongodb:
  uri: "$WALFOLD_TEST_MONGODB_URI"
  database: bank
log_level: info
state_dir: $state/state   # this demo's own (its servers are new on every run)
YAML
echo "config: $state/walfold.yaml (MongoDB: $WALFOLD_TEST_MONGO_KIND at $WALFOLD_TEST_MONGODB_URI)"

step "walfold setup --schema (tables, REPLICA IDENTITY FULL, publication, slot)"
"$wf" setup --config "$state/walfold.yaml" --schema

step "walfold run (the daemon) in the background"
"$wf" run --config "$state/walfold.yaml" > "$state/daemon.log" 2>&1 &
daemon_pid=$!
sleep 1

step "walfold loadgen: $users users, $tx transactions (deposits, withdrawals, transfers, corrections, deletes)"
"$wf" loadgen --config "$state/walfold.yaml" --users "$users" --transactions "$tx" --seed 42

step "stopping the daemon (SIGTERM), then catching up to the current WAL end"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || { echo "daemon exited with $?; log: $state/daemon.log"; exit 1; }
daemon_pid=""
tail -n 2 "$state/daemon.log"
"$wf" run --config "$state/walfold.yaml" --stop-at-lsn current 2>&1 | tail -n 2
"$wf" status --config "$state/walfold.yaml"

step "comparing the reports"
"$wf" report --config "$state/walfold.yaml" --from postgres > "$state/report-postgres.txt"
"$wf" report --config "$state/walfold.yaml" --from mongo > "$state/report-mongo.txt"
accounts=$(grep -c '^account ' "$state/report-postgres.txt")
txs=$(psql -Atq -h 127.0.0.1 -p "$WALFOLD_TEST_PG_PORT" -U "$WALFOLD_TEST_PG_SUPERUSER" -d bank -c "SELECT count(*) FROM transactions")
head -n 4 "$state/report-postgres.txt"
if diff -q "$state/report-postgres.txt" "$state/report-mongo.txt" >/dev/null; then
  echo "IDENTICAL: report --from postgres and report --from mongo agree on $accounts accounts ($txs transactions in PostgreSQL, MongoDB: $WALFOLD_TEST_MONGO_KIND)"
else
  diff "$state/report-postgres.txt" "$state/report-mongo.txt" | head -n 20
  echo "DIFFERENT: the read model does not match PostgreSQL"
  exit 1
fi
