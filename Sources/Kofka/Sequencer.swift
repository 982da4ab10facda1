/// Pauses that another thread can cut short: a retry backoff that `close` ends, a background
/// cleaner's sleep that closing the broker ends. After `interrupt()` every pause returns at once.
class Interruptible: @unchecked Sendable {
    let monitor = Monitor()
    /// Guarded by `monitor`.
    var interrupted = false

    /// Sleeps `ms` milliseconds of real time unless interrupted first; false when interrupted.
    final func pause(ms: Int) -> Bool {
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

    /// Ends every pause, now and later.
    final func interrupt() {
        monitor.locked {
            interrupted = true
            monitor.broadcast()
        }
    }
}

/// The turn an idempotent producer's requests take one at a time, so that sequence numbers
/// reach the broker in order — and the pauses between retries.
///
/// A turn is waited for on a condition variable; no mutex is held while the turn is held, so a
/// sender in its retry backoff never blocks `produce`, `poll`, `flush` or `close` on other
/// threads. `interrupt()` (on close) wakes every waiter and cuts every pause short.
final class Sequencer: Interruptible, @unchecked Sendable {
    /// Guarded by `monitor`.
    private var held = false

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
}
