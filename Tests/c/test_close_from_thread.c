/*
 * test_close_from_thread.c — a kofka_poll blocked forever (timeout -1) on one
 * thread never holds up another thread:
 *  - kofka_commit, kofka_position, kofka_committed and kofka_seek from another
 *    thread each return within 1 s while the poll stays blocked;
 *  - kofka_consumer_close from another thread returns within 1 s, and the
 *    blocked poll then returns KOFKA_OK with no message;
 *  - the same for kofka_consumer_destroy;
 *  - the poll's kofka_poll_batch form behaves the same.
 *
 * Each scenario runs in a child process with a watchdog: a call that hangs
 * fails its check and the child is killed after a few seconds, so a hang
 * cannot stop the suite. (Depends on the core's Consumer not holding its lock
 * while a poll waits; until it does, these checks time out.)
 */
#include "check.h"
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define RETURN_WITHIN_MS 1000
#define WATCHDOG_MS 8000  /* a scenario that takes longer is hung: killed, one failure (PostgreSQL on a loaded machine needs seconds) */

typedef struct poller {
    kofka_consumer *c;
    int batch;                 /* use kofka_poll_batch */
    volatile int returned;     /* the poll returned */
    kofka_err err;
    int got_message;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} poller;

static void *poll_forever(void *arg) {
    poller *p = arg;
    kofka_err e;
    int got = 0;
    if (p->batch) {
        kofka_message *ms[8];
        size_t n = 0;
        e = kofka_poll_batch(p->c, -1, ms, 8, &n);
        got = n > 0;
        for (size_t i = 0; i < n; i++) kofka_message_free(ms[i]);
    } else {
        kofka_message *m = NULL;
        e = kofka_poll(p->c, -1, &m);
        got = m != NULL;
        if (m) kofka_message_free(m);
    }
    pthread_mutex_lock(&p->mu);
    p->err = e;
    p->got_message = got;
    p->returned = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Waits up to ms for the poll to return; 1 if it did. */
static int wait_poll(poller *p, long ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
    pthread_mutex_lock(&p->mu);
    while (!p->returned) {
        if (pthread_cond_timedwait(&p->cv, &p->mu, &until) != 0) break;
    }
    int r = p->returned;
    pthread_mutex_unlock(&p->mu);
    return r;
}

typedef enum action { COMMIT, POSITION, COMMITTED, SEEK, CLOSE, DESTROY } action;
static const char *action_name[] = {"kofka_commit", "kofka_position", "kofka_committed", "kofka_seek",
                                    "kofka_consumer_close", "kofka_consumer_destroy"};

/* One scenario, in this (child) process: a consumer with nothing to read, a poll blocked
 * forever on another thread, then `act` from this thread. */
static void scenario(const char *storage, action act, int batch) {
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(storage, NULL, &b))) return;
    kofka_topic_create(b, "t", 1);
    const char *cfg[] = {"group.id", "blocked", NULL};
    poller p;
    memset(&p, 0, sizeof p);
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    p.batch = batch;
    if (!CHECK_OK(kofka_consumer_new(b, cfg, &p.c))) return;
    int32_t parts[] = {0};
    CHECK_OK(kofka_assign(p.c, "t", parts, 1));
    pthread_t th;
    pthread_create(&th, NULL, poll_forever, &p);
    test_sleep_ms(200); /* let the poll block */
    CHECK(!p.returned);

    printf("    calling %s from another thread\n", action_name[act]);
    fflush(stdout);
    int64_t t0 = test_now_ms();
    int64_t off = -7;
    switch (act) {
    case COMMIT: CHECK_OK(kofka_commit(p.c)); break;
    case POSITION: CHECK_OK(kofka_position(p.c, "t", 0, &off)); break;
    case COMMITTED: CHECK_OK(kofka_committed(p.c, "t", 0, &off)); break;
    case SEEK: CHECK_OK(kofka_seek(p.c, "t", 0, 0)); break;
    case CLOSE: CHECK_OK(kofka_consumer_close(p.c)); break;
    case DESTROY: kofka_consumer_destroy(p.c); CHECK_STR_EQ("", kofka_last_error()); break;
    }
    int64_t took = test_now_ms() - t0;
    if (!CHECK(took < RETURN_WITHIN_MS)) printf("    %s took %lld ms\n", action_name[act], (long long)took);

    if (act == CLOSE || act == DESTROY) {
        /* The blocked poll returns, with no message and KOFKA_OK, as soon as the consumer is closed. */
        CHECK(wait_poll(&p, RETURN_WITHIN_MS));
        CHECK_ERR(KOFKA_OK, p.err);
        CHECK_EQ(0, p.got_message);
        pthread_join(th, NULL);
    } else {
        CHECK(!p.returned); /* still blocked: nothing was written */
        /* A record wakes it. */
        kofka_producer *pr = NULL;
        if (CHECK_OK(kofka_producer_new(b, NULL, &pr))) {
            kofka_record r = test_record(NULL, 0, "wake", 4);
            CHECK_OK(kofka_send(pr, "t", &r));
            CHECK_OK(kofka_producer_close(pr, 1000));
        }
        CHECK(wait_poll(&p, 2000));
        CHECK_OK(p.err);
        CHECK_EQ(1, p.got_message);
        pthread_join(th, NULL);
        CHECK_OK(kofka_consumer_close(p.c));
    }
    CHECK_OK(kofka_broker_close(b));
}

/* Runs a scenario in a child process; a child that hangs is killed and counted as a failure. */
static void run_isolated(const test_backend *be, action act, int batch) {
    printf("  %s while %s(-1) is blocked\n", action_name[act], batch ? "kofka_poll_batch" : "kofka_poll");
    fflush(stdout);
    int fds[2];
    if (!CHECK_EQ(0, pipe(fds))) return;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        if (getppid() == 1) _exit(1);
        alarm(0);
        check_passed = check_failed = 0;
        scenario(be->storage, act, batch);
        int tally[2] = {check_passed, check_failed};
        ssize_t w = write(fds[1], tally, sizeof tally);
        (void)w;
        fflush(stdout);
        _exit(0);
    }
    close(fds[1]);
    int status = 0, done = 0;
    int64_t deadline = test_now_ms() + WATCHDOG_MS;
    while (test_now_ms() < deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid) { done = 1; break; }
        test_sleep_ms(20);
    }
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    int tally[2] = {0, 0};
    ssize_t got = read(fds[0], tally, sizeof tally);
    close(fds[0]);
    check_passed += got == (ssize_t)sizeof tally ? tally[0] : 0;
    check_failed += got == (ssize_t)sizeof tally ? tally[1] : 0;
    if (!CHECK(done && WIFEXITED(status) && got == (ssize_t)sizeof tally))
        printf("    the scenario %s: a call stayed blocked behind the poll\n", done ? "crashed" : "hung and was killed");
}

int main(void) {
    check_init();
    alarm(3 * 12 * WATCHDOG_MS / 1000 + 10); /* every scenario may hang to its watchdog */
    printf("test_close_from_thread: a poll blocked forever never holds up commit, position or close on another thread\n");
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "closethread");
        for (int act = COMMIT; act <= DESTROY; act++) {
            if (act == COMMITTED && i >= 1) continue; /* reads storage only: once is enough */
            test_backend_reset(&be);
            run_isolated(&be, (action)act, 0);
        }
        if (i == 0) run_isolated(&be, CLOSE, 1);
        test_backend_teardown(&be);
    }
    return check_done();
}
