/// The turn an idempotent producer's requests take one at a time, so that sequence numbers
/// reach the broker in order — and the pauses between retries.
///
/// A turn is waited for on a condition variable; no mutex is held while the turn is held, so a
/// sender in its retry backoff never blocks `produce`, `poll`, `flush` or `close` on other
/// threads. `interrupt()` (on close) wakes every waiter and cuts every pause short.
final class Sequencer: @unchecked Sendable {
    private let monitor = Monitor()
    // Guarded by `monitor`.
    private var held = false
    private var interrupted = false

    /// Waits for the turn. Throws `.closed` once interrupted.
    func acquire() throws {
        try monitor.locked {
            while held && !interrupted { monitor.wait(timeoutNs: nil) }
            if interrupted { throw KofkaError(.closed, "the producer is closed") }
            held = true
        }
    }

    /// Gives the turn to the next waiter.
    func release() {
        monitor.locked {
            held = false
            monitor.broadcast()
        }
    }

    /// Runs `body` holding the turn.
    func withTurn<T>(_ body: () throws -> T) throws -> T {
        try acquire()
        defer { release() }
        return try body()
    }

    /// Sleeps `ms` milliseconds of real time (a retry backoff) unless interrupted first.
    /// Returns false when interrupted.
    func pause(ms: Int) -> Bool {
        let deadline = monoNs() &+ UInt64(max(0, ms)) * 1_000_000
        return monitor.locked {
            while !interrupted {
                let now = monoNs()
                if now >= deadline { return true }
                monitor.wait(timeoutNs: deadline - now)
            }
            return false
        }
    }

    /// Wakes every waiter; from now on `acquire` throws and `pause` returns at once.
    func interrupt() {
        monitor.locked {
            interrupted = true
            monitor.broadcast()
        }
    }
}
