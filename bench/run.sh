#!/usr/bin/env bash
# The catch-up benchmark on the reference backlogs (../shared/reference/bench-workload/README.md):
# for each backlog (OLTP: 200,000 business transactions after 10,000 sign-ups; bulk: 1,000,000
# rows in 10,000-row statements) a fresh database, every consumer's slot created before the
# workload, then each consumer drains its own slot up to END_LSN, one after the other in the
# same run: pg_recvlogical (pgoutput, --endpos, to /dev/null) and walfold's reader (WAL -> Redis,
# no workers), over TCP and over the Unix socket, RUNS times each. Prints one line per consumer
# run (bench/consume.sh) and a min/median/max summary. Asserts nothing about speed.
#
#   bash bench/run.sh [runs=3] [oltp|bulk|both=both]
#   BENCH_SCALE=0.1 bash bench/run.sh 1     (a tenth of each workload: a quick check)
#   BENCH_CONFIG='reader: {enqueue_max_delay_ms: 20}' bash bench/run.sh   (walfold settings)
#
# Redis runs without persistence (appendonly no, as in the reference figures). Takes about
# 15-20 min on 2 cores with 3 runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
which=${2:-both}
scale=${BENCH_SCALE:-1}
ref=${BENCH_WORKLOAD_DIR:-$root/../shared/reference/bench-workload}
[ -d "$ref" ] || ref=/work/shared/reference/bench-workload
export WALFOLD_BIN=${WALFOLD_BIN:-$root/build/ci/daemon/walfold}
[ -x "$WALFOLD_BIN" ] || { echo "build walfold first (cmake --build build/ci)" >&2; exit 1; }
dir=$(mktemp -d /tmp/wf-bench-XXXXXX)
bash "$root/tests/harness/servers.sh" start "$dir" >/dev/null
trap 'bash "$root/tests/harness/servers.sh" stop "$dir" --clean >/dev/null 2>&1 || true' EXIT
set -a
# shellcheck disable=SC1091
. "$dir/env"
set +a
redis-cli -p "$WALFOLD_TEST_REDIS_PORT" CONFIG SET appendonly no >/dev/null
redis-cli -p "$WALFOLD_TEST_REDIS_PORT" CONFIG SET save "" >/dev/null
pgc() { psql -Atq -h 127.0.0.1 -p "$WALFOLD_TEST_PG_PORT" -U "$WALFOLD_TEST_PG_SUPERUSER" "$@"; }
pgc -d postgres -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null
out=$dir/results
: >"$out"
echo "walfold catch-up benchmark, $(date -u +%F), $(nproc) cores, $(pgc -d postgres -c 'SHOW server_version'), $(redis-server --version | awk '{print $3}'), scale $scale, $runs runs"
printf '%-8s %-5s %-8s %9s %8s %10s %8s %9s %9s %8s %10s\n' backlog via consumer rows seconds rows/s wf_cpu_s wsnd_cpu_s redis_cpu_s rss_kib mem/job

backlog() {
  local name=$1 db=bench_$1
  pgc -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null 2>&1
  pgc -d "$db" -f "$ref/schema.sql" -f "$ref/workload.sql" >/dev/null
  local slots=()
  for r in $(seq 1 "$runs"); do for c in recv walfold; do for t in tcp unix; do slots+=("${name}_${c}_${t}_$r"); done; done; done
  for s in "${slots[@]}"; do pgc -d "$db" -c "SELECT pg_create_logical_replication_slot('$s', 'pgoutput')" >/dev/null; done
  local users; users=$(awk -v s="$scale" 'BEGIN {printf "%d", 10000 * s}')
  if [ "$name" = oltp ]; then
    pgc -d "$db" -c "CALL bench.seed_users($users, true)" >/dev/null
    local na tx
    na=$(pgc -d "$db" -c "SELECT max(id) FROM accounts")
    tx=$(awk -v s="$scale" 'BEGIN {printf "%d", 50000 * s}')
    "$WALFOLD_TEST_PG_BIN/pgbench" -n -M prepared -c 4 -t "$tx" -D naccounts="$na" -D transfer_pct=20 \
      --random-seed=1234 -f "$ref/oltp.pgbench" -h 127.0.0.1 -p "$WALFOLD_TEST_PG_PORT" \
      -U "$WALFOLD_TEST_PG_SUPERUSER" "$db" >/dev/null 2>&1
  else
    pgc -d "$db" -c "CALL bench.seed_users($users, false)" >/dev/null
    pgc -d "$db" -c "CALL bench.bulk($(awk -v s="$scale" 'BEGIN {printf "%d", 1000000 * s}'), 10000, 20)" >/dev/null
  fi
  local rows end
  rows=$(pgc -d "$db" -c "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM accounts) + (SELECT count(*) FROM transactions)")
  pgc -d "$db" -c "SELECT pg_logical_emit_message(true, 'bench', 'end')" >/dev/null
  end=$(pgc -d "$db" -c "SELECT pg_current_wal_lsn()")
  pgc -d "$db" -c "CHECKPOINT" >/dev/null
  for s in "${slots[@]}"; do
    local c t host
    IFS=_ read -r _ c t _ <<<"$s"
    host=127.0.0.1; [ "$t" = unix ] && host=$WALFOLD_TEST_PG_SOCKET_DIR
    local line
    line=$(BENCH_DB=$db bash "$root/bench/consume.sh" "$c" "$s" "$end" "$host" "$rows")
    echo "$name $t $line" >>"$out"
    echo "$name $t $line" | awk '{ mpj = ($13 > 0) ? $12 / $13 : 0
      printf "%-8s %-5s %-8s %9d %8.2f %10.0f %8.2f %9.2f %9.2f %8d %10.0f\n", $1, $2, $3, $5, $6, $7, $8, $9, $10, $11, mpj }'
  done
  # This backlog's slots go before the next backlog's are created (max_replication_slots).
  for s in "${slots[@]}"; do pgc -d "$db" -c "SELECT pg_drop_replication_slot('$s')" >/dev/null; done
}
for b in oltp bulk; do
  [ "$which" = both ] || [ "$which" = "$b" ] || continue
  backlog "$b"
done

echo
echo "summary (min / median / max over $runs runs; CPU in seconds per million rows; ratio = walfold rows/s over pg_recvlogical rows/s of the same run)"
python3 - "$out" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def mmm(v):
    v = sorted(v)
    return '%s / %s / %s' % tuple(('%.2f' % x if x < 100 else '%.0f' % x) for x in (v[0], statistics.median(v), v[-1]))
for b in ('oltp', 'bulk'):
    for t in ('tcp', 'unix'):
        sel = [r for r in rows if r[0] == b and r[1] == t]
        if not sel:
            continue
        rec = {r[3].rsplit('_', 1)[1]: r for r in sel if r[2] == 'recv'}
        wf = {r[3].rsplit('_', 1)[1]: r for r in sel if r[2] == 'walfold'}
        runs = sorted(set(rec) & set(wf))
        n = int(sel[0][4])
        per_m = lambda r, i: float(r[i]) / n * 1e6
        jobs = [int(wf[k][12]) for k in runs]
        print('%s over %s (%d rows, %d jobs):' % (b, t, n, jobs[0] if jobs else 0))
        print('  pg_recvlogical rows/s        %s' % mmm([float(rec[k][6]) for k in runs]))
        print('  walfold reader rows/s        %s' % mmm([float(wf[k][6]) for k in runs]))
        print('  ratio                        %s' % mmm([float(wf[k][6]) / float(rec[k][6]) for k in runs]))
        print('  walfold CPU s / M rows       %s' % mmm([per_m(wf[k], 7) for k in runs]))
        print('  walsender CPU s / M rows     %s (walfold) | %s (pg_recvlogical)' % (
            mmm([per_m(wf[k], 8) for k in runs]), mmm([per_m(rec[k], 8) for k in runs])))
        print('  Redis CPU s / M rows         %s; per job: %s us' % (
            mmm([per_m(wf[k], 9) for k in runs]),
            mmm([float(wf[k][9]) / max(1, int(wf[k][12])) * 1e6 for k in runs])))
        print('  walfold peak RSS MiB         %s' % mmm([int(wf[k][10]) / 1024 for k in runs]))
        print('  Redis used_memory per job B  %s' % mmm([int(wf[k][11]) / max(1, int(wf[k][12])) for k in runs]))
PY
