/*
 * test_groups.c — consumer groups share partitions and survive a dead member.
 *
 * On both backends, a 6-partition topic and two consumers of one group
 * (session.timeout.ms=500):
 *  - once both have joined, their partitions (seen through kofka_position,
 *    which fails for unassigned partitions) split the 6 with no overlap;
 *  - 600 records produced then are read exactly once between the two, each
 *    consumer only from its own partitions;
 *  - after one consumer is destroyed (as if its process died: no commit, no
 *    leave), the other, still polling, takes over: after the session timeout
 *    it reads the next 600 records on all 6 partitions.
 */
#include "check.h"

#define TOPIC "grp"
#define PARTITIONS 6
#define PER_ROUND 600

/* Bit mask of the partitions c currently owns. */
static int owned(kofka_consumer *c) {
    int mask = 0;
    for (int p = 0; p < PARTITIONS; p++) {
        int64_t pos;
        if (kofka_position(c, TOPIC, p, &pos) == KOFKA_OK) mask |= 1 << p;
    }
    return mask;
}

static void produce_round(kofka_broker *b, int round) {
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, NULL, &p))) return;
    kofka_record recs[PER_ROUND];
    char vals[PER_ROUND][16];
    for (int i = 0; i < PER_ROUND; i++) {
        int n = snprintf(vals[i], sizeof vals[i], "r%d-%03d", round, i);
        recs[i] = test_record(NULL, 0, vals[i], (size_t)n);
        recs[i].partition = i % PARTITIONS;
    }
    CHECK_OK(kofka_send_batch(p, TOPIC, recs, PER_ROUND));
    CHECK_OK(kofka_producer_close(p, 5000));
}

/* Record id in "rR-NNN" for the given round, or -1. */
static int parse(const kofka_message *m, int round) {
    char want[8];
    int n = snprintf(want, sizeof want, "r%d-", round);
    if (!m->value || m->value_len != (size_t)n + 3 || memcmp(m->value, want, (size_t)n) != 0) return -1;
    const char *d = (const char *)m->value + n;
    return (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
}

typedef struct member { kofka_consumer *c; int seen_parts; int records; } member;

/* Polls c once (up to 50 records); counts round's records into seen[]. */
static void poll_member(member *mb, int round, int *seen, int *foreign) {
    kofka_message *ms[50];
    size_t n = 0;
    if (!CHECK_OK(kofka_poll_batch(mb->c, 50, ms, 50, &n))) return;
    for (size_t j = 0; j < n; j++) {
        int id = parse(ms[j], round);
        if (id < 0) (*foreign)++;
        else {
            seen[id]++;
            mb->seen_parts |= 1 << ms[j]->partition;
            mb->records++;
            if (ms[j]->partition != id % PARTITIONS) (*foreign)++;
        }
        kofka_message_free(ms[j]);
    }
}

static void groups(const test_backend *be) {
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(b, TOPIC, PARTITIONS));
    const char *cfg[] = {"group.id", "g1", "session.timeout.ms", "500", "delivery.mode", "at-least-once", NULL};
    member A = {NULL, 0, 0}, B = {NULL, 0, 0};
    const char *topics[] = {TOPIC};
    if (!CHECK_OK(kofka_consumer_new(b, cfg, &A.c)) || !CHECK_OK(kofka_consumer_new(b, cfg, &B.c))) goto out;
    CHECK_OK(kofka_subscribe(A.c, topics, 1));
    CHECK_OK(kofka_subscribe(B.c, topics, 1));

    /* Let the group settle: both own partitions, disjoint, covering all 6. */
    int a = 0, bm = 0, seen[PER_ROUND] = {0}, foreign = 0;
    int64_t deadline = test_now_ms() + 5000;
    while (test_now_ms() < deadline) {
        poll_member(&A, 1, seen, &foreign);
        poll_member(&B, 1, seen, &foreign);
        a = owned(A.c);
        bm = owned(B.c);
        if (a && bm && !(a & bm) && (a | bm) == (1 << PARTITIONS) - 1) break;
    }
    printf("  assignment: A owns 0x%02x, B owns 0x%02x\n", a, bm);
    CHECK(a != 0);
    CHECK(bm != 0);
    CHECK_EQ(0, a & bm);
    CHECK_EQ((1 << PARTITIONS) - 1, a | bm);

    /* Round 1: every record once, each member only from its partitions. */
    produce_round(b, 1);
    A.seen_parts = B.seen_parts = 0;
    int total = 0;
    deadline = test_now_ms() + 10000;
    while (test_now_ms() < deadline) {
        poll_member(&A, 1, seen, &foreign);
        poll_member(&B, 1, seen, &foreign);
        total = A.records + B.records;
        if (total >= PER_ROUND) {
            poll_member(&A, 1, seen, &foreign); /* anything extra would show up as a duplicate */
            poll_member(&B, 1, seen, &foreign);
            break;
        }
    }
    int missing = 0, dup = 0;
    for (int i = 0; i < PER_ROUND; i++) { missing += seen[i] == 0; dup += seen[i] > 1; }
    printf("  round 1: A read %d records, B read %d (partitions A 0x%02x, B 0x%02x)\n", A.records, B.records,
           A.seen_parts, B.seen_parts);
    CHECK_EQ(0, missing);
    CHECK_EQ(0, dup);
    CHECK_EQ(0, foreign);
    CHECK_EQ(0, A.seen_parts & B.seen_parts);
    CHECK_EQ((1 << PARTITIONS) - 1, A.seen_parts | B.seen_parts);
    CHECK(A.records > 0 && B.records > 0);
    CHECK_OK(kofka_commit(A.c));
    CHECK_OK(kofka_commit(B.c));

    /* B dies. A keeps polling; after session.timeout.ms it owns all 6. */
    kofka_consumer_destroy(B.c);
    B.c = NULL;
    int64_t died = test_now_ms();
    /* Right after the death, B's partitions are not yet A's: the session
     * (500 ms) has not expired, whatever the heartbeat interval. */
    poll_member(&A, 1, seen, &foreign);
    int early = owned(A.c);
    int64_t early_ms = test_now_ms() - died;
    if (early_ms < 200) CHECK_EQ(a, early);
    else printf("  (early ownership check skipped: %lld ms passed)\n", (long long)early_ms);
    produce_round(b, 2);
    memset(seen, 0, sizeof seen);
    A.seen_parts = 0;
    A.records = 0;
    foreign = 0;
    deadline = test_now_ms() + 10000;
    int got2 = 0;
    while (test_now_ms() < deadline) {
        poll_member(&A, 2, seen, &foreign);
        got2 = 0;
        for (int i = 0; i < PER_ROUND; i++) got2 += seen[i] > 0;
        if (got2 == PER_ROUND) break;
    }
    int64_t took = test_now_ms() - died;
    printf("  round 2: A read %d distinct of %d records on partitions 0x%02x, %lld ms after B died\n", got2, PER_ROUND,
           A.seen_parts, (long long)took);
    CHECK_EQ(PER_ROUND, got2);
    CHECK_EQ((1 << PARTITIONS) - 1, A.seen_parts);
    CHECK_EQ((1 << PARTITIONS) - 1, owned(A.c));
    /* B's partitions moved only when its session expired: 500 ms after its last
     * heartbeat, which a heartbeat interval of session/3 can place ~170 ms
     * (plus one 50 ms poll) before the death. */
    CHECK(took >= 250);
out:
    CHECK_OK(kofka_consumer_close(A.c));
    if (B.c) CHECK_OK(kofka_consumer_close(B.c));
    CHECK_OK(kofka_broker_close(b));
}

int main(void) {
    check_init();
    printf("test_groups: two members split 6 partitions; a dead member's partitions move\n");
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "groups");
        groups(&be);
        test_backend_teardown(&be);
    }
    return check_done();
}
