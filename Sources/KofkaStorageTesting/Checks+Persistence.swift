import Kofka
import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A persistent store: what survives close and reopen, and two handles on one store (as two
/// processes sharing it have). Skipped for a factory that cannot reopen.
extension StorageConformance {
    static let persistenceChecks: [Check] = [
        Check("dataPersistsAcrossCloseAndReopen",
              "Records (with their transaction), key/values and the high watermark survive close and reopen; appends go on where they stopped.", needs: .reopen) { c in
            let first = try c.make()
            try first.write { w in
                _ = try w.append(4, Fixtures.batch(3), txn: 5)
                try w.put("topic/a", [1, 2, 3])
            }
            first.close()
            let s = try c.reopen(first)
            try s.read { r throws in
                c.equal(try r.highWatermark(4), 3)
                c.equal(try r.readRecords(4, from: 0, below: 10, maxCount: 10).map(\.txn), [5, 5, 5])
                c.equal(try r.readRecords(4, from: 0, below: 10, maxCount: 10).map(\.data), Fixtures.batch(3))
                c.equal(try r.get("topic/a"), [1, 2, 3])
            }
            c.equal(try s.write { try $0.append(4, Fixtures.batch(1), txn: 0) }, 3)
        },

        Check("theLogStartGapsAndBytesPersistAcrossReopen",
              "After truncateLog and removeRecords, a reopened store has the same log start, gaps, bytes held and high watermark.", needs: .reopen) { c in
            let first = try c.make()
            _ = try first.write { try $0.append(2, Fixtures.sized(8, size: 4), txn: 0) }
            _ = try first.write { try $0.truncateLog(2, before: 3) }
            try first.write { try $0.removeRecords(2, at: [5]) }
            first.close()
            let s = try c.reopen(first)
            c.equal(try Fixtures.heldOffsets(s, 2), [3, 4, 6, 7])
            try s.read { r throws in
                c.equal(try r.logStartOffset(2), 3)
                c.equal(try r.highWatermark(2), 8)
                c.equal(try r.logBytes(2), 16)
            }
        },

        Check("twoHandlesOnOneStoreSeeEachOthersWrites",
              "Two handles open on one store (as two processes) see each other's commits: data, change token (within 1 s), and a waiter on one wakes within 1 s of a commit through the other.", needs: .reopen) { c in
            let a = try c.make()
            let b = try c.reopen(a)
            let tb = b.changeToken()
            _ = try a.write { try $0.append(0, Fixtures.batch(2), txn: 0) }
            // A backend whose notifications travel (PostgreSQL's NOTIFY) may move the token a
            // little after the commit; it must move, and soon.
            let moveDeadline = ContinuousClock.now + .seconds(1)
            while b.changeToken() == tb && ContinuousClock.now < moveDeadline { usleep(1_000) }
            c.expect(b.changeToken() != tb, "b's change token moved within 1 s of a's commit")
            c.equal(try b.read { try $0.highWatermark(0) }, 2)
            c.equal(try b.write { try $0.append(0, Fixtures.batch(3), txn: 0) }, 2)
            c.equal(try a.read { try $0.readRecords(0, from: 0, below: 10, maxCount: 10).count }, 5)

            // b's waiter notices a's commit within milliseconds.
            let t = b.changeToken()
            let clock = ContinuousClock()
            let start = clock.now
            let group = DispatchGroup()
            let committedAt = Locked<ContinuousClock.Instant?>(nil)   // timed from the commit: a loaded run may start the writer late
            DispatchQueue.global().async(group: group) {
                usleep(30_000)
                _ = try? a.write { try $0.put("x", [1]) }
                committedAt.withLock { $0 = clock.now }
            }
            while b.changeToken() == t, clock.now - start < .seconds(5) {
                b.waitForChange(since: t, timeoutNs: 5_000_000_000)
            }
            let sawAt = clock.now
            group.wait()
            c.expect(b.changeToken() != t, "b never saw a's commit")
            let lag = committedAt.withLock { $0 }.map { sawAt - $0 } ?? (sawAt - start)
            c.expect(lag < .seconds(1), "b saw a's commit \(lag) after it")
        },

        Check("concurrentWritersThroughTwoHandlesGetDenseOffsets",
              "Eight threads writing through two handles on one store exclude each other: dense, distinct offsets.", needs: .reopen) { c in
            let first = try c.make()
            let stores = [first, try c.reopen(first)]
            let results = ThreadResults()
            DispatchQueue.concurrentPerform(iterations: 8) { t in
                for _ in 0..<20 {
                    do { results.add(try stores[t % 2].write { try $0.append(1, Fixtures.batch(3), txn: 0) }) }
                    catch { results.fail("\(error)") }
                }
            }
            c.equal(results.errors.count, 0, "errors: \(results.errors.prefix(3))")
            c.equal(results.bases.sorted(), (0..<160).map { Int64($0 * 3) })
            c.equal(try stores[0].read { try $0.readRecords(1, from: 0, below: 1000, maxCount: 1000).map(\.offset) }, Array(0..<480))
        },
    ]
}
