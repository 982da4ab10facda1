/*
 * count_plugin.c — a complete Kofka interceptor plugin: counts every send, acknowledgement,
 * consume, commit and close it sees, and prints the counts when a broker closes.
 *
 *   cc -shared -fPIC -I PREFIX/include count_plugin.c -o libcount_plugin.so    (no -lkofka)
 *   broker config: {"plugin.library.paths", "/path/to/libcount_plugin.so", NULL}
 */
#include <kofka.h>
#include <stdatomic.h>
#include <stdio.h>

/* Hooks run on many threads at once, so the counts are atomic. */
enum { SENT, ACKED, CONSUMED, COMMITTED, CLOSED };
atomic_long count_plugin_seen[5];

static void on_send(void *o, const char *topic, kofka_record *r) { (void)o, (void)topic, (void)r; count_plugin_seen[SENT]++; }
static void on_ack(void *o, const char *topic, const kofka_record *r) { (void)o, (void)topic, (void)r; count_plugin_seen[ACKED]++; }
static void on_consume(void *o, const kofka_message *m) { (void)o, (void)m; count_plugin_seen[CONSUMED]++; }

static void on_commit(void *o, const char *group, const char *topic, int32_t partition, int64_t offset, kofka_err err) {
    (void)o, (void)group, (void)topic, (void)partition, (void)offset, (void)err;
    count_plugin_seen[COMMITTED]++;
}

static void on_close(void *o) {
    (void)o;
    count_plugin_seen[CLOSED]++;
    printf("count_plugin: %ld sent, %ld acknowledged, %ld consumed, %ld commits\n", (long)count_plugin_seen[SENT],
           (long)count_plugin_seen[ACKED], (long)count_plugin_seen[CONSUMED], (long)count_plugin_seen[COMMITTED]);
}

/* Kofka calls this once, when it loads the library; the struct is copied. */
kofka_err kofka_plugin_init(const char *const *config, char *errstr, size_t errstr_size) {
    (void)config, (void)errstr, (void)errstr_size;
    kofka_interceptors ic = {.struct_size = sizeof ic, .on_send = on_send, .on_acknowledgement = on_ack,
                             .on_consume = on_consume, .on_commit = on_commit, .on_close = on_close};
    return kofka_interceptors_register("count", &ic);
}
