/*
 * test_retention.c — topic configuration, DeleteRecords, maintenance and the
 * consumer's rule below the log start, through the C ABI, on both backends.
 * Proven:
 *  - kofka_topic_create_with_config stores the topic's own keys; kofka_topic_config_get
 *    returns them, else the broker default; a buffer too small is INVALID_ARG with the
 *    size needed in *len; unknown keys and bad values are INVALID_CONFIG;
 *  - kofka_topic_config_set changes a key; "" returns it to the default;
 *  - kofka_delete_records moves the low watermark (out-parameter), -1 means the high
 *    watermark, above it is OFFSET_OUT_OF_RANGE; the high watermark never moves down;
 *  - kofka_broker_maintain applies retention.bytes;
 *  - a consumer below the log start: earliest -> the log start, none -> kofka_poll
 *    returns OFFSET_OUT_OF_RANGE;
 *  - compaction keeps the latest record per key at its offset; readers skip the gaps.
 */
#include "check.h"

static kofka_broker *open_broker(const test_backend *be) {
    const char *cfg[] = {"log.retention.check.interval.ms", "0", "log.retention.bytes", "-1", NULL};
    kofka_broker *b = NULL;
    CHECK_OK(kofka_broker_open(be->storage, cfg, &b));
    return b;
}

static void send_values(kofka_broker *b, const char *topic, int n, const char *key) {
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, NULL, &p))) return;
    for (int i = 0; i < n; i++) {
        char v[32];
        int len = snprintf(v, sizeof v, "v%d", i);
        kofka_record r = test_record(key, key ? strlen(key) : 0, v, (size_t)len);
        r.partition = 0;
        CHECK_OK(kofka_send(p, topic, &r));
    }
    kofka_producer_close(p, -1);
}

static void test_config(kofka_broker *b) {
    const char *cfg[] = {"retention.bytes", "1000", "cleanup.policy", "delete,compact", NULL};
    CHECK_OK(kofka_topic_create_with_config(b, "configured", 2, cfg));
    char buf[64];
    size_t len = sizeof buf;
    CHECK_OK(kofka_topic_config_get(b, "configured", "retention.bytes", buf, &len));
    CHECK_STR_EQ("1000", buf);
    CHECK_EQ(5, len);
    len = sizeof buf;
    CHECK_OK(kofka_topic_config_get(b, "configured", "cleanup.policy", buf, &len));
    CHECK_STR_EQ("compact,delete", buf);
    len = sizeof buf;
    CHECK_OK(kofka_topic_config_get(b, "configured", "retention.ms", buf, &len));
    CHECK_STR_EQ("-1", buf);   /* the default: unlimited */
    char small[3];
    len = sizeof small;
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_topic_config_get(b, "configured", "cleanup.policy", small, &len));
    CHECK_EQ(15, len);         /* "compact,delete" + NUL */
    CHECK_HAS_MESSAGE();
    len = 0;
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_topic_config_get(b, "configured", "retention.bytes", NULL, &len));
    CHECK_EQ(5, len);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_topic_config_get(b, "configured", "retention.bytes", buf, NULL));
    len = sizeof buf;
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_topic_config_get(b, "configured", "retention.byte", buf, &len));
    CHECK_CONTAINS(kofka_last_error(), "retention.byte");
    CHECK_ERR(KOFKA_ERR_UNKNOWN_TOPIC, kofka_topic_config_get(b, "nope", "retention.bytes", buf, &len));

    const char *set[] = {"retention.bytes", "", "retention.ms", "60000", NULL};
    CHECK_OK(kofka_topic_config_set(b, "configured", set));
    len = sizeof buf;
    CHECK_OK(kofka_topic_config_get(b, "configured", "retention.bytes", buf, &len));
    CHECK_STR_EQ("-1", buf);
    len = sizeof buf;
    CHECK_OK(kofka_topic_config_get(b, "configured", "retention.ms", buf, &len));
    CHECK_STR_EQ("60000", buf);
    const char *bad[] = {"cleanup.policy", "shred", NULL};
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_topic_config_set(b, "configured", bad));
    CHECK_CONTAINS(kofka_last_error(), "shred");
    const char *unknown[] = {"retention.msx", "1", NULL};
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_topic_create_with_config(b, "other", 1, unknown));
    const char *odd[] = {"retention.ms", NULL};
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_topic_config_set(b, "configured", odd));
    CHECK_ERR(KOFKA_ERR_TOPIC_EXISTS, kofka_topic_create_with_config(b, "configured", 1, NULL));
}

static void test_delete_records(kofka_broker *b) {
    CHECK_OK(kofka_topic_create(b, "del", 1));
    send_values(b, "del", 10, NULL);
    int64_t low = -1, high = -1;
    CHECK_OK(kofka_delete_records(b, "del", 0, 4, &low));
    CHECK_EQ(4, low);
    CHECK_OK(kofka_delete_records(b, "del", 0, 2, NULL));   /* below: nothing changes */
    CHECK_OK(kofka_watermarks(b, "del", 0, &low, &high));
    CHECK_EQ(4, low);
    CHECK_EQ(10, high);
    CHECK_ERR(KOFKA_ERR_OFFSET_OUT_OF_RANGE, kofka_delete_records(b, "del", 0, 11, &low));
    CHECK_ERR(KOFKA_ERR_UNKNOWN_PARTITION, kofka_delete_records(b, "del", 3, 1, &low));
    CHECK_ERR(KOFKA_ERR_UNKNOWN_TOPIC, kofka_delete_records(b, "nope", 0, 1, &low));

    /* earliest: starts at the log start */
    const char *early[] = {"group.id", "early", "auto.offset.reset", "earliest", NULL};
    kofka_consumer *c = NULL;
    CHECK_OK(kofka_consumer_new(b, early, &c));
    int32_t parts[] = {0};
    CHECK_OK(kofka_assign(c, "del", parts, 1));
    kofka_message *m = NULL;
    CHECK_OK(kofka_poll(c, 1000, &m));
    if (CHECK(m != NULL)) CHECK_EQ(4, m->offset);
    kofka_message_free(m);
    /* none: a committed position below the log start is out of range */
    kofka_consumer *strict = NULL;
    const char *none[] = {"group.id", "early", "auto.offset.reset", "none", NULL};
    CHECK_OK(kofka_consumer_new(b, none, &strict));
    CHECK_OK(kofka_assign(strict, "del", parts, 1));
    CHECK_OK(kofka_seek(strict, "del", 0, 5));
    CHECK_OK(kofka_commit(strict));                      /* committed 5 */
    CHECK_OK(kofka_delete_records(b, "del", 0, 8, &low));
    kofka_consumer_close(strict);
    CHECK_OK(kofka_consumer_new(b, none, &strict));
    CHECK_OK(kofka_assign(strict, "del", parts, 1));
    m = NULL;
    CHECK_ERR(KOFKA_ERR_OFFSET_OUT_OF_RANGE, kofka_poll(strict, 0, &m));
    CHECK(m == NULL);
    CHECK_HAS_MESSAGE();
    CHECK_ERR(KOFKA_ERR_OFFSET_OUT_OF_RANGE, kofka_seek(strict, "del", 0, 7));
    kofka_consumer_destroy(strict);
    kofka_consumer_destroy(c);
    /* everything: -1; the high watermark stays */
    CHECK_OK(kofka_delete_records(b, "del", 0, -1, &low));
    CHECK_EQ(10, low);
    CHECK_OK(kofka_watermarks(b, "del", 0, &low, &high));
    CHECK_EQ(10, high);
}

static void test_maintain(kofka_broker *b) {
    const char *cfg[] = {"retention.bytes", "20", NULL};
    CHECK_OK(kofka_topic_create_with_config(b, "sized", 1, cfg));
    send_values(b, "sized", 20, NULL);   /* "v0".."v19": 2 or 3 bytes each, 50 in all */
    CHECK_OK(kofka_broker_maintain(b));
    int64_t low = -1, high = -1;
    CHECK_OK(kofka_watermarks(b, "sized", 0, &low, &high));
    CHECK_EQ(20, high);
    CHECK_EQ(14, low);   /* v14..v19 = 6 × 3 bytes = 18 <= 20; with v13 it would be 21 */
    CHECK_OK(kofka_watermarks(b, "sized", 0, &low, &high));

    const char *compact[] = {"cleanup.policy", "compact", NULL};
    CHECK_OK(kofka_topic_create_with_config(b, "keys", 1, compact));
    send_values(b, "keys", 3, "a");   /* offsets 0..2 */
    send_values(b, "keys", 2, "b");   /* 3..4 */
    CHECK_OK(kofka_broker_maintain(b));
    kofka_consumer *c = NULL;
    CHECK_OK(kofka_consumer_new(b, NULL, &c));
    int32_t parts[] = {0};
    CHECK_OK(kofka_assign(c, "keys", parts, 1));
    kofka_message *ms[8];
    size_t n = 0;
    CHECK_OK(kofka_poll_batch(c, 1000, ms, 8, &n));
    CHECK_EQ(3, n);   /* a@2 (latest a), b@3 (b@4 is the last record, never cleaned), b@4 */
    if (n == 3) {
        CHECK_EQ(2, ms[0]->offset);
        CHECK_EQ(3, ms[1]->offset);
        CHECK_EQ(4, ms[2]->offset);
    }
    for (size_t i = 0; i < n; i++) kofka_message_free(ms[i]);
    kofka_consumer_destroy(c);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_broker_maintain(NULL));
}

int main(void) {
    check_init();
    printf("test_retention: topic config, DeleteRecords, maintenance, offsets below the log start\n");
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "retention");
        kofka_broker *b = open_broker(&be);
        if (b) {
            test_config(b);
            test_delete_records(b);
            test_maintain(b);
            kofka_broker_close(b);
        }
        test_backend_teardown(&be);
    }
    return check_done();
}
