/*
 * test_murmur2.c — keyed records land where Kafka's default partitioner puts
 * them: toPositive(murmur2(key)) % numPartitions, with Kafka's
 * Utils.murmur2 (seed 0x9747b28c), so a key goes to the same partition as
 * with Kafka's Java client.
 *
 * The reference murmur2 below is a port of Kafka's Java code; it is first
 * checked against the values in Kafka's UtilsTest, then used to predict the
 * partition of every key sent with KOFKA_PARTITION_ANY, on both backends.
 */
#include "check.h"

/* Port of org.apache.kafka.common.utils.Utils.murmur2 (Java int arithmetic
 * done in uint32_t, result reinterpreted as a signed 32-bit int). */
static int32_t ref_murmur2(const uint8_t *data, size_t length) {
    const uint32_t seed = 0x9747b28cu;
    const uint32_t m = 0x5bd1e995u;
    const int r = 24;
    uint32_t h = seed ^ (uint32_t)length;
    size_t length4 = length / 4;
    for (size_t i = 0; i < length4; i++) {
        size_t i4 = i * 4;
        uint32_t k = (uint32_t)data[i4 + 0] | ((uint32_t)data[i4 + 1] << 8) | ((uint32_t)data[i4 + 2] << 16) |
                     ((uint32_t)data[i4 + 3] << 24);
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    size_t tail = length & ~(size_t)3;
    switch (length % 4) {
    case 3: h ^= (uint32_t)data[tail + 2] << 16; /* fall through */
    case 2: h ^= (uint32_t)data[tail + 1] << 8;  /* fall through */
    case 1: h ^= (uint32_t)data[tail];
            h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

/* Kafka's Utils.toPositive. */
static int32_t to_positive(int32_t n) { return (int32_t)((uint32_t)n & 0x7fffffffu); }

static int32_t expected_partition(const void *key, size_t len, int32_t partitions) {
    return to_positive(ref_murmur2(key, len)) % partitions;
}

/* Values from Kafka's UtilsTest.testMurmur2. */
static const struct { const char *key; int32_t murmur2; } known[] = {
    {"21", -973932308},
    {"foobar", -790332482},
    {"a-little-bit-long-string", -985981536},
    {"a-little-bit-longer-string", -1486304829},
    {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
    {"abc", 479470107},
};
#define KNOWN_COUNT (sizeof known / sizeof known[0])

static void reference_matches_kafka(void) {
    for (size_t i = 0; i < KNOWN_COUNT; i++)
        CHECK_EQ(known[i].murmur2, ref_murmur2((const uint8_t *)known[i].key, strlen(known[i].key)));
    /* Hand-worked partitions from the known hashes (toPositive = n & 0x7fffffff). */
    CHECK_EQ(0, to_positive(-790332482) % 3);   /* "foobar": 1357151166 % 3 */
    CHECK_EQ(3, to_positive(-973932308) % 7);  /* "21": 1173551340 % 7 */
    CHECK_EQ(3, to_positive(479470107) % 12);   /* "abc": 479470107 % 12 */
}

/* Generated keys: text, binary with NUL bytes, 1..40 bytes long. */
#define GEN_KEYS 300
static size_t gen_key(int i, uint8_t *buf) {
    if (i % 3 == 0) return (size_t)sprintf((char *)buf, "user-%d", i);
    size_t len = 1 + (size_t)(i % 40);
    for (size_t j = 0; j < len; j++) buf[j] = (uint8_t)((i * 131 + j * 17) & 0xff);
    buf[len / 2] = 0; /* an embedded NUL */
    return len;
}

static void partitioner_matches(const test_backend *be) {
    static const int32_t counts[] = {1, 3, 4, 7, 12, 100};
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, NULL, &b))) return;
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, NULL, &p))) { kofka_broker_close(b); return; }

    for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
        int32_t n = counts[ci];
        char topic[64];
        snprintf(topic, sizeof topic, "murmur-%d", n);
        CHECK_OK(kofka_topic_create(b, topic, n));

        /* The known keys, one by one. */
        for (size_t i = 0; i < KNOWN_COUNT; i++) {
            const char *k = known[i].key;
            kofka_record r = test_record(k, strlen(k), "v", 1);
            CHECK_OK(kofka_send(p, topic, &r));
            CHECK_EQ(to_positive(known[i].murmur2) % n, r.partition);
        }
        /* Generated keys in one batch: every record goes to its key's partition. */
        uint8_t keys[GEN_KEYS][48];
        size_t lens[GEN_KEYS];
        kofka_record recs[GEN_KEYS];
        for (int i = 0; i < GEN_KEYS; i++) {
            lens[i] = gen_key(i, keys[i]);
            recs[i] = test_record(keys[i], lens[i], "v", 1);
        }
        CHECK_OK(kofka_send_batch(p, topic, recs, GEN_KEYS));
        int wrong = 0;
        for (int i = 0; i < GEN_KEYS; i++) {
            int32_t want = expected_partition(keys[i], lens[i], n);
            if (recs[i].partition != want || recs[i].err != KOFKA_OK) {
                if (wrong++ < 5)
                    printf("    key #%d (%zu bytes) on %d partitions: expected partition %d, got %d (%s)\n", i,
                           lens[i], n, want, recs[i].partition, kofka_err_name(recs[i].err));
            }
        }
        CHECK_EQ(0, wrong);
        /* An explicit partition wins over the key. */
        kofka_record r = test_record("foobar", 6, "x", 1);
        r.partition = n - 1;
        CHECK_OK(kofka_send(p, topic, &r));
        CHECK_EQ(n - 1, r.partition);
    }
    CHECK_OK(kofka_producer_close(p, 5000));
    CHECK_OK(kofka_broker_close(b));
}

int main(void) {
    check_init();
    printf("test_murmur2: keyed records go to toPositive(murmur2(key)) %% N\n");
    reference_matches_kafka();
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "murmur2");
        partitioner_matches(&be);
        test_backend_teardown(&be);
    }
    return check_done();
}
