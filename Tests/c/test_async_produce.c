/*
 * test_async_produce.c — kofka_produce + delivery reports.
 *
 * 10,000 records are queued with kofka_produce (retrying after
 * kofka_producer_poll on KOFKA_ERR_QUEUE_FULL), then kofka_flush. Proven, on
 * both backends:
 *  - every record gets exactly one delivery report, with KOFKA_OK, its own
 *    msg_opaque, its own key and value bytes and the topic name;
 *  - every report runs on the calling thread (pthread_self) and only inside
 *    kofka_producer_poll / kofka_flush, never on a library thread;
 *  - offsets are distinct per partition, and each partition's offsets are
 *    exactly 0 .. high watermark - 1;
 *  - kofka_flush returns KOFKA_OK with nothing left to report.
 */
#include "check.h"
#include <pthread.h>

#define TOPIC "async"
#define PARTITIONS 3
#define COUNT 10000

typedef struct reports {
    pthread_t main_thread;
    int serving;              /* 1 while we are inside kofka_producer_poll / kofka_flush */
    int count[COUNT];         /* reports per record */
    int64_t offset[COUNT];
    int32_t partition[COUNT];
    int total, wrong_thread, outside_serving, errors, wrong_bytes, wrong_topic, bad_opaque;
} reports;

static reports rep;

static void on_delivery(kofka_producer *p, const char *topic, const kofka_record *r, void *msg_opaque,
                        void *cb_opaque) {
    (void)p;
    reports *R = cb_opaque;
    R->total++;
    if (!pthread_equal(pthread_self(), R->main_thread)) R->wrong_thread++;
    if (!R->serving) R->outside_serving++;
    if (!topic || strcmp(topic, TOPIC) != 0) R->wrong_topic++;
    uintptr_t i = (uintptr_t)msg_opaque;
    if (i < 1 || i > COUNT) { R->bad_opaque++; return; }
    i -= 1;
    R->count[i]++;
    R->offset[i] = r->offset;
    R->partition[i] = r->partition;
    if (r->err != KOFKA_OK && R->errors++ < 3) printf("    report %zu: %s\n", (size_t)i, kofka_err_name(r->err));
    char v[32];
    int n = snprintf(v, sizeof v, "value-%05zu", (size_t)i);
    char k[16];
    int kn = snprintf(k, sizeof k, "k%zu", (size_t)(i % 101));
    if (r->value_len != (size_t)n || !r->value || memcmp(r->value, v, (size_t)n) != 0 || r->key_len != (size_t)kn ||
        !r->key || memcmp(r->key, k, (size_t)kn) != 0)
        R->wrong_bytes++;
}

static int serve(kofka_producer *p, int timeout_ms) {
    rep.serving = 1;
    int n = kofka_producer_poll(p, timeout_ms);
    rep.serving = 0;
    return n;
}

static void async_produce(const test_backend *be) {
    memset(&rep, 0, sizeof rep);
    rep.main_thread = pthread_self();
    kofka_broker *b = NULL;
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(b, TOPIC, PARTITIONS));
    const char *cfg[] = {"linger.ms", "5", "queue.buffering.max.messages", "2000", NULL};
    if (!CHECK_OK(kofka_producer_new(b, cfg, &p))) { kofka_broker_close(b); return; }
    CHECK_OK(kofka_producer_set_delivery_cb(p, on_delivery, &rep));

    int queue_full = 0, other_errors = 0, polled = 0;
    int64_t t0 = test_now_ms();
    for (int i = 0; i < COUNT; i++) {
        char v[32], k[16];
        int n = snprintf(v, sizeof v, "value-%05d", i);
        int kn = snprintf(k, sizeof k, "k%d", i % 101);
        kofka_record r = test_record(k, (size_t)kn, v, (size_t)n);
        for (;;) {
            kofka_err e = kofka_produce(p, TOPIC, &r, (void *)(uintptr_t)(i + 1));
            if (e == KOFKA_OK) break;
            if (e == KOFKA_ERR_QUEUE_FULL) {
                queue_full++;
                polled += serve(p, 100);
                continue;
            }
            if (other_errors++ < 3) printf("    produce %d: %s: %s\n", i, kofka_err_name(e), kofka_last_error());
            break;
        }
        if (i % 1000 == 999) polled += serve(p, 0);
    }
    rep.serving = 1;
    CHECK_OK(kofka_flush(p, 30000));
    rep.serving = 0;
    int64_t elapsed = test_now_ms() - t0;
    CHECK_EQ(0, serve(p, 0)); /* nothing left to report */
    CHECK_EQ(0, other_errors);
    CHECK(polled >= 0);

    printf("  %d reports in %lld ms (queue full %d times)\n", rep.total, (long long)elapsed, queue_full);
    CHECK_EQ(COUNT, rep.total);
    CHECK_EQ(0, rep.wrong_thread);
    CHECK_EQ(0, rep.outside_serving);
    CHECK_EQ(0, rep.errors);
    CHECK_EQ(0, rep.wrong_bytes);
    CHECK_EQ(0, rep.wrong_topic);
    CHECK_EQ(0, rep.bad_opaque);
    int not_once = 0;
    for (int i = 0; i < COUNT; i++) not_once += rep.count[i] != 1;
    CHECK_EQ(0, not_once);

    /* Offsets: distinct per partition and exactly 0 .. high-1. */
    int64_t total_high = 0;
    for (int part = 0; part < PARTITIONS; part++) {
        int64_t lo = -1, hi = -1;
        CHECK_OK(kofka_watermarks(b, TOPIC, part, &lo, &hi));
        total_high += hi;
        if (hi <= 0 || hi > COUNT) { CHECK(hi > 0 && hi <= COUNT); continue; }
        char *used = calloc((size_t)hi, 1);
        int bad = 0, dup = 0;
        for (int i = 0; i < COUNT; i++) {
            if (rep.partition[i] != part) continue;
            if (rep.offset[i] < 0 || rep.offset[i] >= hi) bad++;
            else if (used[rep.offset[i]]++) dup++;
        }
        int holes = 0;
        for (int64_t o = 0; o < hi; o++) holes += !used[o];
        free(used);
        CHECK_EQ(0, bad);
        CHECK_EQ(0, dup);
        CHECK_EQ(0, holes);
    }
    CHECK_EQ(COUNT, total_high);

    rep.serving = 1;
    CHECK_OK(kofka_producer_close(p, 5000));
    rep.serving = 0;
    CHECK_OK(kofka_broker_close(b));
}

int main(void) {
    check_init();
    printf("test_async_produce: 10,000 kofka_produce, one report each, on the calling thread\n");
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "async");
        async_produce(&be);
        test_backend_teardown(&be);
    }
    return check_done();
}
