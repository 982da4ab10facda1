#!/usr/bin/env bash
# bindings/c/install.sh PREFIX — builds Kofka in release mode and installs
#   PREFIX/lib/libkofka.so.0          (soname libkofka.so.0)
#   PREFIX/lib/libkofka.so -> libkofka.so.0
#   PREFIX/include/kofka.h
#   PREFIX/lib/pkgconfig/kofka.pc
#   PREFIX/bin/kofka                  (the kofka-cli executable)
#   PREFIX/lib/libkofka_metrics.so    (plugins, beside the library: the metrics interceptors,
#   PREFIX/lib/libkofka_lmdb.so        and the LMDB storage when the package has it)
# The Swift standard library is linked statically (-static-stdlib), so the
# installed library needs no Swift runtime on the target machine.
# Then: cc app.c $(PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs kofka)
set -euo pipefail
if [ $# -ne 1 ]; then echo "usage: $0 PREFIX" >&2; exit 2; fi
mkdir -p "$1"
PREFIX="$(cd "$1" && pwd)"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SCRATCH="${KOFKA_SCRATCH:-$ROOT/.build-install}"
cd "$ROOT"

# The soname is set at link time, so no patchelf is needed.
FLAGS=(-c release --scratch-path "$SCRATCH" -Xswiftc -static-stdlib -Xlinker -soname=libkofka.so.0)
swift build "${FLAGS[@]}" --product kofka
swift build "${FLAGS[@]}" --product kofka-cli
BIN="$(swift build "${FLAGS[@]}" --show-bin-path)"
# Plugins: no soname of libkofka's. Each is looked up by name beside libkofka.so
# (libkofka_SCHEME.so) or named in plugin.library.paths.
PLUGIN_FLAGS=(-c release --scratch-path "$SCRATCH" -Xswiftc -static-stdlib)
PLUGINS=(kofka_metrics)
grep -q '"kofka_lmdb"' Package.swift && PLUGINS+=(kofka_lmdb)
for plugin in "${PLUGINS[@]}"; do swift build "${PLUGIN_FLAGS[@]}" --product "$plugin"; done

VERSION="$(sed -n 's/^public let version = "\(.*\)"/\1/p' Sources/Kofka/Kofka.swift | head -1)"
VERSION="${VERSION:-0.1.0}"

install -d "$PREFIX/lib/pkgconfig" "$PREFIX/include" "$PREFIX/bin"
install -m 0755 "$BIN/libkofka.so" "$PREFIX/lib/libkofka.so.0"
ln -sf libkofka.so.0 "$PREFIX/lib/libkofka.so"
install -m 0644 include/kofka.h "$PREFIX/include/kofka.h"
install -m 0755 "$BIN/kofka-cli" "$PREFIX/bin/kofka"
for plugin in "${PLUGINS[@]}"; do
    [ -f "$BIN/lib$plugin.so" ] && install -m 0755 "$BIN/lib$plugin.so" "$PREFIX/lib/lib$plugin.so"
done
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@VERSION@|$VERSION|g" bindings/c/kofka.pc.in >"$PREFIX/lib/pkgconfig/kofka.pc"

if command -v readelf >/dev/null; then
    readelf -d "$PREFIX/lib/libkofka.so.0" | grep -q 'SONAME.*libkofka.so.0' ||
        { echo "install.sh: libkofka.so.0 has no soname libkofka.so.0" >&2; exit 1; }
fi
echo "installed Kofka $VERSION into $PREFIX"
