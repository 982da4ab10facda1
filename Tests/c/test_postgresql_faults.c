/*
 * test_postgresql_faults.c — what a network and a server do to the PostgreSQL storage, and what
 * the plugin makes of it (skipped when KOFKA_PG_URL is not set):
 *
 *  - sessions terminated while idle (pg_terminate_backend): the next calls reconnect by
 *    themselves, no error reaches the application;
 *  - sessions terminated again and again during a produce loop: every record acknowledged
 *    once, none lost, none duplicated (idempotence absorbs the retries);
 *  - the answer to COMMIT lost on the way back (a TCP proxy cuts the connection right after
 *    forwarding COMMIT): the plugin asks a new session for the transaction's fate and answers
 *    KOFKA_OK; cut before the server got it: nothing written, KOFKA_ERR_BUSY; and when the
 *    server cannot be reached past postgresql.lock.timeout.ms: KOFKA_ERR_TIMED_OUT (outcome
 *    unknown) — and an idempotent producer's retry is acknowledged with the original offset;
 *  - the server restarted (scripts/pg.sh restart) during a produce loop with a consumer
 *    polling: 0 acknowledged records lost, 0 duplicates, the consumer goes on.
 */
#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

static kofka_err open_broker(const char *storage, const char *const *config, kofka_broker **b) {
    kofka_err rc = kofka_broker_open(storage, config, b);
    if (rc != KOFKA_OK) printf("    open: %s\n", kofka_last_error());
    return rc;
}

/* Terminates every Kofka session on the test database; returns how many. */
static int terminate_kofka_sessions(void) {
    char out[64];
    if (test_pg_exec("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                     "WHERE application_name = 'kofka' AND datname = current_database()", out, sizeof out) != 0)
        return -1;
    return atoi(out);
}

/* Reads every record of every partition from the start; counts each value "id-N" (N < max). */
static int read_ids(kofka_broker *b, const char *topic, int32_t partitions, int *count, int max) {
    kofka_consumer *c = NULL;
    if (!CHECK_OK(kofka_consumer_new(b, NULL, &c))) return 0;
    for (int32_t p = 0; p < partitions; p++) CHECK_OK(kofka_assign(c, topic, &p, 1));
    int total = 0;
    for (;;) {
        kofka_message *msgs[500];
        size_t got = 0;
        if (kofka_poll_batch(c, 300, msgs, 500, &got) != KOFKA_OK || got == 0) break;
        for (size_t i = 0; i < got; i++) {
            char v[32] = {0};
            memcpy(v, msgs[i]->value, msgs[i]->value_len < 31 ? msgs[i]->value_len : 31);
            int id = -1;
            if (sscanf(v, "id-%d", &id) == 1 && id >= 0 && id < max) count[id]++;
            total++;
            kofka_message_free(msgs[i]);
        }
    }
    kofka_consumer_destroy(c);
    return total;
}

static kofka_err send_id(kofka_producer *p, const char *topic, int id, int64_t *offset) {
    char v[32];
    int n = snprintf(v, sizeof v, "id-%d", id);
    kofka_record r = test_record(NULL, 0, v, (size_t)n);
    r.partition = 0;
    kofka_err rc = kofka_send(p, topic, &r);
    if (offset) *offset = r.offset;
    return rc;
}

/* Checks what storage holds against what was acknowledged. */
static void check_acknowledged(kofka_broker *b, const char *topic, const int *acked, int n, const char *what) {
    int *count = calloc((size_t)n, sizeof *count);
    int total = read_ids(b, topic, 1, count, n);
    int lost = 0, dups = 0, acks = 0;
    for (int i = 0; i < n; i++) {
        if (acked[i]) acks++;
        if (acked[i] && count[i] == 0) lost++;
        if (count[i] > 1) dups += count[i] - 1;
    }
    printf("    %s: %d acknowledged of %d, %d stored; acknowledged but lost: %d, duplicated: %d\n", what, acks, n, total, lost, dups);
    CHECK_EQ(0, lost);
    CHECK_EQ(0, dups);
    free(count);
}

/* ---- sessions terminated ------------------------------------------------------------ */

static void idle_sessions_terminated_between_calls_are_replaced_unseen(void) {
    printf("  sessions terminated while idle: the next calls reconnect by themselves\n");
    test_backend be;
    test_backend_setup(&be, 2, "idlekill");
    kofka_broker *b = NULL;
    if (!CHECK_OK(open_broker(be.storage, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(b, "t", 1));
    kofka_producer *p = NULL;
    const char *pcfg[] = {"retries", "0", NULL};   /* an error would show: no retry hides it */
    CHECK_OK(kofka_producer_new(b, pcfg, &p));
    kofka_consumer *c = NULL;
    CHECK_OK(kofka_consumer_new(b, NULL, &c));
    int32_t p0 = 0;
    CHECK_OK(kofka_assign(c, "t", &p0, 1));
    for (int round = 0; round < 3; round++) {
        CHECK_OK(send_id(p, "t", round, NULL));
        kofka_message *m = NULL;
        CHECK_OK(kofka_poll(c, 2000, &m));
        CHECK(m != NULL);
        kofka_message_free(m);
        int n = terminate_kofka_sessions();
        CHECK(n >= 2);   /* the writer, a reader, the listener */
        test_sleep_ms(100);
    }
    CHECK_OK(send_id(p, "t", 3, NULL));
    kofka_message *m = NULL;
    CHECK_OK(kofka_poll(c, 2000, &m));
    CHECK(m != NULL);
    kofka_message_free(m);
    CHECK_OK(kofka_consumer_close(c));
    CHECK_OK(kofka_producer_close(p, 1000));
    CHECK_OK(kofka_broker_close(b));
    test_backend_teardown(&be);
}

typedef struct killer {
    volatile int stop;       /* set to end the loop */
    int rounds;              /* pg_terminate_backend rounds run */
    int terminated;          /* sessions terminated in all */
} killer;

static void *kill_sessions(void *arg) {
    killer *k = arg;
    unsigned seed = 7;
    while (!k->stop) {
        test_sleep_ms(5 + (long)(rand_r(&seed) % 30));
        int n = terminate_kofka_sessions();
        if (n > 0) k->terminated += n;
        k->rounds++;
    }
    return NULL;
}

static void sessions_terminated_during_a_produce_loop_lose_nothing_acknowledged(void) {
    enum { N = 400 };
    printf("  sessions terminated every 5-35 ms during %d idempotent sends\n", N);
    test_backend be;
    test_backend_setup(&be, 2, "loopkill");
    kofka_broker *b = NULL;
    if (!CHECK_OK(open_broker(be.storage, NULL, &b))) return;
    CHECK_OK(kofka_topic_create(b, "t", 1));
    kofka_producer *p = NULL;
    const char *pcfg[] = {"enable.idempotence", "true", "retry.backoff.ms", "5", "delivery.timeout.ms", "20000", NULL};
    CHECK_OK(kofka_producer_new(b, pcfg, &p));
    killer k = {0};
    pthread_t th;
    pthread_create(&th, NULL, kill_sessions, &k);
    static int acked[N];
    int failed = 0;
    for (int i = 0; i < N; i++) {
        kofka_err rc = send_id(p, "t", i, NULL);
        acked[i] = rc == KOFKA_OK;
        if (rc != KOFKA_OK && failed++ < 3) printf("    send %d: %s: %s\n", i, kofka_err_name(rc), kofka_last_error());
    }
    k.stop = 1;
    pthread_join(th, NULL);
    printf("    %d sessions terminated in %d rounds; %d sends failed after retries\n", k.terminated, k.rounds, failed);
    CHECK(k.terminated > 10);
    CHECK_EQ(0, failed);
    check_acknowledged(b, "t", acked, N, "terminated sessions");
    CHECK_OK(kofka_producer_close(p, 1000));
    CHECK_OK(kofka_broker_close(b));
    test_backend_teardown(&be);
}

/* ---- a TCP proxy that loses the answer to COMMIT -------------------------------------------- */

#define MAX_PAIRS 32

typedef struct proxy {
    int listen_fd;                 /* accepting on 127.0.0.1:port */
    int port;
    int upstream_port;             /* the server's port */
    int fds[MAX_PAIRS][2];         /* client, server; -1 when free */
    pthread_t thread;
    int pipe_fd[2];                /* written to stop the thread */
    pthread_mutex_t m;             /* guards what follows */
    int cut;                       /* 1: cut after forwarding COMMIT; 2: cut instead of forwarding it */
    int cuts;                      /* connections cut so far */
    int64_t refuse_until_ms;       /* new connections are closed at once until then (test_now_ms) */
    int refuse_ms_after_cut;       /* set refuse_until_ms to now + this at a cut */
} proxy;

/* Whether buf holds the Bind message of the prepared statement k_commit: 'B', length, an
 * unnamed portal, "k_commit". */
static int has_commit(const unsigned char *buf, ssize_t n) {
    static const char pat[] = "\0k_commit";
    for (ssize_t i = 0; i + 5 + (ssize_t)sizeof pat <= n; i++)
        if (buf[i] == 'B' && memcmp(buf + i + 5, pat, sizeof pat) == 0) return 1;
    return 0;
}

static void pair_close(proxy *px, int i) {
    close(px->fds[i][0]);
    close(px->fds[i][1]);
    px->fds[i][0] = px->fds[i][1] = -1;
}

static int upstream_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *proxy_main(void *arg) {
    proxy *px = arg;
    for (;;) {
        struct pollfd pfd[2 + 2 * MAX_PAIRS];
        int map[2 + 2 * MAX_PAIRS][2];
        int n = 0;
        pfd[n++] = (struct pollfd){px->pipe_fd[0], POLLIN, 0};
        pfd[n++] = (struct pollfd){px->listen_fd, POLLIN, 0};
        for (int i = 0; i < MAX_PAIRS; i++)
            for (int side = 0; side < 2; side++)
                if (px->fds[i][side] >= 0) {
                    map[n][0] = i;
                    map[n][1] = side;
                    pfd[n++] = (struct pollfd){px->fds[i][side], POLLIN, 0};
                }
        if (poll(pfd, (nfds_t)n, -1) < 0) continue;
        if (pfd[0].revents) return NULL;
        if (pfd[1].revents) {
            int c = accept4(px->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            pthread_mutex_lock(&px->m);
            int refuse = test_now_ms() < px->refuse_until_ms;
            pthread_mutex_unlock(&px->m);
            int s = c >= 0 && !refuse ? upstream_connect(px->upstream_port) : -1;
            int slot = -1;
            for (int i = 0; i < MAX_PAIRS && s >= 0; i++)
                if (px->fds[i][0] < 0) { slot = i; break; }
            if (slot < 0) {
                if (c >= 0) close(c);
                if (s >= 0) close(s);
            } else {
                px->fds[slot][0] = c;
                px->fds[slot][1] = s;
            }
        }
        for (int k = 2; k < n; k++) {
            if (!pfd[k].revents) continue;
            int i = map[k][0], side = map[k][1];
            if (px->fds[i][side] < 0) continue;
            unsigned char buf[65536];
            ssize_t got = read(px->fds[i][side], buf, sizeof buf);
            if (got <= 0) { pair_close(px, i); continue; }
            pthread_mutex_lock(&px->m);
            int cut = side == 0 && px->cut && has_commit(buf, got) ? px->cut : 0;
            if (cut) px->cut = 0;
            pthread_mutex_unlock(&px->m);
            if (cut == 2) {   /* the server never sees COMMIT */
                pair_close(px, i);
            } else {
                ssize_t off = 0;
                while (off < got) {
                    ssize_t w = write(px->fds[i][1 - side], buf + off, (size_t)(got - off));
                    if (w <= 0) break;
                    off += w;
                }
                if (cut == 1) {   /* let the server commit, then lose its answer */
                    test_sleep_ms(150);
                    pair_close(px, i);
                }
            }
            if (cut) {
                pthread_mutex_lock(&px->m);
                px->cuts++;
                px->refuse_until_ms = test_now_ms() + px->refuse_ms_after_cut;
                pthread_mutex_unlock(&px->m);
            }
        }
    }
}

static int proxy_start(proxy *px, int upstream_port) {
    memset(px, 0, sizeof *px);
    for (int i = 0; i < MAX_PAIRS; i++) px->fds[i][0] = px->fds[i][1] = -1;
    px->upstream_port = upstream_port;
    pthread_mutex_init(&px->m, NULL);
    px->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(px->listen_fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(px->listen_fd, 64) < 0 ||
        getsockname(px->listen_fd, (struct sockaddr *)&a, &len) < 0 || pipe(px->pipe_fd) < 0)
        return -1;
    px->port = ntohs(a.sin_port);
    return pthread_create(&px->thread, NULL, proxy_main, px);
}

static void proxy_stop(proxy *px) {
    ssize_t w = write(px->pipe_fd[1], "x", 1);
    (void)w;
    pthread_join(px->thread, NULL);
    for (int i = 0; i < MAX_PAIRS; i++)
        if (px->fds[i][0] >= 0) pair_close(px, i);
    close(px->listen_fd);
    close(px->pipe_fd[0]);
    close(px->pipe_fd[1]);
}

static void proxy_arm(proxy *px, int cut, int refuse_ms) {
    pthread_mutex_lock(&px->m);
    px->cut = cut;
    px->refuse_ms_after_cut = refuse_ms;
    pthread_mutex_unlock(&px->m);
}

static int proxy_cuts(proxy *px) {
    pthread_mutex_lock(&px->m);
    int n = px->cuts;
    pthread_mutex_unlock(&px->m);
    return n;
}

/* The test backend's storage string with the server's port replaced by the proxy's. */
static int through_proxy(const test_backend *be, int port, char *out, size_t size) {
    const char *server_port = getenv("KOFKA_PG_PORT");
    char needle[32];
    snprintf(needle, sizeof needle, ":%s/", server_port ? server_port : "");
    const char *at = server_port ? strstr(be->storage, needle) : NULL;
    if (!at) return -1;
    snprintf(out, size, "%.*s:%d/%s", (int)(at - be->storage), be->storage, port, at + strlen(needle));
    return 0;
}

static void a_commit_whose_answer_is_lost_is_resolved_or_reported_unknown(void) {
    printf("  the answer to COMMIT lost (a proxy cuts the connection)\n");
    const char *port = getenv("KOFKA_PG_PORT");
    if (!port) {
        printf("    skipped: KOFKA_PG_PORT is not set (scripts/pg.sh env sets it)\n");
        return;
    }
    proxy px;
    if (!CHECK_EQ(0, proxy_start(&px, atoi(port)))) return;
    test_backend be;
    test_backend_setup(&be, 2, "proxy");
    char storage[sizeof be.storage + 16];
    CHECK_EQ(0, through_proxy(&be, px.port, storage, sizeof storage));
    kofka_broker *b = NULL;
    /* Time enough to learn a cut COMMIT's fate on a loaded machine (a reconnect and a query). */
    const char *cfg[] = {"postgresql.lock.timeout.ms", "2000", NULL};
    if (!CHECK_OK(open_broker(storage, cfg, &b))) { proxy_stop(&px); return; }
    CHECK_OK(kofka_topic_create(b, "t", 1));
    kofka_producer *once = NULL, *retrying = NULL;
    const char *once_cfg[] = {"enable.idempotence", "true", "retries", "0", NULL};
    const char *retry_cfg[] = {"enable.idempotence", "true", "retry.backoff.ms", "50", "delivery.timeout.ms", "20000", NULL};
    CHECK_OK(kofka_producer_new(b, once_cfg, &once));
    CHECK_OK(kofka_producer_new(b, retry_cfg, &retrying));
    int64_t off = -1;
    CHECK_OK(send_id(once, "t", 0, &off));
    CHECK_EQ(0, off);

    /* 1. COMMIT reached the server, its answer did not: the plugin asks for the fate -> OK. */
    proxy_arm(&px, 1, 0);
    kofka_err rc = send_id(once, "t", 1, &off);
    CHECK_EQ(1, proxy_cuts(&px));
    CHECK_ERR(KOFKA_OK, rc);
    CHECK_EQ(1, off);

    /* 2. COMMIT never reached the server: nothing written -> BUSY (retriable). */
    proxy_arm(&px, 2, 0);
    rc = send_id(once, "t", 2, &off);
    CHECK_EQ(2, proxy_cuts(&px));
    CHECK_ERR(KOFKA_ERR_BUSY, rc);
    printf("    cut before COMMIT: %s\n", kofka_last_error());
    int64_t low = -1, high = -1;
    CHECK_OK(kofka_watermarks(b, "t", 0, &low, &high));
    CHECK_EQ(2, high);

    /* 3. The answer lost and no server to ask within the lock timeout: TIMED_OUT, outcome
     *    unknown — and here it did commit. */
    proxy_arm(&px, 1, 3000);   /* refused for longer than the lock timeout */
    rc = send_id(once, "t", 3, &off);
    CHECK_EQ(3, proxy_cuts(&px));
    CHECK_ERR(KOFKA_ERR_TIMED_OUT, rc);
    printf("    cut after COMMIT, server unreachable: %s\n", kofka_last_error());
    test_sleep_ms(3100);
    CHECK_OK(kofka_watermarks(b, "t", 0, &low, &high));
    CHECK_EQ(3, high);   /* it had committed */

    /* 4. The same with retries: the retry (BUSY while the server is unreachable, then through)
     *    is absorbed by idempotence: acknowledged once, with the offset it first got. */
    proxy_arm(&px, 1, 3000);   /* refused for longer than the lock timeout */
    rc = send_id(retrying, "t", 4, &off);
    CHECK_EQ(4, proxy_cuts(&px));
    CHECK_ERR(KOFKA_OK, rc);
    CHECK_EQ(3, off);
    CHECK_OK(kofka_watermarks(b, "t", 0, &low, &high));
    CHECK_EQ(4, high);

    int acked[5] = {1, 1, 0, 0, 1};
    check_acknowledged(b, "t", acked, 5, "lost answers");
    int count[5] = {0};
    read_ids(b, "t", 1, count, 5);
    CHECK_EQ(0, count[2]);   /* the write cut before COMMIT is not there */
    CHECK_EQ(1, count[3]);   /* the unknown one did commit, once */
    CHECK_OK(kofka_producer_close(once, 1000));
    CHECK_OK(kofka_producer_close(retrying, 1000));
    CHECK_OK(kofka_broker_close(b));
    proxy_stop(&px);
    test_backend_teardown(&be);
}

/* ---- the server restarted ------------------------------------------------------------------- */

typedef struct restarter {
    const char *script, *dir;
    volatile int go;          /* set by the producer when it is mid-way */
    int rc;                   /* the restart command's exit status */
    int64_t took_ms;
} restarter;

static void *restart_server(void *arg) {
    restarter *r = arg;
    while (!r->go) test_sleep_ms(5);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' restart '%s' >/dev/null 2>&1", r->script, r->dir);
    int64_t t0 = test_now_ms();
    r->rc = system(cmd);
    r->took_ms = test_now_ms() - t0;
    return NULL;
}

typedef struct poller {
    kofka_broker *b;
    volatile int stop;
    int count[600];           /* how often each id was consumed */
    int errors;               /* polls that returned an error */
    kofka_err first_error;
} poller;

static void *poll_all(void *arg) {
    poller *pl = arg;
    kofka_consumer *c = NULL;
    if (kofka_consumer_new(pl->b, NULL, &c) != KOFKA_OK) return NULL;
    int32_t p0 = 0;
    kofka_assign(c, "t", &p0, 1);
    while (!pl->stop) {
        kofka_message *msgs[100];
        size_t got = 0;
        kofka_err rc = kofka_poll_batch(c, 200, msgs, 100, &got);
        if (rc != KOFKA_OK) {
            if (!pl->errors++) pl->first_error = rc;
            test_sleep_ms(20);
            continue;
        }
        for (size_t i = 0; i < got; i++) {
            char v[32] = {0};
            memcpy(v, msgs[i]->value, msgs[i]->value_len < 31 ? msgs[i]->value_len : 31);
            int id = -1;
            if (sscanf(v, "id-%d", &id) == 1 && id >= 0 && id < 600) pl->count[id]++;
            kofka_message_free(msgs[i]);
        }
    }
    kofka_consumer_destroy(c);
    return NULL;
}

static void a_server_restart_during_a_produce_loop_loses_nothing_acknowledged(void) {
    enum { N = 300 };
    printf("  the server restarted (scripts/pg.sh restart) during %d idempotent sends, a consumer polling\n", N);
    const char *script = getenv("KOFKA_PG_SCRIPT"), *dir = getenv("KOFKA_PG_DIR");
    if (!script || !dir) {
        printf("    skipped: KOFKA_PG_SCRIPT / KOFKA_PG_DIR are not set (scripts/pg.sh env sets them)\n");
        return;
    }
    test_backend be;
    test_backend_setup(&be, 2, "restart");
    kofka_broker *b = NULL, *b2 = NULL;
    if (!CHECK_OK(open_broker(be.storage, NULL, &b)) || !CHECK_OK(open_broker(be.storage, NULL, &b2))) return;
    CHECK_OK(kofka_topic_create(b, "t", 1));
    kofka_producer *p = NULL;
    const char *pcfg[] = {"enable.idempotence", "true", "retry.backoff.ms", "50", "delivery.timeout.ms", "30000", NULL};
    CHECK_OK(kofka_producer_new(b, pcfg, &p));
    restarter r = {.script = script, .dir = dir};
    poller pl = {.b = b2};
    pthread_t rt, pt;
    pthread_create(&rt, NULL, restart_server, &r);
    pthread_create(&pt, NULL, poll_all, &pl);
    static int acked[N];
    int failed = 0;
    for (int i = 0; i < N; i++) {
        if (i == N / 3) r.go = 1;
        kofka_err rc = send_id(p, "t", i, NULL);
        acked[i] = rc == KOFKA_OK;
        if (rc != KOFKA_OK && failed++ < 3) printf("    send %d: %s: %s\n", i, kofka_err_name(rc), kofka_last_error());
        test_sleep_ms(5);
    }
    pthread_join(rt, NULL);
    printf("    the restart took %lld ms (exit status %d); %d sends failed after retries\n", (long long)r.took_ms, r.rc, failed);
    CHECK_EQ(0, r.rc);
    CHECK_EQ(0, failed);
    /* the consumer goes on after the restart: it gets every record, once */
    int64_t deadline = test_now_ms() + 10000;
    int seen = 0;
    while (test_now_ms() < deadline) {
        seen = 0;
        for (int i = 0; i < N; i++) seen += pl.count[i] > 0;
        if (seen == N) break;
        test_sleep_ms(50);
    }
    pl.stop = 1;
    pthread_join(pt, NULL);
    int consumed_twice = 0;
    for (int i = 0; i < N; i++) consumed_twice += pl.count[i] > 1;
    printf("    the consumer: %d of %d records, %d twice, %d polls failed (first: %s)\n", seen, N, consumed_twice, pl.errors,
           pl.errors ? kofka_err_name(pl.first_error) : "none");
    CHECK_EQ(N, seen);
    CHECK_EQ(0, consumed_twice);
    check_acknowledged(b, "t", acked, N, "server restart");
    CHECK_OK(kofka_producer_close(p, 1000));
    CHECK_OK(kofka_broker_close(b));
    CHECK_OK(kofka_broker_close(b2));
    test_backend_teardown(&be);
}

int main(void) {
    check_init();
    alarm(55);
    printf("test_postgresql_faults: terminated sessions, lost answers and a restart lose nothing acknowledged\n");
    if (!test_pg_url()) {
        printf("  skipped: KOFKA_PG_URL is not set (scripts/pg.sh starts a server)\n");
        return check_done();
    }
    check_context = "postgresql:";
    idle_sessions_terminated_between_calls_are_replaced_unseen();
    sessions_terminated_during_a_produce_loop_lose_nothing_acknowledged();
    a_commit_whose_answer_is_lost_is_resolved_or_reported_unknown();
    a_server_restart_during_a_produce_loop_loses_nothing_acknowledged();
    return check_done();
}
