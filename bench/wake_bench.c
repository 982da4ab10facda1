/*
 * bench/wake_bench.c — how fast a poll blocked in one process wakes when another process
 * commits to the same SQLite file, and what an idle blocked consumer costs.
 *
 *   cc -O2 -Iinclude bench/wake_bench.c -L.build/release -lkofka -Wl,-rpath,.build/release -o wake_bench
 *   ./wake_bench [ROUNDS] [sqlite.synchronous]      (defaults: 500, normal)
 *
 * A child process opens the file and blocks in kofka_poll; the parent sends one record (a
 * synchronous send: acknowledged once committed), noting CLOCK_MONOTONIC (system-wide, so
 * comparable across processes) just after the commit returned; the child notes the time its
 * poll returned the record and writes it to a pipe. Reported: p50/p99/max of (woken − committed),
 * and the same with the commit's start as the origin (what a producer-to-consumer latency is).
 * Idle: the child blocks in kofka_poll for 3 s with no writes; its CPU time (getrusage) over
 * that time is the idle cost. Figures are printed, never asserted.
 */
#define _DEFAULT_SOURCE
#include <kofka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CK(call) do { kofka_err e_ = (call); if (e_ != KOFKA_OK) { fprintf(stderr, "%s:%d %s: %s (%s)\n", __FILE__, __LINE__, #call, kofka_err_name(e_), kofka_last_error()); exit(1); } } while (0)

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* The child: `rounds` records, each polled with a long timeout; writes each wake time to fd. */
static void child(const char *storage, const char *const *bcfg, int rounds, int fd, int ready_fd) {
    kofka_broker *b = NULL;
    CK(kofka_broker_open(storage, bcfg, &b));
    const char *ccfg[] = {"group.id", "wake", NULL};
    kofka_consumer *c = NULL;
    CK(kofka_consumer_new(b, ccfg, &c));
    int32_t p0 = 0;
    CK(kofka_assign(c, "wake", &p0, 1));
    /* Idle: block 3 s with nothing written; report the CPU it took. */
    double cpu0 = cpu_seconds();
    long long t0 = now_ns();
    kofka_message *m = NULL;
    kofka_err e = kofka_poll(c, 3000, &m);
    double idle_cpu = cpu_seconds() - cpu0, idle_wall = (now_ns() - t0) / 1e9;
    if (e == KOFKA_OK && m) kofka_message_free(m);
    double idle[2] = {idle_cpu, idle_wall};
    if (write(ready_fd, idle, sizeof idle) != sizeof idle) exit(1);
    for (int i = 0; i < rounds; i++) {
        m = NULL;
        while (m == NULL) CK(kofka_poll(c, 10000, &m));
        long long woke = now_ns();
        kofka_message_free(m);
        if (write(fd, &woke, sizeof woke) != sizeof woke) exit(1);
    }
    CK(kofka_consumer_close(c));
    CK(kofka_broker_close(b));
    exit(0);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 500;
    const char *sync = argc > 2 ? argv[2] : "normal";
    char path[256], storage[300];
    snprintf(path, sizeof path, "/tmp/kofka-wake-bench-%d.db", (int)getpid());
    snprintf(storage, sizeof storage, "sqlite:%s", path);
    const char *bcfg[] = {"sqlite.synchronous", sync, "log.retention.check.interval.ms", "0", NULL};
    kofka_broker *b = NULL;
    CK(kofka_broker_open(storage, bcfg, &b));
    CK(kofka_topic_create(b, "wake", 1));
    int wake_pipe[2], ready_pipe[2];
    if (pipe(wake_pipe) != 0 || pipe(ready_pipe) != 0) return 1;
    pid_t pid = fork();
    if (pid == 0) {
        close(wake_pipe[0]);
        close(ready_pipe[0]);
        child(storage, bcfg, rounds, wake_pipe[1], ready_pipe[1]);
    }
    close(wake_pipe[1]);
    close(ready_pipe[1]);
    double idle[2];
    if (read(ready_pipe[0], idle, sizeof idle) != sizeof idle) { fprintf(stderr, "child failed\n"); return 1; }
    kofka_producer *p = NULL;
    CK(kofka_producer_new(b, NULL, &p));
    long long *from_commit = calloc((size_t)rounds, sizeof *from_commit);
    long long *from_send = calloc((size_t)rounds, sizeof *from_send);
    for (int i = 0; i < rounds; i++) {
        usleep(2000);  /* let the child block again */
        kofka_record r = {0};
        r.partition = 0;
        r.value = "w";
        r.value_len = 1;
        long long sent = now_ns();
        CK(kofka_send(p, "wake", &r));
        long long committed = now_ns();
        long long woke;
        if (read(wake_pipe[0], &woke, sizeof woke) != sizeof woke) { fprintf(stderr, "child failed\n"); return 1; }
        from_commit[i] = woke - committed;
        from_send[i] = woke - sent;
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CK(kofka_producer_close(p, 2000));
    CK(kofka_broker_close(b));
    qsort(from_commit, (size_t)rounds, sizeof *from_commit, cmp_ll);
    qsort(from_send, (size_t)rounds, sizeof *from_send, cmp_ll);
    int p50 = rounds / 2, p99 = rounds * 99 / 100;
    printf("cross-process wake-up, SQLite synchronous=%s, %d rounds (a poll blocked in a child process, a sync send in the parent):\n", sync, rounds);
    printf("  commit returned -> poll returned the record:  p50 %7.1f us  p99 %7.1f us  max %7.1f us\n",
           from_commit[p50] / 1e3, from_commit[p99] / 1e3, from_commit[rounds - 1] / 1e3);
    printf("  send called     -> poll returned the record:  p50 %7.1f us  p99 %7.1f us  max %7.1f us\n",
           from_send[p50] / 1e3, from_send[p99] / 1e3, from_send[rounds - 1] / 1e3);
    printf("  idle consumer blocked in kofka_poll %.1f s: %.4f s CPU = %.3f %% of a core\n", idle[1], idle[0], 100.0 * idle[0] / idle[1]);
    const char *sfx[] = {"", "-wal", "-shm", "-bell"};
    for (int i = 0; i < 4; i++) { char f[300]; snprintf(f, sizeof f, "%s%s", path, sfx[i]); unlink(f); }
    free(from_commit);
    free(from_send);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
