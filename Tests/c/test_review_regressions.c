/*
 * test_review_regressions.c — what an outside review broke (issue 11), replayed through the
 * C ABI as the reviewer's programs did, on both backends. Proven:
 *  1. a transactional send that gives up with TIMED_OUT makes the transaction abort-only
 *     (kofka_txn_requires_abort 1, commit refused); after the abort, the record sent again in
 *     a new transaction is written anew (not acknowledged with the aborted offset) and is the
 *     only record a read_committed reader sees;
 *  2. kofka_abort_transaction with timeout 0 fails every record still queued by kofka_produce
 *     with KOFKA_ERR_PURGED in its delivery report (served inside the abort) and never writes
 *     them, not even into the next transaction;
 *  3. a partition the group takes away inside an open transaction: send_offsets_to_transaction
 *     is REBALANCED, the transaction abort-only, commit refused;
 *  4. offsets pending in a dead instance's transaction stop blocking its partition once the
 *     transaction outlives transaction.timeout.ms: the surviving member gets every record;
 *  5. kofka_producer_close aborts an abort-only transaction: read_committed readers are not
 *     held back by it;
 *  7. read_committed + auto.offset.reset=latest starts at the last stable offset: a
 *     transaction open when the group starts is delivered when it commits.
 * (6, a failed at-most-once commit, and 8, processes opening a new SQLite file at once, are in
 * the Swift tests and test_open_race.c.)
 */
#include "check.h"

/* The fault link's random source (the library's SplitMix64): a fault.seed whose first
 * ack-loss draws at `rate` come out lost / kept as `pattern` says. */
static uint64_t splitmix_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double splitmix_unit(uint64_t *s) { return (double)(splitmix_next(s) >> 11) / (double)(1ull << 53); }
static uint64_t seed_for(const int *lost, int n, double rate) {
    for (uint64_t seed = 1;; seed++) {
        uint64_t s = seed;
        int ok = 1;
        for (int i = 0; i < n && ok; i++) ok = (splitmix_unit(&s) < rate) == lost[i];
        if (ok) return seed;
    }
}

static kofka_producer *tx_producer(kofka_broker *b, const char *tid, const char *const *extra) {
    const char *cfg[32] = {"delivery.mode", "exactly-once", "transactional.id", tid, "retry.backoff.ms", "0"};
    int n = 6;
    for (int i = 0; extra && extra[i]; i++) cfg[n++] = extra[i];
    cfg[n] = NULL;
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, cfg, &p))) return NULL;
    CHECK_OK(kofka_init_transactions(p, -1));
    return p;
}

/* Values a fresh read_committed reader sees in topic partition 0, space-separated. */
static void committed_values(kofka_broker *b, const char *topic, char *out, size_t cap) {
    kofka_consumer *c = NULL;
    out[0] = '\0';
    if (!CHECK_OK(kofka_consumer_new(b, NULL, &c))) return;
    int32_t p0[] = {0};
    CHECK_OK(kofka_assign(c, topic, p0, 1));
    for (;;) {
        kofka_message *m = NULL;
        if (kofka_poll(c, 200, &m) != KOFKA_OK || !m) break;
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%.*s", len ? " " : "", (int)m->value_len, (const char *)m->value);
        kofka_message_free(m);
    }
    kofka_consumer_destroy(c);
}

static kofka_err send_value(kofka_producer *p, const char *topic, const char *v, int64_t *offset) {
    kofka_record r = test_record(NULL, 0, v, strlen(v));
    r.partition = 0;
    kofka_err e = kofka_send(p, topic, &r);
    if (offset) *offset = r.offset;
    return e;
}

static void abort_after_unknown_outcome(kofka_broker *b) {
    CHECK_OK(kofka_topic_create(b, "r1", 1));
    int pattern[] = {1, 0};
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)seed_for(pattern, 2, 0.5));
    const char *extra[] = {"fault.ack.loss.rate", "0.5", "fault.seed", seed, "retries", "0", NULL};
    kofka_producer *p = tx_producer(b, "r1-tx", extra);
    if (!p) return;
    CHECK_OK(kofka_begin_transaction(p));
    CHECK_ERR(KOFKA_ERR_TIMED_OUT, send_value(p, "r1", "v0", NULL));
    CHECK_EQ(1, kofka_txn_requires_abort(p));
    CHECK_ERR(KOFKA_ERR_TIMED_OUT, kofka_commit_transaction(p, -1));
    CHECK_OK(kofka_abort_transaction(p, -1));
    CHECK_EQ(0, kofka_txn_requires_abort(p));
    CHECK_OK(kofka_begin_transaction(p));
    int64_t off = -1;
    CHECK_OK(send_value(p, "r1", "v0", &off));
    CHECK_EQ(1, off);   /* not 0, the aborted transaction's offset */
    CHECK_OK(kofka_commit_transaction(p, -1));
    char seen[256];
    committed_values(b, "r1", seen, sizeof seen);
    CHECK_STR_EQ("v0", seen);
    kofka_producer_close(p, -1);
}

static int purged, delivered;
static void on_delivery(kofka_producer *p, const char *topic, const kofka_record *r, void *msg, void *cb) {
    (void)p; (void)topic; (void)msg; (void)cb;
    if (r->err == KOFKA_ERR_PURGED) purged++; else if (r->err == KOFKA_OK) delivered++;
}

static void abort_purges_queued(kofka_broker *b) {
    CHECK_OK(kofka_topic_create(b, "r2", 1));
    const char *extra[] = {"linger.ms", "10000", NULL};
    kofka_producer *p = tx_producer(b, "r2-tx", extra);
    if (!p) return;
    purged = delivered = 0;
    CHECK_OK(kofka_producer_set_delivery_cb(p, on_delivery, NULL));
    CHECK_OK(kofka_begin_transaction(p));
    for (int i = 0; i < 20; i++) {
        kofka_record r = test_record(NULL, 0, "queued", 6);
        CHECK_OK(kofka_produce(p, "r2", &r, (void *)(intptr_t)(i + 1)));
    }
    CHECK_OK(kofka_abort_transaction(p, 0));
    CHECK_EQ(20, purged);
    CHECK_OK(kofka_begin_transaction(p));
    kofka_record r = test_record(NULL, 0, "next", 4);
    CHECK_OK(kofka_produce(p, "r2", &r, NULL));
    CHECK_OK(kofka_commit_transaction(p, -1));
    CHECK_EQ(1, delivered);
    int64_t low = -1, high = -1;
    CHECK_OK(kofka_watermarks(b, "r2", 0, &low, &high));
    CHECK_EQ(1, high);   /* the aborted transaction's records were never written */
    char seen[256];
    committed_values(b, "r2", seen, sizeof seen);
    CHECK_STR_EQ("next", seen);
    kofka_producer_close(p, -1);
}

static void rebalance_inside_transaction(kofka_broker *b) {
    CHECK_OK(kofka_topic_create(b, "r3", 2));
    kofka_producer *plain = NULL;
    CHECK_OK(kofka_producer_new(b, NULL, &plain));
    for (int i = 0; i < 20; i++) {
        kofka_record r = test_record(NULL, 0, "x", 1);
        r.partition = i % 2;
        CHECK_OK(kofka_send(plain, "r3", &r));
    }
    kofka_producer_close(plain, -1);
    const char *c1cfg[] = {"group.id", "r3g", "delivery.mode", "exactly-once", "max.poll.records", "2",
                           "queued.min.messages", "1", "client.id", "a", NULL};
    const char *c2cfg[] = {"group.id", "r3g", "delivery.mode", "exactly-once", "client.id", "b", NULL};
    const char *topics[] = {"r3"};
    kofka_consumer *c1 = NULL, *c2 = NULL;
    CHECK_OK(kofka_consumer_new(b, c1cfg, &c1));
    CHECK_OK(kofka_subscribe(c1, topics, 1));
    kofka_producer *p = tx_producer(b, "r3-tx", NULL);
    if (!p) return;
    CHECK_OK(kofka_begin_transaction(p));
    int from[2] = {0, 0};
    for (int round = 0; round < 2; round++) {
        kofka_message *ms[2];
        size_t n = 0;
        CHECK_OK(kofka_poll_batch(c1, 1000, ms, 2, &n));
        for (size_t i = 0; i < n; i++) {
            from[ms[i]->partition & 1]++;
            kofka_message_free(ms[i]);
        }
    }
    CHECK(from[0] > 0 && from[1] > 0);
    CHECK_OK(kofka_consumer_new(b, c2cfg, &c2));
    CHECK_OK(kofka_subscribe(c2, topics, 1));
    kofka_message *ms[2];
    size_t n = 0;
    CHECK_OK(kofka_poll_batch(c1, 0, ms, 2, &n));   /* releases partition 1 */
    for (size_t i = 0; i < n; i++) kofka_message_free(ms[i]);
    CHECK_ERR(KOFKA_ERR_REBALANCED, kofka_send_offsets_to_transaction(p, c1, -1));
    CHECK_EQ(1, kofka_txn_requires_abort(p));
    CHECK_ERR(KOFKA_ERR_REBALANCED, kofka_commit_transaction(p, -1));
    CHECK_OK(kofka_abort_transaction(p, -1));
    CHECK_OK(kofka_seek_to_committed(c1));
    kofka_producer_close(p, -1);
    kofka_consumer_destroy(c1);
    kofka_consumer_destroy(c2);
}

static void dead_instance_pending_offsets(kofka_broker *b) {
    CHECK_OK(kofka_topic_create(b, "r4", 1));
    kofka_producer *plain = NULL;
    CHECK_OK(kofka_producer_new(b, NULL, &plain));
    for (int i = 0; i < 10; i++) CHECK_OK(send_value(plain, "r4", "x", NULL));
    kofka_producer_close(plain, -1);
    const char *acfg[] = {"group.id", "r4g", "delivery.mode", "exactly-once", "session.timeout.ms", "300", "client.id", "a", NULL};
    const char *bcfg[] = {"group.id", "r4g", "delivery.mode", "exactly-once", "session.timeout.ms", "300", "client.id", "b", NULL};
    const char *topics[] = {"r4"};
    const char *shortTxn[] = {"transaction.timeout.ms", "600", NULL};
    kofka_consumer *a = NULL, *c = NULL;
    CHECK_OK(kofka_consumer_new(b, acfg, &a));
    CHECK_OK(kofka_subscribe(a, topics, 1));
    kofka_producer *pa = tx_producer(b, "r4-a", shortTxn);
    if (!pa) return;
    CHECK_OK(kofka_begin_transaction(pa));
    kofka_message *ms[16];
    size_t n = 0;
    CHECK_OK(kofka_poll_batch(a, 1000, ms, 16, &n));
    CHECK_EQ(10, n);
    for (size_t i = 0; i < n; i++) kofka_message_free(ms[i]);
    CHECK_OK(kofka_send_offsets_to_transaction(pa, a, -1));
    kofka_consumer_destroy(a);   /* dies: no commit, no leave; pa's transaction stays open */
    CHECK_OK(kofka_consumer_new(b, bcfg, &c));
    CHECK_OK(kofka_subscribe(c, topics, 1));
    size_t got = 0;
    int64_t t0 = test_now_ms();
    while (got < 10 && test_now_ms() - t0 < 5000) {
        n = 0;
        CHECK_OK(kofka_poll_batch(c, 100, ms, 16, &n));
        got += n;
        for (size_t i = 0; i < n; i++) kofka_message_free(ms[i]);
    }
    CHECK_EQ(10, got);   /* the expired transaction was aborted by the member waiting on it */
    kofka_consumer_destroy(c);
    kofka_producer_close(pa, 0);
}

static void close_aborts_abort_only(kofka_broker *b) {
    CHECK_OK(kofka_topic_create(b, "r5", 1));
    const char *extra[] = {"fault.ack.loss.rate", "1.0", "retries", "0", NULL};
    kofka_producer *p = tx_producer(b, "r5-tx", extra);
    if (!p) return;
    CHECK_OK(kofka_begin_transaction(p));
    CHECK_ERR(KOFKA_ERR_TIMED_OUT, send_value(p, "r5", "lost-ack", NULL));
    CHECK_EQ(1, kofka_txn_requires_abort(p));
    kofka_producer_close(p, -1);
    kofka_producer *plain = NULL;
    CHECK_OK(kofka_producer_new(b, NULL, &plain));
    CHECK_OK(send_value(plain, "r5", "after", NULL));
    kofka_producer_close(plain, -1);
    char seen[256];
    committed_values(b, "r5", seen, sizeof seen);
    CHECK_STR_EQ("after", seen);
}

static void latest_starts_at_last_stable_offset(kofka_broker *b) {
    CHECK_OK(kofka_topic_create(b, "r7", 1));
    kofka_producer *p = tx_producer(b, "r7-tx", NULL);
    if (!p) return;
    CHECK_OK(kofka_begin_transaction(p));
    for (int i = 0; i < 3; i++) CHECK_OK(send_value(p, "r7", "t", NULL));
    const char *cfg[] = {"group.id", "r7g", "delivery.mode", "exactly-once", "auto.offset.reset", "latest", NULL};
    const char *topics[] = {"r7"};
    kofka_consumer *c = NULL;
    CHECK_OK(kofka_consumer_new(b, cfg, &c));
    CHECK_OK(kofka_subscribe(c, topics, 1));
    kofka_message *m = NULL;
    CHECK_OK(kofka_poll(c, 100, &m));
    CHECK(m == NULL);
    CHECK_OK(kofka_commit_transaction(p, -1));
    kofka_message *ms[8];
    size_t n = 0, got = 0;
    int64_t t0 = test_now_ms();
    while (got < 3 && test_now_ms() - t0 < 3000) {
        CHECK_OK(kofka_poll_batch(c, 200, ms, 8, &n));
        got += n;
        for (size_t i = 0; i < n; i++) kofka_message_free(ms[i]);
    }
    CHECK_EQ(3, got);
    kofka_consumer_destroy(c);
    kofka_producer_close(p, -1);
}

int main(void) {
    check_init();
    printf("test_review_regressions: the review's breaks, replayed through the C ABI\n");
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "review");
        kofka_broker *b = NULL;
        if (CHECK_OK(kofka_broker_open(be.storage, NULL, &b))) {
            abort_after_unknown_outcome(b);
            abort_purges_queued(b);
            rebalance_inside_transaction(b);
            dead_instance_pending_offsets(b);
            close_aborts_abort_only(b);
            latest_starts_at_last_stable_offset(b);
            kofka_broker_close(b);
        }
        test_backend_teardown(&be);
    }
    return check_done();
}
