#!/usr/bin/env bash
# The whole benchmark, every face in one run on this machine (release build):
#   1. `kofka-bench run`    Swift face: produce / consume / latency / read-process-write / RSS,
#                           beside raw SQLite and a minimal C log measured in the same run;
#   2. bench/c_bench.c      C face through libkofka.so, beside a minimal C log, and the per-record
#                           idiom beside librdkafka → its mock cluster (when pkg-config finds it);
#   3. bench/wake_bench.c   a poll blocked in one process woken by another's commit (SQLite), and
#                           an idle blocked consumer's CPU;
#   4. bench/python_bench.py Python face, beside confluent-kafka → librdkafka's mock cluster,
#                           persist-queue and litequeue (installed from PyPI if missing).
# Usage: bash bench/run.sh [--quick]     Figures are printed, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=${1:-}
swift build -c release --product kofka-bench >/dev/null
swift build -c release --product kofka >/dev/null
rel=$PWD/.build/release
echo "== kofka-bench run (Swift face, bench/swift)"
if [ "$quick" = "--quick" ]; then "$rel/kofka-bench" run --quick; else "$rel/kofka-bench" run; fi
echo
echo "== C face (bench/c_bench.c through libkofka.so)"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# librdkafka, when installed, adds its rows beside the per-record idiom (rd_kafka_producev, rd_kafka_consumer_poll)
rdkafka=(); if pkg-config --exists rdkafka; then rdkafka=(-DKOFKA_BENCH_RDKAFKA $(pkg-config --cflags --libs rdkafka)); fi
cc -O2 -Iinclude bench/c_bench.c ${rdkafka[@]+"${rdkafka[@]}"} -L"$rel" -lkofka -Wl,-rpath,"$rel" -o "$tmp/c_bench"
"$tmp/c_bench" $([ "$quick" = "--quick" ] && echo 100000 || echo 1000000)
echo
echo "== cross-process wake-up and idle cost (bench/wake_bench.c through libkofka.so, SQLite)"
cc -O2 -Iinclude bench/wake_bench.c -L"$rel" -lkofka -Wl,-rpath,"$rel" -o "$tmp/wake_bench"
"$tmp/wake_bench" $([ "$quick" = "--quick" ] && echo 100 || echo 1000) normal
echo
echo "== Python face (bench/python_bench.py)"
python3 -c 'import confluent_kafka, persistqueue, litequeue' 2>/dev/null ||
    python3 -m pip install -q confluent-kafka persist-queue litequeue 2>/dev/null || echo "(references not installable: kofka rows only)"
KOFKA_LIBRARY="$rel/libkofka.so" python3 bench/python_bench.py --records $([ "$quick" = "--quick" ] && echo 20000 || echo 200000) 2>&1 | grep -v '|MOCK|'
