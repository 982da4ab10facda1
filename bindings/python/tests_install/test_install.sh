#!/usr/bin/env bash
# Installs the Python package into a fresh virtualenv outside the project and
# checks that it works with no project checkout, no KOFKA_LIBRARY and no Swift
# toolchain libraries on the library path:
#
#   1. python3 -m venv in a temp folder; pip install <project>/bindings/python
#      (the package's build step runs `swift build -c release --product kofka
#      -Xswiftc -static-stdlib --scratch-path <project>/.build-wheel`; SwiftPM
#      reuses that build when nothing changed);
#   2. the installed libkofka.so lives in the venv and needs no libswift*.so;
#   3. under `env -i PATH=/usr/bin:/bin`, from a temp folder, one process
#      produces to a SQLite file and a second one consumes it and prints what
#      it read; the output is checked;
#   4. the plugins shipped beside it (libkofka_metrics.so) need no Swift
#      runtime and no libkofka of their own, and the metrics plugin loads from
#      the installed package under env -i and writes its file;
#   5. the package's pytest suite, copied to a temp folder, runs against the
#      installed package.
#
# Usage: bindings/python/tests_install/test_install.sh
# Env:   PYTHON (default python3), KEEP_TMP=1 keeps the temp folder.
# Ends with "PASS: ..." (exit 0) or "FAIL: ..." (exit 1).

set -uo pipefail

START=$(date +%s)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PKG="$ROOT/bindings/python"
PYTHON=${PYTHON:-python3}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kofka-pyinstall.XXXXXX")
VENV="$TMP/venv"

cleanup() { if [ "${KEEP_TMP:-0}" = 1 ]; then echo "(kept $TMP)"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT

elapsed() { echo "$(( $(date +%s) - START ))s"; }
step() { echo "== $* [$(elapsed)]"; }
fail() { echo "FAIL: python install test: $* (after $(elapsed))"; exit 1; }

case "$TMP" in "$ROOT"/*) fail "temp folder $TMP is inside the project";; esac
[ -f "$ROOT/Package.swift" ] || fail "no Package.swift at $ROOT"

step "venv at $VENV"
"$PYTHON" -m venv "$VENV" || fail "python3 -m venv"
VPY="$VENV/bin/python"

step "pip install $PKG (build isolation)"
if ! "$VPY" -m pip install -q "$PKG" >"$TMP/pip.log" 2>&1; then
    tail -n 30 "$TMP/pip.log"
    step "retrying without build isolation"
    "$VPY" -m pip install -q setuptools wheel >>"$TMP/pip.log" 2>&1 || { tail -n 30 "$TMP/pip.log"; fail "pip install setuptools wheel"; }
    "$VPY" -m pip install -q --no-build-isolation "$PKG" >>"$TMP/pip.log" 2>&1 || { tail -n 30 "$TMP/pip.log"; fail "pip install $PKG"; }
fi

step "installed library is inside the venv and self-contained"
mkdir -p "$TMP/work"
CLEAN=(env -i PATH=/usr/bin:/bin HOME="$TMP")
LIB=$(cd "$TMP/work" && "${CLEAN[@]}" "$VPY" -c 'import kofka; print(kofka.library_path)') || fail "import kofka in a clean environment"
echo "   kofka.library_path = $LIB"
case "$LIB" in "$VENV"/*) ;; *) fail "library loaded from $LIB, not from the venv";; esac
NEEDED=$(readelf -d "$LIB" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
echo "   NEEDED: $NEEDED"
if echo "$NEEDED" | grep -Eq 'swift|Foundation|dispatch|BlocksRuntime'; then
    fail "$LIB still needs Swift toolchain libraries: $NEEDED"
fi
if ldd "$LIB" | grep -q 'not found'; then ldd "$LIB"; fail "$LIB has unresolved dependencies"; fi
ls "$VENV"/lib/python*/site-packages/kofka/py.typed >/dev/null 2>&1 || fail "py.typed not installed"

step "produce and consume on SQLite under env -i"
cat >"$TMP/work/smoke.py" <<'EOF'
import importlib.metadata
import sys

import kofka

db, mode = sys.argv[1], sys.argv[2]
assert kofka.__version__ == importlib.metadata.version("kofka"), (kofka.__version__, importlib.metadata.version("kofka"))
with kofka.Broker("sqlite:" + db) as broker:
    if mode == "produce":
        broker.create_topic("orders", partitions=2)
        with broker.producer(delivery="exactly-once", transactional_id="smoke-tx") as p:
            p.init_transactions()
            with p.transaction():
                for i in range(3):
                    p.send("orders", b"value-%d" % i, key=b"k%d" % i, headers=[("n", b"%d" % i)])
        print("produced 3")
    else:
        with broker.consumer(group_id="smoke", delivery="at-least-once") as c:
            c.subscribe(["orders"])
            msgs = []
            for _ in range(100):
                msgs.extend(c.poll_batch(timeout=0.1))
                if len(msgs) >= 3:
                    break
            c.commit()
        for m in sorted(msgs, key=lambda m: m.key):
            print("read %s %s %s" % (m.key.decode(), m.value.decode(), dict(m.headers)["n"].decode()))
print("version %s" % kofka.__version__)
EOF
DB="$TMP/work/smoke.db"
OUT=$(cd "$TMP/work" && "${CLEAN[@]}" "$VPY" smoke.py "$DB" produce 2>&1 && "${CLEAN[@]}" "$VPY" smoke.py "$DB" consume 2>&1) \
    || { echo "$OUT"; fail "smoke script"; }
echo "$OUT" | sed 's/^/   /'
EXPECTED="produced 3
version 0.1.0
read k0 value-0 0
read k1 value-1 1
read k2 value-2 2
version 0.1.0"
[ "$OUT" = "$EXPECTED" ] || fail "smoke output differs from the expected:
$EXPECTED"

step "the metrics plugin ships beside the library and loads from the installed package"
PLUGIN="$(dirname "$LIB")/libkofka_metrics.so"
[ -f "$PLUGIN" ] || fail "no $PLUGIN"
PNEEDED=$(readelf -d "$PLUGIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
echo "   $PLUGIN NEEDED: $PNEEDED"
if echo "$PNEEDED" | grep -Eq 'swift|Foundation|dispatch|kofka'; then fail "$PLUGIN needs $PNEEDED"; fi
cat >"$TMP/work/plugin.py" <<'EOF'
import sys
import kofka

path = kofka.plugin_path("metrics")
assert path and path.startswith(sys.prefix), (path, sys.prefix)
with kofka.Broker(config={"plugin.library.paths": path, "metrics.path": sys.argv[1]}) as b:
    with b.producer() as p:
        for _ in range(3):
            p.send("t", b"hello")
print("sent 3 with", path)
EOF
OUT=$(cd "$TMP/work" && "${CLEAN[@]}" "$VPY" plugin.py "$TMP/work/kofka.prom" 2>&1) || { echo "$OUT"; fail "plugin script"; }
echo "   $OUT"
grep -qx 'kofka_produced_records_total{topic="t"} 3' "$TMP/work/kofka.prom" || { cat "$TMP/work/kofka.prom"; fail "the metrics file does not count 3 records"; }

step "pytest suite against the installed package"
"$VPY" -m pip install -q pytest >>"$TMP/pip.log" 2>&1 || { tail -n 30 "$TMP/pip.log"; fail "pip install pytest"; }
cp -r "$PKG/tests" "$TMP/suite"
rm -rf "$TMP/suite/__pycache__"
USED=$(cd "$TMP/suite" && "${CLEAN[@]}" "$VPY" -c 'import sys; sys.path.insert(0, "."); import conftest, kofka; print(kofka.__file__)') \
    || fail "importing the suite's conftest"
case "$USED" in "$VENV"/*) ;; *) fail "the suite would test $USED, not the installed package";; esac
(cd "$TMP/suite" && "${CLEAN[@]}" "$VPY" -m pytest -q -p no:cacheprovider "$TMP/suite" 2>&1 | tail -n 15; exit "${PIPESTATUS[0]}") \
    || fail "pytest against the installed package"

echo "PASS: python install test (fresh venv, self-contained libkofka.so, env -i smoke, metrics plugin, pytest) in $(elapsed)"
