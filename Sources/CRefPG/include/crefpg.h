/*
 * A raw PostgreSQL reference for `kofka-bench postgres`: the same records written and read
 * through libpq with nothing of Kofka above, in three ways:
 *
 *   CREFPG_ROWS     one row per record, rows(pnum, off, ts, key, value), a multi-row INSERT
 *                   per batch; read back by a range query on (pnum, off).
 *   CREFPG_BATCHES  what libkofka_postgresql.so writes: one batches row per batch (the records
 *                   packed as the plugin packs them) and the logs upsert, in the plugin's
 *                   statement; read back with the plugin's read query, the records unpacked.
 *   CREFPG_PLUGIN_TXN  CREFPG_BATCHES inside the plugin's whole transaction, in libpq's
 *                   pipeline mode as the plugin sends it: a write is [BEGIN, lock_timeout,
 *                   advisory lock, log state] then [append, pg_notify, COMMIT] (two round
 *                   trips); a read is [BEGIN REPEATABLE READ, log state] then [read], its
 *                   ROLLBACK sent with the next read's BEGIN. Kofka's own work is all it leaves out.
 *
 * ROWS and BATCHES run each write as one statement in its own transaction (one round trip),
 * each read as one statement. The conninfo decides synchronous_commit (?options=-csynchronous_commit%3Doff), as it does for Kofka.
 */
#ifndef CREFPG_H
#define CREFPG_H
#include <stddef.h>
#include <stdint.h>

enum { CREFPG_ROWS = 0, CREFPG_BATCHES = 1, CREFPG_PLUGIN_TXN = 2 };

/** Creates schema `schema` (which must not exist) with the table(s) of `layout`, then appends
 *  `count` records with `size`-byte values to partition 0 of it, `batch` records per statement,
 *  offsets from 0. Returns the seconds the appends took, or -1 with a message in err. */
double crefpg_produce(const char *conninfo, const char *schema, int layout, int64_t count, size_t size, int64_t batch,
                      char *err, size_t err_size);

/** Reads the records `crefpg_produce` wrote into `schema`, offsets 0 .. count-1, `chunk`
 *  offsets per query, copying each value out. Returns the seconds taken (and *read the records
 *  read), or -1 with a message in err. */
double crefpg_consume(const char *conninfo, const char *schema, int layout, int64_t count, int64_t chunk, int64_t *read,
                      char *err, size_t err_size);

#endif
