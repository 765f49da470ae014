#!/usr/bin/env bash
# Soak test of `moeserve serve`: the stress tests of tests/server_stress_test.cpp
# with soak-sized counts, then a summary of what they measured. All traffic
# goes to servers the tests start on 127.0.0.1 (ephemeral ports); every count
# and wait is bounded.
#
#   scripts/soak.sh [BUILD_DIR]          (default: build; run `make build` first)
#
# Sizes (environment; defaults in brackets):
#   REQUESTS [1000] at CONCURRENCY [32] against -np 4 --max-queue MAX_QUEUE [16],
#     each asking for MAX_TOKENS [16] tokens: every one must complete or get a
#     503 with Retry-After;
#   DISCONNECTS [200] clients that vanish at random points, ROUNDS [5] times
#     after a warm-up round: no slot stays busy, RSS stays near its baseline;
#   SLOW_CLIENTS [200] slowloris connections: a normal request is still
#     answered at once, and they are all dropped;
#   MODEL [the tiny Qwen3-MoE fixture]: another GGUF to serve.
# The hostile-request, API-key and signal tests run too (their sizes are fixed).
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${1:-build}
TESTS="$BUILD/moeserve_tests"
if [[ ! -x "$TESTS" ]]; then
    echo "soak: $TESTS not found; build first (make build, or pass the build directory)" >&2
    exit 2
fi

export MOESERVE_STRESS_REQUESTS=${REQUESTS:-1000}
export MOESERVE_STRESS_CONCURRENCY=${CONCURRENCY:-32}
export MOESERVE_STRESS_MAX_QUEUE=${MAX_QUEUE:-16}
export MOESERVE_STRESS_MAX_TOKENS=${MAX_TOKENS:-16}
export MOESERVE_STRESS_DISCONNECTS=${DISCONNECTS:-200}
export MOESERVE_STRESS_DISCONNECT_ROUNDS=${ROUNDS:-5}
export MOESERVE_STRESS_SLOW_CLIENTS=${SLOW_CLIENTS:-200}
[[ -n "${MODEL:-}" ]] && export MOESERVE_STRESS_MODEL="$MODEL"

log=$(mktemp -t moeserve-soak.XXXXXX)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
status=0
"$TESTS" --gtest_filter='ServerStress*:ServerHostile*' 2>&1 | tee "$log" || status=$?
elapsed=$(( $(date +%s) - start ))

echo
echo "== soak summary ($(date -u +%Y-%m-%dT%H:%MZ), ${elapsed} s)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -sr)"
echo "model:   ${MOESERVE_STRESS_MODEL:-tiny Qwen3-MoE fixture (qwen3moe-tiny-s1-f16.gguf)}"
grep '^stress:' "$log" | sed 's/^stress: */  /' || true
passed=$(grep -c '^\[       OK \]' "$log" || true)
failed=$(grep -c '^\[  FAILED  \] [A-Za-z]' "$log" || true)
echo "tests:   $passed passed, $failed failed"
exit "$status"
