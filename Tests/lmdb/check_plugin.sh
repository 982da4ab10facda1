#!/usr/bin/env bash
# Tests/lmdb/check_plugin.sh LIBDIR — the LMDB plugin as built and as the kofka command uses it:
#  - libkofka_lmdb.so is linked against liblmdb, not against libkofka.so nor the Swift runtime;
#    its kofka_* calls are undefined (they resolve to the Kofka that loads it) and it exports
#    kofka_plugin_init;
#  - `kofka maintain` applies retention to an lmdb: store (retention.bytes moves the low
#    watermark, records below it are gone, the high watermark stays);
#  - `kofka topics` etc. pass -X lmdb.* keys to the plugin (once it is loaded);
#  - a writer meets another process's writer lock and gives up with BUSY after its timeout;
#  - an LMDB environment written by another program is refused, naming it.
# Prints one line per check and "N passed, M failed"; exits non-zero on a failure.
set -u
LIB="$(cd "${1:?usage: $0 LIBDIR}" && pwd)"
PLUGIN="$LIB/libkofka_lmdb.so"
KOFKA="$LIB/kofka-cli"
tmp=$(mktemp -d /tmp/kofka-lmdb-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
check() {   # check DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@" >"$tmp/out" 2>&1; then pass=$((pass + 1)); echo "ok    $what"
    else fail=$((fail + 1)); echo "FAIL  $what"; sed 's/^/      | /' "$tmp/out" | head -20; fi
}

if ! "$KOFKA" topics --storage "lmdb:$tmp/probe" >"$tmp/probe.log" 2>&1 && grep -q "built without LMDB" "$tmp/probe.log"; then
    echo "skipped: $(cat "$tmp/probe.log")"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi

needed=$(readelf -d "$PLUGIN" | awk '/NEEDED/ { gsub(/[\[\]]/, "", $5); print $5 }')
check "libkofka_lmdb.so needs liblmdb" grep -q '^liblmdb\.so' <<<"$needed"
check "libkofka_lmdb.so does not need libkofka.so" bash -c '! grep -q "^libkofka" <<<"$1"' _ "$needed"
check "libkofka_lmdb.so does not need the Swift runtime" bash -c '! grep -q "^libswift" <<<"$1"' _ "$needed"
undefined=$(nm -D --undefined-only "$PLUGIN" | awk '{ print $2 }')
check "kofka_storage_register and kofka_storage_set_error are left undefined" \
    bash -c 'grep -qx kofka_storage_register <<<"$1" && grep -qx kofka_storage_set_error <<<"$1"' _ "$undefined"
check "no kofka_* function is defined in the plugin but kofka_plugin_init" \
    bash -c '[ "$(nm -D --defined-only "$1" | awk "{print \$3}" | grep "^kofka_")" = kofka_plugin_init ]' _ "$PLUGIN"

store="lmdb:$tmp/retention"
retention() {
    "$KOFKA" topics --storage "$store" --create r --partitions 1 --config retention.bytes=2000 &&
    seq 1 300 | sed 's/^/value-of-100-bytes-/; s/$/'"$(printf '%080d' 0)"'/' | cut -c1-100 |
        "$KOFKA" produce --storage "$store" r --partition 0 >/dev/null &&
    "$KOFKA" maintain --storage "$store" &&
    "$KOFKA" topics --storage "$store" >"$tmp/topics" && cat "$tmp/topics" &&
    "$KOFKA" consume --storage "$store" r --from-beginning --exit >"$tmp/left" 2>/dev/null
    local left; left=$(wc -l <"$tmp/left")
    echo "records left after retention: $left"
    [ "$left" -ge 20 ] && [ "$left" -le 40 ] && grep -q "value-of-100-bytes-300" "$tmp/left" && ! grep -q "value-of-100-bytes-1$" "$tmp/left"
}
check "kofka maintain applies retention.bytes on an lmdb: store" retention
check "-X lmdb.map.size reaches the plugin" \
    bash -c '"$1" topics --storage "$2" -X plugin.library.paths="$3" -X lmdb.map.size=67108864 && ! "$1" topics --storage "$2" -X plugin.library.paths="$3" -X lmdb.map.size=12' \
    _ "$KOFKA" "lmdb:$tmp/mapsize" "$PLUGIN"
# Another process holds the writers' lock (an fcntl lock on DIR/kofka.lock, as a writer in
# another process would): a writer here gives up after lmdb.busy.timeout.ms with BUSY.
busy() {
    local dir="$tmp/busy"
    "$KOFKA" topics --storage "lmdb:$dir" --create b --partitions 1 >/dev/null || return 1
    python3 - "$dir/kofka.lock" <<'PY' &
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)
open(sys.argv[1] + ".held", "w").close()
time.sleep(3)
PY
    local holder=$!
    for _ in $(seq 100); do [ -e "$dir/kofka.lock.held" ] && break; sleep 0.05; done
    local t0=$(date +%s%N)
    local out rc ms
    out=$(echo x | "$KOFKA" produce --storage "lmdb:$dir" b -X plugin.library.paths="$PLUGIN" -X lmdb.busy.timeout.ms=300 -X retries=0 2>&1)
    rc=$? ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    wait "$holder"
    echo "$out"
    echo "exit $rc after $ms ms"
    [ "$rc" -ne 0 ] && [ "$ms" -ge 300 ] && [ "$ms" -lt 5000 ] && grep -q "BUSY" <<<"$out" && grep -q "another process" <<<"$out"
}
check "a writer blocked by another process's lock gives up after lmdb.busy.timeout.ms" busy
# An LMDB environment some other program wrote is refused, naming it (mdb_load: lmdb-utils).
foreign() {
    mkdir -p "$tmp/foreign" &&
    printf 'VERSION=3\nformat=print\ntype=btree\nHEADER=END\n foo\n bar\nDATA=END\n' | mdb_load "$tmp/foreign" || return 1
    local out
    out=$("$KOFKA" topics --storage "lmdb:$tmp/foreign" 2>&1)
    echo "$out"
    grep -q "KOFKA_ERR_STORAGE" <<<"$out" && grep -q "not a Kofka store" <<<"$out" && grep -q "$tmp/foreign" <<<"$out"
}
if command -v mdb_load >/dev/null; then
    check "an LMDB environment that is not Kofka's is refused with STORAGE naming it" foreign
else
    echo "skip  an LMDB environment that is not Kofka's (no mdb_load: install lmdb-utils)"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
