/*
 * test_postgresql.c — the PostgreSQL storage plugin (libkofka_postgresql.so) as a C program sees
 * it, on the server KOFKA_PG_URL names (skipped when it is not set): one store shared by
 * processes and broker handles as by hosts — dense offsets under concurrent writers in four
 * processes, a blocked poll woken by another handle's write within milliseconds (the wake-up
 * latency is printed), a writer blocked past postgresql.lock.timeout.ms failing with
 * KOFKA_ERR_BUSY and writing nothing while reads go on, both scheme spellings, the config keys,
 * a server down at open (KOFKA_ERR_STORAGE naming the host), and stores it must refuse.
 * Every test has a schema of its own (check.h), dropped at the end.
 */
#include "check.h"

#include <pthread.h>
#include <sys/wait.h>

#define LOCK_CLASS "1263486539" /* the first key of the plugin's write lock: "KOFK" */

static kofka_err open_broker(const test_backend *be, const char *const *config, kofka_broker **b) {
    kofka_err rc = kofka_broker_open(be->storage, config, b);
    if (rc != KOFKA_OK) printf("    open %s: %s\n", be->schema, kofka_last_error());
    return rc;
}

static int64_t high_watermark(kofka_broker *b, const char *topic, int32_t partition) {
    int64_t low = -1, high = -1;
    CHECK_OK(kofka_watermarks(b, topic, partition, &low, &high));
    return high;
}

/* Reads every record of one partition from the start (manual assignment). */
static size_t read_partition(kofka_broker *b, const char *topic, int32_t partition, kofka_message **out, size_t max) {
    kofka_consumer *c = NULL;
    const char *cfg[] = {"auto.offset.reset", "earliest", NULL};
    if (!CHECK_OK(kofka_consumer_new(b, cfg, &c))) return 0;
    CHECK_OK(kofka_assign(c, topic, &partition, 1));
    size_t n = 0;
    while (n < max) {
        size_t got = 0;
        if (kofka_poll_batch(c, 300, out + n, max - n, &got) != KOFKA_OK || got == 0) break;
        n += got;
    }
    kofka_consumer_destroy(c);
    return n;
}

/* ---- one log, many writers ---------------------------------------------------- */

#define WRITERS 4
#define PER_WRITER 150

/* A child process: its own broker handle (its own sessions, as another host would have),
 * PER_WRITER records to partition 0 one by one, each its own write. Exit status: failures. */
static int writer_child(const char *storage, int id) {
    kofka_broker *b = NULL;
    if (kofka_broker_open(storage, NULL, &b) != KOFKA_OK) return 100;
    kofka_producer *p = NULL;
    const char *cfg[] = {"enable.idempotence", "true", NULL};
    if (kofka_producer_new(b, cfg, &p) != KOFKA_OK) return 101;
    int failures = 0;
    for (int i = 0; i < PER_WRITER; i++) {
        char v[32];
        int n = snprintf(v, sizeof v, "w%d-%04d", id, i);
        kofka_record r = test_record(NULL, 0, v, (size_t)n);
        r.partition = 0;
        if (kofka_send(p, "dense", &r) != KOFKA_OK) failures++;
    }
    kofka_producer_close(p, 5000);
    kofka_broker_close(b);
    return failures > 99 ? 99 : failures;
}

static void dense_offsets_under_writers_in_four_processes(void) {
    printf("  dense offsets: %d processes x %d single-record writes to one partition\n", WRITERS, PER_WRITER);
    test_backend be;
    test_backend_setup(&be, 2, "dense");
    kofka_broker *b = NULL;
    if (!CHECK_OK(open_broker(&be, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(b, "dense", 1));
    fflush(stdout);
    pid_t kids[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            alarm(60);
            _exit(writer_child(be.storage, i));
        }
    }
    for (int i = 0; i < WRITERS; i++) {
        int status = 0;
        waitpid(kids[i], &status, 0);
        if (!CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            printf("    writer %d: %s %d\n", i, WIFEXITED(status) ? "failures" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    CHECK_EQ(WRITERS * PER_WRITER, high_watermark(b, "dense", 0));
    static kofka_message *msgs[WRITERS * PER_WRITER + 10];
    size_t n = read_partition(b, "dense", 0, msgs, WRITERS * PER_WRITER + 10);
    CHECK_EQ(WRITERS * PER_WRITER, n);
    int gaps = 0, dups = 0, disorder = 0, last[WRITERS];
    int seen[WRITERS][PER_WRITER];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < WRITERS; i++) last[i] = -1;
    for (size_t i = 0; i < n; i++) {
        if (msgs[i]->offset != (int64_t)i) gaps++;
        int w = -1, k = -1;
        char v[32] = {0};
        memcpy(v, msgs[i]->value, msgs[i]->value_len < 31 ? msgs[i]->value_len : 31);
        if (sscanf(v, "w%d-%d", &w, &k) == 2 && w >= 0 && w < WRITERS && k >= 0 && k < PER_WRITER) {
            if (seen[w][k]++) dups++;
            if (k < last[w]) disorder++;
            last[w] = k;
        }
        kofka_message_free(msgs[i]);
    }
    printf("    offsets not dense: %d, duplicates: %d, out of a writer's order: %d\n", gaps, dups, disorder);
    CHECK_EQ(0, gaps);
    CHECK_EQ(0, dups);
    CHECK_EQ(0, disorder);
    CHECK_OK(kofka_broker_close(b));
    test_backend_teardown(&be);
}

/* ---- wake-ups across handles ---------------------------------------------------- */

typedef struct waiter {
    kofka_broker *b;
    pthread_mutex_t m;
    pthread_cond_t cv;
    int rounds;              /* records to wait for */
    int64_t woke_ns[64];     /* when each poll returned its record (CLOCK_MONOTONIC) */
    int got;                 /* records received */
    int ready;               /* the consumer is assigned and polling */
} waiter;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *wait_for_records(void *arg) {
    waiter *w = arg;
    kofka_consumer *c = NULL;
    if (kofka_consumer_new(w->b, NULL, &c) != KOFKA_OK) return NULL;
    int32_t p0 = 0;
    kofka_assign(c, "wake", &p0, 1);
    kofka_message *m = NULL;
    kofka_poll(c, 0, &m);   /* position at the end (nothing there yet) */
    if (m) kofka_message_free(m);
    pthread_mutex_lock(&w->m);
    w->ready = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->m);
    while (w->got < w->rounds) {
        m = NULL;
        if (kofka_poll(c, 5000, &m) != KOFKA_OK || !m) break;
        int64_t t = now_ns();
        kofka_message_free(m);
        pthread_mutex_lock(&w->m);
        w->woke_ns[w->got++] = t;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->m);
    }
    kofka_consumer_close(c);
    return NULL;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void a_poll_blocked_on_one_handle_wakes_at_another_handles_write(void) {
    enum { ROUNDS = 40 };
    printf("  wake-ups: a poll blocked on handle B, a record written through handle A (%d rounds)\n", ROUNDS);
    test_backend be;
    test_backend_setup(&be, 2, "wake");
    kofka_broker *a = NULL, *b = NULL;
    if (!CHECK_OK(open_broker(&be, NULL, &a)) || !CHECK_OK(open_broker(&be, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(a, "wake", 1));
    waiter w = {.b = b, .rounds = ROUNDS};
    pthread_mutex_init(&w.m, NULL);
    pthread_cond_init(&w.cv, NULL);
    pthread_t th;
    pthread_create(&th, NULL, wait_for_records, &w);
    pthread_mutex_lock(&w.m);
    while (!w.ready) pthread_cond_wait(&w.cv, &w.m);
    pthread_mutex_unlock(&w.m);
    kofka_producer *p = NULL;
    CHECK_OK(kofka_producer_new(a, NULL, &p));
    int64_t lat[ROUNDS];
    int n = 0;
    for (int i = 0; i < ROUNDS; i++) {
        test_sleep_ms(20);   /* the poll is blocked by now */
        kofka_record r = test_record(NULL, 0, "x", 1);
        if (!CHECK_OK(kofka_send(p, "wake", &r))) break;
        int64_t sent = now_ns();   /* the commit is visible when kofka_send returns */
        pthread_mutex_lock(&w.m);
        while (w.got <= i) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 6;
            if (pthread_cond_timedwait(&w.cv, &w.m, &ts) != 0) break;
        }
        int ok = w.got > i;
        int64_t woke = ok ? w.woke_ns[i] : 0;
        pthread_mutex_unlock(&w.m);
        if (!CHECK(ok)) break;
        lat[n++] = woke > sent ? woke - sent : 0;
    }
    pthread_join(th, NULL);
    CHECK_EQ(ROUNDS, n);
    if (n > 0) {
        qsort(lat, (size_t)n, sizeof lat[0], cmp_i64);
        double p50 = lat[n / 2] / 1e6, p99 = lat[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] / 1e6;
        printf("    wake-up after the writer's commit returned: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", p50, p99, lat[n - 1] / 1e6);
        CHECK(p50 < 50);    /* milliseconds: LISTEN/NOTIFY, not a 2 ms re-check nor a poll timeout */
        CHECK(p99 < 1000);
    }
    CHECK_OK(kofka_producer_close(p, 1000));
    CHECK_OK(kofka_broker_close(a));
    CHECK_OK(kofka_broker_close(b));
    test_backend_teardown(&be);
}

/* ---- the write lock ------------------------------------------------------------------ */

typedef struct reader_arg {
    kofka_broker *b;
    size_t got;
    kofka_err err;
} reader_arg;

static void *read_two(void *arg) {
    reader_arg *r = arg;
    kofka_message *msgs[4];
    r->got = read_partition(r->b, "locked", 0, msgs, 4);
    for (size_t i = 0; i < r->got; i++) kofka_message_free(msgs[i]);
    return NULL;
}

static void a_writer_blocked_past_the_lock_timeout_gets_busy_and_writes_nothing(void) {
    printf("  the write lock held by another session: BUSY after postgresql.lock.timeout.ms, reads go on\n");
    test_backend be;
    test_backend_setup(&be, 2, "lock");
    kofka_broker *b = NULL;
    const char *cfg[] = {"postgresql.lock.timeout.ms", "300", NULL};
    if (!CHECK_OK(open_broker(&be, cfg, &b))) return;
    CHECK_OK(kofka_topic_create(b, "locked", 1));
    kofka_producer *p = NULL;
    const char *pcfg[] = {"retries", "0", NULL};
    CHECK_OK(kofka_producer_new(b, pcfg, &p));
    kofka_record r = test_record(NULL, 0, "before", 6);
    r.partition = 0;
    CHECK_OK(kofka_send(p, "locked", &r));
    /* Another session (another host's writer, or an operator) takes the write lock. */
    char err[300], key[32], sql[300];
    void *holder = test_pg_open(err, sizeof err);
    if (!CHECK(holder != NULL)) { printf("    %s\n", err); return; }
    snprintf(sql, sizeof sql, "SELECT value FROM \"%s\".meta WHERE name = 'lock_key'", be.schema);
    CHECK_EQ(0, test_pg_query(holder, sql, key, sizeof key));
    snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(" LOCK_CLASS ", %s)", key);
    if (!CHECK_EQ(0, test_pg_query(holder, sql, err, sizeof err))) printf("    %s: %s\n", sql, err);
    int64_t t0 = test_now_ms();
    r = test_record(NULL, 0, "blocked", 7);
    r.partition = 0;
    CHECK_ERR(KOFKA_ERR_BUSY, kofka_send(p, "locked", &r));
    int64_t waited = test_now_ms() - t0;
    printf("    gave up after %lld ms: %s\n", (long long)waited, kofka_last_error());
    CHECK(waited >= 250 && waited < 3000);
    CHECK_CONTAINS(kofka_last_error(), "postgresql.lock.timeout.ms");
    CHECK_EQ(1, kofka_err_is_retriable(KOFKA_ERR_BUSY));
    /* Readers are not held up by the writer's lock. */
    reader_arg ra = {.b = b};
    pthread_t th;
    pthread_create(&th, NULL, read_two, &ra);
    pthread_join(th, NULL);
    CHECK_EQ(1, ra.got);
    CHECK_EQ(1, high_watermark(b, "locked", 0));   /* nothing written */
    CHECK_EQ(0, test_pg_query(holder, "SELECT pg_advisory_unlock_all()", err, sizeof err));
    test_pg_close(holder);
    r = test_record(NULL, 0, "after", 5);
    r.partition = 0;
    CHECK_OK(kofka_send(p, "locked", &r));
    CHECK_EQ(1, r.offset);
    CHECK_OK(kofka_producer_close(p, 1000));
    CHECK_OK(kofka_broker_close(b));
    test_backend_teardown(&be);
}

/* ---- opening ---------------------------------------------------------------------------- */

static void both_spellings_open_the_same_store(void) {
    printf("  postgresql:// and postgres:// open the same store\n");
    test_backend be;
    test_backend_setup(&be, 2, "spelling");
    kofka_broker *a = NULL, *b = NULL;
    if (!CHECK_OK(open_broker(&be, NULL, &a))) return;
    CHECK_OK(kofka_topic_create(a, "t", 2));
    char other[sizeof be.storage];
    CHECK(strncmp(be.storage, "postgresql://", 13) == 0);
    snprintf(other, sizeof other, "postgres://%s", be.storage + 13);
    if (CHECK_OK(kofka_broker_open(other, NULL, &b))) {
        int32_t parts = 0;
        CHECK_OK(kofka_topic_partitions(b, "t", &parts));
        CHECK_EQ(2, parts);
        CHECK_OK(kofka_broker_close(b));
    }
    CHECK_OK(kofka_broker_close(a));
    test_backend_teardown(&be);
}

static void a_server_down_at_open_is_storage_naming_the_host(void) {
    printf("  a server that is down at open: KOFKA_ERR_STORAGE naming the host\n");
    kofka_broker *b = NULL;
    int64_t t0 = test_now_ms();
    CHECK_ERR(KOFKA_ERR_STORAGE, kofka_broker_open("postgresql://kofka:pw@127.0.0.1:1/kofka", NULL, &b));
    printf("    %s\n", kofka_last_error());
    CHECK_CONTAINS(kofka_last_error(), "host 127.0.0.1 port 1 database kofka");
    CHECK(test_now_ms() - t0 < 5000);
    CHECK(b == NULL);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_broker_open("postgresql://x:y@[not-an-address", NULL, &b));
}

static void config_keys_are_checked(void) {
    printf("  postgresql.* keys: checked by the plugin, both prefixes\n");
    test_backend be;
    test_backend_setup(&be, 2, "keys");
    kofka_broker *b = NULL;
    const char *unknown[] = {"postgresql.lock.timeout", "5", NULL};
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_broker_open(be.storage, unknown, &b));
    CHECK_CONTAINS(kofka_last_error(), "postgresql.lock.timeout");
    const char *bad[] = {"postgresql.lock.timeout.ms", "soon", NULL};
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_broker_open(be.storage, bad, &b));
    CHECK_CONTAINS(kofka_last_error(), "'soon'");
    const char *good[] = {"postgres.lock.timeout.ms", "1000", "postgresql.pool.idle", "1", "postgresql.connect.timeout.ms", "2000", NULL};
    if (CHECK_OK(kofka_broker_open(be.storage, good, &b))) CHECK_OK(kofka_broker_close(b));
    test_backend_teardown(&be);
}

static void stores_it_must_not_touch_are_refused(void) {
    printf("  a newer schema version and a foreign schema are refused, naming the database\n");
    test_backend be;
    test_backend_setup(&be, 2, "refuse");
    kofka_broker *b = NULL;
    char sql[300], err[300];
    if (CHECK_OK(open_broker(&be, NULL, &b))) CHECK_OK(kofka_broker_close(b));
    snprintf(sql, sizeof sql, "UPDATE \"%s\".meta SET value = 99 WHERE name = 'schema_version'", be.schema);
    CHECK_EQ(0, test_pg_exec(sql, err, sizeof err));
    CHECK_ERR(KOFKA_ERR_STORAGE, kofka_broker_open(be.storage, NULL, &b));
    CHECK_CONTAINS(kofka_last_error(), "schema version 99");
    CHECK_CONTAINS(kofka_last_error(), "database kofka");
    test_backend_teardown(&be);

    test_backend_setup(&be, 2, "foreign");
    snprintf(sql, sizeof sql, "CREATE SCHEMA \"%s\"; CREATE TABLE \"%s\".kv (k int)", be.schema, be.schema);
    CHECK_EQ(0, test_pg_exec(sql, err, sizeof err));
    CHECK_ERR(KOFKA_ERR_STORAGE, kofka_broker_open(be.storage, NULL, &b));
    CHECK_CONTAINS(kofka_last_error(), "not a Kofka store");
    test_backend_teardown(&be);
}

int main(void) {
    check_init();
    printf("test_postgresql: one PostgreSQL store shared by processes and handles as by hosts\n");
    if (!test_pg_url()) {
        printf("  skipped: KOFKA_PG_URL is not set (scripts/pg.sh starts a server)\n");
        return check_done();
    }
    check_context = "postgresql:";
    dense_offsets_under_writers_in_four_processes();   /* first: fork before this process opens anything */
    /* The core checks config keys before it resolves the storage scheme: postgresql.* keys are
     * accepted once the plugin is loaded, i.e. after this process opened a PostgreSQL store. */
    a_poll_blocked_on_one_handle_wakes_at_another_handles_write();
    a_writer_blocked_past_the_lock_timeout_gets_busy_and_writes_nothing();
    both_spellings_open_the_same_store();
    a_server_down_at_open_is_storage_naming_the_host();
    config_keys_are_checked();
    stores_it_must_not_touch_are_refused();
    return check_done();
}
