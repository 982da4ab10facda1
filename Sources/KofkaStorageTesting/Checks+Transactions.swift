import Kofka
import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Write transactions as a whole: atomic undo, change notification, close.
extension StorageConformance {
    static let transactionChecks: [Check] = [
        Check("aWriteWhoseBodyThrowsLeavesNothingBehind",
              "A write whose body throws leaves no append, put or delete behind (while inside, it saw its own writes), and the next write lands where the failed one would have.") { c in
            struct Boom: Error {}
            let s = try c.make()
            try s.write { w throws in
                _ = try w.append(0, Fixtures.batch(2), txn: 0)
                try w.put("keep", [1])
                try w.put("gone", [2])
            }
            let token = s.changeToken()
            c.throwsError(Boom.self) {
                try s.write { w throws in
                    _ = try w.append(0, Fixtures.batch(5), txn: 7)
                    _ = try w.append(1, Fixtures.batch(5), txn: 7)
                    _ = try w.append(0, Fixtures.batch(1), txn: 7)
                    try w.put("keep", [9])
                    try w.put("new", [3])
                    try w.delete("gone")
                    c.equal(try w.highWatermark(0), 8, "inside the write, its own appends")
                    c.equal(try w.get("new"), [3], "inside the write, its own put")
                    throw Boom()
                }
            }
            try s.read { r throws in
                c.equal(try r.highWatermark(0), 2)
                c.equal(try r.highWatermark(1), 0)
                c.equal(try r.readRecords(0, from: 0, below: 100, maxCount: 100).count, 2)
                c.equal(try r.get("keep"), [1])
                c.equal(try r.get("gone"), [2])
                c.equal(try r.get("new"), nil)
                c.equal(try r.scan(from: "", to: "zzz").map(\.key), ["gone", "keep"])
            }
            // The next write lands where the failed one would have.
            c.equal(try s.write { try $0.append(0, Fixtures.batch(1), txn: 0) }, 2)
            c.expect(s.changeToken() != token, "the change token moved after a committed write")
        },

        Check("changeTokenChangesAfterAWriteAndWaitForChangeWakesPromptly",
              "The change token moves on a commit; a waiter blocked for 10 s wakes within 2 s of a commit on another thread, and of wakeAll.") { c in
            let storage = try c.make()
            let t0 = storage.changeToken()
            c.equal(storage.changeToken(), t0, "the token is stable while nothing happens")
            try storage.write { try $0.put("a", [1]) }
            let t1 = storage.changeToken()
            c.expect(t1 != t0, "the token moved after a write")

            // A waiter blocked for up to 10 s is woken by a commit on another thread. The lag is
            // timed from the commit, not from the start: a loaded test run may start the other
            // thread late, which says nothing about the backend.
            let group = DispatchGroup()
            let clock = ContinuousClock()
            let start = clock.now
            let committedAt = Locked<ContinuousClock.Instant?>(nil)
            DispatchQueue.global().async(group: group) {
                usleep(50_000)
                _ = try? storage.write { try $0.append(0, Fixtures.batch(1), txn: 0) }
                committedAt.withLock { $0 = clock.now }
            }
            var woke = false
            while clock.now - start < .seconds(10) {
                storage.waitForChange(since: t1, timeoutNs: 10_000_000_000)
                if storage.changeToken() != t1 { woke = true; break }
            }
            let wokeAt = clock.now
            group.wait()
            c.expect(woke, "the waiter saw the commit")
            let lag = committedAt.withLock { $0 }.map { wokeAt - $0 } ?? (wokeAt - start)
            c.expect(lag < .seconds(2), "woke \(lag) after the commit")

            // wakeAll releases a waiter even though nothing changed.
            let t2 = storage.changeToken()
            let wokenAt = Locked<ContinuousClock.Instant?>(nil)
            let wakeStart = clock.now
            DispatchQueue.global().async(group: group) {
                usleep(50_000)
                wokenAt.withLock { $0 = clock.now }
                storage.wakeAll()
            }
            storage.waitForChange(since: t2, timeoutNs: 10_000_000_000)
            let released = clock.now
            group.wait()
            let woken = wokenAt.withLock { $0 }.map { released - $0 } ?? (released - wakeStart)
            c.expect(woken < .seconds(2), "wakeAll released the waiter \(woken) after it was called")
        },

        Check("waitForChangeTimesOutWhenNothingChanges",
              "With no commit, waitForChange returns by its deadline (a caller's loop reaches it, not much later); a read changes nothing; a past deadline returns at once.") { c in
            let s = try c.make()
            let t = s.changeToken()
            let clock = ContinuousClock()
            let start = clock.now
            s.waitForChange(since: t, timeoutNs: 120_000_000)
            // Spurious early returns are allowed; a loop like every caller's must reach the deadline.
            while clock.now < start + .milliseconds(120), s.changeToken() == t {
                s.waitForChange(since: t, timeoutNs: 120_000_000)
            }
            let elapsed = clock.now - start
            c.equal(s.changeToken(), t, "nothing was written")
            c.expect(elapsed >= .milliseconds(120), "returned after \(elapsed)")
            c.expect(elapsed < .seconds(2), "returned after \(elapsed)")
            // A read-only transaction changes nothing.
            _ = try s.read { try $0.get("x") }
            c.equal(s.changeToken(), t, "a read moved the token")
            // A deadline in the past returns at once.
            let past = clock.now
            s.waitForChange(since: t, timeoutNs: 0)
            c.expect(clock.now - past < .milliseconds(100), "a zero timeout waited \(clock.now - past)")
        },

        Check("useAfterCloseThrowsClosed",
              "close is idempotent; afterwards read and write throw CLOSED, and changeToken and waitForChange return at once.") { c in
            let s = try c.make()
            try s.write { try $0.put("k", [1]) }
            s.close()
            s.close()   // idempotent
            c.throwsKofkaError(.closed, "a write after close") { try s.write { try $0.put("k", [2]) } }
            c.throwsKofkaError(.closed, "a read after close") { _ = try s.read { try $0.get("k") } }
            _ = s.changeToken()
            let now = ContinuousClock.now
            s.waitForChange(since: s.changeToken(), timeoutNs: 5_000_000_000)
            c.expect(ContinuousClock.now - now < .seconds(1), "waitForChange after close waited \(ContinuousClock.now - now)")
        },
    ]
}
