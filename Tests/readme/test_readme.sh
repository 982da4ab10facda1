#!/usr/bin/env bash
# The README's examples run as written: its C block (built against include/kofka.h and the
# debug libkofka.so), its Python block (with the project's package) and its Swift block (as the
# main.swift of a package that depends on Kofka by path). Ends with PASS:/FAIL:.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
lib="$root/.build/debug"
tmp=$(mktemp -d /tmp/kofka-readme.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: README examples: $*"; exit 1; }
block() { awk -v lang="$1" '$0 == "```" lang {on=1; next} on && $0 == "```" {exit} on {print}' "$root/README.md"; }

block c > "$tmp/example.c"
[ -s "$tmp/example.c" ] || fail "no C block"
cc -std=c11 -Wall -Wextra -Werror -I "$root/include" "$tmp/example.c" -L "$lib" -lkofka -Wl,-rpath,"$lib" -o "$tmp/example" || fail "C example does not build"
(cd "$tmp" && ./example) | tee "$tmp/c.out" || fail "C example failed"
grep -q "written at" "$tmp/c.out" || fail "C example printed no offset"

block python > "$tmp/example.py"
[ -s "$tmp/example.py" ] || fail "no Python block"
(cd "$tmp" && rm -f events.db* && PYTHONPATH="$root/bindings/python" KOFKA_LIBRARY="$lib/libkofka.so" python3 example.py) || fail "Python example failed"

mkdir -p "$tmp/swift/Sources/Example"
block swift > "$tmp/swift/Sources/Example/main.swift"
cat > "$tmp/swift/Package.swift" <<PKG
// swift-tools-version:6.2
import PackageDescription
let package = Package(name: "Example", dependencies: [.package(name: "Kofka", path: "$root")],
    targets: [.executableTarget(name: "Example", dependencies: [.product(name: "Kofka", package: "Kofka")])])
PKG
(cd "$tmp/swift" && swift build --scratch-path "$root/.build-readme" 2>&1 | tail -n 1 && "$root/.build-readme/debug/Example") || fail "Swift example failed"
echo "PASS: README examples (C, Python, Swift) run as written"
