#!/usr/bin/env bash
# Builds everything and runs the whole test suite; the LAST line of output is the summary CI
# reads, exactly `N passed, N failed, N skipped` (skipped = ignored), summed over every
# `test result:` line of cargo test. Exits non-zero if the build, cargo test or any test failed.
# The full output is kept in $TEST_LOG (default target/test.log), the summary also in
# target/test-summary.txt. Extra arguments go to cargo test (e.g. a test name filter).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOG="${TEST_LOG:-$ROOT/target/test.log}"
mkdir -p "$(dirname "$LOG")"
: >"$LOG"

status=0
# The integration tests run the proxy binary (CARGO_BIN_EXE_*), so bins are built first.
cargo build --workspace --bins 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

if [ $status -eq 0 ]; then
    # --no-fail-fast: one failing test binary must not hide the results of the others.
    # Among them tests/layers.rs: the layering rule of docs/architecture.md (no cycles between
    # module files, no import of a higher layer), counted like every other test.
    cargo test --workspace --no-fail-fast "$@" 2>&1 | tee -a "$LOG"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    # The proxies above run with the default session threads (one on a 2-core machine); the
    # client and sharding suites run again with sessions and pools spread over two threads.
    if [ $# -eq 0 ]; then
        SHARDPROXY_THREADS=2 cargo test --no-fail-fast --test core_clients --test sharding 2>&1 | tee -a "$LOG"
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    fi
fi

# "test result: ok. 7 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 7.16s"
read -r passed failed ignored < <(
    sed 's/\x1b\[[0-9;]*m//g' "$LOG" | awk '
        /^test result: / {
            for (i = 1; i <= NF; i++) {
                if ($(i+1) ~ /^passed/)  p += $i
                if ($(i+1) ~ /^failed/)  f += $i
                if ($(i+1) ~ /^ignored/) g += $i
            }
        }
        END { printf "%d %d %d\n", p, f, g }'
)
[ "$failed" -eq 0 ] || status=1
summary="$passed passed, $failed failed, $ignored skipped"
# Kept for .ci/run, which repeats it after make's own error line when the suite fails.
echo "$summary" >"$ROOT/target/test-summary.txt"
echo "$summary"
exit $status
