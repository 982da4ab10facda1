#!/usr/bin/env bash
# scripts/tsan.sh — the multi-threaded Swift tests under ThreadSanitizer.
#
# Builds the package and its tests with --sanitize=thread into .build-tsan (its own scratch
# path: the debug build in .build is untouched), then runs only the tests that use threads:
# ConcurrencyTests, and the DeliveryModeTests that share a producer between 8 threads, use two
# broker handles on one SQLite file, or serve async produce reports against the background
# writer. Fails on a failing test and on any ThreadSanitizer report (TSan's exit code 66, and
# a "WARNING: ThreadSanitizer" line in the output). Prints the build and run times.
set -uo pipefail
cd "$(dirname "$0")/.."
filter=${KOFKA_TSAN_FILTER:-'ConcurrencyTests|DeliveryModeTests/(eightThreads|twoBrokerHandles|asyncProduce)'}
log=$(mktemp /tmp/kofka-tsan.XXXXXX)
trap 'rm -f "$log"' EXIT

t0=$SECONDS
if ! swift build --build-tests --sanitize=thread --scratch-path .build-tsan >"$log" 2>&1; then
    tail -n 30 "$log"; echo "tsan: build failed"; exit 1
fi
t1=$SECONDS
echo "tsan: build $((t1 - t0)) s"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=0 exitcode=66 second_deadlock_stack=1}"
swift test --skip-build --sanitize=thread --scratch-path .build-tsan --filter "$filter" >"$log" 2>&1
rc=$?
t2=$SECONDS
reports=$(grep -c 'WARNING: ThreadSanitizer' "$log")
grep -E 'Test run with|Executed [0-9]+ test|passed after|failed after' "$log" | tail -n 4
if [ "$reports" -ne 0 ]; then
    echo "== ThreadSanitizer reports"
    grep -A 30 'WARNING: ThreadSanitizer' "$log" | head -n 150
fi
echo "tsan: run $((t2 - t1)) s, $reports report(s), exit status $rc"
if ! grep -qE 'Test run with [1-9][0-9]* test' "$log"; then
    echo "tsan: the filter '$filter' matched no test"; exit 1
fi
[ "$rc" -eq 0 ] && [ "$reports" -eq 0 ]
