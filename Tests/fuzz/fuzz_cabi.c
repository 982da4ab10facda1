/*
 * fuzz_cabi.c — a libFuzzer target over the C ABI of include/kofka.h.
 *
 * The input bytes are a program: each step takes one byte for the call and
 * more bytes for its arguments. The calls cover the whole header on "memory:"
 * brokers: brokers, topics with random names and partition counts, producers
 * and consumers with random config arrays (valid and invalid keys and values),
 * send / send_batch / send_packed / produce with random sizes (huge size_t
 * lengths whose pointers are NULL or point into a small real buffer, never
 * wild pointers), leases and packed handovers (kept, forged and NULL leases,
 * odd partitions and counts), poll / poll_batch / poll_lend with random max and
 * settle counts (more than was lent, SIZE_MAX), commit / commit_message
 * with random offsets (INT64_MAX, negative), seek, position, committed,
 * transactions in random orders, double closes, use after close, handles of
 * the wrong kind and pointers the library never returned.
 *
 * After every call it checks the contract: the result is a valid kofka_err,
 * kofka_last_error() is never NULL and is non-empty after a failure, and
 * out-parameters come back sane. A violation is __builtin_trap() (a finding).
 * Whatever is still open at the end of an input is closed.
 *
 * Lengths the library may read are at most the size of the real buffer
 * (BUF bytes); every larger length is above message.max.bytes, so the library
 * must refuse it before reading.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kofka.h"

#define MAX_H 4          /* handles of each kind alive at once (slots) */
#define BUF 64           /* the real data buffer */
#define MAX_BATCH 8
#define POLL_SLOTS 1024  /* >= every max.poll.records the configs below allow */

/* ---- the input ----------------------------------------------------------- */

typedef struct input { const uint8_t *p; size_t n; } input;

static uint8_t u8(input *in) {
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}
static uint32_t u32(input *in) { uint32_t v = 0; for (int i = 0; i < 4; i++) v = v << 8 | u8(in); return v; }
static uint64_t u64(input *in) { return (uint64_t)u32(in) << 32 | u32(in); }
static int pick(input *in, int n) { return n ? u8(in) % n : 0; }

/* ---- contract checks ----------------------------------------------------- */

static void check_err(kofka_err e) {
    if ((int)e < 0 || (int)e > KOFKA_ERR_PURGED) __builtin_trap();
    const char *m = kofka_last_error();
    if (!m) __builtin_trap();
    if (e != KOFKA_OK && m[0] == '\0') __builtin_trap();
    if (e == KOFKA_OK && m[0] != '\0') __builtin_trap();
    if (!kofka_err_name(e) || !kofka_err_desc(e)) __builtin_trap();
}

/* A per-record result: a valid code (the message belongs to the call, not to it). */
static void check_err_code(kofka_err e) {
    if ((int)e < 0 || (int)e > KOFKA_ERR_PURGED) __builtin_trap();
}

static void check_message(const kofka_message *m) {
    if (!m || !m->topic || m->offset < 0 || m->partition < 0) __builtin_trap();
    if (m->key_len && !m->key) __builtin_trap();
    if (m->value_len && !m->value) __builtin_trap();
    if (m->header_count && !m->headers) __builtin_trap();
}

/* ---- values -------------------------------------------------------------- */

static uint8_t data[BUF] = "fuzz-data-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOP";

/* A length: most often a real one (<= BUF), else one the library must refuse unread. */
static size_t length(input *in) {
    static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 4, (size_t)INT64_MAX + 1, (size_t)INT64_MAX,
                                  (size_t)1 << 40, 1048577, (size_t)UINT32_MAX + 1, (size_t)INT32_MAX + 1};
    uint8_t k = u8(in);
    if (k < 200) return k % (BUF + 1);
    return huge[k % (sizeof huge / sizeof huge[0])];
}

/* A count no array can have (more elements than the address space holds records): the
 * library must refuse it before reading. Smaller counts must match the real array. */
static size_t impossible_count(input *in) {
    static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 4, (size_t)INT64_MAX + 1, (size_t)INT64_MAX};
    return huge[pick(in, 4)];
}

/* A length in a packed buffer: mostly -1 (NULL) ... 3, sometimes one the library must refuse
 * before reading (below -1, or far above message.max.bytes). */
static int64_t packed_length(input *in) {
    static const int64_t odd[] = {-1, -2, INT64_MIN, INT64_MAX, (int64_t)1 << 40, 0};
    uint8_t k = u8(in);
    return k < 200 ? (k % 5) - 1 : odd[k % 6];
}

/* A data pointer: the real buffer (offset so that len bytes fit when len <= BUF) or NULL. */
static const void *pointer(input *in, size_t len) {
    if (u8(in) % 5 == 0) return NULL;
    if (len <= BUF) return data + (BUF - len);
    return data;
}

static const char *topic_name(input *in) {
    static const char *names[] = {"t", "t2", "orders", "a.b-c_d", "", "bad/name", "..", "x:y", "nope", "t"};
    return names[pick(in, sizeof names / sizeof names[0])];
}

static int64_t offset(input *in) {
    static const int64_t special[] = {0, 1, 2, -1, -2, INT64_MAX, INT64_MIN, INT64_MAX - 1, 1000000};
    uint8_t k = u8(in);
    if (k < 128) return special[k % (sizeof special / sizeof special[0])];
    return (int64_t)u64(in);
}

static int32_t partition(input *in) {
    static const int32_t special[] = {KOFKA_PARTITION_ANY, 0, 1, 2, 3, -2, INT32_MAX, INT32_MIN, 7};
    return special[pick(in, sizeof special / sizeof special[0])];
}

/* A config array of up to 4 pairs from a table of valid and invalid keys and values. */
typedef struct config { const char *kv[10]; } config;

static const char *const *make_config(input *in, config *c, int consumer) {
    static const char *pkeys[] = {"delivery.mode", "acks", "retries", "enable.idempotence", "transactional.id",
                                  "transaction.timeout.ms", "linger.ms", "batch.num.messages",
                                  "queue.buffering.max.messages", "delivery.timeout.ms", "retry.backoff.ms",
                                  "fault.seed", "ackz", "client.id"};
    /* (fault.*.loss.rate is left out: lossy sends retry with backoffs, which slows every run) */
    static const char *ckeys[] = {"group.id", "delivery.mode", "enable.auto.commit", "auto.offset.reset",
                                  "isolation.level", "session.timeout.ms", "max.poll.records",
                                  "partition.assignment.strategy", "group.idd", "client.id"};
    static const char *values[] = {"exactly-once", "at-least-once", "at-most-once", "all", "0", "1", "true",
                                   "false", "tx-1", "tx-2", "g1", "g2", "earliest", "latest", "none",
                                   "read_committed", "read_uncommitted", "range", "roundrobin", "0.5", "-1",
                                   "5", "500", "1000", "abc", "", "100"};
    uint8_t k = u8(in);
    if (k % 4 == 0) return NULL;
    int pairs = k % 5, n = 0;
    for (int i = 0; i < pairs; i++) {
        c->kv[n++] = consumer ? ckeys[pick(in, sizeof ckeys / sizeof ckeys[0])]
                              : pkeys[pick(in, sizeof pkeys / sizeof pkeys[0])];
        c->kv[n++] = values[pick(in, sizeof values / sizeof values[0])];
    }
    if (k & 0x80 && n > 0) n--; /* an odd-length array */
    c->kv[n] = NULL;
    return c->kv;
}

/* ---- handles ------------------------------------------------------------- */

typedef struct state {
    kofka_broker *b[MAX_H];
    kofka_producer *p[MAX_H];
    kofka_consumer *c[MAX_H];
    int b_open[MAX_H], p_open[MAX_H], c_open[MAX_H];
    kofka_message *kept[8]; /* messages kept for commit_message, freed later */
    int reports;
    kofka_lease lease;      /* the last lease granted (maybe to another producer, maybe used) */
} state;

/* A handle slot: open, closed (stale), or NULL; sometimes a pointer the library never returned. */
static void *any_handle(input *in, void **slots, state *st) {
    uint8_t k = u8(in);
    if (k % 16 == 15) return NULL;
    if (k % 16 == 14) return st;               /* never returned by the library */
    if (k % 16 == 13) return (void *)(uintptr_t)(0x4B46000000000000ull | u32(in));
    return slots[k % MAX_H];
}
#define BROKER(in, st) ((kofka_broker *)any_handle(in, (void **)(st)->b, st))
#define PRODUCER(in, st) ((kofka_producer *)any_handle(in, (void **)(st)->p, st))
#define CONSUMER(in, st) ((kofka_consumer *)any_handle(in, (void **)(st)->c, st))

static void on_delivery(kofka_producer *p, const char *topic, const kofka_record *r, void *mo, void *co) {
    (void)p; (void)mo;
    if (!topic || !r) __builtin_trap();
    if ((int)r->err < 0 || (int)r->err > KOFKA_ERR_PURGED) __builtin_trap();
    ((state *)co)->reports++;
}

static void fill_record(input *in, kofka_record *r, kofka_header *hs) {
    memset(r, 0, sizeof *r);
    r->partition = partition(in);
    r->key_len = length(in);
    r->key = pointer(in, r->key_len);
    r->value_len = length(in);
    r->value = pointer(in, r->value_len);
    r->timestamp_ms = (int64_t)(u8(in) % 3) * 1000;
    uint8_t h = u8(in);
    if (h % 4 == 0) {
        int n = 1 + h % 3;
        for (int i = 0; i < n; i++) {
            hs[i].name = (u8(in) % 7 == 0) ? NULL : "h";
            hs[i].value_len = length(in);
            hs[i].value = pointer(in, hs[i].value_len);
        }
        r->headers = (h & 0x40) ? NULL : hs;
        r->header_count = (h & 0x80) ? length(in) : (size_t)n;
    }
}

static void step(input *in, state *st) {
    config cfg;
    kofka_record recs[MAX_BATCH];
    kofka_header hs[MAX_BATCH][3];
    kofka_err e;
    int slot = pick(in, MAX_H);
    switch (u8(in) % 33) {
    case 0: { /* open a broker */
        if (st->b_open[slot]) break;
        const char *bcfg[] = {"num.partitions", "2", "message.max.bytes", "1048576", NULL};
        kofka_broker *b = NULL;
        e = kofka_broker_open(u8(in) % 8 ? "memory:" : "nope:", u8(in) % 2 ? bcfg : NULL, &b);
        check_err(e);
        if (e == KOFKA_OK) { st->b[slot] = b; st->b_open[slot] = 1; }
        break;
    }
    case 1: { /* close a broker (maybe again) */
        kofka_broker *b = BROKER(in, st);
        e = kofka_broker_close(b);
        check_err(e);
        for (int i = 0; i < MAX_H; i++) if (st->b[i] == b && e == KOFKA_OK) st->b_open[i] = 0;
        break;
    }
    case 2: check_err(kofka_topic_create(BROKER(in, st), topic_name(in), (int32_t)(u8(in) % 6) - 1)); break;
    case 3: {
        int32_t n = -7;
        check_err(kofka_topic_partitions(BROKER(in, st), topic_name(in), u8(in) % 8 ? &n : NULL));
        break;
    }
    case 4: {
        int64_t lo = -7, hi = -7;
        e = kofka_watermarks(BROKER(in, st), topic_name(in), partition(in), &lo, &hi);
        check_err(e);
        if (e == KOFKA_OK && (lo < 0 || hi < lo)) __builtin_trap();
        break;
    }
    case 5: { /* new producer */
        if (st->p_open[slot]) break;
        kofka_producer *p = NULL;
        e = kofka_producer_new(BROKER(in, st), make_config(in, &cfg, 0), &p);
        check_err(e);
        if (e == KOFKA_OK) {
            st->p[slot] = p; st->p_open[slot] = 1;
            if (u8(in) % 2) check_err(kofka_producer_set_delivery_cb(p, on_delivery, st));
        }
        break;
    }
    case 6: { /* close a producer (maybe again, maybe the wrong kind) */
        kofka_producer *p = PRODUCER(in, st);
        e = kofka_producer_close(p, 0);
        check_err(e);
        for (int i = 0; i < MAX_H; i++) if (st->p[i] == p) st->p_open[i] = 0;
        break;
    }
    case 7: {
        fill_record(in, &recs[0], hs[0]);
        e = kofka_send(PRODUCER(in, st), topic_name(in), u8(in) % 16 ? &recs[0] : NULL);
        check_err(e);
        break;
    }
    case 8: {
        size_t n = u8(in) % (MAX_BATCH + 1);
        for (size_t i = 0; i < n; i++) fill_record(in, &recs[i], hs[i]);
        uint8_t k = u8(in);
        size_t count = k % 16 == 0 ? impossible_count(in) : n;
        e = kofka_send_batch(PRODUCER(in, st), topic_name(in), n || count ? recs : NULL, count);
        check_err(e);
        if (count == n && e != KOFKA_ERR_INVALID_ARG && e != KOFKA_ERR_CLOSED)
            for (size_t i = 0; i < n; i++) check_err_code(recs[i].err);
        break;
    }
    case 9: {
        int64_t klens[MAX_BATCH], vlens[MAX_BATCH];
        size_t n = u8(in) % (MAX_BATCH + 1);
        for (size_t i = 0; i < n; i++) {
            klens[i] = packed_length(in);
            vlens[i] = packed_length(in);
        }
        /* The packed buffers hold 4 * MAX_BATCH >= the sum of every real length (<= 3 each). */
        int32_t parts[MAX_BATCH]; int64_t offs[MAX_BATCH]; kofka_err errs[MAX_BATCH];
        int keyed = u8(in) % 2;
        e = kofka_send_packed(PRODUCER(in, st), topic_name(in), partition(in), keyed ? data : NULL,
                              keyed ? klens : NULL, u8(in) % 6 ? data : NULL, vlens, n, parts, offs, errs);
        check_err(e);
        break;
    }
    case 10: {
        fill_record(in, &recs[0], hs[0]);
        check_err(kofka_produce(PRODUCER(in, st), topic_name(in), &recs[0], (void *)(uintptr_t)u8(in)));
        break;
    }
    case 11: {
        int n = kofka_producer_poll(PRODUCER(in, st), 0);
        if (n < -1) __builtin_trap();
        if (!kofka_last_error()) __builtin_trap();
        break;
    }
    case 12: check_err(kofka_flush(PRODUCER(in, st), u8(in) % 3)); break;
    case 13: check_err(kofka_init_transactions(PRODUCER(in, st), 100)); break;
    case 14: check_err(kofka_begin_transaction(PRODUCER(in, st))); break;
    case 15: check_err(kofka_commit_transaction(PRODUCER(in, st), 0)); break;
    case 16: check_err(kofka_abort_transaction(PRODUCER(in, st), 0)); break;
    case 17: check_err(kofka_send_offsets_to_transaction(PRODUCER(in, st), CONSUMER(in, st), 0)); break;
    case 18: {
        int r = kofka_txn_requires_abort(PRODUCER(in, st));
        if (r != 0 && r != 1) __builtin_trap();
        break;
    }
    case 19: { /* new consumer */
        if (st->c_open[slot]) break;
        kofka_consumer *c = NULL;
        e = kofka_consumer_new(BROKER(in, st), make_config(in, &cfg, 1), &c);
        check_err(e);
        if (e == KOFKA_OK) { st->c[slot] = c; st->c_open[slot] = 1; }
        break;
    }
    case 20: {
        const char *topics[3] = {topic_name(in), topic_name(in), topic_name(in)};
        uint8_t k = u8(in);
        size_t count = k % 8 == 0 ? length(in) : (size_t)(k % 4);
        if (count > 3 && count <= BUF) count = 3;
        check_err(kofka_subscribe(CONSUMER(in, st), k & 0x80 ? NULL : topics, count));
        break;
    }
    case 21: {
        int32_t parts[4] = {partition(in), partition(in), partition(in), partition(in)};
        uint8_t k = u8(in);
        size_t count = k % 8 == 0 ? length(in) : (size_t)(k % 5);
        if (count > 4 && count <= BUF) count = 4;
        check_err(kofka_assign(CONSUMER(in, st), topic_name(in), k & 0x80 ? NULL : parts, count));
        break;
    }
    case 22: {
        kofka_message *m = NULL;
        e = kofka_poll(CONSUMER(in, st), 0, &m);
        check_err(e);
        if (m) {
            check_message(m);
            int k = pick(in, 8);
            if (st->kept[k]) kofka_message_free(st->kept[k]);
            st->kept[k] = m;
        }
        break;
    }
    case 23: {
        static kofka_message *out[POLL_SLOTS];
        static const size_t maxes[] = {0, 1, 2, 7, 100, POLL_SLOTS, SIZE_MAX, (size_t)INT64_MAX + 1};
        size_t max = maxes[pick(in, sizeof maxes / sizeof maxes[0])];
        size_t n = 12345;
        e = kofka_poll_batch(CONSUMER(in, st), 0, out, max, &n);
        check_err(e);
        if (e == KOFKA_OK) {
            if (n > max || n > POLL_SLOTS) __builtin_trap();
            for (size_t i = 0; i < n; i++) { check_message(out[i]); kofka_message_free(out[i]); }
        }
        break;
    }
    case 24: check_err(kofka_commit(CONSUMER(in, st))); break;
    case 25: {
        kofka_message fake;
        memset(&fake, 0, sizeof fake);
        int k = pick(in, 8);
        const kofka_message *m = st->kept[k];
        if (!m || u8(in) % 2) {
            fake.topic = u8(in) % 8 ? topic_name(in) : NULL;
            fake.partition = partition(in);
            fake.offset = offset(in);
            m = u8(in) % 16 ? &fake : NULL;
        }
        check_err(kofka_commit_message(CONSUMER(in, st), m));
        break;
    }
    case 26: {
        int64_t off = -7;
        check_err(u8(in) % 2 ? kofka_position(CONSUMER(in, st), topic_name(in), partition(in), &off)
                             : kofka_committed(CONSUMER(in, st), topic_name(in), partition(in), &off));
        break;
    }
    case 27: check_err(kofka_seek(CONSUMER(in, st), topic_name(in), partition(in), offset(in))); break;
    case 28: check_err(kofka_seek_to_committed(CONSUMER(in, st))); break;
    case 29: { /* close or destroy a consumer (maybe again) */
        kofka_consumer *c = CONSUMER(in, st);
        if (u8(in) % 2) {
            check_err(kofka_consumer_close(c));
        } else {
            kofka_consumer_destroy(c);
            if (!kofka_last_error()) __builtin_trap();
        }
        for (int i = 0; i < MAX_H; i++) if (st->c[i] == c) st->c_open[i] = 0;
        break;
    }
    case 30: { /* lend, settling any count (the previous lend's, or more than was lent) */
        static kofka_message *out[POLL_SLOTS];
        static const size_t maxes[] = {0, 1, 2, 7, 100, POLL_SLOTS, SIZE_MAX, (size_t)INT64_MAX + 1};
        static const size_t settles[] = {0, 1, 2, 7, 500, SIZE_MAX, (size_t)INT64_MAX + 1};
        size_t max = maxes[pick(in, sizeof maxes / sizeof maxes[0])];
        size_t settle = settles[pick(in, sizeof settles / sizeof settles[0])];
        size_t n = 12345;
        uint64_t window = 7;
        uint8_t k = u8(in);
        e = kofka_poll_lend(CONSUMER(in, st), settle, 0, k % 8 ? out : NULL, max, k % 16 == 1 ? NULL : &n,
                            k % 2 ? &window : NULL);
        check_err(e);
        if (e == KOFKA_OK && k % 16 != 1) {
            if (n > max || n > POLL_SLOTS || (n && k % 8 == 0)) __builtin_trap();
            for (size_t i = 0; i < n; i++) { check_message(out[i]); kofka_message_free(out[i]); }
        }
        break;
    }
    case 31: { /* a lease: kept for a later packed handover */
        static const size_t maxes[] = {0, 1, 3, 512, SIZE_MAX};
        kofka_lease l;
        memset(&l, 0x5A, sizeof l);
        kofka_lease before = l;
        e = kofka_produce_lease(PRODUCER(in, st), topic_name(in), maxes[pick(in, 5)], u8(in) % 8 ? &l : NULL);
        check_err(e);
        if (e == KOFKA_OK) {
            if (l.credits < 1) __builtin_trap();
            st->lease = l;
        } else if (memcmp(&l, &before, sizeof l) != 0) {
            __builtin_trap();   /* untouched on failure */
        }
        break;
    }
    case 32: { /* a packed handover: the kept lease, a forged one, or none */
        int64_t klens[MAX_BATCH], vlens[MAX_BATCH];
        int32_t parts[MAX_BATCH];
        void *ops[MAX_BATCH];
        static const int32_t oddp[] = {-1, -2, INT32_MIN, INT32_MAX, 0, 1};
        size_t n = u8(in) % (MAX_BATCH + 1);
        for (size_t i = 0; i < n; i++) {
            klens[i] = packed_length(in);
            vlens[i] = packed_length(in);
            parts[i] = oddp[pick(in, 6)];
            ops[i] = (void *)(uintptr_t)u8(in);
        }
        kofka_lease forged = st->lease;
        uint8_t k = u8(in);
        if (k % 4 == 1) forged.credits = impossible_count(in);
        if (k % 4 == 2) forged.txn = (int64_t)u32(in);
        size_t count = k % 16 == 3 ? impossible_count(in) : n;
        int keyed = u8(in) % 2;
        e = kofka_produce_packed(PRODUCER(in, st), topic_name(in), k % 8 == 7 ? NULL : &forged,
                                 keyed ? data : NULL, keyed ? klens : NULL, u8(in) % 6 ? data : NULL, vlens,
                                 u8(in) % 2 ? parts : NULL, u8(in) % 2 ? ops : NULL, count);
        check_err(e);
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    input in = {bytes, size};
    state st;
    memset(&st, 0, sizeof st);
    /* Start with one broker and a topic so that short inputs reach producers and consumers. */
    if (kofka_broker_open("memory:", NULL, &st.b[0]) != KOFKA_OK) __builtin_trap();
    st.b_open[0] = 1;
    check_err(kofka_topic_create(st.b[0], "t", 3));
    for (int steps = 0; in.n > 0 && steps < 64; steps++) step(&in, &st);
    for (int i = 0; i < 8; i++) if (st.kept[i]) kofka_message_free(st.kept[i]);
    for (int i = 0; i < MAX_H; i++) {
        if (st.c_open[i]) kofka_consumer_destroy(st.c[i]);
        if (st.p_open[i]) check_err(kofka_producer_close(st.p[i], 0)), (void)0;
    }
    for (int i = 0; i < MAX_H; i++) if (st.b_open[i]) kofka_broker_close(st.b[i]);
    return 0;
}
