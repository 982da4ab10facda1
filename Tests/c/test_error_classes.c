/*
 * test_error_classes.c — the error classes of kofka.h, and the two codes
 * added in the second round:
 *  - kofka_err_is_retriable: 1 for BUSY, TIMED_OUT and QUEUE_FULL, 0 for
 *    every other code and for values that are not codes;
 *  - kofka_txn_requires_abort: 0 for NULL / closed / foreign handles (with a
 *    message), 0 outside a failed transaction, 1 after a transaction timed
 *    out under a send, 0 again after kofka_abort_transaction;
 *  - KOFKA_ERR_BUSY: a send while another connection holds the SQLite write
 *    lock past sqlite.busy.timeout.ms fails with KOFKA_ERR_BUSY, writes
 *    nothing, and the same call succeeds once the lock is released;
 *  - KOFKA_ERR_PURGED: kofka_abort_transaction fails records still queued by
 *    kofka_produce with KOFKA_ERR_PURGED in their delivery reports (served on
 *    the calling thread, inside the abort) and never writes them.
 */
#include "check.h"
#include <dlfcn.h>
#include <pthread.h>

static void retriable_codes_are_busy_timed_out_and_queue_full(void) {
    for (int e = 0; e <= 20; e++) {
        int expect = e == KOFKA_ERR_BUSY || e == KOFKA_ERR_TIMED_OUT || e == KOFKA_ERR_QUEUE_FULL;
        if (!CHECK_EQ(expect, kofka_err_is_retriable((kofka_err)e))) printf("    (code %d %s)\n", e, kofka_err_name((kofka_err)e));
    }
    int unknown[] = {21, 99, -1, 1000000};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) CHECK_EQ(0, kofka_err_is_retriable((kofka_err)unknown[i]));
    CHECK_STR_EQ("KOFKA_ERR_BUSY", kofka_err_name(KOFKA_ERR_BUSY));
    CHECK_STR_EQ("KOFKA_ERR_PURGED", kofka_err_name(KOFKA_ERR_PURGED));
    CHECK_CONTAINS(kofka_err_desc(KOFKA_ERR_BUSY), "lock");
    CHECK_CONTAINS(kofka_err_desc(KOFKA_ERR_PURGED), "abort");
}

static void txn_requires_abort_after_a_timed_out_transaction(kofka_broker *b) {
    CHECK_EQ(0, kofka_txn_requires_abort(NULL));
    CHECK_CONTAINS(kofka_last_error(), "NULL");
    const char *cfg[] = {"transactional.id", "tx-classes", "transaction.timeout.ms", "200", NULL};
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, cfg, &p))) return;
    CHECK_EQ(0, kofka_txn_requires_abort(p));
    CHECK_STR_EQ("", kofka_last_error());
    CHECK_OK(kofka_init_transactions(p, 2000));
    CHECK_OK(kofka_begin_transaction(p));
    kofka_record r = test_record("k", 1, "v", 1);
    CHECK_OK(kofka_send(p, "t", &r));
    CHECK_EQ(0, kofka_txn_requires_abort(p));
    test_sleep_ms(500); /* past transaction.timeout.ms */
    r = test_record("k", 1, "v", 1);
    CHECK_ERR(KOFKA_ERR_TXN_TIMED_OUT, kofka_send(p, "t", &r));
    CHECK_EQ(1, kofka_txn_requires_abort(p));
    CHECK_ERR(KOFKA_ERR_TXN_TIMED_OUT, kofka_commit_transaction(p, 2000));
    CHECK_EQ(1, kofka_txn_requires_abort(p));
    CHECK_OK(kofka_abort_transaction(p, 2000));
    CHECK_EQ(0, kofka_txn_requires_abort(p));
    /* And the producer works again. */
    CHECK_OK(kofka_begin_transaction(p));
    r = test_record("k", 1, "v", 1);
    CHECK_OK(kofka_send(p, "t", &r));
    CHECK_OK(kofka_commit_transaction(p, 2000));
    CHECK_OK(kofka_producer_close(p, 2000));
    CHECK_EQ(0, kofka_txn_requires_abort(p));
    CHECK_CONTAINS(kofka_last_error(), "closed");
}

/* ---- KOFKA_ERR_PURGED ---------------------------------------------------- */

typedef struct reports {
    int n, purged, ok, other;
    pthread_t thread;
    int off_thread;
} reports;

static void on_report(kofka_producer *p, const char *topic, const kofka_record *r, void *msg_opaque, void *cb_opaque) {
    (void)p; (void)topic; (void)msg_opaque;
    reports *rep = cb_opaque;
    rep->n++;
    if (r->err == KOFKA_ERR_PURGED) rep->purged++;
    else if (r->err == KOFKA_OK) rep->ok++;
    else rep->other++;
    if (!pthread_equal(pthread_self(), rep->thread)) rep->off_thread++;
}

static void abort_purges_records_queued_by_produce(kofka_broker *b) {
    const char *cfg[] = {"transactional.id", "tx-purge", "linger.ms", "60000", "batch.num.messages", "100000", NULL};
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, cfg, &p))) return;
    reports rep;
    memset(&rep, 0, sizeof rep);
    rep.thread = pthread_self();
    CHECK_OK(kofka_producer_set_delivery_cb(p, on_report, &rep));
    CHECK_OK(kofka_init_transactions(p, 2000));
    int64_t lo = 0, before = 0, after = 0;
    CHECK_OK(kofka_watermarks(b, "purge", 0, &lo, &before));
    CHECK_OK(kofka_begin_transaction(p));
    for (int i = 0; i < 20; i++) {
        kofka_record r = test_record(NULL, 0, "queued", 6);
        r.partition = 0;
        CHECK_OK(kofka_produce(p, "purge", &r, NULL));
    }
    CHECK_OK(kofka_abort_transaction(p, 2000));
    CHECK_EQ(20, rep.n);       /* every report was served inside the abort, on this thread */
    CHECK_EQ(20, rep.purged);
    CHECK_EQ(0, rep.off_thread);
    CHECK_OK(kofka_watermarks(b, "purge", 0, &lo, &after));
    CHECK_EQ(before, after);   /* never written */
    CHECK_OK(kofka_producer_close(p, 2000));
}

/* ---- KOFKA_ERR_BUSY (SQLite only) --------------------------------------- */

typedef int (*sqlite3_open_fn)(const char *, void **);
typedef int (*sqlite3_exec_fn)(void *, const char *, void *, void *, char **);
typedef int (*sqlite3_close_fn)(void *);

static void busy_storage_is_retriable_and_writes_nothing(const test_backend *be) {
    void *lib = dlopen("libsqlite3.so.0", RTLD_NOW);
    if (!CHECK(lib != NULL)) return;
    sqlite3_open_fn open_db = (sqlite3_open_fn)dlsym(lib, "sqlite3_open");
    sqlite3_exec_fn exec = (sqlite3_exec_fn)dlsym(lib, "sqlite3_exec");
    sqlite3_close_fn close_db = (sqlite3_close_fn)dlsym(lib, "sqlite3_close");
    if (!CHECK(open_db && exec && close_db)) return;

    const char *bcfg[] = {"sqlite.busy.timeout.ms", "100", NULL};
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, bcfg, &b))) return;
    CHECK_OK(kofka_topic_create(b, "busy", 1));
    const char *pcfg[] = {"retries", "0", NULL};
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, pcfg, &p))) { kofka_broker_close(b); return; }
    kofka_record r = test_record(NULL, 0, "first", 5);
    CHECK_OK(kofka_send(p, "busy", &r));

    void *db = NULL;
    if (CHECK_EQ(0, open_db(be->path, &db))) {
        CHECK_EQ(0, exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL)); /* hold the write lock */
        r = test_record(NULL, 0, "blocked", 7);
        kofka_err e = kofka_send(p, "busy", &r);
        CHECK_ERR(KOFKA_ERR_BUSY, e);
        CHECK_CONTAINS(kofka_last_error(), "locked");
        CHECK_EQ(1, kofka_err_is_retriable(e));
        int64_t lo = 0, hi = 0;
        CHECK_OK(kofka_watermarks(b, "busy", 0, &lo, &hi));
        CHECK_EQ(1, hi); /* nothing was written */
        CHECK_ERR(KOFKA_ERR_BUSY, kofka_topic_create(b, "created-while-locked", 1));
        CHECK_CONTAINS(kofka_last_error(), "locked");
        int32_t n = -7;
        CHECK_ERR(KOFKA_ERR_UNKNOWN_TOPIC, kofka_topic_partitions(b, "created-while-locked", &n));
        CHECK_EQ(0, exec(db, "ROLLBACK", NULL, NULL, NULL));
        close_db(db);
        r = test_record(NULL, 0, "blocked", 7);
        CHECK_OK(kofka_send(p, "busy", &r)); /* the same call, repeated, succeeds */
        CHECK_EQ(1, r.offset);
        CHECK_OK(kofka_topic_create(b, "created-while-locked", 1));
    }
    CHECK_OK(kofka_producer_close(p, 2000));
    CHECK_OK(kofka_broker_close(b));
}

int main(void) {
    check_init();
    printf("test_error_classes: retriable / abortable codes, KOFKA_ERR_BUSY, KOFKA_ERR_PURGED\n");
    check_context = "global";
    retriable_codes_are_busy_timed_out_and_queue_full();
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "classes");
        kofka_broker *b = NULL;
        if (CHECK_OK(kofka_broker_open(be.storage, NULL, &b))) {
            CHECK_OK(kofka_topic_create(b, "t", 1));
            CHECK_OK(kofka_topic_create(b, "purge", 1));
            txn_requires_abort_after_a_timed_out_transaction(b);
            abort_purges_records_queued_by_produce(b);
            CHECK_OK(kofka_broker_close(b));
        }
        test_backend_teardown(&be);
        if (i == 1) {
            test_backend_setup(&be, i, "classes-busy");
            busy_storage_is_retriable_and_writes_nothing(&be);
            test_backend_teardown(&be);
        }
    }
    return check_done();
}
