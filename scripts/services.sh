#!/usr/bin/env bash
# Start (or stop) the backing services Dispatcher needs: RabbitMQ and PostgreSQL.
#
#   eval "$(scripts/services.sh)"     # start if needed, export connection strings
#   scripts/services.sh stop          # stop both
#   scripts/services.sh env           # only print the export lines
#
# If a Docker engine answers (`docker info`), the services come from
# docker-compose.yml. Otherwise the Debian packages are used (installed with
# apt when running as root and missing):
#   * PostgreSQL 15: a private cluster (NOT Debian's `main` cluster) in
#     $DISPATCHER_PG_DATA (default /var/tmp/dispatcher-pg), run as user
#     `postgres`, listening on 127.0.0.1:$DISPATCHER_PG_PORT (default 55432),
#     trust auth, log in ${DISPATCHER_PG_DATA}.log.
#   * RabbitMQ: the distribution's rabbitmq-server with the management plugin,
#     default guest/guest user, AMQP on 5672, management UI on 15672.
#
# Idempotent: already running services are left alone, an existing data
# directory is reused. Only the two `export ...` lines go to stdout; every
# progress message goes to stderr.
#
# Environment:
#   DISPATCHER_PG_PORT     PostgreSQL port on 127.0.0.1 (default 55432)
#   DISPATCHER_PG_DATA     native PostgreSQL data directory (default /var/tmp/dispatcher-pg)
#   DISPATCHER_SERVICES    auto (default) | docker | native
#   DISPATCHER_WAIT_SECS   readiness timeout per service in seconds (default 90)
set -euo pipefail

# Everything goes to stderr except what is explicitly written to fd 3.
exec 3>&1 1>&2

PG_PORT="${DISPATCHER_PG_PORT:-55432}"
PG_DATA="${DISPATCHER_PG_DATA:-/var/tmp/dispatcher-pg}"
PG_DATA="${PG_DATA%/}"
PG_LOG="${PG_DATA}.log"
PG_BIN=/usr/lib/postgresql/15/bin
PG_DB=dispatcher
MODE="${DISPATCHER_SERVICES:-auto}"
WAIT_SECS="${DISPATCHER_WAIT_SECS:-90}"
RABBIT_PORT=5672

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPOSE_FILE="$REPO_ROOT/docker-compose.yml"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command that leaves a daemon behind with every file descriptor above 2
# closed. Otherwise the daemon inherits fd 3 (this script's real stdout) and
# any other pipe of the caller, and `eval "$(scripts/services.sh)"` (or a
# `| tee`) would wait for EOF forever.
without_extra_fds() {
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd="${fd##*/}"
      if [[ "$fd" =~ ^[0-9]+$ ]] && [ "$fd" -gt 2 ]; then
        eval "exec $fd>&-"
      fi
    done
    "$@"
  )
}

# ---------------------------------------------------------------- apt helpers
APT_UPDATED=0
apt_install() {
  is_root || die "package(s) '$*' missing and not running as root: install them (apt-get install -y $*) or re-run as root"
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# ------------------------------------------------------------- docker helpers
docker_engine_up() {
  command -v docker >/dev/null 2>&1 && timeout 15 docker info >/dev/null 2>&1
}

compose_available() {
  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1
}

# `docker compose` (v2 plugin) if present, else the standalone docker-compose.
compose() {
  if docker compose version >/dev/null 2>&1; then
    DISPATCHER_PG_PORT="$PG_PORT" docker compose -p dispatcher -f "$COMPOSE_FILE" "$@"
  elif command -v docker-compose >/dev/null 2>&1; then
    DISPATCHER_PG_PORT="$PG_PORT" docker-compose -p dispatcher -f "$COMPOSE_FILE" "$@"
  else
    die "a Docker engine answers but neither 'docker compose' nor 'docker-compose' is installed (or run with DISPATCHER_SERVICES=native)"
  fi
}

# ----------------------------------------------------------- postgres (native)
# OS user that owns and runs the private cluster.
if is_root; then PG_OS_USER=postgres; else PG_OS_USER="$(id -un)"; fi

as_pg() {
  if is_root; then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}

psql_cmd() {
  local psql="$PG_BIN/psql"
  [ -x "$psql" ] || psql=psql
  "$psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -v ON_ERROR_STOP=1 "$@"
}

pg_ready() {
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 3 >/dev/null 2>&1
}

ensure_pg_installed() {
  if [ ! -x "$PG_BIN/initdb" ]; then
    if is_root; then
      apt_install postgresql-15 || apt_install postgresql
    else
      die "PostgreSQL 15 not found in $PG_BIN and not running as root: run 'apt-get install -y postgresql-15' as root first"
    fi
  fi
  [ -x "$PG_BIN/initdb" ] || die "PostgreSQL installed but $PG_BIN/initdb is still missing"
  if is_root && ! id postgres >/dev/null 2>&1; then
    die "user 'postgres' does not exist (the postgresql package should have created it)"
  fi
}

# The socket directory the Debian build uses by default; create it if needed
# (it normally comes from postgresql-common's init script, which never runs here).
PG_SOCKET_DIR=/var/run/postgresql
ensure_pg_socket_dir() {
  if [ ! -d "$PG_SOCKET_DIR" ] && is_root; then
    mkdir -p "$PG_SOCKET_DIR"
  fi
  if [ -d "$PG_SOCKET_DIR" ] && is_root; then
    chown postgres:postgres "$PG_SOCKET_DIR"
    chmod 2775 "$PG_SOCKET_DIR"
  fi
}

write_pg_conf() {
  # Settings owned by this script, rewritten on every start; postgresql.conf
  # includes this file once (appended after initdb).
  local socket_dirs="''"
  if [ -d "$PG_SOCKET_DIR" ] && as_pg test -w "$PG_SOCKET_DIR"; then
    socket_dirs="'$PG_SOCKET_DIR'"
  fi
  # pg_stat_statements, when the server has it: the bench reports PostgreSQL's time per statement with it.
  local preload=""
  if [ -f "$(dirname "$PG_BIN")/lib/pg_stat_statements.so" ]; then
    preload="shared_preload_libraries = 'pg_stat_statements'"
  fi
  as_pg tee "$PG_DATA/dispatcher.conf" >/dev/null <<EOF
# Managed by scripts/services.sh: rewritten on every start, edits are lost.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = $socket_dirs
max_connections = 300
shared_buffers = 256MB
fsync = on
synchronous_commit = on
full_page_writes = on
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
$preload
EOF
  if ! grep -q "^include_if_exists = 'dispatcher.conf'" "$PG_DATA/postgresql.conf"; then
    printf "\n# Added by scripts/services.sh\ninclude_if_exists = 'dispatcher.conf'\n" \
      | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
  fi
}

pg_initdb_if_needed() {
  if [ -f "$PG_DATA/PG_VERSION" ]; then
    log "postgres: reusing data directory $PG_DATA"
    return
  fi
  case "$PG_DATA" in
    /root|/root/*) die "DISPATCHER_PG_DATA=$PG_DATA is under /root, which user postgres cannot reach; pick e.g. /var/tmp/dispatcher-pg" ;;
  esac
  if [ -d "$PG_DATA" ] && [ -n "$(ls -A "$PG_DATA" 2>/dev/null)" ]; then
    die "$PG_DATA exists, is not empty and holds no PG_VERSION: refusing to initdb over it"
  fi
  log "postgres: initdb $PG_DATA"
  mkdir -p "$PG_DATA"
  if is_root; then chown "$PG_OS_USER": "$PG_DATA"; fi
  chmod 700 "$PG_DATA"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null \
    || as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust \
      --encoding=UTF8 --no-locale >/dev/null
}

# A postmaster.pid left by a killed server (or whose PID now belongs to some
# other process) would make the new postmaster refuse to start.
pg_remove_stale_pidfile() {
  local pidfile="$PG_DATA/postmaster.pid" pid comm
  [ -f "$pidfile" ] || return 0
  pid="$(head -n1 "$pidfile" 2>/dev/null || true)"
  if [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/comm" ]; then
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    if [ "$comm" = postgres ] || [ "$comm" = postmaster ]; then
      return 0  # a live server owns the directory; the caller waits for it
    fi
  fi
  log "postgres: removing stale $pidfile (PID ${pid:-?} is not a running postgres)"
  rm -f "$pidfile"
}

pg_pid_alive() {
  local pidfile="$PG_DATA/postmaster.pid" pid
  [ -f "$pidfile" ] || return 1
  pid="$(head -n1 "$pidfile" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ]
}

wait_for() {  # wait_for NAME CHECK-COMMAND...
  local name="$1"; shift
  local deadline=$((SECONDS + WAIT_SECS))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      return 1
    fi
    sleep 1
  done
  log "$name: ready"
}

start_pg_native() {
  ensure_pg_installed
  if pg_ready; then
    log "postgres: already running on 127.0.0.1:$PG_PORT"
    return
  fi
  ensure_pg_socket_dir
  pg_initdb_if_needed
  pg_remove_stale_pidfile
  if pg_pid_alive; then
    local running_port
    running_port="$(sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
    if [ -n "$running_port" ] && [ "$running_port" != "$PG_PORT" ]; then
      die "the cluster in $PG_DATA is already running on port $running_port, not $PG_PORT: run '$0 stop' with DISPATCHER_PG_PORT=$running_port first, or use another DISPATCHER_PG_DATA"
    fi
    log "postgres: server process exists but is not accepting connections yet; waiting"
  else
    write_pg_conf
    if is_root; then
      touch "$PG_LOG"
      chown "$PG_OS_USER": "$PG_LOG"
    fi
    log "postgres: starting on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
    if ! without_extra_fds as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$WAIT_SECS" start </dev/null >/dev/null; then
      tail -n 20 "$PG_LOG" >&2 || true
      die "postgres failed to start; see $PG_LOG"
    fi
  fi
  wait_for postgres pg_ready || {
    tail -n 20 "$PG_LOG" >&2 || true
    die "postgres not ready on 127.0.0.1:$PG_PORT after ${WAIT_SECS}s; see $PG_LOG"
  }
}

ensure_pg_database() {
  local exists
  exists="$(psql_cmd -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" \
    || die "cannot query postgres on 127.0.0.1:$PG_PORT as user postgres"
  if [ "$exists" = 1 ]; then
    log "postgres: database '$PG_DB' exists"
  else
    log "postgres: creating database '$PG_DB'"
    psql_cmd -d postgres -qc "CREATE DATABASE $PG_DB OWNER postgres" >/dev/null
  fi
}

stop_pg_native() {
  [ -x "$PG_BIN/pg_ctl" ] && [ -f "$PG_DATA/PG_VERSION" ] || { log "postgres: no native cluster at $PG_DATA"; return 0; }
  if as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    log "postgres: stopping"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$WAIT_SECS" stop >/dev/null
  else
    log "postgres: not running"
  fi
}

# ----------------------------------------------------------- rabbitmq (native)
rabbit_ping() { timeout 30 rabbitmq-diagnostics -q ping >/dev/null 2>&1; }

ensure_rabbit_installed() {
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    if is_root; then
      apt_install rabbitmq-server
    else
      die "rabbitmq-server is not installed and not running as root: run 'apt-get install -y rabbitmq-server' as root first"
    fi
  fi
  command -v rabbitmq-server >/dev/null 2>&1 || die "rabbitmq-server still missing after install"
  is_root || [ "$(id -un)" = rabbitmq ] || die "the native rabbitmq-server must be started as root (or user rabbitmq)"
}

ensure_rabbit_nodename() {
  # RabbitMQ names its node rabbit@<short hostname>; if that name does not
  # resolve, the node cannot start. Fall back to rabbit@localhost then.
  local envconf=/etc/rabbitmq/rabbitmq-env.conf
  if ! getent hosts "$(hostname -s)" >/dev/null 2>&1; then
    if ! grep -qs '^NODENAME=' "$envconf"; then
      log "rabbitmq: hostname '$(hostname -s)' does not resolve; using node name rabbit@localhost ($envconf)"
      mkdir -p /etc/rabbitmq
      echo 'NODENAME=rabbit@localhost' >>"$envconf"
    fi
  fi
}

amqp_port_open() { timeout 3 bash -c "exec 9<>/dev/tcp/127.0.0.1/$RABBIT_PORT" 2>/dev/null; }

start_rabbit_native() {
  if ! is_root && [ "$(id -un)" != rabbitmq ]; then
    # Without root the CLI tools cannot read the Erlang cookie, so only the
    # AMQP port can be checked.
    amqp_port_open && { log "rabbitmq: AMQP port $RABBIT_PORT answers (not root: no deeper check)"; return 0; }
  fi
  ensure_rabbit_installed
  if rabbit_ping; then
    log "rabbitmq: already running"
  else
    ensure_rabbit_nodename
    if ! grep -qs 'rabbitmq_management' /etc/rabbitmq/enabled_plugins; then
      log "rabbitmq: enabling management plugin (offline)"
      rabbitmq-plugins enable --offline rabbitmq_management >/dev/null
    fi
    log "rabbitmq: starting (rabbitmq-server -detached)"
    without_extra_fds rabbitmq-server -detached </dev/null >/dev/null 2>&1 || true  # readiness is checked below
    if ! wait_for rabbitmq rabbit_ping; then
      ls -t /var/log/rabbitmq/*.log 2>/dev/null | head -n1 | xargs -r tail -n 30 >&2 || true
      die "rabbitmq not answering 'rabbitmq-diagnostics ping' after ${WAIT_SECS}s; see /var/log/rabbitmq/"
    fi
  fi
  timeout "$WAIT_SECS" rabbitmqctl await_startup --timeout "$WAIT_SECS" >/dev/null \
    || die "rabbitmq did not finish booting (rabbitmqctl await_startup) within ${WAIT_SECS}s"
  log "rabbitmq: booted (AMQP 127.0.0.1:$RABBIT_PORT, management http://127.0.0.1:15672)"
}

stop_rabbit_native() {
  command -v rabbitmqctl >/dev/null 2>&1 || { log "rabbitmq: not installed"; return 0; }
  if rabbit_ping; then
    log "rabbitmq: stopping"
    rabbitmqctl stop >/dev/null
  else
    log "rabbitmq: not running"
  fi
}

# ---------------------------------------------------------------- docker mode
start_docker() {
  [ -f "$COMPOSE_FILE" ] || die "$COMPOSE_FILE not found"
  log "docker: compose up -d rabbitmq postgres"
  compose up -d rabbitmq postgres
  wait_for postgres compose exec -T postgres pg_isready -q -h 127.0.0.1 -U postgres \
    || die "postgres container not ready after ${WAIT_SECS}s (docker compose logs postgres)"
  wait_for rabbitmq compose exec -T rabbitmq rabbitmq-diagnostics -q ping \
    || die "rabbitmq container not ready after ${WAIT_SECS}s (docker compose logs rabbitmq)"
  compose exec -T rabbitmq rabbitmqctl await_startup >/dev/null \
    || die "rabbitmq container did not finish booting"
  local exists
  exists="$(compose exec -T postgres psql -U postgres -X -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")"
  if [ "$exists" != 1 ]; then
    log "postgres: creating database '$PG_DB'"
    compose exec -T postgres psql -U postgres -X -qc "CREATE DATABASE $PG_DB OWNER postgres" >/dev/null
  fi
}

# ----------------------------------------------------------------------- main
use_docker() {
  case "$MODE" in
    docker) docker_engine_up || die "DISPATCHER_SERVICES=docker but no Docker engine answers 'docker info'"; return 0 ;;
    native) return 1 ;;
    auto)
      docker_engine_up || return 1
      compose_available && return 0
      log "a Docker engine answers but no 'docker compose' / 'docker-compose' is installed; using distribution packages"
      return 1
      ;;
    *) die "DISPATCHER_SERVICES must be auto, docker or native (got '$MODE')" ;;
  esac
}

print_env() {
  printf "export ConnectionStrings__Postgres='Host=127.0.0.1;Port=%s;Database=%s;Username=postgres'\n" "$PG_PORT" "$PG_DB" >&3
  printf "export ConnectionStrings__RabbitMq='amqp://guest:guest@127.0.0.1:%s/'\n" "$RABBIT_PORT" >&3
}

cmd="${1:-start}"
case "$cmd" in
  start|up)
    if use_docker; then
      start_docker
    else
      log "no Docker engine; using distribution packages"
      start_pg_native
      ensure_pg_database
      start_rabbit_native
    fi
    print_env
    ;;
  stop|down)
    if [ "$MODE" != native ] && docker_engine_up && compose_available && [ -f "$COMPOSE_FILE" ]; then
      log "docker: compose stop rabbitmq postgres"
      compose stop rabbitmq postgres || true
    fi
    if [ "$MODE" != docker ]; then
      stop_pg_native
      stop_rabbit_native
    fi
    ;;
  env)
    print_env
    ;;
  # Fault injection (used by the fault-injection tests): stop one service hard, start it again.
  kill-postgres)
    if use_docker; then compose kill postgres; else
      as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null; log "postgres: stopped (immediate)"; fi
    ;;
  start-postgres)
    if use_docker; then compose start postgres; wait_for postgres compose exec -T postgres pg_isready -q -h 127.0.0.1 -U postgres
    else start_pg_native; fi
    ;;
  stop-rabbitmq)
    if use_docker; then compose stop rabbitmq; else rabbitmqctl stop_app >/dev/null; log "rabbitmq: app stopped"; fi
    ;;
  start-rabbitmq)
    if use_docker; then compose start rabbitmq; wait_for rabbitmq compose exec -T rabbitmq rabbitmq-diagnostics -q ping
    else rabbitmqctl start_app >/dev/null; rabbitmqctl await_startup >/dev/null; log "rabbitmq: app started"; fi
    ;;
  -h|--help|help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    ;;
  *)
    die "usage: $0 [start|stop|env|kill-postgres|start-postgres|stop-rabbitmq|start-rabbitmq]"
    ;;
esac
