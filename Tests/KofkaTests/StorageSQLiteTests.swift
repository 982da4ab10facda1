import Testing
import Dispatch
#if canImport(Glibc)
import Glibc
#endif
@testable import Kofka
import CSQLite

/// What only the SQLite backend has: its busy timeout, and how it refuses files that are not its
/// own. Every property all backends share is a check of the conformance suite
/// (`KofkaStorageTesting`, run on every backend by StorageConformanceTests).
@Suite("SQLiteStorage")
struct StorageSQLiteTests {
    static func batch(_ n: Int, tag: Int = 0) -> [RecordData] {
        (0..<n).map { i in RecordData(timestampMs: Int64(i), key: nil, value: Array("v\(tag)-\(i)".utf8), headers: nil) }
    }
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
    for suffix in ["", "-wal", "-shm", "-journal", "-bell"] { unlink(path + suffix) }
}

func makeSQLite(_ path: String) throws -> any StorageBackend {
    try SQLiteStorage(path: path, synchronous: .normal)
}

// MARK: - SQLite only

extension StorageSQLiteTests {
    static func storageError(_ error: any Error, mentioning path: String, _ words: String...) -> Bool {
        guard let e = error as? KofkaError, e.code == .storage, e.message.contains(path) else { return false }
        return words.allSatisfy { e.message.lowercased().contains($0.lowercased()) }
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

    /// Another process opening the file must not wait for its writers: a worker restarted while
    /// the others write would otherwise fail to open with BUSY (found by the processes explorer).
    @Test func openingAnExistingFileWaitsForNoWriterAndReadsAtOnce() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        try SQLiteStorage(path: path).close()
        let releaseLock = try GuaranteesUnderFaultsTests.holdWriteLock(path)
        defer { releaseLock() }
        let t0 = monoNs()
        let opened = try SQLiteStorage(path: path, busyTimeoutMs: 300)
        defer { opened.close() }
        #expect(monoNs() - t0 < 250_000_000, "the open waited for the writer")
        #expect(try opened.read { try $0.get("held") } == nil)
        // and so does a broker on it
        let t1 = monoNs()
        let broker = try Broker("sqlite:" + path, config: try BrokerConfig([("sqlite.busy.timeout.ms", "300")]))
        defer { broker.close() }
        #expect(monoNs() - t1 < 250_000_000, "the broker's open waited for the writer")
        #expect(try broker.topics().isEmpty)
    }

    /// The page size of a file, read with SQLite's own API.
    static func pageSize(_ path: String) -> Int64 {
        var db: OpaquePointer?
        defer { sqlite3_close(db) }
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, nil) == SQLITE_OK else { return -1 }
        var stmt: OpaquePointer?
        defer { sqlite3_finalize(stmt) }
        guard sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &stmt, nil) == SQLITE_OK, sqlite3_step(stmt) == SQLITE_ROW else { return -1 }
        return sqlite3_column_int64(stmt, 0)
    }

    /// New files get 16 KiB pages; a file whose page size was fixed before (4 KiB, as every file
    /// of an earlier Kofka) keeps it, and its log and keys work as on a new one.
    @Test func aNewFileHas16KiBPagesAndAFileOf4KiBPagesKeepsThemAndWorks() throws {
        let fresh = tempPath(); defer { removeDatabase(fresh) }
        try SQLiteStorage(path: fresh).close()
        #expect(Self.pageSize(fresh) == 16384)

        let old = tempPath(); defer { removeDatabase(old) }
        do {   // a file whose first page is written with 4 KiB pages, holding nothing of Kofka's
            var db: OpaquePointer?
            #expect(sqlite3_open(old, &db) == SQLITE_OK)
            #expect(sqlite3_exec(db, "PRAGMA page_size=4096; CREATE TABLE t(x); DROP TABLE t", nil, nil, nil) == SQLITE_OK)
            sqlite3_close(db)
        }
        let values = (0..<3000).map { i in RecordData(timestampMs: Int64(i), key: nil, value: Array(repeating: UInt8(i % 251), count: 100 + i % 50), headers: nil) }
        do {
            let s = try SQLiteStorage(path: old)
            defer { s.close() }
            for part in stride(from: 0, to: values.count, by: 1000) {
                _ = try s.write { w in try w.append(7, Array(values[part ..< part + 1000]), txn: 0) }
            }
            try s.write { w in try w.put("k", [1, 2, 3]) }
        }
        #expect(Self.pageSize(old) == 4096)
        let s = try SQLiteStorage(path: old)
        defer { s.close() }
        try s.read { r in
            #expect(try r.highWatermark(7) == 3000)
            #expect(try r.get("k") == [1, 2, 3])
            let back = try r.readRecords(7, from: 0, below: 3000, maxCount: 3000)
            #expect(back.map(\.offset) == (0..<3000).map(Int64.init))
            #expect(back.map(\.data.value) == values.map(\.value))
        }
        #expect(Self.pageSize(old) == 4096)
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

// MARK: - The doorbell: cross-process wake-ups by notification

extension StorageSQLiteTests {
    /// A wait on one handle sleeps on the doorbell: with no commit it checks the change token
    /// once per 100 ms slice (polling `data_version` every 2 ms would check ~150 times in 300 ms),
    /// and a commit through another handle on the file (as another process) wakes it at once.
    @Test func anIdleWaitSleepsOnTheDoorbellAndAnotherHandlesCommitWakesIt() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        let a = try SQLiteStorage(path: path, synchronous: .normal)
        let b = try SQLiteStorage(path: path, synchronous: .normal)
        defer { a.close(); b.close() }
        #expect(access(path + "-bell", F_OK) == 0, "the doorbell file beside the database")

        let idleToken = b.changeToken()
        let t0 = monoNs()
        b.waitForChange(since: idleToken, timeoutNs: 300_000_000)
        #expect(monoNs() - t0 >= 290_000_000, "nothing changed: the wait lasts its timeout")
        #expect(b.tokenChecks.withLock { $0 } <= 6, "an idle wait does not poll: \(b.tokenChecks.withLock { $0 }) token checks")

        // Ten rounds: a waiter on b, a commit on a; b wakes long before its 10 s timeout.
        var worstUs: UInt64 = 0
        for round in 0..<10 {
            let token = b.changeToken()
            let woke = Locked<UInt64>(0)
            let done = DispatchSemaphore(value: 0)
            startThread {
                b.waitForChange(since: token, timeoutNs: 10_000_000_000)
                woke.withLock { $0 = monoNs() }
                done.signal()
            }
            usleep(20_000)
            // The bell rings inside `write`, so the waiter may wake before `write` returns: the
            // wake-up is measured from the moment the write began, and cannot precede it.
            let writing = monoNs()
            _ = try a.write { try $0.append(0, Self.batch(1, tag: round), txn: 0) }
            #expect(done.wait(timeout: .now() + 5) == .success)
            let wokeAt = woke.withLock { $0 }
            #expect(wokeAt >= writing, "the waiter returned before anything was committed")
            worstUs = max(worstUs, (max(wokeAt, writing) - writing) / 1_000)
        }
        #expect(worstUs < 1_000_000, "the slowest wake-up took \(worstUs) us")
    }

    /// A commit whose writer never rang the doorbell (it was killed between its commit and the
    /// ring, or it is another program writing the file) still wakes a waiter within the bell's
    /// slice, through `data_version`.
    @Test func aCommitThatNeverRangTheBellStillWakesAWaiterWithinItsSlice() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        let s = try SQLiteStorage(path: path)
        defer { s.close() }
        _ = try s.write { try $0.append(0, Self.batch(1), txn: 0) }   // the schema exists
        var raw: OpaquePointer?
        #expect(sqlite3_open(path, &raw) == SQLITE_OK)
        defer { sqlite3_close(raw) }
        let token = s.changeToken()
        let done = DispatchSemaphore(value: 0)
        let woke = Locked<UInt64>(0)
        startThread {
            s.waitForChange(since: token, timeoutNs: 30_000_000_000)
            woke.withLock { $0 = monoNs() }
            done.signal()
        }
        usleep(50_000)
        // Another program's write: a commit that rings no bell. The waiter may see it before
        // sqlite3_exec returns, so the wake-up is measured from the moment the write began.
        let writing = monoNs()
        #expect(sqlite3_exec(raw, "PRAGMA busy_timeout=5000; INSERT OR REPLACE INTO kv(key, value) VALUES('x', x'01')", nil, nil, nil) == SQLITE_OK)
        #expect(done.wait(timeout: .now() + 5) == .success)
        let wokeAt = woke.withLock { $0 }
        #expect(wokeAt >= writing, "the waiter returned before anything was committed")
        let ms = (max(wokeAt, writing) - writing) / 1_000_000
        #expect(ms < 1_000, "woke \(ms) ms after a commit that rang no bell")
    }

    /// `wakeAll` (a consumer's close) wakes a waiter asleep on the doorbell.
    @Test func wakeAllWakesAWaiterAsleepOnTheDoorbell() throws {
        let path = tempPath(); defer { removeDatabase(path) }
        let s = try SQLiteStorage(path: path)
        defer { s.close() }
        let done = DispatchSemaphore(value: 0)
        let token = s.changeToken()
        startThread {
            s.waitForChange(since: token, timeoutNs: 30_000_000_000)
            done.signal()
        }
        usleep(50_000)
        s.wakeAll()
        #expect(done.wait(timeout: .now() + 2) == .success)
    }
}
