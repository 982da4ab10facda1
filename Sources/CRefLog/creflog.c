#include "creflog.h"
#include <stdlib.h>
#include <string.h>

typedef struct entry { size_t len; unsigned char data[]; } entry;

struct creflog { entry **items; int64_t count, cap; };

creflog *creflog_new(void) { return calloc(1, sizeof(creflog)); }

void creflog_free(creflog *log) {
    if (!log) return;
    for (int64_t i = 0; i < log->count; i++) free(log->items[i]);
    free(log->items);
    free(log);
}

int64_t creflog_append(creflog *log, const void *data, size_t len) {
    if (log->count == log->cap) {
        int64_t cap = log->cap ? log->cap * 2 : 1024;
        entry **items = realloc(log->items, (size_t)cap * sizeof *items);
        if (!items) return -1;
        log->items = items;
        log->cap = cap;
    }
    entry *e = malloc(sizeof *e + len);
    if (!e) return -1;
    e->len = len;
    if (len) memcpy(e->data, data, len);
    log->items[log->count] = e;
    return log->count++;
}

int64_t creflog_append_batch(creflog *log, const void *const *data, const size_t *lens, size_t count) {
    int64_t first = log->count;
    for (size_t i = 0; i < count; i++)
        if (creflog_append(log, data[i], lens[i]) < 0) return -1;
    return first;
}

int64_t creflog_count(const creflog *log) { return log->count; }

static volatile unsigned char creflog_sink;

int64_t creflog_read_copy(const creflog *log, int64_t from, int64_t max, uint64_t *bytes) {
    int64_t n = 0;
    for (int64_t i = from; i < log->count && n < max; i++, n++) {
        const entry *e = log->items[i];
        unsigned char *copy = malloc(e->len ? e->len : 1);
        if (!copy) return n;
        memcpy(copy, e->data, e->len);
        if (e->len) creflog_sink ^= copy[e->len - 1];   /* use the copy so it is not elided */
        *bytes += e->len;
        free(copy);
    }
    return n;
}
