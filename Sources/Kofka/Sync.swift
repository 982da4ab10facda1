#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Monitor {
    /// Runs `body` with the mutex held.
    @inline(__always)
    func locked<T>(_ body: () throws -> T) rethrows -> T { try withLock(body) }

    /// With the lock held: waits until a broadcast or `deadline` (monotonic ns; nil = an hour).
    func wait(untilNs deadline: UInt64?) { wait(until: instant(fromNs: deadline)) }
}

/// Monotonic time in nanoseconds.
@inline(__always)
func monoNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Converts a monotonic-ns deadline to a `ContinuousClock.Instant` (for `StorageBackend.waitForChange`).
func instant(fromNs deadline: UInt64?) -> ContinuousClock.Instant {
    let now = monoNs()
    guard let deadline else { return .now.advanced(by: .seconds(3600)) }
    if deadline <= now { return .now }
    return .now.advanced(by: .nanoseconds(Int64(deadline - now)))
}

func sleepMs(_ ms: Int) {
    guard ms > 0 else { return }
    var ts = timespec(tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000)
    var rem = timespec()
    while nanosleep(&ts, &rem) != 0 { ts = rem }
}

/// Starts a detached background thread running `body`.
func startThread(_ body: @escaping @Sendable () -> Void) {
    final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var tid = pthread_t()
    let rc = pthread_create(&tid, nil, { arg in
        guard let arg else { return nil }
        let box = Unmanaged<Box>.fromOpaque(arg).takeRetainedValue()
        box.body()
        return nil
    }, box)
    if rc == 0 {
        pthread_detach(tid)
    } else {
        // Could not start a thread: run inline so no work is lost.
        Unmanaged<Box>.fromOpaque(box).takeRetainedValue().body()
    }
}

/// A small, seedable pseudo-random generator (SplitMix64) so fault runs repeat.
struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// A double in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
