/*
 * test_roundtrip.c — every byte survives a produce/consume round trip.
 *
 * A topic with 4 partitions; 2,000 keyed records whose values contain NUL
 * bytes (a few have a NULL value), 0–3 headers each (including a header with
 * a NULL value and one with an empty value), explicit timestamps. Half are
 * sent with kofka_send_batch in chunks of varying size, half with kofka_send.
 * A manually assigned consumer (all 4 partitions) reads them back with
 * kofka_poll_batch and kofka_poll. Proven, on both backends:
 *  - exact key, value, header names/values (NULL vs empty kept), timestamps;
 *  - offsets dense from 0 per partition, in send order, as reported by send;
 *  - the partition reported by send is the partition read back;
 *  - the same key always lands on the same partition;
 *  - watermarks: low 0, high = records in the partition;
 *  - nothing extra is delivered.
 */
#include "check.h"

#define TOPIC "roundtrip"
#define PARTITIONS 4
#define COUNT 2000
#define KEYS 257
#define TS_BASE INT64_C(1700000000000)

typedef struct sent_record {
    uint8_t key[8]; size_t key_len;
    uint8_t value[96]; size_t value_len; int value_null;
    kofka_header headers[3]; size_t header_count;
    int64_t timestamp_ms;
    int32_t partition;  /* from send */
    int64_t offset;     /* from send */
} sent_record;

static sent_record sent[COUNT];
static const uint8_t hdr0_value[3] = {'a', 0, 'b'};

static void make_record(int i, sent_record *s) {
    memset(s, 0, sizeof *s);
    /* Key: "k", a NUL, then the key id in two bytes — 257 distinct keys. */
    int k = i % KEYS;
    s->key[0] = 'k'; s->key[1] = 0; s->key[2] = (uint8_t)(k & 0xff); s->key[3] = (uint8_t)(k >> 8);
    s->key_len = 4;
    if (i % 500 == 7) {
        s->value_null = 1; /* a tombstone */
    } else {
        s->value_len = 8 + (size_t)(i % 80);
        for (size_t j = 0; j < s->value_len; j++) s->value[j] = (uint8_t)((i * 31 + j * 7) & 0xff);
        s->value[0] = 0;
        s->value[1] = (uint8_t)(i & 0xff); s->value[2] = (uint8_t)(i >> 8); /* unique */
        s->value[3] = 0;
        s->value[s->value_len - 1] = 0;
    }
    s->header_count = (size_t)(i % 4);
    if (s->header_count > 0) s->headers[0] = (kofka_header){"h0", hdr0_value, sizeof hdr0_value};
    if (s->header_count > 1) s->headers[1] = (kofka_header){"null-valued", NULL, 0};
    if (s->header_count > 2) s->headers[2] = (kofka_header){"empty", "", 0};
    s->timestamp_ms = TS_BASE + i * 3;
    s->partition = -1;
    s->offset = -1;
}

static kofka_record to_record(const sent_record *s) {
    kofka_record r = test_record(s->key, s->key_len, s->value_null ? NULL : s->value, s->value_len);
    r.headers = s->header_count ? s->headers : NULL;
    r.header_count = s->header_count;
    r.timestamp_ms = s->timestamp_ms;
    return r;
}

static void compare(const sent_record *s, const kofka_message *m) {
    CHECK_STR_EQ(TOPIC, m->topic);
    CHECK_EQ(s->partition, m->partition);
    CHECK_EQ(s->offset, m->offset);
    CHECK_EQ(s->timestamp_ms, m->timestamp_ms);
    CHECK_MEM_EQ(s->key, s->key_len, m->key, m->key_len);
    if (s->value_null) {
        CHECK(m->value == NULL);
        CHECK_EQ(0, m->value_len);
    } else {
        CHECK_MEM_EQ(s->value, s->value_len, m->value, m->value_len);
    }
    if (!CHECK_EQ(s->header_count, m->header_count)) return;
    for (size_t h = 0; h < s->header_count; h++) {
        const kofka_header *e = &s->headers[h], *a = &m->headers[h];
        CHECK_STR_EQ(e->name, a->name);
        CHECK_EQ(e->value_len, a->value_len);
        if (e->value == NULL) {
            CHECK(a->value == NULL); /* a NULL header value stays NULL */
        } else {
            CHECK(a->value != NULL); /* an empty header value is not NULL */
            CHECK_MEM_EQ(e->value, e->value_len, a->value, a->value_len);
        }
    }
}

static void roundtrip(const test_backend *be) {
    kofka_broker *b = NULL;
    kofka_producer *p = NULL;
    kofka_consumer *c = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(b, TOPIC, PARTITIONS));
    int32_t n = 0;
    CHECK_OK(kofka_topic_partitions(b, TOPIC, &n));
    CHECK_EQ(PARTITIONS, n);
    if (!CHECK_OK(kofka_producer_new(b, NULL, &p))) goto out;

    for (int i = 0; i < COUNT; i++) make_record(i, &sent[i]);

    /* First half: batches of 1, 2, 3, ... 97 records (the last one shorter). */
    int i = 0, chunk = 1;
    while (i < COUNT / 2) {
        int len = chunk;
        if (i + len > COUNT / 2) len = COUNT / 2 - i;
        kofka_record recs[100];
        for (int j = 0; j < len; j++) recs[j] = to_record(&sent[i + j]);
        CHECK_OK(kofka_send_batch(p, TOPIC, recs, (size_t)len));
        for (int j = 0; j < len; j++) {
            CHECK_EQ(KOFKA_OK, recs[j].err);
            sent[i + j].partition = recs[j].partition;
            sent[i + j].offset = recs[j].offset;
        }
        i += len;
        chunk = chunk % 97 + 1;
    }
    /* Second half: one by one. */
    for (; i < COUNT; i++) {
        kofka_record r = to_record(&sent[i]);
        CHECK_OK(kofka_send(p, TOPIC, &r));
        CHECK_EQ(KOFKA_OK, r.err);
        sent[i].partition = r.partition;
        sent[i].offset = r.offset;
    }

    /* Offsets reported by send: dense from 0 per partition, in send order;
     * same key -> same partition. */
    int64_t next[PARTITIONS] = {0};
    int32_t key_partition[KEYS];
    for (int k = 0; k < KEYS; k++) key_partition[k] = -1;
    int bad_partition = 0, bad_offset = 0, key_moved = 0;
    static int index_at[PARTITIONS][COUNT];
    for (i = 0; i < COUNT; i++) {
        int32_t part = sent[i].partition;
        if (part < 0 || part >= PARTITIONS) { bad_partition++; continue; }
        if (sent[i].offset != next[part]) bad_offset++;
        if (next[part] < COUNT) index_at[part][next[part]] = i;
        next[part]++;
        int k = i % KEYS;
        if (key_partition[k] == -1) key_partition[k] = part;
        else if (key_partition[k] != part) key_moved++;
    }
    CHECK_EQ(0, bad_partition);
    CHECK_EQ(0, bad_offset);
    CHECK_EQ(0, key_moved);
    int used = 0;
    for (int part = 0; part < PARTITIONS; part++) used += next[part] > 0;
    CHECK(used > 1); /* 257 keys spread over more than one partition */

    for (int part = 0; part < PARTITIONS; part++) {
        int64_t low = -5, high = -5;
        CHECK_OK(kofka_watermarks(b, TOPIC, part, &low, &high));
        CHECK_EQ(0, low);
        CHECK_EQ(next[part], high);
    }

    /* Read back with a manually assigned consumer. */
    if (!CHECK_OK(kofka_consumer_new(b, NULL, &c))) goto out;
    int32_t all[PARTITIONS] = {0, 1, 2, 3};
    CHECK_OK(kofka_assign(c, TOPIC, all, PARTITIONS));
    int64_t want_next[PARTITIONS] = {0};
    static int seen[COUNT];
    memset(seen, 0, sizeof seen);
    int got = 0, unexpected = 0, out_of_order = 0, dup = 0;
    int64_t deadline = test_now_ms() + 20000;
    while (got < COUNT && test_now_ms() < deadline) {
        kofka_message *ms[64];
        size_t cnt = 0;
        if (got < COUNT / 2) {
            if (!CHECK_OK(kofka_poll_batch(c, 1000, ms, 64, &cnt))) break;
            CHECK(cnt <= 64);
        } else {
            kofka_message *m = NULL;
            if (!CHECK_OK(kofka_poll(c, 1000, &m))) break;
            if (m) { ms[0] = m; cnt = 1; }
        }
        for (size_t j = 0; j < cnt; j++) {
            kofka_message *m = ms[j];
            got++;
            if (m->partition < 0 || m->partition >= PARTITIONS || m->offset < 0 || m->offset >= next[m->partition]) {
                unexpected++;
            } else {
                if (m->offset != want_next[m->partition]) out_of_order++;
                want_next[m->partition] = m->offset + 1;
                int idx = index_at[m->partition][m->offset];
                if (seen[idx]++) dup++;
                compare(&sent[idx], m);
            }
            kofka_message_free(m);
        }
    }
    CHECK_EQ(COUNT, got);
    CHECK_EQ(0, unexpected);
    CHECK_EQ(0, out_of_order);
    CHECK_EQ(0, dup);
    int missing = 0;
    for (i = 0; i < COUNT; i++) missing += !seen[i];
    CHECK_EQ(0, missing);
    /* Nothing more. */
    kofka_message *extra = (kofka_message *)&extra;
    CHECK_OK(kofka_poll(c, 200, &extra));
    CHECK(extra == NULL);
    if (extra && extra != (kofka_message *)&extra) kofka_message_free(extra);
    size_t cnt = 99;
    kofka_message *ms[4];
    CHECK_OK(kofka_poll_batch(c, 100, ms, 4, &cnt));
    CHECK_EQ(0, cnt);
    for (int part = 0; part < PARTITIONS; part++) {
        int64_t pos = -5;
        CHECK_OK(kofka_position(c, TOPIC, part, &pos));
        CHECK_EQ(next[part], pos);
    }
    printf("  %d records: partitions %lld/%lld/%lld/%lld\n", COUNT, (long long)next[0], (long long)next[1],
           (long long)next[2], (long long)next[3]);
out:
    CHECK_OK(kofka_consumer_close(c));
    CHECK_OK(kofka_producer_close(p, 5000));
    CHECK_OK(kofka_broker_close(b));
}

int main(void) {
    check_init();
    printf("test_roundtrip: exact bytes, headers, timestamps, dense offsets, watermarks\n");
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "roundtrip");
        roundtrip(&be);
        test_backend_teardown(&be);
    }
    return check_done();
}
