import CSQLite

/// How hard SQLite works to make a commit durable (`PRAGMA synchronous`).
public enum SQLiteSynchronous: String, Sendable {
    /// fsync on every commit: an acknowledged write survives power loss.
    case full
    /// WAL is synced only at checkpoints: survives a process crash; the last commits may
    /// roll back on power loss.
    case normal
}

/// A `StorageBackend` on one SQLite file in WAL mode, safe for many threads and many processes.
///
/// * One writer connection per instance, guarded by a mutex; writes run in `BEGIN IMMEDIATE`,
///   so writers of other processes wait up to `busyTimeoutMs` for each other.
/// * A small pool of reader connections; each `read` is one deferred transaction (a snapshot),
///   concurrent with the writer.
/// * A partition's log lives in `records` at rowids `pnum << 40 | offset`.
/// * `changeToken` combines this instance's commit counter with `PRAGMA data_version`
///   (which moves when any other connection or process commits).
public final class SQLiteStorage: StorageBackend, @unchecked Sendable {
    /// The database file.
    public let path: String
    private let synchronous: SQLiteSynchronous
    private let busyTimeoutMs: Int

    /// The one writer connection; held for a whole write transaction (that is the storage's
    /// exclusivity); nil once closed.
    private let writer: Locked<SQLiteConnection?>

    /// Idle reader connections, and whether the storage is closed.
    private struct Pool {
        var idle: [SQLiteConnection] = []
        var closed = false
    }
    private let pool = Locked(Pool())
    private static let maxIdleReaders = 4

    /// The connection that reads `data_version`; nil once closed.
    private let watcher: Locked<SQLiteConnection?>

    private let signal = Monitor()
    private var localCommits: UInt64 = 0             // guarded by signal
    private var wakeups: UInt64 = 0                  // guarded by signal

    /// Opens `path`, creating the file and the schema if missing.
    ///
    /// - Throws: `.storage` naming `path` if the file is not a database, is corrupt, belongs to
    ///   another application, or was written by a newer Kofka.
    public init(path: String, synchronous: SQLiteSynchronous = .full, busyTimeoutMs: Int = 5000) throws {
        self.path = path
        self.synchronous = synchronous
        self.busyTimeoutMs = max(0, busyTimeoutMs)
        let w = try SQLiteConnection(path: path, busyTimeoutMs: self.busyTimeoutMs, synchronous: synchronous.rawValue.uppercased())
        let watch: SQLiteConnection
        do {
            try Self.prepareSchema(w, busyTimeoutMs: self.busyTimeoutMs)
            watch = try SQLiteConnection(path: path, busyTimeoutMs: self.busyTimeoutMs, synchronous: synchronous.rawValue.uppercased())
        } catch {
            w.close()
            throw error
        }
        writer = Locked(w)
        watcher = Locked(watch)
    }

    deinit { close() }

    private func openConnection() throws -> SQLiteConnection {
        try SQLiteConnection(path: path, busyTimeoutMs: busyTimeoutMs, synchronous: synchronous.rawValue.uppercased())
    }

    // MARK: - StorageBackend

    /// Runs `body` in `BEGIN IMMEDIATE … COMMIT` on the writer connection (`ROLLBACK` if it throws).
    /// Throws `.storage` ("database is locked …") if another writer holds the file beyond the busy timeout.
    public func write<T>(_ body: (any StorageWriter) throws -> T) throws -> T {
        var outcome: (T, Bool)?
        try writer.withLock { writer in
            guard let conn = writer else { throw closedError() }
            outcome = try Self.transaction(conn, begin: SQL.beginImmediate, writable: true, body)
        }
        guard let (result, changed) = outcome else { throw closedError() }
        if changed {
            signal.withLock {
                localCommits &+= 1
                wakeups &+= 1
                signal.broadcast()
            }
        }
        return result
    }

    /// Runs `body` between `begin` and COMMIT on `conn`, rolling back if it throws. Returns its
    /// result and whether it wrote anything.
    private static func transaction<T>(_ conn: SQLiteConnection, begin: String, writable: Bool,
                                       _ body: (Transaction) throws -> T) throws -> (T, Bool) {
        try conn.exec(begin)
        let txn = Transaction(conn, writable: writable)
        defer { txn.conn = nil }
        do {
            let result = try body(txn)
            try conn.exec(SQL.commit)
            return (result, txn.changed)
        } catch {
            if sqlite3_get_autocommit(conn.db) == 0 { try? conn.exec(SQL.rollback) }
            throw error
        }
    }

    /// Runs `body` in a deferred transaction on a pooled reader connection (a WAL snapshot).
    public func read<T>(_ body: (any StorageReader) throws -> T) throws -> T {
        let conn = try acquireReader()
        defer { releaseReader(conn) }
        return try Self.transaction(conn, begin: SQL.begin, writable: false, body).0
    }

    /// This instance's commit counter combined with `PRAGMA data_version` (other connections' commits).
    public func changeToken() -> UInt64 {
        let dataVersion: Int64 = watcher.withLock { watcher in
            guard let watcher else { return 0 }
            return ((try? watcher.int64(SQL.dataVersion)) ?? nil) ?? 0
        }
        let local = signal.withLock { localCommits }
        return (local << 32) &+ UInt64(truncatingIfNeeded: dataVersion)
    }

    /// Waits on this process's commits and `wakeAll`, re-checking `data_version` every ~2 ms.
    public func waitForChange(since token: UInt64, timeoutNs: UInt64) {
        let deadline = monoNs() &+ timeoutNs
        while true {
            let seen = signal.withLock { wakeups }
            if changeToken() != token || pool.withLock({ $0.closed }) { return }
            let now = monoNs()
            if now >= deadline { return }
            // Short slices: commits by other processes only show in data_version.
            let slice = min(deadline - now, 2_000_000)
            let woken = signal.withLock {
                if wakeups == seen { signal.wait(timeoutNs: slice) }
                return wakeups != seen
            }
            if woken { return }
        }
    }

    /// Wakes every `waitForChange` waiter of this instance.
    public func wakeAll() {
        signal.withLock {
            wakeups &+= 1
            signal.broadcast()
        }
    }

    /// Gives freed pages back to the file system when many are free (`incremental_vacuum` of at
    /// most 256 pages, a short write), keeping an eighth of the file free for reuse; once few
    /// are free, checkpoints the WAL (PASSIVE: never waits for readers) so it is cut back.
    public func reclaimSpace() throws -> Bool {
        try writer.withLock { writer -> Bool in
            guard let conn = writer else { throw closedError() }
            let free = try conn.int64("PRAGMA freelist_count") ?? 0
            let total = try conn.int64("PRAGMA page_count") ?? 0
            if free > max(1024, total / 4) {
                try conn.execOnce("PRAGMA incremental_vacuum(\(min(256, free - total / 8)))")
                return true
            }
            try conn.execOnce("PRAGMA wal_checkpoint(PASSIVE)")
            return false
        }
    }

    /// Finalizes statements and closes every connection; later `read`/`write` calls throw `.closed`.
    public func close() {
        writer.withLock { w in
            w?.close()
            w = nil
        }
        pool.withLock { p in
            p.closed = true
            for conn in p.idle { conn.close() }
            p.idle = []
        }
        watcher.withLock { w in
            w?.close()
            w = nil
        }
        wakeAll()
    }

    // MARK: - Connections

    private func closedError() -> KofkaError {
        KofkaError(.closed, "the SQLite storage \(path) is closed")
    }

    private func acquireReader() throws -> SQLiteConnection {
        let idle: SQLiteConnection? = try pool.withLock { p in
            guard !p.closed else { throw closedError() }
            return p.idle.popLast()
        }
        return try idle ?? openConnection()
    }

    private func releaseReader(_ conn: SQLiteConnection) {
        let keep = pool.withLock { p in
            guard !p.closed, p.idle.count < Self.maxIdleReaders else { return false }
            p.idle.append(conn)
            return true
        }
        if !keep { conn.close() }
    }

    // MARK: - Schema

    /// "KOFK": marks a file as a Kofka database.
    static let applicationID: Int64 = 0x4B4F_464B
    /// The schema version this code writes and reads. 1: kv and records; 2: adds `logs` (each
    /// partition's log start, high watermark and bytes held) and incremental auto-vacuum.
    static let schemaVersion: Int64 = 2

    /// Checks that the file is empty or Kofka's, switches it to WAL and creates the schema. Safe
    /// when many processes open a new file at once: the check reads a consistent snapshot, the
    /// switch to WAL is retried while another opener holds the file, and the schema is created
    /// (with the application id and version) in one write transaction, which the first opener
    /// wins and the others then see whole.
    private static func prepareSchema(_ conn: SQLiteConnection, busyTimeoutMs: Int) throws {
        // Check before changing anything (the first read also detects a non-database file).
        try retryWhileBusy(conn, timeoutMs: busyTimeoutMs) { try inTransaction(conn, SQL.begin) { _ = try checkOwner(conn) } }
        // A new file gives freed pages back through `incremental_vacuum` (maintenance). The mode
        // is fixed when the file's first page is written, so it is set before the switch to WAL;
        // on an existing file it changes nothing.
        try conn.execOnce("PRAGMA auto_vacuum=INCREMENTAL")
        try retryWhileBusy(conn, timeoutMs: busyTimeoutMs) { try conn.execOnce("PRAGMA journal_mode=WAL") }
        try inTransaction(conn, SQL.beginImmediate) {
            switch try checkOwner(conn) {
            case 0:
                try conn.execOnce(SQL.schema)
            case 1:
                try conn.execOnce(SQL.migrateFrom1)
            default:
                return
            }
            try conn.execOnce("PRAGMA application_id=\(applicationID); PRAGMA user_version=\(schemaVersion)")
        }
    }

    private static func inTransaction(_ conn: SQLiteConnection, _ begin: String, _ body: () throws -> Void) throws {
        try conn.exec(begin)
        do {
            try body()
            try conn.exec(SQL.commit)
        } catch {
            if sqlite3_get_autocommit(conn.db) == 0 { try? conn.exec(SQL.rollback) }
            throw error
        }
    }

    /// Runs `body` again while it fails with `.busy`, for up to `timeoutMs`: changing the journal
    /// mode needs the file to itself, and SQLite does not always wait for that by itself.
    private static func retryWhileBusy(_ conn: SQLiteConnection, timeoutMs: Int, _ body: () throws -> Void) throws {
        let deadline = monoNs() &+ UInt64(timeoutMs) * 1_000_000
        var pause = 1
        while true {
            do {
                return try body()
            } catch let e as KofkaError where e.code == .busy && monoNs() < deadline {
                sleepMs(pause)
                pause = min(pause * 2, 50)
            }
        }
    }

    /// Throws unless the file is empty or a Kofka database this code can read; returns its
    /// schema version (0 for an empty file). Reads the three facts in one statement, so a file
    /// being created by another process is seen before or after, never half-made.
    @discardableResult
    private static func checkOwner(_ conn: SQLiteConnection) throws -> Int64 {
        let (app, version, tables) = try conn.int64Triple(SQL.owner)
        if app == applicationID {
            guard version <= schemaVersion else {
                throw KofkaError(.storage, "\(conn.path) has Kofka schema version \(version); this build reads up to \(schemaVersion)")
            }
            return max(1, version)
        }
        guard app == 0, tables == 0 else {
            throw KofkaError(.storage, "\(conn.path) is an SQLite database but not a Kofka one (application_id \(app), \(tables) schema objects)")
        }
        return 0
    }

    /// Every SQL statement of this backend.
    enum SQL {
        static let schema = """
            CREATE TABLE IF NOT EXISTS kv(key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS records(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL,
                key BLOB, value BLOB, headers BLOB, txn INTEGER NOT NULL DEFAULT 0);
            \(logsTable)
            """
        static let logsTable = """
            CREATE TABLE IF NOT EXISTS logs(pnum INTEGER PRIMARY KEY, start INTEGER NOT NULL DEFAULT 0,
                next INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0);
            """
        /// A version-1 file never deleted a record: every log starts at 0.
        static let migrateFrom1 = """
            \(logsTable)
            INSERT INTO logs(pnum, start, next, bytes)
                SELECT id >> 40, 0, max(id & 1099511627775) + 1, sum(\(size)) FROM records GROUP BY id >> 40;
            """
        /// Bytes a record counts for (`logBytes`, `retention.bytes`): key + value + encoded headers.
        static let size = "coalesce(length(key), 0) + coalesce(length(value), 0) + coalesce(length(headers), 0)"
        static let logRow = "SELECT start, next, bytes FROM logs WHERE pnum = ?1"
        static let logAppended = """
            INSERT INTO logs(pnum, start, next, bytes) VALUES(?1, 0, ?2, ?3)
            ON CONFLICT(pnum) DO UPDATE SET next = excluded.next, bytes = bytes + excluded.bytes
            """
        static let rangeBytes = "SELECT coalesce(sum(\(size)), 0) FROM records WHERE id >= ?1 AND id < ?2"
        static let deleteRange = "DELETE FROM records WHERE id >= ?1 AND id < ?2"
        static let logTruncated = "UPDATE logs SET start = ?2, bytes = bytes - ?3 WHERE pnum = ?1"
        static let deleteOne = "DELETE FROM records WHERE id = ?1 RETURNING \(size)"
        static let logShrunk = "UPDATE logs SET bytes = bytes - ?2 WHERE pnum = ?1"
        static let begin = "BEGIN"
        static let beginImmediate = "BEGIN IMMEDIATE"
        static let commit = "COMMIT"
        static let rollback = "ROLLBACK"
        static let dataVersion = "PRAGMA data_version"
        static let owner = """
            SELECT (SELECT application_id FROM pragma_application_id()), (SELECT user_version FROM pragma_user_version()),
                   (SELECT count(*) FROM sqlite_master)
            """
        static let get = "SELECT value FROM kv WHERE key = ?1"
        static let put = "INSERT OR REPLACE INTO kv(key, value) VALUES(?1, ?2)"
        static let delete = "DELETE FROM kv WHERE key = ?1"
        static let scan = "SELECT key, value FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key"
        static let readRecords = """
            SELECT id, ts, key, value, headers, txn FROM records
            WHERE id >= ?1 AND id <= ?2 ORDER BY id LIMIT ?3
            """
        static let insertRecord = "INSERT INTO records(id, ts, key, value, headers, txn) VALUES(?1, ?2, ?3, ?4, ?5, ?6)"
    }

    // MARK: - Reader/writer

    /// The reader/writer handed to a `read` or `write` body; detached when the call returns.
    private final class Transaction: StorageWriter {
        var conn: SQLiteConnection?
        let writable: Bool
        var changed = false

        init(_ conn: SQLiteConnection, writable: Bool) {
            self.conn = conn
            self.writable = writable
        }

        private func live() throws -> SQLiteConnection {
            guard let conn else {
                throw KofkaError(.invalidState, "a storage reader/writer was used after its transaction ended")
            }
            return conn
        }

        private func writer(_ op: String) throws -> SQLiteConnection {
            guard writable else { throw KofkaError(.invalidState, "\(op) inside a read transaction") }
            return try live()
        }

        private static func base(_ pnum: Int64) -> Int64 { pnum << StorageLimits.offsetBits }

        func get(_ key: String) throws -> [UInt8]? {
            let c = try live()
            let stmt = try c.statement(SQL.get)
            defer { sqlite3_reset(stmt) }
            sqliteBindText(stmt, 1, key)
            guard try c.step(stmt, "get \(key)") else { return nil }
            return sqliteColumnBlob(stmt, 0) ?? []
        }

        func scan(from lower: String, to upper: String) throws -> [(key: String, value: [UInt8])] {
            let c = try live()
            let stmt = try c.statement(SQL.scan)
            defer { sqlite3_reset(stmt) }
            sqliteBindText(stmt, 1, lower)
            sqliteBindText(stmt, 2, upper)
            var out: [(key: String, value: [UInt8])] = []
            while try c.step(stmt, "scan \(lower)..<\(upper)") {
                out.append((sqliteColumnText(stmt, 0), sqliteColumnBlob(stmt, 1) ?? []))
            }
            return out
        }

        /// The partition's (log start, high watermark, bytes held); zeros for a partition never written.
        private func logRow(_ pnum: Int64) throws -> (start: Int64, next: Int64, bytes: Int64) {
            try checkPartitionNumber(pnum)
            let c = try live()
            let stmt = try c.statement(SQL.logRow)
            defer { sqlite3_reset(stmt) }
            sqlite3_bind_int64(stmt, 1, pnum)
            guard try c.step(stmt, "log of partition \(pnum)") else { return (0, 0, 0) }
            return (sqlite3_column_int64(stmt, 0), sqlite3_column_int64(stmt, 1), sqlite3_column_int64(stmt, 2))
        }

        func highWatermark(_ pnum: Int64) throws -> Int64 { try logRow(pnum).next }
        func logStartOffset(_ pnum: Int64) throws -> Int64 { try logRow(pnum).start }
        func logBytes(_ pnum: Int64) throws -> Int64 { try logRow(pnum).bytes }

        /// Runs `sql` with integer parameters, to completion; returns the first column of the last row.
        @discardableResult
        private func run(_ sql: String, _ args: Int64..., context: @autoclosure () -> String) throws -> Int64 {
            let c = try live()
            let stmt = try c.statement(sql)
            defer { sqlite3_reset(stmt) }
            for (i, a) in args.enumerated() { sqlite3_bind_int64(stmt, Int32(i + 1), a) }
            var last: Int64 = 0
            while try c.step(stmt, context()) { last = sqlite3_column_int64(stmt, 0) }
            return last
        }

        func truncateLog(_ pnum: Int64, before offset: Int64) throws -> Int64 {
            _ = try writer("truncateLog")
            let log = try logRow(pnum)
            let target = min(offset, log.next)
            guard target > log.start else { return log.start }
            let base = Self.base(pnum)
            let bytes = try run(SQL.rangeBytes, base + log.start, base + target, context: "size of partition \(pnum) below \(target)")
            try run(SQL.deleteRange, base + log.start, base + target, context: "delete partition \(pnum) below \(target)")
            try run(SQL.logTruncated, pnum, target, bytes, context: "log start of partition \(pnum)")
            changed = true
            return target
        }

        func removeRecords(_ pnum: Int64, at offsets: [Int64]) throws {
            _ = try writer("removeRecords")
            try checkPartitionNumber(pnum)
            let base = Self.base(pnum)
            var freed: Int64 = 0
            for o in offsets where o >= 0 && o < 1 << StorageLimits.offsetBits {
                freed += try run(SQL.deleteOne, base + o, context: "remove record \(o) of partition \(pnum)")
            }
            guard freed > 0 || !offsets.isEmpty else { return }
            try run(SQL.logShrunk, pnum, freed, context: "bytes of partition \(pnum)")
            changed = true
        }

        func readRecords(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int) throws -> [StoredRecord] {
            var out: [StoredRecord] = []
            _ = try forEachRecord(pnum, from: from, below: below, maxCount: maxCount) { r in out.append(r.stored) }
            return out
        }

        func forEachRecord(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int, _ body: (RecordView) throws -> Void) throws -> Int {
            try checkPartitionNumber(pnum)
            let c = try live()
            let lo = max(from, 0), hi = min(below, 1 << StorageLimits.offsetBits)
            guard lo < hi, maxCount > 0 else { return 0 }
            let stmt = try c.statement(SQL.readRecords)
            defer { sqlite3_reset(stmt) }
            let base = Self.base(pnum)
            sqlite3_bind_int64(stmt, 1, base + lo)
            sqlite3_bind_int64(stmt, 2, base + hi - 1)  // inclusive: no overflow
            sqlite3_bind_int64(stmt, 3, Int64(maxCount))
            func column(_ i: Int32) -> UnsafeRawBufferPointer? {
                if sqlite3_column_type(stmt, i) == SQLITE_NULL { return nil }
                let p = sqlite3_column_blob(stmt, i)
                return UnsafeRawBufferPointer(start: p, count: Int(sqlite3_column_bytes(stmt, i)))
            }
            var n = 0
            while try c.step(stmt, "read partition \(pnum)") {
                try body(RecordView(offset: sqlite3_column_int64(stmt, 0) - base, txn: sqlite3_column_int64(stmt, 5),
                                    timestampMs: sqlite3_column_int64(stmt, 1), key: column(2), value: column(3), headers: column(4)))
                n += 1
            }
            return n
        }

        func put(_ key: String, _ value: [UInt8]) throws {
            let c = try writer("put")
            let stmt = try c.statement(SQL.put)
            defer { sqlite3_reset(stmt) }
            sqliteBindText(stmt, 1, key)
            try sqliteWithBlob(stmt, 2, value) { _ = try c.step(stmt, "put \(key)") }
            changed = true
        }

        func delete(_ key: String) throws {
            let c = try writer("delete")
            let stmt = try c.statement(SQL.delete)
            defer { sqlite3_reset(stmt) }
            sqliteBindText(stmt, 1, key)
            _ = try c.step(stmt, "delete \(key)")
            if sqlite3_changes(c.db) > 0 { changed = true }
        }

        func append(_ pnum: Int64, _ batch: RecordBatch, txn: Int64) throws -> Int64 {
            let c = try writer("append")
            let first = try highWatermark(pnum)
            guard batch.count > 0 else { return first }
            try checkOffsetSpace(pnum, base: first, count: batch.count)
            let stmt = try c.statement(SQL.insertRecord)
            defer {
                sqlite3_reset(stmt)
                sqlite3_clear_bindings(stmt)   // drop pointers to the batch's buffer
            }
            sqlite3_bind_int64(stmt, 6, txn)   // bindings survive sqlite3_reset
            var id = Self.base(pnum) + first
            changed = true
            try batch.buffer.withUnsafeBytes { buf in
                for e in batch.entries {
                    sqlite3_bind_int64(stmt, 1, id)
                    sqlite3_bind_int64(stmt, 2, e.timestampMs)
                    sqliteBindSlice(stmt, 3, buf, e.start, e.keyLen)
                    sqliteBindSlice(stmt, 4, buf, e.valueStart, e.valueLen)
                    sqliteBindSlice(stmt, 5, buf, e.headersStart, e.headersLen)
                    let rc = sqlite3_step(stmt)
                    guard rc == SQLITE_DONE else {
                        throw c.error(rc, "append to partition \(pnum)")
                    }
                    sqlite3_reset(stmt)
                    id += 1
                }
            }
            try run(SQL.logAppended, pnum, first + Int64(batch.count), Int64(batch.buffer.count), context: "high watermark of partition \(pnum)")
            return first
        }
    }
}
