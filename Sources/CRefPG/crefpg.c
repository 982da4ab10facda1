/*
 * crefpg.c — the raw PostgreSQL reference of `kofka-bench postgres` (include/crefpg.h).
 * libpq only: prepared statements, binary parameters and results, one statement per
 * transaction (autocommit), so each batch is one round trip and one commit.
 */
#define _GNU_SOURCE
#include "crefpg.h"

#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#define INT8OID 20
#define INT4OID 23
#define BYTEAOID 17
#define RECORD_HEADER 24   /* the plugin's packed record head: u32 delta, i64 ts, 3 x i32 length */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void first_line(char *out, size_t size, const char *msg) {
    if (!size) return;
    if (!msg) msg = "";
    size_t n = strcspn(msg, "\n");
    if (n >= size) n = size - 1;
    memcpy(out, msg, n);
    out[n] = '\0';
}

static double failed(char *err, size_t err_size, const char *what, const char *msg) {
    char line[400];
    first_line(line, sizeof line, msg);
    snprintf(err, err_size, "%s: %s", what, line);
    return -1;
}

static PGconn *connect_to(const char *conninfo, char *err, size_t err_size) {
    PGconn *pg = PQconnectdb(conninfo);
    if (!pg) {
        snprintf(err, err_size, "libpq: out of memory");
        return NULL;
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        failed(err, err_size, "cannot connect to PostgreSQL", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    PGresult *r = PQexec(pg, "SET client_min_messages TO warning");
    PQclear(r);
    return pg;
}

/** Runs sql (no parameters); 0, or -1 with err. */
static int run(PGconn *pg, const char *sql, char *err, size_t err_size) {
    PGresult *r = PQexec(pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) failed(err, err_size, sql, PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

static int prepare(PGconn *pg, const char *name, const char *sql, int n, const Oid *types, char *err, size_t err_size) {
    PGresult *r = PQprepare(pg, name, sql, n, types);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) failed(err, err_size, "prepare", PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

static void put_u32le(unsigned char *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put_u64le(unsigned char *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static uint32_t get_u32le(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static int64_t get_i64be(const char *p) { uint64_t v; memcpy(&v, p, 8); return (int64_t)be64toh(v); }

/** Runs prepared statement `name` (parameter formats f), expecting no rows; 0, or -1 with err. */
static int exec_write(PGconn *pg, const char *name, int n, const char *const *v, const int *l, const int *f, char *err,
                      size_t err_size) {
    PGresult *r = PQexecPrepared(pg, name, n, v, l, f, 1);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) failed(err, err_size, name, PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

/**
 * Reads the answers of the n statements sent since the last sync, then the sync's. The answer
 * of statement `keep` (0-based; -1: none) is handed back in *kept. 0, or -1 with err.
 */
static int drain(PGconn *pg, int n, int keep, PGresult **kept, char *err, size_t err_size) {
    int bad = 0;
    if (kept) *kept = NULL;
    for (int i = 0; i < n; i++) {
        PGresult *r = PQgetResult(pg);
        if (!r) {
            if (!bad) failed(err, err_size, "pipeline", PQerrorMessage(pg));
            return -1;
        }
        ExecStatusType es = PQresultStatus(r);
        if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
            if (!bad) failed(err, err_size, "pipeline", PQresultErrorMessage(r));
            bad = 1;
        }
        if (i == keep && kept && !bad) *kept = r;
        else PQclear(r);
        PGresult *end = PQgetResult(pg);   /* the NULL that ends a statement's answers */
        PQclear(end);
    }
    PGresult *s = PQgetResult(pg);
    if (!s || PQresultStatus(s) != PGRES_PIPELINE_SYNC) {
        if (!bad) failed(err, err_size, "pipeline sync", s ? PQresultErrorMessage(s) : PQerrorMessage(pg));
        bad = 1;
    }
    PQclear(s);
    if (bad && kept && *kept) { PQclear(*kept); *kept = NULL; }
    return bad ? -1 : 0;
}

static int send_prepared(PGconn *pg, const char *name, int n, const char *const *v, const int *l) {
    static const int binary[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    return PQsendQueryPrepared(pg, name, n, v, l, binary, 1) ? 0 : -1;
}

/** The plugin's statements around an append or a read (postgresql.c, `statements`). */
static int prepare_txn(PGconn *pg, const char *q, char *err, size_t err_size) {
    char sql[512];
    const Oid t1[1] = {INT8OID}, t2[2] = {INT4OID, INT4OID};
    if (prepare(pg, "begin_w", "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE", 0, NULL, err, err_size) < 0) return -1;
    if (prepare(pg, "begin_r", "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", 0, NULL, err, err_size) < 0) return -1;
    if (prepare(pg, "lock_timeout", "SELECT set_config('lock_timeout', $1::text || 'ms', true)", 1, t1, err, err_size) < 0) return -1;
    if (prepare(pg, "lock", "SELECT pg_advisory_xact_lock($1, $2), txid_current()", 2, t2, err, err_size) < 0) return -1;
    snprintf(sql, sizeof sql, "SELECT start, next, bytes FROM %s.logs WHERE pnum = $1", q);
    if (prepare(pg, "log", sql, 1, t1, err, err_size) < 0) return -1;
    if (prepare(pg, "notify", "SELECT pg_notify('crefpg_bench', '')", 0, NULL, err, err_size) < 0) return -1;
    if (prepare(pg, "commit", "COMMIT", 0, NULL, err, err_size) < 0) return -1;
    if (prepare(pg, "rollback", "ROLLBACK", 0, NULL, err, err_size) < 0) return -1;
    return 0;
}

/** The multi-row INSERT of k rows: ($1 = pnum, then off, ts, value per row). Malloc'd. */
static char *rows_insert(const char *q, int64_t k) {
    size_t cap = 128 + (size_t)k * 40, n = 0;
    char *sql = malloc(cap);
    if (!sql) return NULL;
    n += (size_t)snprintf(sql, cap, "INSERT INTO %s.rows (pnum, off, ts, value) VALUES ", q);
    for (int64_t i = 0; i < k; i++)
        n += (size_t)snprintf(sql + n, cap - n, "%s($1, $%lld, $%lld, $%lld)", i ? ", " : "", (long long)(2 + 3 * i),
                              (long long)(3 + 3 * i), (long long)(4 + 3 * i));
    return sql;
}

double crefpg_produce(const char *conninfo, const char *schema, int layout, int64_t count, size_t size, int64_t batch,
                      char *err, size_t err_size) {
    if (batch < 1 || count < 0 || size > 0x3fffffff || batch > 20000) {
        snprintf(err, err_size, "crefpg_produce: invalid arguments");
        return -1;
    }
    PGconn *pg = connect_to(conninfo, err, err_size);
    if (!pg) return -1;
    double result = -1;
    char *q = PQescapeIdentifier(pg, schema, strlen(schema));
    char sql[2048];
    unsigned char *value = malloc(size ? size : 1), *packed = NULL;
    char **vals = NULL;
    int *lens = NULL, *fmts = NULL;
    Oid *types = NULL;
    uint64_t *ints = NULL;
    char *ins = NULL;
    if (!q || !value) goto oom;
    for (size_t i = 0; i < size; i++) value[i] = (unsigned char)(i * 131 + 7);
    if (layout == CREFPG_ROWS) {
        snprintf(sql, sizeof sql,
                 "CREATE SCHEMA %s; CREATE TABLE %s.rows (pnum bigint NOT NULL, off bigint NOT NULL, ts bigint NOT NULL, "
                 "key bytea, value bytea, PRIMARY KEY (pnum, off))", q, q);
    } else {
        /* The plugin's tables (postgresql.c, prepare_schema). */
        snprintf(sql, sizeof sql,
                 "CREATE SCHEMA %s; CREATE TABLE %s.logs (pnum bigint PRIMARY KEY, start bigint NOT NULL DEFAULT 0, "
                 "next bigint NOT NULL DEFAULT 0, bytes bigint NOT NULL DEFAULT 0); "
                 "CREATE TABLE %s.batches (pnum bigint NOT NULL, base bigint NOT NULL, stop bigint NOT NULL, "
                 "txn bigint NOT NULL, n integer NOT NULL, bytes bigint NOT NULL, data bytea NOT NULL, PRIMARY KEY (pnum, base)); "
                 "ALTER TABLE %s.batches ALTER COLUMN data SET STORAGE EXTERNAL", q, q, q, q);
    }
    if (run(pg, sql, err, err_size) < 0) goto done;

    if (layout == CREFPG_ROWS) {
        int np = (int)(1 + 3 * batch);
        vals = calloc((size_t)np, sizeof *vals);
        lens = calloc((size_t)np, sizeof *lens);
        fmts = calloc((size_t)np, sizeof *fmts);
        types = calloc((size_t)np, sizeof *types);
        ints = calloc((size_t)(1 + 2 * batch), sizeof *ints);
        if (!vals || !lens || !fmts || !types || !ints) goto oom;
        for (int i = 0; i < np; i++) {
            fmts[i] = 1;
            types[i] = (i == 0 || (i - 1) % 3 != 2) ? INT8OID : BYTEAOID;
        }
        int64_t prepared = 0;   /* the batch size of statement "ins" (the last batch may be smaller: "ins_tail") */
        int64_t off = 0;
        double t0 = now_s();
        while (off < count) {
            int64_t k = count - off < batch ? count - off : batch;
            const char *name = k == batch ? "ins" : "ins_tail";
            if (k != batch || !prepared) {
                free(ins);
                ins = rows_insert(q, k);
                if (!ins) goto oom;
                if (prepare(pg, name, ins, (int)(1 + 3 * k), types, err, err_size) < 0) goto done;
                if (k == batch) prepared = 1;
            }
            ints[0] = htobe64(0);
            vals[0] = (char *)&ints[0];
            lens[0] = 8;
            for (int64_t i = 0; i < k; i++) {
                ints[1 + 2 * i] = htobe64((uint64_t)(off + i));
                ints[2 + 2 * i] = htobe64(0);
                vals[1 + 3 * i] = (char *)&ints[1 + 2 * i];
                lens[1 + 3 * i] = 8;
                vals[2 + 3 * i] = (char *)&ints[2 + 2 * i];
                lens[2 + 3 * i] = 8;
                vals[3 + 3 * i] = (char *)value;
                lens[3 + 3 * i] = (int)size;
            }
            if (exec_write(pg, name, (int)(1 + 3 * k), (const char *const *)vals, lens, fmts, err, err_size) < 0) goto done;
            off += k;
        }
        result = now_s() - t0;
    } else {
        /* The plugin's append statement (S_APPEND): the batch row and the logs upsert. */
        snprintf(sql, sizeof sql,
                 "WITH b AS (INSERT INTO %s.batches (pnum, base, stop, txn, n, bytes, data) VALUES ($1, $2, $3, $4, $5, $6, $7)) "
                 "INSERT INTO %s.logs AS l (pnum, start, next, bytes) VALUES ($1, 0, $3, $6) "
                 "ON CONFLICT (pnum) DO UPDATE SET next = EXCLUDED.next, bytes = l.bytes + EXCLUDED.bytes", q, q);
        const Oid t7[7] = {INT8OID, INT8OID, INT8OID, INT8OID, INT4OID, INT8OID, BYTEAOID};
        if (prepare(pg, "append", sql, 7, t7, err, err_size) < 0) goto done;
        int txn = layout == CREFPG_PLUGIN_TXN;
        if (txn && (prepare_txn(pg, q, err, err_size) < 0)) goto done;
        if (txn && !PQenterPipelineMode(pg)) { failed(err, err_size, "pipeline mode", PQerrorMessage(pg)); goto done; }
        packed = malloc((size_t)batch * (RECORD_HEADER + size));
        if (!packed) goto oom;
        int64_t off = 0;
        double t0 = now_s();
        while (off < count) {
            int64_t k = count - off < batch ? count - off : batch;
            unsigned char *p = packed;
            for (int64_t i = 0; i < k; i++) {   /* packed as the plugin packs: no key, no headers */
                put_u32le(p, (uint32_t)i);
                put_u64le(p + 4, 0);
                put_u32le(p + 12, (uint32_t)-1);
                put_u32le(p + 16, (uint32_t)size);
                put_u32le(p + 20, (uint32_t)-1);
                memcpy(p + RECORD_HEADER, value, size);
                p += RECORD_HEADER + size;
            }
            uint64_t a = htobe64(0), b = htobe64((uint64_t)off), s = htobe64((uint64_t)(off + k)), x = htobe64((uint64_t)-1),
                     by = htobe64((uint64_t)k * size);
            uint32_t n = htobe32((uint32_t)k);
            const char *v[7] = {(char *)&a, (char *)&b, (char *)&s, (char *)&x, (char *)&n, (char *)&by, (char *)packed};
            const int l[7] = {8, 8, 8, 8, 4, 8, (int)(p - packed)};
            const int f[7] = {1, 1, 1, 1, 1, 1, 1};
            if (txn) {
                /* [BEGIN, lock_timeout, lock, log state], then [append, notify, COMMIT] */
                uint64_t ms = htobe64(5000), p0 = htobe64(0);
                uint32_t k1 = htobe32(0x4B4F464B), k2 = htobe32(1);
                const char *vt[1] = {(char *)&ms}, *vk[2] = {(char *)&k1, (char *)&k2}, *vp[1] = {(char *)&p0};
                const int lt[1] = {8}, lk[2] = {4, 4};
                if (send_prepared(pg, "begin_w", 0, NULL, NULL) < 0 || send_prepared(pg, "lock_timeout", 1, vt, lt) < 0 ||
                    send_prepared(pg, "lock", 2, vk, lk) < 0 || send_prepared(pg, "log", 1, vp, lt) < 0 || !PQpipelineSync(pg) ||
                    drain(pg, 4, -1, NULL, err, err_size) < 0) {
                    if (!err[0]) failed(err, err_size, "send", PQerrorMessage(pg));
                    goto done;
                }
                if (send_prepared(pg, "append", 7, v, l) < 0 || send_prepared(pg, "notify", 0, NULL, NULL) < 0 ||
                    send_prepared(pg, "commit", 0, NULL, NULL) < 0 || !PQpipelineSync(pg) || drain(pg, 3, -1, NULL, err, err_size) < 0) {
                    if (!err[0]) failed(err, err_size, "send", PQerrorMessage(pg));
                    goto done;
                }
                off += k;
                continue;
            }
            if (exec_write(pg, "append", 7, v, l, f, err, err_size) < 0) goto done;
            off += k;
        }
        result = now_s() - t0;
    }
    goto done;
oom:
    snprintf(err, err_size, "crefpg_produce: out of memory");
done:
    free(ins);
    free(vals);
    free(lens);
    free(fmts);
    free(types);
    free(ints);
    free(packed);
    free(value);
    PQfreemem(q);
    PQfinish(pg);
    return result;
}

double crefpg_consume(const char *conninfo, const char *schema, int layout, int64_t count, int64_t chunk, int64_t *read,
                      char *err, size_t err_size) {
    *read = 0;
    if (chunk < 1) {
        snprintf(err, err_size, "crefpg_consume: invalid chunk");
        return -1;
    }
    PGconn *pg = connect_to(conninfo, err, err_size);
    if (!pg) return -1;
    double result = -1;
    char *q = PQescapeIdentifier(pg, schema, strlen(schema));
    char sql[1024];
    unsigned char *copy = NULL;
    size_t copy_cap = 0;
    if (!q) {
        snprintf(err, err_size, "crefpg_consume: out of memory");
        goto done;
    }
    if (layout == CREFPG_ROWS)
        snprintf(sql, sizeof sql, "SELECT off, ts, key, value FROM %s.rows WHERE pnum = $1 AND off >= $2 AND off < $3 ORDER BY off", q);
    else   /* the plugin's read statement (S_READ) */
        snprintf(sql, sizeof sql,
                 "SELECT base, stop, txn, data FROM %s.batches WHERE pnum = $1 "
                 "AND base >= coalesce((SELECT max(base) FROM %s.batches WHERE pnum = $1 AND base <= $2), $2) "
                 "AND base < $3 AND stop > $2 ORDER BY base", q, q);
    const Oid t3[3] = {INT8OID, INT8OID, INT8OID};
    if (prepare(pg, "read", sql, 3, t3, err, err_size) < 0) goto done;
    int txn = layout == CREFPG_PLUGIN_TXN, open_txn = 0;
    if (txn && prepare_txn(pg, q, err, err_size) < 0) goto done;
    if (txn && !PQenterPipelineMode(pg)) { failed(err, err_size, "pipeline mode", PQerrorMessage(pg)); goto done; }
    int64_t got = 0, lo = 0;
    uint64_t sum = 0;
    double t0 = now_s();
    while (lo < count) {
        int64_t hi = count - lo < chunk ? count : lo + chunk;
        uint64_t a = htobe64(0), b = htobe64((uint64_t)lo), c = htobe64((uint64_t)hi);
        const char *v[3] = {(char *)&a, (char *)&b, (char *)&c};
        const int l[3] = {8, 8, 8}, f[3] = {1, 1, 1};
        PGresult *r = NULL;
        if (txn) {
            /* [ROLLBACK of the last read, BEGIN REPEATABLE READ, log state], then [read] */
            const char *vp[1] = {(char *)&a};
            if ((open_txn && send_prepared(pg, "rollback", 0, NULL, NULL) < 0) || send_prepared(pg, "begin_r", 0, NULL, NULL) < 0 ||
                send_prepared(pg, "log", 1, vp, l) < 0 || !PQpipelineSync(pg) || drain(pg, open_txn + 2, -1, NULL, err, err_size) < 0 ||
                send_prepared(pg, "read", 3, v, l) < 0 || !PQpipelineSync(pg) || drain(pg, 1, 0, &r, err, err_size) < 0) {
                if (!err[0]) failed(err, err_size, "send", PQerrorMessage(pg));
                goto done;
            }
            open_txn = 1;
        } else {
            r = PQexecPrepared(pg, "read", 3, v, l, f, 1);
        }
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            failed(err, err_size, "read", PQresultErrorMessage(r));
            PQclear(r);
            goto done;
        }
        int rows = PQntuples(r);
        int64_t before = got;
        for (int i = 0; i < rows; i++) {
            if (layout == CREFPG_ROWS) {
                size_t vlen = (size_t)PQgetlength(r, i, 3);
                if (vlen > copy_cap) {
                    free(copy);
                    copy_cap = vlen * 2;
                    copy = malloc(copy_cap);
                    if (!copy) { PQclear(r); snprintf(err, err_size, "out of memory"); goto done; }
                }
                memcpy(copy, PQgetvalue(r, i, 3), vlen);
                sum += get_i64be(PQgetvalue(r, i, 0)) + (vlen ? copy[vlen - 1] : 0);
                got++;
            } else {
                int64_t base = get_i64be(PQgetvalue(r, i, 0));
                const unsigned char *p = (const unsigned char *)PQgetvalue(r, i, 3), *end = p + PQgetlength(r, i, 3);
                while (end - p >= RECORD_HEADER) {
                    int64_t o = base + (int64_t)get_u32le(p);
                    int32_t kl = (int32_t)get_u32le(p + 12), vl = (int32_t)get_u32le(p + 16), hl = (int32_t)get_u32le(p + 20);
                    const unsigned char *val = p + RECORD_HEADER + (kl > 0 ? kl : 0);
                    p += RECORD_HEADER + (kl > 0 ? kl : 0) + (vl > 0 ? vl : 0) + (hl > 0 ? hl : 0);
                    if (p > end) { PQclear(r); snprintf(err, err_size, "batch at %lld is damaged", (long long)base); goto done; }
                    if (o < lo || o >= hi) continue;
                    size_t vlen = vl > 0 ? (size_t)vl : 0;
                    if (vlen > copy_cap) {
                        free(copy);
                        copy_cap = vlen * 2;
                        copy = malloc(copy_cap);
                        if (!copy) { PQclear(r); snprintf(err, err_size, "out of memory"); goto done; }
                    }
                    memcpy(copy, val, vlen);
                    sum += (uint64_t)o + (vlen ? copy[vlen - 1] : 0);
                    got++;
                }
            }
        }
        PQclear(r);
        if (got == before) break;   /* nothing more stored */
        lo = hi;
    }
    if (open_txn && (send_prepared(pg, "rollback", 0, NULL, NULL) < 0 || !PQpipelineSync(pg) || drain(pg, 1, -1, NULL, err, err_size) < 0)) {
        if (!err[0]) failed(err, err_size, "rollback", PQerrorMessage(pg));
        goto done;
    }
    result = now_s() - t0;
    *read = got;
    if (sum == 1) fputc(' ', stderr);   /* keeps the copies observable */
done:
    free(copy);
    PQfreemem(q);
    PQfinish(pg);
    return result;
}
