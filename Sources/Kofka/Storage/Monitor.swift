#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A pthread mutex with a condition variable whose timed waits run on `CLOCK_MONOTONIC`
/// (on Linux), so a wall-clock jump neither shortens nor extends a wait.
final class Monitor: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        cond = .allocate(capacity: 1)
        cond.initialize(to: pthread_cond_t())
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        #if os(Linux)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        #endif
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }

    @inline(__always)
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Wakes every thread in `wait`. Call with or without the lock held.
    func broadcast() { pthread_cond_broadcast(cond) }

    /// Runs `body` with the mutex held.
    @inline(__always)
    func locked<T>(_ body: () throws -> T) rethrows -> T { try withLock(body) }

    /// With the lock held: waits until a broadcast, `timeoutNs` nanoseconds (nil = no limit;
    /// waits are capped at a day), or a spurious wakeup. Callers re-check their condition.
    func wait(timeoutNs: UInt64?) {
        let ns = min(timeoutNs ?? 86_400_000_000_000, 86_400_000_000_000)
        guard ns > 0 else { return }
        var ts = timespec()
        #if os(Linux)
        clock_gettime(CLOCK_MONOTONIC, &ts)
        #else
        clock_gettime(CLOCK_REALTIME, &ts)
        #endif
        var nsec = Int(ts.tv_nsec) + Int(ns % 1_000_000_000)
        var sec = Int(ts.tv_sec) + Int(ns / 1_000_000_000)
        if nsec >= 1_000_000_000 { nsec -= 1_000_000_000; sec += 1 }
        ts.tv_sec = .init(sec)
        ts.tv_nsec = .init(nsec)
        pthread_cond_timedwait(cond, mutex, &ts)
    }
}

/// State that lives inside its lock: the only way to the value is `withLock`, so it cannot be
/// read or changed without holding the lock (like the standard library's `Mutex` or swift-nio's
/// `NIOLockedValueBox`). Built on a pthread mutex, which ThreadSanitizer understands; never
/// held while waiting (use a `Monitor` where a thread must wait).
package final class Locked<Value>: @unchecked Sendable {
    /// The value, out of line: the mutex already makes every access exclusive, so a pointer
    /// spares each access the runtime's exclusivity check that a stored property of a class
    /// costs (a begin and an end access per call, on every poll and produce).
    @usableFromInline let value: UnsafeMutablePointer<Value>
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>

    package init(_ value: Value) {
        self.value = .allocate(capacity: 1)
        self.value.initialize(to: value)
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        value.deinitialize(count: 1)
        value.deallocate()
    }

    /// Runs `body` on the value with the lock held. Inlinable, so the other modules (the C
    /// face's handle and message registries, on every call) get it specialised, not generic.
    @inlinable @inline(__always)
    package func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}
