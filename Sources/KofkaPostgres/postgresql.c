/*
 * postgresql.c — libkofka_postgresql.so: Kofka's storage protocol (kofka_storage_ops,
 * include/kofka.h "Plugins") on PostgreSQL, through libpq. C against kofka.h and libpq only,
 * linked without -lkofka: its kofka_* calls resolve to the Kofka that loads it.
 *
 * Schemes "postgresql" and "postgres"; the location after "SCHEME:" is put back behind the
 * scheme and handed to libpq as its connection URI, verbatim (kofka_postgresql.h).
 *
 * LAYOUT (schema "kofka", or the first schema of a search_path given in the URI):
 *   meta(name, value)                   schema_version = 1; lock_key (the write lock's second key)
 *   kv(key bytea, value bytea)          the protocol's key/value map; bytea keys compare as
 *                                       bytes (memcmp), the order scan promises
 *   logs(pnum, start, next, bytes)      per partition: log start, high watermark, bytes held
 *   batches(pnum, base, stop, txn, n, bytes, data)
 *                                       one row per append: the records of offsets
 *                                       base .. stop-1, packed into `data` (per record: u32
 *                                       offset - base, i64 timestamp, i32 key, value and
 *                                       header lengths (-1: none), then the bytes; little
 *                                       endian); n and bytes count what the row still holds.
 *                                       Retention deletes whole rows and rewrites the one
 *                                       straddling the new log start; compaction rewrites the
 *                                       rows it removes records from. data is stored
 *                                       uncompressed (STORAGE EXTERNAL): records are often
 *                                       compressed by producers, and pglz would cost CPU on
 *                                       every append and read.
 *   A batch is one row — one index entry, one heap tuple — however many records it holds, so an
 *   append costs one INSERT whatever its size, and a read fetches a few rows (binary results:
 *   the visited records point straight into libpq's result, nothing is copied).
 *
 * EXCLUSIVE WRITES: a transaction-level advisory lock. The protocol's write transaction must
 * exclude every other write on the same store, on every host: the key/value map is shared by
 * all partitions (producer ids, sequence state, transactions, groups, offsets), so a write is
 * a read-modify-write across partitions and the map, and offsets must be dense. So begin(write)
 * takes pg_advisory_xact_lock(0x4B4F464B, meta.lock_key) — one lock per store (lock_key: a
 * hash of the schema name, written when the store is created) — after BEGIN
 * (READ COMMITTED), and the server releases it at COMMIT or ROLLBACK, or when the session dies
 * (a killed host never leaves it held). The next writer gets the lock only after the previous
 * commit is visible, and its READ COMMITTED statements see it; offsets are the high watermark
 * read under the lock (never a sequence, which can commit out of order and make readers skip
 * rows). Rejected: a row lock per partition's watermark row (it would not cover the map: two
 * producers' sequence-state updates and a transaction's commit markers span partitions), and
 * SERIALIZABLE with retry (the protocol cannot re-run Kofka's write body: a serialization
 * failure would surface as an error to the producer, and concurrent writers would mostly waste
 * work). The cost is one writer at a time per store (database + schema), like SQLite's
 * BEGIN IMMEDIATE; in this process writers queue on a mutex first, then on the lock. The wait
 * is bounded by postgresql.lock.timeout.ms (the rest of it is set as SET LOCAL lock_timeout):
 * past it, KOFKA_ERR_BUSY (SQLSTATE 55P03), nothing written.
 *
 * SNAPSHOTS: a read is BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY on a pooled
 * connection: one snapshot for all its statements, never blocking or blocked by the writer.
 *
 * ROUND TRIPS: connections run in libpq's pipeline mode. BEGIN (and the write lock) is sent
 * with a transaction's first statement; statements whose answer is not needed at once (put,
 * del, append — whose base offset is the cached high watermark) are queued and sent with the
 * next statement that needs an answer, or with COMMIT; a read's ROLLBACK is sent without
 * waiting and its answer read by the next user of the connection. An idempotent produce is
 * three round trips: [BEGIN, lock, get sequence state], [log state], [append, put, NOTIFY,
 * COMMIT]. Every statement is prepared once per connection.
 *
 * WAKE-UPS: every write that changed something runs pg_notify(channel) inside its
 * transaction; PostgreSQL delivers it at commit, to every host. Each instance keeps one more
 * connection that LISTENs on the store's channel, served by a thread that blocks in poll() on
 * its socket (and a pipe that stops it): no busy polling. change_token is a counter bumped by
 * every notification, every local commit and every reconnect of the listener (notifications
 * may have been missed while it was away); wait_for_change blocks on a condition variable the
 * thread signals. A notification arrives after its commit is visible, so a reader that took
 * the token before its snapshot never misses a commit: either its snapshot has it, or the
 * notification moves the token later.
 *
 * FAULTS (a network, a restart, pg_terminate_backend):
 *   - A connection found dead before anything of the transaction ran (a pooled or writer
 *     connection whose server restarted or whose session was terminated while idle) is
 *     replaced and the statements sent again, retrying until the lock timeout: the caller sees
 *     nothing but the delay.
 *   - Lost during a write, before COMMIT was sent, or refused by the server before COMMIT:
 *     nothing was written — KOFKA_ERR_BUSY (retriable).
 *   - Lost after COMMIT was sent and before its answer: the fate is unknown to this session.
 *     The write knows its transaction id (txid_current(), sent with the lock); a new
 *     connection asks txid_status(): committed -> KOFKA_OK, aborted -> KOFKA_ERR_BUSY; if the
 *     server cannot be reached before the lock timeout, or the id was lost with the
 *     connection, KOFKA_ERR_TIMED_OUT ("outcome unknown, retriable": the producer retries and
 *     its idempotence absorbs a write that did commit).
 *   - The next call reconnects by itself. A server down at open is KOFKA_ERR_STORAGE naming
 *     the host, the port and the database (never the password).
 *
 * THREADS: one writer connection per instance, guarded by a mutex held from begin to
 * commit/rollback (the protocol's "all calls on one txn come from the thread that began it");
 * reader connections are taken from a pool for one read transaction each; the listener's
 * connection belongs to its thread. A handle used in a child forked after open fails with
 * KOFKA_ERR_STORAGE (the sessions belong to the parent).
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "kofka.h"
#include "kofka_postgresql.h"

#define OFFSET_LIMIT ((int64_t)1 << 40)     /* offsets are 0 .. 2^40-1 */
#define PNUM_LIMIT ((int64_t)1 << 23)       /* partition numbers are 0 .. 2^23-1 */
#define LOCK_CLASS 0x4B4F464B               /* "KOFK" = 1263486539: the advisory lock's first key */
#define RECORD_HEADER 24                    /* packed record: u32 delta, i64 ts, 3 x i32 length */
#define MAX_QUEUED 256                      /* statements queued before a sync is forced */
#define MAX_BATCH_DATA (512 * 1024 * 1024)  /* a packed batch (bytea limit is 1 GB) */

/* OIDs of the parameter types (pg_type.h is server-side). */
#define INT4OID 23
#define INT8OID 20
#define BYTEAOID 17
#define TEXTOID 25

/* ---- statements ------------------------------------------------------------- */

/* '@' stands for the quoted schema, '#' for the notification channel. */
enum stmt {
    S_BEGIN_W, S_BEGIN_R, S_LOCK_TIMEOUT, S_LOCK, S_COMMIT, S_ROLLBACK, S_NOTIFY,
    S_GET, S_PUT, S_DEL, S_SCAN, S_LOG, S_APPEND, S_READ,
    S_CUT, S_BATCH_AT, S_BATCH_SET, S_BATCH_DEL, S_LOG_CUT, S_LOG_SHRINK, S_STATUS,
    S_COUNT,
    S_SYNC = S_COUNT,  /* a pipeline sync point in a connection's queue */
    S_PREPARE          /* a statement being prepared (queue entry) */
};

static const struct statement {
    const char *name;     /* prepared statement name */
    const char *what;     /* for messages */
    const char *sql;      /* with '@' and '#' */
    int nparams;          /* parameters */
    unsigned types[7];    /* their type OIDs */
} statements[S_COUNT] = {
    [S_BEGIN_W] = {"k_begin_w", "begin a write", "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE", 0, {0}},
    [S_BEGIN_R] = {"k_begin_r", "begin a read", "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", 0, {0}},
    [S_LOCK_TIMEOUT] = {"k_lock_timeout", "set the lock timeout",
                        "SELECT set_config('lock_timeout', $1::text || 'ms', true)", 1, {INT8OID}},
    [S_LOCK] = {"k_lock", "take the write lock", "SELECT pg_advisory_xact_lock($1, $2), txid_current()", 2, {INT4OID, INT4OID}},
    [S_COMMIT] = {"k_commit", "commit", "COMMIT", 0, {0}},
    [S_ROLLBACK] = {"k_rollback", "roll back", "ROLLBACK", 0, {0}},
    [S_NOTIFY] = {"k_notify", "notify", "SELECT pg_notify('#', '')", 0, {0}},
    [S_GET] = {"k_get", "get", "SELECT value FROM @.kv WHERE key = $1", 1, {BYTEAOID}},
    [S_PUT] = {"k_put", "put",
               "INSERT INTO @.kv AS t (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
               2, {BYTEAOID, BYTEAOID}},
    [S_DEL] = {"k_del", "delete", "DELETE FROM @.kv WHERE key = $1", 1, {BYTEAOID}},
    [S_SCAN] = {"k_scan", "scan", "SELECT key, value FROM @.kv WHERE key >= $1 AND key < $2 ORDER BY key", 2, {BYTEAOID, BYTEAOID}},
    [S_LOG] = {"k_log", "log state", "SELECT start, next, bytes FROM @.logs WHERE pnum = $1", 1, {INT8OID}},
    [S_APPEND] = {"k_append", "append",
                  "WITH b AS (INSERT INTO @.batches (pnum, base, stop, txn, n, bytes, data) VALUES ($1, $2, $3, $4, $5, $6, $7)) "
                  "INSERT INTO @.logs AS l (pnum, start, next, bytes) VALUES ($1, 0, $3, $6) "
                  "ON CONFLICT (pnum) DO UPDATE SET next = EXCLUDED.next, bytes = l.bytes + EXCLUDED.bytes",
                  7, {INT8OID, INT8OID, INT8OID, INT8OID, INT4OID, INT8OID, BYTEAOID}},
    /* The batches overlapping [from, upper): the one holding `from` is found through the
     * primary key backwards (max(base) <= from), the rest by a forward range. */
    [S_READ] = {"k_read", "read",
                "SELECT base, stop, txn, data FROM @.batches WHERE pnum = $1 "
                "AND base >= coalesce((SELECT max(base) FROM @.batches WHERE pnum = $1 AND base <= $2), $2) "
                "AND base < $3 AND stop > $2 ORDER BY base",
                3, {INT8OID, INT8OID, INT8OID}},
    [S_CUT] = {"k_cut", "delete batches below the log start",
               "WITH d AS (DELETE FROM @.batches WHERE pnum = $1 AND base < $2 AND stop <= $2 RETURNING bytes) "
               "SELECT coalesce(sum(bytes), 0)::int8 FROM d",
               2, {INT8OID, INT8OID}},
    [S_BATCH_AT] = {"k_batch_at", "find a batch",
                    "SELECT base, stop, txn, n, bytes, data FROM @.batches WHERE pnum = $1 AND base <= $2 ORDER BY base DESC LIMIT 1",
                    2, {INT8OID, INT8OID}},
    [S_BATCH_SET] = {"k_batch_set", "rewrite a batch", "UPDATE @.batches SET n = $3, bytes = $4, data = $5 WHERE pnum = $1 AND base = $2",
                     5, {INT8OID, INT8OID, INT4OID, INT8OID, BYTEAOID}},
    [S_BATCH_DEL] = {"k_batch_del", "delete a batch", "DELETE FROM @.batches WHERE pnum = $1 AND base = $2", 2, {INT8OID, INT8OID}},
    [S_LOG_CUT] = {"k_log_cut", "move the log start", "UPDATE @.logs SET start = $2, bytes = bytes - $3 WHERE pnum = $1", 3,
                   {INT8OID, INT8OID, INT8OID}},
    [S_LOG_SHRINK] = {"k_log_shrink", "update the bytes held", "UPDATE @.logs SET bytes = bytes - $2 WHERE pnum = $1", 2, {INT8OID, INT8OID}},
    [S_STATUS] = {"k_status", "ask for a transaction's fate", "SELECT txid_status($1)", 1, {INT8OID}},
};

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

static void put_u32le(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put_u64le(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get_u32le(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64le(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static int64_t get_i64be(const char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return (int64_t)be64toh(v);
}

/** A binary int8 / int4 parameter (network order), kept in the caller's storage. */
typedef struct { uint64_t v; } be8;
typedef struct { uint32_t v; } be4;
static be8 p8(int64_t v) { return (be8){htobe64((uint64_t)v)}; }
static be4 p4(int32_t v) { return (be4){htobe32((uint32_t)v)}; }

/** Sets the message for the error about to be returned (kofka_storage_set_error). */
static kofka_err fail(kofka_err code, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    kofka_storage_set_error(buf);
    return code;
}

/** The first line of a libpq message, without its trailing newline. */
static void first_line(char *out, size_t size, const char *msg) {
    if (!msg) msg = "";
    size_t n = strcspn(msg, "\n");
    if (n >= size) n = size - 1;
    memcpy(out, msg, n);
    out[n] = '\0';
}

/* ---- the store ----------------------------------------------------------------- */

/** A failed pipeline, as read back. */
typedef struct failure {
    int happened;          /* a statement failed or the connection broke */
    size_t pos;            /* queue position of the first failure */
    int stmt;              /* its statement (S_*), S_SYNC for a sync point */
    int server;            /* the server said so (an error with a SQLSTATE) */
    int lost;              /* the connection is gone */
    char sqlstate[6];      /* the SQLSTATE, "" when libpq saw the connection break */
    char message[400];     /* the message's first line */
} failure;

/** A connection in pipeline mode, with the answers it still owes, in order. */
typedef struct conn {
    PGconn *pg;            /* the session; NULL once dropped */
    unsigned char *q;      /* statements (S_*) and syncs (S_SYNC) whose answers are unread */
    size_t qlen, qcap;     /* how many, and room */
    int pid;               /* the server process of this session (PQbackendPID) */
} conn;

/** One partition's log state, cached for the length of a transaction. */
typedef struct logstate {
    int64_t pnum, start, next, bytes;
} logstate;

typedef struct pgstore pgstore;

/** A transaction: a read snapshot or the write. */
typedef struct pgtxn {
    pgstore *st;           /* its store */
    conn *c;               /* its connection (the writer's, or one of the pool) */
    int writable;          /* 1: the write transaction (holds st->writer_lock) */
    int begun;             /* BEGIN (and the lock) has been sent */
    int answered;          /* a statement of this transaction was answered: its start cannot be replayed */
    int queued;            /* writes were queued unanswered: its start cannot be replayed */
    int changed;           /* something was written: COMMIT (and NOTIFY), else ROLLBACK */
    int dead;              /* a failure ended it on the server: every call fails */
    kofka_err dead_code;   /* what those calls return */
    size_t qstart;         /* queue position of its first statement (earlier ones belong to others) */
    int64_t xid;           /* its transaction id (write), -1 until known */
    uint64_t deadline;     /* begin + lock timeout (mono ns): how long reconnects may take */
    PGresult *last;        /* the last get's answer (its value pointer stays valid until the next call) */
    logstate *logs;        /* partitions' log states read or written in this transaction */
    size_t nlogs, caplogs;
    unsigned char *buf;    /* packing buffer for append / rewrites */
    size_t bufcap;
} pgtxn;

struct pgstore {
    char *uri;                    /* libpq's URI: scheme + ":" + location (holds the password) */
    char where[300];              /* "host H port P database D user U" for messages (no password) */
    char *schema;                 /* the schema name */
    char *qschema;                /* the schema quoted as an identifier */
    char channel[32];             /* the notification channel: "kofka_" + 16 hex digits */
    int32_t lock_key;             /* the advisory lock's second key: hash of the schema */
    char *sql[S_COUNT];           /* the statements with the schema and channel filled in */
    int64_t lock_timeout_ms;      /* postgresql.lock.timeout.ms */
    int64_t connect_timeout_ms;   /* postgresql.connect.timeout.ms */
    int pool_idle;                /* postgresql.pool.idle */
    pid_t pid;                    /* the process that opened it */

    pthread_mutex_t writer_lock;  /* held by the write transaction, begin to commit/rollback */
    conn *writer;                 /* the writer's connection (guarded by writer_lock); NULL: reconnect */
    int writer_pid;               /* its server process, read by the listener (atomic) */

    pthread_mutex_t pool_lock;    /* guards idle, nidle */
    conn *idle[64];               /* reader connections between reads */
    int nidle;

    pthread_mutex_t sig_lock;     /* guards changes, wakes, closing; with sig */
    pthread_cond_t sig;           /* broadcast when changes or wakes move */
    uint64_t changes;             /* commits seen: local, notified, plus listener reconnects */
    uint64_t wakes;               /* wake_all calls */
    int closing;                  /* close has begun */

    pthread_t listener;           /* the LISTEN thread */
    int listener_running;         /* it was started */
    int stop_pipe[2];             /* written to stop it */
    PGconn *listen_first;         /* the LISTEN session opened by open, handed to the thread */
};

/* ---- connections ------------------------------------------------------------- */

static void conn_drop(conn *c) {
    if (!c) return;
    if (c->pg) PQfinish(c->pg);
    free(c->q);
    free(c);
}

/** The connection of a child forked after open is the parent's: close our copy of the socket
 *  without telling the server (PQfinish would end the parent's session). */
static void conn_abandon(conn *c) {
    if (!c) return;
    if (c->pg && PQsocket(c->pg) >= 0) close(PQsocket(c->pg));
    conn_drop(c);
}

static int queue_push(conn *c, int what) {
    if (c->qlen == c->qcap) {
        size_t cap = c->qcap ? c->qcap * 2 : 32;
        unsigned char *q = realloc(c->q, cap);
        if (!q) return -1;
        c->q = q;
        c->qcap = cap;
    }
    c->q[c->qlen++] = (unsigned char)what;
    return 0;
}

static int is_lost_state(const char *sqlstate) {
    return strncmp(sqlstate, "08", 2) == 0 || strcmp(sqlstate, "57P01") == 0 || strcmp(sqlstate, "57P02") == 0 ||
           strcmp(sqlstate, "57P03") == 0;
}

static void note_failure(failure *f, size_t pos, int stmt, const PGresult *r, PGconn *pg) {
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    int lost = PQstatus(pg) == CONNECTION_BAD || (state && is_lost_state(state)) || !state;
    if (f->happened) {
        f->lost |= lost;
        return;
    }
    f->happened = 1;
    f->pos = pos;
    f->stmt = stmt;
    f->server = state != NULL;
    f->lost = lost;
    snprintf(f->sqlstate, sizeof f->sqlstate, "%s", state ? state : "");
    first_line(f->message, sizeof f->message, r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
    if (!f->message[0]) first_line(f->message, sizeof f->message, PQerrorMessage(pg));
    if (!f->message[0]) snprintf(f->message, sizeof f->message, "the connection was lost");
}

/**
 * Reads every answer c owes, in order (the queue must end with a sync). The answer of the
 * statement at queue position `keep` (or none: (size_t)-1) is handed back in *kept; answers to
 * S_LOCK give *xid; a COMMIT answered "COMMIT" sets *committed. Failures before queue
 * position `from` are another transaction's and are ignored unless the connection is lost.
 * Returns 0, or -1 with *f filled (f->lost: the connection is unusable).
 */
static int drain(conn *c, size_t from, size_t keep, PGresult **kept, int64_t *xid, int *committed, failure *f) {
    memset(f, 0, sizeof *f);
    if (kept) *kept = NULL;
    size_t n = c->qlen;
    for (size_t i = 0; i < n; i++) {
        int s = c->q[i];
        PGresult *r = PQgetResult(c->pg);
        if (s == S_SYNC) {
            if (r && PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
                PQclear(r);
                continue;
            }
            note_failure(f, i, s, r, c->pg);
            f->lost = 1;
            PQclear(r);
            break;
        }
        if (!r) {   /* no answer where one was owed: the connection broke */
            note_failure(f, i, s, NULL, c->pg);
            f->lost = 1;
            break;
        }
        ExecStatusType es = PQresultStatus(r);
        if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK) {
            if (s == S_LOCK && xid && PQntuples(r) == 1 && PQgetlength(r, 0, 1) == 8) *xid = get_i64be(PQgetvalue(r, 0, 1));
            if (s == S_COMMIT && committed && strcmp(PQcmdStatus(r), "COMMIT") == 0) *committed = 1;
            if (s == S_COMMIT && strcmp(PQcmdStatus(r), "COMMIT") != 0 && i >= from) {
                /* COMMIT of an aborted transaction answers ROLLBACK */
                note_failure(f, i, s, NULL, c->pg);
                f->server = 1;
                f->lost = 0;
                snprintf(f->message, sizeof f->message, "the transaction was aborted by an earlier error");
            }
            if (i == keep && kept) *kept = r;
            else PQclear(r);
        } else if (es == PGRES_PIPELINE_ABORTED) {
            PQclear(r);   /* skipped: an earlier statement failed */
        } else {
            if (i >= from || PQstatus(c->pg) == CONNECTION_BAD) note_failure(f, i, s, r, c->pg);
            else {
                const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                if (!state || is_lost_state(state)) note_failure(f, i, s, r, c->pg);
            }
            PQclear(r);
            if (f->happened && f->lost) break;
        }
        /* the NULL that ends this statement's answers */
        PGresult *extra;
        while ((extra = PQgetResult(c->pg)) != NULL) {
            if (PQresultStatus(extra) != PGRES_PIPELINE_ABORTED && PQresultStatus(extra) != PGRES_COMMAND_OK &&
                PQresultStatus(extra) != PGRES_TUPLES_OK)
                note_failure(f, i, s, extra, c->pg);
            PQclear(extra);
            if (PQstatus(c->pg) == CONNECTION_BAD) break;
        }
        if (PQstatus(c->pg) == CONNECTION_BAD) {
            if (!f->happened && i + 1 < n) note_failure(f, i + 1, c->q[i + 1], NULL, c->pg);
            f->lost = 1;
            break;
        }
    }
    c->qlen = 0;
    if (f->happened && f->lost && kept && *kept) {
        PQclear(*kept);
        *kept = NULL;
    }
    return f->happened ? -1 : 0;
}

/** Sends a prepared statement (answer owed). -1: libpq refused (the connection is broken). */
static int send_stmt(conn *c, int s, int n, const char *const *values, const int *lengths) {
    static const int binary[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    if (!PQsendQueryPrepared(c->pg, statements[s].name, n, values, lengths, binary, 1)) return -1;
    return queue_push(c, s);
}

static int send_sync(conn *c) {
    if (!PQpipelineSync(c->pg)) return -1;
    return queue_push(c, S_SYNC);
}

/** Notices (a NOTICE from the server) are not the application's business: dropped. */
static void ignore_notice(void *arg, const char *message) {
    (void)arg;
    (void)message;
}

/** Opens one session, waiting at most until `deadline` (mono ns). NULL with err on failure. */
static PGconn *connect_once(pgstore *st, uint64_t deadline, char *err, size_t errlen) {
    /* Defaults first: the URI's own parameters (expanded from dbname) override them. */
    const char *keys[] = {"application_name", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
                          "dbname", NULL};
    const char *vals[] = {"kofka", "1", "10", "5", "3", st->uri, NULL};
    PGconn *pg = PQconnectStartParams(keys, vals, 1);
    if (!pg) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
    while (PQstatus(pg) != CONNECTION_BAD) {
        if (ps == PGRES_POLLING_OK) {
            PQsetNoticeProcessor(pg, ignore_notice, NULL);
            return pg;
        }
        if (ps == PGRES_POLLING_FAILED) break;
        uint64_t now = mono_ns();
        if (now >= deadline) {
            snprintf(err, errlen, "no answer from the server within the connect timeout");
            PQfinish(pg);
            return NULL;
        }
        struct pollfd pfd = {PQsocket(pg), ps == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
        int ms = (int)((deadline - now + 999999) / 1000000);
        int rc = poll(&pfd, 1, ms);
        if (rc < 0 && errno != EINTR) break;
        if (rc == 0) continue;
        ps = PQconnectPoll(pg);
    }
    char line[400];
    first_line(line, sizeof line, PQerrorMessage(pg));
    /* libpq says "connection to server at "H" (A), port P failed: why": keep the why, we name the place */
    const char *why = strstr(line, "failed: ");
    snprintf(err, errlen, "%s", why ? why + 8 : line);
    PQfinish(pg);
    return NULL;
}

/** Makes pg a data connection: pipeline mode, every statement prepared. NULL with err. */
static conn *conn_setup(pgstore *st, PGconn *pg, char *err, size_t errlen) {
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        PQfinish(pg);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->pg = pg;
    c->pid = PQbackendPID(pg);
    if (PQserverVersion(pg) < 100000) {
        snprintf(err, errlen, "server version %d is too old: Kofka needs PostgreSQL 10 or later", PQserverVersion(pg));
        conn_drop(c);
        return NULL;
    }
    if (!PQenterPipelineMode(pg)) goto broken;
    for (int s = 0; s < S_COUNT; s++) {
        if (!PQsendPrepare(pg, statements[s].name, st->sql[s], statements[s].nparams, (const Oid *)statements[s].types)) goto broken;
        if (queue_push(c, S_PREPARE) < 0) goto broken;
    }
    if (send_sync(c) < 0) goto broken;
    failure f;
    if (drain(c, 0, (size_t)-1, NULL, NULL, NULL, &f) < 0) {
        snprintf(err, errlen, "preparing statement %zu failed: %s", f.pos + 1, f.message);
        conn_drop(c);
        return NULL;
    }
    return c;
broken:
    first_line(err, errlen, PQerrorMessage(pg));
    conn_drop(c);
    return NULL;
}

/** A ready data connection, retrying (server restarting) until `deadline`. */
static conn *conn_open(pgstore *st, uint64_t deadline, char *err, size_t errlen) {
    long pause = 5;
    for (;;) {
        PGconn *pg = connect_once(st, deadline, err, errlen);
        if (pg) return conn_setup(st, pg, err, errlen);
        if (mono_ns() + (uint64_t)pause * 1000000u >= deadline) return NULL;
        sleep_ms(pause);
        pause = pause * 2 > 200 ? 200 : pause * 2;
    }
}

/* ---- change notification ---------------------------------------------------------- */

static void note_changes(pgstore *st, uint64_t n) {
    pthread_mutex_lock(&st->sig_lock);
    st->changes += n;
    pthread_cond_broadcast(&st->sig);
    pthread_mutex_unlock(&st->sig_lock);
}

/** Opens the LISTEN session. NULL with err. */
static PGconn *listen_open(pgstore *st, uint64_t deadline, char *err, size_t errlen) {
    PGconn *pg = connect_once(st, deadline, err, errlen);
    if (!pg) return NULL;
    char sql[64];
    snprintf(sql, sizeof sql, "LISTEN %s", st->channel);
    PGresult *r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        first_line(err, errlen, PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(pg);
        return NULL;
    }
    PQclear(r);
    return pg;
}

/** Waits up to ms for the stop pipe; 1 when asked to stop. */
static int listener_pause(pgstore *st, int ms) {
    struct pollfd pfd = {st->stop_pipe[0], POLLIN, 0};
    return poll(&pfd, 1, ms) > 0;
}

/** The LISTEN thread: counts notifications into st->changes; reconnects when the session dies
 *  (and counts that as a change: notifications may have been missed). */
static void *listener_main(void *arg) {
    pgstore *st = arg;
    PGconn *pg = st->listen_first;
    st->listen_first = NULL;
    int pause = 10;
    for (;;) {
        if (!pg) {
            char err[256];
            pg = listen_open(st, mono_ns() + 1000000000u, err, sizeof err);
            if (!pg) {
                if (listener_pause(st, pause)) break;
                pause = pause * 2 > 1000 ? 1000 : pause * 2;
                continue;
            }
            pause = 10;
            note_changes(st, 1);
        }
        struct pollfd pfd[2] = {{PQsocket(pg), POLLIN, 0}, {st->stop_pipe[0], POLLIN, 0}};
        int rc = poll(pfd, 2, -1);
        if (rc < 0 && errno != EINTR) break;
        if (pfd[1].revents) break;
        if (!pfd[0].revents) continue;
        if (!PQconsumeInput(pg) || PQstatus(pg) == CONNECTION_BAD) {
            PQfinish(pg);
            pg = NULL;
            note_changes(st, 1);
            continue;
        }
        uint64_t n = 0;
        int own = __atomic_load_n(&st->writer_pid, __ATOMIC_RELAXED);
        PGnotify *note;
        while ((note = PQnotifies(pg)) != NULL) {
            if (note->be_pid != own) n++;   /* our own commits were counted when they returned */
            PQfreemem(note);
        }
        if (n) note_changes(st, n);
    }
    if (pg) PQfinish(pg);
    return NULL;
}

/* ---- open / close ------------------------------------------------------------------ */

static void store_free(pgstore *st) {
    for (int s = 0; s < S_COUNT; s++) free(st->sql[s]);
    free(st->uri);
    free(st->schema);
    free(st->qschema);
    pthread_mutex_destroy(&st->writer_lock);
    pthread_mutex_destroy(&st->pool_lock);
    pthread_mutex_destroy(&st->sig_lock);
    pthread_cond_destroy(&st->sig);
    free(st);
}

static kofka_err open_error(char *errstr, size_t errstr_size, kofka_err code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (errstr && errstr_size) vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
    return code;
}

/** Parses a config integer in [lo, hi]; 0 on success. */
static int parse_int(const char *v, int64_t lo, int64_t hi, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || !*v || *end || x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

/** The statement text with '@' -> the quoted schema and '#' -> the channel. */
static char *fill_sql(const char *tmpl, const char *qschema, const char *channel) {
    size_t n = 1;
    for (const char *p = tmpl; *p; p++) n += *p == '@' ? strlen(qschema) : *p == '#' ? strlen(channel) : 1;
    char *out = malloc(n), *o = out;
    if (!out) return NULL;
    for (const char *p = tmpl; *p; p++) {
        const char *sub = *p == '@' ? qschema : *p == '#' ? channel : NULL;
        if (sub) {
            size_t l = strlen(sub);
            memcpy(o, sub, l);
            o += l;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

/** The first schema of a search_path value ("$user" is the session user). Malloc'd. */
static char *first_schema(const char *path, const char *user) {
    while (*path == ' ') path++;
    char buf[256];
    size_t n = 0;
    if (*path == '"') {
        for (const char *p = path + 1; *p && n + 1 < sizeof buf; p++) {
            if (*p == '"') {
                if (p[1] == '"') { buf[n++] = '"'; p++; continue; }
                break;
            }
            buf[n++] = *p;
        }
    } else {
        for (const char *p = path; *p && *p != ',' && *p != ' ' && n + 1 < sizeof buf; p++) buf[n++] = *p;
    }
    buf[n] = '\0';
    if (strcmp(buf, "$user") == 0) return strdup(user ? user : "");
    return strdup(buf);
}

/** Creates the schema's tables if missing, or checks their version. 0, or -1 with err. */
static int prepare_schema(pgstore *st, PGconn *pg, kofka_err *code, char *err, size_t errlen) {
    char sql[4096];
    PGresult *r;
    *code = KOFKA_ERR_STORAGE;
    r = PQexec(pg, "BEGIN");
    PQclear(r);
    /* The schema travels as a parameter ($1, the quoted identifier), as to_regnamespace and
     * to_regclass read it. The lock is the writers': creating excludes every writer. */
    snprintf(sql, sizeof sql,
             "SELECT pg_advisory_xact_lock(%d, %d), to_regnamespace($1) IS NOT NULL, "
             "to_regclass($1 || '.meta') IS NOT NULL, to_regclass($1 || '.kv') IS NOT NULL",
             LOCK_CLASS, st->lock_key);
    const char *params[1] = {st->qschema};
    r = PQexecParams(pg, sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) goto sqlfail;
    int have_schema = PQgetvalue(r, 0, 1)[0] == 't';
    int have_meta = PQgetvalue(r, 0, 2)[0] == 't';
    int have_kv = PQgetvalue(r, 0, 3)[0] == 't';
    PQclear(r);
    if (have_meta) {
        snprintf(sql, sizeof sql, "SELECT value FROM %s.meta WHERE name = 'schema_version'", st->qschema);
        r = PQexec(pg, sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) goto sqlfail;
        if (PQntuples(r) != 1) {
            snprintf(err, errlen, "schema \"%s\" of PostgreSQL %s has a meta table without a Kofka schema version: not a Kofka store",
                     st->schema, st->where);
            PQclear(r);
            goto refuse;
        }
        long long v = atoll(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (v > KOFKA_POSTGRESQL_SCHEMA_VERSION) {
            snprintf(err, errlen,
                     "schema \"%s\" of PostgreSQL %s has Kofka schema version %lld; this build reads up to %d",
                     st->schema, st->where, v, KOFKA_POSTGRESQL_SCHEMA_VERSION);
            goto refuse;
        }
    } else {
        if (have_kv) {
            snprintf(err, errlen, "schema \"%s\" of PostgreSQL %s has a table kv but no Kofka meta table: not a Kofka store",
                     st->schema, st->where);
            goto refuse;
        }
        const char *q = st->qschema;
        int n = 0;
        if (!have_schema) n += snprintf(sql + n, sizeof sql - (size_t)n, "CREATE SCHEMA %s;", q);
        snprintf(sql + n, sizeof sql - (size_t)n,
                 "CREATE TABLE %s.meta (name text PRIMARY KEY, value bigint NOT NULL);"
                 "CREATE TABLE %s.kv (key bytea PRIMARY KEY, value bytea NOT NULL);"
                 "CREATE TABLE %s.logs (pnum bigint PRIMARY KEY, start bigint NOT NULL DEFAULT 0, "
                 "  next bigint NOT NULL DEFAULT 0, bytes bigint NOT NULL DEFAULT 0);"
                 "CREATE TABLE %s.batches (pnum bigint NOT NULL, base bigint NOT NULL, stop bigint NOT NULL, "
                 "  txn bigint NOT NULL, n integer NOT NULL, bytes bigint NOT NULL, data bytea NOT NULL, "
                 "  PRIMARY KEY (pnum, base));"
                 "ALTER TABLE %s.batches ALTER COLUMN data SET STORAGE EXTERNAL;"
                 "INSERT INTO %s.meta VALUES ('schema_version', %d), ('lock_key', %d);",
                 q, q, q, q, q, q, KOFKA_POSTGRESQL_SCHEMA_VERSION, st->lock_key);
        r = PQexec(pg, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) goto sqlfail;
        PQclear(r);
    }
    /* The write lock's second key is data of the store (what every host uses; an operator can
     * take it too: pg_advisory_lock(1263486539, lock_key) stops every writer). */
    snprintf(sql, sizeof sql, "SELECT value FROM %s.meta WHERE name = 'lock_key'", st->qschema);
    r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) goto sqlfail;
    if (PQntuples(r) == 1) st->lock_key = (int32_t)atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    r = PQexec(pg, "COMMIT");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) goto sqlfail;
    PQclear(r);
    return 0;
sqlfail: {
        char line[400];
        first_line(line, sizeof line, PQresultErrorMessage(r));
        snprintf(err, errlen, "cannot create or check the Kofka schema \"%s\" in PostgreSQL %s: %s", st->schema, st->where, line);
        PQclear(r);
    }
refuse:
    r = PQexec(pg, "ROLLBACK");
    PQclear(r);
    return -1;
}

static kofka_err pg_open(void *opaque, const char *location, const char *const *config, void **instance, char *errstr,
                         size_t errstr_size) {
    const char *scheme = opaque ? (const char *)opaque : "postgresql";
    int64_t lock_timeout = 5000, connect_timeout = 10000, pool_idle = 4;
    for (size_t i = 0; config && config[i] && config[i + 1]; i += 2) {
        const char *k = config[i], *v = config[i + 1];
        const char *name = strncmp(k, "postgresql.", 11) == 0 ? k + 11 : strncmp(k, "postgres.", 9) == 0 ? k + 9 : NULL;
        if (!name) continue;
        int64_t *slot = NULL, lo = 0, hi = 3600000;
        if (strcmp(name, "lock.timeout.ms") == 0) slot = &lock_timeout;
        else if (strcmp(name, "connect.timeout.ms") == 0) { slot = &connect_timeout; lo = 1; }
        else if (strcmp(name, "pool.idle") == 0) { slot = &pool_idle; hi = 64; }
        else
            return open_error(errstr, errstr_size, KOFKA_ERR_INVALID_CONFIG,
                              "unknown config key '%s' (the PostgreSQL storage knows postgresql.lock.timeout.ms, "
                              "postgresql.connect.timeout.ms and postgresql.pool.idle)", k);
        if (parse_int(v, lo, hi, slot) < 0)
            return open_error(errstr, errstr_size, KOFKA_ERR_INVALID_CONFIG,
                              "invalid value '%s' for config key '%s': expected an integer in %" PRId64 "..%" PRId64, v, k, lo, hi);
    }
    if (!location || !*location)
        return open_error(errstr, errstr_size, KOFKA_ERR_INVALID_ARG,
                          "expected a libpq URI: %s://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?PARAM=VALUE...]", scheme);

    pgstore *st = calloc(1, sizeof *st);
    if (!st) return open_error(errstr, errstr_size, KOFKA_ERR_STORAGE, "out of memory");
    pthread_mutex_init(&st->writer_lock, NULL);
    pthread_mutex_init(&st->pool_lock, NULL);
    pthread_mutex_init(&st->sig_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st->sig, &ca);
    pthread_condattr_destroy(&ca);
    st->stop_pipe[0] = st->stop_pipe[1] = -1;
    st->lock_timeout_ms = lock_timeout;
    st->connect_timeout_ms = connect_timeout;
    st->pool_idle = (int)pool_idle;
    st->pid = getpid();
    size_t ulen = strlen(scheme) + 1 + strlen(location) + 1;
    st->uri = malloc(ulen);
    if (!st->uri) {
        store_free(st);
        return open_error(errstr, errstr_size, KOFKA_ERR_STORAGE, "out of memory");
    }
    snprintf(st->uri, ulen, "%s:%s", scheme, location);

    /* Validate the URI, and learn where it points (for messages) and whether it sets a search_path. */
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(st->uri, &perr);
    if (!opts) {
        char line[300];
        first_line(line, sizeof line, perr ? perr : "out of memory");
        PQfreemem(perr);
        store_free(st);
        return open_error(errstr, errstr_size, KOFKA_ERR_INVALID_ARG,
                          "not a libpq URI (%s://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?PARAM=VALUE...]): %s", scheme, line);
    }
    const char *host = NULL, *hostaddr = NULL, *port = NULL, *db = NULL, *user = NULL, *options = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val) continue;
        if (strcmp(o->keyword, "host") == 0) host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0) hostaddr = o->val;
        else if (strcmp(o->keyword, "port") == 0) port = o->val;
        else if (strcmp(o->keyword, "dbname") == 0) db = o->val;
        else if (strcmp(o->keyword, "user") == 0) user = o->val;
        else if (strcmp(o->keyword, "options") == 0) options = o->val;
    }
    snprintf(st->where, sizeof st->where, "host %s port %s database %s%s%s", host ? host : hostaddr ? hostaddr : "(default)",
             port ? port : "5432", db ? db : user ? user : "(default)", user ? " user " : "", user ? user : "");
    int explicit_path = options && strstr(options, "search_path") != NULL;
    PQconninfoFree(opts);

    char err[1200];
    kofka_err code = KOFKA_ERR_STORAGE;
    PGconn *pg = connect_once(st, mono_ns() + (uint64_t)connect_timeout * 1000000u, err, sizeof err);
    if (!pg) {
        open_error(errstr, errstr_size, KOFKA_ERR_STORAGE, "cannot connect to PostgreSQL at %s: %s", st->where, err);
        store_free(st);
        return KOFKA_ERR_STORAGE;
    }
    /* The schema: "kofka", or the first of the URI's search_path. */
    if (explicit_path) {
        PGresult *r = PQexec(pg, "SELECT current_setting('search_path'), session_user");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) st->schema = first_schema(PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
        PQclear(r);
    } else {
        st->schema = strdup("kofka");
    }
    if (!st->schema || !*st->schema) {
        PQfinish(pg);
        open_error(errstr, errstr_size, KOFKA_ERR_INVALID_ARG, "the search_path given in the URI names no schema (PostgreSQL %s)", st->where);
        store_free(st);
        return KOFKA_ERR_INVALID_ARG;
    }
    char *q = PQescapeIdentifier(pg, st->schema, strlen(st->schema));
    st->qschema = q ? strdup(q) : NULL;
    PQfreemem(q);
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)st->schema; *p; p++) h = (h ^ *p) * 1099511628211ull;
    snprintf(st->channel, sizeof st->channel, "kofka_%016" PRIx64, h);
    st->lock_key = (int32_t)(uint32_t)(h ^ (h >> 32));
    for (int s = 0; s < S_COUNT; s++) {
        st->sql[s] = st->qschema ? fill_sql(statements[s].sql, st->qschema, st->channel) : NULL;
        if (!st->sql[s]) {
            PQfinish(pg);
            store_free(st);
            return open_error(errstr, errstr_size, KOFKA_ERR_STORAGE, "out of memory");
        }
    }
    if (prepare_schema(st, pg, &code, err, sizeof err) < 0) {
        PQfinish(pg);
        open_error(errstr, errstr_size, code, "%s", err);
        store_free(st);
        return code;
    }
    uint64_t deadline = mono_ns() + (uint64_t)connect_timeout * 1000000u;
    st->writer = conn_setup(st, pg, err, sizeof err);
    if (!st->writer) {
        open_error(errstr, errstr_size, KOFKA_ERR_STORAGE, "PostgreSQL %s: %s", st->where, err);
        store_free(st);
        return KOFKA_ERR_STORAGE;
    }
    __atomic_store_n(&st->writer_pid, st->writer->pid, __ATOMIC_RELAXED);
    st->listen_first = listen_open(st, deadline, err, sizeof err);
    if (!st->listen_first) {
        conn_drop(st->writer);
        open_error(errstr, errstr_size, KOFKA_ERR_STORAGE, "cannot LISTEN on PostgreSQL at %s: %s", st->where, err);
        store_free(st);
        return KOFKA_ERR_STORAGE;
    }
    if (pipe2(st->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0 || pthread_create(&st->listener, NULL, listener_main, st) != 0) {
        PQfinish(st->listen_first);
        conn_drop(st->writer);
        if (st->stop_pipe[0] >= 0) { close(st->stop_pipe[0]); close(st->stop_pipe[1]); }
        store_free(st);
        return open_error(errstr, errstr_size, KOFKA_ERR_STORAGE, "cannot start the LISTEN thread: %s", strerror(errno));
    }
    st->listener_running = 1;
    *instance = st;
    return KOFKA_OK;
}

static void pg_close(void *instance) {
    pgstore *st = instance;
    if (!st) return;
    int forked = getpid() != st->pid;
    pthread_mutex_lock(&st->sig_lock);
    st->closing = 1;
    pthread_cond_broadcast(&st->sig);
    pthread_mutex_unlock(&st->sig_lock);
    if (st->listener_running && !forked) {
        ssize_t w = write(st->stop_pipe[1], "x", 1);
        (void)w;
        pthread_join(st->listener, NULL);
    }
    if (st->stop_pipe[0] >= 0) { close(st->stop_pipe[0]); close(st->stop_pipe[1]); }
    void (*drop)(conn *) = forked ? conn_abandon : conn_drop;
    drop(st->writer);
    for (int i = 0; i < st->nidle; i++) drop(st->idle[i]);
    store_free(st);
}

/* ---- transactions ------------------------------------------------------------------ */

static kofka_err check_process(pgstore *st) {
    if (getpid() == st->pid) return KOFKA_OK;
    return fail(KOFKA_ERR_STORAGE, "this PostgreSQL storage handle was opened by process %d; a forked child must open its own",
                (int)st->pid);
}

static conn *pool_take(pgstore *st) {
    conn *c = NULL;
    pthread_mutex_lock(&st->pool_lock);
    while (st->nidle > 0 && !c) {
        c = st->idle[--st->nidle];
        if (PQstatus(c->pg) != CONNECTION_OK) {
            conn_drop(c);
            c = NULL;
        }
    }
    pthread_mutex_unlock(&st->pool_lock);
    return c;
}

static void pool_give(pgstore *st, conn *c) {
    if (!c) return;
    pthread_mutex_lock(&st->pool_lock);
    int keep = PQstatus(c->pg) == CONNECTION_OK && st->nidle < st->pool_idle && st->nidle < 64;
    if (keep) st->idle[st->nidle++] = c;
    pthread_mutex_unlock(&st->pool_lock);
    if (!keep) conn_drop(c);
}

static kofka_err pg_begin(void *instance, int writable, void **out) {
    pgstore *st = instance;
    kofka_err rc = check_process(st);
    if (rc != KOFKA_OK) return rc;
    uint64_t deadline = mono_ns() + (uint64_t)st->lock_timeout_ms * 1000000u;
    pgtxn *t = calloc(1, sizeof *t);
    if (!t) return fail(KOFKA_ERR_STORAGE, "out of memory");
    t->st = st;
    t->writable = writable != 0;
    t->xid = -1;
    t->deadline = deadline;
    char err[512];
    if (t->writable) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += st->lock_timeout_ms / 1000;
        ts.tv_nsec += (st->lock_timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        int lr = pthread_mutex_clocklock(&st->writer_lock, CLOCK_MONOTONIC, &ts);
        if (lr != 0) {
            free(t);
            return fail(KOFKA_ERR_BUSY, "another write of this process held the write lock of PostgreSQL %s for "
                        "postgresql.lock.timeout.ms (%" PRId64 " ms); nothing written", st->where, st->lock_timeout_ms);
        }
        if (!st->writer || PQstatus(st->writer->pg) != CONNECTION_OK) {
            conn_drop(st->writer);
            st->writer = conn_open(st, deadline, err, sizeof err);
            if (!st->writer) {
                pthread_mutex_unlock(&st->writer_lock);
                free(t);
                return fail(KOFKA_ERR_BUSY, "cannot reach PostgreSQL at %s (gave up after postgresql.lock.timeout.ms, "
                            "%" PRId64 " ms): %s; nothing written", st->where, st->lock_timeout_ms, err);
            }
            __atomic_store_n(&st->writer_pid, st->writer->pid, __ATOMIC_RELAXED);
        }
        t->c = st->writer;
    } else {
        t->c = pool_take(st);
        if (!t->c) {
            t->c = conn_open(st, deadline, err, sizeof err);
            if (!t->c) {
                free(t);
                return fail(KOFKA_ERR_BUSY, "cannot reach PostgreSQL at %s (gave up after postgresql.lock.timeout.ms, "
                            "%" PRId64 " ms): %s", st->where, st->lock_timeout_ms, err);
            }
        }
    }
    *out = t;
    return KOFKA_OK;
}

/** Sends BEGIN (and, for the writer, the lock) ahead of the transaction's first statement. */
static int send_begin(pgtxn *t) {
    t->qstart = t->c->qlen;
    if (!t->writable) return send_stmt(t->c, S_BEGIN_R, 0, NULL, NULL);
    if (send_stmt(t->c, S_BEGIN_W, 0, NULL, NULL) < 0) return -1;
    uint64_t now = mono_ns();
    int64_t left_ms = now >= t->deadline ? 1 : (int64_t)((t->deadline - now) / 1000000u);
    if (left_ms < 1) left_ms = 1;   /* lock_timeout 0 would mean "wait forever" */
    be8 ms = p8(left_ms);
    const char *v1[] = {(const char *)&ms};
    const int l1[] = {8};
    if (send_stmt(t->c, S_LOCK_TIMEOUT, 1, v1, l1) < 0) return -1;
    be4 k1 = p4(LOCK_CLASS), k2 = p4(t->st->lock_key);
    const char *v2[] = {(const char *)&k1, (const char *)&k2};
    const int l2[] = {4, 4};
    return send_stmt(t->c, S_LOCK, 2, v2, l2);
}

/** The code and message for a failure of transaction t. */
static kofka_err failure_error(pgtxn *t, const failure *f, const char *op) {
    pgstore *st = t->st;
    const char *what = f->stmt < S_COUNT ? statements[f->stmt].what : "sync";
    if (strcmp(f->sqlstate, "55P03") == 0)
        return fail(KOFKA_ERR_BUSY, "the write lock of PostgreSQL %s (schema \"%s\") was held by another writer for "
                    "postgresql.lock.timeout.ms (%" PRId64 " ms)", st->where, st->schema, st->lock_timeout_ms);
    if (f->lost)
        return fail(KOFKA_ERR_BUSY, "%s: the connection to PostgreSQL at %s was lost (%s)%s; it reconnects on the next call",
                    op, st->where, f->message, t->writable ? "; nothing written" : "");
    if (strcmp(f->sqlstate, "40001") == 0 || strcmp(f->sqlstate, "40P01") == 0 || strcmp(f->sqlstate, "57014") == 0)
        return fail(KOFKA_ERR_BUSY, "%s (%s) on PostgreSQL %s: %s [SQLSTATE %s]; nothing written", op, what, st->where, f->message,
                    f->sqlstate);
    return fail(KOFKA_ERR_STORAGE, "%s (%s) on PostgreSQL %s: %s%s%s%s", op, what, st->where, f->message,
                f->sqlstate[0] ? " [SQLSTATE " : "", f->sqlstate, f->sqlstate[0] ? "]" : "");
}

static kofka_err dead_error(pgtxn *t) {
    return fail(t->dead_code ? t->dead_code : KOFKA_ERR_STORAGE,
                "this PostgreSQL transaction already failed (PostgreSQL %s); roll it back", t->st->where);
}

/** Replaces t's connection after it was found dead before anything of t ran. 0 or -1. */
static int txn_reconnect(pgtxn *t, char *err, size_t errlen) {
    pgstore *st = t->st;
    conn_drop(t->c);
    t->c = conn_open(st, t->deadline, err, errlen);
    if (t->writable) {
        st->writer = t->c;
        if (t->c) __atomic_store_n(&st->writer_pid, t->c->pid, __ATOMIC_RELAXED);
    }
    t->begun = 0;
    return t->c ? 0 : -1;
}

/**
 * Runs statement s in t and returns its answer (the caller PQclears it), after every queued
 * statement. NULL on failure (the message set; *rc the code). A connection found dead before
 * anything of t ran is replaced and the whole start sent again.
 */
static PGresult *txn_exec(pgtxn *t, int s, int n, const char *const *values, const int *lengths, kofka_err *rc, const char *op) {
    if (t->dead) {
        *rc = dead_error(t);
        return NULL;
    }
    for (int attempt = 0;; attempt++) {
        failure f;
        memset(&f, 0, sizeof f);
        int sent = 0;
        size_t pos = 0;
        if (t->c && t->c->pg) {
            sent = 1;
            if (!t->begun) {
                if (send_begin(t) < 0) sent = 0;
                t->begun = 1;
            }
            pos = t->c->qlen;
            if (sent && (send_stmt(t->c, s, n, values, lengths) < 0 || send_sync(t->c) < 0)) sent = 0;
        }
        PGresult *res = NULL;
        if (sent && drain(t->c, t->qstart, pos, &res, &t->xid, NULL, &f) == 0) {
            t->answered = 1;
            return res;
        }
        if (!sent) {
            memset(&f, 0, sizeof f);
            f.happened = 1;
            f.lost = 1;
            f.stmt = s;
            first_line(f.message, sizeof f.message, t->c && t->c->pg ? PQerrorMessage(t->c->pg) : "no connection");
        }
        if (f.lost && !t->answered && !t->queued && attempt < 1000 && mono_ns() < t->deadline) {
            char err[512];
            if (txn_reconnect(t, err, sizeof err) == 0) continue;
            t->dead = 1;
            *rc = t->dead_code = fail(KOFKA_ERR_BUSY, "%s: cannot reach PostgreSQL at %s (%s; gave up after "
                                      "postgresql.lock.timeout.ms, %" PRId64 " ms)%s", op, t->st->where, err,
                                      t->st->lock_timeout_ms, t->writable ? "; nothing written" : "");
            return NULL;
        }
        t->dead = 1;
        if (f.lost && t->c) {
            conn_drop(t->c);
            t->c = NULL;
            if (t->writable) t->st->writer = NULL;
        }
        *rc = t->dead_code = failure_error(t, &f, op);
        return NULL;
    }
}

/** Queues statement s in t, unanswered (its failure surfaces with the next answer). */
static kofka_err txn_queue(pgtxn *t, int s, int n, const char *const *values, const int *lengths, const char *op) {
    if (t->dead) return dead_error(t);
    if (!t->c) return fail(KOFKA_ERR_BUSY, "%s: no connection to PostgreSQL at %s", op, t->st->where);
    int ok = 1;
    if (!t->begun) {
        ok = send_begin(t) == 0;
        t->begun = 1;
    }
    t->queued = 1;
    if (ok) ok = send_stmt(t->c, s, n, values, lengths) == 0;
    if (ok && t->c->qlen < MAX_QUEUED) return KOFKA_OK;
    failure f;
    memset(&f, 0, sizeof f);
    if (ok && send_sync(t->c) == 0 && drain(t->c, t->qstart, (size_t)-1, NULL, &t->xid, NULL, &f) == 0) return KOFKA_OK;
    if (!f.happened) {
        f.happened = 1;
        f.lost = 1;
        f.stmt = s;
        first_line(f.message, sizeof f.message, PQerrorMessage(t->c->pg));
    }
    t->dead = 1;
    if (f.lost) {
        conn_drop(t->c);
        t->c = NULL;
        if (t->writable) t->st->writer = NULL;
    }
    return t->dead_code = failure_error(t, &f, op);
}

static void txn_free(pgtxn *t) {
    PQclear(t->last);
    free(t->logs);
    free(t->buf);
    free(t);
}

/** Ends a transaction whose connection is healthy: ROLLBACK is sent, its answer read later. */
static void send_rollback(pgtxn *t) {
    if (!t->c || !t->c->pg) return;
    if (!t->begun) return;
    if (send_stmt(t->c, S_ROLLBACK, 0, NULL, NULL) < 0 || send_sync(t->c) < 0) {
        conn_drop(t->c);
        t->c = NULL;
        if (t->writable) t->st->writer = NULL;
    }
}

/** Finishes t: the writer lock released, a reader connection back to the pool. */
static void txn_end(pgtxn *t) {
    pgstore *st = t->st;
    if (t->writable) {
        st->writer = t->c;
        pthread_mutex_unlock(&st->writer_lock);
    } else {
        pool_give(st, t->c);
    }
    txn_free(t);
}

static void pg_rollback(void *txn) {
    pgtxn *t = txn;
    if (!t) return;
    send_rollback(t);
    txn_end(t);
}

/**
 * The commit of a write whose answer was lost: asks a new session for the fate of t->xid.
 * KOFKA_OK (committed), KOFKA_ERR_BUSY (aborted: nothing written) or KOFKA_ERR_TIMED_OUT.
 */
static kofka_err resolve_commit(pgtxn *t, const char *why) {
    pgstore *st = t->st;
    char err[512] = "";
    if (t->xid < 0)
        return fail(KOFKA_ERR_TIMED_OUT, "commit: the connection to PostgreSQL at %s was lost before the answer to COMMIT (%s), "
                    "and before the transaction id was known: the outcome is unknown", st->where, why);
    uint64_t deadline = mono_ns() + (uint64_t)st->lock_timeout_ms * 1000000u;
    for (;;) {
        if (!t->c) t->c = conn_open(st, deadline, err, sizeof err);
        if (!t->c) break;
        be8 x = p8(t->xid);
        const char *v[] = {(const char *)&x};
        const int l[] = {8};
        failure f;
        PGresult *r = NULL;
        if (send_stmt(t->c, S_STATUS, 1, v, l) == 0 && send_sync(t->c) == 0 && drain(t->c, 0, 0, &r, NULL, NULL, &f) == 0) {
            const char *status = PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0);
            char s[32];
            snprintf(s, sizeof s, "%.*s", PQgetlength(r, 0, 0), status);
            PQclear(r);
            if (strcmp(s, "committed") == 0) return KOFKA_OK;
            if (strcmp(s, "aborted") == 0)
                return fail(KOFKA_ERR_BUSY, "commit: the connection to PostgreSQL at %s was lost during COMMIT (%s); "
                            "the transaction (id %" PRId64 ") was rolled back: nothing written", st->where, why, t->xid);
            if (strcmp(s, "in progress") != 0) {
                snprintf(err, sizeof err, "txid_status(%" PRId64 ") is '%s'", t->xid, s);
                break;
            }
            if (mono_ns() >= deadline) {
                snprintf(err, sizeof err, "transaction %" PRId64 " is still in progress", t->xid);
                break;
            }
            sleep_ms(5);
            continue;
        }
        PQclear(r);
        snprintf(err, sizeof err, "%s", f.message);
        conn_drop(t->c);
        t->c = NULL;
        if (mono_ns() >= deadline) break;
        sleep_ms(10);
    }
    return fail(KOFKA_ERR_TIMED_OUT, "commit: the connection to PostgreSQL at %s was lost before the answer to COMMIT (%s); "
                "its fate could not be learnt within postgresql.lock.timeout.ms (%s): the outcome is unknown",
                st->where, why, err[0] ? err : "no server");
}

static kofka_err pg_commit(void *txn) {
    pgtxn *t = txn;
    if (!t) return fail(KOFKA_ERR_STORAGE, "commit: no transaction");
    pgstore *st = t->st;
    if (t->dead) {
        kofka_err rc = dead_error(t);
        send_rollback(t);
        txn_end(t);
        return rc;
    }
    if (!t->writable || !t->changed) {
        /* Nothing written: ending the snapshot (or the lock) needs no answer. */
        send_rollback(t);
        txn_end(t);
        return KOFKA_OK;
    }
    size_t commit_pos = 0;
    int committed = 0, sent = 1;
    failure f;
    memset(&f, 0, sizeof f);
    if (!t->c || !t->c->pg) sent = 0;
    if (sent && send_stmt(t->c, S_NOTIFY, 0, NULL, NULL) < 0) sent = 0;
    if (sent) commit_pos = t->c->qlen;
    if (sent && (send_stmt(t->c, S_COMMIT, 0, NULL, NULL) < 0 || send_sync(t->c) < 0)) sent = 0;
    if (sent && drain(t->c, t->qstart, (size_t)-1, NULL, &t->xid, &committed, &f) == 0 && committed) {
        note_changes(st, 1);
        txn_end(t);
        return KOFKA_OK;
    }
    kofka_err rc;
    if (!sent && !committed) {
        /* libpq could not send COMMIT: it never reached the server */
        char line[300];
        first_line(line, sizeof line, t->c && t->c->pg ? PQerrorMessage(t->c->pg) : "no connection");
        rc = fail(KOFKA_ERR_BUSY, "commit: the connection to PostgreSQL at %s was lost before COMMIT was sent (%s); nothing written",
                  st->where, line);
        conn_drop(t->c);
        t->c = NULL;
    } else if (committed) {
        /* the COMMIT answer came, the connection broke afterwards */
        conn_drop(t->c);
        t->c = NULL;
        note_changes(st, 1);
        rc = KOFKA_OK;
    } else if (f.pos < commit_pos && f.server) {
        /* the server refused an earlier statement: it rolled the transaction back */
        rc = failure_error(t, &f, "commit");
        if (f.lost) { conn_drop(t->c); t->c = NULL; } else send_rollback(t);
    } else if (f.pos == commit_pos && f.server && !f.lost) {
        /* COMMIT itself was refused (e.g. a serialization failure): rolled back */
        rc = failure_error(t, &f, "commit");
        send_rollback(t);
    } else {
        /* The answer to COMMIT was lost: it may or may not have committed. */
        conn_drop(t->c);
        t->c = NULL;
        rc = resolve_commit(t, f.message);
        if (rc == KOFKA_OK) note_changes(st, 1);
    }
    if (t->c) __atomic_store_n(&st->writer_pid, t->c->pid, __ATOMIC_RELAXED);
    txn_end(t);
    return rc;
}

/* ---- key/value map ---------------------------------------------------------------------- */

static const char *nonnull(const void *p) { return p ? (const char *)p : ""; }

static kofka_err pg_get(void *txn, const char *key, size_t key_len, const void **value, size_t *value_len) {
    pgtxn *t = txn;
    PQclear(t->last);
    t->last = NULL;
    const char *v[] = {nonnull(key)};
    const int l[] = {(int)key_len};
    kofka_err rc = KOFKA_OK;
    PGresult *r = txn_exec(t, S_GET, 1, v, l, &rc, "get");
    if (!r) return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        *value = NULL;
        *value_len = 0;
        return KOFKA_OK;
    }
    t->last = r;
    *value = PQgetvalue(r, 0, 0);
    *value_len = (size_t)PQgetlength(r, 0, 0);
    return KOFKA_OK;
}

static kofka_err need_writable(pgtxn *t, const char *op) {
    if (t->writable) return KOFKA_OK;
    return fail(KOFKA_ERR_STORAGE, "%s inside a read transaction", op);
}

static kofka_err pg_put(void *txn, const char *key, size_t key_len, const void *value, size_t value_len) {
    pgtxn *t = txn;
    kofka_err rc = need_writable(t, "put");
    if (rc != KOFKA_OK) return rc;
    if (key_len > 0x3fffffff || value_len > 0x3fffffff) return fail(KOFKA_ERR_STORAGE, "put: key or value larger than 1 GB");
    const char *v[] = {nonnull(key), nonnull(value)};
    const int l[] = {(int)key_len, (int)value_len};
    t->changed = 1;
    return txn_queue(t, S_PUT, 2, v, l, "put");
}

static kofka_err pg_del(void *txn, const char *key, size_t key_len) {
    pgtxn *t = txn;
    kofka_err rc = need_writable(t, "delete");
    if (rc != KOFKA_OK) return rc;
    const char *v[] = {nonnull(key)};
    const int l[] = {(int)key_len};
    t->changed = 1;
    return txn_queue(t, S_DEL, 1, v, l, "delete");
}

static kofka_err pg_scan(void *txn, const char *lower, size_t lower_len, const char *upper, size_t upper_len,
                         kofka_storage_visit_kv visit, void *ctx) {
    pgtxn *t = txn;
    const char *v[] = {nonnull(lower), nonnull(upper)};
    const int l[] = {(int)lower_len, (int)upper_len};
    kofka_err rc = KOFKA_OK;
    PGresult *r = txn_exec(t, S_SCAN, 2, v, l, &rc, "scan");
    if (!r) return rc;
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        if (visit(ctx, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0), PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1)) != 0)
            break;
    }
    PQclear(r);
    return KOFKA_OK;
}

/* ---- partition logs -------------------------------------------------------------------- */

static kofka_err check_pnum(int64_t pnum) {
    if (pnum >= 0 && pnum < PNUM_LIMIT) return KOFKA_OK;
    return fail(KOFKA_ERR_INVALID_ARG, "partition number %" PRId64 " is outside 0..%" PRId64, pnum, PNUM_LIMIT - 1);
}

/** The cached log state of pnum in t, read once per transaction. NULL on failure (*rc). */
static logstate *log_of(pgtxn *t, int64_t pnum, kofka_err *rc) {
    for (size_t i = 0; i < t->nlogs; i++)
        if (t->logs[i].pnum == pnum) return &t->logs[i];
    be8 p = p8(pnum);
    const char *v[] = {(const char *)&p};
    const int l[] = {8};
    PGresult *r = txn_exec(t, S_LOG, 1, v, l, rc, "log state");
    if (!r) return NULL;
    logstate ls = {pnum, 0, 0, 0};
    if (PQntuples(r) == 1) {
        ls.start = get_i64be(PQgetvalue(r, 0, 0));
        ls.next = get_i64be(PQgetvalue(r, 0, 1));
        ls.bytes = get_i64be(PQgetvalue(r, 0, 2));
    }
    PQclear(r);
    if (t->nlogs == t->caplogs) {
        size_t cap = t->caplogs ? t->caplogs * 2 : 8;
        logstate *n = realloc(t->logs, cap * sizeof *n);
        if (!n) {
            *rc = fail(KOFKA_ERR_STORAGE, "out of memory");
            return NULL;
        }
        t->logs = n;
        t->caplogs = cap;
    }
    t->logs[t->nlogs] = ls;
    return &t->logs[t->nlogs++];
}

static kofka_err pg_log_state(void *txn, int64_t pnum, int64_t *start, int64_t *next, int64_t *bytes) {
    pgtxn *t = txn;
    kofka_err rc = check_pnum(pnum);
    if (rc != KOFKA_OK) return rc;
    logstate *ls = log_of(t, pnum, &rc);
    if (!ls) return rc;
    *start = ls->start;
    *next = ls->next;
    *bytes = ls->bytes;
    return KOFKA_OK;
}

static unsigned char *txn_buffer(pgtxn *t, size_t size) {
    if (size <= t->bufcap) return t->buf;
    size_t cap = t->bufcap ? t->bufcap : 4096;
    while (cap < size) cap *= 2;
    unsigned char *b = realloc(t->buf, cap);
    if (!b) return NULL;
    t->buf = b;
    t->bufcap = cap;
    return b;
}

static int64_t len_or_zero(int64_t len) { return len < 0 ? 0 : len; }

static kofka_err pg_append(void *txn, int64_t pnum, int64_t txn_id, const kofka_stored_record *records, size_t count,
                           int64_t *base_out) {
    pgtxn *t = txn;
    kofka_err rc = need_writable(t, "append");
    if (rc == KOFKA_OK) rc = check_pnum(pnum);
    if (rc != KOFKA_OK) return rc;
    if (count == 0 || !records) return fail(KOFKA_ERR_INVALID_ARG, "append: no records");
    logstate *ls = log_of(t, pnum, &rc);
    if (!ls) return rc;
    int64_t base = ls->next;
    if ((int64_t)count > OFFSET_LIMIT - base || count > INT32_MAX)
        return fail(KOFKA_ERR_STORAGE, "partition %" PRId64 " is full: %" PRId64 " + %zu records exceed 2^40 offsets", pnum, base, count);
    size_t size = 0;
    int64_t bytes = 0;
    for (size_t i = 0; i < count; i++) {
        const kofka_stored_record *r = &records[i];
        if (r->key_len > INT32_MAX || r->value_len > INT32_MAX || r->headers_len > INT32_MAX || r->key_len < -1 ||
            r->value_len < -1 || r->headers_len < -1)
            return fail(KOFKA_ERR_INVALID_ARG, "append: record %zu has an invalid length", i);
        int64_t n = len_or_zero(r->key_len) + len_or_zero(r->value_len) + len_or_zero(r->headers_len);
        size += RECORD_HEADER + (size_t)n;
        bytes += n;
        if (size > MAX_BATCH_DATA)
            return fail(KOFKA_ERR_STORAGE, "append: a batch of %zu records is larger than %d MB", count, MAX_BATCH_DATA >> 20);
    }
    unsigned char *buf = txn_buffer(t, size), *p = buf;
    if (!buf) return fail(KOFKA_ERR_STORAGE, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const kofka_stored_record *r = &records[i];
        put_u32le(p, (uint32_t)i);
        put_u64le(p + 4, (uint64_t)r->timestamp_ms);
        put_u32le(p + 12, (uint32_t)(int32_t)r->key_len);
        put_u32le(p + 16, (uint32_t)(int32_t)r->value_len);
        put_u32le(p + 20, (uint32_t)(int32_t)r->headers_len);
        p += RECORD_HEADER;
        if (r->key_len > 0) { memcpy(p, r->key, (size_t)r->key_len); p += r->key_len; }
        if (r->value_len > 0) { memcpy(p, r->value, (size_t)r->value_len); p += r->value_len; }
        if (r->headers_len > 0) { memcpy(p, r->headers, (size_t)r->headers_len); p += r->headers_len; }
    }
    int64_t stop = base + (int64_t)count;
    be8 a = p8(pnum), b = p8(base), s = p8(stop), x = p8(txn_id), by = p8(bytes);
    be4 n = p4((int32_t)count);
    const char *v[] = {(const char *)&a, (const char *)&b, (const char *)&s, (const char *)&x, (const char *)&n, (const char *)&by,
                       (const char *)buf};
    const int l[] = {8, 8, 8, 8, 4, 8, (int)size};
    t->changed = 1;
    rc = txn_queue(t, S_APPEND, 7, v, l, "append");
    if (rc != KOFKA_OK) return rc;
    ls->next = stop;
    ls->bytes += bytes;
    *base_out = base;
    return KOFKA_OK;
}

/** A packed record, parsed. */
typedef struct unpacked {
    int64_t offset, ts;
    int32_t klen, vlen, hlen;
    const unsigned char *key, *value, *headers;
    size_t size;            /* bytes it takes in the packed data */
} unpacked;

/** Parses the record at *p (end: the data's end). 0, or -1 when the data is damaged. */
static int unpack(const unsigned char **p, const unsigned char *end, int64_t base, unpacked *u) {
    const unsigned char *q = *p;
    if (end - q < RECORD_HEADER) return -1;
    u->offset = base + (int64_t)get_u32le(q);
    u->ts = (int64_t)get_u64le(q + 4);
    u->klen = (int32_t)get_u32le(q + 12);
    u->vlen = (int32_t)get_u32le(q + 16);
    u->hlen = (int32_t)get_u32le(q + 20);
    if (u->klen < -1 || u->vlen < -1 || u->hlen < -1) return -1;
    q += RECORD_HEADER;
    int64_t need = len_or_zero(u->klen) + len_or_zero(u->vlen) + len_or_zero(u->hlen);
    if (end - q < need) return -1;
    u->key = q; q += len_or_zero(u->klen);
    u->value = q; q += len_or_zero(u->vlen);
    u->headers = q; q += len_or_zero(u->hlen);
    u->size = (size_t)(q - *p);
    *p = q;
    return 0;
}

static kofka_err damaged(pgtxn *t, int64_t pnum, int64_t base) {
    return fail(KOFKA_ERR_STORAGE, "the batch at offset %" PRId64 " of partition %" PRId64 " in PostgreSQL %s (schema \"%s\") is damaged",
                base, pnum, t->st->where, t->st->schema);
}

static kofka_err pg_read(void *txn, int64_t pnum, int64_t from, int64_t below, size_t max_count, kofka_storage_visit_record visit,
                         void *ctx, size_t *visited) {
    pgtxn *t = txn;
    kofka_err rc = check_pnum(pnum);
    if (rc != KOFKA_OK) return rc;
    int64_t lo = from < 0 ? 0 : from, hi = below > OFFSET_LIMIT ? OFFSET_LIMIT : below;
    size_t seen = 0;
    int64_t window = max_count > (size_t)OFFSET_LIMIT ? OFFSET_LIMIT : (int64_t)max_count;
    int stop = 0;
    while (lo < hi && seen < max_count && !stop) {
        int64_t upper = hi - lo > window ? lo + window : hi;
        be8 a = p8(pnum), b = p8(lo), c = p8(upper);
        const char *v[] = {(const char *)&a, (const char *)&b, (const char *)&c};
        const int l[] = {8, 8, 8};
        PGresult *r = txn_exec(t, S_READ, 3, v, l, &rc, "read");
        if (!r) {
            *visited = seen;
            return rc;
        }
        int rows = PQntuples(r);
        int64_t reached = upper;
        for (int i = 0; i < rows && !stop && seen < max_count; i++) {
            int64_t base = get_i64be(PQgetvalue(r, i, 0)), end_off = get_i64be(PQgetvalue(r, i, 1));
            int64_t txn_id = get_i64be(PQgetvalue(r, i, 2));
            const unsigned char *p = (const unsigned char *)PQgetvalue(r, i, 3), *end = p + PQgetlength(r, i, 3);
            if (end_off > reached) reached = end_off;
            while (p < end && seen < max_count) {
                unpacked u;
                if (unpack(&p, end, base, &u) < 0) {
                    PQclear(r);
                    *visited = seen;
                    return damaged(t, pnum, base);
                }
                if (u.offset < lo || u.offset >= hi) continue;
                kofka_stored_record rec = {u.offset, txn_id, u.ts, u.key, u.klen, u.value, u.vlen, u.headers, u.hlen};
                seen++;
                if (visit(ctx, &rec) != 0) {
                    stop = 1;
                    break;
                }
            }
        }
        PQclear(r);
        lo = reached;
        window = window > OFFSET_LIMIT / 2 ? OFFSET_LIMIT : window * 2;
    }
    *visited = seen;
    return KOFKA_OK;
}

/**
 * Rewrites the batch (pnum, base) keeping the records `keep` says yes to; deletes the row when
 * none is left. *freed receives the bytes dropped.
 */
static kofka_err rewrite_batch(pgtxn *t, int64_t pnum, int64_t base, const unsigned char *data, size_t len, int64_t old_bytes,
                               int (*keep)(int64_t offset, void *arg), void *arg, int64_t *freed) {
    unsigned char *buf = txn_buffer(t, len ? len : 1), *o = buf;
    if (!buf) return fail(KOFKA_ERR_STORAGE, "out of memory");
    const unsigned char *p = data, *end = data + len;
    int32_t n = 0;
    int64_t bytes = 0;
    while (p < end) {
        const unsigned char *at = p;
        unpacked u;
        if (unpack(&p, end, base, &u) < 0) return damaged(t, pnum, base);
        if (!keep(u.offset, arg)) continue;
        memmove(o, at, u.size);
        o += u.size;
        n++;
        bytes += len_or_zero(u.klen) + len_or_zero(u.vlen) + len_or_zero(u.hlen);
    }
    *freed = old_bytes - bytes;
    be8 a = p8(pnum), b = p8(base);
    if (n == 0) {
        const char *v[] = {(const char *)&a, (const char *)&b};
        const int l[] = {8, 8};
        return txn_queue(t, S_BATCH_DEL, 2, v, l, "delete a batch");
    }
    if (*freed == 0 && (size_t)(o - buf) == len) return KOFKA_OK;   /* nothing removed */
    be4 nn = p4(n);
    be8 by = p8(bytes);
    const char *v[] = {(const char *)&a, (const char *)&b, (const char *)&nn, (const char *)&by, (const char *)buf};
    const int l[] = {8, 8, 4, 8, (int)(o - buf)};
    return txn_queue(t, S_BATCH_SET, 5, v, l, "rewrite a batch");
}

static int keep_from(int64_t offset, void *arg) { return offset >= *(const int64_t *)arg; }

static kofka_err pg_truncate(void *txn, int64_t pnum, int64_t before, int64_t *start) {
    pgtxn *t = txn;
    kofka_err rc = need_writable(t, "truncate");
    if (rc == KOFKA_OK) rc = check_pnum(pnum);
    if (rc != KOFKA_OK) return rc;
    logstate *ls = log_of(t, pnum, &rc);
    if (!ls) return rc;
    int64_t target = before < ls->next ? before : ls->next;
    if (target <= ls->start) {
        *start = ls->start;
        return KOFKA_OK;
    }
    t->changed = 1;
    be8 a = p8(pnum), b = p8(target);
    const char *v[] = {(const char *)&a, (const char *)&b};
    const int l[] = {8, 8};
    PGresult *r = txn_exec(t, S_CUT, 2, v, l, &rc, "truncate");
    if (!r) return rc;
    int64_t freed = get_i64be(PQgetvalue(r, 0, 0));
    PQclear(r);
    /* the batch that straddles the new start, if any */
    r = txn_exec(t, S_BATCH_AT, 2, v, l, &rc, "truncate");
    if (!r) return rc;
    if (PQntuples(r) == 1 && get_i64be(PQgetvalue(r, 0, 1)) > target) {
        int64_t more = 0;
        rc = rewrite_batch(t, pnum, get_i64be(PQgetvalue(r, 0, 0)), (const unsigned char *)PQgetvalue(r, 0, 5),
                           (size_t)PQgetlength(r, 0, 5), get_i64be(PQgetvalue(r, 0, 4)), keep_from, &target, &more);
        freed += more;
    }
    PQclear(r);
    if (rc != KOFKA_OK) return rc;
    be8 f = p8(freed);
    const char *v3[] = {(const char *)&a, (const char *)&b, (const char *)&f};
    const int l3[] = {8, 8, 8};
    rc = txn_queue(t, S_LOG_CUT, 3, v3, l3, "truncate");
    if (rc != KOFKA_OK) return rc;
    ls->start = target;
    ls->bytes -= freed;
    *start = target;
    return KOFKA_OK;
}

/** The offsets a compaction removes from one batch: offsets[i..j) (ascending). */
typedef struct removal {
    const int64_t *offsets;
    size_t i, j;
} removal;

static int keep_unremoved(int64_t offset, void *arg) {
    removal *rm = arg;
    while (rm->i < rm->j && rm->offsets[rm->i] < offset) rm->i++;
    return !(rm->i < rm->j && rm->offsets[rm->i] == offset);
}

static kofka_err pg_remove(void *txn, int64_t pnum, const int64_t *offsets, size_t count) {
    pgtxn *t = txn;
    kofka_err rc = need_writable(t, "remove");
    if (rc == KOFKA_OK) rc = check_pnum(pnum);
    if (rc != KOFKA_OK) return rc;
    logstate *ls = log_of(t, pnum, &rc);
    if (!ls) return rc;
    int64_t freed = 0;
    size_t i = 0;
    while (i < count) {
        int64_t o = offsets[i];
        if (o < ls->start || o >= ls->next) { i++; continue; }
        be8 a = p8(pnum), b = p8(o);
        const char *v[] = {(const char *)&a, (const char *)&b};
        const int l[] = {8, 8};
        PGresult *r = txn_exec(t, S_BATCH_AT, 2, v, l, &rc, "remove");
        if (!r) return rc;
        if (PQntuples(r) != 1 || get_i64be(PQgetvalue(r, 0, 1)) <= o) {   /* not held */
            PQclear(r);
            i++;
            continue;
        }
        int64_t base = get_i64be(PQgetvalue(r, 0, 0)), stop = get_i64be(PQgetvalue(r, 0, 1));
        size_t j = i;
        while (j < count && offsets[j] < stop) j++;
        removal rm = {offsets, i, j};
        int64_t more = 0;
        t->changed = 1;
        rc = rewrite_batch(t, pnum, base, (const unsigned char *)PQgetvalue(r, 0, 5), (size_t)PQgetlength(r, 0, 5),
                           get_i64be(PQgetvalue(r, 0, 4)), keep_unremoved, &rm, &more);
        PQclear(r);
        if (rc != KOFKA_OK) return rc;
        freed += more;
        i = j;
    }
    if (freed == 0) return KOFKA_OK;
    be8 a = p8(pnum), f = p8(freed);
    const char *v[] = {(const char *)&a, (const char *)&f};
    const int l[] = {8, 8};
    rc = txn_queue(t, S_LOG_SHRINK, 2, v, l, "remove");
    if (rc != KOFKA_OK) return rc;
    ls->bytes -= freed;
    return KOFKA_OK;
}

/* ---- change notification ------------------------------------------------------------------ */

static uint64_t pg_change_token(void *instance) {
    pgstore *st = instance;
    pthread_mutex_lock(&st->sig_lock);
    uint64_t v = st->changes;
    pthread_mutex_unlock(&st->sig_lock);
    return v;
}

static void pg_wait_for_change(void *instance, uint64_t token, uint64_t timeout_ns) {
    pgstore *st = instance;
    if (timeout_ns > 86400000000000ull) timeout_ns = 86400000000000ull;   /* a day */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + timeout_ns % 1000000000u;
    ts.tv_sec += (time_t)(timeout_ns / 1000000000u + ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    pthread_mutex_lock(&st->sig_lock);
    uint64_t wakes = st->wakes;
    while (st->changes == token && st->wakes == wakes && !st->closing) {
        if (pthread_cond_timedwait(&st->sig, &st->sig_lock, &ts) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&st->sig_lock);
}

static void pg_wake_all(void *instance) {
    pgstore *st = instance;
    pthread_mutex_lock(&st->sig_lock);
    st->wakes++;
    pthread_cond_broadcast(&st->sig);
    pthread_mutex_unlock(&st->sig_lock);
}

/* ---- registration ---------------------------------------------------------------------------- */

static const kofka_storage_ops pg_ops = {
    .struct_size = sizeof(kofka_storage_ops),
    .open = pg_open,
    .close = pg_close,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .get = pg_get,
    .put = pg_put,
    .del = pg_del,
    .scan = pg_scan,
    .log_state = pg_log_state,
    .append = pg_append,
    .read = pg_read,
    .truncate = pg_truncate,
    .remove = pg_remove,
    .change_token = pg_change_token,
    .wait_for_change = pg_wait_for_change,
    .wake_all = pg_wake_all,
    .reclaim_space = NULL,   /* autovacuum gives space back */
};

static int registered;

kofka_err kofka_plugin_init(const char *const *config, char *errstr, size_t errstr_size) {
    (void)config;
    if (registered) return KOFKA_OK;   /* the same image loaded under a second path */
    static char postgresql[] = "postgresql", postgres[] = "postgres";
    kofka_err rc = kofka_storage_register(postgresql, &pg_ops, postgresql);
    if (rc == KOFKA_OK) rc = kofka_storage_register(postgres, &pg_ops, postgres);
    if (rc != KOFKA_OK) {
        if (errstr && errstr_size) snprintf(errstr, errstr_size, "registering the storage schemes postgresql: and postgres: failed: %s",
                                            kofka_last_error() ? kofka_last_error() : kofka_err_name(rc));
        return rc;
    }
    registered = 1;
    return KOFKA_OK;
}
