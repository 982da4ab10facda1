/*
 * test_delivery_cb.c — kofka_producer_set_delivery_cb while another thread
 * serves reports: the callback and its cb_opaque are set and read as one pair,
 * so a report never reaches callback A with B's opaque (or the reverse), and
 * every report served reaches exactly one callback (or none while it is NULL).
 * And kofka_producer_set_ready_flag: the flag reads 1 exactly while reports wait.
 * Both backends.
 */
#include "check.h"
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

typedef struct cb_ctx {
    atomic_long calls;
    atomic_long wrong_opaque; /* reports that reached this callback with another's opaque */
} cb_ctx;

static cb_ctx ctx_a, ctx_b;

static void cb_a(kofka_producer *p, const char *t, const kofka_record *r, void *mo, void *co) {
    (void)p; (void)t; (void)r; (void)mo;
    atomic_fetch_add(&ctx_a.calls, 1);
    if (co != &ctx_a) atomic_fetch_add(&ctx_a.wrong_opaque, 1);
}

static void cb_b(kofka_producer *p, const char *t, const kofka_record *r, void *mo, void *co) {
    (void)p; (void)t; (void)r; (void)mo;
    atomic_fetch_add(&ctx_b.calls, 1);
    if (co != &ctx_b) atomic_fetch_add(&ctx_b.wrong_opaque, 1);
}

typedef struct swapper {
    kofka_producer *p;
    atomic_int stop;
    long swaps;
    int errors;
} swapper;

static void *swap_callbacks(void *arg) {
    swapper *s = arg;
    while (!atomic_load(&s->stop)) {
        kofka_err e;
        switch (s->swaps % 3) {
        case 0: e = kofka_producer_set_delivery_cb(s->p, cb_a, &ctx_a); break;
        case 1: e = kofka_producer_set_delivery_cb(s->p, cb_b, &ctx_b); break;
        default: e = kofka_producer_set_delivery_cb(s->p, NULL, NULL); break;
        }
        if (e != KOFKA_OK) s->errors++;
        s->swaps++;
    }
    return NULL;
}

static void set_delivery_cb_while_polling_keeps_cb_and_opaque_paired(const test_backend *be) {
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(b, "t", 2));
    const char *cfg[] = {"linger.ms", "0", NULL};
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, cfg, &p))) { kofka_broker_close(b); return; }
    atomic_store(&ctx_a.calls, 0); atomic_store(&ctx_a.wrong_opaque, 0);
    atomic_store(&ctx_b.calls, 0); atomic_store(&ctx_b.wrong_opaque, 0);

    swapper s = {.p = p};
    pthread_t th;
    pthread_create(&th, NULL, swap_callbacks, &s);
    const long n = 3000;
    long served = 0;
    for (long i = 0; i < n; i++) {
        kofka_record r = test_record("k", 1, "v", 1);
        kofka_err e;
        while ((e = kofka_produce(p, "t", &r, NULL)) == KOFKA_ERR_QUEUE_FULL) served += kofka_producer_poll(p, 10);
        CHECK_OK(e);
        if (i % 50 == 0) {
            int k = kofka_producer_poll(p, 0);
            CHECK(k >= 0);
            served += k;
        }
    }
    CHECK_OK(kofka_flush(p, 10000));
    atomic_store(&s.stop, 1);
    pthread_join(th, NULL);
    served += kofka_producer_poll(p, 0);

    long a = atomic_load(&ctx_a.calls), bb = atomic_load(&ctx_b.calls);
    printf("    %ld swaps; %ld reports reached A, %ld reached B\n", s.swaps, a, bb);
    CHECK(s.swaps > 100);
    CHECK_EQ(0, s.errors);
    CHECK_EQ(0, atomic_load(&ctx_a.wrong_opaque));
    CHECK_EQ(0, atomic_load(&ctx_b.wrong_opaque));
    CHECK(a + bb <= n);     /* no report twice */
    CHECK(a + bb > 0);
    /* With a fixed callback every report arrives, exactly once. */
    CHECK_OK(kofka_producer_set_delivery_cb(p, cb_a, &ctx_a));
    long before = atomic_load(&ctx_a.calls);
    for (int i = 0; i < 100; i++) {
        kofka_record r = test_record(NULL, 0, "w", 1);
        CHECK_OK(kofka_produce(p, "t", &r, NULL));
    }
    CHECK_OK(kofka_flush(p, 10000));
    CHECK_EQ(100, atomic_load(&ctx_a.calls) - before);
    CHECK_OK(kofka_producer_close(p, 10000));
    CHECK_OK(kofka_broker_close(b));
    (void)served;
}

/* Waits up to 5 s (without polling) until *flag holds want; returns whether it does. */
static int wait_flag(const int32_t *flag, int32_t want) {
    for (int i = 0; i < 5000; i++) {
        if (__atomic_load_n(flag, __ATOMIC_ACQUIRE) == want) return 1;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return __atomic_load_n(flag, __ATOMIC_ACQUIRE) == want;
}

/* kofka_producer_set_ready_flag: the flag is 1 exactly while reports wait to be served, so a
 * poll(0) skipped while it reads 0 would have served nothing; unregistered or replaced, a flag
 * is never written again. */
static void the_ready_flag_is_set_while_reports_wait_and_cleared_once_they_are_served(const test_backend *be) {
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(b, "ready", 1));
    const char *cfg[] = {"linger.ms", "0", NULL};
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, cfg, &p))) { kofka_broker_close(b); return; }
    CHECK_OK(kofka_producer_set_delivery_cb(p, cb_a, &ctx_a));
    atomic_store(&ctx_a.calls, 0);
    int32_t flag = 7;
    CHECK_OK(kofka_producer_set_ready_flag(p, &flag));
    CHECK_EQ(0, flag);                                 /* set at once: nothing to serve */
    CHECK_EQ(0, kofka_producer_poll(p, 0));
    for (int round = 0; round < 3; round++) {
        kofka_record r = test_record(NULL, 0, "v", 1);
        CHECK_OK(kofka_produce(p, "ready", &r, NULL));
        CHECK(wait_flag(&flag, 1));                    /* the writer wrote it: a report waits */
        CHECK_EQ(1, kofka_producer_poll(p, 0));
        CHECK_EQ(0, flag);                             /* served: nothing waits */
        CHECK_EQ(round + 1, atomic_load(&ctx_a.calls));
    }
    /* flush serves and clears too */
    for (int i = 0; i < 50; i++) {
        kofka_record r = test_record(NULL, 0, "w", 1);
        CHECK_OK(kofka_produce(p, "ready", &r, NULL));
    }
    CHECK_OK(kofka_flush(p, 10000));
    CHECK_EQ(0, flag);
    CHECK_EQ(53, atomic_load(&ctx_a.calls));
    /* replaced, then unregistered: the earlier flag is left as it was */
    int32_t other = 5;
    CHECK_OK(kofka_producer_set_ready_flag(p, &other));
    CHECK_EQ(0, other);
    flag = 9;
    CHECK_OK(kofka_producer_set_ready_flag(p, NULL));
    other = 9;
    kofka_record r = test_record(NULL, 0, "x", 1);
    CHECK_OK(kofka_produce(p, "ready", &r, NULL));
    CHECK_OK(kofka_flush(p, 10000));
    CHECK_EQ(9, flag);
    CHECK_EQ(9, other);
    CHECK_EQ(54, atomic_load(&ctx_a.calls));
    /* bad handles: an error and a message, nothing registered */
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_producer_set_ready_flag(NULL, &flag));
    CHECK_HAS_MESSAGE();
    CHECK_OK(kofka_producer_close(p, 10000));
    CHECK_ERR(KOFKA_ERR_CLOSED, kofka_producer_set_ready_flag(p, &flag));
    CHECK_HAS_MESSAGE();
    CHECK_EQ(9, flag);
    CHECK_OK(kofka_broker_close(b));
}

int main(void) {
    check_init();
    printf("test_delivery_cb: swapping the delivery callback while reports are served\n");
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "deliverycb");
        set_delivery_cb_while_polling_keeps_cb_and_opaque_paired(&be);
        the_ready_flag_is_set_while_reports_wait_and_cleared_once_they_are_served(&be);
        test_backend_teardown(&be);
    }
    return check_done();
}
