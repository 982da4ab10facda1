/*
 * kofka_postgresql.h — libkofka_postgresql.so, Kofka's storage on PostgreSQL.
 *
 * A storage plugin (include/kofka.h, "Plugins") built by `swift build` beside libkofka.so. It
 * registers the schemes "postgresql" and "postgres"; a storage string is libpq's connection
 * URI, used verbatim:
 *
 *     postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?PARAM=VALUE&…]
 *
 * kofka_broker_open("postgresql://app@db1/orders", …) finds the plugin by itself (a scheme
 * nobody registered is looked up as libkofka_SCHEME.so beside libkofka.so; "postgres:" is
 * served by this library too). Every process on every host that opens the same database (and
 * schema) is one broker.
 *
 * Where the data lives: the schema "kofka" of the database, created on first use (the user
 * needs CREATE on the database once; afterwards USAGE on the schema and the rights on its
 * tables), or the first schema of a search_path given in the URI, e.g.
 * ?options=-csearch_path%3Dorders_log. The schema is versioned (table meta, row
 * schema_version); a schema written by a newer plugin is refused with KOFKA_ERR_STORAGE naming
 * the database.
 *
 * Config keys (the broker hands every "postgresql.*" and "postgres.*" key to the plugin; an
 * unknown one is KOFKA_ERR_INVALID_CONFIG):
 *   postgresql.lock.timeout.ms     0 .. 3600000 (default 5000): how long a write waits for the
 *                                  write lock (held by another writer of this process or of
 *                                  any host) before it gives up with KOFKA_ERR_BUSY; also how
 *                                  long a call keeps trying to reconnect to a server that went
 *                                  away, and to learn the fate of a commit whose answer was lost.
 *   postgresql.connect.timeout.ms  1 .. 3600000 (default 10000): how long opening the storage
 *                                  waits for the server.
 *   postgresql.pool.idle           0 .. 64 (default 4): reader connections kept open between reads.
 *
 * Durability is the server's: synchronous_commit (set it in the URI, e.g.
 * ?options=-csynchronous_commit%3Dremote_apply, or for the role or database) decides what an
 * acknowledged write survives — README.md, "PostgreSQL".
 */
#ifndef KOFKA_POSTGRESQL_H
#define KOFKA_POSTGRESQL_H

#include <stddef.h>

#include "kofka.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The plugin's entry point (include/kofka.h, "Plugins"): registers the storage schemes
 *  "postgresql" and "postgres". Called by Kofka when it loads the library; a second call (the
 *  same image loaded under another path) does nothing. */
kofka_err kofka_plugin_init(const char *const *config, char *errstr, size_t errstr_size);

/** The schema version this build writes and reads (meta.schema_version). */
#define KOFKA_POSTGRESQL_SCHEMA_VERSION 1

#ifdef __cplusplus
}
#endif
#endif /* KOFKA_POSTGRESQL_H */
