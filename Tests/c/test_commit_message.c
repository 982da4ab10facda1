/*
 * test_commit_message.c — kofka_commit_message checks the message it is
 * given against the log, for a manually assigned and a subscribed consumer:
 *  - offset INT64_MAX (no next offset) is KOFKA_ERR_OFFSET_OUT_OF_RANGE, not a trap;
 *  - a negative offset, or one at or past the high watermark, is
 *    KOFKA_ERR_OFFSET_OUT_OF_RANGE naming the offset;
 *  - an unknown topic is KOFKA_ERR_UNKNOWN_TOPIC, a partition out of range
 *    KOFKA_ERR_UNKNOWN_PARTITION, each naming the value;
 *  - a refused commit leaves the committed offset as it was; a valid one
 *    (0 <= offset < high watermark) commits offset + 1.
 *
 * The range checks live in the core (Consumer.commit(_ message:)); until the
 * core validates, the unknown-topic / partition / range checks here fail.
 */
#include "check.h"

static kofka_message msg(const char *topic, int32_t partition, int64_t offset) {
    kofka_message m;
    memset(&m, 0, sizeof m);
    m.topic = topic;
    m.partition = partition;
    m.offset = offset;
    return m;
}

static void commit_message_checks_against_the_log(kofka_broker *b, kofka_consumer *c, const char *what) {
    printf("  %s consumer\n", what);
    int64_t committed = -7;
    CHECK_OK(kofka_committed(c, "t", 0, &committed));
    CHECK_EQ(-1, committed);

    kofka_message m = msg("t", 0, INT64_MAX);
    CHECK_ERR(KOFKA_ERR_OFFSET_OUT_OF_RANGE, kofka_commit_message(c, &m));
    CHECK_CONTAINS(kofka_last_error(), "9223372036854775807");
    m = msg("t", 0, -1);
    CHECK_ERR(KOFKA_ERR_OFFSET_OUT_OF_RANGE, kofka_commit_message(c, &m));
    CHECK_CONTAINS(kofka_last_error(), "-1");
    m = msg("t", 0, INT64_MIN);
    CHECK_ERR(KOFKA_ERR_OFFSET_OUT_OF_RANGE, kofka_commit_message(c, &m));
    m = msg("t", 0, 5); /* the high watermark: no record there yet */
    CHECK_ERR(KOFKA_ERR_OFFSET_OUT_OF_RANGE, kofka_commit_message(c, &m));
    CHECK_CONTAINS(kofka_last_error(), "5");
    m = msg("t", 0, 1000);
    CHECK_ERR(KOFKA_ERR_OFFSET_OUT_OF_RANGE, kofka_commit_message(c, &m));
    CHECK_CONTAINS(kofka_last_error(), "1000");
    m = msg("no-such-topic", 0, 0);
    CHECK_ERR(KOFKA_ERR_UNKNOWN_TOPIC, kofka_commit_message(c, &m));
    CHECK_CONTAINS(kofka_last_error(), "no-such-topic");
    m = msg("t", 2, 0);
    CHECK_ERR(KOFKA_ERR_UNKNOWN_PARTITION, kofka_commit_message(c, &m));
    CHECK_CONTAINS(kofka_last_error(), "2");
    m = msg("t", -1, 0);
    CHECK_ERR(KOFKA_ERR_UNKNOWN_PARTITION, kofka_commit_message(c, &m));
    m = msg("t", INT32_MAX, 0);
    CHECK_ERR(KOFKA_ERR_UNKNOWN_PARTITION, kofka_commit_message(c, &m));

    committed = -7;
    CHECK_OK(kofka_committed(c, "t", 0, &committed));
    CHECK_EQ(-1, committed); /* nothing above moved the group's offset */

    m = msg("t", 0, 4); /* the last record: commits 5 */
    CHECK_OK(kofka_commit_message(c, &m));
    CHECK_OK(kofka_committed(c, "t", 0, &committed));
    CHECK_EQ(5, committed);
    m = msg("t", 0, 0);
    CHECK_OK(kofka_commit_message(c, &m));
    CHECK_OK(kofka_committed(c, "t", 0, &committed));
    CHECK_EQ(1, committed);
    (void)b;
}

int main(void) {
    check_init();
    printf("test_commit_message: kofka_commit_message refuses offsets, topics and partitions the log does not have\n");
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "commitmsg");
        kofka_broker *b = NULL;
        if (CHECK_OK(kofka_broker_open(be.storage, NULL, &b))) {
            CHECK_OK(kofka_topic_create(b, "t", 2));
            kofka_producer *p = NULL;
            if (CHECK_OK(kofka_producer_new(b, NULL, &p))) {
                for (int k = 0; k < 5; k++) {
                    kofka_record r = test_record(NULL, 0, "v", 1);
                    r.partition = 0;
                    CHECK_OK(kofka_send(p, "t", &r));
                }
                CHECK_OK(kofka_producer_close(p, 1000));
            }
            const char *manual_cfg[] = {"group.id", "manual", NULL};
            kofka_consumer *c = NULL;
            if (CHECK_OK(kofka_consumer_new(b, manual_cfg, &c))) {
                int32_t parts[] = {0, 1};
                CHECK_OK(kofka_assign(c, "t", parts, 2));
                commit_message_checks_against_the_log(b, c, "manually assigned");
                CHECK_OK(kofka_consumer_close(c));
            }
            const char *group_cfg[] = {"group.id", "grouped", NULL};
            c = NULL;
            if (CHECK_OK(kofka_consumer_new(b, group_cfg, &c))) {
                const char *topics[] = {"t"};
                CHECK_OK(kofka_subscribe(c, topics, 1));
                commit_message_checks_against_the_log(b, c, "subscribed");
                CHECK_OK(kofka_consumer_close(c));
            }
            CHECK_OK(kofka_broker_close(b));
        }
        test_backend_teardown(&be);
    }
    return check_done();
}
