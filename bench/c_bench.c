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

static double kofka_batch(long n, const char *storage, const char *src, int packed) {
    kofka_broker *b; CK(kofka_broker_open(storage, NULL, &b));
    CK(kofka_topic_create(b, "bench", 1));
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
    return t;
}

/* One record per call: kofka_send (acks=all, memory) and kofka_poll, where the per-call cost of
 * the C face (handle lookup, argument checks, message bookkeeping) is not shared by a batch. */
static void kofka_single(long n, const char *storage, const char *src, double *send_s, double *poll_s) {
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
