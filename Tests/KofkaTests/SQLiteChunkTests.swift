import Testing
import Dispatch
@testable import Kofka

/// The SQLite backend's log layout (schema version 3): one `chunks` row per appended batch,
/// split at `RecordChunk.maxBytes`; cuts and compaction rewrite only
/// the rows they touch; files of versions 1 and 2 are migrated when opened.
@Suite("SQLiteChunks")
struct SQLiteChunkTests {
    /// A `chunks` row as the file holds it (offsets relative to the partition).
    struct Row: Equatable, CustomStringConvertible {
        var first: Int64
        var last: Int64
        var n: Int64
        var bytes: Int64
        var txn: Int64 = 0
        /// Length of the packed blob.
        var blob: Int64
        var description: String { "[\(first)...\(last) n=\(n) bytes=\(bytes) txn=\(txn) blob=\(blob)]" }
        /// The blob's size when its offsets are dense, and when they are listed.
        var isDense: Bool { blob == 8 + n * 20 + bytes }
        var isListed: Bool { blob == 8 + n * 28 + bytes }
    }

    static func rows(_ path: String, _ pnum: Int64) throws -> [Row] {
        let c = try SQLiteConnection(path: path, busyTimeoutMs: 1000, synchronous: "NORMAL")
        defer { c.close() }
        return try c.integerRows("SELECT id - (\(pnum) << 40), last, n, bytes, txn, data FROM chunks WHERE id >> 40 = \(pnum) ORDER BY id")
            .map { Row(first: $0[0], last: $0[1], n: $0[2], bytes: $0[3], txn: $0[4], blob: $0[5]) }
    }

    static func rec(_ ts: Int64, _ key: [UInt8]?, _ value: [UInt8]?, _ headers: [UInt8]? = nil) -> RecordData {
        RecordData(timestampMs: ts, key: key, value: value, headers: headers)
    }

    static func held(_ s: any StorageBackend, _ pnum: Int64) throws -> [StoredRecord] {
        try s.read { try $0.readRecords(pnum, from: 0, below: 1 << 40, maxCount: 1 << 20) }
    }

    static func open(_ path: String) throws -> SQLiteStorage { try SQLiteStorage(path: path, synchronous: .normal) }

    // MARK: - Appending

    @Test func aSingleRecordIsOneSmallRowAndALargeBatchIsSplitAtTheRowBounds() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        let s = try Self.open(path); defer { s.close() }
        _ = try s.write { try $0.append(0, [Self.rec(5, [1], [2, 3])], txn: 0) }
        #expect(try Self.rows(path, 0) == [Row(first: 0, last: 0, n: 1, bytes: 3, blob: 8 + 20 + 3)])

        let big = ChunkFixtures.sized(10_000, size: 100, from: 1)
        #expect(try s.write { try $0.append(0, big, txn: 9) } == 1)
        let rows = Array(try Self.rows(path, 0).dropFirst())
        #expect(rows.count > 1)
        #expect(rows.first?.first == 1 && rows.last?.last == 10_000)
        #expect(rows.reduce(0) { $0 + $1.n } == 10_000)
        #expect(rows.reduce(0) { $0 + $1.bytes } == 1_000_000)
        for r in rows {
            #expect(r.isDense && r.txn == 9 && r.last - r.first + 1 == r.n, "\(r)")
            #expect(r.blob <= RecordChunk.maxBytes, "\(r)")
        }
        for (a, b) in zip(rows, rows.dropFirst()) {
            #expect(b.first == a.last + 1, "rows are contiguous")
            #expect(a.blob + 20 + 100 > RecordChunk.maxBytes, "a row is cut only when full: \(a)")
        }
        let back = try Self.held(s, 0)
        #expect(back.map(\.offset) == Array(0...10_000))
        #expect(back.dropFirst().map(\.data) == big)
        #expect(try s.read { try $0.logBytes(0) } == 1_000_003)
        // reads that start inside a row, and that span rows
        let boundary = rows[0].last
        try s.read { r throws in
            #expect(try r.readRecords(0, from: boundary - 1, below: 1 << 40, maxCount: 3).map(\.offset) == [boundary - 1, boundary, boundary + 1])
            #expect(try r.readRecords(0, from: 5_000, below: 5_002, maxCount: 10).map(\.data) == Array(big[4_999..<5_001]))
        }
    }

    @Test func emptyRecordsAreBoundedByTheirEntriesAndAnOversizedRecordHasARowOfItsOwn() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        let s = try Self.open(path); defer { s.close() }
        let perRow = (RecordChunk.maxBytes - 8) / 20
        _ = try s.write { try $0.append(1, (0..<(2 * perRow + 10)).map { Self.rec(Int64($0), nil, nil) }, txn: 0) }
        #expect(try Self.rows(path, 1).map(\.n) == [Int64(perRow), Int64(perRow), 10])
        #expect(try Self.rows(path, 1).allSatisfy { $0.bytes == 0 && $0.isDense })
        #expect(try Self.held(s, 1).count == 2 * perRow + 10)

        let huge = [UInt8](repeating: 7, count: RecordChunk.maxBytes * 2)
        _ = try s.write { try $0.append(2, [Self.rec(1, nil, [1]), Self.rec(2, [9], huge), Self.rec(3, nil, [2])], txn: 0) }
        #expect(try Self.rows(path, 2).map(\.n) == [1, 1, 1])
        #expect(try Self.held(s, 2).map { $0.data.value?.count } == [1, huge.count, 1])
    }

    // MARK: - Cutting

    @Test func aCutThroughARowRewritesThatRowAloneAndDeletesTheRowsBelow() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        let s = try Self.open(path); defer { s.close() }
        for b in 0..<3 { _ = try s.write { try $0.append(0, ChunkFixtures.sized(10, size: 10, from: b * 10), txn: Int64(b)) } }
        let third = Row(first: 20, last: 29, n: 10, bytes: 100, txn: 2, blob: 8 + 200 + 100)
        #expect(try Self.rows(path, 0).count == 3)

        #expect(try s.write { try $0.truncateLog(0, before: 15) } == 15)
        #expect(try Self.rows(path, 0) == [Row(first: 15, last: 19, n: 5, bytes: 50, txn: 1, blob: 8 + 100 + 50), third])
        #expect(try Self.held(s, 0).map(\.offset) == Array(15..<30))
        #expect(try Self.held(s, 0).first?.data == ChunkFixtures.sized(1, size: 10, from: 15)[0])
        #expect(try s.read { try $0.logBytes(0) } == 150)

        // at a row boundary: whole rows only
        #expect(try s.write { try $0.truncateLog(0, before: 20) } == 20)
        #expect(try Self.rows(path, 0) == [third])
        // everything: no rows left, the high watermark stays
        #expect(try s.write { try $0.truncateLog(0, before: 100) } == 30)
        #expect(try Self.rows(path, 0) == [])
        try s.read { r throws in
            #expect(try (r.highWatermark(0), r.logStartOffset(0), r.logBytes(0)) == (30, 30, 0))
        }
        #expect(try s.write { try $0.append(0, ChunkFixtures.sized(2, size: 3), txn: 0) } == 30)
        #expect(try Self.rows(path, 0).map(\.first) == [30])
    }

    // MARK: - Compaction

    @Test func compactionRewritesTheRowsItTouchesListingOffsetsOnlyWhileTheyHaveGaps() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        let s = try Self.open(path); defer { s.close() }
        _ = try s.write { try $0.append(0, ChunkFixtures.sized(10, size: 10), txn: 4) }
        _ = try s.write { try $0.append(0, ChunkFixtures.sized(10, size: 10, from: 10), txn: 0) }
        try s.write { try $0.removeRecords(0, at: [0, 3, 4, 9, 12, 55, 4]) }
        var rows = try Self.rows(path, 0)
        #expect(rows.map(\.first) == [1, 10] && rows.map(\.last) == [8, 19] && rows.map(\.n) == [6, 9])
        #expect(rows.allSatisfy { $0.isListed }, "\(rows)")
        #expect(rows.map(\.txn) == [4, 0])
        #expect(try Self.held(s, 0).map(\.offset) == [1, 2, 5, 6, 7, 8, 10, 11, 13, 14, 15, 16, 17, 18, 19])
        #expect(try Self.held(s, 0).map { $0.data.value?.first } == [1, 2, 5, 6, 7, 8, 10, 11, 13, 14, 15, 16, 17, 18, 19].map { UInt8($0) })
        try s.read { r throws in
            #expect(try r.readRecords(0, from: 3, below: 100, maxCount: 2).map(\.offset) == [5, 6])
            #expect(try r.readRecords(0, from: 9, below: 13, maxCount: 10).map(\.offset) == [10, 11])
            #expect(try r.logBytes(0) == 150)
        }

        // a row that loses every record goes; the high watermark stays
        try s.write { try $0.removeRecords(0, at: [1, 2, 5, 6, 7, 8]) }
        // a row that loses its gaps' neighbours becomes dense again, keyed by its first record
        try s.write { try $0.removeRecords(0, at: [10, 11]) }
        rows = try Self.rows(path, 0)
        #expect(rows == [Row(first: 13, last: 19, n: 7, bytes: 70, txn: 0, blob: 8 + 140 + 70)])
        // offsets not held change nothing
        try s.write { try $0.removeRecords(0, at: [0, 12, 20, -1, 1 << 41]) }
        #expect(try Self.rows(path, 0) == rows)
        try s.read { r throws in
            #expect(try (r.highWatermark(0), r.logStartOffset(0), r.logBytes(0)) == (20, 0, 70))
        }

        // a cut through a row with listed offsets
        _ = try s.write { try $0.append(0, ChunkFixtures.sized(10, size: 10, from: 20), txn: 0) }
        try s.write { try $0.removeRecords(0, at: [22, 24]) }
        #expect(try s.write { try $0.truncateLog(0, before: 23) } == 23)
        rows = try Self.rows(path, 0)
        #expect(rows == [Row(first: 23, last: 29, n: 6, bytes: 60, txn: 0, blob: 8 + 6 * 28 + 60)])
        #expect(try Self.held(s, 0).map(\.offset) == [23, 25, 26, 27, 28, 29])
    }

    @Test func removalsInsideAWriteThatThrowsLeaveTheRowsAsTheyWere() throws {
        struct Boom: Error {}
        let path = tempPath(); defer { removeDatabase(path) }
        let s = try Self.open(path); defer { s.close() }
        _ = try s.write { try $0.append(0, ChunkFixtures.sized(10, size: 10), txn: 0) }
        let before = try Self.rows(path, 0)
        #expect(throws: Boom.self) {
            try s.write { w in
                try w.removeRecords(0, at: [0, 5])
                _ = try w.truncateLog(0, before: 3)
                throw Boom()
            }
        }
        #expect(try Self.rows(path, 0) == before)
        #expect(try Self.held(s, 0).map(\.offset) == Array(0..<10))
    }

    // MARK: - Reopening

    @Test func rowsCutAndCompactedReadTheSameAfterReopen() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        let expected: [StoredRecord]
        let rows: [Row]
        do {
            let s = try Self.open(path)
            _ = try s.write { try $0.append(3, ChunkFixtures.sized(5_000, size: 30), txn: 2) }
            _ = try s.write { try $0.truncateLog(3, before: 777) }
            try s.write { try $0.removeRecords(3, at: Array(stride(from: 1_000, to: 4_000, by: 3))) }
            expected = try Self.held(s, 3)
            rows = try Self.rows(path, 3)
            s.close()
        }
        let s = try Self.open(path)
        defer { s.close() }
        #expect(try Self.rows(path, 3) == rows)
        #expect(try Self.held(s, 3) == expected)
        #expect(expected.count == 5_000 - 777 - 1_000)
        try s.read { r throws in
            #expect(try (r.logStartOffset(3), r.highWatermark(3), r.logBytes(3)) == (777, 5_000, Int64(expected.count * 30)))
        }
        #expect(try s.write { try $0.append(3, ChunkFixtures.sized(1, size: 1), txn: 0) } == 5_000)
    }

    // MARK: - Corruption

    @Test func aBlobThatDoesNotParseIsAStorageErrorNamingTheFile() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        let s = try Self.open(path); defer { s.close() }
        _ = try s.write { try $0.append(0, ChunkFixtures.sized(3, size: 4), txn: 0) }
        _ = try s.write { try $0.append(1, ChunkFixtures.sized(1, size: 4), txn: 0) }
        let c = try SQLiteConnection(path: path, busyTimeoutMs: 1000, synchronous: "NORMAL")
        // too short; then one record whose key length is -5
        try c.execOnce("UPDATE chunks SET data = X'01' WHERE id = 0")
        try c.execOnce("UPDATE chunks SET data = X'01000000010000000000000000000000FBFFFFFFFFFFFFFFFFFFFFFF' WHERE id = 1 << 40")
        c.close()
        for pnum: Int64 in [0, 1] {
            #expect {
                try s.read { try $0.readRecords(pnum, from: 0, below: 10, maxCount: 10) }
            } throws: { StorageSQLiteTests.storageError($0, mentioning: path, "corrupt record chunk") }
        }
    }

    // MARK: - Migration

    /// Records of an old file: partition 0 holds offsets 3..<2000 with gaps (compaction) and a
    /// run written by transaction 7, some with no or empty key, value and headers; partition 5
    /// holds 0..<3. (pnum, record)
    static func oldRecords(v1: Bool) -> [(Int64, StoredRecord)] {
        var out: [(Int64, StoredRecord)] = []
        for o in Int64(v1 ? 0 : 3)..<2_000 where v1 || (o != 10 && o != 11 && o != 500) {
            let key: [UInt8]? = o % 7 == 0 ? nil : o % 5 == 0 ? [] : Array("k\(o % 13)".utf8)
            let value: [UInt8]? = o % 11 == 0 ? nil : o % 17 == 0 ? [] : [UInt8](repeating: UInt8(truncatingIfNeeded: o), count: 100)
            let headers: [UInt8]? = o % 3 == 0 ? [1, 2, UInt8(truncatingIfNeeded: o)] : nil
            out.append((0, StoredRecord(offset: o, txn: (1_000..<1_500).contains(o) ? 7 : 0,
                                        data: RecordData(timestampMs: 1_700_000_000_000 + o, key: key, value: value, headers: headers))))
        }
        for o: Int64 in 0..<3 { out.append((5, StoredRecord(offset: o, txn: 0, data: Self.rec(-o, [UInt8(o)], nil)))) }
        return out
    }

    static func hex(_ b: [UInt8]?) -> String {
        guard let b else { return "NULL" }
        return "X'" + b.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() + "'"
    }

    static func size(_ r: StoredRecord) -> Int64 {
        Int64((r.data.key?.count ?? 0) + (r.data.value?.count ?? 0) + (r.data.headers?.count ?? 0))
    }

    /// Writes a file as Kofka schema version 1 or 2 did (v2: incremental auto-vacuum, `logs`).
    static func makeOldFile(_ path: String, version: Int, records: [(Int64, StoredRecord)], logs: [(Int64, Int64, Int64)]) throws {
        let c = try SQLiteConnection(path: path, busyTimeoutMs: 1000, synchronous: "NORMAL")
        defer { c.close() }
        if version >= 2 { try c.execOnce("PRAGMA auto_vacuum=INCREMENTAL") }
        try c.execOnce("PRAGMA journal_mode=WAL")
        try c.execOnce("""
            BEGIN;
            CREATE TABLE kv(key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
            CREATE TABLE records(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL,
                key BLOB, value BLOB, headers BLOB, txn INTEGER NOT NULL DEFAULT 0);
            INSERT INTO kv VALUES('t/topic', X'0102');
            """)
        for part in records.chunked(500) {
            let values = part.map { p, r in
                "(\((p << 40) | r.offset), \(r.data.timestampMs), \(hex(r.data.key)), \(hex(r.data.value)), \(hex(r.data.headers)), \(r.txn))"
            }
            try c.execOnce("INSERT INTO records(id, ts, key, value, headers, txn) VALUES " + values.joined(separator: ","))
        }
        if version >= 2 {
            try c.execOnce("""
                CREATE TABLE logs(pnum INTEGER PRIMARY KEY, start INTEGER NOT NULL DEFAULT 0,
                    next INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0);
                """)
            for (p, start, next) in logs {
                let bytes = records.filter { $0.0 == p }.reduce(0) { $0 + size($1.1) }
                try c.execOnce("INSERT INTO logs VALUES(\(p), \(start), \(next), \(bytes))")
            }
        }
        try c.execOnce("PRAGMA application_id=\(SQLiteStorage.applicationID); PRAGMA user_version=\(version); COMMIT")
    }

    /// What every migrated file must show: version 3, no `records`, the same records read back,
    /// rows that never mix partitions or transactions and stay within the bounds.
    static func expectMigrated(_ path: String, _ s: SQLiteStorage, _ records: [(Int64, StoredRecord)]) throws {
        let c = try SQLiteConnection(path: path, busyTimeoutMs: 1000, synchronous: "NORMAL")
        #expect(try c.integerRows("PRAGMA user_version") == [[3]])
        #expect(try c.integerRows("SELECT count(*) FROM sqlite_master WHERE name = 'records'") == [[0]])
        c.close()
        for pnum: Int64 in [0, 5] {
            let want = records.filter { $0.0 == pnum }.map(\.1)
            #expect(try Self.held(s, pnum) == want)
            let rows = try Self.rows(path, pnum)
            #expect(rows.reduce(0) { $0 + $1.n } == Int64(want.count))
            for r in rows {
                let inRow = want.filter { $0.offset >= r.first && $0.offset <= r.last }
                #expect(Int64(inRow.count) == r.n && inRow.first?.offset == r.first && inRow.last?.offset == r.last, "\(r)")
                #expect(Set(inRow.map(\.txn)) == [r.txn], "one transaction per row: \(r)")
                #expect(r.bytes == inRow.reduce(0) { $0 + size($1) })
                #expect(r.isDense == (r.last - r.first + 1 == r.n) && (r.isDense || r.isListed), "\(r)")
                #expect(r.n == 1 || r.blob <= RecordChunk.maxBytes, "\(r)")
            }
        }
        #expect(try s.read { try $0.get("t/topic") } == [1, 2])
    }

    @Test func aVersion2FileIsMigratedToChunksKeepingRecordsGapsAndLogs() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        let records = Self.oldRecords(v1: false)
        try Self.makeOldFile(path, version: 2, records: records, logs: [(0, 3, 2_005), (5, 0, 3)])
        let s = try Self.open(path); defer { s.close() }
        try Self.expectMigrated(path, s, records)
        #expect(try Self.rows(path, 0).map(\.txn).contains(7))
        #expect(try Self.rows(path, 0).count > 3, "the 100-byte records of the run before 1000 fill more than one row")
        try s.read { r throws in
            #expect(try (r.logStartOffset(0), r.highWatermark(0)) == (3, 2_005))
            #expect(try r.logBytes(0) == records.filter { $0.0 == 0 }.reduce(0) { $0 + Self.size($1.1) })
            #expect(try r.highWatermark(5) == 3)
        }
        #expect(try s.write { try $0.append(0, ChunkFixtures.sized(1, size: 1), txn: 0) } == 2_005)
        // cut and compact migrated rows
        #expect(try s.write { try $0.truncateLog(0, before: 1_200) } == 1_200)
        try s.write { try $0.removeRecords(0, at: [1_201, 1_999]) }
        #expect(try Self.held(s, 0).map(\.offset) == Array(1_200..<2_000).filter { $0 != 1_201 && $0 != 1_999 } + [2_005])
    }

    @Test func aVersion1FileIsMigratedToChunksAndGetsItsLogs() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        let records = Self.oldRecords(v1: true)
        try Self.makeOldFile(path, version: 1, records: records, logs: [])
        let s = try Self.open(path); defer { s.close() }
        try Self.expectMigrated(path, s, records)
        try s.read { r throws in
            #expect(try (r.logStartOffset(0), r.highWatermark(0)) == (0, 2_000))
            #expect(try r.logBytes(0) == records.filter { $0.0 == 0 }.reduce(0) { $0 + Self.size($1.1) })
            #expect(try (r.logStartOffset(5), r.highWatermark(5), r.logBytes(5)) == (0, 3, 3))
        }
    }

    @Test func twoOpenersOfAnOldFileMigrateItOnce() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        let records = Self.oldRecords(v1: false)
        try Self.makeOldFile(path, version: 2, records: records, logs: [(0, 3, 2_005), (5, 0, 3)])
        let errors = Locked<[String]>([])
        let stores = Locked<[SQLiteStorage]>([])
        DispatchQueue.concurrentPerform(iterations: 3) { _ in
            do {
                let s = try Self.open(path)
                stores.withLock { $0.append(s) }
            } catch {
                errors.withLock { $0.append("\(error)") }
            }
        }
        #expect(errors.withLock { $0 }.isEmpty, "\(errors.withLock { $0 })")
        for s in stores.withLock({ $0 }) {
            try Self.expectMigrated(path, s, records)
            s.close()
        }
    }
}

/// Records `from`…`from+n-1` of `size` bytes each (value only), as the conformance suite makes them.
enum ChunkFixtures {
    static func sized(_ n: Int, size: Int, from: Int = 0) -> [RecordData] {
        (from..<from + n).map { i in
            RecordData(timestampMs: Int64(i), key: nil, value: Array(repeating: UInt8(truncatingIfNeeded: i), count: size), headers: nil)
        }
    }
}
