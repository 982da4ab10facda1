#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The one clock Kofka's rules read.
///
/// Two readings, always taken from the same source so they move together:
/// * **monotonic** nanoseconds, for intervals and deadlines inside one process (poll and flush
///   timeouts, heartbeat intervals, retry backoff, `delivery.timeout.ms`, `linger.ms`);
/// * **wall** milliseconds since the Unix epoch, for everything stored and compared across
///   processes (record timestamps, group heartbeats and `session.timeout.ms`, transaction
///   deadlines and `transaction.timeout.ms`).
///
/// A broker has one (`Broker.clock`); its producers and consumers read it and nothing else.
/// Tests and the schedule explorer give a broker a `SteppedClock` to make a stall past a
/// timeout happen instantly and repeatably.
package protocol TimeSource: Sendable {
    /// Monotonic time in nanoseconds.
    func monotonicNs() -> UInt64
    /// Milliseconds since the Unix epoch.
    func wallMs() -> Int64
    /// `monotonicNs`, read cheaply and up to a few milliseconds behind (the kernel's tick): for
    /// checks whether a heartbeat or commit due in seconds has come, made once per record.
    func coarseMonotonicNs() -> UInt64
}

extension TimeSource {
    package func coarseMonotonicNs() -> UInt64 { monotonicNs() }
}

/// The system's clocks: `CLOCK_MONOTONIC` and `CLOCK_REALTIME`.
package struct SystemClock: TimeSource {
    package init() {}
    @inline(__always) package func monotonicNs() -> UInt64 { monoNs() }
    @inline(__always) package func wallMs() -> Int64 { nowMs() }
    package func coarseMonotonicNs() -> UInt64 {
        #if os(Linux)
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
        #else
        return monoNs()
        #endif
    }
}

/// The system's clocks shifted forward by an offset that only grows: `advance(ms:)` makes time
/// jump as if the process had stalled (a member misses its session, a transaction outlives its
/// timeout) without waiting for it. Waits still pass in real time, so blocking calls behave.
package final class SteppedClock: TimeSource {
    private let offsetNs = Atomic<UInt64>(0)

    package init() {}

    /// Moves both readings forward by `ms` milliseconds.
    package func advance(ms: Int64) {
        guard ms > 0 else { return }
        offsetNs.add(UInt64(ms) * 1_000_000, ordering: .relaxed)
    }

    /// How far the clock has been moved, in milliseconds.
    package var skewMs: Int64 { Int64(offsetNs.load(ordering: .relaxed) / 1_000_000) }

    package func monotonicNs() -> UInt64 { monoNs() &+ offsetNs.load(ordering: .relaxed) }
    package func wallMs() -> Int64 { nowMs() + Int64(offsetNs.load(ordering: .relaxed) / 1_000_000) }
}

/// Monotonic time in nanoseconds (`CLOCK_MONOTONIC`).
@inline(__always)
package func monoNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Milliseconds since the epoch, from the wall clock (`CLOCK_REALTIME`).
@inline(__always)
public func nowMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

extension TimeSource {
    /// A deadline `timeout` from now on this clock's monotonic reading (nil = none).
    @inline(__always)
    func deadline(after timeout: Duration?) -> UInt64? {
        timeout.map { monotonicNs() &+ $0.nanoseconds }
    }

    /// Nanoseconds from now until `deadline` (0 when it has passed; nil = no deadline).
    @inline(__always)
    func remainingNs(until deadline: UInt64?) -> UInt64? {
        guard let deadline else { return nil }
        let now = monotonicNs()
        return deadline > now ? deadline - now : 0
    }
}

extension Duration {
    /// The duration in whole nanoseconds (negative durations count as 0).
    var nanoseconds: UInt64 {
        let c = components
        return UInt64(max(0, c.seconds)) &* 1_000_000_000 &+ UInt64(max(0, c.attoseconds / 1_000_000_000))
    }
}
