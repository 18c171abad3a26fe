#!/usr/bin/env bash
# Benchmarks: the cost of adding a route at the edge as routes accumulate, and request →
# active as tenants accumulate on one stack. Prints both and keeps them in BENCHMARKS.md.
# These machines are shared and noisy: compare the rows of one run with each other.
#
#   scripts/bench.sh            TP_BENCH_TENANTS=20 by default
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$ROOT/scripts/install-deps.sh"
ensure_cargo_on_path
cd "$ROOT"
export TP_TEMPORAL_BIN=$TEMPORAL_BIN TP_CADDY_BIN=$CADDY_BIN TP_MAILDEV_BIN=$MAILDEV_BIN
export TP_TEST_PG=${TP_TEST_PG:-$PG_URL}
export TP_BENCH_TENANTS=${TP_BENCH_TENANTS:-20}

info "building"
cargo build --workspace --bins --quiet

out=$(mktemp)
trap 'rm -f "$out"' EXIT
{
    echo "# Benchmarks"
    echo
    echo "Recorded by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, debug build)."
    echo "Machines are shared and noisy: compare rows of one run, not absolute numbers."
    echo
    echo "## Adding a route at the edge as routes accumulate"
    echo
    echo '```'
    cargo test -p tenant-activities --test traffic_email_identity -- --ignored --nocapture 2>&1 |
        grep -E '^routes=' || true
    echo '```'
    echo
    echo "## Request → active as tenants accumulate ($TP_BENCH_TENANTS tenants, one stack)"
    echo
    cargo test -p tenant-tests --test bench -- --ignored --nocapture 2>&1 |
        grep -E '^\||^mean' || true
} | tee "$out"
cp "$out" "$ROOT/BENCHMARKS.md"
info "written to BENCHMARKS.md"
