/* kofka_shims.h — the few system calls Swift cannot make directly (variadic syscall). Hidden:
 * internal to the library, not part of its C ABI. */
#ifndef KOFKA_SHIMS_H
#define KOFKA_SHIMS_H
#include <stdint.h>

/* Atomically adds 1 to *word (shared between processes through a file mapping); returns the new value. */
__attribute__((visibility("hidden"))) uint32_t kofka_doorbell_ring(uint32_t *word);
/* The current value of *word (an acquire load). */
__attribute__((visibility("hidden"))) uint32_t kofka_doorbell_read(const uint32_t *word);
/* Stores v in *word with release ordering (a word a binding reads without calling in). */
__attribute__((visibility("hidden"))) void kofka_store_release_i32(int32_t *word, int32_t v);
/* Wakes every process and thread waiting on word (FUTEX_WAKE on a shared mapping). */
__attribute__((visibility("hidden"))) void kofka_doorbell_wake(uint32_t *word);
/* Waits until *word differs from seen, a wake, or timeout_ns; returns 0, or -1 where futexes
 * are unavailable (the caller then polls). */
__attribute__((visibility("hidden"))) int kofka_doorbell_wait(uint32_t *word, uint32_t seen, uint64_t timeout_ns);

#endif
