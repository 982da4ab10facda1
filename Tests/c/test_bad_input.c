/*
 * test_bad_input.c — every bad input returns its error code with a message
 * that names the offending value, and nothing crashes:
 *  - NULL handles and NULL out-pointers for every function;
 *  - NULL data with a non-zero length; negative / out-of-range counts;
 *  - invalid topic names; invalid, unknown, odd-length and contradictory
 *    config; unknown storage schemes; oversized records; unknown partitions;
 *  - a text file and a corrupt database opened as SQLite storage;
 *  - closing NULL handles; kofka_last_error() per thread and "" after success;
 *  - kofka_err_name / kofka_err_desc for every code and an unknown one;
 *  - producer and consumer calls after kofka_broker_close -> KOFKA_ERR_CLOSED;
 *  - out-parameters are left untouched on failure.
 */
#include "check.h"
#include <pthread.h>

#define SENTINEL_PTR(T) ((T *)(uintptr_t)0x5e17)

/* ---- error names ------------------------------------------------------- */

static void error_names_and_descriptions(void) {
    static const char *names[] = {
        "KOFKA_OK", "KOFKA_ERR_INVALID_ARG", "KOFKA_ERR_INVALID_CONFIG", "KOFKA_ERR_INVALID_STATE",
        "KOFKA_ERR_UNKNOWN_TOPIC", "KOFKA_ERR_UNKNOWN_PARTITION", "KOFKA_ERR_TOPIC_EXISTS",
        "KOFKA_ERR_MSG_TOO_LARGE", "KOFKA_ERR_OFFSET_OUT_OF_RANGE", "KOFKA_ERR_NO_OFFSET",
        "KOFKA_ERR_TIMED_OUT", "KOFKA_ERR_STORAGE", "KOFKA_ERR_OUT_OF_ORDER_SEQUENCE",
        "KOFKA_ERR_PRODUCER_FENCED", "KOFKA_ERR_TXN_TIMED_OUT", "KOFKA_ERR_REBALANCED", "KOFKA_ERR_CLOSED",
        "KOFKA_ERR_UNSUPPORTED", "KOFKA_ERR_QUEUE_FULL", "KOFKA_ERR_BUSY", "KOFKA_ERR_PURGED",
    };
    for (int e = 0; e < (int)(sizeof names / sizeof names[0]); e++) {
        CHECK_STR_EQ(names[e], kofka_err_name((kofka_err)e));
        const char *d = kofka_err_desc((kofka_err)e);
        CHECK(d != NULL && d[0] != '\0');
    }
    CHECK_EQ(18, KOFKA_ERR_QUEUE_FULL);
    CHECK_EQ(13, KOFKA_ERR_PRODUCER_FENCED);
    CHECK_EQ(19, KOFKA_ERR_BUSY);
    CHECK_EQ(20, KOFKA_ERR_PURGED);
    int unknown[] = {21, 99, -1, 1000000};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        CHECK_STR_EQ("KOFKA_ERR_UNKNOWN", kofka_err_name((kofka_err)unknown[i]));
        CHECK(kofka_err_desc((kofka_err)unknown[i]) != NULL);
    }
    const char *v = kofka_version();
    CHECK(v != NULL && v[0] != '\0');
}

/* ---- storage strings and broker config ---------------------------------- */

static void broker_open_rejects(void) {
    kofka_broker *b = SENTINEL_PTR(kofka_broker);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_broker_open(NULL, NULL, &b));
    CHECK_HAS_MESSAGE();
    CHECK(b == SENTINEL_PTR(kofka_broker)); /* untouched on failure */
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_broker_open("memory:", NULL, NULL));
    CHECK_HAS_MESSAGE();

    const char *schemes[] = {"nosuch://localhost/x", "", "mem:", "SQLITE", "file:/tmp/x"};
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        b = SENTINEL_PTR(kofka_broker);
        CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_broker_open(schemes[i], NULL, &b));
        CHECK_CONTAINS(kofka_last_error(), "memory:");
        CHECK_CONTAINS(kofka_last_error(), "sqlite:");
        CHECK(b == SENTINEL_PTR(kofka_broker));
    }
    b = SENTINEL_PTR(kofka_broker);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_broker_open("nosuch://localhost/x", NULL, &b));
    CHECK_CONTAINS(kofka_last_error(), "libkofka_nosuch.so");
    /* postgres: is served by libkofka_postgresql.so beside libkofka.so: no server there is STORAGE naming the place */
    b = SENTINEL_PTR(kofka_broker);
    CHECK_ERR(KOFKA_ERR_STORAGE, kofka_broker_open("postgres://127.0.0.1:1/x", NULL, &b));
    CHECK_CONTAINS(kofka_last_error(), "host 127.0.0.1 port 1 database x");
    CHECK(b == SENTINEL_PTR(kofka_broker));

    const char *unknown_key[] = {"num.partitionz", "3", NULL};
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_broker_open("memory:", unknown_key, &b));
    CHECK_CONTAINS(kofka_last_error(), "num.partitionz");
    const char *odd[] = {"num.partitions", "3", "message.max.bytes", NULL};
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_broker_open("memory:", odd, &b));
    CHECK_HAS_MESSAGE();
    const char *bad_value[] = {"num.partitions", "many", NULL};
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_broker_open("memory:", bad_value, &b));
    CHECK_CONTAINS(kofka_last_error(), "many");
    const char *bad_bool[] = {"auto.create.topics.enable", "perhaps", NULL};
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_broker_open("memory:", bad_bool, &b));
    CHECK_CONTAINS(kofka_last_error(), "perhaps");
    const char *bad_sync[] = {"sqlite.synchronous", "sometimes", NULL};
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_broker_open("memory:", bad_sync, &b));
    CHECK_CONTAINS(kofka_last_error(), "sometimes");
    CHECK(b == SENTINEL_PTR(kofka_broker));
}

/* A text file and a corrupt Kofka database are KOFKA_ERR_STORAGE naming the path. */
static void broker_open_bad_files(void) {
    char path[256], storage[300];
    kofka_broker *b = SENTINEL_PTR(kofka_broker);

    snprintf(path, sizeof path, "/tmp/kofka-ctest-text-%ld.txt", (long)getpid());
    FILE *f = fopen(path, "w");
    if (!CHECK(f != NULL)) return;
    for (int i = 0; i < 200; i++) fprintf(f, "this is a text file, not a database (line %d)\n", i);
    fclose(f);
    snprintf(storage, sizeof storage, "sqlite:%s", path);
    CHECK_ERR(KOFKA_ERR_STORAGE, kofka_broker_open(storage, NULL, &b));
    CHECK_CONTAINS(kofka_last_error(), path);
    CHECK(b == SENTINEL_PTR(kofka_broker));
    unlink(path);

    /* A real Kofka database whose pages after the 100-byte header are garbage. */
    snprintf(path, sizeof path, "/tmp/kofka-ctest-corrupt-%ld.db", (long)getpid());
    test_remove_db(path);
    snprintf(storage, sizeof storage, "sqlite:%s", path);
    kofka_broker *good = NULL;
    if (CHECK_OK(kofka_broker_open(storage, NULL, &good))) {
        CHECK_OK(kofka_topic_create(good, "t", 3));
        CHECK_OK(kofka_broker_close(good));
    }
    char side[300];
    snprintf(side, sizeof side, "%s-wal", path); unlink(side);
    snprintf(side, sizeof side, "%s-shm", path); unlink(side);
    f = fopen(path, "r+b");
    if (CHECK(f != NULL)) {
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        CHECK(size > 100);
        fseek(f, 100, SEEK_SET);
        for (long i = 100; i < size; i++) fputc(0xA5, f);
        fclose(f);
        b = SENTINEL_PTR(kofka_broker);
        kofka_err e = kofka_broker_open(storage, NULL, &b);
        CHECK_ERR(KOFKA_ERR_STORAGE, e);
        CHECK_CONTAINS(kofka_last_error(), path);
        if (e == KOFKA_OK) kofka_broker_close(b);
        else CHECK(b == SENTINEL_PTR(kofka_broker));
    }
    test_remove_db(path);

    /* A directory is not a database file either. */
    snprintf(storage, sizeof storage, "sqlite:/tmp");
    b = SENTINEL_PTR(kofka_broker);
    kofka_err e = kofka_broker_open(storage, NULL, &b);
    CHECK_ERR(KOFKA_ERR_STORAGE, e);
    CHECK_CONTAINS(kofka_last_error(), "/tmp");
    if (e == KOFKA_OK) kofka_broker_close(b);
}

/* ---- producer / consumer config ---------------------------------------- */

static void config_rejects(kofka_broker *b) {
    kofka_producer *p = SENTINEL_PTR(kofka_producer);
    kofka_consumer *c = SENTINEL_PTR(kofka_consumer);
    struct { const char *const *cfg; const char *needle; } producer_bad[] = {
        {(const char *const[]){"ackz", "all", NULL}, "ackz"},
        {(const char *const[]){"acks", "all", "retries", NULL}, NULL},           /* odd length */
        {(const char *const[]){"acks", "7", NULL}, "7"},
        {(const char *const[]){"delivery.mode", "sometimes", NULL}, "sometimes"},
        {(const char *const[]){"retries", "-3", NULL}, "-3"},
        {(const char *const[]){"linger.ms", "soon", NULL}, "soon"},
        {(const char *const[]){"enable.idempotence", "yes please", NULL}, "yes please"},
        {(const char *const[]){"fault.request.loss.rate", "1.5", NULL}, "1.5"},
        {(const char *const[]){"fault.ack.loss.rate", "-0.1", NULL}, "-0.1"},
        {(const char *const[]){"transactional.id", "tx-1", "acks", "0", NULL}, "transactional.id"},
        {(const char *const[]){"enable.idempotence", "true", "acks", "1", NULL}, "acks"},
        {(const char *const[]){"delivery.mode", "at-most-once", "transactional.id", "tx-2", NULL}, "transactional.id"},
    };
    for (size_t i = 0; i < sizeof producer_bad / sizeof producer_bad[0]; i++) {
        p = SENTINEL_PTR(kofka_producer);
        kofka_err e = kofka_producer_new(b, producer_bad[i].cfg, &p);
        if (!CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, e)) printf("    (producer config #%zu)\n", i);
        if (producer_bad[i].needle) CHECK_CONTAINS(kofka_last_error(), producer_bad[i].needle);
        else CHECK_HAS_MESSAGE();
        if (e == KOFKA_OK) kofka_producer_close(p, 0);
        else CHECK(p == SENTINEL_PTR(kofka_producer));
    }
    /* A config value that is explicitly valid does succeed (and clears the error). */
    const char *ok_cfg[] = {"acks", "all", "enable.idempotence", "true", NULL};
    p = NULL;
    CHECK_OK(kofka_producer_new(b, ok_cfg, &p));
    CHECK_STR_EQ("", kofka_last_error());
    CHECK_OK(kofka_producer_close(p, 1000));

    struct { const char *const *cfg; const char *needle; } consumer_bad[] = {
        {(const char *const[]){"group.idd", "g", NULL}, "group.idd"},
        {(const char *const[]){"group.id", NULL}, NULL},
        {(const char *const[]){"isolation.level", "read_sometimes", NULL}, "read_sometimes"},
        {(const char *const[]){"auto.offset.reset", "never", NULL}, "never"},
        {(const char *const[]){"delivery.mode", "sometimes", NULL}, "sometimes"},
        {(const char *const[]){"max.poll.records", "0", NULL}, "max.poll.records"},
        {(const char *const[]){"session.timeout.ms", "-1", NULL}, "-1"},
        {(const char *const[]){"partition.assignment.strategy", "random", NULL}, "random"},
        {(const char *const[]){"acks", "all", NULL}, "acks"}, /* a producer key */
    };
    for (size_t i = 0; i < sizeof consumer_bad / sizeof consumer_bad[0]; i++) {
        c = SENTINEL_PTR(kofka_consumer);
        kofka_err e = kofka_consumer_new(b, consumer_bad[i].cfg, &c);
        if (!CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, e)) printf("    (consumer config #%zu)\n", i);
        if (consumer_bad[i].needle) CHECK_CONTAINS(kofka_last_error(), consumer_bad[i].needle);
        else CHECK_HAS_MESSAGE();
        if (e == KOFKA_OK) kofka_consumer_close(c);
        else CHECK(c == SENTINEL_PTR(kofka_consumer));
    }
}

/* ---- NULLs, names, sizes ------------------------------------------------ */

static void topic_rejects(kofka_broker *b) {
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_topic_create(NULL, "t", 1));
    CHECK_HAS_MESSAGE();
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_topic_create(b, NULL, 1));
    CHECK_HAS_MESSAGE();
    int32_t counts[] = {0, -1, -100, INT32_MIN, 100001};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        char s[32];
        snprintf(s, sizeof s, "%d", counts[i]);
        CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_topic_create(b, "counts", counts[i]));
        CHECK_CONTAINS(kofka_last_error(), s);
    }
    char long_name[251];
    memset(long_name, 'x', 250); long_name[250] = '\0';
    const char *names[] = {"", "a/b", long_name, "..", ".", "with space", "tab\there", "ünïcode", "a:b"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_topic_create(b, names[i], 1)))
            printf("    (topic name #%zu \"%.20s\")\n", i, names[i]);
        CHECK_HAS_MESSAGE();
        if (names[i][0] && i != 2) CHECK_CONTAINS(kofka_last_error(), names[i]);
    }
    /* 249 characters is the longest valid name; "..." and "a..b" are valid. */
    long_name[249] = '\0';
    CHECK_OK(kofka_topic_create(b, long_name, 1));
    CHECK_OK(kofka_topic_create(b, "Valid_name-1.2", 1));
    CHECK_ERR(KOFKA_ERR_TOPIC_EXISTS, kofka_topic_create(b, "Valid_name-1.2", 1));
    CHECK_CONTAINS(kofka_last_error(), "Valid_name-1.2");

    int32_t n = -7;
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_topic_partitions(NULL, "t3", &n));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_topic_partitions(b, NULL, &n));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_topic_partitions(b, "t3", NULL));
    CHECK_HAS_MESSAGE();
    CHECK_ERR(KOFKA_ERR_UNKNOWN_TOPIC, kofka_topic_partitions(b, "no-such-topic", &n));
    CHECK_CONTAINS(kofka_last_error(), "no-such-topic");
    CHECK_EQ(-7, n);

    int64_t lo = -7, hi = -7;
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_watermarks(NULL, "t3", 0, &lo, &hi));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_watermarks(b, NULL, 0, &lo, &hi));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_watermarks(b, "t3", 0, NULL, &hi));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_watermarks(b, "t3", 0, &lo, NULL));
    CHECK_ERR(KOFKA_ERR_UNKNOWN_PARTITION, kofka_watermarks(b, "t3", 7, &lo, &hi));
    CHECK_CONTAINS(kofka_last_error(), "7");
    CHECK_ERR2(KOFKA_ERR_UNKNOWN_PARTITION, KOFKA_ERR_INVALID_ARG, kofka_watermarks(b, "t3", -1, &lo, &hi));
    CHECK_CONTAINS(kofka_last_error(), "-1");
    CHECK_ERR(KOFKA_ERR_UNKNOWN_TOPIC, kofka_watermarks(b, "no-such-topic", 0, &lo, &hi));
    CHECK_EQ(-7, lo);
    CHECK_EQ(-7, hi);
}

static void dummy_cb(kofka_producer *p, const char *topic, const kofka_record *r, void *mo, void *co) {
    (void)p; (void)topic; (void)r; (void)mo; (void)co;
}

static void producer_rejects(kofka_broker *b) {
    kofka_producer *p = SENTINEL_PTR(kofka_producer);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_producer_new(NULL, NULL, &p));
    CHECK_HAS_MESSAGE();
    CHECK(p == SENTINEL_PTR(kofka_producer));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_producer_new(b, NULL, NULL));
    CHECK_HAS_MESSAGE();
    p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, NULL, &p))) return;

    kofka_record r = test_record("k", 1, "v", 1);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send(NULL, "t3", &r));
    CHECK_HAS_MESSAGE();
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send(p, NULL, &r));
    CHECK_HAS_MESSAGE();
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send(p, "t3", NULL));
    CHECK_HAS_MESSAGE();

    r = test_record("k", 1, NULL, 5); /* NULL value, non-zero length */
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send(p, "t3", &r));
    CHECK_CONTAINS(kofka_last_error(), "5");
    r = test_record(NULL, 3, "v", 1); /* NULL key, non-zero length */
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send(p, "t3", &r));
    CHECK_CONTAINS(kofka_last_error(), "3");
    r = test_record("k", 1, "v", 1);
    r.header_count = 2; /* NULL headers, non-zero count */
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send(p, "t3", &r));
    CHECK_HAS_MESSAGE();
    kofka_header bad_name[1] = {{NULL, "x", 1}};
    r = test_record("k", 1, "v", 1);
    r.headers = bad_name; r.header_count = 1;
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send(p, "t3", &r));
    CHECK_HAS_MESSAGE();
    kofka_header bad_value[1] = {{"h", NULL, 4}};
    r.headers = bad_value;
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send(p, "t3", &r));
    CHECK_HAS_MESSAGE();
    r = test_record("k", 1, "v", 1);
    r.partition = -2;
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send(p, "t3", &r));
    CHECK_CONTAINS(kofka_last_error(), "-2");
    r = test_record("k", 1, "v", 1);
    r.partition = 7;
    CHECK_ERR(KOFKA_ERR_UNKNOWN_PARTITION, kofka_send(p, "t3", &r));
    CHECK_CONTAINS(kofka_last_error(), "7");
    CHECK_CONTAINS(kofka_last_error(), "t3");
    CHECK_EQ(KOFKA_ERR_UNKNOWN_PARTITION, r.err);
    r = test_record("k", 1, "v", 1);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send(p, "a/b", &r)); /* invalid name, even with auto-create */
    CHECK_CONTAINS(kofka_last_error(), "a/b");

    kofka_record batch[3] = {test_record("a", 1, "1", 1), test_record("b", 1, "2", 1), test_record("c", 1, "3", 1)};
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send_batch(NULL, "t3", batch, 3));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send_batch(p, NULL, batch, 3));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send_batch(p, "t3", NULL, 3));
    CHECK_HAS_MESSAGE();
    CHECK_OK(kofka_send_batch(p, "t3", NULL, 0));
    CHECK_STR_EQ("", kofka_last_error());
    batch[1].partition = 7;
    CHECK_ERR(KOFKA_ERR_UNKNOWN_PARTITION, kofka_send_batch(p, "t3", batch, 3));
    CHECK_CONTAINS(kofka_last_error(), "7");
    CHECK_EQ(KOFKA_ERR_UNKNOWN_PARTITION, batch[1].err);

    r = test_record("k", 1, "v", 1);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_produce(NULL, "t3", &r, NULL));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_produce(p, NULL, &r, NULL));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_produce(p, "t3", NULL, NULL));
    CHECK_HAS_MESSAGE();
    r = test_record("k", 1, NULL, 9);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_produce(p, "t3", &r, NULL));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_producer_set_delivery_cb(NULL, dummy_cb, NULL));
    CHECK_OK(kofka_producer_set_delivery_cb(p, NULL, NULL));
    CHECK_EQ(-1, kofka_producer_poll(NULL, 0));
    CHECK_EQ(0, kofka_producer_poll(p, 0));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_flush(NULL, 0));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_init_transactions(NULL, 0));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_begin_transaction(NULL));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_commit_transaction(NULL, 0));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_abort_transaction(NULL, 0));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send_offsets_to_transaction(NULL, NULL, 0));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_send_offsets_to_transaction(p, NULL, 0));
    /* Transactions without transactional.id. */
    CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_init_transactions(p, 1000));
    CHECK_CONTAINS(kofka_last_error(), "transactional.id");
    CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_begin_transaction(p));
    CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_commit_transaction(p, 1000));
    CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_abort_transaction(p, 1000));
    CHECK_OK(kofka_producer_close(p, 1000));
}

static void consumer_rejects(kofka_broker *b) {
    kofka_consumer *c = SENTINEL_PTR(kofka_consumer);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_consumer_new(NULL, NULL, &c));
    CHECK(c == SENTINEL_PTR(kofka_consumer));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_consumer_new(b, NULL, NULL));
    CHECK_HAS_MESSAGE();
    c = NULL;
    if (!CHECK_OK(kofka_consumer_new(b, NULL, &c))) return; /* no group.id */

    const char *topics[] = {"t3"};
    const char *null_topic[] = {NULL};
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_subscribe(NULL, topics, 1));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_subscribe(c, NULL, 1));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_subscribe(c, topics, 0));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_subscribe(c, null_topic, 1));
    CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_subscribe(c, topics, 1)); /* no group.id */
    CHECK_CONTAINS(kofka_last_error(), "group.id");

    int32_t parts[] = {0, 1};
    int32_t seven[] = {7};
    int32_t negative[] = {-1};
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_assign(NULL, "t3", parts, 2));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_assign(c, NULL, parts, 2));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_assign(c, "t3", NULL, 2));
    CHECK_HAS_MESSAGE();
    CHECK_ERR(KOFKA_ERR_UNKNOWN_PARTITION, kofka_assign(c, "t3", seven, 1));
    CHECK_CONTAINS(kofka_last_error(), "7");
    CHECK_ERR2(KOFKA_ERR_UNKNOWN_PARTITION, KOFKA_ERR_INVALID_ARG, kofka_assign(c, "t3", negative, 1));
    CHECK_CONTAINS(kofka_last_error(), "-1");
    CHECK_ERR(KOFKA_ERR_UNKNOWN_TOPIC, kofka_assign(c, "no-such-topic", parts, 1));
    CHECK_CONTAINS(kofka_last_error(), "no-such-topic");
    CHECK_OK(kofka_assign(c, "t3", parts, 2));

    kofka_message *m = SENTINEL_PTR(kofka_message);
    kofka_message *ms[4];
    size_t n = 99;
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_poll(NULL, 0, &m));
    CHECK(m == SENTINEL_PTR(kofka_message));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_poll(c, 0, NULL));
    CHECK_HAS_MESSAGE();
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_poll_batch(NULL, 0, ms, 4, &n));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_poll_batch(c, 0, NULL, 4, &n));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_poll_batch(c, 0, ms, 4, NULL));
    CHECK_EQ(99, n);
    kofka_message_free(NULL);

    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_commit(NULL));
    CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_commit(c)); /* no group.id */
    CHECK_CONTAINS(kofka_last_error(), "group.id");
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_commit_message(NULL, NULL));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_commit_message(c, NULL));
    int64_t off = -7;
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_committed(NULL, "t3", 0, &off));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_committed(c, NULL, 0, &off));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_committed(c, "t3", 0, NULL));
    CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_committed(c, "t3", 0, &off)); /* no group.id */
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_position(NULL, "t3", 0, &off));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_position(c, NULL, 0, &off));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_position(c, "t3", 0, NULL));
    CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_position(c, "t3", 2, &off)); /* not assigned */
    CHECK_CONTAINS(kofka_last_error(), "2");
    CHECK_EQ(-7, off);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_seek(NULL, "t3", 0, 0));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_seek(c, NULL, 0, 0));
    CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_seek(c, "t3", 2, 0)); /* not assigned */
    CHECK_ERR(KOFKA_ERR_OFFSET_OUT_OF_RANGE, kofka_seek(c, "t3", 0, 1000000));
    CHECK_CONTAINS(kofka_last_error(), "1000000");
    CHECK_ERR2(KOFKA_ERR_OFFSET_OUT_OF_RANGE, KOFKA_ERR_INVALID_ARG, kofka_seek(c, "t3", 0, -5));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_seek_to_committed(NULL));
    CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_seek_to_committed(c)); /* no group.id */
    CHECK_OK(kofka_consumer_close(c));

    /* A grouped consumer cannot also be manually assigned after subscribing. */
    const char *group_cfg[] = {"group.id", "bad-input-group", NULL};
    c = NULL;
    if (CHECK_OK(kofka_consumer_new(b, group_cfg, &c))) {
        CHECK_OK(kofka_subscribe(c, topics, 1));
        CHECK_ERR(KOFKA_ERR_INVALID_STATE, kofka_assign(c, "t3", parts, 1));
        off = -7;
        CHECK_OK(kofka_committed(c, "t3", 0, &off));
        CHECK_EQ(-1, off);
        CHECK_ERR(KOFKA_ERR_UNKNOWN_PARTITION, kofka_committed(c, "t3", 7, &off));
        CHECK_CONTAINS(kofka_last_error(), "7");
        CHECK_OK(kofka_consumer_close(c));
    }
}

/* Broker config message.max.bytes=1000: a 2000-byte value is too large. */
static void oversized_record(const test_backend *be) {
    const char *cfg[] = {"message.max.bytes", "1000", NULL};
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, cfg, &b))) return;
    CHECK_OK(kofka_topic_create(b, "small", 1));
    kofka_producer *p = NULL;
    if (CHECK_OK(kofka_producer_new(b, NULL, &p))) {
        static uint8_t big[2000];
        memset(big, 'x', sizeof big);
        kofka_record r = test_record(NULL, 0, big, sizeof big);
        CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_send(p, "small", &r));
        const char *msg = kofka_last_error();
        CHECK(strstr(msg, "2000") || strstr(msg, "1000"));
        CHECK_EQ(KOFKA_ERR_MSG_TOO_LARGE, r.err);
        r = test_record(NULL, 0, big, sizeof big);
        CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_produce(p, "small", &r, NULL));
        kofka_record batch[2] = {test_record(NULL, 0, "ok", 2), test_record(NULL, 0, big, sizeof big)};
        CHECK_ERR(KOFKA_ERR_MSG_TOO_LARGE, kofka_send_batch(p, "small", batch, 2));
        CHECK_EQ(KOFKA_ERR_MSG_TOO_LARGE, batch[1].err);
        r = test_record(NULL, 0, big, 500); /* fits */
        CHECK_OK(kofka_send(p, "small", &r));
        CHECK_OK(kofka_producer_close(p, 1000));
    }
    int64_t lo = -1, hi = -1;
    CHECK_OK(kofka_watermarks(b, "small", 0, &lo, &hi));
    CHECK(hi == 1 || hi == 2); /* the 500-byte record, maybe the batch's first; never a 2000-byte one */
    CHECK_OK(kofka_broker_close(b));
}

/* Producer and consumer calls after their broker was closed. */
static void use_after_broker_close(const test_backend *be) {
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(b, "t", 2));
    kofka_producer *p = NULL;
    kofka_consumer *c = NULL;
    const char *ccfg[] = {"group.id", "closed-group", NULL};
    CHECK_OK(kofka_producer_new(b, NULL, &p));
    CHECK_OK(kofka_consumer_new(b, ccfg, &c));
    int32_t parts[] = {0, 1};
    CHECK_OK(kofka_assign(c, "t", parts, 2));
    CHECK_OK(kofka_broker_close(b));
    if (!p || !c) return;

    kofka_record r = test_record("k", 1, "v", 1);
    CHECK_ERR(KOFKA_ERR_CLOSED, kofka_send(p, "t", &r));
    CHECK_HAS_MESSAGE();
    r = test_record("k", 1, "v", 1);
    CHECK_ERR(KOFKA_ERR_CLOSED, kofka_send_batch(p, "t", &r, 1));
    CHECK_ERR(KOFKA_ERR_CLOSED, kofka_produce(p, "t", &r, NULL));
    CHECK_ERR(KOFKA_ERR_CLOSED, kofka_flush(p, 100));
    kofka_message *m = NULL;
    CHECK_ERR(KOFKA_ERR_CLOSED, kofka_poll(c, 100, &m));
    CHECK(m == NULL);
    kofka_message *ms[2];
    size_t n = 0;
    CHECK_ERR(KOFKA_ERR_CLOSED, kofka_poll_batch(c, 100, ms, 2, &n));
    CHECK_ERR(KOFKA_ERR_CLOSED, kofka_commit(c));
    CHECK_ERR(KOFKA_ERR_CLOSED, kofka_seek(c, "t", 0, 0));
    CHECK_ERR(KOFKA_ERR_CLOSED, kofka_seek_to_committed(c));
    /* They must still be closable (and freed); the return code is not prescribed. */
    kofka_producer_close(p, 100);
    kofka_consumer_close(c);
    CHECK(1);
}

/* ---- last_error is per thread and "" after success ---------------------- */

typedef struct thread_ctx {
    pthread_barrier_t *bar;
    kofka_broker *b;
    int initially_empty;     /* last_error was "" before this thread failed */
    int own_kept;            /* own message survived the other thread's failure */
    int own_named;           /* own message named its key */
} thread_ctx;

static void *other_thread(void *arg) {
    thread_ctx *t = arg;
    t->initially_empty = strcmp(kofka_last_error(), "") == 0;
    kofka_producer *p = NULL;
    const char *cfg[] = {"thread-b-key", "1", NULL};
    kofka_producer_new(t->b, cfg, &p);
    t->own_named = strstr(kofka_last_error(), "thread-b-key") != NULL;
    pthread_barrier_wait(t->bar); /* B failed */
    pthread_barrier_wait(t->bar); /* A failed */
    t->own_kept = strstr(kofka_last_error(), "thread-b-key") != NULL;
    return NULL;
}

static void last_error_per_thread(kofka_broker *b) {
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    thread_ctx t = {&bar, b, 0, 0, 0};
    const char *cfg[] = {"thread-a-key", "1", NULL};
    kofka_producer *p = NULL;
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_producer_new(b, cfg, &p));
    pthread_t th;
    CHECK_EQ(0, pthread_create(&th, NULL, other_thread, &t));
    pthread_barrier_wait(&bar);
    CHECK_CONTAINS(kofka_last_error(), "thread-a-key"); /* B's failure did not touch A's message */
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_producer_new(b, cfg, &p));
    pthread_barrier_wait(&bar);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&bar);
    CHECK(t.initially_empty);
    CHECK(t.own_named);
    CHECK(t.own_kept);
    CHECK_CONTAINS(kofka_last_error(), "thread-a-key");

    /* A success clears the message. */
    int32_t n = 0;
    CHECK_OK(kofka_topic_partitions(b, "t3", &n));
    CHECK_STR_EQ("", kofka_last_error());
    CHECK_ERR(KOFKA_ERR_UNKNOWN_TOPIC, kofka_topic_partitions(b, "missing-topic", &n));
    CHECK_CONTAINS(kofka_last_error(), "missing-topic");
    kofka_broker *b2 = NULL;
    CHECK_OK(kofka_broker_open("memory:", NULL, &b2));
    CHECK_STR_EQ("", kofka_last_error());
    CHECK_OK(kofka_broker_close(b2));
}

static void null_closes(void) {
    CHECK_OK(kofka_broker_close(NULL));
    CHECK_OK(kofka_producer_close(NULL, 0));
    CHECK_OK(kofka_consumer_close(NULL));
    kofka_consumer_destroy(NULL);
    kofka_message_free(NULL);
    CHECK(1); /* reached without crashing */
}

int main(void) {
    check_init();
    printf("test_bad_input: error codes and messages for bad input, no crashes\n");
    check_context = "global";
    error_names_and_descriptions();
    null_closes();
    broker_open_rejects();
    broker_open_bad_files();
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "badinput");
        kofka_broker *b = NULL;
        if (CHECK_OK(kofka_broker_open(be.storage, NULL, &b))) {
            CHECK_OK(kofka_topic_create(b, "t3", 3));
            config_rejects(b);
            topic_rejects(b);
            producer_rejects(b);
            consumer_rejects(b);
            last_error_per_thread(b);
            CHECK_OK(kofka_broker_close(b));
        }
        test_backend_teardown(&be);
        test_backend_setup(&be, i, "badinput-large");
        oversized_record(&be);
        test_backend_teardown(&be);
        test_backend_setup(&be, i, "badinput-closed");
        use_after_broker_close(&be);
        test_backend_teardown(&be);
    }
    return check_done();
}
