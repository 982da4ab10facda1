/*
 * test_produce_packed.c — kofka_produce_lease + kofka_produce_packed.
 *
 * Proven, on every backend:
 *  - 3,000 records handed over in leases of 500 each get exactly one report, with their own
 *    opaque; a keyed record goes to the partition kofka_produce chooses for the same key; each
 *    partition's offsets follow the order the records were handed over (none lost, none twice,
 *    none reordered); explicit partitions are kept;
 *  - reserved slots count against queue.buffering.max.messages exactly: with 10 slots and a
 *    lease of 4, the 7th kofka_produce is KOFKA_ERR_QUEUE_FULL; the handover gives back the
 *    unused slots;
 *  - every refused call (count above credits, a length below -1, a NULL buffer with a length,
 *    a partition below -1, a length above 2^31-1, NULL topic) returns its code, queues
 *    nothing and still releases the lease: all 10 slots are free afterwards; credits that
 *    overstate the lease are QUEUE_FULL when the queue has no room for the rest;
 *  - a record kofka_produce would refuse fails in its own report with kofka_produce's code
 *    (UNKNOWN_PARTITION, MSG_TOO_LARGE), in its place; a NULL opaque gets no callback but is
 *    counted by kofka_producer_poll;
 *  - with an interceptor installed the lease is KOFKA_ERR_UNSUPPORTED; NULL arguments are
 *    KOFKA_ERR_INVALID_ARG and a closed handle KOFKA_ERR_CLOSED, with out untouched.
 */
#include "check.h"

#define TOPIC "packed"
#define PARTITIONS 3
#define COUNT 3000

typedef struct reports {
    int count[COUNT + 1];      /* reports per opaque (1-based; 0 = NULL opaque) */
    int32_t partition[COUNT + 1];
    int64_t offset[COUNT + 1];
    kofka_err err[COUNT + 1];
    int order[COUNT + 1];      /* opaque of the n-th report */
    int total;
} reports;

static reports rep;

static void on_delivery(kofka_producer *p, const char *topic, const kofka_record *r, void *msg_opaque, void *cb) {
    (void)p; (void)topic; (void)cb;
    uintptr_t i = (uintptr_t)msg_opaque;
    if (i > COUNT) i = 0;
    rep.count[i]++;
    rep.partition[i] = r->partition;
    rep.offset[i] = r->offset;
    rep.err[i] = r->err;
    if (rep.total <= COUNT) rep.order[rep.total] = (int)i;
    rep.total++;
}

static const char *const queue10[] = {"queue.buffering.max.messages", "10", "linger.ms", "60000", NULL};

/* How many kofka_produce calls succeed before KOFKA_ERR_QUEUE_FULL (at most limit). */
static int fill_queue(kofka_producer *p, int limit) {
    kofka_record r = {.partition = KOFKA_PARTITION_ANY, .value = "v", .value_len = 1};
    for (int n = 0; n < limit; n++) {
        kofka_err e = kofka_produce(p, TOPIC, &r, NULL);
        if (e == KOFKA_ERR_QUEUE_FULL) return n;
        if (!CHECK_OK(e)) return -1;
    }
    return limit;
}

static void ordering_and_opaques(kofka_broker *b) {
    memset(&rep, 0, sizeof rep);
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, NULL, &p))) return;
    CHECK_OK(kofka_producer_set_delivery_cb(p, on_delivery, NULL));
    static char keys[COUNT * 8], values[COUNT * 16];
    static int64_t klens[COUNT], vlens[COUNT];
    static int32_t parts[COUNT];
    static void *ops[COUNT];
    for (int base = 0; base < COUNT; base += 500) {
        kofka_lease lease;
        if (!CHECK_OK(kofka_produce_lease(p, TOPIC, 500, &lease))) break;
        CHECK_EQ(500, lease.credits);
        CHECK_EQ(PARTITIONS, lease.partitions);
        CHECK_EQ(1048576, lease.max_kv_bytes);
        CHECK_EQ(5, lease.hold_ms);
        size_t ko = 0, vo = 0;
        for (int j = 0; j < 500; j++) {
            int i = base + j;
            klens[j] = sprintf(keys + ko, "k%d", i % 17);
            ko += (size_t)klens[j];
            vlens[j] = sprintf(values + vo, "value-%05d", i);
            vo += (size_t)vlens[j];
            parts[j] = i % 5 == 0 ? (int32_t)(i % PARTITIONS) : KOFKA_PARTITION_ANY;   /* some explicit */
            ops[j] = (void *)(uintptr_t)(i + 1);
        }
        CHECK_OK(kofka_produce_packed(p, TOPIC, &lease, keys, klens, values, vlens, parts, ops, 500));
    }
    CHECK_OK(kofka_flush(p, 30000));
    int once = 0, ok = 0, right_partition = 0;
    for (int i = 0; i < COUNT; i++) {
        once += rep.count[i + 1] == 1;
        ok += rep.err[i + 1] == KOFKA_OK;
    }
    CHECK_EQ(COUNT, rep.total);
    CHECK_EQ(COUNT, once);
    CHECK_EQ(COUNT, ok);
    CHECK_EQ(0, rep.count[0]);
    /* keyed records: the partition kofka_produce picks for the same key */
    for (int k = 0; k < 17; k++) {
        char key[8];
        int kn = sprintf(key, "k%d", k);
        kofka_record r = {.partition = KOFKA_PARTITION_ANY, .key = key, .key_len = (size_t)kn, .value = "x", .value_len = 1};
        CHECK_OK(kofka_send(p, TOPIC, &r));
        for (int i = k; i < COUNT; i += 17)
            if (i % 5 != 0) right_partition += rep.partition[i + 1] == r.partition;
    }
    for (int i = 0; i < COUNT; i += 5) right_partition += rep.partition[i + 1] == i % PARTITIONS;
    CHECK_EQ(COUNT, right_partition);
    /* per partition, offsets in the order of handover: 0, 1, 2 ... */
    int64_t next[PARTITIONS] = {0};
    int in_order = 0;
    for (int i = 0; i < COUNT; i++) {
        int32_t part = rep.partition[i + 1];
        if (part >= 0 && part < PARTITIONS && rep.offset[i + 1] == next[part]) { in_order++; next[part]++; }
    }
    CHECK_EQ(COUNT, in_order);
    CHECK_OK(kofka_producer_close(p, 5000));
}

static void queue_full_counts_reserved_slots(kofka_broker *b) {
    memset(&rep, 0, sizeof rep);
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, queue10, &p))) return;
    CHECK_OK(kofka_producer_set_delivery_cb(p, on_delivery, NULL));
    kofka_lease lease;
    CHECK_OK(kofka_produce_lease(p, TOPIC, 4, &lease));
    CHECK_EQ(4, lease.credits);
    CHECK_EQ(6, fill_queue(p, 100));            /* 10 slots - 4 reserved */
    kofka_lease none = {.credits = 77};
    CHECK_ERR(KOFKA_ERR_QUEUE_FULL, kofka_produce_lease(p, TOPIC, 1, &none));
    CHECK_EQ(77, none.credits);                 /* untouched on failure */
    int64_t vl[2] = {1, 1};
    CHECK_OK(kofka_produce_packed(p, TOPIC, &lease, NULL, NULL, "ab", vl, NULL, NULL, 2));
    CHECK_EQ(2, fill_queue(p, 100));            /* the 2 unused slots came back */
    CHECK_OK(kofka_flush(p, 30000));
    CHECK_EQ(8, rep.total);                     /* kofka_produce's 8, NULL opaque or not; the 2 */
    CHECK_EQ(8, rep.count[0]);                  /* handed over with NULL opaques are quiet */
    CHECK_EQ(10, fill_queue(p, 100));           /* all free again */
    CHECK_OK(kofka_flush(p, 30000));
    /* a lease larger than the free slots gets what is free */
    CHECK_OK(kofka_produce_lease(p, TOPIC, 1000, &lease));
    CHECK_EQ(10, lease.credits);
    CHECK_OK(kofka_produce_packed(p, TOPIC, &lease, NULL, NULL, NULL, NULL, NULL, NULL, 0));
    CHECK_EQ(10, fill_queue(p, 100));
    CHECK_OK(kofka_producer_close(p, 30000));
}

static void refused_calls_release_the_lease(kofka_broker *b) {
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, queue10, &p))) return;
    int64_t good[2] = {1, 1}, below[2] = {1, -2}, huge[2] = {1, (int64_t)INT32_MAX + 1};
    int32_t badpart[2] = {0, -2};
    struct { const char *topic; const void *values; const int64_t *lens; const int32_t *parts; size_t count; kofka_err want; } cases[] = {
        {TOPIC, "ab", good, NULL, 3, KOFKA_ERR_INVALID_ARG},       /* count above the 2 credits... */
        {TOPIC, "ab", below, NULL, 2, KOFKA_ERR_INVALID_ARG},      /* a length below -1 */
        {TOPIC, NULL, good, NULL, 2, KOFKA_ERR_INVALID_ARG},       /* NULL values with lengths */
        {TOPIC, "ab", NULL, NULL, 2, KOFKA_ERR_INVALID_ARG},       /* NULL value_lens */
        {TOPIC, "ab", good, badpart, 2, KOFKA_ERR_INVALID_ARG},    /* partition -2 */
        {TOPIC, "ab", huge, NULL, 2, KOFKA_ERR_MSG_TOO_LARGE},     /* a length above 2^31-1 */
        {NULL, "ab", good, NULL, 2, KOFKA_ERR_INVALID_ARG},        /* NULL topic */
        {TOPIC, "ab", good, NULL, (size_t)-1, KOFKA_ERR_INVALID_ARG},  /* an impossible count */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        kofka_lease lease;
        if (!CHECK_OK(kofka_produce_lease(p, TOPIC, 2, &lease))) break;
        CHECK_EQ(2, lease.credits);
        CHECK_ERR(cases[c].want, kofka_produce_packed(p, cases[c].topic, &lease, NULL, NULL, cases[c].values,
                                                      cases[c].lens, cases[c].parts, NULL, cases[c].count));
        CHECK_HAS_MESSAGE();
        CHECK_EQ(10, fill_queue(p, 100));       /* nothing queued, both reserved slots free */
        CHECK_OK(kofka_flush(p, 30000));
    }
    /* credits overstating the lease: the records beyond the reserved slots need room */
    CHECK_EQ(7, fill_queue(p, 7));
    kofka_lease small;
    CHECK_OK(kofka_produce_lease(p, TOPIC, 3, &small));
    CHECK_EQ(3, small.credits);
    int64_t seven[7] = {1, 1, 1, 1, 1, 1, 1};
    kofka_lease over = small;
    over.credits = 7;
    CHECK_ERR(KOFKA_ERR_QUEUE_FULL, kofka_produce_packed(p, TOPIC, &over, NULL, NULL, "abcdefg", seven, NULL, NULL, 7));
    CHECK_EQ(3, fill_queue(p, 100));            /* nothing queued, the 3 reserved slots free */
    CHECK_OK(kofka_flush(p, 30000));
    /* credits larger than what is reserved never free more than that */
    kofka_lease lease;
    CHECK_OK(kofka_produce_lease(p, TOPIC, 3, &lease));
    lease.credits = (size_t)-1;
    CHECK_OK(kofka_produce_packed(p, TOPIC, &lease, NULL, NULL, NULL, NULL, NULL, NULL, 0));
    CHECK_EQ(10, fill_queue(p, 100));
    CHECK_OK(kofka_flush(p, 30000));
    CHECK_OK(kofka_producer_close(p, 30000));
}

static void refused_records_fail_in_their_reports(kofka_broker *b) {
    memset(&rep, 0, sizeof rep);
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_topic_create_with_config(b, "small", 1, (const char *const[]){"max.message.bytes", "8", NULL})))
        return;
    if (!CHECK_OK(kofka_producer_new(b, NULL, &p))) return;
    CHECK_OK(kofka_producer_set_delivery_cb(p, on_delivery, NULL));
    kofka_lease lease;
    CHECK_OK(kofka_produce_lease(p, "small", 10, &lease));
    CHECK_EQ(8, lease.max_kv_bytes);
    CHECK_EQ(1, lease.partitions);
    /* 1: fine; 2: partition 7 of 1; 3: 9 bytes; 4: fine, NULL opaque; 5: exactly 8 bytes */
    const char *values = "a" "b" "123456789" "d" "12345678";
    int64_t vl[5] = {1, 1, 9, 1, 8};
    int32_t parts[5] = {-1, 7, -1, -1, 0};
    void *ops[5] = {(void *)1, (void *)2, (void *)3, NULL, (void *)5};
    CHECK_OK(kofka_produce_packed(p, "small", &lease, NULL, NULL, values, vl, parts, ops, 5));
    int served = 0;
    for (int i = 0; i < 100 && served < 5; i++) {
        int n = kofka_producer_poll(p, 100);
        if (n > 0) served += n;
    }
    CHECK_EQ(5, served);                        /* the quiet report is counted */
    CHECK_EQ(4, rep.total);                     /* ... but not handed to the callback */
    CHECK_EQ(0, rep.count[0]);
    CHECK_ERR(KOFKA_OK, rep.err[1]);
    CHECK_ERR(KOFKA_ERR_UNKNOWN_PARTITION, rep.err[2]);
    CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, rep.err[3]);
    CHECK_ERR(KOFKA_OK, rep.err[5]);
    CHECK_EQ(0, rep.offset[1]);
    CHECK_EQ(2, rep.offset[5]);                 /* the quiet record was written at 1 */
    /* reports in the order handed over */
    CHECK_EQ(1, rep.order[0]);
    CHECK_EQ(2, rep.order[1]);
    CHECK_EQ(3, rep.order[2]);
    CHECK_EQ(5, rep.order[3]);
    /* the same records through kofka_produce: the same codes, at once */
    kofka_record r = {.partition = 7, .value = "b", .value_len = 1};
    CHECK_ERR(KOFKA_ERR_UNKNOWN_PARTITION, kofka_produce(p, "small", &r, NULL));
    r.partition = KOFKA_PARTITION_ANY; r.value = "123456789"; r.value_len = 9;
    CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_produce(p, "small", &r, NULL));
    CHECK_OK(kofka_producer_close(p, 5000));
}

/* A lease belongs to the transaction open when it was granted: records handed over after
 * that transaction committed fail (INVALID_STATE, in their reports) instead of joining the
 * transaction open at the handover. */
static void a_lease_never_spans_two_transactions(kofka_broker *b) {
    memset(&rep, 0, sizeof rep);
    const char *cfg[] = {"delivery.mode", "exactly-once", "transactional.id", "packed-txn", NULL};
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, cfg, &p))) return;
    CHECK_OK(kofka_producer_set_delivery_cb(p, on_delivery, NULL));
    CHECK_OK(kofka_init_transactions(p, 10000));
    CHECK_OK(kofka_begin_transaction(p));
    kofka_lease early;
    CHECK_OK(kofka_produce_lease(p, "txn-out", 4, &early));
    CHECK(early.txn != 0);
    CHECK_OK(kofka_commit_transaction(p, 10000));
    CHECK_OK(kofka_begin_transaction(p));
    int64_t one[1] = {4};
    void *op1[1] = {(void *)(uintptr_t)1}, *op2[1] = {(void *)(uintptr_t)2};
    CHECK_OK(kofka_produce_packed(p, "txn-out", &early, NULL, NULL, "late", one, NULL, op1, 1));
    kofka_lease now;
    CHECK_OK(kofka_produce_lease(p, "txn-out", 4, &now));
    CHECK(now.txn != early.txn);
    CHECK_OK(kofka_produce_packed(p, "txn-out", &now, NULL, NULL, "good", one, NULL, op2, 1));
    CHECK_OK(kofka_commit_transaction(p, 10000));
    CHECK_EQ(KOFKA_ERR_INVALID_STATE, rep.err[1]);
    CHECK_EQ(KOFKA_OK, rep.err[2]);
    int64_t low = -1, high = -1;
    CHECK_OK(kofka_watermarks(b, "txn-out", 0, &low, &high));
    CHECK_EQ(1, high); /* "good" alone: "late" was never written */
    CHECK_OK(kofka_producer_close(p, 10000));
}

static void on_send(void *opaque, const char *topic, kofka_record *record) { (void)opaque; (void)topic; (void)record; }

static void bad_handles_and_interceptors(const test_backend *be) {
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, NULL, &b))) return;
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, NULL, &p))) return;
    kofka_lease lease = {.credits = 99, .partitions = 99};
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_produce_lease(NULL, TOPIC, 1, &lease));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_produce_lease(p, NULL, 1, &lease));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_produce_lease(p, TOPIC, 1, NULL));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_produce_packed(NULL, TOPIC, &lease, NULL, NULL, NULL, NULL, NULL, NULL, 0));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_produce_packed(p, TOPIC, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0));
    CHECK_CONTAINS(kofka_last_error(), "lease");
    CHECK_EQ(99, lease.credits);
    CHECK_EQ(99, lease.partitions);
    CHECK_OK(kofka_producer_close(p, 1000));
    CHECK_ERR(KOFKA_ERR_CLOSED, kofka_produce_lease(p, TOPIC, 1, &lease));
    kofka_lease one = {.credits = 1};
    CHECK_ERR(KOFKA_ERR_CLOSED, kofka_produce_packed(p, TOPIC, &one, NULL, NULL, "v", (int64_t[]){1}, NULL, NULL, 1));
    CHECK_EQ(99, lease.credits);
    kofka_interceptors ic = {.struct_size = sizeof ic, .on_send = on_send};
    CHECK_OK(kofka_interceptors_add(b, "noop", &ic));
    if (!CHECK_OK(kofka_producer_new(b, NULL, &p))) return;
    CHECK_ERR(KOFKA_ERR_UNSUPPORTED, kofka_produce_lease(p, TOPIC, 1, &lease));
    CHECK_EQ(99, lease.credits);
    CHECK_OK(kofka_producer_close(p, 1000));
    CHECK_OK(kofka_broker_close(b));
}

static void run(const test_backend *be) {
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(b, TOPIC, PARTITIONS));
    ordering_and_opaques(b);
    queue_full_counts_reserved_slots(b);
    refused_calls_release_the_lease(b);
    refused_records_fail_in_their_reports(b);
    a_lease_never_spans_two_transactions(b);
    CHECK_OK(kofka_broker_close(b));
    bad_handles_and_interceptors(be);
}

int main(void) {
    check_init();
    printf("test_produce_packed: leases, packed handover, exact queue accounting, refused input\n");
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "packed");
        check_context = be.name;
        run(&be);
        test_backend_teardown(&be);
    }
    return check_done();
}
