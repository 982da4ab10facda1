/*
 * metrics.c — libkofka_metrics.so: counters and a latency histogram kept by interceptors,
 * written as Prometheus text (see include/kofka_metrics.h for the keys and the metrics).
 *
 * Written against include/kofka.h only and linked without -lkofka: the kofka_* functions it
 * calls (kofka_interceptors_register, kofka_err_name) resolve to the Kofka that loaded it.
 *
 * Threads. Hooks run on many threads at once (senders, pollers, whoever serves delivery
 * reports). Every count lives in one table guarded by one mutex, held only to find a series and
 * add to it, or to format the table into memory; the file is written after the mutex is
 * released, under a second mutex that only writers take (the background thread, on_close and
 * process exit), so a slow disk never stalls a hook.
 *
 * Latency. A record's acknowledgement may come on another thread than its send (kofka_produce:
 * the thread serving delivery reports), and many records are in flight at once, so timing per
 * thread cannot pair them. on_send instead adds a header carrying the CLOCK_MONOTONIC time in
 * nanoseconds (replacing one a consumed record may already carry); on_acknowledgement gets the
 * record back with its headers and observes now - then. The header is stored with the record
 * (consumers see it, and it costs 29 bytes); metrics.latency.header=false turns it off.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kofka.h"
#include "kofka_metrics.h"

#define MAX_LABELS 3
#define CHAINS 1024
#define BUCKETS 16

/* ---- what is counted ------------------------------------------------------- */

enum family_id {
    F_SENT, F_PRODUCED, F_PRODUCED_BYTES, F_DELIVERY_FAILURES,
    F_CONSUMED, F_CONSUMED_BYTES, F_COMMITS, F_COMMIT_FAILURES, F_LATENCY, F_COUNT
};

/** A metric family: one # HELP / # TYPE block of the file. */
typedef struct family {
    const char *name;                 /* metric name */
    const char *type;                 /* "counter" or "histogram" */
    const char *help;                 /* the # HELP text (no backslash, no newline) */
    int labels;                       /* how many labels its series carry */
    const char *label[MAX_LABELS];    /* their names */
} family;

static const family families[F_COUNT] = {
    [F_SENT] = {"kofka_sent_records_total", "counter",
                "Records handed to a Kofka producer (interceptor on_send).", 1, {"topic"}},
    [F_PRODUCED] = {"kofka_produced_records_total", "counter",
                    "Records whose delivery succeeded (on_acknowledgement without error).", 1, {"topic"}},
    [F_PRODUCED_BYTES] = {"kofka_produced_bytes_total", "counter",
                          "Key and value bytes of records whose delivery succeeded.", 1, {"topic"}},
    [F_DELIVERY_FAILURES] = {"kofka_delivery_failures_total", "counter",
                             "Records whose delivery failed, by error name.", 2, {"topic", "error"}},
    [F_CONSUMED] = {"kofka_consumed_records_total", "counter",
                    "Records returned to consumers by poll (on_consume).", 1, {"topic"}},
    [F_CONSUMED_BYTES] = {"kofka_consumed_bytes_total", "counter",
                          "Key and value bytes of records returned to consumers.", 1, {"topic"}},
    [F_COMMITS] = {"kofka_commits_total", "counter",
                   "Partition offsets committed by consumer groups (one per partition and commit).", 2, {"group", "topic"}},
    [F_COMMIT_FAILURES] = {"kofka_commit_failures_total", "counter",
                           "Partition offset commits that failed, by error name.", 3, {"group", "topic", "error"}},
    [F_LATENCY] = {"kofka_produce_latency_seconds", "histogram",
                   "Seconds from a record's send (on_send) to its successful acknowledgement.", 1, {"topic"}},
};

/** Upper bounds of the latency buckets, in seconds and in nanoseconds. */
static const char *const bucket_le[BUCKETS] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
    "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
};
static const uint64_t bucket_ns[BUCKETS] = {
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 25000000,
    50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000u, 5000000000u, 10000000000u,
};

/** One time series: a family and its label values. */
typedef struct series {
    struct series *next;              /* next in its hash chain */
    struct series *all_next;          /* next of every series (the writer's list) */
    uint32_t hash;                    /* of family and labels */
    int family;                       /* enum family_id */
    char *label[MAX_LABELS];          /* label values (owned), NULL beyond the family's count */
    uint64_t value;                   /* a counter's value */
    uint64_t bucket[BUCKETS + 1];     /* a histogram's observations per bucket, not cumulative;
                                         the last one: above the largest bound */
    uint64_t sum_ns;                  /* a histogram's sum of observations, nanoseconds */
    uint64_t count;                   /* a histogram's observations */
} series;

/** Everything the plugin keeps. The table is guarded by `lock`; the config is written once,
 *  in kofka_plugin_init, before any hook or the writer thread runs, and only read after. */
static struct {
    pthread_mutex_t lock;             /* guards chains, all, nseries */
    series *chains[CHAINS];           /* series by hash */
    series *all;                      /* every series, newest first */
    size_t nseries;                   /* how many */

    int initialised;                  /* kofka_plugin_init succeeded */
    int forked;                       /* this is a child forked after init: it writes nothing */
    char *path;                       /* metrics.path, NULL: write nothing */
    int64_t interval_ms;              /* metrics.interval.ms */
    int latency_header;               /* metrics.latency.header */

    pthread_mutex_t write_lock;       /* one writer of the file at a time */
    int write_failed;                 /* a failure was reported on stderr (once) */

    pthread_mutex_t wake_lock;        /* guards stop, for the writer thread's timed wait */
    pthread_cond_t wake;              /* signalled to stop the writer thread */
    int stop;                         /* the writer thread must return */
    int running;                      /* the writer thread was started */
    pthread_t thread;                 /* the writer thread */

    pthread_key_t scratch_key;        /* per-thread header scratch of on_send */
} m = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .write_lock = PTHREAD_MUTEX_INITIALIZER,
    .wake_lock = PTHREAD_MUTEX_INITIALIZER,
};

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the table ------------------------------------------------------------- */

static uint32_t hash_labels(int f, const char *const *labels, int n) {
    uint32_t h = 2166136261u ^ (uint32_t)f;
    for (int i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)labels[i]; *p; p++) h = (h ^ *p) * 16777619u;
        h = (h ^ 0xffu) * 16777619u;   /* separator: ("ab","c") differs from ("a","bc") */
    }
    return h;
}

/** The series of family f with these labels, created at 0 if new; NULL when out of memory.
 *  Call with m.lock held. */
static series *series_for(int f, const char *const *labels) {
    int n = families[f].labels;
    uint32_t h = hash_labels(f, labels, n);
    for (series *s = m.chains[h % CHAINS]; s; s = s->next) {
        if (s->hash != h || s->family != f) continue;
        int same = 1;
        for (int i = 0; i < n && same; i++) same = strcmp(s->label[i], labels[i]) == 0;
        if (same) return s;
    }
    series *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    for (int i = 0; i < n; i++) {
        s->label[i] = strdup(labels[i]);
        if (!s->label[i]) {
            for (int j = 0; j < i; j++) free(s->label[j]);
            free(s);
            return NULL;
        }
    }
    s->hash = h;
    s->family = f;
    s->next = m.chains[h % CHAINS];
    m.chains[h % CHAINS] = s;
    s->all_next = m.all;
    m.all = s;
    m.nseries++;
    return s;
}

static void add(int f, const char *l0, const char *l1, const char *l2, uint64_t n) {
    const char *labels[MAX_LABELS] = {l0 ? l0 : "", l1 ? l1 : "", l2 ? l2 : ""};
    pthread_mutex_lock(&m.lock);
    series *s = series_for(f, labels);
    if (s) s->value += n;
    pthread_mutex_unlock(&m.lock);
}

static void observe(series *s, uint64_t ns) {
    int b = 0;
    while (b < BUCKETS && ns > bucket_ns[b]) b++;
    s->bucket[b]++;
    s->sum_ns += ns;
    s->count++;
}

/* ---- the latency header ---------------------------------------------------- */

/** What on_send's header array points at, per thread: valid until the next on_send on the
 *  thread (Kofka copies a record's headers when the hook returns). */
typedef struct scratch {
    kofka_header *headers;            /* the record's headers with ours appended */
    size_t cap;                       /* room in headers */
    unsigned char stamp[8];           /* our header's value */
} scratch;

static void scratch_free(void *p) {
    scratch *s = p;
    if (s) free(s->headers);
    free(s);
}

static scratch *scratch_get(void) {
    scratch *s = pthread_getspecific(m.scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (s && pthread_setspecific(m.scratch_key, s) != 0) { free(s); s = NULL; }
    }
    return s;
}

/** Replaces any header of ours in the record with one stamped now. */
static void stamp(kofka_record *r) {
    size_t n = r->header_count;
    const kofka_header *old = r->headers;
    if (n > 0 && !old) return;        /* not a record Kofka would take: leave it alone */
    scratch *s = scratch_get();
    if (!s) return;
    kofka_header *dst = s->headers;
    size_t cap = s->cap;
    if (n + 1 > cap) {
        cap = n + 1 < 8 ? 8 : 2 * (n + 1);
        dst = malloc(cap * sizeof *dst);
        if (!dst) return;
    }
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {   /* in place when old == dst: j never passes i */
        if (old[i].name && strcmp(old[i].name, KOFKA_METRICS_SEND_HEADER) == 0) continue;
        dst[j++] = old[i];
    }
    uint64_t now = mono_ns();
    for (int b = 0; b < 8; b++) s->stamp[b] = (unsigned char)(now >> (56 - 8 * b));
    dst[j].name = KOFKA_METRICS_SEND_HEADER;
    dst[j].value = s->stamp;
    dst[j].value_len = sizeof s->stamp;
    j++;
    if (dst != s->headers) {
        free(s->headers);
        s->headers = dst;
        s->cap = cap;
    }
    r->headers = dst;
    r->header_count = j;
}

/** The send time our header carries, or 0 when the record has none. */
static uint64_t stamped(const kofka_record *r) {
    if (!r->headers) return 0;
    for (size_t i = r->header_count; i-- > 0;) {
        const kofka_header *h = &r->headers[i];
        if (!h->name || strcmp(h->name, KOFKA_METRICS_SEND_HEADER) != 0) continue;
        if (h->value_len != 8 || !h->value) return 0;
        const unsigned char *v = h->value;
        uint64_t t = 0;
        for (int b = 0; b < 8; b++) t = (t << 8) | v[b];
        return t;
    }
    return 0;
}

/* ---- the hooks --------------------------------------------------------------- */

static void on_send(void *opaque, const char *topic, kofka_record *record) {
    (void)opaque;
    if (!topic || !record) return;
    add(F_SENT, topic, NULL, NULL, 1);
    if (m.latency_header) stamp(record);
}

static void on_acknowledgement(void *opaque, const char *topic, const kofka_record *record) {
    (void)opaque;
    if (!topic || !record) return;
    if (record->err != KOFKA_OK) {
        add(F_DELIVERY_FAILURES, topic, kofka_err_name(record->err), NULL, 1);
        return;
    }
    uint64_t sent = stamped(record), now = mono_ns();
    const char *labels[MAX_LABELS] = {topic, "", ""};
    pthread_mutex_lock(&m.lock);
    series *s = series_for(F_PRODUCED, labels);
    if (s) s->value++;
    s = series_for(F_PRODUCED_BYTES, labels);
    if (s) s->value += (uint64_t)record->key_len + (uint64_t)record->value_len;
    if (sent && now >= sent && (s = series_for(F_LATENCY, labels))) observe(s, now - sent);
    pthread_mutex_unlock(&m.lock);
}

static void on_consume(void *opaque, const kofka_message *message) {
    (void)opaque;
    if (!message || !message->topic) return;
    const char *labels[MAX_LABELS] = {message->topic, "", ""};
    pthread_mutex_lock(&m.lock);
    series *s = series_for(F_CONSUMED, labels);
    if (s) s->value++;
    s = series_for(F_CONSUMED_BYTES, labels);
    if (s) s->value += (uint64_t)message->key_len + (uint64_t)message->value_len;
    pthread_mutex_unlock(&m.lock);
}

static void on_commit(void *opaque, const char *group_id, const char *topic, int32_t partition,
                      int64_t offset, kofka_err err) {
    (void)opaque; (void)partition; (void)offset;
    if (!group_id || !topic) return;
    if (err == KOFKA_OK) add(F_COMMITS, group_id, topic, NULL, 1);
    else add(F_COMMIT_FAILURES, group_id, topic, kofka_err_name(err), 1);
}

static int write_file(void);

static void on_close(void *opaque) {
    (void)opaque;
    write_file();
}

/* ---- the text exposition format ---------------------------------------------- */

/** A growing text buffer; `failed` once an allocation failed. */
typedef struct text {
    char *data;
    size_t len, cap;
    int failed;
} text;

static void put(text *t, const char *s, size_t n) {
    if (t->failed) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (t->len + n + 1 > cap) cap *= 2;
        char *d = realloc(t->data, cap);
        if (!d) { t->failed = 1; return; }
        t->data = d;
        t->cap = cap;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

static void puts_(text *t, const char *s) { put(t, s, strlen(s)); }

static void putu(text *t, uint64_t v) {
    char b[24];
    int n = snprintf(b, sizeof b, "%" PRIu64, v);
    put(t, b, (size_t)n);
}

/** Length of the valid UTF-8 sequence at p (1 to 4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *p) {
    if (p[0] < 0x80) return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) return (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (p[0] >= 0xe0 && p[0] <= 0xef) {
        if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) return 0;
        if (p[0] == 0xe0 && p[1] < 0xa0) return 0;            /* overlong */
        if (p[0] == 0xed && p[1] >= 0xa0) return 0;           /* surrogates */
        return 3;
    }
    if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80) return 0;
        if (p[0] == 0xf0 && p[1] < 0x90) return 0;            /* overlong */
        if (p[0] == 0xf4 && p[1] >= 0x90) return 0;           /* above U+10FFFF */
        return 4;
    }
    return 0;
}

/** A label value, escaped as the format wants (\\, \", \n); bytes that are not UTF-8
 *  become U+FFFD (a group id from C may be any bytes). */
static void put_label_value(text *t, const char *v) {
    const unsigned char *p = (const unsigned char *)v;
    while (*p) {
        if (*p == '\\') { puts_(t, "\\\\"); p++; continue; }
        if (*p == '"') { puts_(t, "\\\""); p++; continue; }
        if (*p == '\n') { puts_(t, "\\n"); p++; continue; }
        size_t n = utf8_len(p);
        if (n == 0) { puts_(t, "\xef\xbf\xbd"); p++; continue; }
        put(t, (const char *)p, n);
        p += n;
    }
}

/** {name="value",...} with an optional extra le label; nothing when there are no labels. */
static void put_labels(text *t, const series *s, const char *le) {
    int n = families[s->family].labels;
    if (n == 0 && !le) return;
    puts_(t, "{");
    for (int i = 0; i < n; i++) {
        if (i) puts_(t, ",");
        puts_(t, families[s->family].label[i]);
        puts_(t, "=\"");
        put_label_value(t, s->label[i]);
        puts_(t, "\"");
    }
    if (le) {
        if (n) puts_(t, ",");
        puts_(t, "le=\"");
        puts_(t, le);
        puts_(t, "\"");
    }
    puts_(t, "}");
}

static int series_order(const void *a, const void *b) {
    const series *x = *(series *const *)a, *y = *(series *const *)b;
    if (x->family != y->family) return x->family - y->family;
    for (int i = 0; i < families[x->family].labels; i++) {
        int c = strcmp(x->label[i], y->label[i]);
        if (c) return c;
    }
    return 0;
}

/** The whole exposition, formatted from the table; *out is malloc'd (NULL when out of memory). */
static void format(text *t) {
    pthread_mutex_lock(&m.lock);
    series **sorted = malloc((m.nseries ? m.nseries : 1) * sizeof *sorted);
    size_t n = 0;
    if (sorted) {
        for (series *s = m.all; s; s = s->all_next) sorted[n++] = s;
        qsort(sorted, n, sizeof *sorted, series_order);
    } else {
        t->failed = 1;
    }
    size_t k = 0;
    for (int f = 0; f < F_COUNT && !t->failed; f++) {
        const family *fam = &families[f];
        puts_(t, "# HELP "); puts_(t, fam->name); puts_(t, " "); puts_(t, fam->help); puts_(t, "\n");
        puts_(t, "# TYPE "); puts_(t, fam->name); puts_(t, " "); puts_(t, fam->type); puts_(t, "\n");
        for (; k < n && sorted[k]->family == f; k++) {
            const series *s = sorted[k];
            if (f != F_LATENCY) {
                puts_(t, fam->name); put_labels(t, s, NULL); puts_(t, " "); putu(t, s->value); puts_(t, "\n");
                continue;
            }
            uint64_t cumulative = 0;
            for (int b = 0; b <= BUCKETS; b++) {
                cumulative += s->bucket[b];
                puts_(t, fam->name); puts_(t, "_bucket");
                put_labels(t, s, b < BUCKETS ? bucket_le[b] : "+Inf");
                puts_(t, " "); putu(t, cumulative); puts_(t, "\n");
            }
            char sum[48];
            snprintf(sum, sizeof sum, "%" PRIu64 ".%09" PRIu64, s->sum_ns / 1000000000u, s->sum_ns % 1000000000u);
            puts_(t, fam->name); puts_(t, "_sum"); put_labels(t, s, NULL); puts_(t, " "); puts_(t, sum); puts_(t, "\n");
            puts_(t, fam->name); puts_(t, "_count"); put_labels(t, s, NULL); puts_(t, " "); putu(t, s->count); puts_(t, "\n");
        }
    }
    pthread_mutex_unlock(&m.lock);
    free(sorted);
}

/* ---- the file ------------------------------------------------------------------ */

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/** Writes the exposition to metrics.path: a temp file beside it, then rename(2), so a reader
 *  sees the old file or the new one, never part of one. A failure is reported on stderr once. */
static int write_file(void) {
    if (!m.initialised || !m.path || m.forked) return 0;
    text t = {0};
    format(&t);
    int rc = -1;
    const char *why = "out of memory";
    pthread_mutex_lock(&m.write_lock);
    size_t tmp_len = strlen(m.path) + 32;
    char *tmp = malloc(tmp_len);
    if (tmp && !t.failed) {
        snprintf(tmp, tmp_len, "%s.tmp.%ld", m.path, (long)getpid());
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            why = strerror(errno);
        } else {
            int ok = write_all(fd, t.data, t.len) == 0;
            if (!ok) why = strerror(errno);
            if (close(fd) != 0 && ok) { ok = 0; why = strerror(errno); }
            if (ok && rename(tmp, m.path) == 0) rc = 0;
            else {
                if (ok) why = strerror(errno);
                unlink(tmp);
            }
        }
    }
    if (rc != 0 && !m.write_failed) {
        m.write_failed = 1;
        fprintf(stderr, "kofka metrics: cannot write %s: %s (reported once)\n", m.path, why);
    }
    pthread_mutex_unlock(&m.write_lock);
    free(tmp);
    free(t.data);
    return rc;
}

static void *writer_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&m.wake_lock);
    while (!m.stop) {
        struct timespec at;
        clock_gettime(CLOCK_MONOTONIC, &at);
        at.tv_sec += (time_t)(m.interval_ms / 1000);
        at.tv_nsec += (long)(m.interval_ms % 1000) * 1000000L;
        if (at.tv_nsec >= 1000000000L) { at.tv_sec++; at.tv_nsec -= 1000000000L; }
        while (!m.stop && pthread_cond_timedwait(&m.wake, &m.wake_lock, &at) != ETIMEDOUT) {}
        if (m.stop) break;
        pthread_mutex_unlock(&m.wake_lock);
        write_file();
        pthread_mutex_lock(&m.wake_lock);
    }
    pthread_mutex_unlock(&m.wake_lock);
    return NULL;
}

/** In a child forked after init: the writer thread does not exist there, a lock may have been
 *  held at the fork by a thread that is gone (a hook counting, the writer formatting), and the
 *  file is the parent's to write. The child keeps counting in memory and writes nothing. */
static void after_fork_in_child(void) {
    m.running = 0;
    m.forked = 1;
    pthread_mutex_init(&m.lock, NULL);
    pthread_mutex_init(&m.write_lock, NULL);
    pthread_mutex_init(&m.wake_lock, NULL);
}

/** At process exit (or if the library is ever unloaded): stop the writer, write once more. */
__attribute__((destructor)) static void metrics_fini(void) {
    if (!m.initialised) return;
    if (m.running) {
        pthread_mutex_lock(&m.wake_lock);
        m.stop = 1;
        pthread_cond_broadcast(&m.wake);
        pthread_mutex_unlock(&m.wake_lock);
        pthread_join(m.thread, NULL);
        m.running = 0;
    }
    write_file();
}

/* ---- the entry point ----------------------------------------------------------- */

static kofka_err config_error(char *errstr, size_t size, const char *fmt, const char *a, const char *b) {
    if (errstr && size > 0) snprintf(errstr, size, fmt, a, b);
    return KOFKA_ERR_INVALID_CONFIG;
}

kofka_err kofka_plugin_init(const char *const *config, char *errstr, size_t errstr_size) {
    if (m.initialised) return KOFKA_OK;   /* the same image loaded under a second path */
    const char *path = NULL, *interval = NULL, *header = NULL;
    for (size_t i = 0; config && config[i] && config[i + 1]; i += 2) {
        const char *k = config[i], *v = config[i + 1];
        if (strncmp(k, "metrics.", 8) != 0) continue;
        if (strcmp(k, "metrics.path") == 0) path = v;
        else if (strcmp(k, "metrics.interval.ms") == 0) interval = v;
        else if (strcmp(k, "metrics.latency.header") == 0) header = v;
        else
            return config_error(errstr, errstr_size,
                                "unknown config key '%s' (the metrics plugin knows metrics.path, metrics.interval.ms, "
                                "metrics.latency.header)%s", k, "");
    }
    int64_t interval_ms = 10000;
    if (interval) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(interval, &end, 10);
        if (errno || !*interval || *end || v < 0 || v > 86400000)
            return config_error(errstr, errstr_size,
                                "invalid value '%s' for config key 'metrics.interval.ms': expected 0 .. 86400000%s",
                                interval, "");
        interval_ms = v;
    }
    int latency_header = 1;
    if (header) {
        if (strcmp(header, "true") == 0) latency_header = 1;
        else if (strcmp(header, "false") == 0) latency_header = 0;
        else
            return config_error(errstr, errstr_size,
                                "invalid value '%s' for config key 'metrics.latency.header': expected true or false%s",
                                header, "");
    }
    if (path) {
        if (!*path) return config_error(errstr, errstr_size, "config key 'metrics.path' is empty%s%s", "", "");
        char *dir = strdup(path);
        if (!dir) return KOFKA_ERR_INVALID_CONFIG;
        char *slash = strrchr(dir, '/');
        if (slash == dir) slash[1] = '\0';
        else if (slash) *slash = '\0';
        else strcpy(dir, ".");
        int writable = access(dir, W_OK) == 0;
        kofka_err e = writable ? KOFKA_OK
                               : config_error(errstr, errstr_size,
                                              "invalid value '%s' for config key 'metrics.path': its folder '%s' "
                                              "does not exist or is not writable", path, dir);
        free(dir);
        if (e != KOFKA_OK) return e;
        m.path = strdup(path);
        if (!m.path) return KOFKA_ERR_INVALID_CONFIG;
    }
    m.interval_ms = interval_ms;
    m.latency_header = latency_header;
    if (pthread_key_create(&m.scratch_key, scratch_free) != 0) {
        if (errstr && errstr_size) snprintf(errstr, errstr_size, "metrics: no thread-local key left");
        return KOFKA_ERR_INVALID_ARG;
    }

    kofka_interceptors ic;
    memset(&ic, 0, sizeof ic);
    ic.struct_size = sizeof ic;
    ic.on_send = on_send;
    ic.on_acknowledgement = on_acknowledgement;
    ic.on_consume = on_consume;
    ic.on_commit = on_commit;
    ic.on_close = on_close;
    kofka_err e = kofka_interceptors_register("metrics", &ic);
    if (e != KOFKA_OK) {
        if (errstr && errstr_size) snprintf(errstr, errstr_size, "%s", kofka_last_error());
        return e;
    }
    m.initialised = 1;

    pthread_atfork(NULL, NULL, after_fork_in_child);
    if (m.path && m.interval_ms > 0) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&m.wake, &ca);
        pthread_condattr_destroy(&ca);
        /* The writer takes no signals: they belong to the application's threads. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        m.running = pthread_create(&m.thread, NULL, writer_main, NULL) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!m.running) fprintf(stderr, "kofka metrics: cannot start the writer thread; the file is written at close only\n");
    }
    return KOFKA_OK;
}
