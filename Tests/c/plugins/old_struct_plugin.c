/*
 * old_struct_plugin.c — a plugin built against an older kofka.h whose kofka_interceptors ended
 * after on_acknowledgement (no on_consume, on_commit, on_close). Its struct is placed so that
 * it ends exactly where an unreadable page begins: if Kofka read one byte past struct_size,
 * the process would die of SIGSEGV. Used by Tests/c/test_plugin_example.c.
 */
#define _GNU_SOURCE
#include <kofka.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/mman.h>
#include <unistd.h>

/** kofka_interceptors as the older header declared it. */
typedef struct kofka_interceptors_v1 {
    size_t struct_size;
    void *opaque;
    void (*on_send)(void *opaque, const char *topic, kofka_record *record);
    void (*on_acknowledgement)(void *opaque, const char *topic, const kofka_record *record);
} kofka_interceptors_v1;

atomic_long old_struct_seen[2];   /* sends, acknowledgements */
void *old_struct_opaque_seen;     /* the opaque the hooks were given */

static void on_send(void *o, const char *topic, kofka_record *r) {
    (void)topic, (void)r;
    old_struct_opaque_seen = o;
    old_struct_seen[0]++;
}

static void on_ack(void *o, const char *topic, const kofka_record *r) {
    (void)o, (void)topic, (void)r;
    old_struct_seen[1]++;
}

/** A v1 struct whose last byte is the last readable byte before a PROT_NONE page. */
kofka_interceptors_v1 *old_struct_at_page_end(void) {
    long page = sysconf(_SC_PAGESIZE);
    char *p = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (mprotect(p + page, (size_t)page, PROT_NONE) != 0) return NULL;
    kofka_interceptors_v1 *ic = (kofka_interceptors_v1 *)(p + page - sizeof(kofka_interceptors_v1));
    ic->struct_size = sizeof *ic;
    ic->opaque = ic;
    ic->on_send = on_send;
    ic->on_acknowledgement = on_ack;
    return ic;
}

kofka_err kofka_plugin_init(const char *const *config, char *errstr, size_t errstr_size) {
    (void)config, (void)errstr, (void)errstr_size;
    kofka_interceptors_v1 *ic = old_struct_at_page_end();
    if (!ic) return KOFKA_ERR_INVALID_ARG;
    return kofka_interceptors_register("old-struct", (const kofka_interceptors *)(const void *)ic);
}
