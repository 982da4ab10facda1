/*
 * test_sizes.c — every length and count from C is checked as the unsigned
 * value the caller passed, before any arithmetic or read:
 *  - key_len / value_len / a header's value_len of SIZE_MAX, SIZE_MAX-4 and
 *    INT64_MAX+1 (negative as a signed 64-bit value) through kofka_send,
 *    kofka_send_batch and kofka_produce are KOFKA_ERR_MSG_TOO_LARGE naming the
 *    value, with the data pointer NULL or pointing into a small real buffer;
 *  - header_count SIZE_MAX is KOFKA_ERR_MSG_TOO_LARGE; a batch count, a
 *    subscribe or assign count of SIZE_MAX is KOFKA_ERR_INVALID_ARG naming it;
 *  - kofka_poll_batch with max SIZE_MAX returns at most max.poll.records;
 *  - kofka_send_packed lengths below -1 or above message.max.bytes fail;
 *  - nothing is written by a refused call (the high watermark stays).
 */
#include "check.h"

static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 4, (size_t)INT64_MAX + 1, (size_t)INT64_MAX};
#define N_HUGE (sizeof huge / sizeof huge[0])

static char small_buf[16] = "0123456789abcdef";

static int64_t high(kofka_broker *b, const char *topic, int32_t partition) {
    int64_t lo = -1, hi = -1;
    kofka_watermarks(b, topic, partition, &lo, &hi);
    return hi;
}

static void size_max_key_len_is_msg_too_large(kofka_broker *b, kofka_producer *p) {
    for (size_t i = 0; i < N_HUGE; i++) {
        char num[32];
        snprintf(num, sizeof num, "%zu", huge[i]);
        const void *ptrs[] = {small_buf, NULL};
        for (int j = 0; j < 2; j++) {
            kofka_record r = test_record(ptrs[j], huge[i], "v", 1);
            CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_send(p, "t", &r));
            CHECK_CONTAINS(kofka_last_error(), num);
            CHECK_CONTAINS(kofka_last_error(), "key_len");
            CHECK_EQ(KOFKA_ERR_MSG_TOO_LARGE, r.err);
            r = test_record(ptrs[j], huge[i], "v", 1);
            CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_produce(p, "t", &r, NULL));
            CHECK_CONTAINS(kofka_last_error(), num);
            kofka_record batch[3] = {test_record("a", 1, "1", 1), test_record(ptrs[j], huge[i], "2", 1),
                                     test_record("c", 1, "3", 1)};
            CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_send_batch(p, "t", batch, 3));
            CHECK_CONTAINS(kofka_last_error(), num);
            CHECK_EQ(KOFKA_OK, batch[0].err);
            CHECK_EQ(KOFKA_ERR_MSG_TOO_LARGE, batch[1].err);
            CHECK_EQ(KOFKA_OK, batch[2].err);
        }
    }
    (void)b;
}

static void size_max_value_len_is_msg_too_large(kofka_producer *p) {
    for (size_t i = 0; i < N_HUGE; i++) {
        char num[32];
        snprintf(num, sizeof num, "%zu", huge[i]);
        kofka_record r = test_record("k", 1, small_buf, huge[i]);
        CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_send(p, "t", &r));
        CHECK_CONTAINS(kofka_last_error(), num);
        CHECK_CONTAINS(kofka_last_error(), "value_len");
        r = test_record("k", 1, NULL, huge[i]);
        CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_produce(p, "t", &r, NULL));
        CHECK_CONTAINS(kofka_last_error(), num);
        /* Both at once, each within size_t: their sum must not wrap to something small. */
        r = test_record(small_buf, huge[i], small_buf, SIZE_MAX - huge[i] + 2);
        CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_send(p, "t", &r));
    }
}

static void size_max_header_value_len_is_msg_too_large(kofka_producer *p) {
    for (size_t i = 0; i < N_HUGE; i++) {
        char num[32];
        snprintf(num, sizeof num, "%zu", huge[i]);
        kofka_header hs[2] = {{"ok", "x", 1}, {"big", small_buf, huge[i]}};
        kofka_record r = test_record("k", 1, "v", 1);
        r.headers = hs; r.header_count = 2;
        CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_send(p, "t", &r));
        CHECK_CONTAINS(kofka_last_error(), num);
        CHECK_CONTAINS(kofka_last_error(), "header 1");
        r = test_record("k", 1, "v", 1);
        r.headers = hs; r.header_count = 2;
        CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_produce(p, "t", &r, NULL));
        CHECK_CONTAINS(kofka_last_error(), num);
        kofka_record batch[2] = {test_record("a", 1, "1", 1), test_record("b", 1, "2", 1)};
        batch[1].headers = hs; batch[1].header_count = 2;
        CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_send_batch(p, "t", batch, 2));
        CHECK_EQ(KOFKA_ERR_MSG_TOO_LARGE, batch[1].err);
        hs[1].value = NULL;
        r = test_record("k", 1, "v", 1);
        r.headers = hs; r.header_count = 2;
        CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_send(p, "t", &r));
    }
}

static void size_max_header_count_is_msg_too_large(kofka_producer *p) {
    kofka_header hs[1] = {{"h", "x", 1}};
    for (size_t i = 0; i < N_HUGE; i++) {
        char num[32];
        snprintf(num, sizeof num, "%zu", huge[i]);
        kofka_record r = test_record("k", 1, "v", 1);
        r.headers = hs; r.header_count = huge[i];
        CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_send(p, "t", &r));
        CHECK_CONTAINS(kofka_last_error(), num);
        CHECK_CONTAINS(kofka_last_error(), "header_count");
        r.headers = NULL;
        CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_produce(p, "t", &r, NULL));
        CHECK_CONTAINS(kofka_last_error(), num);
    }
}

static void size_max_batch_count_is_invalid_arg(kofka_producer *p) {
    kofka_record r = test_record("k", 1, "v", 1);
    for (size_t i = 0; i < N_HUGE; i++) {
        char num[32];
        snprintf(num, sizeof num, "%zu", huge[i]);
        CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send_batch(p, "t", &r, huge[i]));
        CHECK_CONTAINS(kofka_last_error(), num);
        int64_t lens[1] = {1};
        if (huge[i] > (size_t)INT64_MAX / 8) {
            CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send_packed(p, "t", KOFKA_PARTITION_ANY, NULL, NULL, "v", lens, huge[i],
                                                               NULL, NULL, NULL));
            CHECK_CONTAINS(kofka_last_error(), num);
        }
    }
}

static void packed_lengths_out_of_range_fail(kofka_producer *p) {
    int64_t bad[] = {-2, INT64_MIN, INT64_MAX, (int64_t)1 << 40};
    kofka_err expect[] = {KOFKA_ERR_INVALID_ARG, KOFKA_ERR_INVALID_ARG, KOFKA_ERR_MSG_TOO_LARGE, KOFKA_ERR_MSG_TOO_LARGE};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char num[32];
        snprintf(num, sizeof num, "%" PRId64, bad[i]);
        int64_t vlens[2] = {1, bad[i]};
        kofka_err errs[2] = {99, 99};
        CHECK_ERR(expect[i], kofka_send_packed(p, "t", KOFKA_PARTITION_ANY, NULL, NULL, small_buf, vlens, 2, NULL, NULL, errs));
        CHECK_CONTAINS(kofka_last_error(), num);
        CHECK_CONTAINS(kofka_last_error(), "value_lens[1]");
        int64_t klens[2] = {bad[i], 1};
        CHECK_ERR(expect[i], kofka_send_packed(p, "t", KOFKA_PARTITION_ANY, small_buf, klens, small_buf, vlens, 1, NULL, NULL, NULL));
        CHECK_CONTAINS(kofka_last_error(), "key_lens[0]");
    }
    /* NULL buffers with non-zero lengths. */
    int64_t vl[1] = {4};
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send_packed(p, "t", KOFKA_PARTITION_ANY, NULL, NULL, NULL, vl, 1, NULL, NULL, NULL));
    CHECK_CONTAINS(kofka_last_error(), "values is NULL");
}

static void size_max_subscribe_and_assign_counts_are_invalid_arg(kofka_broker *b) {
    const char *cfg[] = {"group.id", "sizes", NULL};
    kofka_consumer *c = NULL;
    if (!CHECK_OK(kofka_consumer_new(b, cfg, &c))) return;
    const char *topics[] = {"t"};
    int32_t parts[] = {0};
    for (size_t i = 0; i < N_HUGE; i++) {
        char num[32];
        snprintf(num, sizeof num, "%zu", huge[i]);
        CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_subscribe(c, topics, huge[i]));
        CHECK_CONTAINS(kofka_last_error(), num);
        CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_assign(c, "t", parts, huge[i]));
        CHECK_CONTAINS(kofka_last_error(), num);
    }
    CHECK_OK(kofka_consumer_close(c));
}

static void size_max_poll_batch_max_returns_at_most_max_poll_records(kofka_broker *b, kofka_producer *p) {
    for (int i = 0; i < 10; i++) {
        kofka_record r = test_record(NULL, 0, "x", 1);
        r.partition = 1;
        CHECK_OK(kofka_send(p, "t2", &r));
    }
    const char *cfg[] = {"max.poll.records", "4", NULL};
    kofka_consumer *c = NULL;
    if (!CHECK_OK(kofka_consumer_new(b, cfg, &c))) return;
    int32_t parts[] = {1};
    CHECK_OK(kofka_assign(c, "t2", parts, 1));
    kofka_message *ms[4] = {NULL, NULL, NULL, NULL};
    size_t n = 0;
    CHECK_OK(kofka_poll_batch(c, 2000, ms, SIZE_MAX, &n));
    CHECK_EQ(4, n);
    for (size_t i = 0; i < n && i < 4; i++) {
        CHECK_EQ((int64_t)i, ms[i]->offset);
        kofka_message_free(ms[i]);
    }
    n = 7;
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_poll_batch(c, 0, ms, 0, &n));
    CHECK_CONTAINS(kofka_last_error(), "max");
    CHECK_OK(kofka_consumer_close(c));
}

int main(void) {
    check_init();
    printf("test_sizes: size_t lengths and counts above INT64_MAX are errors, never reads\n");
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "sizes");
        kofka_broker *b = NULL;
        if (CHECK_OK(kofka_broker_open(be.storage, NULL, &b))) {
            CHECK_OK(kofka_topic_create(b, "t", 2));
            kofka_producer *p = NULL;
            if (CHECK_OK(kofka_producer_new(b, NULL, &p))) {
                size_max_key_len_is_msg_too_large(b, p);
                size_max_value_len_is_msg_too_large(p);
                size_max_header_value_len_is_msg_too_large(p);
                size_max_header_count_is_msg_too_large(p);
                CHECK_OK(kofka_flush(p, 2000));
                int64_t before0 = high(b, "t", 0), before1 = high(b, "t", 1);
                size_max_batch_count_is_invalid_arg(p);
                packed_lengths_out_of_range_fail(p);
                CHECK_EQ(before0, high(b, "t", 0)); /* nothing written by a refused call */
                CHECK_EQ(before1, high(b, "t", 1));
                size_max_subscribe_and_assign_counts_are_invalid_arg(b);
                /* The batches above wrote only their good records: 2 per call, to partitions 0/1. */
                CHECK_EQ(4 * 2 * 2 * 1 + 4 * 1, before0 + before1);
                int64_t lo = 0, hi = 0;
                CHECK_OK(kofka_topic_create(b, "fresh", 2));
                kofka_watermarks(b, "fresh", 1, &lo, &hi);
                CHECK_EQ(0, hi);
                CHECK_OK(kofka_producer_close(p, 2000));
            }
            kofka_producer *p2 = NULL;
            if (CHECK_OK(kofka_producer_new(b, NULL, &p2))) {
                CHECK_OK(kofka_topic_create(b, "t2", 2));
                size_max_poll_batch_max_returns_at_most_max_poll_records(b, p2);
                CHECK_OK(kofka_producer_close(p2, 2000));
            }
            CHECK_OK(kofka_broker_close(b));
        }
        test_backend_teardown(&be);
    }
    return check_done();
}
