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

    /// With the lock held: waits until a broadcast, `deadline`, or a spurious wakeup.
    func wait(until deadline: ContinuousClock.Instant) {
        let remaining = ContinuousClock.now.duration(to: deadline)
        guard remaining > .zero else { return }
        let capped = min(remaining, .seconds(86_400))
        let (seconds, attoseconds) = capped.components
        var ts = timespec()
        #if os(Linux)
        clock_gettime(CLOCK_MONOTONIC, &ts)
        #else
        clock_gettime(CLOCK_REALTIME, &ts)
        #endif
        var nsec = Int(ts.tv_nsec) + Int(attoseconds / 1_000_000_000)
        var sec = Int(ts.tv_sec) + Int(seconds)
        if nsec >= 1_000_000_000 { nsec -= 1_000_000_000; sec += 1 }
        ts.tv_sec = .init(sec)
        ts.tv_nsec = .init(nsec)
        pthread_cond_timedwait(cond, mutex, &ts)
    }
}

/// Compares strings by their UTF-8 bytes, the order `StorageReader.scan` promises
/// (and SQLite's BINARY collation uses).
@inline(__always)
func utf8Less(_ a: String, _ b: String) -> Bool {
    a.utf8.lexicographicallyPrecedes(b.utf8)
}

/// Throws `.invalidArg` unless `pnum` is a valid partition number.
@inline(__always)
func checkPartitionNumber(_ pnum: Int64) throws {
    guard pnum >= 0, pnum < StorageLimits.maxPartitionNumbers else {
        throw KofkaError(.invalidArg, "partition number \(pnum) is outside 0..<\(StorageLimits.maxPartitionNumbers)")
    }
}

/// Throws `.storage` if appending `count` records at `base` would exceed the offset space.
@inline(__always)
func checkOffsetSpace(_ pnum: Int64, base: Int64, count: Int) throws {
    guard Int64(count) <= (Int64(1) << StorageLimits.offsetBits) - base else {
        throw KofkaError(.storage, "partition \(pnum) is full: \(base) + \(count) records exceed 2^\(StorageLimits.offsetBits) offsets")
    }
}
