#!/usr/bin/env bash
# scripts/tsan.sh — the multi-threaded Swift tests under ThreadSanitizer.
#
# Builds the package and its tests with --sanitize=thread into .build-tsan (its own scratch
# path: the debug build in .build is untouched), then runs only the tests that use threads:
# ConcurrencyTests, GuaranteesUnderFaultsTests, PackedProduceTests (the produce queue's writer
# thread and reports), and the DeliveryModeTests that share a producer between 8 threads, use two
# broker handles on one SQLite file, or serve async produce reports against the background
# writer. Then the multi-threaded C tests (Tests/c: handles closed while other threads use
# them, the delivery callback swapped while reports are served, async produce, last_error per
# thread), built with clang -fsanitize=thread against the TSan build of libkofka.so. Fails on
# a failing test and on any ThreadSanitizer report (TSan's exit code 66, and a
# "WARNING: ThreadSanitizer" line in the output). Prints the build and run times.
set -uo pipefail
cd "$(dirname "$0")/.."
filter=${KOFKA_TSAN_FILTER:-'ConcurrencyTests|GuaranteesUnderFaultsTests|PackedProduceTests|DeliveryModeTests/(eightThreads|twoBrokerHandles|asyncProduce)'}
log=$(mktemp /tmp/kofka-tsan.XXXXXX)
trap 'rm -f "$log"' EXIT
export PATH=/opt/swift/usr/bin:$PATH

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
echo "tsan: swift run $((t2 - t1)) s, $reports report(s), exit status $rc"
if ! grep -qE 'Test run with [1-9][0-9]* test' "$log"; then
    echo "tsan: the filter '$filter' matched no test"; exit 1
fi
ok=$([ "$rc" -eq 0 ] && [ "$reports" -eq 0 ] && echo 1 || echo 0)

# The C face: the runtime comes from the toolchain's compiler-rt as a shared library
# (-shared-libsan), which the TSan-built libkofka.so resolves its hooks against.
lib=$PWD/.build-tsan/debug
rtdir=$(dirname "$(clang -print-file-name=libclang_rt.tsan-x86_64.so)")
bin=$(mktemp -d /tmp/kofka-tsan-c.XXXXXX)
trap 'rm -f "$log"; rm -rf "$bin"' EXIT
for t in test_handles test_delivery_cb test_async_produce test_bad_input; do
    if ! clang -g -fsanitize=thread -shared-libsan -fuse-ld=lld -std=c11 -I include -I Tests/c "Tests/c/$t.c" \
            -L "$lib" -lkofka "-Wl,-rpath,$lib" "-Wl,-rpath,$rtdir" -lpthread -o "$bin/$t" >"$log" 2>&1; then
        tail -n 20 "$log"; echo "tsan: $t did not build"; ok=0; continue
    fi
    (cd "$bin" && timeout -k 5 300 "./$t") >"$log" 2>&1
    trc=$?
    treports=$(grep -c 'WARNING: ThreadSanitizer' "$log")
    echo "tsan: c $t: $(grep '^@@TALLY' "$log" | tail -n 1 | sed 's/@@TALLY //'), $treports report(s), exit status $trc"
    if [ "$trc" -ne 0 ] || [ "$treports" -ne 0 ]; then
        grep -E '^  FAIL|CRASH|TIMEOUT' "$log" | head -n 20
        grep -A 30 'WARNING: ThreadSanitizer' "$log" | head -n 120
        ok=0
    fi
done
t3=$SECONDS
echo "tsan: c run $((t3 - t2)) s"
[ "$ok" -eq 1 ]
