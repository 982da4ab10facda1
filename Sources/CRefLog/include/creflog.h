#ifndef CREFLOG_H
#define CREFLOG_H
/* A minimal in-memory log: one malloc + memcpy per record into a growing array of pointers.
 * The physical-limit reference for Kofka's memory backend in `kofka-bench run`. Not thread-safe. */
#include <stddef.h>
#include <stdint.h>

typedef struct creflog creflog;

creflog *creflog_new(void);
void creflog_free(creflog *log);
/* Appends a copy of len bytes; returns the record's offset, or -1 when out of memory. */
int64_t creflog_append(creflog *log, const void *data, size_t len);
/* Appends count records (data[i], lens[i]); returns the first offset, or -1. */
int64_t creflog_append_batch(creflog *log, const void *const *data, const size_t *lens, size_t count);
int64_t creflog_count(const creflog *log);
/* Reads records [from, from+max) copying each out into a fresh malloc'd buffer that is then freed
 * (what a consumer handing out owned copies does); returns how many were read and adds their
 * bytes to *bytes. */
int64_t creflog_read_copy(const creflog *log, int64_t from, int64_t max, uint64_t *bytes);

#endif
