import Testing
@testable import Kofka

/// The conformance suite's part on deletion (the storage calls retention and compaction need),
/// run against every backend.
extension StorageConformanceTests {
    /// Records `v0`…`v(n-1)` of `size` bytes each (value only).
    static func sized(_ n: Int, size: Int, from: Int = 0) -> [RecordData] {
        (from..<from + n).map { i in rec(Int64(i), nil, Array(repeating: UInt8(truncatingIfNeeded: i), count: size)) }
    }

    static func heldOffsets(_ s: any StorageBackend, _ pnum: Int64) throws -> [Int64] {
        try s.read { try $0.readRecords(pnum, from: 0, below: 1 << 40, maxCount: 1 << 20).map(\.offset) }
    }

    @Test(arguments: kinds)
    func truncateLogMovesTheLogStartDeletesBelowItAndNeverMovesTheHighWatermark(kind: String) throws {
        let f = try Self.make(kind); defer { f.cleanup() }
        _ = try f.storage.write { try $0.append(3, Self.sized(4, size: 10), txn: 0) }
        _ = try f.storage.write { try $0.append(3, Self.sized(6, size: 10, from: 4), txn: 0) }
        try f.storage.read { r throws in
            #expect(try r.logStartOffset(3) == 0)
            #expect(try r.logBytes(3) == 100)
            #expect(try r.logStartOffset(99) == 0)
            #expect(try r.logBytes(99) == 0)
        }
        // a cut inside the first batch, then one inside the second
        #expect(try f.storage.write { try $0.truncateLog(3, before: 2) } == 2)
        #expect(try Self.heldOffsets(f.storage, 3) == Array(2..<10))
        #expect(try f.storage.read { try $0.logBytes(3) } == 80)
        #expect(try f.storage.write { try $0.truncateLog(3, before: 6) } == 6)
        #expect(try f.storage.write { try $0.truncateLog(3, before: 1) } == 6, "below the log start: nothing changes")
        #expect(try Self.heldOffsets(f.storage, 3) == Array(6..<10))
        try f.storage.read { r throws in
            #expect(try r.logStartOffset(3) == 6)
            #expect(try r.logBytes(3) == 40)
            #expect(try r.readRecords(3, from: 0, below: 100, maxCount: 2).map(\.offset) == [6, 7])
        }
        // past the high watermark: clamped; everything goes, the high watermark stays
        #expect(try f.storage.write { try $0.truncateLog(3, before: 1000) } == 10)
        try f.storage.read { r throws in
            #expect(try r.highWatermark(3) == 10)
            #expect(try r.logStartOffset(3) == 10)
            #expect(try r.logBytes(3) == 0)
        }
        #expect(try f.storage.write { try $0.append(3, Self.sized(1, size: 7), txn: 0) } == 10)
        #expect(try Self.heldOffsets(f.storage, 3) == [10])
        #expect(try f.storage.read { try $0.logBytes(3) } == 7)
    }

    @Test(arguments: kinds)
    func removeRecordsLeavesGapsThatReadsSkipAndMaxCountCountsRecordsHeld(kind: String) throws {
        let f = try Self.make(kind); defer { f.cleanup() }
        _ = try f.storage.write { try $0.append(0, Self.sized(5, size: 3), txn: 7) }
        _ = try f.storage.write { try $0.append(0, Self.sized(5, size: 3, from: 5), txn: 0) }
        try f.storage.write { try $0.removeRecords(0, at: [1, 2, 5, 8, 42]) }
        #expect(try Self.heldOffsets(f.storage, 0) == [0, 3, 4, 6, 7, 9])
        try f.storage.read { r throws in
            #expect(try r.logBytes(0) == 18)
            #expect(try r.highWatermark(0) == 10)
            #expect(try r.logStartOffset(0) == 0)
            #expect(try r.readRecords(0, from: 1, below: 10, maxCount: 3).map(\.offset) == [3, 4, 6])
            #expect(try r.readRecords(0, from: 5, below: 9, maxCount: 10).map(\.offset) == [6, 7])
            let rs = try r.readRecords(0, from: 0, below: 10, maxCount: 10)
            #expect(rs.map(\.txn) == [7, 7, 7, 0, 0, 0])
            #expect(rs.map { $0.data.value?.first } == [0, 3, 4, 6, 7, 9].map { UInt8($0) })
        }
        // a cut through a compacted batch
        #expect(try f.storage.write { try $0.truncateLog(0, before: 4) } == 4)
        #expect(try Self.heldOffsets(f.storage, 0) == [4, 6, 7, 9])
        #expect(try f.storage.read { try $0.logBytes(0) } == 12)
        #expect(try f.storage.write { try $0.append(0, Self.sized(1, size: 3, from: 10), txn: 0) } == 10)
    }

    @Test(arguments: kinds)
    func deletionsInsideAWriteThatThrowsAreUndone(kind: String) throws {
        let f = try Self.make(kind); defer { f.cleanup() }
        _ = try f.storage.write { try $0.append(0, Self.sized(6, size: 2), txn: 0) }
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try f.storage.write { w in
                _ = try w.truncateLog(0, before: 2)
                try w.removeRecords(0, at: [3, 4])
                _ = try w.append(0, Self.sized(2, size: 2, from: 6), txn: 0)
                throw Boom()
            }
        }
        #expect(try Self.heldOffsets(f.storage, 0) == Array(0..<6))
        try f.storage.read { r throws in
            #expect(try r.logStartOffset(0) == 0)
            #expect(try r.logBytes(0) == 12)
            #expect(try r.highWatermark(0) == 6)
        }
    }

    @Test func sqliteKeepsTheLogStartAndGapsAcrossReopen() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        do {
            let s = try makeSQLite(path)
            _ = try s.write { try $0.append(2, Self.sized(8, size: 4), txn: 0) }
            _ = try s.write { try $0.truncateLog(2, before: 3) }
            try s.write { try $0.removeRecords(2, at: [5]) }
            s.close()
        }
        let s = try makeSQLite(path)
        defer { s.close() }
        #expect(try Self.heldOffsets(s, 2) == [3, 4, 6, 7])
        try s.read { r throws in
            #expect(try r.logStartOffset(2) == 3)
            #expect(try r.highWatermark(2) == 8)
            #expect(try r.logBytes(2) == 16)
        }
    }
}
