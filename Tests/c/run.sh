#!/usr/bin/env bash
# Tests/c/run.sh LIBDIR — builds and runs the C tests and examples against
# include/kofka.h and LIBDIR/libkofka.so.
#
# Every Tests/c/test_*.c and bindings/c/examples/*.c is compiled with
#   cc -std=c11 -Wall -Wextra -Werror -I include
# and linked with -L LIBDIR -lkofka -Wl,-rpath,LIBDIR -lpthread. Each test
# program prints "@@TALLY passed=N failed=M" (Tests/c/check.h); this script sums
# them. A program that fails to build, crashes, times out or exits non-zero
# without a failed check counts as one more failure. The exported symbols of
# libkofka.so are compared with the header's functions (one check each).
# The last line is exactly "N passed, M failed"; the exit status is non-zero
# if anything failed.
set -u
if [ $# -lt 1 ]; then echo "usage: $0 LIBDIR" >&2; exit 2; fi
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
LIBDIR="$(cd "$1" && pwd)" || { echo "no such LIBDIR: $1" >&2; exit 2; }
CC="${CC:-cc}"
BUILD="$ROOT/Tests/c/build"
TIMEOUT="${KOFKA_TEST_TIMEOUT:-60}"
mkdir -p "$BUILD"
cd "$ROOT"

total_pass=0
total_fail=0
declare -a summary=()

CFLAGS=(-std=c11 -Wall -Wextra -Werror -I include -I Tests/c)
LDFLAGS=(-L "$LIBDIR" -lkofka "-Wl,-rpath,$LIBDIR" -lpthread)

# build NAME SRC -> 0 if $BUILD/NAME was built
build() {
    local name="$1" src="$2"
    if ! "$CC" "${CFLAGS[@]}" -o "$BUILD/$name" "$src" "${LDFLAGS[@]}" >"$BUILD/$name.build.log" 2>&1; then
        local undefined
        undefined=$(grep -o "undefined reference to \`[a-z_0-9]*'" "$BUILD/$name.build.log" | sed "s/.*\`//; s/'//" | sort -u | tr '\n' ' ')
        if [ -n "$undefined" ]; then
            echo "  BUILD FAILED: the library does not export: $undefined"
        else
            sed 's/^/  | /' "$BUILD/$name.build.log" | head -30
        fi
        return 1
    fi
}

# describe_status RC -> text for an exit status
describe_status() {
    local rc="$1"
    if [ "$rc" -eq 124 ]; then echo "timed out after ${TIMEOUT}s"
    elif [ "$rc" -eq 142 ]; then echo "hung past its time budget (SIGALRM)"
    elif [ "$rc" -gt 128 ]; then echo "crashed: signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null || echo ?))"
    else echo "exit status $rc"; fi
}

run_test() {
    local src="$1" name
    name="$(basename "$src" .c)"
    echo "== $name"
    if ! build "$name" "$src"; then
        total_fail=$((total_fail + 1))
        summary+=("FAIL  $name (does not build)")
        return
    fi
    local out="$BUILD/$name.out" rc
    ( cd "$BUILD" && timeout -k 5 "$TIMEOUT" "./$name" ) >"$out" 2>&1
    rc=$?
    cat "$out"
    local tally p f
    tally=$(grep '^@@TALLY ' "$out" | tail -1)
    p=$(sed -n 's/.*passed=\([0-9]*\).*/\1/p' <<<"$tally"); p=${p:-0}
    f=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$tally"); f=${f:-0}
    local note=""
    if [ "$rc" -ne 0 ]; then
        note=" — $(describe_status "$rc")"
        # A crash or timeout is a failure of its own; the crash handler's
        # tally already counts the crash, a missing tally does not.
        if [ -z "$tally" ] || { [ "$rc" -ne 1 ] && ! grep -qE '^  (CRASH|TIMEOUT)' "$out"; }; then
            f=$((f + 1))
        fi
        [ "$f" -eq 0 ] && f=1
    fi
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    if [ "$f" -eq 0 ]; then
        summary+=("PASS  $name ($p checks)")
    else
        summary+=("FAIL  $name ($p passed, $f failed$note)")
    fi
}

run_example() {
    local src="$1" name
    name="example_$(basename "$src" .c)"
    echo "== $name"
    if ! build "$name" "$src"; then
        total_fail=$((total_fail + 1))
        summary+=("FAIL  $name (does not build)")
        return
    fi
    local db="/tmp/kofka-cexample-$$-$name.db" arg rc
    for arg in "" "sqlite:$db"; do
        rm -f "$db" "$db-wal" "$db-shm" "$db-bell"
        ( cd "$BUILD" && timeout -k 5 "$TIMEOUT" "./$name" $arg ) >"$BUILD/$name.out" 2>&1
        rc=$?
        sed 's/^/  | /' "$BUILD/$name.out" | tail -15
        local label="$name ${arg:-memory:}"
        if [ "$rc" -eq 0 ]; then
            total_pass=$((total_pass + 1)); summary+=("PASS  $label")
        else
            total_fail=$((total_fail + 1)); summary+=("FAIL  $label ($(describe_status "$rc"))")
        fi
    done
    rm -f "$db" "$db-wal" "$db-shm" "$db-bell"
}

check_exports() {
    echo "== exports (nm -D libkofka.so vs include/kofka.h)"
    local lib="$LIBDIR/libkofka.so"
    if [ ! -f "$lib" ]; then
        echo "  no $lib"; total_fail=$((total_fail + 1)); summary+=("FAIL  exports (no library)"); return
    fi
    local declared exported missing extra n_ok=0 n_bad=0
    declared=$(grep -E '^[a-z_ ]*\*?kofka_[a-z_]+\(' include/kofka.h | grep -oE 'kofka_[a-z_]+\(' | tr -d '(' | sort -u)
    exported=$(nm -D --defined-only "$lib" | awk '{print $NF}' | grep -E '^kofka_' | sort -u)
    missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
    extra=$(comm -13 <(echo "$declared") <(echo "$exported"))
    n_ok=$(comm -12 <(echo "$declared") <(echo "$exported") | grep -c . || true)
    [ -n "$missing" ] && { echo "  missing (declared in kofka.h, not exported):"; sed 's/^/    /' <<<"$missing"; }
    [ -n "$extra" ] && { echo "  extra (exported, not declared in kofka.h):"; sed 's/^/    /' <<<"$extra"; }
    n_bad=$(( $(grep -c . <<<"$missing" || true) + $(grep -c . <<<"$extra" || true) ))
    total_pass=$((total_pass + n_ok)); total_fail=$((total_fail + n_bad))
    if [ "$n_bad" -eq 0 ]; then summary+=("PASS  exports ($n_ok symbols)")
    else summary+=("FAIL  exports ($n_ok match, $n_bad missing or extra)"); fi
}

check_exports
for src in Tests/c/test_*.c; do run_test "$src"; done
for src in bindings/c/examples/*.c; do [ -f "$src" ] && run_example "$src"; done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
