import Testing
import Dispatch
#if canImport(Glibc)
import Glibc
#endif
@testable import Kofka
import KofkaLab

/// One conformance suite, run against every backend.
@Suite("StorageConformance")
struct StorageConformanceTests {
    static let kinds = ["memory", "sqlite"] + postgresKinds

    /// A fresh backend of `kind`; `path` is the SQLite file ("" for memory), or the schema of a
    /// PostgreSQL store (dropped by `cleanup`).
    struct Fixture {
        let storage: any StorageBackend
        let path: String
        var schema = ""
        func cleanup() {
            storage.close()
            if !path.isEmpty { removeDatabase(path) }
            if !schema.isEmpty, let url = LabPostgres.testURL { LabPostgres.dropSchema(url, schema) }
        }
    }

    static func make(_ kind: String) throws -> Fixture {
        switch kind {
        case "memory":
            return Fixture(storage: MemoryStorage(), path: "")
        case "postgresql":
            let (storage, schema) = try makePostgres(tag: "conf")
            return Fixture(storage: storage, path: "", schema: schema)
        default:
            let path = tempPath()
            return Fixture(storage: try makeSQLite(path), path: path)
        }
    }

    static func rec(_ ts: Int64, _ key: [UInt8]?, _ value: [UInt8]?, _ headers: [UInt8]? = nil) -> RecordData {
        RecordData(timestampMs: ts, key: key, value: value, headers: headers)
    }

    static func batch(_ n: Int, tag: Int = 0) -> [RecordData] {
        (0..<n).map { i in rec(Int64(i), nil, Array("v\(tag)-\(i)".utf8)) }
    }

    @Test(arguments: kinds)
    func offsetsAreDenseFromZeroAcrossBatchesAndPartitions(kind: String) throws {
        let f = try Self.make(kind); defer { f.cleanup() }
        #expect(try f.storage.read { try $0.highWatermark(0) } == 0)
        #expect(try f.storage.read { try $0.highWatermark(12345) } == 0)
        let a0 = try f.storage.write { try $0.append(0, Self.batch(3), txn: 0) }
        let b0 = try f.storage.write { try $0.append(1, Self.batch(2), txn: 0) }
        let (a1, a2, b1) = try f.storage.write { w throws in
            (try w.append(0, Self.batch(4), txn: 0), try w.append(0, Self.batch(1), txn: 0), try w.append(1, Self.batch(5), txn: 0))
        }
        let empty = try f.storage.write { try $0.append(0, [], txn: 0) }
        #expect([a0, a1, a2, empty] == [0, 3, 7, 8])
        #expect([b0, b1] == [0, 2])
        let big = StorageLimits.maxPartitionNumbers - 1
        #expect(try f.storage.write { try $0.append(big, Self.batch(2), txn: 0) } == 0)
        try f.storage.read { r throws in
            #expect(try r.highWatermark(0) == 8)
            #expect(try r.highWatermark(1) == 7)
            #expect(try r.highWatermark(2) == 0)
            #expect(try r.highWatermark(big) == 2)
            #expect(try r.readRecords(0, from: 0, below: 100, maxCount: 100).map(\.offset) == Array(0..<8))
            #expect(try r.readRecords(1, from: 0, below: 100, maxCount: 100).map(\.offset) == Array(0..<7))
            #expect(try r.readRecords(big, from: 0, below: 100, maxCount: 100).map(\.offset) == [0, 1])
        }
        #expect(throws: KofkaError.self) { try f.storage.write { try $0.append(-1, Self.batch(1), txn: 0) } }
        #expect(throws: KofkaError.self) { try f.storage.write { try $0.append(big + 1, Self.batch(1), txn: 0) } }
    }

    @Test(arguments: kinds)
    func recordsRoundTripExactlyNullVsEmptyBinaryTimestampsAndTxn(kind: String) throws {
        let f = try Self.make(kind); defer { f.cleanup() }
        let binary: [UInt8] = [0, 1, 0, 255, 0, 0x80, 0]
        let input = [
            Self.rec(0, nil, nil, nil),
            Self.rec(1, [], [], []),
            Self.rec(-5, nil, [], nil),
            Self.rec(Int64.max, [], nil, []),
            Self.rec(1_700_000_000_123, binary, binary + binary, [0]),
            Self.rec(Int64.min, Array(repeating: 7, count: 100_000), [0], nil),
        ]
        _ = try f.storage.write { try $0.append(3, Array(input[0..<2]), txn: 0) }
        _ = try f.storage.write { try $0.append(3, Array(input[2...]), txn: 42) }
        let out = try f.storage.read { try $0.readRecords(3, from: 0, below: 10, maxCount: 10) }
        #expect(out.count == input.count)
        #expect(out.map(\.data) == input)
        #expect(out.map(\.txn) == [0, 0, 42, 42, 42, 42])
        #expect(out.map(\.offset) == Array(0..<6))
        #expect(out[0].data.key == nil && out[1].data.key == [])
        #expect(out[0].data.value == nil && out[1].data.value == [])
        #expect(out[0].data.headers == nil && out[1].data.headers == [])
    }

    @Test(arguments: kinds)
    func readRecordsHonoursFromBelowAndMaxCount(kind: String) throws {
        let f = try Self.make(kind); defer { f.cleanup() }
        _ = try f.storage.write { try $0.append(5, Self.batch(10), txn: 0) }
        _ = try f.storage.write { try $0.append(6, Self.batch(3), txn: 0) }
        try f.storage.read { r throws in
            func offs(_ from: Int64, _ below: Int64, _ max: Int) throws -> [Int64] {
                try r.readRecords(5, from: from, below: below, maxCount: max).map(\.offset)
            }
            #expect(try offs(0, 10, 100) == Array(0..<10))
            #expect(try offs(3, 7, 100) == [3, 4, 5, 6])
            #expect(try offs(3, 7, 2) == [3, 4])
            #expect(try offs(8, 1000, 100) == [8, 9])
            #expect(try offs(10, 20, 100) == [])
            #expect(try offs(5, 5, 100) == [])
            #expect(try offs(7, 3, 100) == [])
            #expect(try offs(0, 10, 0) == [])
            #expect(try offs(-3, 2, 100) == [0, 1])
            let rs = try r.readRecords(5, from: 4, below: 6, maxCount: 10)
            #expect(rs.map(\.data.value) == [Array("v0-4".utf8), Array("v0-5".utf8)])
        }
    }

    @Test(arguments: kinds)
    func kvPutGetDeleteAndScanInByteOrderOverHalfOpenRanges(kind: String) throws {
        let f = try Self.make(kind); defer { f.cleanup() }
        let keys = ["g/b/2", "g/a/1", "t/x", "g/a/0", "g/", "g/a", "h", "g/\u{e9}", "g/z", ""]
        try f.storage.write { w throws in
            for (i, k) in keys.enumerated() { try w.put(k, [UInt8(i)]) }
            try w.put("g/a/1", [])         // overwrite with an empty value
            try w.put("t/x", [9, 0, 9])    // overwrite
            try w.delete("h")
            try w.delete("no-such-key")
            #expect(try w.get("h") == nil)
            #expect(try w.get("t/x") == [9, 0, 9])
        }
        try f.storage.read { r throws in
            #expect(try r.get("g/a/1") == [])
            #expect(try r.get("g/a/0") == [3])
            #expect(try r.get("") == [9])
            #expect(try r.get("h") == nil)
            #expect(try r.get("missing") == nil)
            let g = try r.scan(from: "g/", to: "g0")
            #expect(g.map(\.key) == ["g/", "g/a", "g/a/0", "g/a/1", "g/b/2", "g/z", "g/\u{e9}"])
            #expect(g.map(\.value) == [[4], [5], [3], [], [0], [8], [7]])
            #expect(try r.scan(from: "g/a/", to: "g/a0").map(\.key) == ["g/a/0", "g/a/1"])
            #expect(try r.scan(from: "g/a/1", to: "g/b/2").map(\.key) == ["g/a/1"])
            #expect(try r.scan(from: "x", to: "y").isEmpty)
            #expect(try r.scan(from: "t", to: "a").isEmpty)
            #expect(try r.scan(from: "", to: "\u{10FFFF}").count == keys.count - 1)
        }
    }

    @Test(arguments: kinds)
    func aWriteWhoseBodyThrowsLeavesNothingBehind(kind: String) throws {
        struct Boom: Error {}
        let f = try Self.make(kind); defer { f.cleanup() }
        try f.storage.write { w throws in
            _ = try w.append(0, Self.batch(2), txn: 0)
            try w.put("keep", [1])
            try w.put("gone", [2])
        }
        let token = f.storage.changeToken()
        #expect(throws: Boom.self) {
            try f.storage.write { w throws in
                _ = try w.append(0, Self.batch(5), txn: 7)
                _ = try w.append(1, Self.batch(5), txn: 7)
                _ = try w.append(0, Self.batch(1), txn: 7)
                try w.put("keep", [9])
                try w.put("new", [3])
                try w.delete("gone")
                #expect(try w.highWatermark(0) == 8)
                #expect(try w.get("new") == [3])
                throw Boom()
            }
        }
        try f.storage.read { r throws in
            #expect(try r.highWatermark(0) == 2)
            #expect(try r.highWatermark(1) == 0)
            #expect(try r.readRecords(0, from: 0, below: 100, maxCount: 100).count == 2)
            #expect(try r.get("keep") == [1])
            #expect(try r.get("gone") == [2])
            #expect(try r.get("new") == nil)
            #expect(try r.scan(from: "", to: "zzz").map(\.key) == ["gone", "keep"])
        }
        // The next write lands where the failed one would have.
        #expect(try f.storage.write { try $0.append(0, Self.batch(1), txn: 0) } == 2)
        #expect(f.storage.changeToken() != token)
    }

    @Test(arguments: kinds)
    func changeTokenChangesAfterAWriteAndWaitForChangeWakesPromptly(kind: String) throws {
        let f = try Self.make(kind); defer { f.cleanup() }
        let t0 = f.storage.changeToken()
        #expect(f.storage.changeToken() == t0)
        try f.storage.write { try $0.put("a", [1]) }
        let t1 = f.storage.changeToken()
        #expect(t1 != t0)

        // A waiter blocked for up to 10 s is woken by a commit on another thread.
        let storage = f.storage
        let group = DispatchGroup()
        let clock = ContinuousClock()
        let start = clock.now
        DispatchQueue.global().async(group: group) {
            usleep(50_000)
            _ = try? storage.write { try $0.append(0, Self.batch(1), txn: 0) }
        }
        var woke = false
        while clock.now - start < .seconds(10) {
            storage.waitForChange(since: t1, timeoutNs: 10_000_000_000)
            if storage.changeToken() != t1 { woke = true; break }
        }
        let elapsed = clock.now - start
        group.wait()
        #expect(woke)
        #expect(elapsed < .seconds(2), "woke after \(elapsed)")

        // wakeAll releases a waiter even though nothing changed.
        let t2 = storage.changeToken()
        let wakeStart = clock.now
        DispatchQueue.global().async(group: group) {
            usleep(50_000)
            storage.wakeAll()
        }
        storage.waitForChange(since: t2, timeoutNs: 10_000_000_000)
        #expect(clock.now - wakeStart < .seconds(2))
        group.wait()
    }

    @Test(arguments: kinds)
    func waitForChangeTimesOutWhenNothingChanges(kind: String) throws {
        let f = try Self.make(kind); defer { f.cleanup() }
        let t = f.storage.changeToken()
        let clock = ContinuousClock()
        let start = clock.now
        f.storage.waitForChange(since: t, timeoutNs: 120_000_000)
        // Spurious early returns are allowed; a loop like every caller's must reach the deadline.
        while clock.now < start + .milliseconds(120), f.storage.changeToken() == t {
            f.storage.waitForChange(since: t, timeoutNs: 120_000_000)
        }
        let elapsed = clock.now - start
        #expect(f.storage.changeToken() == t)
        #expect(elapsed >= .milliseconds(120))
        #expect(elapsed < .seconds(2))
        // A read-only or empty write changes nothing.
        _ = try f.storage.read { try $0.get("x") }
        #expect(f.storage.changeToken() == t)
        // A deadline in the past returns at once.
        let past = clock.now
        f.storage.waitForChange(since: t, timeoutNs: 0)
        #expect(clock.now - past < .milliseconds(100))
    }

    @Test(arguments: kinds)
    func concurrentWritersFromEightThreadsGetDenseDistinctOffsets(kind: String) throws {
        let f = try Self.make(kind); defer { f.cleanup() }
        let storage = f.storage
        let threads = 8, rounds = 25, perBatch = 4
        let results = ResultBox()
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            for r in 0..<rounds {
                do {
                    let base = try storage.write { w throws in
                        let base = try w.append(9, Self.batch(perBatch, tag: t * 1000 + r), txn: Int64(t))
                        try w.put("last/\(t)", [UInt8(r)])
                        return base
                    }
                    results.add(base)
                } catch {
                    results.fail("\(error)")
                }
            }
        }
        #expect(results.errors.isEmpty, "\(results.errors.prefix(3))")
        let bases = results.bases.sorted()
        #expect(bases == (0..<(threads * rounds)).map { Int64($0 * perBatch) })
        let all = try storage.read { try $0.readRecords(9, from: 0, below: 1 << 40, maxCount: 1 << 20) }
        #expect(all.map(\.offset) == (0..<Int64(threads * rounds * perBatch)).map { $0 })
        #expect(Set(all.map(\.data.value)).count == all.count)
        // Each batch stayed contiguous and carries its writer's tag.
        for b in stride(from: 0, to: all.count, by: perBatch) {
            #expect(Set(all[b..<b + perBatch].map(\.txn)).count == 1)
        }
    }

    @Test(arguments: kinds)
    func useAfterCloseThrowsClosed(kind: String) throws {
        let f = try Self.make(kind); defer { f.cleanup() }
        try f.storage.write { try $0.put("k", [1]) }
        f.storage.close()
        f.storage.close()   // idempotent
        #expect { try f.storage.write { try $0.put("k", [2]) } } throws: { ($0 as? KofkaError)?.code == .closed }
        #expect { try f.storage.read { try $0.get("k") } } throws: { ($0 as? KofkaError)?.code == .closed }
        _ = f.storage.changeToken()
        let now = ContinuousClock.now
        f.storage.waitForChange(since: f.storage.changeToken(), timeoutNs: 5_000_000_000)
        #expect(ContinuousClock.now - now < .seconds(1))
    }
}

/// Collects results from several threads.
final class ResultBox: @unchecked Sendable {
    private let lock = NSLockish()
    private(set) var bases: [Int64] = []
    private(set) var errors: [String] = []
    func add(_ b: Int64) { lock.with { bases.append(b) } }
    func fail(_ e: String) { lock.with { errors.append(e) } }
}

final class NSLockish: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    func with<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&m); defer { pthread_mutex_unlock(&m) }
        return body()
    }
}

nonisolated(unsafe) private var tempCounter = 0
private let tempLock = NSLockish()

/// A fresh, non-existent path under /tmp.
func tempPath() -> String {
    let n = tempLock.with { tempCounter += 1; return tempCounter }
    let path = "/tmp/kofka-storage-test-\(getpid())-\(n)-\(UInt32.random(in: 0 ... .max)).db"
    removeDatabase(path)
    return path
}

/// Removes a database file and its WAL/SHM side files.
func removeDatabase(_ path: String) {
    for suffix in ["", "-wal", "-shm", "-journal"] { unlink(path + suffix) }
}

func makeSQLite(_ path: String) throws -> any StorageBackend {
    try SQLiteStorage(path: path, synchronous: .normal)
}

// MARK: - SQLite only

extension StorageConformanceTests {
    static func storageError(_ error: any Error, mentioning path: String, _ words: String...) -> Bool {
        guard let e = error as? KofkaError, e.code == .storage, e.message.contains(path) else { return false }
        return words.allSatisfy { e.message.lowercased().contains($0.lowercased()) }
    }

    @Test func sqliteDataPersistsAcrossCloseAndReopen() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        do {
            let s = try SQLiteStorage(path: path)
            try s.write { w in
                _ = try w.append(4, Self.batch(3), txn: 5)
                try w.put("topic/a", [1, 2, 3])
            }
            s.close()
        }
        let s = try SQLiteStorage(path: path, synchronous: .normal)
        defer { s.close() }
        try s.read { r throws in
            #expect(try r.highWatermark(4) == 3)
            #expect(try r.readRecords(4, from: 0, below: 10, maxCount: 10).map(\.txn) == [5, 5, 5])
            #expect(try r.get("topic/a") == [1, 2, 3])
        }
        #expect(try s.write { try $0.append(4, Self.batch(1), txn: 0) } == 3)
    }

    @Test func twoSQLiteInstancesOnOneFileSeeEachOthersWrites() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        let a = try SQLiteStorage(path: path)
        let b = try SQLiteStorage(path: path)
        defer { a.close(); b.close() }
        let tb = b.changeToken()
        _ = try a.write { try $0.append(0, Self.batch(2), txn: 0) }
        #expect(b.changeToken() != tb)
        #expect(try b.read { try $0.highWatermark(0) } == 2)
        #expect(try b.write { try $0.append(0, Self.batch(3), txn: 0) } == 2)
        #expect(try a.read { try $0.readRecords(0, from: 0, below: 10, maxCount: 10).count } == 5)

        // b's waiter notices a's commit (seen only through data_version) within milliseconds.
        let t = b.changeToken()
        let clock = ContinuousClock()
        let start = clock.now
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            usleep(30_000)
            _ = try? a.write { try $0.put("x", [1]) }
        }
        while b.changeToken() == t, clock.now - start < .seconds(5) {
            b.waitForChange(since: t, timeoutNs: 5_000_000_000)
        }
        group.wait()
        #expect(b.changeToken() != t)
        #expect(clock.now - start < .seconds(1))
    }

    @Test func concurrentWritersThroughTwoSQLiteInstancesGetDenseOffsets() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        let stores = [try SQLiteStorage(path: path, synchronous: .normal), try SQLiteStorage(path: path, synchronous: .normal)]
        defer { stores.forEach { $0.close() } }
        let results = ResultBox()
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for _ in 0..<20 {
                do { results.add(try stores[t % 2].write { try $0.append(1, Self.batch(3), txn: 0) }) }
                catch { results.fail("\(error)") }
            }
        }
        #expect(results.errors.isEmpty, "\(results.errors.prefix(3))")
        #expect(results.bases.sorted() == (0..<160).map { Int64($0 * 3) })
        #expect(try stores[0].read { try $0.readRecords(1, from: 0, below: 1000, maxCount: 1000).map(\.offset) } == Array(0..<480))
    }

    @Test func aWriterHeldLongerThanTheBusyTimeoutFailsWithBusyAndWritesNothing() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        let holder = try SQLiteStorage(path: path)
        let waiter = try SQLiteStorage(path: path, busyTimeoutMs: 100)
        defer { holder.close(); waiter.close() }
        let entered = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            _ = try? holder.write { w in
                try w.put("held", [1])
                entered.signal()
                release.wait()
            }
        }
        entered.wait()
        #expect { try waiter.write { try $0.put("other", [2]) } } throws: {
            guard let e = $0 as? KofkaError, e.code == .busy, e.code.isRetriable, e.message.contains(path) else { return false }
            return e.message.contains("database is locked") && e.message.contains("100 ms")
        }
        // Readers are not blocked by the writer (WAL).
        #expect(try waiter.read { try $0.get("held") } == nil)
        release.signal()
        group.wait()
        #expect(try waiter.read { try $0.get("held") } == [1])
        #expect(try waiter.read { try $0.get("other") } == nil)
    }

    @Test func aNonDatabaseFileFailsWithStorageNamingThePath() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        writeFile(path, Array(String(repeating: "this is a text file, not a database\n", count: 200).utf8))
        #expect { try SQLiteStorage(path: path) } throws: { Self.storageError($0, mentioning: path, "not a database") }
    }

    @Test func aCorruptDatabaseFailsWithStorageNamingThePath() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        do {
            let s = try SQLiteStorage(path: path)
            try s.write { w in
                for i in 0..<50 { try w.put("k\(i)", Array(repeating: UInt8(i), count: 200)) }
                _ = try w.append(0, Self.batch(100), txn: 0)
            }
            s.close()
        }
        // Keep the 100-byte header, smash the rest of page 1 (the schema's b-tree page).
        var bytes = readFile(path)
        #expect(bytes.count > 4096)
        for i in 100..<min(4096, bytes.count) { bytes[i] = 0xA5 }
        writeFile(path, bytes)
        #expect {
            let s = try SQLiteStorage(path: path)
            defer { s.close() }
            _ = try s.read { try $0.readRecords(0, from: 0, below: 100, maxCount: 100) }
        } throws: { Self.storageError($0, mentioning: path) }
    }

    @Test func aForeignOrNewerSQLiteDatabaseIsRefused() throws {
        let foreign = tempPath(), newer = tempPath()
        defer { removeDatabase(foreign); removeDatabase(newer) }
        do {
            let c = try SQLiteConnection(path: foreign, busyTimeoutMs: 1000, synchronous: "FULL")
            try c.execOnce("CREATE TABLE t(x); INSERT INTO t VALUES(1);")
            c.close()
        }
        #expect { try SQLiteStorage(path: foreign) } throws: { Self.storageError($0, mentioning: foreign, "not a Kofka") }
        do {
            try SQLiteStorage(path: newer).close()
            let c = try SQLiteConnection(path: newer, busyTimeoutMs: 1000, synchronous: "FULL")
            try c.execOnce("PRAGMA user_version=99")
            c.close()
        }
        #expect { try SQLiteStorage(path: newer) } throws: { Self.storageError($0, mentioning: newer, "version 99") }
    }
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    guard let f = fopen(path, "wb") else { return }
    _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
    fclose(f)
}

func readFile(_ path: String) -> [UInt8] {
    guard let f = fopen(path, "rb") else { return [] }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return out
}
