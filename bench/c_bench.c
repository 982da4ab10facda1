/* C-face benchmark: Kofka through libkofka.so (kofka_send_batch, kofka_send_packed,
 * kofka_poll_batch) beside a minimal in-memory C log (malloc + memcpy per record) in the same
 * run; then the per-record idiom (kofka_produce, kofka_poll) on memory and SQLite beside
 * librdkafka's rd_kafka_producev / rd_kafka_consumer_poll to its mock cluster (built with
 * -DKOFKA_BENCH_RDKAFKA and librdkafka). Figures are printed, never asserted.
 * Usage: c_bench [records] [storage] [per-record]   ("per-record": only the per-record rows) */
#include "kofka.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef KOFKA_BENCH_RDKAFKA
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#endif

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
#define CK(x) do { kofka_err e_ = (x); if (e_) { fprintf(stderr, "%s: %s\n", kofka_err_name(e_), kofka_last_error()); exit(1); } } while (0)
enum { SIZE = 100, BATCH = 1000 };

static double c_log(long n, const char *src) {
    double t0 = now();
    char **log = NULL; size_t *lens = NULL; long cap = 0;
    for (long i = 0; i < n; i++) {
        if (i == cap) { cap = cap ? cap * 2 : 1024; log = realloc(log, cap * sizeof *log); lens = realloc(lens, cap * sizeof *lens); }
        log[i] = malloc(SIZE); memcpy(log[i], src, SIZE); lens[i] = SIZE;
    }
    double t = now() - t0;
    for (long i = 0; i < n; i++) free(log[i]);
    free(log); free(lens);
    return t;
}

/* A fresh store per run (512-byte buffers): sqlite:PATH becomes sqlite:PATH-N, path its file. */
static void fresh_store(const char *base, char *storage, char *path) {
    static int runs;
    path[0] = 0;
    if (strncmp(base, "sqlite:", 7) == 0) {
        snprintf(path, 512, "%s-%d", base + 7, runs++);
        snprintf(storage, 512, "sqlite:%s", path);
    } else {
        snprintf(storage, 512, "%s", base);
    }
}

/* Removes what fresh_store's SQLite file left ("" : nothing). */
static void remove_store(const char *path) {
    if (!path[0]) return;
    const char *sfx[] = {"", "-wal", "-shm", "-bell"};
    for (int i = 0; i < 4; i++) { char f[600]; snprintf(f, sizeof f, "%s%s", path, sfx[i]); remove(f); }
}

/* A counting interceptor, as a metrics plugin's simplest form: one hook per sent and per
 * acknowledged record, each an atomic increment. */
static long hook_sent, hook_acked;
static void count_send(void *o, const char *t, kofka_record *r) { (void)o; (void)t; (void)r; __atomic_add_fetch(&hook_sent, 1, __ATOMIC_RELAXED); }
static void count_ack(void *o, const char *t, const kofka_record *r) { (void)o; (void)t; (void)r; __atomic_add_fetch(&hook_acked, 1, __ATOMIC_RELAXED); }

/* packed: kofka_send_packed instead of kofka_send_batch; hook: a counting interceptor added. */
static double kofka_batch_with(long n, const char *base, const char *src, int packed, int hook) {
    char storage[512], path[512];
    fresh_store(base, storage, path);
    kofka_broker *b; CK(kofka_broker_open(storage, NULL, &b));
    CK(kofka_topic_create(b, "bench", 1));
    if (hook) {
        kofka_interceptors ic = {.struct_size = sizeof ic, .on_send = count_send, .on_acknowledgement = count_ack};
        CK(kofka_interceptors_add(b, "count", &ic));
    }
    kofka_producer *p; CK(kofka_producer_new(b, NULL, &p));
    kofka_record *recs = calloc(BATCH, sizeof *recs);
    int64_t *vlens = malloc(BATCH * sizeof *vlens);
    char *buf = malloc((size_t)BATCH * SIZE);
    for (int i = 0; i < BATCH; i++) { memcpy(buf + (size_t)i * SIZE, src, SIZE); vlens[i] = SIZE; }
    double t0 = now();
    for (long done = 0; done < n; done += BATCH) {
        if (packed) {
            CK(kofka_send_packed(p, "bench", 0, NULL, NULL, buf, vlens, BATCH, NULL, NULL, NULL));
        } else {
            for (int i = 0; i < BATCH; i++) { recs[i] = (kofka_record){.partition = 0, .value = buf + (size_t)i * SIZE, .value_len = SIZE}; }
            CK(kofka_send_batch(p, "bench", recs, BATCH));
        }
    }
    double t = now() - t0;
    /* read it back */
    kofka_consumer *c; CK(kofka_consumer_new(b, NULL, &c));
    int32_t part = 0; CK(kofka_assign(c, "bench", &part, 1));
    kofka_message *ms[500]; size_t got = 0, cnt; long total = 0;
    double r0 = now();
    while (total < n) {
        CK(kofka_poll_batch(c, 1000, ms, 500, &cnt));
        if (!cnt) break;
        for (size_t i = 0; i < cnt; i++) { got += ms[i]->value_len; kofka_message_free(ms[i]); }
        total += (long)cnt;
    }
    double rt = now() - r0;
    if (packed) printf("  c face  kofka_poll_batch     %-10s %10.0f rec/s\n", storage, total / rt);
    kofka_consumer_destroy(c);
    CK(kofka_producer_close(p, -1)); CK(kofka_broker_close(b));
    free(recs); free(vlens); free(buf);
    remove_store(path);
    return t;
}

static double kofka_batch(long n, const char *storage, const char *src, int packed) {
    return kofka_batch_with(n, storage, src, packed, 0);
}

/* One record per call: kofka_send (acks=all, memory) and kofka_poll, where the per-call cost of
 * the C face (handle lookup, argument checks, message bookkeeping) is not shared by a batch. */
static void kofka_single(long n, const char *base, const char *src, double *send_s, double *poll_s) {
    char storage[512], path[512];
    fresh_store(base, storage, path);
    kofka_broker *b; CK(kofka_broker_open(storage, NULL, &b));
    CK(kofka_topic_create(b, "single", 1));
    kofka_producer *p; CK(kofka_producer_new(b, NULL, &p));
    double t0 = now();
    for (long i = 0; i < n; i++) {
        kofka_record r = {.partition = 0, .value = src, .value_len = SIZE};
        CK(kofka_send(p, "single", &r));
    }
    *send_s = now() - t0;
    kofka_consumer *c; CK(kofka_consumer_new(b, NULL, &c));
    int32_t part = 0; CK(kofka_assign(c, "single", &part, 1));
    long got = 0;
    t0 = now();
    while (got < n) {
        kofka_message *m = NULL;
        CK(kofka_poll(c, 1000, &m));
        if (!m) break;
        kofka_message_free(m);
        got++;
    }
    *poll_s = (now() - t0) * n / (got ? got : 1);
    kofka_consumer_destroy(c);
    CK(kofka_producer_close(p, -1)); CK(kofka_broker_close(b));
    remove_store(path);
}

/* ---- The per-record idiom (issue 14) ------------------------------------------------------ */

/* Delivery reports of kofka_produce / rd_kafka_producev: how many, how many failed. */
typedef struct { long ok, failed; } dr_count;

static void kofka_dr(kofka_producer *p, const char *topic, const kofka_record *r, void *mo, void *opaque) {
    (void)p; (void)topic; (void)mo;
    dr_count *d = opaque;
    if (r->err) { if (d->failed++ < 3) fprintf(stderr, "kofka delivery failed: %s\n", kofka_err_name(r->err)); }
    else d->ok++;
}

/* A loop of kofka_produce (NULL key, KOFKA_PARTITION_ANY), kofka_producer_poll(p, 0) every 1,000
 * records, kofka_flush: the librdkafka idiom on the C face, at-least-once (the default). */
static double kofka_produce_loop(long n, const char *base, const char *src, dr_count *d) {
    char storage[512], path[512];
    fresh_store(base, storage, path);
    kofka_broker *b; CK(kofka_broker_open(storage, NULL, &b));
    CK(kofka_topic_create(b, "bench", 1));
    kofka_producer *p; CK(kofka_producer_new(b, NULL, &p));
    *d = (dr_count){0, 0};
    CK(kofka_producer_set_delivery_cb(p, kofka_dr, d));
    kofka_record r = {.partition = KOFKA_PARTITION_ANY, .key = NULL, .key_len = 0, .value = src, .value_len = SIZE};
    double t0 = now();
    for (long i = 0; i < n; i++) {
        kofka_err e;
        while ((e = kofka_produce(p, "bench", &r, NULL)) == KOFKA_ERR_QUEUE_FULL) kofka_producer_poll(p, 10);
        CK(e);
        if (i % 1000 == 0) kofka_producer_poll(p, 0);
    }
    CK(kofka_flush(p, -1));
    double t = now() - t0;
    CK(kofka_producer_close(p, -1)); CK(kofka_broker_close(b));
    remove_store(path);
    return t;
}

/* Reads n records through a subscribed consumer (group.id, auto.offset.reset=earliest, the
 * default at-least-once mode) with kofka_poll one record per call (batch = 0) or kofka_poll_batch
 * (500 per call), from a fresh store filled with kofka_send_packed. The clock starts when the
 * first record arrives (*wait_s: the wait for it, the group join included); returns the rate. */
static double kofka_consume_loop(long n, const char *base, const char *src, int batch, long *got_out, double *wait_s) {
    char storage[512], path[512];
    fresh_store(base, storage, path);
    kofka_broker *b; CK(kofka_broker_open(storage, NULL, &b));
    CK(kofka_topic_create(b, "bench", 1));
    kofka_producer *p; CK(kofka_producer_new(b, NULL, &p));
    int64_t *vlens = malloc(BATCH * sizeof *vlens);
    char *buf = malloc((size_t)BATCH * SIZE);
    for (int i = 0; i < BATCH; i++) { memcpy(buf + (size_t)i * SIZE, src, SIZE); vlens[i] = SIZE; }
    for (long done = 0; done < n; done += BATCH) {
        size_t k = n - done < BATCH ? (size_t)(n - done) : BATCH;
        CK(kofka_send_packed(p, "bench", 0, NULL, NULL, buf, vlens, k, NULL, NULL, NULL));
    }
    CK(kofka_producer_close(p, -1));
    const char *conf[] = {"group.id", "bench-group", "auto.offset.reset", "earliest", NULL};
    kofka_consumer *c; CK(kofka_consumer_new(b, conf, &c));
    const char *topics[] = {"bench"};
    CK(kofka_subscribe(c, topics, 1));
    long got = 0, first = 0; int empty = 0;
    double t0 = now(), t1 = 0;
    kofka_message *ms[500];
    while (got < n && empty < 10) {
        size_t cnt = 0;
        kofka_err e;
        if (batch) e = kofka_poll_batch(c, 1000, ms, 500, &cnt);
        else { ms[0] = NULL; e = kofka_poll(c, 1000, &ms[0]); cnt = ms[0] != NULL; }
        if (e == KOFKA_ERR_BUSY) continue;
        CK(e);
        if (!cnt) { empty++; continue; }
        for (size_t i = 0; i < cnt; i++) kofka_message_free(ms[i]);
        if (!got) { t1 = now(); first = (long)cnt; }
        got += (long)cnt;
    }
    double t = now() - t1;
    *wait_s = t1 - t0;
    *got_out = got;
    CK(kofka_consumer_close(c)); CK(kofka_broker_close(b));
    free(vlens); free(buf);
    remove_store(path);
    return (got - first) / t;
}

#ifdef KOFKA_BENCH_RDKAFKA
static void rd_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk; dr_count *d = opaque;
    if (m->err) { if (d->failed++ < 3) fprintf(stderr, "librdkafka delivery failed: %s\n", rd_kafka_err2str(m->err)); }
    else d->ok++;
}

static void rd_set(rd_kafka_conf_t *conf, const char *k, const char *v) {
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) { fprintf(stderr, "librdkafka %s: %s\n", k, err); exit(1); }
}

/* A librdkafka producer with its own mock cluster (test.mock.num.brokers=1), topic "bench" of
 * `partitions` partitions created on it and its metadata fetched (the connection is up): default
 * settings, which in librdkafka 2.x are an at-least-once producer (acks=all, idempotence off,
 * retries), linger.ms 5, queue.buffering.max.messages 100000 (as kofka_produce's defaults). */
static rd_kafka_t *rd_producer(dr_count *d, int partitions) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_set(conf, "test.mock.num.brokers", "1");
    rd_set(conf, "acks", "all");
    rd_set(conf, "enable.idempotence", "false");
    rd_set(conf, "log_level", "4");  /* no "Mock cluster enabled" notice per instance */
    rd_kafka_conf_set_dr_msg_cb(conf, rd_dr);
    rd_kafka_conf_set_opaque(conf, d);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) { fprintf(stderr, "rd_kafka_new: %s\n", err); exit(1); }
    rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(rk);
    if (!mc || rd_kafka_mock_topic_create(mc, "bench", partitions, 1)) { fprintf(stderr, "mock topic\n"); exit(1); }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, "bench", NULL);
    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    if (e) { fprintf(stderr, "metadata: %s\n", rd_kafka_err2str(e)); exit(1); }
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rk;
}

/* n records by rd_kafka_producev (partition `partitions` > 1: record i to i % partitions; else
 * the partitioner's choice), rd_kafka_poll(rk, 0) every 1,000, rd_kafka_flush. */
static double rd_produce_loop(rd_kafka_t *rk, long n, const char *src, int partitions) {
    double t0 = now();
    for (long i = 0; i < n; i++) {
        int32_t part = partitions > 1 ? (int32_t)(i % partitions) : RD_KAFKA_PARTITION_UA;
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("bench"), RD_KAFKA_V_PARTITION(part),
                                      RD_KAFKA_V_VALUE((void *)src, SIZE), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        if (e) { fprintf(stderr, "rd_kafka_producev: %s\n", rd_kafka_err2str(e)); exit(1); }
        if (i % 1000 == 0) rd_kafka_poll(rk, 0);
    }
    rd_kafka_resp_err_t e = rd_kafka_flush(rk, 600000);
    if (e) { fprintf(stderr, "rd_kafka_flush: %s\n", rd_kafka_err2str(e)); exit(1); }
    return now() - t0;
}

static double rd_produce(long n, const char *src, dr_count *d) {
    *d = (dr_count){0, 0};
    rd_kafka_t *rk = rd_producer(d, 1);
    double t = rd_produce_loop(rk, n, src, 1);
    rd_kafka_destroy(rk);
    return t;
}

/* The mock cluster keeps only the newest ~39,000 of these records per partition (it drops older
 * ones: a 1-partition fill of 200,000 left 39,415), so the n records
 * are spread over partitions of RD_PART_RECORDS each, every one of them kept. */
enum { RD_PART_RECORDS = 20000 };

/* rd_kafka_consumer_poll per record (group.id, auto.offset.reset=earliest, otherwise defaults:
 * auto commit every 5000 ms) over n records produced into the mock first. Clock as
 * kofka_consume_loop's: from the first record. */
static double rd_consume(long n, const char *src, long *got_out, long *errs_out, double *wait_s, int *parts_out) {
    dr_count d = {0, 0};
    int parts = (int)((n + RD_PART_RECORDS - 1) / RD_PART_RECORDS);
    if (parts < 1) parts = 1;
    rd_kafka_t *prod = rd_producer(&d, parts);
    rd_produce_loop(prod, n, src, parts);
    if (d.ok != n) { fprintf(stderr, "librdkafka fill: %ld of %ld delivered\n", d.ok, n); exit(1); }
    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(rd_kafka_handle_mock_cluster(prod));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_set(conf, "bootstrap.servers", bootstraps);
    rd_set(conf, "group.id", "bench-group");
    rd_set(conf, "auto.offset.reset", "earliest");
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) { fprintf(stderr, "rd_kafka_new: %s\n", err); exit(1); }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, "bench", RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, topics);
    if (e) { fprintf(stderr, "rd_kafka_subscribe: %s\n", rd_kafka_err2str(e)); exit(1); }
    rd_kafka_topic_partition_list_destroy(topics);
    long got = 0, errs = 0, first = 0; int empty = 0;
    double t0 = now(), t1 = 0;
    while (got < n && empty < 30) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
        if (!m) { empty++; continue; }
        if (m->err) { if (errs++ < 3) fprintf(stderr, "rd_kafka_consumer_poll: %s\n", rd_kafka_message_errstr(m)); }
        else { if (!got) { t1 = now(); first = 1; } got++; }
        rd_kafka_message_destroy(m);
    }
    double t = now() - t1;
    *wait_s = t1 - t0; *got_out = got; *errs_out = errs; *parts_out = parts;
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    rd_kafka_destroy(prod);
    return (got - first) / t;
}
#endif

/* The per-record rows: kofka_produce beside rd_kafka_producev, kofka_poll beside the same
 * consumer's kofka_poll_batch and beside rd_kafka_consumer_poll, best of 3 each, on memory and
 * on SQLite (default durability) in a temporary directory, a fresh store per run. */
static void per_record(long n, const char *src) {
    char dir[] = "/tmp/c_bench-XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); exit(1); }
    char sqlite[600]; snprintf(sqlite, sizeof sqlite, "sqlite:%s/c.db", dir);
    const char *stores[] = {"memory:", sqlite};
    printf("per-record idiom, %ld records of %d bytes (NULL key), best of 3, a fresh store per run\n", n, SIZE);
    double rd_prod = 0;
#ifdef KOFKA_BENCH_RDKAFKA
    double best = 1e9; long rd_failed = 0, rd_short = 0;
    for (int r = 0; r < 3; r++) {
        dr_count d; double t = rd_produce(n, src, &d);
        if (t < best) best = t;
        rd_failed += d.failed; rd_short += n - d.ok - d.failed;
    }
    rd_prod = n / best;
    printf("  librdkafka %s rd_kafka_producev + poll(0)/1000 + flush -> mock cluster  %10.0f rec/s   delivery failures %ld, missing reports %ld\n",
           rd_kafka_version_str(), rd_prod, rd_failed, rd_short);
#endif
    double pr_rate[2] = {0, 0};
    for (int s = 0; s < 2; s++) {
        double best = 1e9; long failed = 0, missing = 0;
        for (int r = 0; r < 3; r++) {
            dr_count d; double t = kofka_produce_loop(n, stores[s], src, &d);
            if (t < best) best = t;
            failed += d.failed; missing += n - d.ok - d.failed;
        }
        pr_rate[s] = n / best;
        printf("  kofka_produce + poll(0)/1000 + kofka_flush   %-8s %10.0f rec/s   %.2f us/record   delivery failures %ld, missing reports %ld",
               s ? "sqlite" : "memory", pr_rate[s], best / n * 1e6, failed, missing);
        if (rd_prod > 0) printf("   %.2fx librdkafka", pr_rate[s] / rd_prod);
        printf("\n");
    }
    for (int s = 0; s < 2; s++) {
        double best_one = 0, best_batch = 0, w1 = 0, wb = 0; long got1 = n, gotb = n;
        for (int r = 0; r < 3; r++) {
            long g; double w;
            double one = kofka_consume_loop(n, stores[s], src, 0, &g, &w);
            if (g < got1) got1 = g;
            if (one > best_one) { best_one = one; w1 = w; }
            double bat = kofka_consume_loop(n, stores[s], src, 1, &g, &w);
            if (g < gotb) gotb = g;
            if (bat > best_batch) { best_batch = bat; wb = w; }
        }
        printf("  kofka_poll (1/call), subscribed, at-least-once %-8s %10.0f rec/s   %.2f us/record   received %ld of %ld%s, first after %.1f ms\n",
               s ? "sqlite" : "memory", best_one, 1e6 / best_one, got1, n, got1 == n ? "" : " MISSING", w1 * 1e3);
        printf("  kofka_poll_batch (500/call), same consumer     %-8s %10.0f rec/s   received %ld of %ld%s, first after %.1f ms   per-record / batch %.2fx\n",
               s ? "sqlite" : "memory", best_batch, gotb, n, gotb == n ? "" : " MISSING", wb * 1e3, best_one / best_batch);
        pr_rate[s] = best_one;
    }
#ifdef KOFKA_BENCH_RDKAFKA
    double best_rd = 0, wr = 0; long gotr = n, errs = 0; int parts = 1;
    for (int r = 0; r < 3; r++) {
        long g, e; double w;
        double rate = rd_consume(n, src, &g, &e, &w, &parts);
        if (g < gotr) gotr = g;
        errs += e;
        if (rate > best_rd) { best_rd = rate; wr = w; }
    }
    printf("  librdkafka rd_kafka_consumer_poll (1/call) <- mock cluster, %d partitions  %10.0f rec/s   received %ld of %ld%s, errors %ld, first after %.1f ms\n",
           parts, best_rd, gotr, n, gotr == n ? "" : " MISSING", errs, wr * 1e3);
    printf("  kofka_poll / rd_kafka_consumer_poll: memory %.2fx, sqlite %.2fx\n", pr_rate[0] / best_rd, pr_rate[1] / best_rd);
#else
    printf("  (built without librdkafka: -DKOFKA_BENCH_RDKAFKA and `pkg-config --cflags --libs rdkafka` add its rows)\n");
#endif
    rmdir(dir);
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    const char *storage = argc > 2 ? argv[2] : "memory:";
    char src[SIZE]; memset(src, 'x', SIZE);
    setvbuf(stdout, NULL, _IOLBF, 0);  /* rows as they come (the per-record ones take a while) */
    if (argc > 3 && strcmp(argv[3], "per-record") == 0) { per_record(n, src); return 0; }
    double best_log = 1e9, best_batch = 1e9, best_packed = 1e9;
    for (int r = 0; r < 3; r++) {
        double a = c_log(n, src), b = kofka_batch(n, storage, src, 0), c = kofka_batch(n, storage, src, 1);
        if (a < best_log) best_log = a;
        if (b < best_batch) best_batch = b;
        if (c < best_packed) best_packed = c;
    }
    printf("c face, %ld records of %d bytes, best of 3, storage %s\n", n, SIZE, storage);
    printf("  minimal C log (malloc+memcpy)        %10.0f rec/s\n", n / best_log);
    printf("  kofka_send_batch (1000/call)         %10.0f rec/s   %.2fx the C log\n", n / best_batch, best_log / best_batch);
    printf("  kofka_send_packed (1000/call)        %10.0f rec/s   %.2fx the C log\n", n / best_packed, best_log / best_packed);
    /* The cost of one counting interceptor on kofka_send_batch: alternating rounds, best of 5 each. */
    double best_plain = 1e9, best_hooked = 1e9;
    hook_sent = hook_acked = 0;
    for (int r = 0; r < 5; r++) {
        double h = kofka_batch_with(n, storage, src, 0, 1), p = kofka_batch_with(n, storage, src, 0, 0);
        if (h < best_hooked) best_hooked = h;
        if (p < best_plain) best_plain = p;
    }
    printf("  kofka_send_batch, no interceptor     %10.0f rec/s\n", n / best_plain);
    printf("  kofka_send_batch, 1 counting hook    %10.0f rec/s   %.2fx without (on_send %ld, on_acknowledgement %ld calls)\n",
           n / best_hooked, best_plain / best_hooked, hook_sent, hook_acked);
    long single = n / 10;
    double best_send = 1e9, best_poll = 1e9;
    for (int r = 0; r < 3; r++) {
        double s_, p_;
        kofka_single(single, storage, src, &s_, &p_);
        if (s_ < best_send) best_send = s_;
        if (p_ < best_poll) best_poll = p_;
    }
    printf("  kofka_send (1 record/call)           %10.0f rec/s   %.2f us/call (%ld records)\n", single / best_send, best_send / single * 1e6, single);
    printf("  kofka_poll (1 message/call)          %10.0f rec/s   %.2f us/call\n", single / best_poll, best_poll / single * 1e6);
    per_record(n, src);
    return 0;
}
