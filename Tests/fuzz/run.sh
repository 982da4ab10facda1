#!/usr/bin/env bash
# Tests/fuzz/run.sh [SECONDS] — builds libkofka.so with libFuzzer coverage and AddressSanitizer
# (swift build -Xswiftc -sanitize=fuzzer,address, scratch path .build-fuzz) and the harness
# Tests/fuzz/fuzz_cabi.c (clang -fsanitize=fuzzer,address), then fuzzes the C ABI for SECONDS
# (default 60) starting from the checked-in seeds in Tests/fuzz/corpus (new inputs go to a
# temporary folder; the checked-in corpus is not touched).
#
# Prints the build times, executions, coverage and findings. A finding (a crash, an ASan
# report, a contract violation trapped by the harness, a timeout) fails the run; its input is
# kept in Tests/fuzz/findings/ and its report is printed. Reproduce one with
#   .build-fuzz/fuzz_cabi Tests/fuzz/findings/crash-...
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
seconds=${1:-60}
export PATH=/opt/swift/usr/bin:$PATH
CC=${FUZZ_CC:-clang}

t0=$SECONDS
echo "== build libkofka.so with -sanitize=fuzzer,address (.build-fuzz)"
if ! swift build --product kofka --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address 2>&1 | tail -n 1; then
    echo "fuzz: the instrumented library did not build"; exit 1
fi
lib=$root/.build-fuzz/debug
t1=$SECONDS
echo "== build the harness"
if ! "$CC" -g -O1 -fsanitize=fuzzer,address -fuse-ld=lld -I include Tests/fuzz/fuzz_cabi.c \
        -L "$lib" -lkofka "-Wl,-rpath,$lib" -o .build-fuzz/fuzz_cabi; then
    echo "fuzz: the harness did not build"; exit 1
fi
t2=$SECONDS
echo "build: library $((t1 - t0)) s, harness $((t2 - t1)) s"

work=$(mktemp -d /tmp/kofka-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" Tests/fuzz/findings
echo "== fuzz for $seconds s (seeds: $(ls Tests/fuzz/corpus | wc -l) inputs in Tests/fuzz/corpus)"
# -detect_leaks=0: the Swift runtime keeps metadata caches that LeakSanitizer reports as leaks.
# -timeout=10: one input (at most 64 calls, polls with timeout 0) taking 10 s is a hang.
.build-fuzz/fuzz_cabi -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -detect_leaks=0 \
    -print_final_stats=1 -artifact_prefix=Tests/fuzz/findings/ \
    "$work/corpus" Tests/fuzz/corpus >"$work/log" 2>&1
rc=$?
t3=$SECONDS
grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$work/log" | tail -n 2
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$work/log"
findings=$(grep -cE '^==[0-9]+==ERROR|deadly signal|^SUMMARY: (AddressSanitizer|libFuzzer)|ALARM: working on the last Unit' "$work/log")
echo "fuzz: $((t3 - t2)) s run, $findings finding(s), exit status $rc"
if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
    echo "== finding"
    grep -vE '^#[0-9]+[[:space:]]|^\s+NEW_FUNC' "$work/log" | tail -n 60
    ls -1 Tests/fuzz/findings/ 2>/dev/null | sed 's/^/  kept: Tests\/fuzz\/findings\//'
    echo "0 passed, 1 failed"
    exit 1
fi
rmdir Tests/fuzz/findings 2>/dev/null || true
echo "1 passed, 0 failed"
