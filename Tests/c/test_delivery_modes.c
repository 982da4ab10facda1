/*
 * test_delivery_modes.c — each delivery mode keeps its promise on a lossy link.
 *
 * 1,000 records with unique ids are sent one by one through a producer whose
 * link loses 20% of requests and 20% of acknowledgements
 * (fault.request.loss.rate=0.2, fault.ack.loss.rate=0.2, fault.seed=7,
 * retry.backoff.ms=0), then the partition is read back and counted:
 *   at-most-once   no duplicates; about 20% lost (100..300 of 1,000);
 *   at-least-once  none lost; duplicates > 0 (lost acks were retried);
 *   exactly-once   none lost, none duplicated, in order.
 * On both backends.
 */
#include "check.h"

#define COUNT 1000

typedef struct tally { int unique, lost, duplicates, out_of_order, foreign, send_errors; } tally;

/* The id in a value "id-NNNN", or -1. */
static int parse_id(const kofka_message *m) {
    if (m->value_len != 7 || !m->value || memcmp(m->value, "id-", 3) != 0) return -1;
    const char *d = (const char *)m->value + 3;
    int id = 0;
    for (int k = 0; k < 4; k++) {
        if (d[k] < '0' || d[k] > '9') return -1;
        id = id * 10 + (d[k] - '0');
    }
    return id;
}

static tally run_mode(kofka_broker *b, const char *mode) {
    tally t = {0, 0, 0, 0, 0, 0};
    char topic[64];
    snprintf(topic, sizeof topic, "modes-%s", mode);
    CHECK_OK(kofka_topic_create(b, topic, 1));
    const char *cfg[] = {"delivery.mode", mode,
                         "fault.request.loss.rate", "0.2",
                         "fault.ack.loss.rate", "0.2",
                         "fault.seed", "7",
                         "retry.backoff.ms", "0",
                         NULL};
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, cfg, &p))) return t;
    int at_most_once = strcmp(mode, "at-most-once") == 0;
    for (int i = 0; i < COUNT; i++) {
        char v[16];
        int n = snprintf(v, sizeof v, "id-%04d", i);
        kofka_record r = test_record(NULL, 0, v, (size_t)n);
        kofka_err e = kofka_send(p, topic, &r);
        if (at_most_once ? (e != KOFKA_OK && e != KOFKA_ERR_TIMED_OUT) : e != KOFKA_OK) {
            if (t.send_errors++ < 3) printf("    %s send %d: %s: %s\n", mode, i, kofka_err_name(e), kofka_last_error());
        }
    }
    CHECK_OK(kofka_producer_close(p, 5000));

    int64_t lo = 0, hi = 0;
    CHECK_OK(kofka_watermarks(b, topic, 0, &lo, &hi));
    kofka_consumer *c = NULL;
    const char *ccfg[] = {"isolation.level", "read_uncommitted", NULL};
    if (!CHECK_OK(kofka_consumer_new(b, ccfg, &c))) return t;
    int32_t p0[] = {0};
    CHECK_OK(kofka_assign(c, topic, p0, 1));
    static int seen[COUNT];
    memset(seen, 0, sizeof seen);
    int read = 0, last_first = -1;
    int64_t deadline = test_now_ms() + 15000;
    while (read < hi && test_now_ms() < deadline) {
        kofka_message *ms[500];
        size_t n = 0;
        if (!CHECK_OK(kofka_poll_batch(c, 1000, ms, 500, &n))) break;
        if (n == 0) break;
        for (size_t j = 0; j < n; j++) {
            int id = parse_id(ms[j]);
            if (id < 0 || id >= COUNT) { t.foreign++; }
            else {
                if (seen[id]++) t.duplicates++;
                else {
                    if (id < last_first) t.out_of_order++;
                    last_first = id;
                }
            }
            read++;
            kofka_message_free(ms[j]);
        }
    }
    CHECK_EQ(hi, read);
    CHECK_OK(kofka_consumer_close(c));
    for (int i = 0; i < COUNT; i++) {
        if (seen[i]) t.unique++;
        else t.lost++;
    }
    printf("  %-14s sent %d: stored %lld, unique %d, lost %d, duplicates %d, out of order %d, send errors %d\n", mode,
           COUNT, (long long)hi, t.unique, t.lost, t.duplicates, t.out_of_order, t.send_errors);
    CHECK_EQ(0, t.foreign);
    return t;
}

static void modes(const test_backend *be) {
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, NULL, &b))) return;

    tally amo = run_mode(b, "at-most-once");
    CHECK_EQ(0, amo.duplicates);
    CHECK(amo.lost >= 100 && amo.lost <= 300); /* ~20% of requests were lost, never retried */
    CHECK_EQ(0, amo.send_errors);

    tally alo = run_mode(b, "at-least-once");
    CHECK_EQ(0, alo.lost);
    CHECK(alo.duplicates > 0); /* lost acknowledgements were retried */
    CHECK_EQ(0, alo.send_errors);

    tally eos = run_mode(b, "exactly-once");
    CHECK_EQ(0, eos.lost);
    CHECK_EQ(0, eos.duplicates);
    CHECK_EQ(0, eos.out_of_order);
    CHECK_EQ(COUNT, eos.unique);
    CHECK_EQ(0, eos.send_errors);

    CHECK_OK(kofka_broker_close(b));
}

int main(void) {
    check_init();
    printf("test_delivery_modes: loss and duplicates per mode under 20%% request and ack loss\n");
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "modes");
        modes(&be);
        test_backend_teardown(&be);
    }
    return check_done();
}
