/*
 * libkofka_lmdb.so — Kofka's storage plugin on LMDB (storage string "lmdb:DIRECTORY").
 *
 * Loaded by Kofka itself: kofka_broker_open("lmdb:/data/x", ...) finds libkofka_lmdb.so beside
 * libkofka.so (or on the library path) and calls kofka_plugin_init, which registers the scheme
 * "lmdb". Written against include/kofka.h only (kofka_storage_ops); linked with -llmdb and
 * without -lkofka, so its kofka_* calls reach the Kofka that loaded it.
 *
 * Store: DIRECTORY holds LMDB's data.mdb and lock.mdb and kofka.lock (the writers' lock). Many
 * threads and processes may open it at once; a process keeps one LMDB environment per
 * directory, shared by every broker handle it opens there.
 *
 * Config keys (the broker's config array):
 *   lmdb.map.size          bytes the store may grow to (default 8 GiB; at least 1 MiB). A write
 *                          that would pass it fails with KOFKA_ERR_STORAGE naming the key.
 *                          Raising it later (on a reopen) is fine; every process adopts the
 *                          largest size any of them set.
 *   lmdb.busy.timeout.ms   how long a writer waits for another writer (any thread or process)
 *                          before giving up with KOFKA_ERR_BUSY (default 5000; 0 = no wait).
 *   lmdb.sync              full (default: a commit is on disk when it returns: survives power
 *                          loss), normal (MDB_NOMETASYNC: survives a process crash; a power
 *                          loss may undo the last commit) or off (MDB_NOSYNC: survives a
 *                          process crash; a power loss may lose recent commits or corrupt
 *                          the store). Per process and directory: the first open decides.
 *   lmdb.max.readers       LMDB reader slots (default 1024): read transactions open at once
 *                          across every process of the store.
 */
#ifndef KOFKA_LMDB_H
#define KOFKA_LMDB_H

#include <kofka.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Registers the storage scheme "lmdb" (kofka_storage_register). Called by Kofka when it loads
 *  the library; calling it again is harmless. KOFKA_ERR_UNSUPPORTED when the library was built
 *  without LMDB's headers (errstr says so). */
kofka_err kofka_plugin_init(const char *const *config, char *errstr, size_t errstr_size);

#ifdef __cplusplus
}
#endif
#endif /* KOFKA_LMDB_H */
