/*
 * test_transactions.c — transactional producers, isolation levels, fencing.
 *
 * On both backends, with a 1-partition topic:
 *  - records of a committed transaction are visible to read_committed
 *    consumers; records of an aborted one never are; read_uncommitted sees
 *    everything; aborted records occupy offsets, markers do not;
 *  - an open transaction is invisible to read_committed until it commits;
 *  - a second producer with the same transactional.id fences the first: the
 *    first's commit returns KOFKA_ERR_PRODUCER_FENCED and its records are
 *    never visible;
 *  - state errors: send outside a transaction, begin twice, commit with none;
 *  - consume-transform-produce: offsets sent to a committed transaction become
 *    the group's committed offsets; offsets of an aborted one do not.
 */
#include "check.h"

#define TOPIC "tx"

/* Reads every visible value of TOPIC partition 0 from offset 0 into a
 * newline-joined string (caller frees); *offsets gets the offsets joined. */
static char *read_all(kofka_broker *b, const char *isolation, char *offsets, size_t offsets_cap) {
    const char *cfg[] = {"isolation.level", isolation, NULL};
    kofka_consumer *c = NULL;
    if (!CHECK_OK(kofka_consumer_new(b, cfg, &c))) return strdup("");
    int32_t p0[] = {0};
    CHECK_OK(kofka_assign(c, TOPIC, p0, 1));
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(cap, 1);
    if (offsets) offsets[0] = '\0';
    for (;;) {
        kofka_message *m = NULL;
        if (!CHECK_OK(kofka_poll(c, 300, &m)) || !m) break;
        if (len + m->value_len + 2 < cap) {
            memcpy(out + len, m->value, m->value_len);
            len += m->value_len;
            out[len++] = ' ';
            out[len] = '\0';
        }
        if (offsets) {
            size_t ol = strlen(offsets);
            snprintf(offsets + ol, offsets_cap - ol, "%lld ", (long long)m->offset);
        }
        kofka_message_free(m);
    }
    CHECK_OK(kofka_consumer_close(c));
    return out;
}

static void send_values(kofka_producer *p, const char *prefix, int n, kofka_err expect) {
    for (int i = 0; i < n; i++) {
        char v[32];
        int len = snprintf(v, sizeof v, "%s%d", prefix, i);
        kofka_record r = test_record(NULL, 0, v, (size_t)len);
        r.partition = 0;
        CHECK_ERR(expect, kofka_send(p, TOPIC, &r));
    }
}

static void transactions(const test_backend *be) {
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(b, TOPIC, 1));
    const char *cfg[] = {"delivery.mode", "exactly-once", "transactional.id", "tx-a", NULL};
    kofka_producer *p1 = NULL, *p2 = NULL;
    if (!CHECK_OK(kofka_producer_new(b, cfg, &p1))) { kofka_broker_close(b); return; }

    /* State errors before and around transactions. */
    CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_begin_transaction(p1)); /* before init */
    CHECK_OK(kofka_init_transactions(p1, 5000));
    CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_init_transactions(p1, 5000)); /* already initialised */
    send_values(p1, "outside", 1, KOFKA_ERR_INVALID_STATE);
    CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_commit_transaction(p1, 5000));
    CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_abort_transaction(p1, 5000));

    /* commit a0..a9 (offsets 0-9), abort b0..b9 (10-19), commit c0..c4 (20-24). */
    CHECK_OK(kofka_begin_transaction(p1));
    CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_begin_transaction(p1)); /* already open */
    send_values(p1, "a", 10, KOFKA_OK);
    CHECK_OK(kofka_commit_transaction(p1, 5000));
    CHECK_OK(kofka_begin_transaction(p1));
    send_values(p1, "b", 10, KOFKA_OK);
    CHECK_OK(kofka_abort_transaction(p1, 5000));
    CHECK_OK(kofka_begin_transaction(p1));
    send_values(p1, "c", 5, KOFKA_OK);
    CHECK_OK(kofka_commit_transaction(p1, 5000));

    char offs[4096];
    char *rc = read_all(b, "read_committed", offs, sizeof offs);
    CHECK_STR_EQ("a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 c0 c1 c2 c3 c4 ", rc);
    CHECK_STR_EQ("0 1 2 3 4 5 6 7 8 9 20 21 22 23 24 ", offs);
    free(rc);
    char *ru = read_all(b, "read_uncommitted", NULL, 0);
    CHECK_STR_EQ("a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 c0 c1 c2 c3 c4 ", ru);
    free(ru);
    int64_t lo = -1, hi = -1;
    CHECK_OK(kofka_watermarks(b, TOPIC, 0, &lo, &hi));
    CHECK_EQ(25, hi); /* markers take no offsets */

    /* An open transaction is invisible to read_committed until it commits. */
    CHECK_OK(kofka_begin_transaction(p1));
    send_values(p1, "d", 3, KOFKA_OK);
    rc = read_all(b, "read_committed", NULL, 0);
    CHECK(strstr(rc, "d0") == NULL);
    CHECK_STR_EQ("a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 c0 c1 c2 c3 c4 ", rc);
    free(rc);
    ru = read_all(b, "read_uncommitted", NULL, 0);
    CHECK(strstr(ru, "d0 d1 d2 ") != NULL);
    free(ru);
    CHECK_OK(kofka_commit_transaction(p1, 5000));
    rc = read_all(b, "read_committed", NULL, 0);
    CHECK(strstr(rc, "c4 d0 d1 d2 ") != NULL);
    free(rc);

    /* Fencing: p2 takes the id while p1 has a transaction open. */
    CHECK_OK(kofka_begin_transaction(p1));
    send_values(p1, "zombie", 3, KOFKA_OK);
    if (CHECK_OK(kofka_producer_new(b, cfg, &p2))) {
        CHECK_OK(kofka_init_transactions(p2, 5000)); /* fences p1, aborts its transaction */
        CHECK_ERR(KOFKA_ERR_PRODUCER_FENCED, kofka_commit_transaction(p1, 5000));
        CHECK_CONTAINS(kofka_last_error(), "tx-a");
        kofka_record late = test_record(NULL, 0, "zombie-late", 11);
        late.partition = 0;
        CHECK_ERR2(KOFKA_ERR_PRODUCER_FENCED, KOFKA_ERR_INVALID_STATE, kofka_send(p1, TOPIC, &late));
        CHECK_ERR(KOFKA_ERR_PRODUCER_FENCED, kofka_begin_transaction(p1));
        CHECK_OK(kofka_begin_transaction(p2));
        send_values(p2, "fresh", 2, KOFKA_OK);
        CHECK_OK(kofka_commit_transaction(p2, 5000));
    }
    rc = read_all(b, "read_committed", NULL, 0);
    CHECK_STR_EQ("a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 c0 c1 c2 c3 c4 d0 d1 d2 fresh0 fresh1 ", rc);
    CHECK(strstr(rc, "zombie") == NULL);
    free(rc);
    ru = read_all(b, "read_uncommitted", NULL, 0);
    CHECK(strstr(ru, "zombie0 zombie1 zombie2 ") != NULL); /* written, then aborted */
    CHECK(strstr(ru, "zombie-late") == NULL);              /* refused */
    free(ru);
    kofka_producer_close(p1, 1000); /* fenced: the code is not prescribed, it must still free */
    CHECK_OK(kofka_producer_close(p2, 5000));
    CHECK_OK(kofka_broker_close(b));
}

/* Consume-transform-produce: offsets commit with the transaction, or not at all. */
static void offsets_in_transactions(const test_backend *be) {
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(b, "in", 1));
    CHECK_OK(kofka_topic_create(b, "out", 1));
    kofka_producer *src = NULL, *p = NULL;
    kofka_consumer *c = NULL;
    CHECK_OK(kofka_producer_new(b, NULL, &src));
    for (int i = 0; i < 10; i++) {
        char v[16];
        int n = snprintf(v, sizeof v, "in%d", i);
        kofka_record r = test_record(NULL, 0, v, (size_t)n);
        CHECK_OK(kofka_send(src, "in", &r));
    }
    CHECK_OK(kofka_producer_close(src, 1000));
    const char *pcfg[] = {"delivery.mode", "exactly-once", "transactional.id", "pipeline", NULL};
    const char *ccfg[] = {"delivery.mode", "exactly-once", "group.id", "pipeline-group", "max.poll.records", "5", NULL};
    if (!CHECK_OK(kofka_producer_new(b, pcfg, &p)) || !CHECK_OK(kofka_consumer_new(b, ccfg, &c))) goto out;
    int32_t p0[] = {0};
    CHECK_OK(kofka_assign(c, "in", p0, 1));
    CHECK_OK(kofka_init_transactions(p, 5000));
    for (int round = 0; round < 2; round++) {
        CHECK_OK(kofka_begin_transaction(p));
        /* Read 5 input records (max.poll.records=5), write them to "out". */
        int got = 0;
        int64_t deadline = test_now_ms() + 5000;
        while (got < 5 && test_now_ms() < deadline) {
            kofka_message *ms[5];
            size_t n = 0;
            if (!CHECK_OK(kofka_poll_batch(c, 1000, ms, (size_t)(5 - got), &n))) break;
            for (size_t j = 0; j < n; j++) {
                kofka_record r = test_record(NULL, 0, ms[j]->value, ms[j]->value_len);
                CHECK_OK(kofka_send(p, "out", &r));
                kofka_message_free(ms[j]);
            }
            got += (int)n;
        }
        CHECK_EQ(5, got);
        CHECK_OK(kofka_send_offsets_to_transaction(p, c, 5000));
        int64_t committed = -2;
        if (round == 0) {
            CHECK_OK(kofka_commit_transaction(p, 5000));
            CHECK_OK(kofka_committed(c, "in", 0, &committed));
            CHECK_EQ(5, committed);
        } else {
            CHECK_OK(kofka_abort_transaction(p, 5000));
            CHECK_OK(kofka_committed(c, "in", 0, &committed));
            CHECK_EQ(5, committed); /* the aborted transaction's offsets are discarded */
            int64_t pos = -1;
            CHECK_OK(kofka_position(c, "in", 0, &pos));
            CHECK_EQ(10, pos); /* aborting does not rewind the consumer ... */
            CHECK_OK(kofka_seek_to_committed(c));
            CHECK_OK(kofka_position(c, "in", 0, &pos));
            CHECK(pos == 5 || pos == -1); /* 5, or "not fetched yet" until the next poll */
            kofka_message *m = NULL;
            CHECK_OK(kofka_poll(c, 2000, &m)); /* ... seek_to_committed does: in5 again */
            if (CHECK(m != NULL)) {
                CHECK_EQ(5, m->offset);
                CHECK_MEM_EQ("in5", 3, m->value, m->value_len);
                kofka_message_free(m);
            }
        }
    }
out:
    CHECK_OK(kofka_consumer_close(c));
    CHECK_OK(kofka_producer_close(p, 5000));
    CHECK_OK(kofka_broker_close(b));
}

int main(void) {
    check_init();
    printf("test_transactions: isolation, abort, fencing, offsets in transactions\n");
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "tx");
        transactions(&be);
        test_backend_teardown(&be);
        test_backend_setup(&be, i, "tx-offsets");
        offsets_in_transactions(&be);
        test_backend_teardown(&be);
    }
    return check_done();
}
