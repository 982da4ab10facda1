/*
 * test_lmdb.c — the LMDB storage plugin from C, as the header promises it:
 * kofka_broker_open("lmdb:DIR", NULL, &b) works with no configuration (the
 * library finds libkofka_lmdb.so beside libkofka.so), and several processes
 * writing one store at once are one broker.
 *
 * The parent creates a 2-partition topic, closes, and forks 3 children that
 * each send 150 keyed records one by one (exactly-once: idempotent) while it
 * consumes with kofka_poll. Proven:
 *  - the parent receives exactly the 450 values, each once;
 *  - offsets are dense per partition (high watermarks add up to 450, the
 *    records read per partition are 0..high-1 in order);
 *  - every child's sends succeed (exit status 0);
 *  - a reopened store has the same watermarks; a config key under "lmdb."
 *    the plugin does not know is KOFKA_ERR_INVALID_CONFIG naming the key.
 * Skipped (a passing check that says so) when the plugin was built without LMDB.
 */
#include "check.h"
#include <sys/stat.h>
#include <sys/wait.h>

#define TOPIC "lmdb-shared"
#define CHILDREN 3
#define EACH 150

static int child_produce(const char *storage, int id) {
    kofka_broker *b = NULL;
    kofka_producer *p = NULL;
    const char *cfg[] = {"delivery.mode", "exactly-once", NULL};
    int errors = 0;
    if (kofka_broker_open(storage, NULL, &b) != KOFKA_OK) {
        fprintf(stderr, "child %d: open: %s\n", id, kofka_last_error());
        return 2;
    }
    if (kofka_producer_new(b, cfg, &p) != KOFKA_OK) {
        fprintf(stderr, "child %d: producer: %s\n", id, kofka_last_error());
        kofka_broker_close(b);
        return 3;
    }
    for (int i = 0; i < EACH; i++) {
        char k[16], v[32];
        int kn = snprintf(k, sizeof k, "k%d", i % 17);
        int vn = snprintf(v, sizeof v, "c%d-%03d", id, i);
        kofka_record r = test_record(k, (size_t)kn, v, (size_t)vn);
        kofka_err e = kofka_send(p, TOPIC, &r);
        if (e != KOFKA_OK && errors++ < 5)
            fprintf(stderr, "child %d: send %d: %s: %s\n", id, i, kofka_err_name(e), kofka_last_error());
    }
    if (kofka_producer_close(p, 5000) != KOFKA_OK) errors++;
    if (kofka_broker_close(b) != KOFKA_OK) errors++;
    return errors ? 1 : 0;
}

static void remove_store(const char *dir) {
    char path[600];
    const char *files[] = {"data.mdb", "lock.mdb", "kofka.lock"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void) {
    check_init();
    printf("test_lmdb: lmdb:DIR opens with no configuration; three processes writing one store are one broker\n");
    check_context = "lmdb:";
    char dir[256], storage[300];
    snprintf(dir, sizeof dir, "/tmp/kofka-ctest-lmdb-%ld", (long)getpid());
    remove_store(dir);
    snprintf(storage, sizeof storage, "lmdb:%s", dir);

    kofka_broker *b = NULL;
    kofka_err e = kofka_broker_open(storage, NULL, &b);
    if (e != KOFKA_OK && strstr(kofka_last_error(), "built without LMDB")) {
        printf("  SKIPPED: %s\n", kofka_last_error());
        CHECK(1);
        return check_done();
    }
    if (!CHECK_OK(e)) return check_done();
    CHECK_OK(kofka_topic_create(b, TOPIC, 2));
    CHECK_OK(kofka_broker_close(b));
    b = NULL;

    fflush(stdout);
    fflush(stderr);
    pid_t pids[CHILDREN];
    for (int c = 0; c < CHILDREN; c++) {
        pids[c] = fork();
        if (pids[c] == 0) _exit(child_produce(storage, c));
        CHECK(pids[c] > 0);
    }

    kofka_consumer *c = NULL;
    if (!CHECK_OK(kofka_broker_open(storage, NULL, &b))) return check_done();
    if (!CHECK_OK(kofka_consumer_new(b, NULL, &c))) { kofka_broker_close(b); return check_done(); }
    int32_t parts[] = {0, 1};
    CHECK_OK(kofka_assign(c, TOPIC, parts, 2));
    static unsigned char seen[CHILDREN][EACH];
    int got = 0, dup = 0, bad = 0;
    int64_t next_offset[2] = {0, 0};
    while (got < CHILDREN * EACH) {
        kofka_message *m = NULL;
        if (!CHECK_OK(kofka_poll(c, 10000, &m))) break;
        if (!m) {
            printf("  nothing for 10 s after %d records\n", got);
            CHECK(m != NULL);
            break;
        }
        int id = -1, i = -1;
        char v[32] = {0};
        memcpy(v, m->value, m->value_len < sizeof v - 1 ? m->value_len : sizeof v - 1);
        if (sscanf(v, "c%d-%d", &id, &i) != 2 || id < 0 || id >= CHILDREN || i < 0 || i >= EACH) bad++;
        else if (seen[id][i]++) dup++;
        if (m->partition < 0 || m->partition > 1 || m->offset != next_offset[m->partition]) bad++;
        else next_offset[m->partition]++;
        got++;
        kofka_message_free(m);
    }
    printf("  received %d records (%d duplicated, %d unexpected or out of order)\n", got, dup, bad);
    CHECK_EQ(CHILDREN * EACH, got);
    CHECK_EQ(0, dup);
    CHECK_EQ(0, bad);
    for (int k = 0; k < CHILDREN; k++) {
        int status = 0;
        CHECK_EQ(pids[k], waitpid(pids[k], &status, 0));
        CHECK_EQ(0, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    }
    int64_t lo0 = -1, hi0 = -1, lo1 = -1, hi1 = -1;
    CHECK_OK(kofka_watermarks(b, TOPIC, 0, &lo0, &hi0));
    CHECK_OK(kofka_watermarks(b, TOPIC, 1, &lo1, &hi1));
    CHECK_EQ(CHILDREN * EACH, hi0 + hi1);
    CHECK_EQ(hi0, next_offset[0]);
    CHECK_EQ(hi1, next_offset[1]);
    kofka_consumer_destroy(c);
    CHECK_OK(kofka_broker_close(b));

    /* Reopened: the same log. A key under the plugin's name it does not know is refused. */
    b = NULL;
    if (CHECK_OK(kofka_broker_open(storage, NULL, &b))) {
        int64_t lo = -1, hi = -1;
        CHECK_OK(kofka_watermarks(b, TOPIC, 0, &lo, &hi));
        CHECK_EQ(hi0, hi);
        CHECK_OK(kofka_broker_close(b));
    }
    const char *bad_cfg[] = {"lmdb.no.such.key", "1", NULL};
    b = NULL;
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_broker_open(storage, bad_cfg, &b));
    CHECK_CONTAINS(kofka_last_error(), "lmdb.no.such.key");
    CHECK(b == NULL);
    remove_store(dir);
    return check_done();
}
