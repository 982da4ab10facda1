/*
 * A raw LMDB reference for `kofka-bench storage`: the same records written and read the way
 * libkofka_lmdb.so stores them (big-endian (pnum << 40 | offset) keys, a 28-byte head before
 * the value, one partition-state update per write transaction), with nothing of Kofka above.
 * What it reaches is the ceiling for the plugin on this machine.
 */
#ifndef CREFLMDB_H
#define CREFLMDB_H
#include <stddef.h>
#include <stdint.h>

/** 1 when built with LMDB, else 0 (every other call then returns -1). */
int creflmdb_available(void);

/** Writes `count` records with `size`-byte values into a fresh environment in directory `dir`
 *  (created), `batch` records per write transaction. sync: 0 full, 1 normal (MDB_NOMETASYNC),
 *  2 off (MDB_NOSYNC). Returns the seconds taken, or -1 with a message in err. */
double creflmdb_produce(const char *dir, int64_t count, size_t size, int64_t batch, int sync, char *err, size_t err_size);

/** Reads every record `creflmdb_produce` wrote in `dir`, `batch` per read transaction, copying
 *  each value out. Returns the seconds taken (and *read the records read), or -1. */
double creflmdb_consume(const char *dir, int64_t batch, int64_t *read, char *err, size_t err_size);

#endif
