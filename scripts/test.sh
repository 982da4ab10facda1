#!/usr/bin/env bash
# Runs every Kofka test suite: Swift (core, both backends), C (against include/kofka.h and
# libkofka.so), Python (ctypes package), the multi-process crash harness, the maintenance kill
# test, the LMDB storage plugin (conformance through the CLI, linkage and retention, the crash
# harness on lmdb:), PostgreSQL (a throwaway cluster from scripts/pg.sh: the Swift, C and Python
# suites run on it as a further backend, plus the crash harness and the demo on postgresql://…),
# the Kafka wire protocol (`kofka serve` with kcat, confluent-kafka and kafka-python), and smoke runs of `kofka demo` and of
# the benchmarks (kofka-bench: `run` through bench/run.sh, `retention`, `storage`, `postgres`). Prints one line per suite and a closing "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tmp=$(mktemp -d /tmp/kofka-test.XXXXXX)
pg_dir=
trap '[ -n "$pg_dir" ] && bash scripts/pg.sh stop "$pg_dir"; rm -rf "$tmp"' EXIT

echo "== build (debug: library, command, benchmarks, tests)"
swift build --build-tests 2>&1 | tail -n 3 || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
lib=$root/.build/debug

passed=0; failed=0; results=()

# PostgreSQL: a throwaway cluster for this run (initdb in a temporary folder as an unprivileged
# user, loopback only); KOFKA_PG_URL makes it a backend of the Swift, C and Python suites.
echo "== postgresql: a throwaway cluster (scripts/pg.sh start)"
if pg_env=$(bash scripts/pg.sh start); then
    eval "$pg_env"
    pg_dir=$KOFKA_PG_DIR
    echo "started on port $KOFKA_PG_PORT"
else
    echo "could not start PostgreSQL: its suites fail"
    failed=$((failed + 1)); results+=("FAIL  postgresql: scripts/pg.sh start")
fi
pg_store() { echo "$KOFKA_PG_URL?options=-csearch_path%3D$1"; }
suite() {   # suite NAME COMMAND...
    local name=$1; shift
    echo
    echo "== $name"
    local t0=$SECONDS
    if "$@"; then passed=$((passed + 1)); results+=("PASS  $name ($((SECONDS - t0)) s)")
    else failed=$((failed + 1)); results+=("FAIL  $name ($((SECONDS - t0)) s)"); fi
}

suite "swift tests (core, memory + sqlite + postgresql)" swift test --skip-build
suite "c tests (include/kofka.h + libkofka.so)" bash Tests/c/run.sh "$lib"
suite "python tests (bindings/python)" env KOFKA_LIBRARY="$lib/libkofka.so" python3 -m pytest bindings/python/tests -q
suite "python package: pip install into a fresh venv, env -i, pytest against it" bash bindings/python/tests_install/test_install.sh
suite "c install: install.sh, pkg-config build, env -i run" bash Tests/c/test_install.sh
suite "README examples run as written (C, Python, Swift)" bash Tests/readme/test_readme.sh
suite "swift example package (depends on Kofka by path)" \
    bash -c 'cd bindings/swift/Example && swift build 2>&1 | tail -n 1 && .build/debug/Example'
suite "demo on memory: (the README's first command)" "$lib/kofka-cli" demo
suite "crash harness: 3 worker processes, 20 SIGKILLs per mode, 3 polls per transaction, sqlite" \
    "$lib/kofka-cli" demo --storage "sqlite:$tmp/harness.db" --processes 3 --kills 20 --records 600 --polls-per-transaction 3
suite "crash: SIGKILL in the middle of maintenance, 4 rounds × 3 kills, sqlite (nothing that must survive is lost)" \
    bash Tests/crash/maintenance_kill.sh "$lib/kofka-cli" 4 3
if [ -n "$pg_dir" ]; then
    suite "crash harness on postgresql: 3 worker processes, 20 SIGKILLs per mode, 3 polls per transaction" \
        "$lib/kofka-cli" demo --storage "$(pg_store harness)" --processes 3 --kills 20 --records 600 --polls-per-transaction 3
    suite "demo on postgresql (in-process)" "$lib/kofka-cli" demo --storage "$(pg_store demo)"
    suite "postgresql plugin: the storage conformance suite through the CLI" \
        "$lib/kofka-cli" lab conformance --storage "$(pg_store conformance)"
    suite "kofka-bench postgres smoke: Kofka beside raw libpq references (debug, figures not asserted)" \
        "$lib/kofka-bench" postgres --quick
fi
suite "wire protocol: kofka serve with kcat, confluent-kafka and kafka-python (Tests/wire)" \
    env KOFKA_CLI="$lib/kofka-cli" KOFKA_LIBRARY="$lib/libkofka.so" python3 -m pytest Tests/wire -q
suite "lmdb plugin: the storage conformance suite through the CLI (kofka lab conformance --storage lmdb:…)" \
    "$lib/kofka-cli" lab conformance --storage "lmdb:$tmp/conformance"
suite "lmdb plugin: linkage (liblmdb, not libkofka), retention through kofka maintain, -X lmdb.* keys" \
    bash Tests/lmdb/check_plugin.sh "$lib"
suite "crash harness on lmdb: 3 worker processes, 8 SIGKILLs per mode, 3 polls per transaction" \
    "$lib/kofka-cli" demo --storage "lmdb:$tmp/harness-lmdb" --processes 3 --kills 8 --records 300 --polls-per-transaction 3
suite "bench smoke: every face, release build (figures not asserted)" bash bench/run.sh --quick
suite "fuzz: libFuzzer over the C ABI, 60 s, instrumented library (Tests/fuzz/run.sh)" bash Tests/fuzz/run.sh 60
suite "tsan: multi-threaded Swift tests under ThreadSanitizer (scripts/tsan.sh)" env -u KOFKA_PG_URL bash scripts/tsan.sh
suite "kofka-bench storage smoke: lmdb beside sqlite and raw LMDB (debug, figures not asserted)" \
    "$lib/kofka-bench" storage --quick
suite "kofka-bench retention smoke: steady state, cleaner cost, deletion cost, lock holds (debug, figures not asserted)" \
    "$lib/kofka-bench" retention --quick

echo
echo "== summary"
printf '%s\n' "${results[@]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
