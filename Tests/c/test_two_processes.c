/*
 * test_two_processes.c — two processes sharing one SQLite file are one broker.
 *
 * The parent creates a 1-partition topic and forks. The child opens the same
 * file and produces 500 records one by one with small sleeps; the parent
 * consumes them with a blocking kofka_poll as they arrive. Proven:
 *  - the parent receives exactly the 500 values, in order, at offsets 0..499;
 *  - it streams: the first record arrives while the child is still producing
 *    (the child signals "finished" through a pipe only after its last send);
 *  - the child's sends all succeed at dense offsets; it exits with status 0.
 */
#include "check.h"
#include <poll.h>
#include <sys/wait.h>

#define TOPIC "shared"
#define COUNT 500

/* The child: returns its exit status (0 = every send succeeded at offset i). */
static int child_produce(const char *storage, int done_fd) {
    kofka_broker *b = NULL;
    kofka_producer *p = NULL;
    int errors = 0;
    if (kofka_broker_open(storage, NULL, &b) != KOFKA_OK) {
        fprintf(stderr, "child: open: %s\n", kofka_last_error());
        return 2;
    }
    if (kofka_producer_new(b, NULL, &p) != KOFKA_OK) {
        fprintf(stderr, "child: producer: %s\n", kofka_last_error());
        kofka_broker_close(b);
        return 3;
    }
    for (int i = 0; i < COUNT; i++) {
        char v[32];
        int n = snprintf(v, sizeof v, "rec-%03d", i);
        kofka_record r = test_record(NULL, 0, v, (size_t)n);
        r.partition = 0;
        kofka_err e = kofka_send(p, TOPIC, &r);
        if (e != KOFKA_OK || r.offset != i) {
            if (errors++ < 5)
                fprintf(stderr, "child: send %d: %s offset %lld: %s\n", i, kofka_err_name(e), (long long)r.offset,
                        kofka_last_error());
        }
        test_sleep_ms(1 + (i % 3));
    }
    if (kofka_producer_close(p, 5000) != KOFKA_OK) errors++;
    if (kofka_broker_close(b) != KOFKA_OK) errors++;
    ssize_t w = write(done_fd, "x", 1); /* finished */
    (void)w;
    return errors ? 1 : 0;
}

static int child_finished(int fd) {
    struct pollfd pfd = {fd, POLLIN, 0};
    return poll(&pfd, 1, 0) > 0;
}

int main(void) {
    check_init();
    printf("test_two_processes: a consumer sees another process's records as they are written\n");
    test_backend be;
    test_backend_setup(&be, 1, "twoproc");

    /* Create the topic, then close everything before fork(): the child
     * inherits no open database connection and no library threads' locks. */
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be.storage, NULL, &b))) return check_done();
    CHECK_OK(kofka_topic_create(b, TOPIC, 1));
    CHECK_OK(kofka_broker_close(b));
    b = NULL;

    int fds[2];
    if (!CHECK_EQ(0, pipe(fds))) return check_done();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        _exit(child_produce(be.storage, fds[1]));
    }
    close(fds[1]);
    CHECK(pid > 0);

    kofka_consumer *c = NULL;
    kofka_message *m = NULL;
    if (!CHECK_OK(kofka_broker_open(be.storage, NULL, &b))) return check_done();
    if (!CHECK_OK(kofka_consumer_new(b, NULL, &c))) { kofka_broker_close(b); return check_done(); }
    int32_t p0[] = {0};
    CHECK_OK(kofka_assign(c, TOPIC, p0, 1));

    int got = 0, wrong = 0, before_end = 0, first_before_end = -1;
    int64_t start = test_now_ms(), first_ms = -1;
    while (got < COUNT) {
        m = NULL;
        kofka_err e = kofka_poll(c, 10000, &m); /* blocks until a record arrives */
        if (!CHECK_OK(e)) break;
        if (!m) {
            printf("  nothing for 10 s after %d records\n", got);
            CHECK(m != NULL);
            break;
        }
        int finished = child_finished(fds[0]);
        if (got == 0) {
            first_before_end = !finished;
            first_ms = test_now_ms() - start;
        }
        if (!finished) before_end++;
        char want[32];
        int n = snprintf(want, sizeof want, "rec-%03d", got);
        if (m->offset != got || m->partition != 0 || m->value_len != (size_t)n || !m->value ||
            memcmp(m->value, want, (size_t)n) != 0) {
            if (wrong++ < 5)
                printf("  record #%d: offset %lld, value %.*s\n", got, (long long)m->offset, (int)m->value_len,
                       m->value ? (const char *)m->value : "(null)");
        }
        got++;
        kofka_message_free(m);
    }
    printf("  received %d records; first after %lld ms; %d arrived before the child finished\n", got,
           (long long)first_ms, before_end);
    CHECK_EQ(COUNT, got);
    CHECK_EQ(0, wrong);
    CHECK_EQ(1, first_before_end); /* it did not wait for the end */
    CHECK(before_end >= COUNT / 10);

    int status = 0;
    CHECK_EQ(pid, waitpid(pid, &status, 0));
    CHECK(WIFEXITED(status));
    CHECK_EQ(0, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    close(fds[0]);

    /* Nothing beyond the 500. */
    m = NULL;
    CHECK_OK(kofka_poll(c, 200, &m));
    CHECK(m == NULL);
    if (m) kofka_message_free(m);
    int64_t lo = -1, hi = -1;
    CHECK_OK(kofka_watermarks(b, TOPIC, 0, &lo, &hi));
    CHECK_EQ(0, lo);
    CHECK_EQ(COUNT, hi);
    CHECK_OK(kofka_consumer_close(c));
    CHECK_OK(kofka_broker_close(b));
    test_backend_teardown(&be);
    return check_done();
}
