/*
 * test_poll_lend.c — kofka_poll_lend, the call a binding uses to cross into
 * the library once per batch and hand records out one at a time:
 *  - lent records are not returned: kofka_position and kofka_commit ignore
 *    them until a later call settles them;
 *  - settling k of a lend moves the position past exactly those k; the rest
 *    are lent again, in order, so nothing is lost or handed out twice;
 *  - a close commits exactly what was settled: the group's next member starts
 *    right after the last record handed out;
 *  - max 0 only settles (out may be NULL); settling more than is lent, or
 *    after a kofka_poll or kofka_seek took the lend back, is
 *    KOFKA_ERR_INVALID_ARG with a message, and changes nothing;
 *  - window_ns says how long lent records may be handed out: until the
 *    member's heartbeat or automatic commit is due; UINT64_MAX for a manual
 *    assignment without automatic commits;
 *  - NULL consumer or count, NULL out with max > 0: KOFKA_ERR_INVALID_ARG;
 *    SIZE_MAX for settle is refused, not wrapped.
 */
#include "check.h"

static uint64_t last_window; /* window_ns of the last lend() */

/* Lends up to max and stores the offsets (freeing the messages); returns the count. */
static size_t lend(kofka_consumer *c, size_t settle, size_t max, int64_t *offsets) {
    kofka_message *out[64];
    size_t n = 99;
    uint64_t window = 7;
    if (!CHECK_OK(kofka_poll_lend(c, settle, 1000, out, max, &n, &window))) return 0;
    /* a group member with automatic commits: its heartbeat (<= 1 s) or commit (5 s) is due
     * first; 0 while no automatic commit has run (the first is due at once) */
    CHECK(window <= 5000000000ull);
    last_window = window;
    for (size_t i = 0; i < n; i++) {
        offsets[i] = out[i]->offset;
        kofka_message_free(out[i]);
    }
    return n;
}

static void lend_and_settle(kofka_broker *b) {
    const char *cfg[] = {"group.id", "g", NULL};
    kofka_consumer *c = NULL;
    if (!CHECK_OK(kofka_consumer_new(b, cfg, &c))) return;
    const char *topics[] = {"t"};
    CHECK_OK(kofka_subscribe(c, topics, 1));
    int64_t offs[64], pos = -7, committed = -7;

    CHECK_EQ(10, lend(c, 0, 10, offs));
    CHECK_EQ(0, offs[0]);
    CHECK_EQ(9, offs[9]);
    CHECK_OK(kofka_position(c, "t", 0, &pos));
    CHECK_EQ(0, pos); /* nothing returned yet */
    CHECK_OK(kofka_commit(c));
    CHECK_OK(kofka_committed(c, "t", 0, &committed));
    CHECK_EQ(0, committed);

    /* 4 handed out: they count; 4.. are lent again */
    CHECK_EQ(5, lend(c, 4, 5, offs));
    CHECK_EQ(4, offs[0]);
    CHECK_EQ(8, offs[4]);
    CHECK_OK(kofka_position(c, "t", 0, &pos));
    CHECK_EQ(4, pos);
    CHECK(last_window > 0); /* the settled 4 were committed automatically: the next commit is 5 s away */

    /* more than is lent: refused, nothing changes */
    size_t n = 99;
    kofka_message *out[4];
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_poll_lend(c, 6, 0, out, 4, &n, NULL));
    CHECK_CONTAINS(kofka_last_error(), "settle 6");
    CHECK_EQ(0, n);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_poll_lend(c, SIZE_MAX, 0, out, 4, &n, NULL));

    /* settle only: max 0, out NULL */
    CHECK_OK(kofka_poll_lend(c, 2, 0, NULL, 0, &n, NULL));
    CHECK_EQ(0, n);
    CHECK_OK(kofka_position(c, "t", 0, &pos));
    CHECK_EQ(6, pos);

    /* a poll takes a lend back */
    CHECK_EQ(3, lend(c, 0, 3, offs));
    CHECK_EQ(6, offs[0]);
    kofka_message *m = NULL;
    CHECK_OK(kofka_poll(c, 1000, &m));
    if (CHECK(m != NULL)) {
        CHECK_EQ(6, m->offset);
        kofka_message_free(m);
    }
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_poll_lend(c, 1, 0, NULL, 0, &n, NULL));

    /* a close commits exactly what was settled */
    CHECK_EQ(3, lend(c, 0, 3, offs));
    CHECK_EQ(7, offs[0]);
    CHECK_OK(kofka_poll_lend(c, 2, 0, NULL, 0, &n, NULL));
    CHECK_OK(kofka_consumer_close(c));

    kofka_consumer *next = NULL;
    if (CHECK_OK(kofka_consumer_new(b, cfg, &next))) {
        CHECK_OK(kofka_subscribe(next, topics, 1));
        CHECK_EQ(1, lend(next, 0, 1, offs));
        CHECK_EQ(9, offs[0]); /* 7 and 8 were handed out and committed at close */
        CHECK_OK(kofka_consumer_close(next));
    }
}

static void bad_input(kofka_broker *b) {
    size_t n = 0;
    kofka_message *out[2];
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_poll_lend(NULL, 0, 0, out, 2, &n, NULL));
    CHECK_HAS_MESSAGE();
    kofka_consumer *c = NULL;
    if (!CHECK_OK(kofka_consumer_new(b, NULL, &c))) return;
    int32_t parts[] = {0};
    CHECK_OK(kofka_assign(c, "t", parts, 1));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_poll_lend(c, 0, 0, out, 2, NULL, NULL));
    CHECK_CONTAINS(kofka_last_error(), "count");
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_poll_lend(c, 0, 0, NULL, 2, &n, NULL));
    CHECK_CONTAINS(kofka_last_error(), "out");
    CHECK_OK(kofka_seek(c, "t", 0, 3));
    uint64_t window = 0;
    CHECK_OK(kofka_poll_lend(c, 0, 1000, out, 2, &n, &window));
    CHECK_EQ(UINT64_MAX, window); /* manual assignment, no automatic commits: nothing falls due */
    CHECK_EQ(2, n);
    if (n == 2) {
        CHECK_EQ(3, out[0]->offset);
        kofka_message_free(out[0]);
        kofka_message_free(out[1]);
    }
    CHECK_OK(kofka_seek(c, "t", 0, 0));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_poll_lend(c, 1, 0, out, 2, &n, NULL)); /* the seek took it back */
    CHECK_OK(kofka_consumer_close(c));
    CHECK_ERR(KOFKA_ERR_CLOSED, kofka_poll_lend(c, 0, 0, out, 2, &n, NULL));
}

int main(void) {
    check_init();
    printf("test_poll_lend: lent records count as returned only once settled; the rest come again\n");
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "lend");
        kofka_broker *b = NULL;
        if (CHECK_OK(kofka_broker_open(be.storage, NULL, &b))) {
            CHECK_OK(kofka_topic_create(b, "t", 1));
            kofka_producer *p = NULL;
            if (CHECK_OK(kofka_producer_new(b, NULL, &p))) {
                for (int k = 0; k < 20; k++) {
                    kofka_record r = test_record(NULL, 0, "v", 1);
                    CHECK_OK(kofka_send(p, "t", &r));
                }
                CHECK_OK(kofka_producer_close(p, 1000));
            }
            lend_and_settle(b);
            bad_input(b);
            CHECK_OK(kofka_broker_close(b));
        }
        test_backend_teardown(&be);
    }
    return check_done();
}
