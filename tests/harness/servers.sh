#!/usr/bin/env bash
# shellcheck disable=SC2034  # WALFOLD_TEST_* variables are read indirectly by write_env
# walfold test harness: starts and stops throw-away PostgreSQL 15, Redis 7 and a MongoDB
# stand-in on loopback, on free private ports, in a temporary directory.
#
#   servers.sh start DIR [--owner-pid PID]   start all three into DIR (must be new or empty)
#   servers.sh stop DIR [--clean]            stop all three (idempotent); --clean removes DIR
#   servers.sh restart-redis DIR [--no-persistence]
#   servers.sh stop-redis DIR | start-redis DIR
#   servers.sh restart-pg DIR | stop-pg DIR | start-pg DIR
#   servers.sh stop-mongo DIR | start-mongo DIR
#   servers.sh pause-mongo DIR | resume-mongo DIR   SIGSTOP/SIGCONT the stand-in (data kept)
#   servers.sh status DIR                    print which servers are running (exit 1 if any is down)
#   servers.sh install-deps                  apt-get install everything needed to build and test
#
# DIR/env (shell-sourceable KEY=value lines) describes the running servers; see README.md.
set -euo pipefail

readonly PROG="servers.sh"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
SCRIPT_PATH="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
readonly SCRIPT_PATH

TIMEOUT="${WALFOLD_TEST_SERVER_TIMEOUT:-60}"
PORT_LOCK_DIR="${WALFOLD_TEST_PORT_LOCK_DIR:-/tmp/walfold-ports}"
PG_BIN="${WALFOLD_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}"
PYTHON="${WALFOLD_TEST_PYTHON:-/usr/bin/python3}"
STANDIN="${WALFOLD_TEST_MONGO_STANDIN:-$SCRIPT_DIR/mongo_standin.py}"
readonly PG_SUPERUSER="walfold_admin"
readonly PG_REPL_USER="walfold"
readonly LOOPBACK="127.0.0.1"

DEPS=(build-essential cmake ninja-build pkg-config postgresql-15 postgresql-client-15
  redis-server redis-tools libpq-dev libhiredis-dev libmongoc-dev libbson-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev libsystemd-dev libcli11-dev libgtest-dev
  libgmock-dev libbenchmark-dev python3-mockupdb python3-pymongo
  clang-format universal-ctags debhelper devscripts lintian systemd openssl stunnel4
  libcpp-httplib-dev nlohmann-json3-dev python3-prometheus-client
  chromium chromium-driver python3-selenium gcovr)
# Wanted only for promtool (the strict exposition and alert-rule checks): installed without its
# Recommends (node-exporter) and, like every package here, without starting its service.
DEPS_NO_RECOMMENDS=(prometheus)

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}
usage() {
  sed -n '3,16p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Last lines of a log file, indented, for error messages.
log_tail() {
  local f="$1" n="${2:-30}"
  if [[ -s "$f" ]]; then
    printf '  --- last %s lines of %s ---\n' "$n" "$f"
    tail -n "$n" "$f" | sed 's/^/  | /'
  else
    printf '  (%s is empty or missing)\n' "$f"
  fi
}

# Quote a value for DIR/env: bare if it is made of safe characters, else single-quoted.
env_quote() {
  local v="$1"
  if [[ "$v" =~ ^[A-Za-z0-9_./:@%+=,-]*$ ]]; then
    printf '%s' "$v"
  else
    printf "'%s'" "${v//\'/\'\\\'\'}"
  fi
}

abs_dir() {
  local d="$1"
  [[ "$d" == /* ]] || d="$PWD/$d"
  # Normalise without requiring existence.
  printf '%s' "$(realpath -m -- "$d")"
}

check_dir_name() {
  [[ "$1" =~ ^/[A-Za-z0-9._/-]+$ ]] ||
    die "DIR '$1' must be an absolute path of letters, digits, '.', '_', '-' and '/' only"
}

# True if the process exists and is not a zombie (kill -0 succeeds on zombies, and a daemon
# whose parent exited may linger as one until its new parent reaps it).
pid_alive() {
  local pid="${1:-}" stat
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z ]]
}

# Wait until a pid has exited (it need not be our child); returns 1 on timeout.
wait_pid_gone() {
  local pid="$1" secs="$2" i
  for ((i = 0; i < secs * 10; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------------------------------------
# Who runs PostgreSQL: it refuses to run as root.
# ---------------------------------------------------------------------------------------------
PG_OS_USER=""
setup_pg_user() {
  if [[ -n "${WALFOLD_TEST_PG_OS_USER:-}" ]]; then
    PG_OS_USER="$WALFOLD_TEST_PG_OS_USER"
  elif [[ "$(id -u)" == 0 ]]; then
    PG_OS_USER="postgres"
  else
    PG_OS_USER=""
  fi
  if [[ -n "$PG_OS_USER" ]]; then
    [[ "$(id -u)" == 0 ]] || die "WALFOLD_TEST_PG_OS_USER needs root (to switch users)"
    id -u "$PG_OS_USER" >/dev/null 2>&1 ||
      die "system user '$PG_OS_USER' (to run PostgreSQL, which refuses to run as root) does not exist; install postgresql-15 or set WALFOLD_TEST_PG_OS_USER"
  fi
}

# Runs a command as the PostgreSQL OS user from a directory it can read.
as_pg() {
  if [[ -n "$PG_OS_USER" ]]; then
    (cd / && runuser -u "$PG_OS_USER" -- "$@")
  else
    (cd / && "$@")
  fi
}

# ---------------------------------------------------------------------------------------------
# Free ports: random in 20000-40000, bind-tested, reserved by a flock on
# $PORT_LOCK_DIR/<port>.lock that a holder process keeps until `stop`.
# ---------------------------------------------------------------------------------------------
# port_bindable PORT [reuse]: can we bind 127.0.0.1:PORT? With "reuse", SO_REUSEADDR is set as
# the servers do, so that a port whose old connections linger in TIME_WAIT counts as free.
port_bindable() {
  local port="$1" reuse="${2:-}"
  if [[ -x "$PYTHON" ]]; then
    "$PYTHON" - "$port" "$reuse" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
if sys.argv[2] == "reuse":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
  else
    # No Python: fall back to a connect test (refused means nothing is listening).
    if (exec 3<>"/dev/tcp/$LOOPBACK/$port") 2>/dev/null; then return 1; fi
    return 0
  fi
}

declare -a LOCK_FDS=()
# Sets PICKED_PORT and keeps the lock's fd open in this shell (LOCK_FDS).
pick_port() {
  local tries port fd lock
  mkdir -p "$PORT_LOCK_DIR"
  chmod 1777 "$PORT_LOCK_DIR" 2>/dev/null || true
  for ((tries = 0; tries < 200; tries++)); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 20001))
    lock="$PORT_LOCK_DIR/$port.lock"
    (umask 000 && : >>"$lock") 2>/dev/null || continue
    exec {fd}>>"$lock" || continue
    if flock -n "$fd"; then
      if port_bindable "$port"; then
        LOCK_FDS+=("$fd")
        PICKED_PORT="$port"
        return 0
      fi
      flock -u "$fd"
    fi
    exec {fd}>&-
  done
  die "could not find a free port in 20000-40000 after 200 tries"
}

# Takes the lock of a known port again (start after a full stop); fails if someone else holds it.
relock_port() {
  local port="$1" fd lock="$PORT_LOCK_DIR/$1.lock"
  mkdir -p "$PORT_LOCK_DIR"
  (umask 000 && : >>"$lock") 2>/dev/null || true
  exec {fd}>>"$lock" || die "cannot open $lock"
  flock -w 5 "$fd" || die "port $port is reserved by another process ($lock is locked)"
  LOCK_FDS+=("$fd")
}

close_lock_fds() {
  local fd
  for fd in "${LOCK_FDS[@]}"; do exec {fd}>&-; done
  LOCK_FDS=()
}

# The holder keeps the port locks (inherited fds) while the servers live, and, with an owner
# pid, stops the servers when the owner (a test process) dies without stopping them.
start_holder() {
  local owner="${1:-}" owner_start=""
  if [[ -n "$owner" ]]; then
    [[ -r "/proc/$owner/stat" ]] || die "--owner-pid $owner: no such process"
    owner_start="$(proc_start_time "$owner")"
  fi
  setsid "$BASH" "$SCRIPT_PATH" __hold "$DIR" "$owner" "$owner_start" \
    </dev/null >>"$DIR/holder.log" 2>&1 &
  HOLDER_PID=$!
  close_lock_fds
}

proc_start_time() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
  stat="${stat##*) }"
  # Field 22 of stat is field 20 after "pid (comm) ".
  awk '{print $20}' <<<"$stat"
}

cmd_hold() {
  local dir="$1" owner="$2" owner_start="$3"
  local sleeper=""
  # The sleep inherits the lock fds: end it too, so the locks go with the holder.
  trap 'if [[ -n "$sleeper" ]]; then kill "$sleeper" 2>/dev/null; fi; exit 0' TERM INT
  while [[ -d "$dir" ]]; do
    if [[ -n "$owner" ]]; then
      if [[ ! -r "/proc/$owner/stat" || "$(proc_start_time "$owner")" != "$owner_start" ]]; then
        echo "$(date -u +%FT%TZ) owner pid $owner has exited; stopping the servers in $dir"
        WALFOLD_SERVERS_FROM_HOLDER=1 "$BASH" "$SCRIPT_PATH" stop "$dir" || true
        exit 0
      fi
    fi
    sleep 1 &
    sleeper=$!
    wait "$sleeper" || true
    sleeper=""
  done
}

# ---------------------------------------------------------------------------------------------
# State: DIR/env is both the description for tests and our own state.
# ---------------------------------------------------------------------------------------------
load_env() {
  [[ -f "$DIR/env" ]] || die "$DIR/env not found: servers were not started in $DIR"
  # shellcheck disable=SC1091
  source "$DIR/env"
}

write_env() {
  local tmp="$DIR/env.tmp.$$"
  {
    echo "# written by tests/harness/servers.sh; sourceable by sh/bash"
    local k
    for k in WALFOLD_TEST_SERVERS_DIR WALFOLD_TEST_PG_HOST WALFOLD_TEST_PG_PORT \
      WALFOLD_TEST_PG_SOCKET_DIR WALFOLD_TEST_PG_SUPERUSER WALFOLD_TEST_PG_REPL_USER \
      WALFOLD_TEST_PG_REPL_PASSWORD WALFOLD_TEST_PG_DATA WALFOLD_TEST_PG_BIN WALFOLD_TEST_PG_LOG \
      WALFOLD_TEST_PG_OS_USER WALFOLD_TEST_PG_PID WALFOLD_TEST_REDIS_HOST WALFOLD_TEST_REDIS_PORT \
      WALFOLD_TEST_REDIS_LOG WALFOLD_TEST_REDIS_PID WALFOLD_TEST_MONGODB_URI \
      WALFOLD_TEST_MONGO_KIND WALFOLD_TEST_MONGO_PORT WALFOLD_TEST_MONGO_LOG \
      WALFOLD_TEST_MONGO_PID WALFOLD_TEST_HOLDER_PID; do
      printf '%s=%s\n' "$k" "$(env_quote "${!k:-}")"
    done
  } >"$tmp"
  chmod 644 "$tmp"
  mv -f "$tmp" "$DIR/env"
}


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------
pg_init() {
  local data="$DIR/pg-data" sock="$DIR/pg"
  mkdir -p "$data" "$sock"
  chmod 700 "$data"
  : >"$DIR/pg.log"
  if [[ -n "$PG_OS_USER" ]]; then
    chown "$PG_OS_USER" "$data" "$sock" "$DIR/pg.log"
    as_pg test -w "$sock" ||
      die "user '$PG_OS_USER' cannot reach $sock (is a parent of $DIR closed to it? set TMPDIR to e.g. /tmp)"
  fi
  if ! as_pg "$PG_BIN/initdb" -D "$data" -U "$PG_SUPERUSER" --auth=trust -E UTF8 --locale=C \
    --no-sync --no-instructions >"$DIR/initdb.log" 2>&1; then
    die "initdb failed for PostgreSQL in $data:
$(log_tail "$DIR/initdb.log" 40)"
  fi
  cat >>"$data/postgresql.conf" <<EOF

# ---- walfold test harness ----
listen_addresses = '$LOOPBACK'
port = $WALFOLD_TEST_PG_PORT
unix_socket_directories = '$sock'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
wal_sender_timeout = 60s
fsync = off
full_page_writes = off
shared_buffers = 128MB
max_connections = 200
logging_collector = off
log_destination = 'stderr'
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
EOF
  cat >"$data/pg_hba.conf" <<EOF
# walfold test harness. The '$PG_REPL_USER' role must give its password over TCP;
# everyone else (notably the superuser '$PG_SUPERUSER') is trusted on loopback and the socket.
# TYPE  DATABASE     USER            ADDRESS          METHOD
local   all          all                              trust
local   replication  all                              trust
host    all          $PG_REPL_USER   $LOOPBACK/32     scram-sha-256
host    replication  $PG_REPL_USER   $LOOPBACK/32     scram-sha-256
host    all          all             $LOOPBACK/32     trust
host    replication  all             $LOOPBACK/32     trust
EOF
  if [[ -n "$PG_OS_USER" ]]; then chown "$PG_OS_USER" "$data/postgresql.conf" "$data/pg_hba.conf"; fi
}

pg_pid() {
  local f="$DIR/pg-data/postmaster.pid"
  if [[ -r "$f" ]]; then head -n 1 "$f"; fi
}

pg_start() {
  local data="$DIR/pg-data" out
  if pid_alive "$(pg_pid)"; then
    WALFOLD_TEST_PG_PID="$(pg_pid)"
    return 0
  fi
  port_bindable "$WALFOLD_TEST_PG_PORT" reuse ||
    die "PostgreSQL cannot start: port $LOOPBACK:$WALFOLD_TEST_PG_PORT is in use by another process"
  if ! out="$(as_pg "$PG_BIN/pg_ctl" start -w -t "$TIMEOUT" -D "$data" -l "$DIR/pg.log" 2>&1)"; then
    die "PostgreSQL failed to start on $LOOPBACK:$WALFOLD_TEST_PG_PORT (socket dir $DIR/pg; timeout ${TIMEOUT}s): $out
$(log_tail "$DIR/pg.log")"
  fi
  local i
  for ((i = 0; i < TIMEOUT * 10; i++)); do
    if "$PG_BIN/pg_isready" -q -h "$LOOPBACK" -p "$WALFOLD_TEST_PG_PORT" -U "$PG_SUPERUSER" -d postgres -t 2; then
      WALFOLD_TEST_PG_PID="$(pg_pid)"
      return 0
    fi
    pid_alive "$(pg_pid)" || break
    sleep 0.1
  done
  die "PostgreSQL did not accept connections on $LOOPBACK:$WALFOLD_TEST_PG_PORT (socket dir $DIR/pg) within ${TIMEOUT}s
$(log_tail "$DIR/pg.log")"
}

pg_stop() {
  local data="$DIR/pg-data" pid
  pid="$(pg_pid)"
  [[ -d "$data" ]] || return 0
  if pid_alive "$pid"; then
    as_pg "$PG_BIN/pg_ctl" stop -D "$data" -m fast -w -t "$TIMEOUT" >/dev/null 2>&1 || true
    if pid_alive "$pid"; then
      log "PostgreSQL (pid $pid) did not stop with -m fast; sending SIGQUIT"
      kill -QUIT "$pid" 2>/dev/null || true
      wait_pid_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
      wait_pid_gone "$pid" 10 || true
    fi
  fi
  WALFOLD_TEST_PG_PID=""
}

pg_create_roles() {
  local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$LOOPBACK" -p "$WALFOLD_TEST_PG_PORT"
    -U "$PG_SUPERUSER" -d postgres)
  if ! "${psql[@]}" >>"$DIR/pg-setup.log" 2>&1 <<EOF; then
CREATE ROLE $PG_REPL_USER WITH LOGIN REPLICATION PASSWORD '$WALFOLD_TEST_PG_REPL_PASSWORD';
EOF
    die "creating role $PG_REPL_USER on PostgreSQL $LOOPBACK:$WALFOLD_TEST_PG_PORT failed:
$(log_tail "$DIR/pg-setup.log")"
  fi
}

# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------
redis_write_conf() {
  mkdir -p "$DIR/redis"
  cat >"$DIR/redis.conf" <<EOF
# walfold test harness
port $WALFOLD_TEST_REDIS_PORT
bind $LOOPBACK
protected-mode yes
dir $DIR/redis
appendonly yes
appendfsync everysec
maxmemory-policy noeviction
daemonize yes
pidfile $DIR/redis.pid
logfile $DIR/redis.log
save ""
EOF
}

redis_pid() { if [[ -r "$DIR/redis.pid" ]]; then cat "$DIR/redis.pid"; fi; }

redis_cli() { redis-cli -h "$LOOPBACK" -p "$WALFOLD_TEST_REDIS_PORT" "$@"; }

redis_start() {
  local pid out
  pid="$(redis_pid)"
  if pid_alive "$pid" && [[ "$(redis_cli ping 2>/dev/null)" == PONG ]]; then
    WALFOLD_TEST_REDIS_PID="$pid"
    return 0
  fi
  command -v redis-server >/dev/null || die "redis-server not found (install redis-server)"
  port_bindable "$WALFOLD_TEST_REDIS_PORT" reuse ||
    die "Redis cannot start: port $LOOPBACK:$WALFOLD_TEST_REDIS_PORT is in use by another process"
  rm -f "$DIR/redis.pid"
  touch "$DIR/redis.log"
  if ! out="$(cd "$DIR/redis" && redis-server "$DIR/redis.conf" </dev/null 2>&1)"; then
    die "redis-server failed to start on $LOOPBACK:$WALFOLD_TEST_REDIS_PORT: $out
$(log_tail "$DIR/redis.log")"
  fi
  local i
  for ((i = 0; i < TIMEOUT * 10; i++)); do
    if [[ "$(redis_cli ping 2>/dev/null)" == PONG ]]; then
      WALFOLD_TEST_REDIS_PID="$(redis_pid)"
      return 0
    fi
    if ((i > 20)) && [[ -s "$DIR/redis.pid" ]] && ! pid_alive "$(redis_pid)"; then break; fi
    sleep 0.1
  done
  die "Redis did not answer PING on $LOOPBACK:$WALFOLD_TEST_REDIS_PORT within ${TIMEOUT}s
$(log_tail "$DIR/redis.log")"
}

redis_stop() {
  local pid
  pid="$(redis_pid)"
  if pid_alive "$pid"; then
    redis_cli shutdown nosave >/dev/null 2>&1 || true
    if ! wait_pid_gone "$pid" "$TIMEOUT"; then
      log "Redis (pid $pid) did not shut down; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      wait_pid_gone "$pid" 10 || true
    fi
  fi
  rm -f "$DIR/redis.pid"
  WALFOLD_TEST_REDIS_PID=""
}

# ---------------------------------------------------------------------------------------------
# MongoDB stand-in
# ---------------------------------------------------------------------------------------------
mongo_start() {
  [[ "$WALFOLD_TEST_MONGO_KIND" == standin ]] || return 0
  local pid="${WALFOLD_TEST_MONGO_PID:-}" ready="$DIR/mongo.ready"
  if pid_alive "$pid"; then return 0; fi
  [[ -f "$STANDIN" ]] || die "MongoDB stand-in $STANDIN not found (or set WALFOLD_TEST_MONGODB_URI to a real MongoDB)"
  [[ -x "$PYTHON" ]] || die "$PYTHON not found (needed by the MongoDB stand-in)"
  port_bindable "$WALFOLD_TEST_MONGO_PORT" reuse ||
    die "MongoDB stand-in cannot start: port $LOOPBACK:$WALFOLD_TEST_MONGO_PORT is in use by another process"
  rm -f "$ready"
  echo "=== $(date -u +%FT%TZ) starting $STANDIN on port $WALFOLD_TEST_MONGO_PORT ===" >>"$DIR/mongo.log"
  setsid "$PYTHON" "$STANDIN" --port "$WALFOLD_TEST_MONGO_PORT" --ready-file "$ready" \
    </dev/null >>"$DIR/mongo.log" 2>&1 &
  pid=$!
  WALFOLD_TEST_MONGO_PID="$pid"
  local i got=""
  for ((i = 0; i < TIMEOUT * 10; i++)); do
    if [[ -s "$ready" ]]; then
      got="$(tr -dc '0-9' <"$ready")"
      if [[ -n "$got" ]]; then
        [[ "$got" == "$WALFOLD_TEST_MONGO_PORT" ]] ||
          die "MongoDB stand-in reported port $got in $ready, expected $WALFOLD_TEST_MONGO_PORT"
        return 0
      fi
    fi
    pid_alive "$pid" || break
    sleep 0.1
  done
  kill -TERM "$pid" 2>/dev/null || true
  die "MongoDB stand-in did not become ready on $LOOPBACK:$WALFOLD_TEST_MONGO_PORT within ${TIMEOUT}s (ready file $ready)
$(log_tail "$DIR/mongo.log")"
}

mongo_stop() {
  [[ "${WALFOLD_TEST_MONGO_KIND:-}" == standin ]] || return 0
  local pid="${WALFOLD_TEST_MONGO_PID:-}"
  if pid_alive "$pid"; then
    # A paused stand-in would not act on SIGTERM until continued.
    kill -CONT -- "-$pid" 2>/dev/null || kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_pid_gone "$pid" 15; then
      log "MongoDB stand-in (pid $pid) ignored SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      wait_pid_gone "$pid" 10 || true
    fi
  fi
  rm -f "$DIR/mongo.ready"
  WALFOLD_TEST_MONGO_PID=""
}

# The stand-in runs in its own session (setsid), so its pid is also its process group: stop or
# continue the whole group. A stopped server keeps its data and its listening socket; the kernel
# still accepts connections, but nothing is answered, so clients hang until their timeouts fire
# (the realistic "unreachable" case, unlike a closed port that refuses at once).
proc_state() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
  stat="${stat##*) }"
  printf '%s' "${stat:0:1}"
}

mongo_pause() {
  local pid="${WALFOLD_TEST_MONGO_PID:-}" i
  pid_alive "$pid" || die "MongoDB stand-in is not running (pid '${pid}'); cannot pause it"
  kill -STOP -- "-$pid" 2>/dev/null || kill -STOP "$pid" || die "cannot SIGSTOP the MongoDB stand-in (pid $pid)"
  for ((i = 0; i < 50; i++)); do
    [[ "$(proc_state "$pid")" == T ]] && return 0
    sleep 0.1
  done
  die "MongoDB stand-in (pid $pid) did not stop after SIGSTOP (state $(proc_state "$pid"))"
}

mongo_resume() {
  local pid="${WALFOLD_TEST_MONGO_PID:-}" i
  pid_alive "$pid" || die "MongoDB stand-in is not running (pid '${pid}'); cannot resume it"
  kill -CONT -- "-$pid" 2>/dev/null || kill -CONT "$pid" || die "cannot SIGCONT the MongoDB stand-in (pid $pid)"
  for ((i = 0; i < 50; i++)); do
    [[ "$(proc_state "$pid")" != T ]] && tcp_open "$WALFOLD_TEST_MONGO_PORT" && return 0
    sleep 0.1
  done
  die "MongoDB stand-in (pid $pid) is not running after SIGCONT (state $(proc_state "$pid"))"
}

tcp_open() { (exec 3<>"/dev/tcp/$LOOPBACK/$1") 2>/dev/null; }

require_standin() {
  [[ "$WALFOLD_TEST_MONGO_KIND" == standin ]] ||
    die "MongoDB in $DIR is a real server ($WALFOLD_TEST_MONGODB_URI); servers.sh can only stop/start the stand-in"
}

# ---------------------------------------------------------------------------------------------
# Sub-commands
# ---------------------------------------------------------------------------------------------
START_OK=0
start_cleanup() {
  if [[ "$START_OK" != 1 ]]; then
    log "start failed; stopping what was started (logs kept in $DIR)"
    mongo_stop || true
    redis_stop || true
    pg_stop || true
    if pid_alive "${HOLDER_PID:-}"; then kill -TERM "$HOLDER_PID" 2>/dev/null || true; fi
  fi
}

cmd_start() {
  local owner=""
  while (($#)); do
    case "$1" in
      --owner-pid) owner="${2:?--owner-pid needs a pid}"; shift 2 ;;
      *) die "start: unknown option $1" ;;
    esac
  done
  local suffix="/pg/.s.PGSQL.40000"
  ((${#DIR} + ${#suffix} < 100)) || die "DIR $DIR is too long for a Unix socket path; use a shorter TMPDIR"
  chmod 755 "$DIR"
  setup_pg_user
  # Preflight, so that a missing piece fails before anything is started.
  local b
  for b in initdb pg_ctl pg_isready psql; do
    [[ -x "$PG_BIN/$b" ]] || die "$PG_BIN/$b not found (install postgresql-15, or set WALFOLD_TEST_PG_BIN)"
  done
  command -v redis-server >/dev/null || die "redis-server not found (install redis-server)"
  command -v redis-cli >/dev/null || die "redis-cli not found (install redis-tools)"
  if [[ -z "${WALFOLD_TEST_MONGODB_URI:-}" ]]; then
    [[ -f "$STANDIN" ]] || die "MongoDB stand-in $STANDIN not found (or set WALFOLD_TEST_MONGODB_URI to a real MongoDB)"
    [[ -x "$PYTHON" ]] || die "$PYTHON not found (needed by the MongoDB stand-in)"
  fi

  WALFOLD_TEST_SERVERS_DIR="$DIR"
  WALFOLD_TEST_PG_HOST="$LOOPBACK"
  WALFOLD_TEST_PG_SOCKET_DIR="$DIR/pg"
  WALFOLD_TEST_PG_SUPERUSER="$PG_SUPERUSER"
  WALFOLD_TEST_PG_REPL_USER="$PG_REPL_USER"
  WALFOLD_TEST_PG_REPL_PASSWORD="wf_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
  WALFOLD_TEST_PG_DATA="$DIR/pg-data"
  WALFOLD_TEST_PG_BIN="$PG_BIN"
  WALFOLD_TEST_PG_LOG="$DIR/pg.log"
  WALFOLD_TEST_PG_OS_USER="$PG_OS_USER"
  WALFOLD_TEST_REDIS_HOST="$LOOPBACK"
  WALFOLD_TEST_REDIS_LOG="$DIR/redis.log"
  WALFOLD_TEST_MONGO_LOG="$DIR/mongo.log"
  WALFOLD_TEST_PG_PID="" WALFOLD_TEST_REDIS_PID="" WALFOLD_TEST_MONGO_PID=""

  pick_port && WALFOLD_TEST_PG_PORT="$PICKED_PORT"
  pick_port && WALFOLD_TEST_REDIS_PORT="$PICKED_PORT"
  if [[ -n "${WALFOLD_TEST_MONGODB_URI:-}" ]]; then
    WALFOLD_TEST_MONGO_KIND=real
    WALFOLD_TEST_MONGO_PORT=""
  else
    WALFOLD_TEST_MONGO_KIND=standin
    pick_port && WALFOLD_TEST_MONGO_PORT="$PICKED_PORT"
    WALFOLD_TEST_MONGODB_URI="mongodb://$LOOPBACK:$WALFOLD_TEST_MONGO_PORT"
  fi
  trap start_cleanup EXIT
  start_holder "$owner"
  WALFOLD_TEST_HOLDER_PID="$HOLDER_PID"
  write_env

  pg_init
  pg_start
  pg_create_roles
  write_env
  redis_write_conf
  redis_start
  write_env
  if [[ "$WALFOLD_TEST_MONGO_KIND" == standin ]]; then
    : >"$DIR/mongo.log"
    mongo_start
  fi
  write_env
  START_OK=1
  trap - EXIT
  log "PostgreSQL $LOOPBACK:$WALFOLD_TEST_PG_PORT, Redis $LOOPBACK:$WALFOLD_TEST_REDIS_PORT, MongoDB ($WALFOLD_TEST_MONGO_KIND) $WALFOLD_TEST_MONGODB_URI; env in $DIR/env"
}

cmd_stop() {
  local clean=0
  while (($#)); do
    case "$1" in
      --clean) clean=1; shift ;;
      *) die "stop: unknown option $1" ;;
    esac
  done
  if [[ ! -d "$DIR" ]]; then return 0; fi
  if [[ -f "$DIR/env" ]]; then
      load_env
    PG_OS_USER="${WALFOLD_TEST_PG_OS_USER:-}"
    PG_BIN="${WALFOLD_TEST_PG_BIN:-$PG_BIN}"
    mongo_stop
    redis_stop
    pg_stop
    if [[ -z "${WALFOLD_SERVERS_FROM_HOLDER:-}" ]] && pid_alive "${WALFOLD_TEST_HOLDER_PID:-}"; then
      kill -TERM "$WALFOLD_TEST_HOLDER_PID" 2>/dev/null || true
      wait_pid_gone "$WALFOLD_TEST_HOLDER_PID" 5 || kill -KILL "$WALFOLD_TEST_HOLDER_PID" 2>/dev/null || true
    fi
    WALFOLD_TEST_HOLDER_PID=""
    write_env
  fi
  if ((clean)); then
    check_dir_name "$DIR"
    rm -rf -- "$DIR"
  fi
}

# For the single-server sub-commands: load state, make sure the port locks are still ours.
prepare_ctl() {
  load_env
  PG_OS_USER="${WALFOLD_TEST_PG_OS_USER:-}"
  PG_BIN="${WALFOLD_TEST_PG_BIN:-$PG_BIN}"
  if ! pid_alive "${WALFOLD_TEST_HOLDER_PID:-}"; then
    # After a full stop: reserve the ports again for as long as the servers run.
    relock_port "$WALFOLD_TEST_PG_PORT"
    relock_port "$WALFOLD_TEST_REDIS_PORT"
    if [[ -n "${WALFOLD_TEST_MONGO_PORT:-}" ]]; then relock_port "$WALFOLD_TEST_MONGO_PORT"; fi
    start_holder ""
    WALFOLD_TEST_HOLDER_PID="$HOLDER_PID"
  fi
}

cmd_ctl() {
  local sub="$1"
  shift
  local no_persist=0
  while (($#)); do
    case "$1" in
      --no-persistence)
        [[ "$sub" == restart-redis || "$sub" == start-redis ]] || die "$sub: --no-persistence is only for restart-redis/start-redis"
        no_persist=1
        shift
        ;;
      *) die "$sub: unknown option $1" ;;
    esac
  done
  prepare_ctl
  case "$sub" in
    stop-redis) redis_stop ;;
    start-redis | restart-redis)
      redis_stop
      if ((no_persist)); then
        # Come back empty, as a Redis without persistence would after a crash.
        rm -rf -- "$DIR/redis"
        mkdir -p "$DIR/redis"
      fi
      redis_start
      ;;
    stop-pg) pg_stop ;;
    start-pg) pg_start ;;
    restart-pg)
      pg_stop
      pg_start
      ;;
    stop-mongo) require_standin && mongo_stop ;;
    start-mongo) require_standin && mongo_start ;;
    restart-mongo)
      require_standin
      mongo_stop
      mongo_start
      ;;
    pause-mongo) require_standin && mongo_pause ;;
    resume-mongo) require_standin && mongo_resume ;;
  esac
  write_env
}

cmd_status() {
  load_env
  local rc=0
  if pid_alive "$(pg_pid)"; then echo "pg: running pid $(pg_pid) port $WALFOLD_TEST_PG_PORT"; else echo "pg: stopped"; rc=1; fi
  if pid_alive "$(redis_pid)"; then echo "redis: running pid $(redis_pid) port $WALFOLD_TEST_REDIS_PORT"; else echo "redis: stopped"; rc=1; fi
  if [[ "$WALFOLD_TEST_MONGO_KIND" == real ]]; then
    echo "mongo: real $WALFOLD_TEST_MONGODB_URI"
  elif pid_alive "${WALFOLD_TEST_MONGO_PID:-}" && [[ "$(proc_state "$WALFOLD_TEST_MONGO_PID")" == T ]]; then
    echo "mongo: stand-in paused (SIGSTOP) pid $WALFOLD_TEST_MONGO_PID port $WALFOLD_TEST_MONGO_PORT"
    rc=1
  elif pid_alive "${WALFOLD_TEST_MONGO_PID:-}"; then
    echo "mongo: stand-in running pid $WALFOLD_TEST_MONGO_PID port $WALFOLD_TEST_MONGO_PORT"
  else
    echo "mongo: stopped"
    rc=1
  fi
  return "$rc"
}

cmd_install_deps() {
  local missing=() bare=() p
  for p in "${DEPS[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]]; then
      missing+=("$p")
    fi
  done
  for p in "${DEPS_NO_RECOMMENDS[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]]; then
      bare+=("$p")
    fi
  done
  if ((${#missing[@]} + ${#bare[@]} == 0)); then
    log "all $((${#DEPS[@]} + ${#DEPS_NO_RECOMMENDS[@]})) packages are installed"
    return 0
  fi
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || die "missing packages (${missing[*]}) and not root; no sudo"
    sudo=(sudo -n)
  fi
  log "installing: ${missing[*]} ${bare[*]}"
  export DEBIAN_FRONTEND=noninteractive
  local apt=(apt-get -q -y -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  # The tests start their own servers on loopback: no package install may start one (a
  # policy-rc.d that refuses, removed afterwards); prometheus's service would listen on every
  # interface, so it is also disabled where systemd runs.
  local policy=/usr/sbin/policy-rc.d ours=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# walfold tests/harness/servers.sh install-deps\nexit 101\n' |
      "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    ours=1
  fi
  local rc=0
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "${apt[@]}" update || rc=$?
  if ((rc == 0 && ${#missing[@]} > 0)); then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" || rc=$?
  fi
  if ((rc == 0 && ${#bare[@]} > 0)); then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends \
      "${bare[@]}" || rc=$?
  fi
  ((ours)) && "${sudo[@]}" rm -f "$policy"
  if [[ -d /run/systemd/system ]] && systemctl list-unit-files prometheus.service >/dev/null 2>&1; then
    "${sudo[@]}" systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
  ((rc == 0)) || die "apt-get failed (exit $rc)"
}

main() {
  (($# >= 1)) || usage
  local sub="$1"
  shift
  case "$sub" in
    install-deps) cmd_install_deps "$@"; return ;;
    -h | --help | help) usage ;;
  esac
  (($# >= 1)) || usage
  DIR="$(abs_dir "$1")"
  shift
  if [[ "$sub" != __hold && -z "${WALFOLD_SERVERS__LOCKED:-}" ]]; then
    # Serialise sub-commands on one DIR: run again under a lock on DIR/.ctl.lock that only the
    # flock process holds (-o: the servers we start must not inherit it).
    if [[ "$sub" == start ]]; then
      check_dir_name "$DIR"
      if [[ -e "$DIR" ]]; then
        [[ -d "$DIR" ]] || die "$DIR exists and is not a directory"
        [[ -z "$(ls -A "$DIR")" ]] || die "$DIR is not empty (start needs a fresh directory)"
      fi
      mkdir -p "$DIR"
    elif [[ ! -d "$DIR" ]]; then
      [[ "$sub" == stop ]] && return 0
      die "$DIR does not exist"
    fi
    WALFOLD_SERVERS__LOCKED=1 exec flock -o -w 300 -E 75 "$DIR/.ctl.lock" \
      "$BASH" "$SCRIPT_PATH" "$sub" "$DIR" "$@"
  fi
  unset WALFOLD_SERVERS__LOCKED
  case "$sub" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    stop-redis | start-redis | restart-redis | stop-pg | start-pg | restart-pg | stop-mongo | start-mongo | restart-mongo | pause-mongo | resume-mongo)
      cmd_ctl "$sub" "$@"
      ;;
    __hold) cmd_hold "$DIR" "$@" ;;
    *) usage ;;
  esac
}

main "$@"
