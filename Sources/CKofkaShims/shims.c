#define _GNU_SOURCE
#include "kofka_shims.h"
#include <errno.h>
#include <limits.h>
#include <time.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

uint32_t kofka_doorbell_ring(uint32_t *word) { return __atomic_add_fetch(word, 1, __ATOMIC_SEQ_CST); }

uint32_t kofka_doorbell_read(const uint32_t *word) { return __atomic_load_n(word, __ATOMIC_ACQUIRE); }

void kofka_store_release_i32(int32_t *word, int32_t v) { __atomic_store_n(word, v, __ATOMIC_RELEASE); }

void kofka_doorbell_wake(uint32_t *word) {
#ifdef __linux__
    /* not FUTEX_PRIVATE_FLAG: the word lives in a MAP_SHARED file mapping seen by other processes */
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
#else
    (void)word;
#endif
}

int kofka_doorbell_wait(uint32_t *word, uint32_t seen, uint64_t timeout_ns) {
#ifdef __linux__
    struct timespec ts = {(time_t)(timeout_ns / 1000000000ull), (long)(timeout_ns % 1000000000ull)};
    long rc = syscall(SYS_futex, word, FUTEX_WAIT, seen, &ts, NULL, 0);
    if (rc == 0 || errno == EAGAIN || errno == ETIMEDOUT || errno == EINTR) return 0;
    return -1;
#else
    (void)word; (void)seen; (void)timeout_ns;
    return -1;
#endif
}
