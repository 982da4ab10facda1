/* C-face benchmark: Kofka through libkofka.so (kofka_send_batch, kofka_send_packed,
 * kofka_poll_batch) beside a minimal in-memory C log (malloc + memcpy per record) in the same
 * run. Figures are printed, never asserted.   Usage: c_bench [records] [storage]           */
#include "kofka.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
#define CK(x) do { kofka_err e_ = (x); if (e_) { fprintf(stderr, "%s: %s\n", kofka_err_name(e_), kofka_last_error()); exit(1); } } while (0)
enum { SIZE = 100, BATCH = 1000 };

static double c_log(long n, const char *src) {
    double t0 = now();
    char **log = NULL; size_t *lens = NULL; long cap = 0;
    for (long i = 0; i < n; i++) {
        if (i == cap) { cap = cap ? cap * 2 : 1024; log = realloc(log, cap * sizeof *log); lens = realloc(lens, cap * sizeof *lens); }
        log[i] = malloc(SIZE); memcpy(log[i], src, SIZE); lens[i] = SIZE;
    }
    double t = now() - t0;
    for (long i = 0; i < n; i++) free(log[i]);
    free(log); free(lens);
    return t;
}

/* A fresh store per run (512-byte buffers): sqlite:PATH becomes sqlite:PATH-N, path its file. */
static void fresh_store(const char *base, char *storage, char *path) {
    static int runs;
    path[0] = 0;
    if (strncmp(base, "sqlite:", 7) == 0) {
        snprintf(path, 512, "%s-%d", base + 7, runs++);
        snprintf(storage, 512, "sqlite:%s", path);
    } else {
        snprintf(storage, 512, "%s", base);
    }
}

/* Removes what fresh_store's SQLite file left ("" : nothing). */
static void remove_store(const char *path) {
    if (!path[0]) return;
    const char *sfx[] = {"", "-wal", "-shm", "-bell"};
    for (int i = 0; i < 4; i++) { char f[600]; snprintf(f, sizeof f, "%s%s", path, sfx[i]); remove(f); }
}

/* A counting interceptor, as a metrics plugin's simplest form: one hook per sent and per
 * acknowledged record, each an atomic increment. */
static long hook_sent, hook_acked;
static void count_send(void *o, const char *t, kofka_record *r) { (void)o; (void)t; (void)r; __atomic_add_fetch(&hook_sent, 1, __ATOMIC_RELAXED); }
static void count_ack(void *o, const char *t, const kofka_record *r) { (void)o; (void)t; (void)r; __atomic_add_fetch(&hook_acked, 1, __ATOMIC_RELAXED); }

/* packed: kofka_send_packed instead of kofka_send_batch; hook: a counting interceptor added. */
static double kofka_batch_with(long n, const char *base, const char *src, int packed, int hook) {
    char storage[512], path[512];
    fresh_store(base, storage, path);
    kofka_broker *b; CK(kofka_broker_open(storage, NULL, &b));
    CK(kofka_topic_create(b, "bench", 1));
    if (hook) {
        kofka_interceptors ic = {.struct_size = sizeof ic, .on_send = count_send, .on_acknowledgement = count_ack};
        CK(kofka_interceptors_add(b, "count", &ic));
    }
    kofka_producer *p; CK(kofka_producer_new(b, NULL, &p));
    kofka_record *recs = calloc(BATCH, sizeof *recs);
    int64_t *vlens = malloc(BATCH * sizeof *vlens);
    char *buf = malloc((size_t)BATCH * SIZE);
    for (int i = 0; i < BATCH; i++) { memcpy(buf + (size_t)i * SIZE, src, SIZE); vlens[i] = SIZE; }
    double t0 = now();
    for (long done = 0; done < n; done += BATCH) {
        if (packed) {
            CK(kofka_send_packed(p, "bench", 0, NULL, NULL, buf, vlens, BATCH, NULL, NULL, NULL));
        } else {
            for (int i = 0; i < BATCH; i++) { recs[i] = (kofka_record){.partition = 0, .value = buf + (size_t)i * SIZE, .value_len = SIZE}; }
            CK(kofka_send_batch(p, "bench", recs, BATCH));
        }
    }
    double t = now() - t0;
    /* read it back */
    kofka_consumer *c; CK(kofka_consumer_new(b, NULL, &c));
    int32_t part = 0; CK(kofka_assign(c, "bench", &part, 1));
    kofka_message *ms[500]; size_t got = 0, cnt; long total = 0;
    double r0 = now();
    while (total < n) {
        CK(kofka_poll_batch(c, 1000, ms, 500, &cnt));
        if (!cnt) break;
        for (size_t i = 0; i < cnt; i++) { got += ms[i]->value_len; kofka_message_free(ms[i]); }
        total += (long)cnt;
    }
    double rt = now() - r0;
    if (packed) printf("  c face  kofka_poll_batch     %-10s %10.0f rec/s\n", storage, total / rt);
    kofka_consumer_destroy(c);
    CK(kofka_producer_close(p, -1)); CK(kofka_broker_close(b));
    free(recs); free(vlens); free(buf);
    remove_store(path);
    return t;
}

static double kofka_batch(long n, const char *storage, const char *src, int packed) {
    return kofka_batch_with(n, storage, src, packed, 0);
}

/* One record per call: kofka_send (acks=all, memory) and kofka_poll, where the per-call cost of
 * the C face (handle lookup, argument checks, message bookkeeping) is not shared by a batch. */
static void kofka_single(long n, const char *base, const char *src, double *send_s, double *poll_s) {
    char storage[512], path[512];
    fresh_store(base, storage, path);
    kofka_broker *b; CK(kofka_broker_open(storage, NULL, &b));
    CK(kofka_topic_create(b, "single", 1));
    kofka_producer *p; CK(kofka_producer_new(b, NULL, &p));
    double t0 = now();
    for (long i = 0; i < n; i++) {
        kofka_record r = {.partition = 0, .value = src, .value_len = SIZE};
        CK(kofka_send(p, "single", &r));
    }
    *send_s = now() - t0;
    kofka_consumer *c; CK(kofka_consumer_new(b, NULL, &c));
    int32_t part = 0; CK(kofka_assign(c, "single", &part, 1));
    long got = 0;
    t0 = now();
    while (got < n) {
        kofka_message *m = NULL;
        CK(kofka_poll(c, 1000, &m));
        if (!m) break;
        kofka_message_free(m);
        got++;
    }
    *poll_s = (now() - t0) * n / (got ? got : 1);
    kofka_consumer_destroy(c);
    CK(kofka_producer_close(p, -1)); CK(kofka_broker_close(b));
    remove_store(path);
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    const char *storage = argc > 2 ? argv[2] : "memory:";
    char src[SIZE]; memset(src, 'x', SIZE);
    double best_log = 1e9, best_batch = 1e9, best_packed = 1e9;
    for (int r = 0; r < 3; r++) {
        double a = c_log(n, src), b = kofka_batch(n, storage, src, 0), c = kofka_batch(n, storage, src, 1);
        if (a < best_log) best_log = a;
        if (b < best_batch) best_batch = b;
        if (c < best_packed) best_packed = c;
    }
    printf("c face, %ld records of %d bytes, best of 3, storage %s\n", n, SIZE, storage);
    printf("  minimal C log (malloc+memcpy)        %10.0f rec/s\n", n / best_log);
    printf("  kofka_send_batch (1000/call)         %10.0f rec/s   %.2fx the C log\n", n / best_batch, best_log / best_batch);
    printf("  kofka_send_packed (1000/call)        %10.0f rec/s   %.2fx the C log\n", n / best_packed, best_log / best_packed);
    /* The cost of one counting interceptor on kofka_send_batch: alternating rounds, best of 5 each. */
    double best_plain = 1e9, best_hooked = 1e9;
    hook_sent = hook_acked = 0;
    for (int r = 0; r < 5; r++) {
        double h = kofka_batch_with(n, storage, src, 0, 1), p = kofka_batch_with(n, storage, src, 0, 0);
        if (h < best_hooked) best_hooked = h;
        if (p < best_plain) best_plain = p;
    }
    printf("  kofka_send_batch, no interceptor     %10.0f rec/s\n", n / best_plain);
    printf("  kofka_send_batch, 1 counting hook    %10.0f rec/s   %.2fx without (on_send %ld, on_acknowledgement %ld calls)\n",
           n / best_hooked, best_plain / best_hooked, hook_sent, hook_acked);
    long single = n / 10;
    double best_send = 1e9, best_poll = 1e9;
    for (int r = 0; r < 3; r++) {
        double s_, p_;
        kofka_single(single, storage, src, &s_, &p_);
        if (s_ < best_send) best_send = s_;
        if (p_ < best_poll) best_poll = p_;
    }
    printf("  kofka_send (1 record/call)           %10.0f rec/s   %.2f us/call (%ld records)\n", single / best_send, best_send / single * 1e6, single);
    printf("  kofka_poll (1 message/call)          %10.0f rec/s   %.2f us/call\n", single / best_poll, best_poll / single * 1e6);
    return 0;
}
