import Kofka

/// Deletion: the storage calls retention (truncateLog) and compaction (removeRecords) need.
extension StorageConformance {
    static let deletionChecks: [Check] = [
        Check("truncateLogMovesTheLogStartDeletesBelowItAndNeverMovesTheHighWatermark",
              "truncateLog deletes below the cut and makes it the log start (clamped to the high watermark; a cut at or below the start changes nothing); bytes held follow; appends go on at the high watermark.") { c in
            let s = try c.make()
            _ = try s.write { try $0.append(3, Fixtures.sized(4, size: 10), txn: 0) }
            _ = try s.write { try $0.append(3, Fixtures.sized(6, size: 10, from: 4), txn: 0) }
            try s.read { r throws in
                c.equal(try r.logStartOffset(3), 0)
                c.equal(try r.logBytes(3), 100)
                c.equal(try r.logStartOffset(99), 0, "a partition never written")
                c.equal(try r.logBytes(99), 0, "a partition never written")
            }
            // a cut inside the first batch, then one inside the second
            c.equal(try s.write { try $0.truncateLog(3, before: 2) }, 2)
            c.equal(try Fixtures.heldOffsets(s, 3), Array(2..<10))
            c.equal(try s.read { try $0.logBytes(3) }, 80)
            c.equal(try s.write { try $0.truncateLog(3, before: 6) }, 6)
            c.equal(try s.write { try $0.truncateLog(3, before: 1) }, 6, "below the log start: nothing changes")
            c.equal(try Fixtures.heldOffsets(s, 3), Array(6..<10))
            try s.read { r throws in
                c.equal(try r.logStartOffset(3), 6)
                c.equal(try r.logBytes(3), 40)
                c.equal(try r.readRecords(3, from: 0, below: 100, maxCount: 2).map(\.offset), [6, 7])
            }
            // past the high watermark: clamped; everything goes, the high watermark stays
            c.equal(try s.write { try $0.truncateLog(3, before: 1000) }, 10)
            try s.read { r throws in
                c.equal(try r.highWatermark(3), 10)
                c.equal(try r.logStartOffset(3), 10)
                c.equal(try r.logBytes(3), 0)
            }
            c.equal(try s.write { try $0.append(3, Fixtures.sized(1, size: 7), txn: 0) }, 10)
            c.equal(try Fixtures.heldOffsets(s, 3), [10])
            c.equal(try s.read { try $0.logBytes(3) }, 7)
        },

        Check("removeRecordsLeavesGapsThatReadsSkipAndMaxCountCountsRecordsHeld",
              "removeRecords leaves gaps that reads skip (maxCount counts records held), ignores offsets not held, and moves neither the log start nor the high watermark.") { c in
            let s = try c.make()
            _ = try s.write { try $0.append(0, Fixtures.sized(5, size: 3), txn: 7) }
            _ = try s.write { try $0.append(0, Fixtures.sized(5, size: 3, from: 5), txn: 0) }
            try s.write { try $0.removeRecords(0, at: [1, 2, 5, 8, 42]) }
            c.equal(try Fixtures.heldOffsets(s, 0), [0, 3, 4, 6, 7, 9])
            try s.read { r throws in
                c.equal(try r.logBytes(0), 18)
                c.equal(try r.highWatermark(0), 10)
                c.equal(try r.logStartOffset(0), 0)
                c.equal(try r.readRecords(0, from: 1, below: 10, maxCount: 3).map(\.offset), [3, 4, 6])
                c.equal(try r.readRecords(0, from: 5, below: 9, maxCount: 10).map(\.offset), [6, 7])
                let rs = try r.readRecords(0, from: 0, below: 10, maxCount: 10)
                c.equal(rs.map(\.txn), [7, 7, 7, 0, 0, 0])
                c.equal(rs.map { $0.data.value?.first }, [0, 3, 4, 6, 7, 9].map { UInt8($0) })
            }
            // a cut through a compacted batch
            c.equal(try s.write { try $0.truncateLog(0, before: 4) }, 4)
            c.equal(try Fixtures.heldOffsets(s, 0), [4, 6, 7, 9])
            c.equal(try s.read { try $0.logBytes(0) }, 12)
            c.equal(try s.write { try $0.append(0, Fixtures.sized(1, size: 3, from: 10), txn: 0) }, 10)
        },

        Check("deletionsInsideAWriteThatThrowsAreUndone",
              "A truncate, a remove and an append inside a write that throws are all undone: records, log start, bytes and high watermark as before.") { c in
            let s = try c.make()
            _ = try s.write { try $0.append(0, Fixtures.sized(6, size: 2), txn: 0) }
            struct Boom: Error {}
            c.throwsError(Boom.self) {
                try s.write { w in
                    _ = try w.truncateLog(0, before: 2)
                    try w.removeRecords(0, at: [3, 4])
                    _ = try w.append(0, Fixtures.sized(2, size: 2, from: 6), txn: 0)
                    throw Boom()
                }
            }
            c.equal(try Fixtures.heldOffsets(s, 0), Array(0..<6))
            try s.read { r throws in
                c.equal(try r.logStartOffset(0), 0)
                c.equal(try r.logBytes(0), 12)
                c.equal(try r.highWatermark(0), 6)
            }
        },
    ]
}
