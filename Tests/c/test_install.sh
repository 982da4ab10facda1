#!/usr/bin/env bash
# Installs Kofka with bindings/c/install.sh into a temporary prefix, builds an example program
# using only `pkg-config --cflags --libs kofka`, and runs it and the installed `kofka` command
# under `env -i` (no Swift toolchain on the library path). Ends with PASS:/FAIL:.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d /tmp/kofka-cinstall.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: c install test: $*"; exit 1; }

bash "$root/bindings/c/install.sh" "$tmp/prefix" >"$tmp/install.log" 2>&1 || { tail -20 "$tmp/install.log"; fail "install.sh failed"; }
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
flags=$(pkg-config --cflags --libs kofka) || fail "pkg-config does not know kofka"
echo "pkg-config --cflags --libs kofka: $flags"
cc -std=c11 -Wall -Wextra -Werror "$root/bindings/c/examples/producer.c" $flags -o "$tmp/producer" || fail "example does not build with pkg-config flags"
# The runtime search path comes from the environment only: LD_LIBRARY_PATH=prefix/lib, nothing else.
out=$(cd "$tmp" && env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$tmp/prefix/lib" ./producer "sqlite:$tmp/app.db" 2>&1) || { echo "$out"; fail "example failed under env -i"; }
echo "$out" | tail -3
if ldd "$tmp/prefix/lib/libkofka.so.0" | grep -Ei 'swift|foundation|dispatch|not found'; then fail "libkofka.so needs Swift runtime libraries"; fi
readelf -d "$tmp/prefix/lib/libkofka.so.0" | grep -q 'SONAME.*libkofka.so.0' || fail "no soname"
v=$(env -i PATH=/usr/bin:/bin "$tmp/prefix/bin/kofka" --version 2>&1) || fail "installed kofka command does not run: $v"
printf 'one\ntwo\n' | env -i PATH=/usr/bin:/bin "$tmp/prefix/bin/kofka" produce --storage "sqlite:$tmp/cli.db" lines 2>/dev/null || fail "kofka produce"
got=$(env -i PATH=/usr/bin:/bin "$tmp/prefix/bin/kofka" consume --storage "sqlite:$tmp/cli.db" lines --from-beginning --exit 2>/dev/null)
[ "$got" = $'one\ntwo' ] || fail "kofka consume printed '$got'"
echo "PASS: c install test (install.sh, pkg-config build, env -i run, $v)"
