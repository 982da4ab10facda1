/* kofka_shims.h — the few system calls Swift cannot make directly (variadic syscall). */
#ifndef KOFKA_SHIMS_H
#define KOFKA_SHIMS_H
#include <stdint.h>

/* Atomically adds 1 to *word (shared between processes through a file mapping); returns the new value. */
uint32_t kofka_doorbell_ring(uint32_t *word);
/* The current value of *word (an acquire load). */
uint32_t kofka_doorbell_read(const uint32_t *word);
/* Wakes every process and thread waiting on word (FUTEX_WAKE on a shared mapping). */
void kofka_doorbell_wake(uint32_t *word);
/* Waits until *word differs from seen, a wake, or timeout_ns; returns 0, or -1 where futexes
 * are unavailable (the caller then polls). */
int kofka_doorbell_wait(uint32_t *word, uint32_t seen, uint64_t timeout_ns);

#endif
