/*
 * Kofka's storage plugin on LMDB: the kofka_storage_ops vtable (include/kofka.h) over one LMDB
 * environment per directory. See include/kofka_lmdb.h for the store and its config keys.
 *
 * Layout of the environment (four databases):
 *   "kv"     the key/value map. LMDB keys are 1..511 bytes, Kofka's are 0..unbounded, so a key
 *            K is stored as 'k' K when shorter than LONG_PREFIX bytes; longer keys are kept in
 *            a *bucket* stored under 'k' + their first LONG_PREFIX bytes, whose value holds
 *            every (key, value) with that prefix, sorted. A bucket sorts where its keys do
 *            (just after every shorter key it begins with), so a cursor walk is byte order.
 *   "rec"    records: key = big-endian (pnum << 40 | offset) — sorted by (partition, offset) —
 *            value = struct rec_head then key, value and headers bytes.
 *   "state"  per partition: key = big-endian pnum, value = struct log_state.
 *   main     "kofka.format" = FORMAT: marks the environment as Kofka's.
 *
 * Locking: LMDB has one writer per environment, across processes, but mdb_txn_begin waits for
 * it with no timeout. A writer here first takes this process's writer mutex (timed), then an
 * fcntl lock on DIRECTORY/kofka.lock (polled until lmdb.busy.timeout.ms), and only then LMDB's
 * own lock, which is therefore free unless a program other than Kofka writes. Both locks die
 * with a process killed by SIGKILL; LMDB's mutex is robust. Readers use MDB_NOTLS snapshots.
 *
 * Change token: the environment's last committed transaction id (mdb_env_info's
 * me_last_txnid), which every process sees in the shared meta pages. wait_for_change sleeps on
 * the instance's condition variable (this instance's commits and wake_all signal it) and polls
 * the token every millisecond for other handles' and processes' commits.
 */
#define _GNU_SOURCE
#include "kofka_lmdb.h"

#include <stdio.h>
#include <string.h>

#if defined(__has_include)
#if __has_include(<lmdb.h>)
#define KOFKA_HAVE_LMDB 1
#endif
#endif

#ifndef KOFKA_HAVE_LMDB

kofka_err kofka_plugin_init(const char *const *config, char *errstr, size_t errstr_size) {
    (void)config;
    if (errstr && errstr_size)
        snprintf(errstr, errstr_size, "libkofka_lmdb.so was built without LMDB (install liblmdb-dev and rebuild)");
    return KOFKA_ERR_UNSUPPORTED;
}

#else

#include <lmdb.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FORMAT            "1"                      /* the layout above */
#define LONG_PREFIX       480                      /* kv keys this long or longer live in buckets */
#define OFFSET_BITS       40
#define DEFAULT_MAP_SIZE  ((size_t)8 << 30)        /* lmdb.map.size */
#define DEFAULT_BUSY_MS   5000                     /* lmdb.busy.timeout.ms */
#define DEFAULT_READERS   1024                     /* lmdb.max.readers */
#define POLL_NS           1000000ull               /* wait_for_change polls the token this often */
#define READER_CHECK_NS   2000000000ull            /* writers clear dead processes' reader slots this often */

/* ---- the structures ------------------------------------------------------------------------ */

/** One LMDB environment (a directory), shared by every instance this process opens on it. */
typedef struct lstore {
    struct lstore  *next;           /* the process's list of open stores (stores_lock) */
    dev_t           dev;            /* identity of the directory: one environment per directory */
    ino_t           ino;
    char           *path;           /* the directory, as first opened (for messages) */
    MDB_env        *env;
    MDB_dbi         kv, rec, state; /* the databases */
    int             lockfd;         /* DIRECTORY/kofka.lock: the writers' fcntl lock across processes */
    pthread_mutex_t wlock;          /* this process's writers, one at a time */
    pthread_rwlock_t resize;        /* shared by every open txn; exclusive to change the map size */
    atomic_int      refs;           /* instances open on it + transactions running */
    size_t          map_size;       /* bytes mapped now */
    atomic_ullong   reader_check_ns;/* when a writer last cleared stale reader slots (monotonic ns) */
} lstore;

/** One kofka_storage_ops instance (a broker handle's storage). */
typedef struct linst {
    pthread_mutex_t mu;             /* guards everything below */
    pthread_cond_t  cv;             /* signalled by this instance's commits, wake_all and close */
    lstore         *store;          /* NULL once closed */
    uint64_t        wakes;          /* wake_all calls */
    uint64_t        last_token;     /* the change token at close */
    int64_t         busy_ms;        /* lmdb.busy.timeout.ms */
} linst;

/** A transaction. */
typedef struct ltxn {
    linst      *inst;
    lstore     *store;
    MDB_txn    *txn;
    MDB_cursor *rc;                 /* on "rec", opened when first needed */
    int         writable;
} ltxn;

/** A partition's state (value of "state"). */
struct log_state {
    int64_t start;                  /* log start offset */
    int64_t next;                   /* high watermark: the next offset */
    int64_t bytes;                  /* key + value + headers bytes of the records held */
};

/** What precedes a record's bytes in "rec". */
struct rec_head {
    int64_t txn;                    /* writing transaction, 0 = none */
    int64_t ts;                     /* timestamp, ms */
    int32_t klen, vlen, hlen;       /* -1 = none */
};
#define REC_HEAD 28                 /* bytes of struct rec_head as stored (no padding) */

static pthread_mutex_t stores_lock = PTHREAD_MUTEX_INITIALIZER;
static lstore *stores;

/* ---- small helpers ------------------------------------------------------------------------- */

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/** Says what failed (kofka_storage_set_error) and returns code. */
__attribute__((format(printf, 2, 3)))
static kofka_err fail(kofka_err code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kofka_storage_set_error(msg);
    return code;
}

/** An LMDB error of `op` on store s, as KOFKA_ERR_STORAGE with the path and mdb_strerror. */
static kofka_err lmdb_fail(const lstore *s, const char *op, int rc) {
    if (rc == MDB_MAP_FULL)
        return fail(KOFKA_ERR_STORAGE, "lmdb storage '%s' is full: %s: %s (map size %zu bytes; raise the config key lmdb.map.size)",
                    s->path, op, mdb_strerror(rc), s->map_size);
    if (rc == MDB_READERS_FULL)
        return fail(KOFKA_ERR_STORAGE, "lmdb storage '%s': %s: %s (raise the config key lmdb.max.readers)", s->path, op, mdb_strerror(rc));
    if (rc == MDB_TXN_FULL)
        return fail(KOFKA_ERR_STORAGE, "lmdb storage '%s': %s: %s (one write changed too much at once)", s->path, op, mdb_strerror(rc));
    return fail(KOFKA_ERR_STORAGE, "lmdb storage '%s': %s: %s", s->path, op, mdb_strerror(rc));
}

static void put_be64(unsigned char *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) { p[i] = (unsigned char)v; v >>= 8; }
}

static uint64_t get_be64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

/** Byte-order comparison of two byte strings (a shorter prefix first). */
static int bytes_cmp(const void *a, size_t alen, const void *b, size_t blen) {
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c) return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* ---- stores: one environment per directory per process -------------------------------------- */

static void store_free(lstore *s) {
    mdb_env_close(s->env);
    if (s->lockfd >= 0) close(s->lockfd);
    pthread_mutex_destroy(&s->wlock);
    pthread_rwlock_destroy(&s->resize);
    free(s->path);
    free(s);
}

/* Freed under stores_lock: a process must never have two environments (or two kofka.lock
 * descriptors) on one directory at once — closing either would drop the other's fcntl locks. */
static void store_release(lstore *s) {
    if (atomic_fetch_sub(&s->refs, 1) != 1) return;
    pthread_mutex_lock(&stores_lock);
    if (atomic_load(&s->refs) == 0) {
        for (lstore **p = &stores; *p; p = &(*p)->next) {
            if (*p == s) {
                *p = s->next;
                store_free(s);
                break;
            }
        }
    }
    pthread_mutex_unlock(&stores_lock);
}

/** Takes the cross-process writers' lock, polling until deadline_ns; 0, or an errno (EAGAIN: busy). */
static int file_lock(int fd, uint64_t deadline_ns) {
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
    useconds_t pause = 50;
    for (;;) {
        if (fcntl(fd, F_SETLK, &fl) == 0) return 0;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EACCES) return errno;
        uint64_t now = mono_ns();
        if (now >= deadline_ns) return EAGAIN;
        uint64_t left_us = (deadline_ns - now) / 1000;
        usleep(pause < left_us ? pause : (useconds_t)(left_us ? left_us : 1));
        if (pause < 2000) pause *= 2;
    }
}

static void file_unlock(int fd) {
    struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
    while (fcntl(fd, F_SETLK, &fl) != 0 && errno == EINTR) {}
}

/** Takes the writers' locks of s (this process's, then every process's), or says why not. */
static kofka_err writer_lock(lstore *s, int64_t busy_ms) {
    uint64_t deadline = mono_ns() + (uint64_t)busy_ms * 1000000ull;
    int rc;
    if (busy_ms <= 0) {
        rc = pthread_mutex_trylock(&s->wlock);
    } else {
        struct timespec abs;
        clock_gettime(CLOCK_REALTIME, &abs);
        abs.tv_sec += busy_ms / 1000;
        abs.tv_nsec += (busy_ms % 1000) * 1000000L;
        if (abs.tv_nsec >= 1000000000L) { abs.tv_sec++; abs.tv_nsec -= 1000000000L; }
        rc = pthread_mutex_timedlock(&s->wlock, &abs);
    }
    if (rc == ETIMEDOUT || rc == EBUSY)
        return fail(KOFKA_ERR_BUSY, "lmdb storage '%s' is locked by another writer in this process: gave up after %lld ms (lmdb.busy.timeout.ms)",
                    s->path, (long long)busy_ms);
    if (rc) return fail(KOFKA_ERR_STORAGE, "lmdb storage '%s': writer mutex: %s", s->path, strerror(rc));
    rc = file_lock(s->lockfd, deadline);
    if (rc) {
        pthread_mutex_unlock(&s->wlock);
        if (rc == EAGAIN)
            return fail(KOFKA_ERR_BUSY, "lmdb storage '%s' is locked by another writer (another process): gave up after %lld ms (lmdb.busy.timeout.ms)",
                        s->path, (long long)busy_ms);
        return fail(KOFKA_ERR_STORAGE, "lmdb storage '%s': locking %s/kofka.lock: %s", s->path, s->path, strerror(rc));
    }
    return KOFKA_OK;
}

static void writer_unlock(lstore *s) {
    file_unlock(s->lockfd);
    pthread_mutex_unlock(&s->wlock);
}

/** Begins an LMDB transaction on s, adopting a map size another process grew. */
static int begin_txn(lstore *s, unsigned flags, MDB_txn **out) {
    pthread_rwlock_rdlock(&s->resize);
    int rc = mdb_txn_begin(s->env, NULL, flags, out);
    for (int tries = 0; rc == MDB_MAP_RESIZED && tries < 3; tries++) {
        pthread_rwlock_unlock(&s->resize);
        pthread_rwlock_wrlock(&s->resize);
        rc = mdb_env_set_mapsize(s->env, 0);
        if (rc == 0) {
            MDB_envinfo info;
            if (mdb_env_info(s->env, &info) == 0) s->map_size = info.me_mapsize;
        }
        pthread_rwlock_unlock(&s->resize);
        pthread_rwlock_rdlock(&s->resize);
        if (rc == 0) rc = mdb_txn_begin(s->env, NULL, flags, out);
    }
    if (rc) pthread_rwlock_unlock(&s->resize);
    return rc;
}

static void end_txn(lstore *s) { pthread_rwlock_unlock(&s->resize); }

/*
 * Opens the databases in txn and checks the format mark. create = 0: MDB_NOTFOUND when the store
 * is new (no mark, or a database missing); create = 1: marks it and creates them. A foreign or
 * newer environment: EINVAL with errstr written.
 */
static int open_databases(lstore *s, MDB_txn *txn, int create, const char **op, char *errstr, size_t errstr_size) {
    MDB_dbi main_db;
    MDB_val k = { strlen("kofka.format"), (void *)"kofka.format" }, v;
    *op = "open the main database";
    int rc = mdb_dbi_open(txn, NULL, 0, &main_db);
    if (rc) return rc;
    *op = "read the format mark";
    rc = mdb_get(txn, main_db, &k, &v);
    if (rc == 0 && (v.mv_size != strlen(FORMAT) || memcmp(v.mv_data, FORMAT, v.mv_size) != 0)) {
        snprintf(errstr, errstr_size, "lmdb storage '%s': written in Kofka LMDB format '%.*s', this plugin reads format '%s'",
                 s->path, (int)(v.mv_size < 32 ? v.mv_size : 32), (const char *)v.mv_data, FORMAT);
        return EINVAL;
    }
    if (rc == MDB_NOTFOUND) {
        MDB_stat st;
        if (mdb_stat(txn, main_db, &st) == 0 && st.ms_entries > 0) {
            snprintf(errstr, errstr_size, "lmdb storage '%s': the LMDB environment there is not a Kofka store (no kofka.format mark)", s->path);
            return EINVAL;
        }
        if (!create) return MDB_NOTFOUND;
        v.mv_size = strlen(FORMAT);
        v.mv_data = (void *)FORMAT;
        *op = "write the format mark";
        rc = mdb_put(txn, main_db, &k, &v, 0);
    }
    if (rc) return rc;
    unsigned flags = create ? MDB_CREATE : 0;
    *op = "open database kv";
    if ((rc = mdb_dbi_open(txn, "kv", flags, &s->kv))) return rc;
    *op = "open database rec";
    if ((rc = mdb_dbi_open(txn, "rec", flags, &s->rec))) return rc;
    *op = "open database state";
    return mdb_dbi_open(txn, "state", flags, &s->state);
}

/** Creates the environment of directory `path` (dev/ino identify it); on failure writes errstr. */
static kofka_err store_create(const char *path, dev_t dev, ino_t ino, size_t map_size, unsigned readers, unsigned env_flags,
                              int64_t busy_ms, lstore **out, char *errstr, size_t errstr_size) {
    lstore *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        snprintf(errstr, errstr_size, "out of memory");
        return KOFKA_ERR_STORAGE;
    }
    s->dev = dev;
    s->ino = ino;
    s->lockfd = -1;
    s->map_size = map_size;
    atomic_init(&s->refs, 1);
    atomic_init(&s->reader_check_ns, mono_ns());
    pthread_mutex_init(&s->wlock, NULL);
    pthread_rwlock_init(&s->resize, NULL);
    const char *op = "mdb_env_create";
    int rc = mdb_env_create(&s->env);
    if (rc == 0) { op = "mdb_env_set_maxdbs"; rc = mdb_env_set_maxdbs(s->env, 4); }
    if (rc == 0) { op = "mdb_env_set_mapsize"; rc = mdb_env_set_mapsize(s->env, map_size); }
    if (rc == 0) { op = "mdb_env_set_maxreaders"; rc = mdb_env_set_maxreaders(s->env, readers); }
    if (rc == 0) { op = "mdb_env_open"; rc = mdb_env_open(s->env, path, MDB_NOTLS | env_flags, 0664); }
    if (rc) {
        snprintf(errstr, errstr_size, "lmdb storage '%s': %s: %s", path, op, mdb_strerror(rc));
        if (s->env) mdb_env_close(s->env);
        s->env = NULL;
        pthread_mutex_destroy(&s->wlock);
        pthread_rwlock_destroy(&s->resize);
        free(s->path);
        free(s);
        return KOFKA_ERR_STORAGE;
    }
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) == 0) s->map_size = info.me_mapsize;
    char lockpath[PATH_MAX];
    snprintf(lockpath, sizeof lockpath, "%s/kofka.lock", path);
    s->lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0664);
    if (s->lockfd < 0) {
        snprintf(errstr, errstr_size, "lmdb storage '%s': cannot open %s: %s", path, lockpath, strerror(errno));
        store_free(s);
        return KOFKA_ERR_STORAGE;
    }
    int dead = 0;
    mdb_reader_check(s->env, &dead);

    /* A Kofka store opens in a read transaction (a writer elsewhere does not delay it); a new
     * one is marked and its databases created in a write transaction. */
    MDB_txn *txn = NULL;
    op = "begin the opening transaction";
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc == 0) rc = open_databases(s, txn, 0, &op, errstr, errstr_size);
    if (rc == 0) { op = "end the opening transaction"; rc = mdb_txn_commit(txn); txn = NULL; }
    if (txn) mdb_txn_abort(txn);
    txn = NULL;
    if (rc == MDB_NOTFOUND) {
        kofka_err err = writer_lock(s, busy_ms);
        if (err != KOFKA_OK) {
            snprintf(errstr, errstr_size, "lmdb storage '%s': another writer held the store while creating it (lmdb.busy.timeout.ms %lld)", path, (long long)busy_ms);
            store_free(s);
            return err;
        }
        op = "begin the creating transaction";
        rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        if (rc == 0) rc = open_databases(s, txn, 1, &op, errstr, errstr_size);
        if (rc == 0) { op = "commit the creating transaction"; rc = mdb_txn_commit(txn); txn = NULL; }
        if (txn) mdb_txn_abort(txn);
        writer_unlock(s);
    }
    if (rc) {
        if (rc != EINVAL || !errstr[0]) snprintf(errstr, errstr_size, "lmdb storage '%s': %s: %s", path, op, mdb_strerror(rc));
        store_free(s);
        return KOFKA_ERR_STORAGE;
    }
    *out = s;
    return KOFKA_OK;
}

/* ---- config -------------------------------------------------------------------------------- */

struct lconfig {
    size_t   map_size;
    int64_t  busy_ms;
    unsigned env_flags;
    unsigned readers;
};

static int parse_int(const char *v, long long lo, long long hi, long long *out) {
    if (!v || !*v) return 0;
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || *end || n < lo || n > hi) return 0;
    *out = n;
    return 1;
}

static kofka_err parse_config(const char *const *config, struct lconfig *c, char *errstr, size_t errstr_size) {
    c->map_size = DEFAULT_MAP_SIZE;
    c->busy_ms = DEFAULT_BUSY_MS;
    c->env_flags = 0;
    c->readers = DEFAULT_READERS;
    for (size_t i = 0; config && config[i] && config[i + 1]; i += 2) {
        const char *k = config[i], *v = config[i + 1];
        if (strncmp(k, "lmdb.", 5) != 0) continue;
        long long n;
        if (strcmp(k, "lmdb.map.size") == 0) {
            if (!parse_int(v, 1 << 20, (long long)1 << 46, &n)) goto bad;
            c->map_size = (size_t)n;
        } else if (strcmp(k, "lmdb.busy.timeout.ms") == 0) {
            if (!parse_int(v, 0, 3600000, &n)) goto bad;
            c->busy_ms = n;
        } else if (strcmp(k, "lmdb.sync") == 0) {
            if (strcmp(v, "full") == 0) c->env_flags = 0;
            else if (strcmp(v, "normal") == 0) c->env_flags = MDB_NOMETASYNC;
            else if (strcmp(v, "off") == 0) c->env_flags = MDB_NOSYNC;
            else goto bad;
        } else if (strcmp(k, "lmdb.max.readers") == 0) {
            if (!parse_int(v, 1, 1 << 20, &n)) goto bad;
            c->readers = (unsigned)n;
        } else {
            snprintf(errstr, errstr_size, "unknown config key '%s': the lmdb storage knows lmdb.map.size, lmdb.busy.timeout.ms, lmdb.sync, lmdb.max.readers", k);
            return KOFKA_ERR_INVALID_CONFIG;
        }
        continue;
    bad:
        snprintf(errstr, errstr_size, "invalid value '%s' for config key '%s': expected %s", v, k,
                 strcmp(k, "lmdb.map.size") == 0 ? "bytes, 1048576 to 2^46"
                 : strcmp(k, "lmdb.busy.timeout.ms") == 0 ? "milliseconds, 0 to 3600000"
                 : strcmp(k, "lmdb.sync") == 0 ? "full, normal or off" : "1 to 1048576");
        return KOFKA_ERR_INVALID_CONFIG;
    }
    return KOFKA_OK;
}

/* ---- open / close -------------------------------------------------------------------------- */

static kofka_err op_open(void *opaque, const char *location, const char *const *config, void **instance,
                         char *errstr, size_t errstr_size) {
    (void)opaque;
    if (!location || !*location) {
        snprintf(errstr, errstr_size, "storage 'lmdb:' needs a directory, e.g. 'lmdb:/var/lib/app/log'");
        return KOFKA_ERR_INVALID_ARG;
    }
    struct lconfig cfg;
    kofka_err err = parse_config(config, &cfg, errstr, errstr_size);
    if (err != KOFKA_OK) return err;
    if (mkdir(location, 0775) != 0 && errno != EEXIST) {
        snprintf(errstr, errstr_size, "lmdb storage '%s': cannot create the directory: %s", location, strerror(errno));
        return KOFKA_ERR_STORAGE;
    }
    struct stat st;
    if (stat(location, &st) != 0) {
        snprintf(errstr, errstr_size, "lmdb storage '%s': %s", location, strerror(errno));
        return KOFKA_ERR_STORAGE;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(errstr, errstr_size, "lmdb storage '%s': not a directory (an lmdb store is a directory holding data.mdb)", location);
        return KOFKA_ERR_STORAGE;
    }
    linst *inst = calloc(1, sizeof *inst);
    if (!inst) {
        snprintf(errstr, errstr_size, "out of memory");
        return KOFKA_ERR_STORAGE;
    }
    inst->busy_ms = cfg.busy_ms;

    /* Looked up and, if new, created under stores_lock (see store_release). Creating may wait
     * up to lmdb.busy.timeout.ms for another process's writer; other opens wait meanwhile. */
    pthread_mutex_lock(&stores_lock);
    lstore *s = stores;
    while (s && !(s->dev == st.st_dev && s->ino == st.st_ino)) s = s->next;
    if (s) {
        atomic_fetch_add(&s->refs, 1);
    } else {
        err = store_create(location, st.st_dev, st.st_ino, cfg.map_size, cfg.readers, cfg.env_flags, cfg.busy_ms, &s, errstr, errstr_size);
        if (err != KOFKA_OK) {
            pthread_mutex_unlock(&stores_lock);
            free(inst);
            return err;
        }
        s->next = stores;
        stores = s;
    }
    pthread_mutex_unlock(&stores_lock);
    if (cfg.map_size > s->map_size) {
        /* A larger lmdb.map.size than the environment has: grow it (no transaction may run). */
        pthread_rwlock_wrlock(&s->resize);
        if (cfg.map_size > s->map_size && mdb_env_set_mapsize(s->env, cfg.map_size) == 0) s->map_size = cfg.map_size;
        pthread_rwlock_unlock(&s->resize);
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&inst->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&inst->mu, NULL);
    inst->store = s;
    *instance = inst;
    return KOFKA_OK;
}

static uint64_t token_of(lstore *s) {
    MDB_envinfo info;
    return mdb_env_info(s->env, &info) == 0 ? (uint64_t)info.me_last_txnid : 0;
}

/*
 * The instance itself is not freed: Kofka (CStorageBackend, as of this writing) may still call
 * change_token, wait_for_change and wake_all on it after close, which the header forbids. Once
 * it stops, close can free it. What stays is ~150 bytes per broker handle ever closed.
 */
static void op_close(void *instance) {
    linst *inst = instance;
    if (!inst) return;
    pthread_mutex_lock(&inst->mu);
    lstore *s = inst->store;
    if (s) inst->last_token = token_of(s);
    inst->store = NULL;
    pthread_cond_broadcast(&inst->cv);
    pthread_mutex_unlock(&inst->mu);
    if (s) store_release(s);
}

/* ---- transactions -------------------------------------------------------------------------- */

static kofka_err op_begin(void *instance, int writable, void **out) {
    linst *inst = instance;
    pthread_mutex_lock(&inst->mu);
    lstore *s = inst->store;
    if (s) atomic_fetch_add(&s->refs, 1);
    int64_t busy_ms = inst->busy_ms;
    pthread_mutex_unlock(&inst->mu);
    if (!s) return fail(KOFKA_ERR_CLOSED, "the lmdb storage is closed");
    ltxn *t = calloc(1, sizeof *t);
    if (!t) {
        store_release(s);
        return fail(KOFKA_ERR_STORAGE, "out of memory");
    }
    t->inst = inst;
    t->store = s;
    t->writable = writable != 0;
    if (t->writable) {
        kofka_err err = writer_lock(s, busy_ms);
        if (err != KOFKA_OK) {
            free(t);
            store_release(s);
            return err;
        }
        uint64_t now = mono_ns();
        if (now - atomic_load(&s->reader_check_ns) > READER_CHECK_NS) {
            int dead = 0;
            atomic_store(&s->reader_check_ns, now);
            mdb_reader_check(s->env, &dead);   /* slots of processes that died mid-read */
        }
    }
    int rc = begin_txn(s, t->writable ? 0 : MDB_RDONLY, &t->txn);
    if (rc) {
        kofka_err err = lmdb_fail(s, t->writable ? "begin a write transaction" : "begin a read transaction", rc);
        if (t->writable) writer_unlock(s);
        free(t);
        store_release(s);
        return err;
    }
    *out = t;
    return KOFKA_OK;
}

/** Ends t after its LMDB transaction ended: locks, reference, memory. */
static void finish(ltxn *t, int committed) {
    lstore *s = t->store;
    end_txn(s);
    if (t->writable) writer_unlock(s);
    if (committed) {
        pthread_mutex_lock(&t->inst->mu);
        pthread_cond_broadcast(&t->inst->cv);
        pthread_mutex_unlock(&t->inst->mu);
    }
    store_release(s);
    free(t);
}

static kofka_err op_commit(void *txn) {
    ltxn *t = txn;
    if (t->rc) mdb_cursor_close(t->rc);
    t->rc = NULL;
    if (!t->writable) {
        mdb_txn_abort(t->txn);
        finish(t, 0);
        return KOFKA_OK;
    }
    int rc = mdb_txn_commit(t->txn);   /* ends the transaction, committed or not */
    kofka_err err = rc ? lmdb_fail(t->store, "commit", rc) : KOFKA_OK;
    finish(t, rc == 0);
    return err;
}

static void op_rollback(void *txn) {
    ltxn *t = txn;
    if (!t) return;
    if (t->rc) mdb_cursor_close(t->rc);
    mdb_txn_abort(t->txn);
    finish(t, 0);
}

static kofka_err need_write(ltxn *t, const char *op) {
    return t->writable ? KOFKA_OK : fail(KOFKA_ERR_INVALID_ARG, "lmdb storage '%s': %s inside a read transaction", t->store->path, op);
}

/* ---- the key/value map --------------------------------------------------------------------- */

/*
 * A bucket (the value under 'k' + a LONG_PREFIX-byte prefix) is a sequence of entries sorted by
 * key: uint32 key length, uint32 value length, key bytes, value bytes (native byte order).
 */
typedef struct bucket_entry {
    const unsigned char *key; size_t key_len;
    const unsigned char *value; size_t value_len;
} bucket_entry;

/** Reads the entry at *pos of bucket (b, len); 0 at the end or on a malformed bucket. */
static int bucket_next(const unsigned char *b, size_t len, size_t *pos, bucket_entry *e) {
    if (*pos + 8 > len) return 0;
    uint32_t kl, vl;
    memcpy(&kl, b + *pos, 4);
    memcpy(&vl, b + *pos + 4, 4);
    if ((size_t)kl + vl > len - *pos - 8) return 0;
    e->key = b + *pos + 8;
    e->key_len = kl;
    e->value = e->key + kl;
    e->value_len = vl;
    *pos += 8 + (size_t)kl + vl;
    return 1;
}

/** Writes entry e at p; returns the bytes written. */
static size_t bucket_write(unsigned char *p, const bucket_entry *e) {
    uint32_t kl = (uint32_t)e->key_len, vl = (uint32_t)e->value_len;
    memcpy(p, &kl, 4);
    memcpy(p + 4, &vl, 4);
    if (kl) memcpy(p + 8, e->key, kl);
    if (vl) memcpy(p + 8 + kl, e->value, vl);
    return 8 + (size_t)kl + vl;
}

/** The LMDB key of kv key (key, len): 'k' + the key, or 'k' + its bucket prefix. */
static MDB_val kv_key(unsigned char *buf, const char *key, size_t len, int *long_key) {
    *long_key = len >= LONG_PREFIX;
    size_t n = *long_key ? LONG_PREFIX : len;
    buf[0] = 'k';
    if (n) memcpy(buf + 1, key, n);
    return (MDB_val){ n + 1, buf };
}

static kofka_err op_get(void *txn, const char *key, size_t key_len, const void **value, size_t *value_len) {
    ltxn *t = txn;
    unsigned char kb[LONG_PREFIX + 1];
    int long_key;
    MDB_val k = kv_key(kb, key, key_len, &long_key), v;
    *value = NULL;
    *value_len = 0;
    int rc = mdb_get(t->txn, t->store->kv, &k, &v);
    if (rc == MDB_NOTFOUND) return KOFKA_OK;
    if (rc) return lmdb_fail(t->store, "get", rc);
    if (!long_key) {
        *value = v.mv_size ? v.mv_data : (const void *)"";
        *value_len = v.mv_size;
        return KOFKA_OK;
    }
    size_t pos = 0;
    bucket_entry e;
    while (bucket_next(v.mv_data, v.mv_size, &pos, &e)) {
        int c = bytes_cmp(e.key, e.key_len, key, key_len);
        if (c == 0) {
            *value = e.value_len ? (const void *)e.value : (const void *)"";
            *value_len = e.value_len;
            return KOFKA_OK;
        }
        if (c > 0) break;
    }
    return KOFKA_OK;
}

/** Rewrites the bucket of a long key with (key → value) put, or removed when value is NULL. */
static kofka_err bucket_update(ltxn *t, MDB_val *k, const char *key, size_t key_len, const void *value, size_t value_len) {
    MDB_val old = { 0, NULL };
    int rc = mdb_get(t->txn, t->store->kv, k, &old);
    if (rc && rc != MDB_NOTFOUND) return lmdb_fail(t->store, "get a long key's bucket", rc);
    if (rc == MDB_NOTFOUND) old.mv_size = 0;
    if (value_len > UINT32_MAX || key_len > UINT32_MAX)
        return fail(KOFKA_ERR_STORAGE, "lmdb storage '%s': a key/value entry over 4 GiB", t->store->path);
    size_t cap = old.mv_size + (value ? 8 + key_len + value_len : 0);
    unsigned char *out = malloc(cap ? cap : 1);
    if (!out) return fail(KOFKA_ERR_STORAGE, "out of memory");
    size_t pos = 0, n = 0, entries = 0;
    int placed = 0;
    bucket_entry e, mine = { (const unsigned char *)key, key_len, value, value_len };
    while (bucket_next(old.mv_data, old.mv_size, &pos, &e)) {
        int c = bytes_cmp(e.key, e.key_len, key, key_len);
        if (c >= 0 && !placed) {
            placed = 1;
            if (value) { n += bucket_write(out + n, &mine); entries++; }
            if (c == 0) continue;   /* replaced or removed */
        }
        n += bucket_write(out + n, &e);
        entries++;
    }
    if (!placed && value) { n += bucket_write(out + n, &mine); entries++; }
    if (entries == 0) {
        free(out);
        rc = mdb_del(t->txn, t->store->kv, k, NULL);
        return rc && rc != MDB_NOTFOUND ? lmdb_fail(t->store, "delete a long key's bucket", rc) : KOFKA_OK;
    }
    MDB_val v = { n, out };
    rc = mdb_put(t->txn, t->store->kv, k, &v, 0);
    free(out);
    return rc ? lmdb_fail(t->store, "put a long key's bucket", rc) : KOFKA_OK;
}

static kofka_err op_put(void *txn, const char *key, size_t key_len, const void *value, size_t value_len) {
    ltxn *t = txn;
    kofka_err err = need_write(t, "put");
    if (err != KOFKA_OK) return err;
    unsigned char kb[LONG_PREFIX + 1];
    int long_key;
    MDB_val k = kv_key(kb, key, key_len, &long_key);
    if (long_key) return bucket_update(t, &k, key, key_len, value ? value : "", value_len);
    MDB_val v = { value_len, value_len ? (void *)value : (void *)"" };
    int rc = mdb_put(t->txn, t->store->kv, &k, &v, 0);
    return rc ? lmdb_fail(t->store, "put", rc) : KOFKA_OK;
}

static kofka_err op_del(void *txn, const char *key, size_t key_len) {
    ltxn *t = txn;
    kofka_err err = need_write(t, "delete");
    if (err != KOFKA_OK) return err;
    unsigned char kb[LONG_PREFIX + 1];
    int long_key;
    MDB_val k = kv_key(kb, key, key_len, &long_key);
    if (long_key) return bucket_update(t, &k, key, key_len, NULL, 0);
    int rc = mdb_del(t->txn, t->store->kv, &k, NULL);
    return rc && rc != MDB_NOTFOUND ? lmdb_fail(t->store, "delete", rc) : KOFKA_OK;
}

static kofka_err op_scan(void *txn, const char *lower, size_t lower_len, const char *upper, size_t upper_len,
                         kofka_storage_visit_kv visit, void *ctx) {
    ltxn *t = txn;
    if (bytes_cmp(lower, lower_len, upper, upper_len) >= 0) return KOFKA_OK;
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, t->store->kv, &c);
    if (rc) return lmdb_fail(t->store, "open a cursor", rc);
    unsigned char kb[LONG_PREFIX + 1];
    int long_key;
    MDB_val k = kv_key(kb, lower, lower_len, &long_key), v;
    kofka_err err = KOFKA_OK;
    int stop = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && !stop; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        const char *key = (const char *)k.mv_data + 1;
        size_t klen = k.mv_size - 1;
        if (klen < LONG_PREFIX) {
            if (bytes_cmp(key, klen, upper, upper_len) >= 0) break;
            if (bytes_cmp(key, klen, lower, lower_len) < 0) continue;
            stop = visit(ctx, key, klen, v.mv_size ? v.mv_data : "", v.mv_size) != 0;
            continue;
        }
        if (bytes_cmp(key, klen, upper, upper_len) >= 0) break;   /* every key of the bucket is >= its prefix */
        size_t pos = 0;
        bucket_entry e;
        while (!stop && bucket_next(v.mv_data, v.mv_size, &pos, &e)) {
            if (bytes_cmp(e.key, e.key_len, upper, upper_len) >= 0) { stop = 1; break; }
            if (bytes_cmp(e.key, e.key_len, lower, lower_len) < 0) continue;
            stop = visit(ctx, (const char *)e.key, e.key_len, e.value_len ? (const void *)e.value : "", e.value_len) != 0;
        }
    }
    if (rc && rc != MDB_NOTFOUND) err = lmdb_fail(t->store, "scan", rc);
    mdb_cursor_close(c);
    return err;
}

/* ---- partition logs ------------------------------------------------------------------------ */

static MDB_val rec_key(unsigned char *buf, int64_t pnum, int64_t offset) {
    put_be64(buf, ((uint64_t)pnum << OFFSET_BITS) | (uint64_t)offset);
    return (MDB_val){ 8, buf };
}

static kofka_err read_state(ltxn *t, int64_t pnum, struct log_state *st) {
    unsigned char kb[8];
    put_be64(kb, (uint64_t)pnum);
    MDB_val k = { 8, kb }, v;
    memset(st, 0, sizeof *st);
    int rc = mdb_get(t->txn, t->store->state, &k, &v);
    if (rc == MDB_NOTFOUND) return KOFKA_OK;
    if (rc) return lmdb_fail(t->store, "read a partition's state", rc);
    if (v.mv_size != sizeof *st)
        return fail(KOFKA_ERR_STORAGE, "lmdb storage '%s': the state of partition %lld is %zu bytes, expected %zu (corrupt)",
                    t->store->path, (long long)pnum, v.mv_size, sizeof *st);
    memcpy(st, v.mv_data, sizeof *st);
    return KOFKA_OK;
}

static kofka_err write_state(ltxn *t, int64_t pnum, const struct log_state *st) {
    unsigned char kb[8];
    put_be64(kb, (uint64_t)pnum);
    MDB_val k = { 8, kb }, v = { sizeof *st, (void *)st };
    int rc = mdb_put(t->txn, t->store->state, &k, &v, 0);
    return rc ? lmdb_fail(t->store, "write a partition's state", rc) : KOFKA_OK;
}

static kofka_err check_pnum(ltxn *t, int64_t pnum) {
    if (pnum < 0 || pnum >= ((int64_t)1 << 23))
        return fail(KOFKA_ERR_INVALID_ARG, "lmdb storage '%s': partition number %lld is outside 0..<8388608", t->store->path, (long long)pnum);
    return KOFKA_OK;
}

static kofka_err rec_cursor(ltxn *t) {
    if (t->rc) return KOFKA_OK;
    int rc = mdb_cursor_open(t->txn, t->store->rec, &t->rc);
    return rc ? lmdb_fail(t->store, "open a cursor", rc) : KOFKA_OK;
}

/** Bytes a stored record counts for (key + value + headers). */
static int64_t rec_bytes(const MDB_val *v) {
    if (v->mv_size < REC_HEAD) return 0;
    int32_t l[3];
    memcpy(l, (const unsigned char *)v->mv_data + 16, 12);
    return (int64_t)(l[0] > 0 ? l[0] : 0) + (l[1] > 0 ? l[1] : 0) + (l[2] > 0 ? l[2] : 0);
}

static kofka_err op_log_state(void *txn, int64_t pnum, int64_t *start, int64_t *next, int64_t *bytes) {
    ltxn *t = txn;
    kofka_err err = check_pnum(t, pnum);
    if (err != KOFKA_OK) return err;
    struct log_state st;
    err = read_state(t, pnum, &st);
    if (err != KOFKA_OK) return err;
    *start = st.start;
    *next = st.next;
    *bytes = st.bytes;
    return KOFKA_OK;
}

static kofka_err op_append(void *txn, int64_t pnum, int64_t txn_id, const kofka_stored_record *records, size_t count, int64_t *base) {
    ltxn *t = txn;
    kofka_err err = need_write(t, "append");
    if (err == KOFKA_OK) err = check_pnum(t, pnum);
    if (err != KOFKA_OK) return err;
    struct log_state st;
    if ((err = read_state(t, pnum, &st)) != KOFKA_OK) return err;
    *base = st.next;
    if (count == 0) return KOFKA_OK;
    if ((uint64_t)count > ((uint64_t)1 << OFFSET_BITS) - (uint64_t)st.next)
        return fail(KOFKA_ERR_STORAGE, "lmdb storage '%s': partition %lld is full: %lld + %zu records exceed 2^40 offsets",
                    t->store->path, (long long)pnum, (long long)st.next, count);
    if ((err = rec_cursor(t)) != KOFKA_OK) return err;
    /* Appending past the last key of the whole database (the newest partition, or one alone)
     * lets LMDB fill pages completely (MDB_APPEND); elsewhere an ordinary insert. */
    unsigned char kb[8];
    MDB_val k, v;
    unsigned flags = MDB_RESERVE;
    int rc = mdb_cursor_get(t->rc, &k, &v, MDB_LAST);
    if (rc == MDB_NOTFOUND || (rc == 0 && k.mv_size == 8 && get_be64(k.mv_data) < (((uint64_t)pnum << OFFSET_BITS) | (uint64_t)st.next)))
        flags |= MDB_APPEND;
    else if (rc) return lmdb_fail(t->store, "append", rc);
    for (size_t i = 0; i < count; i++) {
        const kofka_stored_record *r = &records[i];
        if (r->key_len > INT32_MAX || r->value_len > INT32_MAX || r->headers_len > INT32_MAX)
            return fail(KOFKA_ERR_STORAGE, "lmdb storage '%s': a record over 2 GiB", t->store->path);
        int32_t kl = r->key_len < 0 ? -1 : (int32_t)r->key_len;
        int32_t vl = r->value_len < 0 ? -1 : (int32_t)r->value_len;
        int32_t hl = r->headers_len < 0 ? -1 : (int32_t)r->headers_len;
        size_t size = REC_HEAD + (size_t)(kl > 0 ? kl : 0) + (size_t)(vl > 0 ? vl : 0) + (size_t)(hl > 0 ? hl : 0);
        k = rec_key(kb, pnum, st.next);
        v.mv_size = size;
        v.mv_data = NULL;
        rc = mdb_cursor_put(t->rc, &k, &v, flags);
        if (rc) return lmdb_fail(t->store, "append", rc);
        unsigned char *p = v.mv_data;
        int32_t lens[3] = { kl, vl, hl };
        memcpy(p, &txn_id, 8);
        memcpy(p + 8, &r->timestamp_ms, 8);
        memcpy(p + 16, lens, 12);
        p += REC_HEAD;
        if (kl > 0) { memcpy(p, r->key, (size_t)kl); p += kl; }
        if (vl > 0) { memcpy(p, r->value, (size_t)vl); p += vl; }
        if (hl > 0) { memcpy(p, r->headers, (size_t)hl); }
        st.next++;
        st.bytes += (kl > 0 ? kl : 0) + (vl > 0 ? vl : 0) + (hl > 0 ? hl : 0);
    }
    return write_state(t, pnum, &st);
}

static kofka_err op_read(void *txn, int64_t pnum, int64_t from, int64_t below, size_t max_count,
                         kofka_storage_visit_record visit, void *ctx, size_t *visited) {
    ltxn *t = txn;
    *visited = 0;
    kofka_err err = check_pnum(t, pnum);
    if (err != KOFKA_OK) return err;
    const int64_t limit = (int64_t)1 << OFFSET_BITS;
    if (from < 0) from = 0;
    if (below > limit) below = limit;
    if (from >= below || max_count == 0) return KOFKA_OK;
    if ((err = rec_cursor(t)) != KOFKA_OK) return err;
    unsigned char kb[8];
    MDB_val k = rec_key(kb, pnum, from), v;
    const uint64_t end = ((uint64_t)pnum << OFFSET_BITS) + (uint64_t)below;   /* below may be 2^40: the next partition's first key */
    size_t n = 0;
    int rc;
    for (rc = mdb_cursor_get(t->rc, &k, &v, MDB_SET_RANGE); rc == 0 && n < max_count; rc = mdb_cursor_get(t->rc, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 8) break;
        uint64_t key = get_be64(k.mv_data);
        if (key >= end) break;
        if (v.mv_size < REC_HEAD)
            return fail(KOFKA_ERR_STORAGE, "lmdb storage '%s': record %lld of partition %lld is %zu bytes (corrupt)",
                        t->store->path, (long long)(key & (limit - 1)), (long long)pnum, v.mv_size);
        const unsigned char *p = v.mv_data;
        int32_t l[3];
        kofka_stored_record r;
        memcpy(&r.txn, p, 8);
        memcpy(&r.timestamp_ms, p + 8, 8);
        memcpy(l, p + 16, 12);
        size_t need = REC_HEAD + (size_t)(l[0] > 0 ? l[0] : 0) + (size_t)(l[1] > 0 ? l[1] : 0) + (size_t)(l[2] > 0 ? l[2] : 0);
        if (need != v.mv_size)
            return fail(KOFKA_ERR_STORAGE, "lmdb storage '%s': record %lld of partition %lld has lengths that do not add up (corrupt)",
                        t->store->path, (long long)(key & (limit - 1)), (long long)pnum);
        r.offset = (int64_t)(key & (uint64_t)(limit - 1));
        p += REC_HEAD;
        r.key = l[0] >= 0 ? (const void *)p : NULL;     r.key_len = l[0];     p += l[0] > 0 ? l[0] : 0;
        r.value = l[1] >= 0 ? (const void *)p : NULL;   r.value_len = l[1];   p += l[1] > 0 ? l[1] : 0;
        r.headers = l[2] >= 0 ? (const void *)p : NULL; r.headers_len = l[2];
        n++;
        if (visit(ctx, &r) != 0) break;
    }
    *visited = n;
    if (rc && rc != MDB_NOTFOUND) return lmdb_fail(t->store, "read", rc);
    return KOFKA_OK;
}

static kofka_err op_truncate(void *txn, int64_t pnum, int64_t before, int64_t *start) {
    ltxn *t = txn;
    kofka_err err = need_write(t, "truncate");
    if (err == KOFKA_OK) err = check_pnum(t, pnum);
    if (err != KOFKA_OK) return err;
    struct log_state st;
    if ((err = read_state(t, pnum, &st)) != KOFKA_OK) return err;
    if (before > st.next) before = st.next;
    if (before <= st.start) {
        *start = st.start;
        return KOFKA_OK;
    }
    if ((err = rec_cursor(t)) != KOFKA_OK) return err;
    unsigned char kb[8];
    MDB_val k = rec_key(kb, pnum, st.start), v;
    const uint64_t end = ((uint64_t)pnum << OFFSET_BITS) | (uint64_t)before;
    int rc = mdb_cursor_get(t->rc, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size == 8 && get_be64(k.mv_data) < end) {
        st.bytes -= rec_bytes(&v);
        rc = mdb_cursor_del(t->rc, 0);
        if (rc) return lmdb_fail(t->store, "delete records", rc);
        rc = mdb_cursor_get(t->rc, &k, &v, MDB_GET_CURRENT);
    }
    if (rc && rc != MDB_NOTFOUND && rc != EINVAL) return lmdb_fail(t->store, "delete records", rc);
    st.start = before;
    if (st.bytes < 0) st.bytes = 0;
    *start = before;
    return write_state(t, pnum, &st);
}

static kofka_err op_remove(void *txn, int64_t pnum, const int64_t *offsets, size_t count) {
    ltxn *t = txn;
    kofka_err err = need_write(t, "remove");
    if (err == KOFKA_OK) err = check_pnum(t, pnum);
    if (err != KOFKA_OK) return err;
    if (count == 0) return KOFKA_OK;
    struct log_state st;
    if ((err = read_state(t, pnum, &st)) != KOFKA_OK) return err;
    if ((err = rec_cursor(t)) != KOFKA_OK) return err;
    int64_t removed = 0;
    for (size_t i = 0; i < count; i++) {
        int64_t o = offsets[i];
        if (o < st.start || o >= st.next) continue;
        unsigned char kb[8];
        MDB_val k = rec_key(kb, pnum, o), v;
        int rc = mdb_cursor_get(t->rc, &k, &v, MDB_SET_KEY);
        if (rc == MDB_NOTFOUND) continue;
        if (rc) return lmdb_fail(t->store, "remove records", rc);
        st.bytes -= rec_bytes(&v);
        rc = mdb_cursor_del(t->rc, 0);
        if (rc) return lmdb_fail(t->store, "remove records", rc);
        removed++;
    }
    if (!removed) return KOFKA_OK;
    if (st.bytes < 0) st.bytes = 0;
    return write_state(t, pnum, &st);
}

/* ---- change notification ------------------------------------------------------------------- */

static uint64_t op_change_token(void *instance) {
    linst *inst = instance;
    pthread_mutex_lock(&inst->mu);
    uint64_t token = inst->store ? token_of(inst->store) : inst->last_token;
    pthread_mutex_unlock(&inst->mu);
    return token;
}

static void op_wait_for_change(void *instance, uint64_t token, uint64_t timeout_ns) {
    linst *inst = instance;
    uint64_t deadline = mono_ns() + timeout_ns;
    if (deadline < timeout_ns) deadline = UINT64_MAX;
    pthread_mutex_lock(&inst->mu);
    uint64_t wakes = inst->wakes;
    while (inst->store && inst->wakes == wakes && token_of(inst->store) == token) {
        uint64_t now = mono_ns();
        if (now >= deadline) break;
        uint64_t slice = deadline - now < POLL_NS ? deadline - now : POLL_NS;
        struct timespec abs;
        clock_gettime(CLOCK_MONOTONIC, &abs);
        abs.tv_nsec += (long)slice;
        while (abs.tv_nsec >= 1000000000L) { abs.tv_sec++; abs.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&inst->cv, &inst->mu, &abs);
    }
    pthread_mutex_unlock(&inst->mu);
}

static void op_wake_all(void *instance) {
    linst *inst = instance;
    pthread_mutex_lock(&inst->mu);
    inst->wakes++;
    pthread_cond_broadcast(&inst->cv);
    pthread_mutex_unlock(&inst->mu);
}

/* ---- registration -------------------------------------------------------------------------- */

static const kofka_storage_ops lmdb_ops = {
    .struct_size = sizeof(kofka_storage_ops),
    .open = op_open,
    .close = op_close,
    .begin = op_begin,
    .commit = op_commit,
    .rollback = op_rollback,
    .get = op_get,
    .put = op_put,
    .del = op_del,
    .scan = op_scan,
    .log_state = op_log_state,
    .append = op_append,
    .read = op_read,
    .truncate = op_truncate,
    .remove = op_remove,
    .change_token = op_change_token,
    .wait_for_change = op_wait_for_change,
    .wake_all = op_wake_all,
    .reclaim_space = NULL,   /* LMDB reuses freed pages itself; the file does not shrink */
};

static atomic_int registered;

/* A child of fork() must not use its parent's environments (LMDB's rule): it forgets them
 * (without closing them, which would drop the parent's locks) and opens its own. */
static void forget_stores_in_child(void) {
    stores = NULL;
    pthread_mutex_init(&stores_lock, NULL);
}

kofka_err kofka_plugin_init(const char *const *config, char *errstr, size_t errstr_size) {
    (void)config;
    if (atomic_load(&registered)) return KOFKA_OK;   /* loaded again under another path */
    pthread_atfork(NULL, NULL, forget_stores_in_child);
    kofka_err err = kofka_storage_register("lmdb", &lmdb_ops, NULL);
    if (err != KOFKA_OK) {
        if (errstr && errstr_size) snprintf(errstr, errstr_size, "cannot register the storage scheme 'lmdb' (%d)", (int)err);
        return err;
    }
    atomic_store(&registered, 1);
    return KOFKA_OK;
}

#endif /* KOFKA_HAVE_LMDB */
