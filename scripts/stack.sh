#!/usr/bin/env bash
# The local stack on loopback: Temporal dev server, Caddy, maildev, the worker and the API,
# against the PostgreSQL server on 127.0.0.1:5432. Pids, logs and state live in .stack/.
#
#   scripts/stack.sh up       install what is missing, build, start what is not running
#   scripts/stack.sh up --infra   only Temporal, Caddy and maildev (no build, no worker/API)
#   scripts/stack.sh up --no-build   use the binaries already in the target dir
#   scripts/stack.sh down     stop everything, tenant workloads included
#   scripts/stack.sh status   what runs, and where
#   scripts/stack.sh logs [NAME]   the end of a service's log (all services without NAME)
#   scripts/stack.sh reset    down, then forget every tenant and the control plane (tools stay)
#
# `up` is idempotent: a service already running is left alone, except the worker and the
# API, which are restarted when their binary was rebuilt after they started. It waits for
# each service with a deadline and stops with that service's log when one fails to come up.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVICES=(temporal caddy maildev worker api)
APP_BINS=(tenant-worker tenant-api tenants tenant-service)

service_address() {
    case $1 in
    temporal) echo "127.0.0.1:$TEMPORAL_PORT (gRPC), http://127.0.0.1:$TEMPORAL_UI_PORT (Web UI)" ;;
    caddy) echo "http://127.0.0.1:$CADDY_ADMIN_PORT (admin), https://*.$DOMAIN:$PUBLIC_HTTPS_PORT (public), 127.0.0.1:$PLATFORM_HTTP_PORT (platform)" ;;
    maildev) echo "127.0.0.1:$SMTP_PORT (SMTP), http://127.0.0.1:$MAILDEV_WEB_PORT (mailbox)" ;;
    worker) echo "task queue $TASK_QUEUE" ;;
    api) echo "http://127.0.0.1:$API_PORT" ;;
    esac
}

service_ports() {
    case $1 in
    temporal) echo "$TEMPORAL_PORT $TEMPORAL_UI_PORT" ;;
    caddy) echo "$CADDY_ADMIN_PORT" ;;
    maildev) echo "$SMTP_PORT $MAILDEV_WEB_PORT" ;;
    api) echo "$API_PORT" ;;
    esac
}

# Refuses to start a service whose port some other process holds: it would fail anyway,
# and the message it would give is less clear than this one.
ensure_ports_free() {
    local name=$1 port
    for port in $(service_ports "$name"); do
        if port_open 127.0.0.1 "$port"; then
            die "cannot start $name: port $port on 127.0.0.1 is taken by a process this stack did not start
  (find it with: ss -ltnp 'sport = :$port')"
        fi
    done
}

# wait_service NAME SECONDS CHECK...: waits for CHECK, failing early (with the log) when
# the service's process exits.
wait_service() {
    local name=$1 seconds=$2
    shift 2
    local pid deadline=$((SECONDS + seconds))
    pid=$(head -n1 "$PID_DIR/$name.pid")
    until "$@"; do
        if pid_gone "$pid"; then
            info "error: $name exited while starting"
            show_tail "$LOG_DIR/$name.log" 40
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            info "error: $name did not become ready within ${seconds}s"
            show_tail "$LOG_DIR/$name.log" 40
            exit 1
        fi
        sleep 0.2
    done
}

temporal_healthy() {
    "$TEMPORAL_BIN" operator cluster health --address "127.0.0.1:$TEMPORAL_PORT" 2>/dev/null |
        grep -q SERVING && http_ok "http://127.0.0.1:$TEMPORAL_UI_PORT/"
}

# True when a worker polled the task queue after the given epoch second: pollers of an
# earlier worker stay listed for minutes, so only a fresh poll proves this one is up.
worker_polling_since() {
    local since=$1
    "$TEMPORAL_BIN" task-queue describe --task-queue "$TASK_QUEUE" \
        --address "127.0.0.1:$TEMPORAL_PORT" -o json 2>/dev/null | python3 -c '
import datetime, json, re, sys
since = float(sys.argv[1])
def pollers(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pollers" and isinstance(value, list):
                yield from value
            else:
                yield from pollers(value)
    elif isinstance(node, list):
        for item in node:
            yield from pollers(item)
def when(text):
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(text).timestamp()
fresh = [p for p in pollers(json.load(sys.stdin))
         if isinstance(p, dict) and when(p.get("lastAccessTime") or "1970-01-01T00:00:00Z") >= since]
sys.exit(0 if fresh else 1)
' "$since"
}

# Epoch second at which a process started (/proc/PID/stat field 22, in clock ticks since
# boot; the fields are counted after the command name, which may contain spaces).
process_started() {
    local rest ticks boot
    rest=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    ticks=$(awk '{print $20}' <<<"$rest")
    boot=$(awk '/^btime/ {print $2}' /proc/stat)
    echo $((boot + ticks / $(getconf CLK_TCK)))
}

binary_newer_than_process() {
    local bin=$1 pid=$2 started
    started=$(process_started "$pid") || return 1
    [[ -f $bin ]] && (($(stat -c %Y "$bin") > started))
}

# The environment shared by the worker, the API and the CLI (common.md); no secrets here.
export_app_env() {
    export TP_DATABASE_URL=$PG_URL/$CONTROL_DB
    export TP_STORAGE_ADMIN_URL=$PG_URL/postgres
    export TP_STORAGE_HOST=$PG_HOST TP_STORAGE_PORT=$PG_PORT
    export TP_DOMAIN=$DOMAIN TP_PUBLIC_HTTPS_PORT=$PUBLIC_HTTPS_PORT
    export TP_PLATFORM_HTTP_PORT=$PLATFORM_HTTP_PORT
    export TP_CADDY_ADMIN_URL=http://127.0.0.1:$CADDY_ADMIN_PORT
    export TP_RUNTIME_DIR=$RUNTIME_DIR
    export TP_TENANT_SERVICE_BIN=$BIN_DIR/tenant-service
    export TP_SMTP_HOST=127.0.0.1 TP_SMTP_PORT=$SMTP_PORT
    export TP_MAIL_FROM=${TP_MAIL_FROM:-no-reply@$DOMAIN}
    export TEMPORAL_ADDRESS=127.0.0.1:$TEMPORAL_PORT
    export TP_TEMPORAL_UI_URL=http://127.0.0.1:$TEMPORAL_UI_PORT
    export TEMPORAL_NAMESPACE=${TEMPORAL_NAMESPACE:-default}
    export TP_API_LISTEN=127.0.0.1:$API_PORT TP_API_URL=http://127.0.0.1:$API_PORT
    export RUST_LOG=${RUST_LOG:-info}
}

write_env_file() {
    local file=$STACK_DIR/env var
    {
        echo "# Written by scripts/stack.sh up: source it to use the built tenants CLI by hand."
        for var in TP_DATABASE_URL TP_API_URL TP_DOMAIN TP_PUBLIC_HTTPS_PORT TEMPORAL_ADDRESS \
            TEMPORAL_NAMESPACE TP_CADDY_ADMIN_URL TP_RUNTIME_DIR; do
            printf 'export %s=%q\n' "$var" "${!var}"
        done
        # shellcheck disable=SC2016 # $PATH is expanded when the file is sourced
        printf 'export PATH=%q:"$PATH"\n' "$BIN_DIR"
    } >"$file"
}

secret_key() {
    local file=$STACK_DIR/secret-key
    if [[ ! -s $file ]]; then
        # 32 random bytes as 64 hex characters: at least 32 bytes however it is read.
        (umask 077 && head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' >"$file")
    fi
    chmod 600 "$file"
    cat "$file"
}

ensure_control_database() {
    local exists
    exists=$(psql_server postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$CONTROL_DB'") ||
        die "cannot query PostgreSQL at $PG_URL"
    if [[ $exists != 1 ]]; then
        psql_server postgres -c "CREATE DATABASE \"$CONTROL_DB\"" >/dev/null
        info "created database $CONTROL_DB"
    fi
}

start_temporal() {
    pid_of temporal >/dev/null && return 0
    ensure_ports_free temporal
    local args=(server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT"
        --ui-port "$TEMPORAL_UI_PORT" --ui-disable-news-fetch --db-filename "$STACK_DIR/temporal.db")
    local attribute
    for attribute in "${SEARCH_ATTRIBUTES[@]}"; do
        args+=(--search-attribute "$attribute=Keyword")
    done
    info "starting Temporal dev server"
    start_service temporal "$TEMPORAL_BIN" "${args[@]}"
    wait_service temporal 60 temporal_healthy
}

CADDY_STARTED=0
start_caddy() {
    pid_of caddy >/dev/null && return 0
    ensure_ports_free caddy
    mkdir -p "$STACK_DIR/caddy/data" "$STACK_DIR/caddy/config"
    # Only the admin API: the worker installs the edge configuration through it. The local
    # CA must not go into the system trust store (Caddy tries to when run as root);
    # clients get its root certificate from the admin API instead.
    cat >"$STACK_DIR/caddy-bootstrap.json" <<EOF
{
  "admin": { "listen": "127.0.0.1:$CADDY_ADMIN_PORT" },
  "apps": { "pki": { "certificate_authorities": { "local": { "install_trust": false } } } }
}
EOF
    info "starting Caddy"
    XDG_DATA_HOME=$STACK_DIR/caddy/data XDG_CONFIG_HOME=$STACK_DIR/caddy/config \
        start_service caddy "$CADDY_BIN" run --config "$STACK_DIR/caddy-bootstrap.json"
    wait_service caddy 30 http_ok "http://127.0.0.1:$CADDY_ADMIN_PORT/config/"
    CADDY_STARTED=1
}

start_maildev() {
    pid_of maildev >/dev/null && return 0
    ensure_ports_free maildev
    info "starting maildev"
    # Its own mail folder: the default is one /tmp/maildev shared by every maildev.
    mkdir -p "$STACK_DIR/mail"
    start_service maildev "$MAILDEV_BIN" --smtp "$SMTP_PORT" --web "$MAILDEV_WEB_PORT" \
        --ip 127.0.0.1 --web-ip 127.0.0.1 --mail-directory "$STACK_DIR/mail"
    wait_service maildev 30 http_ok "http://127.0.0.1:$MAILDEV_WEB_PORT/api/email"
    wait_for 10 port_open 127.0.0.1 "$SMTP_PORT" || die "maildev answers on the web port but not on SMTP $SMTP_PORT"
}

start_worker() {
    local pid
    if pid=$(pid_of worker); then
        if ((CADDY_STARTED)); then
            info "restarting the worker so it installs the edge configuration in the new Caddy"
        elif binary_newer_than_process "$BIN_DIR/tenant-worker" "$pid"; then
            info "restarting the worker: tenant-worker was rebuilt"
        else
            return 0
        fi
        stop_service worker 30
    fi
    mkdir -p "$RUNTIME_DIR"
    info "starting the worker"
    local since
    since=$(date +%s)
    TP_SECRET_KEY=$SECRET start_service worker "$BIN_DIR/tenant-worker"
    wait_service worker 90 worker_polling_since "$since"
}

start_api() {
    local pid
    if pid=$(pid_of api); then
        binary_newer_than_process "$BIN_DIR/tenant-api" "$pid" || return 0
        info "restarting the API: tenant-api was rebuilt"
        stop_service api 20
    fi
    ensure_ports_free api
    info "starting the API"
    TP_SECRET_KEY=$SECRET start_service api "$BIN_DIR/tenant-api"
    wait_service api 60 http_ok "http://127.0.0.1:$API_PORT/healthz/ready"
}

cmd_up() {
    "$ROOT/scripts/install-deps.sh"
    ensure_cargo_on_path
    if [[ ${1:-} == --infra ]]; then
        # Only the servers the application needs, for work on the worker or the API.
        start_temporal
        start_caddy
        start_maildev
        cmd_status || true
        return 0
    fi

    if [[ ${1:-} != --no-build ]]; then
        info "building (cargo build --bins; the first build takes several minutes)"
        (cd "$ROOT" && cargo build --bins --quiet) || die "cargo build failed"
    fi
    BIN_DIR=$(target_dir)/debug
    local bin missing=()
    for bin in "${APP_BINS[@]}"; do
        [[ -x $BIN_DIR/$bin ]] || missing+=("$bin")
    done
    ((${#missing[@]} == 0)) || die "the build produced no ${missing[*]} in $BIN_DIR"

    SECRET=$(secret_key)
    export_app_env
    ensure_control_database

    start_temporal
    start_caddy
    start_maildev
    start_worker
    start_api

    # The worker installs the public listener through Caddy's admin API as it starts.
    if ! wait_for 20 port_open 127.0.0.1 "$PUBLIC_HTTPS_PORT"; then
        warn "nothing listens on the public port $PUBLIC_HTTPS_PORT yet: the worker has not installed the edge configuration (see $LOG_DIR/worker.log)"
    fi
    # Caddy's local CA, so curl and browsers can check tenant certificates.
    if curl -fsS --max-time 5 "http://127.0.0.1:$CADDY_ADMIN_PORT/pki/ca/local" |
        python3 -c 'import json, sys; sys.stdout.write(json.load(sys.stdin)["root_certificate"])' \
            >"$STACK_DIR/caddy-root.pem.tmp" 2>/dev/null; then
        mv "$STACK_DIR/caddy-root.pem.tmp" "$STACK_DIR/caddy-root.pem"
    else
        rm -f "$STACK_DIR/caddy-root.pem.tmp"
        warn "could not read Caddy's root certificate from its admin API"
    fi
    write_env_file
    cmd_status
}

cmd_down() {
    stop_service api 20
    stop_service worker 30
    stop_workloads
    stop_service caddy 10
    stop_service maildev 10
    # Temporal holds a lock on its SQLite file until it has fully exited: wait for it, or
    # the next `up` fails with "database is locked".
    stop_service temporal 30
}

# Forgets every tenant of the local stack: its databases and roles, the control plane,
# Temporal's history, the mail, Caddy's CA and the secret key. The installed tools stay.
cmd_reset() {
    cmd_down
    local names name
    names=$(psql_server "$CONTROL_DB" -Atc "
        SELECT name FROM resources WHERE name ~ '^t_[0-9a-z_]+$'
        UNION SELECT 't_' || replace(id::text, '-', '') FROM tenants" 2>/dev/null || true)
    for name in $names; do
        psql_server postgres -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" \
            -c "DROP ROLE IF EXISTS \"$name\"" >/dev/null || warn "could not drop $name"
    done
    psql_server postgres -c "DROP DATABASE IF EXISTS \"$CONTROL_DB\" WITH (FORCE)" >/dev/null ||
        warn "could not drop $CONTROL_DB"
    rm -rf "$STACK_DIR"/temporal.db* "$STACK_DIR"/mail "$STACK_DIR"/caddy "$STACK_DIR"/secret-key \
        "$STACK_DIR"/demo-owner.token "$STACK_DIR"/caddy-root.pem "$STACK_DIR"/env \
        "$STACK_DIR"/caddy-bootstrap.json "$RUNTIME_DIR"
    info "reset: $(wc -w <<<"$names") tenant database(s) and the control plane dropped; .stack state removed"
}

cmd_status() {
    local name pid all_up=0 line
    for name in "${SERVICES[@]}"; do
        if pid=$(pid_of "$name"); then
            printf '%-9s running  pid %-7s %s\n' "$name" "$pid" "$(service_address "$name")"
        else
            printf '%-9s stopped\n' "$name"
            all_up=3
        fi
    done
    local count=0 file
    for file in "$RUNTIME_DIR"/workloads/*.pid; do
        [[ -f $file ]] || continue
        line=$(head -n1 "$file" | tr -dc '0-9')
        [[ -n $line ]] && pid_runs "$line" tenant-service && count=$((count + 1))
    done
    printf '%-9s %s running (pid files in %s/workloads)\n' workloads "$count" "$RUNTIME_DIR"
    return "$all_up"
}

cmd_logs() {
    local name
    (($#)) || set -- "${SERVICES[@]}"
    for name in "$@"; do
        [[ -f $LOG_DIR/$name.log ]] || die "no log for $name (services: ${SERVICES[*]})"
        show_tail "$LOG_DIR/$name.log" 40
    done
}

case ${1:-} in
up) cmd_up "${@:2}" ;;
down) cmd_down ;;
reset) cmd_reset ;;
status) cmd_status ;;
logs) cmd_logs "${@:2}" ;;
*)
    echo "usage: $0 up [--infra|--no-build]|down|status|logs [NAME]|reset" >&2
    exit 2
    ;;
esac
