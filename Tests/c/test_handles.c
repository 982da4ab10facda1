/*
 * test_handles.c — handles are registry tokens: a closed handle answers
 * KOFKA_ERR_CLOSED, a pointer the library never returned (or a handle of
 * another kind) answers KOFKA_ERR_INVALID_ARG, each with a message, and
 * nothing crashes:
 *  - a second close of a broker, producer or consumer is KOFKA_ERR_CLOSED;
 *  - every call with a closed producer / consumer / broker is KOFKA_ERR_CLOSED
 *    (kofka_producer_poll -1, kofka_txn_requires_abort 0, destroy a no-op);
 *  - a producer passed as a consumer (and the like), a stack address, a heap
 *    address and small integers are KOFKA_ERR_INVALID_ARG;
 *  - handles on a closed broker stay valid tokens until closed themselves;
 *  - closing a handle while another thread is using it: that thread's calls
 *    return KOFKA_OK or KOFKA_ERR_CLOSED, never crash;
 *  - kofka_message_free of a freed or never-returned message is ignored with
 *    kofka_last_error() set.
 */
#include "check.h"
#include <pthread.h>
#include <stdatomic.h>

static const kofka_err CLOSED = KOFKA_ERR_CLOSED;

/* A second close of each kind of handle. */
static void double_close_is_closed(const test_backend *be) {
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(b, "t", 2));
    kofka_producer *p = NULL;
    kofka_consumer *c = NULL, *d = NULL;
    const char *ccfg[] = {"group.id", "g", NULL};
    CHECK_OK(kofka_producer_new(b, NULL, &p));
    CHECK_OK(kofka_consumer_new(b, ccfg, &c));
    CHECK_OK(kofka_consumer_new(b, ccfg, &d));

    CHECK_OK(kofka_producer_close(p, 1000));
    CHECK_ERR(CLOSED, kofka_producer_close(p, 1000));
    CHECK_CONTAINS(kofka_last_error(), "closed");
    CHECK_OK(kofka_consumer_close(c));
    CHECK_ERR(CLOSED, kofka_consumer_close(c));
    CHECK_CONTAINS(kofka_last_error(), "closed");
    kofka_consumer_destroy(c); /* destroy after close: a no-op that says why */
    CHECK_CONTAINS(kofka_last_error(), "closed");
    kofka_consumer_destroy(d);
    CHECK_STR_EQ("", kofka_last_error());
    kofka_consumer_destroy(d);
    CHECK_CONTAINS(kofka_last_error(), "closed");
    CHECK_ERR(CLOSED, kofka_consumer_close(d));
    CHECK_OK(kofka_broker_close(b));
    CHECK_ERR(CLOSED, kofka_broker_close(b));
    CHECK_CONTAINS(kofka_last_error(), "broker");
}

static void cb_noop(kofka_producer *p, const char *t, const kofka_record *r, void *mo, void *co) {
    (void)p; (void)t; (void)r; (void)mo; (void)co;
}

/* Every producer call on a closed producer. */
static void closed_producer_every_call_is_closed(kofka_broker *b, kofka_consumer *live_consumer) {
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, NULL, &p))) return;
    CHECK_OK(kofka_producer_close(p, 1000));
    kofka_record r = test_record("k", 1, "v", 1);
    CHECK_ERR(CLOSED, kofka_send(p, "t", &r));
    CHECK_CONTAINS(kofka_last_error(), "producer");
    CHECK_ERR(CLOSED, kofka_send_batch(p, "t", &r, 1));
    CHECK_ERR(CLOSED, kofka_send_batch(p, "t", NULL, 0));
    int64_t lens[1] = {1};
    CHECK_ERR(CLOSED, kofka_send_packed(p, "t", KOFKA_PARTITION_ANY, NULL, NULL, "v", lens, 1, NULL, NULL, NULL));
    CHECK_ERR(CLOSED, kofka_produce(p, "t", &r, NULL));
    CHECK_ERR(CLOSED, kofka_producer_set_delivery_cb(p, cb_noop, NULL));
    CHECK_EQ(-1, kofka_producer_poll(p, 0));
    CHECK_CONTAINS(kofka_last_error(), "closed");
    CHECK_ERR(CLOSED, kofka_flush(p, 0));
    CHECK_ERR(CLOSED, kofka_init_transactions(p, 0));
    CHECK_ERR(CLOSED, kofka_begin_transaction(p));
    CHECK_ERR(CLOSED, kofka_send_offsets_to_transaction(p, live_consumer, 0));
    CHECK_ERR(CLOSED, kofka_commit_transaction(p, 0));
    CHECK_ERR(CLOSED, kofka_abort_transaction(p, 0));
    CHECK_EQ(0, kofka_txn_requires_abort(p));
    CHECK_CONTAINS(kofka_last_error(), "closed");
    CHECK_ERR(CLOSED, kofka_producer_close(p, 0));
}

/* Every consumer call on a closed consumer; out-parameters untouched. */
static void closed_consumer_every_call_is_closed(kofka_broker *b, kofka_producer *live_producer) {
    kofka_consumer *c = NULL;
    const char *ccfg[] = {"group.id", "g-closed", NULL};
    if (!CHECK_OK(kofka_consumer_new(b, ccfg, &c))) return;
    int32_t parts[] = {0};
    CHECK_OK(kofka_assign(c, "t", parts, 1));
    CHECK_OK(kofka_consumer_close(c));
    const char *topics[] = {"t"};
    CHECK_ERR(CLOSED, kofka_subscribe(c, topics, 1));
    CHECK_CONTAINS(kofka_last_error(), "consumer");
    CHECK_ERR(CLOSED, kofka_assign(c, "t", parts, 1));
    kofka_message *m = (kofka_message *)(uintptr_t)0x5e17;
    CHECK_ERR(CLOSED, kofka_poll(c, 0, &m));
    CHECK(m == (kofka_message *)(uintptr_t)0x5e17);
    kofka_message *ms[2];
    size_t n = 7;
    CHECK_ERR(CLOSED, kofka_poll_batch(c, 0, ms, 2, &n));
    CHECK_EQ(7, n);
    CHECK_ERR(CLOSED, kofka_commit(c));
    kofka_message fake = {"t", 0, 0, 0, NULL, 0, NULL, 0, NULL, 0};
    CHECK_ERR(CLOSED, kofka_commit_message(c, &fake));
    int64_t off = -7;
    CHECK_ERR(CLOSED, kofka_committed(c, "t", 0, &off));
    CHECK_ERR(CLOSED, kofka_position(c, "t", 0, &off));
    CHECK_EQ(-7, off);
    CHECK_ERR(CLOSED, kofka_seek(c, "t", 0, 0));
    CHECK_ERR(CLOSED, kofka_seek_to_committed(c));
    const char *tcfg[] = {"transactional.id", "tx-handles", NULL};
    kofka_producer *tp = NULL;
    if (CHECK_OK(kofka_producer_new(b, tcfg, &tp))) {
        CHECK_OK(kofka_init_transactions(tp, 1000));
        CHECK_OK(kofka_begin_transaction(tp));
        CHECK_ERR(CLOSED, kofka_send_offsets_to_transaction(tp, c, 0));
        CHECK_CONTAINS(kofka_last_error(), "consumer");
        CHECK_OK(kofka_abort_transaction(tp, 1000));
        CHECK_OK(kofka_producer_close(tp, 1000));
    }
    (void)live_producer;
}

/* Handles of the wrong kind and pointers the library never returned. */
static void foreign_pointers_are_invalid_arg(kofka_broker *b) {
    kofka_producer *p = NULL;
    kofka_consumer *c = NULL;
    if (!CHECK_OK(kofka_producer_new(b, NULL, &p))) return;
    if (!CHECK_OK(kofka_consumer_new(b, NULL, &c))) { kofka_producer_close(p, 0); return; }
    int32_t parts[] = {0};
    CHECK_OK(kofka_assign(c, "t", parts, 1));

    /* The right handle in the wrong place. */
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_poll((kofka_consumer *)p, 0, &(kofka_message *){NULL}));
    CHECK_CONTAINS(kofka_last_error(), "producer");
    kofka_record r = test_record("k", 1, "v", 1);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send((kofka_producer *)c, "t", &r));
    CHECK_CONTAINS(kofka_last_error(), "consumer");
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send((kofka_producer *)b, "t", &r));
    CHECK_CONTAINS(kofka_last_error(), "broker");
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_topic_create((kofka_broker *)p, "x", 1));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_producer_close((kofka_producer *)c, 0));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_consumer_close((kofka_consumer *)p));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_broker_close((kofka_broker *)c));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send_offsets_to_transaction(p, (kofka_consumer *)p, 0));
    kofka_consumer_destroy((kofka_consumer *)p);
    CHECK_CONTAINS(kofka_last_error(), "producer");
    /* Both are still open and working after being passed in the wrong place. */
    CHECK_OK(kofka_send(p, "t", &r));
    kofka_message *m = NULL;
    CHECK_OK(kofka_poll(c, 2000, &m));
    CHECK(m != NULL);
    kofka_message_free(m);

    /* Addresses of real memory, and small integers. */
    int on_stack = 0;
    void *on_heap = malloc(256);
    memset(on_heap, 0, 256);
    void *bogus[] = {&on_stack, on_heap, (void *)(uintptr_t)1, (void *)(uintptr_t)0x1000,
                     (void *)(uintptr_t)-1, (void *)(uintptr_t)0x4B46000000000000ull,
                     (void *)(uintptr_t)0x4B46030000000000ull, (void *)(uintptr_t)0x4B460300FFFFFFFFull};
    for (size_t i = 0; i < sizeof bogus / sizeof bogus[0]; i++) {
        int64_t lo = -7, hi = -7;
        if (!CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_watermarks((kofka_broker *)bogus[i], "t", 0, &lo, &hi)))
            printf("    (bogus pointer #%zu)\n", i);
        CHECK_CONTAINS(kofka_last_error(), "never returned");
        CHECK_EQ(-7, lo);
        CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send((kofka_producer *)bogus[i], "t", &r));
        CHECK_EQ(-1, kofka_producer_poll((kofka_producer *)bogus[i], 0));
        CHECK_EQ(0, kofka_txn_requires_abort((kofka_producer *)bogus[i]));
        CHECK_HAS_MESSAGE();
        CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_commit((kofka_consumer *)bogus[i]));
        CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_consumer_close((kofka_consumer *)bogus[i]));
        kofka_consumer_destroy((kofka_consumer *)bogus[i]);
        CHECK_HAS_MESSAGE();
        CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_producer_close((kofka_producer *)bogus[i], 0));
        CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_broker_close((kofka_broker *)bogus[i]));
    }
    CHECK_EQ(0, on_stack);
    free(on_heap);
    CHECK_OK(kofka_consumer_close(c));
    CHECK_OK(kofka_producer_close(p, 1000));
}

/* kofka_message_free: a second free, and a message the library never returned, are ignored. */
static void message_double_free_is_ignored(kofka_broker *b) {
    kofka_producer *p = NULL;
    kofka_consumer *c = NULL;
    if (!CHECK_OK(kofka_producer_new(b, NULL, &p))) return;
    if (!CHECK_OK(kofka_consumer_new(b, NULL, &c))) { kofka_producer_close(p, 0); return; }
    int32_t parts[] = {1};
    CHECK_OK(kofka_assign(c, "t", parts, 1));
    for (int i = 0; i < 3; i++) {
        kofka_record r = test_record(NULL, 0, "payload", 7);
        r.partition = 1;
        CHECK_OK(kofka_send(p, "t", &r));
    }
    kofka_message *m = NULL;
    CHECK_OK(kofka_poll(c, 2000, &m));
    if (CHECK(m != NULL)) {
        kofka_message_free(m);
        CHECK_STR_EQ("", kofka_last_error());
        kofka_message_free(m);
        CHECK_CONTAINS(kofka_last_error(), "not a message");
    }
    kofka_message *ms[4] = {NULL};
    size_t n = 0;
    CHECK_OK(kofka_poll_batch(c, 2000, ms, 4, &n));
    CHECK_EQ(2, n);
    for (size_t i = 0; i < n; i++) kofka_message_free(ms[i]);
    for (size_t i = 0; i < n; i++) {
        kofka_message_free(ms[i]);
        CHECK_CONTAINS(kofka_last_error(), "not a message");
    }
    kofka_message mine;
    memset(&mine, 0, sizeof mine);
    kofka_message_free(&mine); /* never returned by a poll */
    CHECK_CONTAINS(kofka_last_error(), "not a message");
    /* The heap is intact: the next poll and free work. */
    CHECK_OK(kofka_seek(c, "t", 1, 0));
    m = NULL;
    CHECK_OK(kofka_poll(c, 2000, &m));
    if (CHECK(m != NULL)) {
        CHECK_MEM_EQ("payload", 7, m->value, m->value_len);
        kofka_message_free(m);
        CHECK_STR_EQ("", kofka_last_error());
    }
    CHECK_OK(kofka_consumer_close(c));
    CHECK_OK(kofka_producer_close(p, 1000));
}

/* After kofka_broker_close its producers and consumers answer KOFKA_ERR_CLOSED, and are still
 * tokens to close: the first close is not CLOSED for being a stale handle, the second is. */
static void handles_outlive_their_broker_until_closed(const test_backend *be) {
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(b, "t", 1));
    kofka_producer *p = NULL;
    kofka_consumer *c = NULL;
    CHECK_OK(kofka_producer_new(b, NULL, &p));
    CHECK_OK(kofka_consumer_new(b, NULL, &c));
    CHECK_OK(kofka_broker_close(b));
    int32_t n = 0;
    CHECK_ERR(CLOSED, kofka_topic_partitions(b, "t", &n));
    kofka_producer *p2 = NULL;
    CHECK_ERR(CLOSED, kofka_producer_new(b, NULL, &p2));
    CHECK(p2 == NULL);
    kofka_record r = test_record("k", 1, "v", 1);
    CHECK_ERR(CLOSED, kofka_send(p, "t", &r));
    CHECK_CONTAINS(kofka_last_error(), "broker");
    CHECK_ERR(CLOSED, kofka_commit(c));
    CHECK_OK(kofka_producer_close(p, 100));
    CHECK_ERR(CLOSED, kofka_producer_close(p, 100));
    CHECK_CONTAINS(kofka_last_error(), "already closed");
    CHECK_OK(kofka_consumer_close(c));
    CHECK_ERR(CLOSED, kofka_consumer_close(c));
    CHECK_CONTAINS(kofka_last_error(), "already closed");
}

/* ---- closing while another thread uses the handle ----------------------- */

typedef struct user_counts {
    int calls;      /* calls made */
    int unexpected; /* calls that returned something other than OK / CLOSED */
    int closed;     /* calls that returned CLOSED */
} user_counts;

typedef struct user_ctx {
    kofka_producer *p;
    kofka_consumer *c;
    atomic_int stop;
    atomic_int started;  /* user threads that made their first call */
    atomic_int ended;    /* user threads that left their loop */
    user_counts pc, cc; /* the producer thread's and the consumer thread's, each its own */
} user_ctx;

/* Waits up to 10 s for *counter to reach n (a loaded machine may be slow to schedule a thread). */
static void wait_for_count(atomic_int *counter, int n) {
    for (int i = 0; i < 1000 && atomic_load(counter) < n; i++) test_sleep_ms(10);
}

static void *producer_user(void *arg) {
    user_ctx *u = arg;
    for (int i = 0; i < 100000 && !atomic_load(&u->stop); i++) {
        kofka_record r = test_record("k", 1, "v", 1);
        kofka_err e = (i % 3 == 0) ? kofka_produce(u->p, "t", &r, NULL) : kofka_send(u->p, "t", &r);
        int n = kofka_producer_poll(u->p, 0);
        if (u->pc.calls++ == 0) atomic_fetch_add(&u->started, 1);
        if (e == KOFKA_ERR_CLOSED) u->pc.closed++;
        else if (e != KOFKA_OK) u->pc.unexpected++;
        if (n < -1) u->pc.unexpected++;
        if (e == KOFKA_ERR_CLOSED && n == -1) break;
    }
    atomic_fetch_add(&u->ended, 1);
    return NULL;
}

static void *consumer_user(void *arg) {
    user_ctx *u = arg;
    for (int i = 0; i < 100000 && !atomic_load(&u->stop); i++) {
        kofka_message *m = NULL;
        kofka_err e = kofka_poll(u->c, 20, &m);
        if (m) kofka_message_free(m);
        int64_t pos = 0;
        kofka_err e2 = kofka_position(u->c, "t", 0, &pos);
        if (u->cc.calls++ == 0) atomic_fetch_add(&u->started, 1);
        if (e == KOFKA_ERR_CLOSED) u->cc.closed++;
        else if (e != KOFKA_OK) u->cc.unexpected++;
        if (e2 != KOFKA_OK && e2 != KOFKA_ERR_CLOSED) u->cc.unexpected++;
        if (e == KOFKA_ERR_CLOSED) break;
    }
    atomic_fetch_add(&u->ended, 1);
    return NULL;
}

static void close_while_another_thread_uses_it(const test_backend *be) {
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(b, "t", 1));
    for (int round = 0; round < 5; round++) {
        user_ctx u;
        memset(&u, 0, sizeof u);
        if (!CHECK_OK(kofka_producer_new(b, NULL, &u.p))) break;
        if (!CHECK_OK(kofka_consumer_new(b, NULL, &u.c))) break;
        int32_t parts[] = {0};
        CHECK_OK(kofka_assign(u.c, "t", parts, 1));
        pthread_t tp, tc;
        pthread_create(&tp, NULL, producer_user, &u);
        pthread_create(&tc, NULL, consumer_user, &u);
        wait_for_count(&u.started, 2);   /* both threads are using their handles */
        test_sleep_ms(20 + 15 * round);
        kofka_err pe = kofka_producer_close(u.p, 2000);
        CHECK_ERR2(KOFKA_OK, KOFKA_ERR_TIMED_OUT, pe);
        CHECK_OK(kofka_consumer_close(u.c));
        wait_for_count(&u.ended, 2);     /* each thread ends by itself once it sees CLOSED */
        atomic_store(&u.stop, 1);
        pthread_join(tp, NULL);
        pthread_join(tc, NULL);
        CHECK(u.pc.calls > 0);
        CHECK(u.cc.calls > 0);
        CHECK_EQ(0, u.pc.unexpected);
        CHECK_EQ(0, u.cc.unexpected);
        CHECK(u.pc.closed >= 1); /* each user thread saw its handle close */
        CHECK(u.cc.closed >= 1);
        CHECK_ERR(CLOSED, kofka_producer_close(u.p, 0));
        CHECK_ERR(CLOSED, kofka_consumer_close(u.c));
    }
    CHECK_OK(kofka_broker_close(b));
}

int main(void) {
    check_init();
    printf("test_handles: closed handles are KOFKA_ERR_CLOSED, foreign pointers KOFKA_ERR_INVALID_ARG, never a crash\n");
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "handles");
        double_close_is_closed(&be);
        test_backend_teardown(&be);

        test_backend_setup(&be, i, "handles-calls");
        kofka_broker *b = NULL;
        if (CHECK_OK(kofka_broker_open(be.storage, NULL, &b))) {
            CHECK_OK(kofka_topic_create(b, "t", 2));
            kofka_producer *p = NULL;
            kofka_consumer *c = NULL;
            const char *ccfg[] = {"group.id", "g-live", NULL};
            CHECK_OK(kofka_producer_new(b, NULL, &p));
            CHECK_OK(kofka_consumer_new(b, ccfg, &c));
            closed_producer_every_call_is_closed(b, c);
            closed_consumer_every_call_is_closed(b, p);
            foreign_pointers_are_invalid_arg(b);
            message_double_free_is_ignored(b);
            CHECK_OK(kofka_consumer_close(c));
            CHECK_OK(kofka_producer_close(p, 1000));
            CHECK_OK(kofka_broker_close(b));
        }
        test_backend_teardown(&be);

        test_backend_setup(&be, i, "handles-broker");
        handles_outlive_their_broker_until_closed(&be);
        test_backend_teardown(&be);

        test_backend_setup(&be, i, "handles-threads");
        close_while_another_thread_uses_it(&be);
        test_backend_teardown(&be);
    }
    return check_done();
}
