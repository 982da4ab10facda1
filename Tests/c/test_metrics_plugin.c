/*
 * test_metrics_plugin.c — libkofka_metrics.so (Sources/KofkaMetrics), loaded by a C program
 * with plugin.library.paths, counts exactly what producers and consumers did and writes it as
 * valid Prometheus text.
 *
 * On both backends, in one process (the plugin is loaded once per process, so its counters add
 * up across the two runs and the expected values do too):
 *  - sends (kofka_send, kofka_send_batch, kofka_produce, 4 threads at once), delivery failures
 *    (unknown partition, a record above the topic's max.message.bytes, a lossy link that times
 *    out), consumes, commits and refused commits (REBALANCED) of a group whose id needs
 *    escaping; the file, parsed strictly (Tests/c/prometheus.h), holds exactly those counts, per
 *    topic, group and error name, and the same counts a test interceptor saw;
 *  - the latency histogram holds one observation per successful delivery, buckets cumulative;
 *  - the background writer rewrites the file every metrics.interval.ms while the broker is open,
 *    and a reader polling the file meanwhile never sees a partial one (temp file + rename);
 *  - closing the broker writes the file (with metrics.interval.ms=0, only then);
 *  - metrics.* keys are refused without the plugin, and unknown or invalid ones by the plugin;
 *  - a child forked while the writer thread runs exits at once (the plugin's exit-time write is
 *    skipped there: the file is the parent's).
 */
#include "check.h"
#include "prometheus.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define GROUP "bill\"ing\\x"        /* a group id with a quote and a backslash: escaped in labels */
#define SENDS 20
#define BATCH 30
#define PRODUCES 25
#define THREADS 4
#define PER_THREAD 25

static char libdir[512];
static char plugin[600];
static char metrics_path[256];

/* ---- what the test itself saw (an interceptor added to the same broker) -------------- */

static struct {
    pthread_mutex_t lock;
    long sent, acked_ok, failed, consumed, commits, commit_failures;
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void seen_send(void *o, const char *t, kofka_record *r) {
    (void)o, (void)t, (void)r;
    pthread_mutex_lock(&seen.lock); seen.sent++; pthread_mutex_unlock(&seen.lock);
}
static void seen_ack(void *o, const char *t, const kofka_record *r) {
    (void)o, (void)t;
    pthread_mutex_lock(&seen.lock);
    if (r->err == KOFKA_OK) seen.acked_ok++; else seen.failed++;
    pthread_mutex_unlock(&seen.lock);
}
static void seen_consume(void *o, const kofka_message *m) {
    (void)o, (void)m;
    pthread_mutex_lock(&seen.lock); seen.consumed++; pthread_mutex_unlock(&seen.lock);
}
static void seen_commit(void *o, const char *g, const char *t, int32_t p, int64_t off, kofka_err e) {
    (void)o, (void)g, (void)t, (void)p, (void)off;
    pthread_mutex_lock(&seen.lock);
    if (e == KOFKA_OK) seen.commits++; else seen.commit_failures++;
    pthread_mutex_unlock(&seen.lock);
}

/* ---- helpers ------------------------------------------------------------------------- */

static void find_libdir(void) {
    Dl_info info;
    if (dladdr((void *)kofka_version, &info) && info.dli_fname) {
        snprintf(libdir, sizeof libdir, "%s", info.dli_fname);
        char *slash = strrchr(libdir, '/');
        if (slash) *slash = '\0';
    }
    snprintf(plugin, sizeof plugin, "%s/libkofka_metrics.so", libdir);
}

/** Parses the metrics file; 0 with *doc filled, -1 (doc->error says why). */
static int load_metrics(prom_doc *doc) {
    memset(doc, 0, sizeof *doc);
    char *text = prom_read_file(metrics_path);
    if (!text) { snprintf(doc->error, sizeof doc->error, "cannot read %s", metrics_path); return -1; }
    int rc = prom_parse(text, doc);
    free(text);
    return rc;
}

static size_t value_len(int i) { return 10 + (size_t)(i % 7); }

static void fill_value(char *buf, int i) { memset(buf, 'a' + i % 26, value_len(i)); }

/** Bytes (key + value) of record i as this test builds it: key "key-NNN" (7 bytes). */
static uint64_t record_bytes(int i) { return 7 + value_len(i); }

static kofka_record make(int i, char *key, char *value) {
    snprintf(key, 8, "key-%03u", (unsigned)i % 1000u);
    fill_value(value, i);
    return test_record(key, 7, value, value_len(i));
}

/* ---- a reader that must never see a partial file ------------------------------------- */

static struct {
    volatile int stop;
    long reads, bad;
    char error[320];
} reader;

static void *read_continuously(void *arg) {
    (void)arg;
    while (!reader.stop) {
        char *text = prom_read_file(metrics_path);
        if (text) {
            prom_doc d;
            memset(&d, 0, sizeof d);
            /* a complete file has all nine families */
            if (prom_parse(text, &d) != 0 || d.nfamilies != 9) {
                if (!reader.bad++) snprintf(reader.error, sizeof reader.error, "%.250s (%zu families)", d.error, d.nfamilies);
            }
            reader.reads++;
            prom_free(&d);
            free(text);
        }
        test_sleep_ms(1);
    }
    return NULL;
}

/* ---- threads sending at once ----------------------------------------------------------- */

static void *send_from_thread(void *arg) {
    kofka_producer *p = arg;
    char key[8], value[32];
    for (int i = 0; i < PER_THREAD; i++) {
        kofka_record r = make(i, key, value);
        if (kofka_send(p, "threads", &r) != KOFKA_OK) return (void *)1;
    }
    return NULL;
}

/* ---- one backend ------------------------------------------------------------------------- */

static void run(const test_backend *be, int round) {
    const char *config[] = {"plugin.library.paths", plugin, "metrics.path", metrics_path,
                            "metrics.interval.ms", "20", NULL};
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, config, &b))) return;
    kofka_interceptors ic = {.struct_size = sizeof ic, .on_send = seen_send, .on_acknowledgement = seen_ack,
                             .on_consume = seen_consume, .on_commit = seen_commit};
    CHECK_OK(kofka_interceptors_add(b, "test-observer", &ic));
    const char *small_config[] = {"max.message.bytes", "10", NULL};
    CHECK_OK(kofka_topic_create(b, "orders", 3));
    CHECK_OK(kofka_topic_create(b, "threads", 2));
    CHECK_OK(kofka_topic_create_with_config(b, "small", 1, small_config));

    reader.stop = 0;
    pthread_t rt;
    CHECK_EQ(0, pthread_create(&rt, NULL, read_continuously, NULL));

    kofka_producer *p = NULL;
    CHECK_OK(kofka_producer_new(b, NULL, &p));
    char key[8], value[32];
    uint64_t bytes = 0;
    int n = 0;
    for (int i = 0; i < SENDS; i++, n++) {
        kofka_record r = make(n, key, value);
        CHECK_OK(kofka_send(p, "orders", &r));
        bytes += record_bytes(n);
    }
    static char keys[BATCH][8], values[BATCH][32];
    kofka_record batch[BATCH];
    for (int i = 0; i < BATCH; i++, n++) {
        batch[i] = make(n, keys[i], values[i]);
        bytes += record_bytes(n);
    }
    CHECK_OK(kofka_send_batch(p, "orders", batch, BATCH));
    for (int i = 0; i < PRODUCES; i++, n++) {
        kofka_record r = make(n, key, value);
        CHECK_OK(kofka_produce(p, "orders", &r, NULL));
        bytes += record_bytes(n);
    }
    CHECK_OK(kofka_flush(p, 10000));

    pthread_t senders[THREADS];
    for (int t = 0; t < THREADS; t++) CHECK_EQ(0, pthread_create(&senders[t], NULL, send_from_thread, p));
    for (int t = 0; t < THREADS; t++) {
        void *rc = NULL;
        pthread_join(senders[t], &rc);
        CHECK(rc == NULL);
    }

    /* failures: an unknown partition (twice), a record too large for "small", a lossy link */
    for (int i = 0; i < 2; i++) {
        kofka_record bad = test_record("k", 1, "v", 1);
        bad.partition = 99;   /* set each time: a send writes where the record went (-1 on failure) */
        CHECK_ERR(KOFKA_ERR_UNKNOWN_PARTITION, kofka_send(p, "orders", &bad));
    }
    kofka_record big = test_record(NULL, 0, "0123456789abcdef", 16);
    CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_send(p, "small", &big));
    const char *lossy_config[] = {"fault.request.loss.rate", "1.0", "retries", "0", "delivery.timeout.ms", "200", NULL};
    kofka_producer *lossy = NULL;
    CHECK_OK(kofka_producer_new(b, lossy_config, &lossy));
    for (int i = 0; i < 3; i++) {
        kofka_record r = test_record("k", 1, "v", 1);
        CHECK_ERR(KOFKA_ERR_TIMED_OUT, kofka_send(lossy, "orders", &r));
    }
    CHECK_OK(kofka_producer_close(lossy, 1000));
    CHECK_OK(kofka_producer_close(p, 10000));

    /* consume everything in a group, commit, then a refused commit after a rebalance */
    const char *cc[] = {"group.id", GROUP, "enable.auto.commit", "false", "auto.offset.reset", "earliest", NULL};
    kofka_consumer *c = NULL, *c2 = NULL;
    CHECK_OK(kofka_consumer_new(b, cc, &c));
    const char *topics[] = {"orders"};
    CHECK_OK(kofka_subscribe(c, topics, 1));
    int consumed = 0;
    uint64_t consumed_bytes = 0;
    int64_t deadline = test_now_ms() + 10000;
    while (consumed < SENDS + BATCH + PRODUCES && test_now_ms() < deadline) {
        kofka_message *m = NULL;
        if (kofka_poll(c, 100, &m) == KOFKA_OK && m) {
            consumed++;
            consumed_bytes += m->key_len + m->value_len;
            kofka_message_free(m);
        }
    }
    CHECK_EQ(SENDS + BATCH + PRODUCES, consumed);
    CHECK_EQ(bytes, consumed_bytes);
    CHECK_OK(kofka_commit(c));
    CHECK_OK(kofka_consumer_new(b, cc, &c2));
    CHECK_OK(kofka_subscribe(c2, topics, 1));
    kofka_message *none = NULL;
    CHECK_OK(kofka_poll(c2, 300, &none));
    CHECK(none == NULL);
    CHECK_ERR(KOFKA_ERR_REBALANCED, kofka_commit(c));

    /* the background writer has written what was done so far, while the broker is open */
    prom_doc doc;
    double written = -1;
    deadline = test_now_ms() + 5000;
    while (test_now_ms() < deadline) {
        if (load_metrics(&doc) == 0) {
            written = prom_get(&doc, "kofka_consumed_records_total", "topic", "orders", NULL);
            prom_free(&doc);
            if (written == (double)(consumed * round)) break;
        }
        test_sleep_ms(10);
    }
    CHECK_EQ(consumed * round, (long long)written);

    CHECK_OK(kofka_consumer_close(c));
    CHECK_OK(kofka_consumer_close(c2));
    CHECK_OK(kofka_broker_close(b));
    reader.stop = 1;
    pthread_join(rt, NULL);
    CHECK(reader.reads > 0);
    CHECK_EQ(0, reader.bad);
    if (reader.bad) printf("  a reader saw a bad file: %s\n", reader.error);

    /* the file as closing left it */
    if (!CHECK_EQ(0, load_metrics(&doc))) { printf("  %s\n", doc.error); prom_free(&doc); return; }
    long r = round;
    long orders = SENDS + BATCH + PRODUCES, threaded = THREADS * PER_THREAD;
    CHECK_EQ(r * (orders + 2 + 3), (long long)prom_get(&doc, "kofka_sent_records_total", "topic", "orders", NULL));
    CHECK_EQ(r * threaded, (long long)prom_get(&doc, "kofka_sent_records_total", "topic", "threads", NULL));
    CHECK_EQ(r * 1, (long long)prom_get(&doc, "kofka_sent_records_total", "topic", "small", NULL));
    CHECK_EQ(r * orders, (long long)prom_get(&doc, "kofka_produced_records_total", "topic", "orders", NULL));
    CHECK_EQ(r * threaded, (long long)prom_get(&doc, "kofka_produced_records_total", "topic", "threads", NULL));
    CHECK_EQ((long long)(r * (long)bytes), (long long)prom_get(&doc, "kofka_produced_bytes_total", "topic", "orders", NULL));
    CHECK_EQ(r * 2, (long long)prom_get(&doc, "kofka_delivery_failures_total", "topic", "orders", "error",
                                         "KOFKA_ERR_UNKNOWN_PARTITION", NULL));
    CHECK_EQ(r * 3, (long long)prom_get(&doc, "kofka_delivery_failures_total", "topic", "orders", "error",
                                         "KOFKA_ERR_TIMED_OUT", NULL));
    CHECK_EQ(r * 1, (long long)prom_get(&doc, "kofka_delivery_failures_total", "topic", "small", "error",
                                         "KOFKA_ERR_MSG_TOO_LARGE", NULL));
    CHECK_EQ(r * orders, (long long)prom_get(&doc, "kofka_consumed_records_total", "topic", "orders", NULL));
    CHECK_EQ((long long)(r * (long)bytes), (long long)prom_get(&doc, "kofka_consumed_bytes_total", "topic", "orders", NULL));
    CHECK_EQ(r * 3, (long long)prom_get(&doc, "kofka_commits_total", "group", GROUP, "topic", "orders", NULL));
    CHECK_EQ(r * 3, (long long)prom_get(&doc, "kofka_commit_failures_total", "group", GROUP, "topic", "orders", "error",
                                         "KOFKA_ERR_REBALANCED", NULL));
    /* one latency observation per successful delivery */
    CHECK_EQ(r * orders, (long long)prom_get(&doc, "kofka_produce_latency_seconds_count", "topic", "orders", NULL));
    CHECK_EQ(r * threaded, (long long)prom_get(&doc, "kofka_produce_latency_seconds_count", "topic", "threads", NULL));
    CHECK(prom_get(&doc, "kofka_produce_latency_seconds_sum", "topic", "orders", NULL) > 0);
    /* and what the test's own interceptor saw (process-wide totals) */
    pthread_mutex_lock(&seen.lock);
    CHECK_EQ(seen.sent, (long long)prom_total(&doc, "kofka_sent_records_total"));
    CHECK_EQ(seen.acked_ok, (long long)prom_total(&doc, "kofka_produced_records_total"));
    CHECK_EQ(seen.failed, (long long)prom_total(&doc, "kofka_delivery_failures_total"));
    CHECK_EQ(seen.consumed, (long long)prom_total(&doc, "kofka_consumed_records_total"));
    CHECK_EQ(seen.commits, (long long)prom_total(&doc, "kofka_commits_total"));
    CHECK_EQ(seen.commit_failures, (long long)prom_total(&doc, "kofka_commit_failures_total"));
    pthread_mutex_unlock(&seen.lock);
    prom_free(&doc);
}

/* ---- separate processes: config errors, the write at close ---------------------------- */

/** Runs body in a child process (a fresh process: the plugin not loaded yet); its exit status. */
static int in_child(int (*body)(void)) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) _exit(body());
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int open_fails_naming(const char *key, const char *value, const char *named) {
    const char *config[] = {"plugin.library.paths", plugin, key, value, NULL};
    kofka_broker *b = NULL;
    kofka_err e = kofka_broker_open("memory:", config, &b);
    if (e != KOFKA_ERR_INVALID_CONFIG || !strstr(kofka_last_error(), named)) {
        printf("  open with %s=%s: %s \"%s\"\n", key, value, kofka_err_name(e), kofka_last_error());
        return 1;
    }
    return 0;
}

static int unknown_metrics_key_is_refused(void) { return open_fails_naming("metrics.bogus", "1", "metrics.bogus"); }
static int bad_interval_is_refused(void) { return open_fails_naming("metrics.interval.ms", "-5", "metrics.interval.ms"); }
static int unwritable_folder_is_refused(void) {
    return open_fails_naming("metrics.path", "/nonexistent-kofka-dir/x.prom", "/nonexistent-kofka-dir");
}

static char close_path[256];

/** With metrics.interval.ms=0 nothing is written until the broker closes. */
static int close_writes_the_file(void) {
    const char *config[] = {"plugin.library.paths", plugin, "metrics.path", close_path, "metrics.interval.ms", "0", NULL};
    kofka_broker *b = NULL;
    kofka_producer *p = NULL;
    unlink(close_path);
    if (kofka_broker_open("memory:", config, &b) || kofka_producer_new(b, NULL, &p)) return 2;
    for (int i = 0; i < 5; i++) {
        kofka_record r = test_record("k", 1, "v", 1);
        if (kofka_send(p, "t", &r)) return 3;
    }
    kofka_producer_close(p, 1000);
    test_sleep_ms(50);
    struct stat st;
    if (stat(close_path, &st) == 0) { printf("  the file exists before close\n"); return 4; }
    kofka_broker_close(b);
    prom_doc d;
    memset(&d, 0, sizeof d);
    char *text = prom_read_file(close_path);
    int rc = !text ? 5 : prom_parse(text, &d) != 0 ? 6 : prom_get(&d, "kofka_sent_records_total", "topic", "t", NULL) != 5 ? 7 : 0;
    if (rc) printf("  after close: rc %d %s\n", rc, d.error);
    free(text);
    prom_free(&d);
    unlink(close_path);
    return rc;
}

int main(void) {
    check_init();
    find_libdir();
    struct stat st;
    if (!CHECK(stat(plugin, &st) == 0)) {
        printf("  no %s (swift build builds it beside libkofka.so)\n", plugin);
        return check_done();
    }
    snprintf(metrics_path, sizeof metrics_path, "/tmp/kofka-ctest-metrics-%ld.prom", (long)getpid());
    snprintf(close_path, sizeof close_path, "/tmp/kofka-ctest-metrics-close-%ld.prom", (long)getpid());
    unlink(metrics_path);

    /* separate processes first, while this one has not loaded the plugin */
    CHECK_EQ(0, in_child(unknown_metrics_key_is_refused));
    CHECK_EQ(0, in_child(bad_interval_is_refused));
    CHECK_EQ(0, in_child(unwritable_folder_is_refused));
    CHECK_EQ(0, in_child(close_writes_the_file));

    /* without the plugin, metrics.* keys are nobody's: refused by the broker */
    const char *no_plugin[] = {"metrics.path", metrics_path, NULL};
    kofka_broker *b = NULL;
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_broker_open("memory:", no_plugin, &b));
    CHECK_CONTAINS(kofka_last_error(), "metrics.path");

    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "metrics");
        run(&be, i + 1);
        test_backend_teardown(&be);
    }

    /* a child forked now (the writer thread running) exits at once: no join of a thread it does
     * not have, no lock a vanished thread held, no write of the parent's file */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) exit(0);          /* exit(), not _exit(): the plugin's exit-time writer runs */
    int status = -1;
    for (int i = 0; i < 500 && waitpid(pid, &status, WNOHANG) == 0; i++) test_sleep_ms(10);
    if (!CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0)) { kill(pid, SIGKILL); waitpid(pid, NULL, 0); }
    unlink(metrics_path);
    return check_done();
}
