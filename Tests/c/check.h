/*
 * check.h — the tiny test harness shared by Tests/c/test_*.c.
 *
 * Every CHECK records a pass or a failure; a failure prints file:line, the
 * backend being tested, the expression, the expected and the actual value
 * (and kofka_last_error() for error codes). check_done() prints one
 * parseable tally line that Tests/c/run.sh sums:
 *
 *     @@TALLY passed=N failed=M
 *
 * A crash (SIGSEGV, SIGILL from a Swift trap, SIGABRT, ...) or a hang past
 * the time budget (SIGALRM) prints the tally so far plus a CRASH/TIMEOUT line
 * naming the last check reached, then re-raises the signal so the process
 * still dies of it (run.sh counts that as one more failure).
 *
 * Include this header first: it selects the POSIX feature level.
 */
#ifndef KOFKA_CHECK_H
#define KOFKA_CHECK_H

#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kofka.h"

static int check_passed;                 /* checks that held */
static int check_failed;                 /* checks that did not */
static const char *check_last_file = "(start)"; /* last check reached, for crash reports */
static int check_last_line;
static const char *check_context = "";   /* e.g. the backend: "memory:" */
static int check_printed_failures;       /* failures printed so far (capped) */

#define CHECK_MAX_PRINTED 60

static inline void check_fail_header(const char *file, int line) {
    check_failed++;
    if (check_printed_failures++ < CHECK_MAX_PRINTED)
        fprintf(stdout, "  FAIL %s:%d [%s] ", file, line, check_context);
}

static inline int check_verbose(void) { return check_printed_failures <= CHECK_MAX_PRINTED; }

static inline int check_bool(int ok, const char *expr, const char *file, int line) {
    check_last_file = file; check_last_line = line;
    if (ok) { check_passed++; return 1; }
    check_fail_header(file, line);
    if (check_verbose()) fprintf(stdout, "expected true: %s\n", expr);
    return 0;
}

static inline int check_eq_i64(long long expected, long long actual, const char *eexpr, const char *aexpr,
                        const char *file, int line) {
    check_last_file = file; check_last_line = line;
    if (expected == actual) { check_passed++; return 1; }
    check_fail_header(file, line);
    if (check_verbose())
        fprintf(stdout, "%s == %s: expected %lld, got %lld\n", aexpr, eexpr, expected, actual);
    return 0;
}

static inline int check_err(kofka_err expected, kofka_err actual, const char *expr, const char *file, int line) {
    check_last_file = file; check_last_line = line;
    if (expected == actual) { check_passed++; return 1; }
    const char *msg = kofka_last_error();
    check_fail_header(file, line);
    if (check_verbose())
        fprintf(stdout, "%s: expected %s, got %s (%d): \"%s\"\n", expr, kofka_err_name(expected),
                kofka_err_name(actual), (int)actual, msg ? msg : "(null)");
    return 0;
}

static inline int check_err2(kofka_err e1, kofka_err e2, kofka_err actual, const char *expr, const char *file,
                      int line) {
    check_last_file = file; check_last_line = line;
    if (actual == e1 || actual == e2) { check_passed++; return 1; }
    const char *msg = kofka_last_error();
    check_fail_header(file, line);
    if (check_verbose())
        fprintf(stdout, "%s: expected %s or %s, got %s (%d): \"%s\"\n", expr, kofka_err_name(e1),
                kofka_err_name(e2), kofka_err_name(actual), (int)actual, msg ? msg : "(null)");
    return 0;
}

static inline int check_str_eq(const char *expected, const char *actual, const char *aexpr, const char *file,
                        int line) {
    check_last_file = file; check_last_line = line;
    if (expected && actual && strcmp(expected, actual) == 0) { check_passed++; return 1; }
    check_fail_header(file, line);
    if (check_verbose())
        fprintf(stdout, "%s: expected \"%s\", got \"%s\"\n", aexpr, expected ? expected : "(null)",
                actual ? actual : "(null)");
    return 0;
}

static inline int check_contains(const char *hay, const char *needle, const char *hexpr, const char *file, int line) {
    check_last_file = file; check_last_line = line;
    if (hay && needle && strstr(hay, needle)) { check_passed++; return 1; }
    check_fail_header(file, line);
    if (check_verbose())
        fprintf(stdout, "%s: expected it to contain \"%s\", got \"%s\"\n", hexpr, needle, hay ? hay : "(null)");
    return 0;
}

static inline int check_mem_eq(const void *exp, size_t elen, const void *act, size_t alen, const char *aexpr,
                        const char *file, int line) {
    check_last_file = file; check_last_line = line;
    if (elen == alen && (elen == 0 || (exp && act && memcmp(exp, act, elen) == 0))) { check_passed++; return 1; }
    check_fail_header(file, line);
    if (check_verbose())
        fprintf(stdout, "%s: bytes differ (expected %zu bytes, got %zu bytes%s)\n", aexpr, elen, alen,
                (alen && !act) ? ", NULL pointer" : "");
    return 0;
}

/** CHECK(cond): cond must hold. */
#define CHECK(cond) check_bool(!!(cond), #cond, __FILE__, __LINE__)
/** CHECK_EQ(expected, actual) for integers. */
#define CHECK_EQ(exp, act) check_eq_i64((long long)(exp), (long long)(act), #exp, #act, __FILE__, __LINE__)
/** CHECK_OK(call): the call returns KOFKA_OK. */
#define CHECK_OK(call) check_err(KOFKA_OK, (call), #call, __FILE__, __LINE__)
/** CHECK_ERR(code, call): the call returns exactly code. */
#define CHECK_ERR(code, call) check_err((code), (call), #call, __FILE__, __LINE__)
/** CHECK_ERR2(a, b, call): the call returns a or b (where the contract allows either). */
#define CHECK_ERR2(a, b, call) check_err2((a), (b), (call), #call, __FILE__, __LINE__)
#define CHECK_STR_EQ(exp, act) check_str_eq((exp), (act), #act, __FILE__, __LINE__)
#define CHECK_CONTAINS(hay, needle) check_contains((hay), (needle), #hay, __FILE__, __LINE__)
#define CHECK_MEM_EQ(e, elen, a, alen) check_mem_eq((e), (elen), (a), (alen), #a, __FILE__, __LINE__)
/** The last error must be a non-empty message. */
#define CHECK_HAS_MESSAGE() check_bool(kofka_last_error() && kofka_last_error()[0] != '\0', \
                                       "kofka_last_error() is not empty", __FILE__, __LINE__)

/* ---- crash reporting ---------------------------------------------------- */

static inline void check_write_str(const char *s) { ssize_t r = write(1, s, strlen(s)); (void)r; }
static inline void check_write_int(long v) {
    char buf[24]; int i = 23; buf[i] = '\0';
    int neg = v < 0; unsigned long u = neg ? (unsigned long)(-v) : (unsigned long)v;
    do { buf[--i] = (char)('0' + u % 10); u /= 10; } while (u && i > 1);
    if (neg) buf[--i] = '-';
    check_write_str(buf + i);
}

static inline void check_on_signal(int sig) {
    check_write_str(sig == SIGALRM ? "  TIMEOUT (SIGALRM, the test's time budget ran out)" : "  CRASH signal ");
    if (sig != SIGALRM) check_write_int(sig);
    check_write_str(" after the check at ");
    check_write_str(check_last_file);
    check_write_str(":");
    check_write_int(check_last_line);
    check_write_str(" [");
    check_write_str(check_context);
    check_write_str("]\n@@TALLY passed=");
    check_write_int(check_passed);
    check_write_str(" failed=");
    check_write_int(check_failed + 1);
    check_write_str("\n");
    signal(sig, SIG_DFL);
    raise(sig);
}

/** Seconds a test program may run before SIGALRM reports a hang
 *  (environment KOFKA_TEST_BUDGET overrides). */
#define CHECK_DEFAULT_BUDGET_S 40

/** Call first in main(): installs the crash and hang reporter, line-buffers
 *  stdout, and arms the time budget (a hung call is reported with the
 *  tally so far instead of being killed silently). */
static inline void check_init(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGFPE, SIGTRAP, SIGALRM};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], check_on_signal);
    const char *budget = getenv("KOFKA_TEST_BUDGET");
    alarm(budget ? (unsigned)atoi(budget) : CHECK_DEFAULT_BUDGET_S);
}

/** Call last in main(): prints the tally; returns the exit status. */
static inline int check_done(void) {
    fflush(stdout);
    if (check_printed_failures > CHECK_MAX_PRINTED)
        printf("  (%d more failures not printed)\n", check_printed_failures - CHECK_MAX_PRINTED);
    printf("@@TALLY passed=%d failed=%d\n", check_passed, check_failed);
    fflush(stdout);
    return check_failed ? 1 : 0;
}

/* ---- backends ----------------------------------------------------------- */

/*
 * Every test runs on memory: and on a fresh SQLite file; and, when the environment variable
 * KOFKA_PG_URL names a PostgreSQL server (scripts/pg.sh starts a throwaway one), on a fresh
 * schema of that database too: "postgresql://…?options=-csearch_path%3Dkc_TAG_PID_N", dropped
 * by test_backend_teardown. libpq is loaded with dlopen for that, so nothing here links it.
 */

/** One storage backend under test. */
typedef struct test_backend {
    const char *name;     /* "memory:", "sqlite:" or "postgresql:" */
    char storage[1024];   /* the string for kofka_broker_open */
    char path[480];       /* the SQLite file, "" for the others */
    char schema[64];      /* the PostgreSQL schema, "" for the others */
} test_backend;

/** KOFKA_PG_URL, or NULL when it is not set (or empty). */
static inline const char *test_pg_url(void) {
    const char *u = getenv("KOFKA_PG_URL");
    return u && *u ? u : NULL;
}

/** Backends to run: memory: and sqlite:, and postgresql: when KOFKA_PG_URL is set. */
static inline int test_backend_count(void) { return test_pg_url() ? 3 : 2; }
#define TEST_BACKEND_COUNT test_backend_count()

#include <dlfcn.h>

/** libpq's functions, loaded on first use (NULL lib: not loaded). */
static struct {
    void *lib;
    void *(*connectdb)(const char *);
    int (*status)(const void *);
    char *(*errmsg)(const void *);
    void *(*exec)(void *, const char *);
    int (*result_status)(const void *);
    char *(*result_errmsg)(const void *);
    int (*ntuples)(const void *);
    char *(*getvalue)(const void *, int, int);
    void (*clear)(void *);
    void (*finish)(void *);
} test_pq;

/** A session to KOFKA_PG_URL (application_name kofka-ctest), or NULL with the error in err. */
static inline void *test_pg_open(char *err, size_t err_size) {
    const char *url = test_pg_url();
    if (!url) { if (err) snprintf(err, err_size, "KOFKA_PG_URL is not set"); return NULL; }
    if (!test_pq.lib) {
        void *lib = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
        if (!lib) { if (err) snprintf(err, err_size, "cannot load libpq.so.5: %s", dlerror()); return NULL; }
        *(void **)&test_pq.connectdb = dlsym(lib, "PQconnectdb");
        *(void **)&test_pq.status = dlsym(lib, "PQstatus");
        *(void **)&test_pq.errmsg = dlsym(lib, "PQerrorMessage");
        *(void **)&test_pq.exec = dlsym(lib, "PQexec");
        *(void **)&test_pq.result_status = dlsym(lib, "PQresultStatus");
        *(void **)&test_pq.result_errmsg = dlsym(lib, "PQresultErrorMessage");
        *(void **)&test_pq.ntuples = dlsym(lib, "PQntuples");
        *(void **)&test_pq.getvalue = dlsym(lib, "PQgetvalue");
        *(void **)&test_pq.clear = dlsym(lib, "PQclear");
        *(void **)&test_pq.finish = dlsym(lib, "PQfinish");
        test_pq.lib = lib;
    }
    char conninfo[1200];
    snprintf(conninfo, sizeof conninfo, "%s%sapplication_name=kofka-ctest", url, strchr(url, '?') ? "&" : "?");
    void *conn = test_pq.connectdb(conninfo);
    if (!conn || test_pq.status(conn) != 0) {
        if (err) snprintf(err, err_size, "%s", conn ? test_pq.errmsg(conn) : "out of memory");
        if (conn) test_pq.finish(conn);
        return NULL;
    }
    void *quiet = test_pq.exec(conn, "SET client_min_messages TO warning");
    if (quiet) test_pq.clear(quiet);
    return conn;
}

/** Runs sql on session conn; the first value of the first row, if any, is copied into out
 *  (out_size bytes). Returns 0, or -1 with the error in out. */
static inline int test_pg_query(void *conn, const char *sql, char *out, size_t out_size) {
    if (out && out_size) out[0] = '\0';
    void *res = test_pq.exec(conn, sql);
    int rs = res ? test_pq.result_status(res) : -1;
    int ok = rs == 1 || rs == 2; /* PGRES_COMMAND_OK, PGRES_TUPLES_OK */
    if (out) {
        if (!ok) snprintf(out, out_size, "%s", res ? test_pq.result_errmsg(res) : test_pq.errmsg(conn));
        else if (rs == 2 && test_pq.ntuples(res) > 0) snprintf(out, out_size, "%s", test_pq.getvalue(res, 0, 0));
    }
    if (res) test_pq.clear(res);
    return ok ? 0 : -1;
}

static inline void test_pg_close(void *conn) {
    if (conn) test_pq.finish(conn);
}

/** test_pg_query on a session of its own. */
static inline int test_pg_exec(const char *sql, char *out, size_t out_size) {
    void *conn = test_pg_open(out, out_size);
    if (!conn) return -1;
    int rc = test_pg_query(conn, sql, out, out_size);
    test_pg_close(conn);
    return rc;
}

static inline void test_remove_db(const char *path) {
    char buf[600];
    if (!path[0]) return;
    unlink(path);
    snprintf(buf, sizeof buf, "%s-wal", path); unlink(buf);
    snprintf(buf, sizeof buf, "%s-shm", path); unlink(buf);
    snprintf(buf, sizeof buf, "%s-journal", path); unlink(buf);
    snprintf(buf, sizeof buf, "%s-bell", path); unlink(buf);
}

/** Drops a PostgreSQL test schema and everything in it ("" is a no-op). */
static inline void test_pg_drop_schema(const char *schema) {
    char sql[200];
    if (!schema[0]) return;
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS \"%s\" CASCADE", schema);
    test_pg_exec(sql, NULL, 0);
}

/** Fills be for backend i (0 = memory, 1 = a fresh SQLite file named for tag, 2 = a fresh
 *  PostgreSQL schema named for tag). */
static inline void test_backend_setup(test_backend *be, int i, const char *tag) {
    static int counter;
    memset(be, 0, sizeof *be);
    if (i == 0) {
        be->name = "memory:";
        snprintf(be->storage, sizeof be->storage, "memory:");
    } else if (i == 1) {
        be->name = "sqlite:";
        snprintf(be->path, sizeof be->path, "/tmp/kofka-ctest-%s-%ld-%d.db", tag, (long)getpid(), counter++);
        test_remove_db(be->path);
        snprintf(be->storage, sizeof be->storage, "sqlite:%s", be->path);
    } else {
        const char *url = test_pg_url();
        be->name = "postgresql:";
        snprintf(be->schema, sizeof be->schema, "kc_%.20s_%ld_%d", tag, (long)getpid(), counter++);
        for (char *c = be->schema; *c; c++) if (*c == '-') *c = '_';
        test_pg_drop_schema(be->schema);
        snprintf(be->storage, sizeof be->storage, "%s%soptions=-csearch_path%%3D%s", url ? url : "postgresql:", url && strchr(url, '?') ? "&" : "?",
                 be->schema);
    }
    check_context = be->name;
    printf("  backend %s\n", be->path[0] ? be->storage : be->schema[0] ? be->schema : be->storage);
}

/** Empties the backend's store (a fresh SQLite file, a fresh PostgreSQL schema). */
static inline void test_backend_reset(test_backend *be) {
    test_remove_db(be->path);
    test_pg_drop_schema(be->schema);
}

static inline void test_backend_teardown(test_backend *be) { test_backend_reset(be); }

/* ---- small helpers ------------------------------------------------------ */

static inline int64_t test_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void test_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

/** A kofka_record with every field zeroed and partition = KOFKA_PARTITION_ANY. */
static inline kofka_record test_record(const void *key, size_t key_len, const void *value, size_t value_len) {
    kofka_record r;
    memset(&r, 0, sizeof r);
    r.partition = KOFKA_PARTITION_ANY;
    r.key = key; r.key_len = key_len;
    r.value = value; r.value_len = value_len;
    r.offset = -1;
    return r;
}

#endif /* KOFKA_CHECK_H */
