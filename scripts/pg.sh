#!/usr/bin/env bash
# scripts/pg.sh — a throwaway PostgreSQL cluster for Kofka's tests and benchmarks.
#
#   eval "$(scripts/pg.sh start)"     initdb in a fresh temporary folder, start it, print
#                                     export lines: KOFKA_PG_URL, KOFKA_PG_DIR, KOFKA_PG_PORT
#   scripts/pg.sh stop [DIR]          stop the cluster (immediately) and remove its folder
#   scripts/pg.sh restart [DIR]       stop (fast: sessions are terminated) and start again,
#                                     same port; what a server restart does to clients
#   scripts/pg.sh env [DIR]           print the export lines again
#   scripts/pg.sh psql [DIR] ARGS…    psql on the cluster as its superuser
#
# DIR defaults to $KOFKA_PG_DIR. The cluster runs as an unprivileged user: the current one,
# or, when run as root (CI), Debian's `postgres` user (created by the postgresql package). It
# listens on 127.0.0.1 only, on a free port, with its socket inside DIR. Its superuser is
# `kofka` with a password (the URL carries it, so URIs with a password are what the tests
# use); loopback TCP connections authenticate with scram-sha-256.
#
# Settings: fsync=off by default — the tests never pull the power, and a commit still waits
# for its WAL to be written to the kernel (synchronous_commit=on is honoured: a server
# crash or restart loses nothing acknowledged). `KOFKA_PG_FSYNC=on scripts/pg.sh start` keeps
# fsync (the benchmarks in BENCHMARKS.md say which they used). max_connections=400: every
# broker handle holds a writer, a listener and a few reader connections, and the Swift tests
# run in parallel.
set -euo pipefail
bin=${KOFKA_PG_BIN:-}
if [ -z "$bin" ]; then
    for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && bin=$d; done
fi
[ -n "$bin" ] && [ -x "$bin/initdb" ] || { echo "pg.sh: no PostgreSQL server found (Debian: apt-get install postgresql)" >&2; exit 2; }

password=kofka-test-pw
cmd=${1:-}
shift || true

# as_owner CMD... — runs CMD as the cluster's unprivileged owner.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

dir_arg() { local d=${1:-${KOFKA_PG_DIR:-}}; [ -n "$d" ] && [ -f "$d/port" ] || { echo "pg.sh: no cluster folder (give DIR or set KOFKA_PG_DIR)" >&2; exit 2; }; echo "$d"; }

print_env() {
    local d=$1 port
    port=$(cat "$d/port")
    echo "export KOFKA_PG_DIR=$d"
    echo "export KOFKA_PG_PORT=$port"
    echo "export KOFKA_PG_URL=postgresql://kofka:$password@127.0.0.1:$port/kofka"
    echo "export KOFKA_PG_SCRIPT=$(cd "$(dirname "$0")" && pwd)/pg.sh"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_server() {   # start_server DIR
    local d=$1
    as_owner "$bin/pg_ctl" -D "$d/data" -l "$d/server.log" -w -t 60 -o "-p $(cat "$d/port")" start >/dev/null
}

case "$cmd" in
start)
    d=$(mktemp -d /tmp/kofka-pg.XXXXXX)
    chmod 755 "$d"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$d"
    echo "$password" >"$d/pwfile"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$d/pwfile"
    if ! as_owner "$bin/initdb" -D "$d/data" -U kofka --pwfile="$d/pwfile" -A scram-sha-256 --auth-local=trust \
            -E UTF8 --locale=C.UTF-8 >"$d/initdb.log" 2>&1; then
        cat "$d/initdb.log" >&2; rm -rf "$d"; exit 1
    fi
    cat >>"$d/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$d'
max_connections = 400
shared_buffers = 128MB
fsync = ${KOFKA_PG_FSYNC:-off}
full_page_writes = ${KOFKA_PG_FSYNC:-off}
synchronous_commit = on
log_min_messages = warning
log_connections = off
EOF
    for attempt in 1 2 3 4 5; do
        free_port >"$d/port"
        if start_server "$d" 2>>"$d/start.log"; then break; fi
        [ "$attempt" -eq 5 ] && { cat "$d/start.log" "$d/server.log" >&2; rm -rf "$d"; exit 1; }
    done
    as_owner "$bin/psql" -h "$d" -p "$(cat "$d/port")" -U kofka -d postgres -q -c "CREATE DATABASE kofka" >/dev/null
    print_env "$d"
    ;;
stop)
    d=$(dir_arg "${1:-}")
    as_owner "$bin/pg_ctl" -D "$d/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$d"
    ;;
restart)
    d=$(dir_arg "${1:-}")
    as_owner "$bin/pg_ctl" -D "$d/data" -m fast -w stop >/dev/null
    start_server "$d"
    ;;
env)
    print_env "$(dir_arg "${1:-}")"
    ;;
psql)
    d=$(dir_arg "${1:-}")
    shift || true
    as_owner "$bin/psql" -h "$d" -p "$(cat "$d/port")" -U kofka -d kofka -v ON_ERROR_STOP=1 "$@"
    ;;
*)
    echo "usage: $0 start | stop [DIR] | restart [DIR] | env [DIR] | psql [DIR] [ARGS…]" >&2
    exit 2
    ;;
esac
