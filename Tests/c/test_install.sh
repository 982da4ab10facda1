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

# Plugins: the README's example plugin built against the installed kofka.h alone (no -lkofka),
# and the installed metrics plugin, both loaded by plugin.library.paths from a program linked
# with the installed library, under env -i.
for p in libkofka_metrics.so; do [ -f "$tmp/prefix/lib/$p" ] || fail "$p is not installed beside libkofka.so"; done
if readelf -d "$tmp/prefix/lib/libkofka_metrics.so" | grep -Ei 'NEEDED.*(swift|kofka)'; then fail "libkofka_metrics.so needs Swift or libkofka"; fi
cc -std=c11 -Wall -Wextra -Werror -shared -fPIC -I "$tmp/prefix/include" "$root/bindings/c/examples/plugin/count_plugin.c" \
    -o "$tmp/libcount_plugin.so" || fail "the plugin example does not build against the installed kofka.h"
cat > "$tmp/host.c" <<'HOST'
#include <kofka.h>
#include <stdio.h>
#include <string.h>
/* host PLUGINS METRICS_FILE: opens a broker with the plugins, sends, consumes, closes. */
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *config[] = {"plugin.library.paths", argv[1], "metrics.path", argv[2], NULL};
    kofka_broker *b;
    if (kofka_broker_open("memory:", config, &b)) { printf("open: %s\n", kofka_last_error()); return 1; }
    kofka_producer *p;
    if (kofka_producer_new(b, NULL, &p)) return 1;
    for (int i = 0; i < 3; i++) {
        kofka_record r = {.partition = KOFKA_PARTITION_ANY, .value = "hello", .value_len = 5};
        if (kofka_send(p, "t", &r)) { printf("send: %s\n", kofka_last_error()); return 1; }
    }
    kofka_producer_close(p, 1000);
    const char *cc[] = {"group.id", "g", NULL};
    kofka_consumer *c;
    const char *topics[] = {"t"};
    if (kofka_consumer_new(b, cc, &c) || kofka_subscribe(c, topics, 1)) return 1;
    for (int n = 0, i = 0; n < 3 && i < 50; i++) {
        kofka_message *m = NULL;
        if (kofka_poll(c, 100, &m) == KOFKA_OK && m) { n++; kofka_message_free(m); }
    }
    kofka_commit(c);
    kofka_consumer_close(c);
    return kofka_broker_close(b) ? 1 : 0;
}
HOST
cc -std=c11 -Wall -Wextra -Werror "$tmp/host.c" $flags -o "$tmp/host" || fail "plugin host does not build"
out=$(cd "$tmp" && env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$tmp/prefix/lib" ./host \
      "$tmp/libcount_plugin.so;$tmp/prefix/lib/libkofka_metrics.so" "$tmp/metrics.prom" 2>&1) || { echo "$out"; fail "plugin host failed"; }
echo "$out"
echo "$out" | grep -q "count_plugin: 3 sent, 3 acknowledged, 3 consumed" || fail "the example plugin did not see every send, ack and consume"
grep -q '^kofka_consumed_records_total{topic="t"} 3$' "$tmp/metrics.prom" || { cat "$tmp/metrics.prom"; fail "the metrics plugin did not count 3 consumed"; }
echo "PASS: c install test (install.sh, pkg-config build, env -i run, plugins, $v)"
