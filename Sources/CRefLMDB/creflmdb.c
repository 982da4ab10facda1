#define _GNU_SOURCE
#include "creflmdb.h"
#include <stdio.h>
#include <string.h>

#if defined(__has_include)
#if __has_include(<lmdb.h>)
#define HAVE_LMDB 1
#endif
#endif

#ifndef HAVE_LMDB
int creflmdb_available(void) { return 0; }
double creflmdb_produce(const char *dir, int64_t count, size_t size, int64_t batch, int sync, char *err, size_t err_size) {
    (void)dir; (void)count; (void)size; (void)batch; (void)sync;
    snprintf(err, err_size, "built without LMDB");
    return -1;
}
double creflmdb_consume(const char *dir, int64_t batch, int64_t *read, char *err, size_t err_size) {
    (void)dir; (void)batch; (void)read;
    snprintf(err, err_size, "built without LMDB");
    return -1;
}
#else
#include <lmdb.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

int creflmdb_available(void) { return 1; }

static volatile unsigned long long sink;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void be64(unsigned char *p, uint64_t v) { for (int i = 7; i >= 0; i--) { p[i] = (unsigned char)v; v >>= 8; } }

static int open_env(const char *dir, int sync, MDB_env **env, MDB_dbi *rec, MDB_dbi *state, char *err, size_t err_size) {
    mkdir(dir, 0775);
    unsigned flags = MDB_NOTLS | (sync == 1 ? MDB_NOMETASYNC : sync == 2 ? MDB_NOSYNC : 0);
    MDB_txn *t = NULL;
    int rc = mdb_env_create(env);
    if (!rc) rc = mdb_env_set_maxdbs(*env, 4);
    if (!rc) rc = mdb_env_set_mapsize(*env, (size_t)8 << 30);
    if (!rc) rc = mdb_env_open(*env, dir, flags, 0664);
    if (!rc) rc = mdb_txn_begin(*env, NULL, 0, &t);
    if (!rc) rc = mdb_dbi_open(t, "rec", MDB_CREATE, rec);
    if (!rc) rc = mdb_dbi_open(t, "state", MDB_CREATE, state);
    if (!rc) { rc = mdb_txn_commit(t); t = NULL; }
    if (t) mdb_txn_abort(t);
    if (rc) snprintf(err, err_size, "%s: %s", dir, mdb_strerror(rc));
    return rc;
}

double creflmdb_produce(const char *dir, int64_t count, size_t size, int64_t batch, int sync, char *err, size_t err_size) {
    MDB_env *env = NULL;
    MDB_dbi rec, state;
    if (open_env(dir, sync, &env, &rec, &state, err, err_size)) { if (env) mdb_env_close(env); return -1; }
    unsigned char *value = malloc(size ? size : 1);
    for (size_t i = 0; i < size; i++) value[i] = (unsigned char)('a' + i % 26);
    double t0 = now_s();
    int64_t next = 0, bytes = 0;
    int rc = 0;
    while (next < count && !rc) {
        MDB_txn *t;
        MDB_cursor *c;
        rc = mdb_txn_begin(env, NULL, 0, &t);
        if (rc) break;
        unsigned char sk[8];
        be64(sk, 0);
        MDB_val k = { 8, sk }, v;
        int64_t st[3] = { 0, next, bytes };
        rc = mdb_get(t, state, &k, &v);   /* as the plugin: read the state, append, write it */
        if (rc == 0 && v.mv_size == sizeof st) memcpy(st, v.mv_data, sizeof st);
        rc = mdb_cursor_open(t, rec, &c);
        int64_t end = next + batch < count ? next + batch : count;
        for (; next < end && !rc; next++) {
            unsigned char kb[8];
            be64(kb, (uint64_t)next);
            MDB_val rk = { 8, kb }, rv = { 28 + size, NULL };
            rc = mdb_cursor_put(c, &rk, &rv, MDB_APPEND | MDB_RESERVE);
            if (rc) break;
            unsigned char *p = rv.mv_data;
            int64_t txn = 0, ts = 1700000000000;
            int32_t lens[3] = { -1, (int32_t)size, -1 };
            memcpy(p, &txn, 8); memcpy(p + 8, &ts, 8); memcpy(p + 16, lens, 12);
            memcpy(p + 28, value, size);
            bytes += (int64_t)size;
        }
        mdb_cursor_close(c);
        st[1] = next; st[2] = bytes;
        MDB_val sv = { sizeof st, st };
        if (!rc) rc = mdb_put(t, state, &k, &sv, 0);
        if (!rc) rc = mdb_txn_commit(t); else mdb_txn_abort(t);
    }
    double secs = now_s() - t0;
    free(value);
    mdb_env_close(env);
    if (rc) { snprintf(err, err_size, "%s: %s", dir, mdb_strerror(rc)); return -1; }
    return secs;
}

double creflmdb_consume(const char *dir, int64_t batch, int64_t *read, char *err, size_t err_size) {
    MDB_env *env = NULL;
    MDB_dbi rec, state;
    if (open_env(dir, 0, &env, &rec, &state, err, err_size)) { if (env) mdb_env_close(env); return -1; }
    double t0 = now_s();
    int64_t n = 0, from = 0;
    unsigned long long sum = 0;
    unsigned char *copy = NULL;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        MDB_txn *t;
        MDB_cursor *c;
        rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &t);
        if (rc) break;
        rc = mdb_cursor_open(t, rec, &c);
        unsigned char kb[8];
        be64(kb, (uint64_t)from);
        MDB_val k = { 8, kb }, v;
        int64_t got = 0;
        for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && got < batch; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (v.mv_size > cap) { cap = v.mv_size * 2; copy = realloc(copy, cap); }
            memcpy(copy, v.mv_data, v.mv_size);   /* the value handed to the application */
            sum += copy[v.mv_size - 1];
            got++;
        }
        mdb_cursor_close(c);
        mdb_txn_abort(t);
        if (rc && rc != MDB_NOTFOUND) break;
        rc = 0;
        n += got;
        from += got;
        if (got < batch) break;
    }
    double secs = now_s() - t0;
    free(copy);
    mdb_env_close(env);
    if (rc) { snprintf(err, err_size, "%s: %s", dir, mdb_strerror(rc)); return -1; }
    sink = sum;   /* keeps the copies from being optimised away */
    *read = n;
    return secs;
}
#endif
