import CKofkaShims
#if canImport(Glibc)
import Glibc
#endif

/// A cross-process doorbell for a shared storage file: one 32-bit counter in a small file beside
/// it (`PATH-bell`), mapped shared by every process that opens the storage. A writer rings it
/// after each commit (an atomic increment and a futex wake); a waiting poll sleeps on the futex
/// and wakes within microseconds of another process's commit, and an idle waiter costs nothing.
///
/// Why a futex in shared memory: it is the kernel's own cross-process wait queue (what
/// process-shared pthread mutexes are built on), needs no extra thread, socket or file watch,
/// leaves nothing behind when a process dies (a counter cannot be left "locked"), and works on
/// any local file system. Where it is unavailable (the file cannot be mapped, or no futex), the
/// storage falls back to polling its own change counter.
final class Doorbell: @unchecked Sendable {
    private let word: UnsafeMutablePointer<UInt32>
    private let mapping: UnsafeMutableRawPointer
    private let size = 4096

    /// Maps `path` (created if missing, sized to one page); nil when that is not possible.
    init?(path: String) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        if st.st_size < size, ftruncate(fd, off_t(size)) != 0 { return nil }
        guard let m = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), m != MAP_FAILED else { return nil }
        mapping = m
        word = m.assumingMemoryBound(to: UInt32.self)
    }

    deinit { munmap(mapping, size) }

    /// The counter now.
    var value: UInt32 { kofka_doorbell_read(word) }

    /// After a commit: moves the counter and wakes every waiter, in every process.
    func ring() {
        kofka_doorbell_ring(word)
        kofka_doorbell_wake(word)
    }

    /// Waits until the counter differs from `seen`, a ring, or `timeoutNs`; false when futexes
    /// are not available (the caller polls instead).
    func wait(seen: UInt32, timeoutNs: UInt64) -> Bool {
        kofka_doorbell_wait(word, seen, timeoutNs) == 0
    }
}
