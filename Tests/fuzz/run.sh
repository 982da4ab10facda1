#!/usr/bin/env bash
# Tests/fuzz/run.sh [SECONDS] — builds libkofka.so with libFuzzer coverage and AddressSanitizer
# (swift build -Xswiftc -sanitize=fuzzer,address, scratch path .build-fuzz) and two targets on it:
#   fuzz_cabi  Tests/fuzz/fuzz_cabi.c (clang): the C ABI, seeds in Tests/fuzz/corpus;
#   fuzz_wire  Tests/fuzz/fuzz_wire.swift (one swiftc call against the same library and its
#              KofkaWire module): the Kafka request decoder of `kofka serve`, seeds in
#              Tests/fuzz/wire_corpus (real client frames, see capture_wire_seeds.py).
# Then fuzzes for SECONDS in all (default 60): two thirds on the C ABI, one third on the wire
# decoder. New inputs go to a temporary folder; the checked-in corpora are not touched.
#
# Prints the build times, executions, coverage and findings. A finding (a crash, an ASan
# report, a Swift trap, a contract violation trapped by the harness, a timeout) fails the run;
# its input is kept in Tests/fuzz/findings/ and its report is printed. Reproduce one with
#   .build-fuzz/fuzz_cabi Tests/fuzz/findings/crash-...   (or .build-fuzz/fuzz_wire)
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
t1b=$SECONDS
echo "== build the wire decoder target (one swiftc call)"
# KofkaWire's module and its dependencies' module maps, as swift build left them.
rm -f .build-fuzz/fuzz_wire
swiftc -sanitize=fuzzer,address -parse-as-library -g -use-ld=lld Tests/fuzz/fuzz_wire.swift \
        -I "$lib/Modules" -I Sources/CSQLite -I Sources/CKofka -I Sources/CZlib \
        -Xcc "-fmodule-map-file=$lib/CKofkaShims.build/module.modulemap" \
        -L "$lib" -lkofka -Xlinker -rpath -Xlinker "$lib" -o .build-fuzz/fuzz_wire 2>&1 | grep -v 'Cannot export' || true
[ -x .build-fuzz/fuzz_wire ] || { echo "fuzz: the wire decoder target did not build"; exit 1; }
t2=$SECONDS
echo "build: library $((t1 - t0)) s, C ABI harness $((t1b - t1)) s, wire decoder target $((t2 - t1b)) s"

work=$(mktemp -d /tmp/kofka-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p Tests/fuzz/findings
wire_seconds=$((seconds / 3))
cabi_seconds=$((seconds - wire_seconds))
failed=0

# fuzz NAME SECONDS SEEDS: runs .build-fuzz/NAME, prints its figures, counts a finding in $failed.
fuzz() {
    local name=$1 secs=$2 seeds=$3 t=$SECONDS
    mkdir -p "$work/$name"
    echo "== $name: fuzz for $secs s (seeds: $(ls "$seeds" | wc -l) inputs in $seeds)"
    # -detect_leaks=0: the Swift runtime keeps metadata caches that LeakSanitizer reports as leaks.
    # -timeout=10: one input taking 10 s is a hang (fuzz_cabi: at most 64 calls, polls with timeout 0).
    ".build-fuzz/$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -detect_leaks=0 \
        -print_final_stats=1 -artifact_prefix=Tests/fuzz/findings/ \
        "$work/$name" "$seeds" >"$work/$name.log" 2>&1
    local rc=$?
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$work/$name.log" | tail -n 2
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$work/$name.log"
    local findings
    findings=$(grep -cE '^==[0-9]+==ERROR|deadly signal|^SUMMARY: (AddressSanitizer|libFuzzer)|ALARM: working on the last Unit' "$work/$name.log")
    echo "$name: $((SECONDS - t)) s run, $findings finding(s), exit status $rc"
    if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
        echo "== finding ($name)"
        grep -vE '^#[0-9]+[[:space:]]|^\s+NEW_FUNC' "$work/$name.log" | tail -n 60
        failed=$((failed + 1))
    fi
}

fuzz fuzz_cabi "$cabi_seconds" Tests/fuzz/corpus
fuzz fuzz_wire "$wire_seconds" Tests/fuzz/wire_corpus
if [ "$failed" -ne 0 ]; then
    ls -1 Tests/fuzz/findings/ 2>/dev/null | sed 's/^/  kept: Tests\/fuzz\/findings\//'
    echo "$((2 - failed)) passed, $failed failed"
    exit 1
fi
rmdir Tests/fuzz/findings 2>/dev/null || true
echo "2 passed, 0 failed"
