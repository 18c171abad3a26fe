#!/usr/bin/env bash
# The test command: installs what is missing (quietly), builds every binary and test, then
# runs the whole workspace's tests. Integration tests start their own servers on free
# loopback ports (tests/src/lib.rs), so the local stack need not run and is not disturbed.
#
#   scripts/test.sh [ARGS...]   ARGS go to `cargo test --workspace`, e.g. -- --nocapture
#
# Exits non-zero when anything fails; ends with cargo's summary lines.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$ROOT/scripts/install-deps.sh"
ensure_cargo_on_path
cd "$ROOT"

# The harness finds the servers through these, and the PostgreSQL server through TP_TEST_PG.
export TP_TEMPORAL_BIN=$TEMPORAL_BIN TP_CADDY_BIN=$CADDY_BIN TP_MAILDEV_BIN=$MAILDEV_BIN
export TP_TEST_PG=${TP_TEST_PG:-$PG_URL}

# Integration tests run the binaries, which `cargo test` alone does not build.
info "building binaries and tests"
cargo build --workspace --bins
cargo test --workspace --no-run --quiet

log=$LOG_DIR/test.log
mkdir -p "$LOG_DIR"
set +e
# --no-fail-fast: one failing test binary must not hide the results of the others.
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

echo
echo "==== summary (full output in ${log#"$ROOT"/}) ===="
grep -E '^test result:' "$log" || true
# Targets that failed as a whole (a doctest that did not compile, a test binary that crashed).
awk '/^error: [0-9]+ targets? failed/ { listing = 1; print; next }
     listing && /^    `/ { print; next } { listing = 0 }' "$log"
# cargo lists the failed tests of each binary under a second "failures:" heading.
awk '/^failures:$/ { listing = 1; next } listing && /^    [^ ]/ { print "FAILED " $1; next } { listing = 0 }' "$log"
awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
