#!/usr/bin/env bash
# The main job, end to end: bring up the local stack, make sure organisation `demo` has an
# owner, provision tenant `production` on plan `growth` for admin@example.com, and show
# where to look at the result. Safe to run again: the same request returns the same tenant.
#
#   scripts/demo.sh [--no-build]    stop everything afterwards with: scripts/stack.sh down
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ORG=demo
SLUG=production
PLAN=growth
FIRST_ADMIN=admin@example.com

"$ROOT/scripts/stack.sh" up "$@" >/dev/null
# TP_DATABASE_URL, TP_API_URL, … and target/debug on PATH, as the stack runs them.
# shellcheck source=/dev/null
source "$STACK_DIR/env"
command -v tenants >/dev/null || die "no tenants CLI on PATH after stack.sh up"

# ---- an owner token for organisation demo ------------------------------------------------
token_file=$STACK_DIR/demo-owner.token
org_exists=$(psql_server "$CONTROL_DB" -Atc "SELECT 1 FROM organizations WHERE slug = '$ORG'" 2>/dev/null || true)
if [[ $org_exists == 1 && -s $token_file ]]; then
    info "organisation $ORG exists; reusing the owner token in $token_file"
else
    bootstrap=(--org "$ORG" --owner demo-owner)
    if [[ $org_exists == 1 ]]; then
        # The organisation survived but its token did not (.stack was cleared), and bootstrap
        # runs once per organisation: a new platform operator may act in every organisation.
        bootstrap=(--operator "demo-operator-$(date +%s)")
        info "organisation $ORG exists but its owner token is gone; bootstrapping an operator instead"
    else
        info "bootstrapping organisation $ORG with owner demo-owner"
    fi
    # The CLI's own notes go to a log: the token it announces is kept, not shown.
    if ! token=$(tenants bootstrap "${bootstrap[@]}" 2>"$LOG_DIR/bootstrap.log"); then
        show_tail "$LOG_DIR/bootstrap.log" 20
        die "tenants bootstrap failed"
    fi
    token=$(printf '%s\n' "$token" | sed '/^[[:space:]]*$/d' | tail -n1)
    [[ -n $token ]] || die "tenants bootstrap printed no token"
    (umask 077 && printf '%s\n' "$token" >"$token_file")
    info "token saved to ${token_file#"$ROOT"/}"
fi
TP_TOKEN=$(head -n1 "$token_file")
export TP_TOKEN

# ---- the request --------------------------------------------------------------------------
tenant_state() {
    psql_server "$CONTROL_DB" -Atc \
        "SELECT state FROM tenants WHERE org_slug = '$ORG' AND slug = '$SLUG'" 2>/dev/null || true
}
before=$(tenant_state)

info ""
info "\$ tenants create --org $ORG --slug $SLUG --plan $PLAN --first-admin $FIRST_ADMIN"
started=$EPOCHREALTIME
url=$(tenants create --org "$ORG" --slug "$SLUG" --plan "$PLAN" --first-admin "$FIRST_ADMIN") ||
    die "tenants create failed (worker log: scripts/stack.sh logs worker)"
# The CLI follows the saga; the store says where it settled.
tenant_settled() {
    case $(tenant_state) in active | failed | suspended | decommissioned) return 0 ;; *) return 1 ;; esac
}
wait_for 180 tenant_settled || true
state=$(tenant_state)
[[ $state == active ]] ||
    die "tenant $SLUG is ${state:-missing}, not active (details: scripts/stack.sh logs worker)"
elapsed=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
if [[ $before == active ]]; then
    timing="it was already active: the same request returned the same tenant in ${elapsed} s"
else
    timing="request -> active in ${elapsed} s"
fi
url=$(printf '%s\n' "$url" | sed '/^[[:space:]]*$/d' | tail -n1)
host=${url#*://}
host=${host%%/*}
host=${host%%:*}
[[ -n $host ]] || die "tenants create printed no tenant URL"

# ---- Caddy's local CA, so curl can check the tenant's certificate -------------------------
root_pem=$STACK_DIR/caddy-root.pem
curl -fsS --max-time 5 "http://127.0.0.1:$CADDY_ADMIN_PORT/pki/ca/local" |
    python3 -c 'import json, sys; sys.stdout.write(json.load(sys.stdin)["root_certificate"])' \
        >"$root_pem.tmp" || die "cannot read Caddy's root certificate from its admin API"
mv "$root_pem.tmp" "$root_pem"
rel_pem=${root_pem#"$ROOT"/}

check_curl=(curl --resolve "$host:$PUBLIC_HTTPS_PORT:127.0.0.1" --cacert "$root_pem" "https://$host:$PUBLIC_HTTPS_PORT/")
answer=$("${check_curl[@]}" -s -o /dev/null -w '%{http_code}' --max-time 10) || answer="no answer"

ui_query=$(python3 -c 'import urllib.parse; print(urllib.parse.quote("TenantState=\"active\""))')
cat <<EOF

Tenant $SLUG of organisation $ORG is active ($timing).

  Tenant URL     $url
                 (*.localhost does not resolve here; pin it to loopback:)
                 curl --resolve $host:$PUBLIC_HTTPS_PORT:127.0.0.1 --cacert $rel_pem https://$host:$PUBLIC_HTTPS_PORT/
                 answered just now: HTTP $answer
  Temporal UI    http://127.0.0.1:$TEMPORAL_UI_PORT/namespaces/default/workflows?query=$ui_query
                 (filter: TenantState="active")
  Mailbox        http://127.0.0.1:$MAILDEV_WEB_PORT   (welcome emails to $FIRST_ADMIN)
  API            $TP_API_URL   (owner token in ${token_file#"$ROOT"/})
  CLI            source .stack/env; TP_TOKEN=\$(cat ${token_file#"$ROOT"/}) tenants --help
  Logs           scripts/stack.sh logs [temporal|caddy|maildev|worker|api]
  Stop           scripts/stack.sh down
EOF
