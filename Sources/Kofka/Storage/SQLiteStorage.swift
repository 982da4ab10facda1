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
/// * A partition's log lives in `chunks`: one row per appended batch (split at
///   `RecordChunk.maxBytes`, 16 KiB), at rowid
///   `pnum << 40 | offset of its first record`, its records packed in one blob (`RecordChunk`).
///   Retention deletes whole rows and rewrites only the one it cuts; compaction rewrites the rows
///   it removes records from. `logs` holds each partition's log start, high watermark and bytes.
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

    /// The doorbell every process sharing the file rings after a commit (`PATH-bell`, a futex
    /// in a shared mapping): a poll blocked in one process wakes within microseconds of a commit
    /// in another, and an idle one sleeps without polling. nil where the file cannot be made or
    /// mapped: waits then re-check `data_version` every 2 ms.
    private let bell: Doorbell?
    /// The longest a wait sleeps on the doorbell before it checks `data_version` itself.
    static let bellSliceNs: UInt64 = 100_000_000

    /// How many times `waitForChange` has checked the change token (tests: an idle wait polls
    /// nothing when the doorbell works).
    let tokenChecks = Locked<Int>(0)

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
        bell = path == ":memory:" || path.isEmpty ? nil : Doorbell(path: path + "-bell")
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
            bell?.ring()   // after the commit: a woken process's read sees it
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

    /// Waits on the doorbell (any process's commits, this instance's `wakeAll`); where there
    /// is none, on this process's commits and `wakeAll`, re-checking `data_version` every ~2 ms.
    public func waitForChange(since token: UInt64, timeoutNs: UInt64) {
        let deadline = monoNs() &+ timeoutNs
        while true {
            let seen = signal.withLock { wakeups }
            // The bell's value is read before the token is checked: a commit after the check
            // has moved the bell past `rung`, so the futex wait below returns at once.
            let rung = bell?.value
            tokenChecks.withLock { $0 += 1 }
            if changeToken() != token || pool.withLock({ $0.closed }) { return }
            let now = monoNs()
            if now >= deadline { return }
            // At most 100 ms on the bell: a writer that committed and died before it rang (a
            // SIGKILL between the two), or one that cannot ring (another program on the file),
            // is noticed through data_version within that time.
            if let bell, let rung, bell.wait(seen: rung, timeoutNs: min(deadline - now, Self.bellSliceNs)) {
                if signal.withLock({ wakeups }) != seen { return }
                continue   // rung (or spurious): check the token again
            }
            // Short slices: commits by other processes only show in data_version.
            let slice = min(deadline - now, 2_000_000)
            let woken = signal.withLock {
                if wakeups == seen { signal.wait(timeoutNs: slice) }
                return wakeups != seen
            }
            if woken { return }
        }
    }

    /// Wakes every `waitForChange` waiter of this instance. A waiter asleep on the doorbell is
    /// woken by ringing it (a wake without a ring could fall between a waiter's look at the bell
    /// and its sleep); waiters of other processes wake too, find nothing new, and sleep again.
    public func wakeAll() {
        signal.withLock {
            wakeups &+= 1
            signal.broadcast()
        }
        bell?.ring()
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
    /// The schema version this code writes and reads. 1: kv and records (one row per record);
    /// 2: adds `logs` (each partition's log start, high watermark and bytes held) and incremental
    /// auto-vacuum; 3: `chunks` (one row per appended batch, records packed) replaces `records`.
    /// Files of versions 1 and 2 are migrated when opened.
    static let schemaVersion: Int64 = 3

    /// The page size of a new file: 16 KiB, not SQLite's 4 KiB. A log is mostly chunk rows of up
    /// to 16 KiB (`RecordChunk.maxBytes`), which SQLite stores as a cell and overflow pages; with
    /// 16 KiB pages a chunk is two pages, not five, so a commit writes a quarter of the WAL frames
    /// (each one a header and a page written apiece) and a checkpoint copies a quarter of them.
    /// A busy writer is bound by those writes: per-record produce to SQLite ran about 1.3× faster
    /// (BENCHMARKS.md, issue 14, sixth pass). Files made with another page size keep theirs and
    /// work as before.
    package static let pageSizeForNewFiles = 16384

    /// Checks that the file is empty or Kofka's, switches it to WAL and creates the schema. Safe
    /// when many processes open a new file at once: the check reads a consistent snapshot, the
    /// switch to WAL is retried while another opener holds the file, and the schema is created
    /// (with the application id and version) in one write transaction, which the first opener
    /// wins and the others then see whole.
    private static func prepareSchema(_ conn: SQLiteConnection, busyTimeoutMs: Int) throws {
        // Check before changing anything (the first read also detects a non-database file).
        var found: Int64 = 0
        try retryWhileBusy(conn, timeoutMs: busyTimeoutMs) { try inTransaction(conn, SQL.begin) { found = try checkOwner(conn) } }
        // A new file gives freed pages back through `incremental_vacuum` (maintenance). The mode
        // is fixed when the file's first page is written, so it is set before the switch to WAL.
        // Only on a new file: on an existing one, even setting the value it has writes the
        // header, so every open waited for the writers of other processes (and failed with BUSY
        // behind a long one).
        // The page size is fixed then too (`pageSizeForNewFiles`); a file made with another keeps it.
        if found == 0 {
            try retryWhileBusy(conn, timeoutMs: busyTimeoutMs) {
                try conn.execOnce("PRAGMA page_size=\(pageSizeForNewFiles); PRAGMA auto_vacuum=INCREMENTAL")
            }
        }
        try retryWhileBusy(conn, timeoutMs: busyTimeoutMs) { try conn.execOnce("PRAGMA journal_mode=WAL") }
        // A file of this version has its schema: nothing to write, no writer to wait for.
        if found == schemaVersion { return }
        try inTransaction(conn, SQL.beginImmediate) {
            let version = try checkOwner(conn)
            if version == schemaVersion { return }
            if version == 0 {
                try conn.execOnce(SQL.schema)
            } else {
                try migrate(conn)
            }
            try conn.execOnce("PRAGMA application_id=\(applicationID); PRAGMA user_version=\(schemaVersion)")
        }
    }

    /// Brings a file of version 1 or 2 to version 3, inside the caller's write transaction (so
    /// a crash leaves the old file whole, and a second opener waits and then sees version 3):
    /// the rows of `records` are packed into `chunks` — a run of one partition's records written
    /// by the same transaction number becomes one row, bounded as an append's — and `records` is
    /// dropped; then a file without `logs` (version 1, which never deleted a record: every log
    /// starts at 0) gets it, computed from the chunks.
    private static func migrate(_ conn: SQLiteConnection) throws {
        try conn.execOnce(SQL.chunksTable)
        if try conn.int64(SQL.hasTable("records")) == 1 {
            try packRecordsIntoChunks(conn)
            try conn.execOnce("DROP TABLE records")
        }
        if try conn.int64(SQL.hasTable("logs")) == 0 {
            try conn.execOnce(SQL.logsTable + SQL.logsFromChunks)
        }
    }

    /// Reads `records` in rowid order and writes it to `chunks`, a row per run of one partition's
    /// records of one transaction number, at most `RecordChunk.maxBytes` bytes each (a larger
    /// record alone).
    private static func packRecordsIntoChunks(_ conn: SQLiteConnection) throws {
        let read = try conn.statement("SELECT id, ts, key, value, headers, txn FROM records ORDER BY id")
        defer { sqlite3_reset(read) }
        let insert = try conn.statement(SQL.insertChunk)
        var builder = RecordChunk.Builder()
        var pnum: Int64 = -1, txn: Int64 = 0
        func flush() throws {
            guard let first = builder.first, let last = builder.last else { return }
            try insertChunk(conn, insert, id: (pnum << StorageLimits.offsetBits) | first, last: last, count: builder.count,
                            bytes: builder.bytes, txn: txn, blob: builder.blob(), context: "migrate partition \(pnum) to chunks")
            builder = RecordChunk.Builder()
        }
        func column(_ i: Int32) -> UnsafeRawBufferPointer? {
            if sqlite3_column_type(read, i) == SQLITE_NULL { return nil }
            return UnsafeRawBufferPointer(start: sqlite3_column_blob(read, i), count: Int(sqlite3_column_bytes(read, i)))
        }
        while try conn.step(read, "migrate records to chunks") {
            let id = sqlite3_column_int64(read, 0)
            let p = id >> StorageLimits.offsetBits, t = sqlite3_column_int64(read, 5)
            let r = RecordView(offset: id & ((1 << StorageLimits.offsetBits) - 1), txn: t, timestampMs: sqlite3_column_int64(read, 1),
                               key: column(2), value: column(3), headers: column(4))
            let size = (r.key?.count ?? 0) + (r.value?.count ?? 0) + (r.headers?.count ?? 0)
            if p != pnum || t != txn || (builder.count > 0 && builder.size(adding: r.offset, bytes: size) > RecordChunk.maxBytes) {
                try flush()
                pnum = p
                txn = t
            }
            builder.add(r)
        }
        try flush()
    }

    /// Inserts one row into `chunks` with the cached statement `stmt`.
    fileprivate static func insertChunk(_ conn: SQLiteConnection, _ stmt: OpaquePointer, id: Int64, last: Int64, count: Int,
                                        bytes: Int, txn: Int64, blob: [UInt8], context: @autoclosure () -> String) throws {
        defer {
            sqlite3_reset(stmt)
            sqlite3_bind_null(stmt, 6)   // drop the pointer to `blob`
        }
        sqlite3_bind_int64(stmt, 1, id)
        sqlite3_bind_int64(stmt, 2, last)
        sqlite3_bind_int64(stmt, 3, Int64(count))
        sqlite3_bind_int64(stmt, 4, Int64(bytes))
        sqlite3_bind_int64(stmt, 5, txn)
        try sqliteWithBlob(stmt, 6, blob) { _ = try conn.step(stmt, context()) }
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
            \(chunksTable)
            \(logsTable)
            """
        /// A partition's log: one row per run of records (`RecordChunk`). `id`: `pnum << 40 |` the
        /// offset of its first record; `last`: the offset of its last; `n`: how many it holds (its
        /// offsets are dense exactly when `last - first + 1 == n`); `bytes`: their key, value and
        /// header bytes; `txn`: the transaction that wrote them (0 = none); `data`: the packed
        /// records. The small columns come first, so that reading them never loads the blob.
        static let chunksTable = """
            CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY, last INTEGER NOT NULL, n INTEGER NOT NULL,
                bytes INTEGER NOT NULL, txn INTEGER NOT NULL DEFAULT 0, data BLOB NOT NULL);
            """
        static let logsTable = """
            CREATE TABLE IF NOT EXISTS logs(pnum INTEGER PRIMARY KEY, start INTEGER NOT NULL DEFAULT 0,
                next INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0);
            """
        /// Version 1 never deleted a record: every log starts at 0 and ends after its last record.
        static let logsFromChunks = """
            INSERT INTO logs(pnum, start, next, bytes)
                SELECT id >> 40, 0, max(last) + 1, sum(bytes) FROM chunks GROUP BY id >> 40;
            """
        static func hasTable(_ name: String) -> String {
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '\(name)'"
        }
        static let logRow = "SELECT start, next, bytes FROM logs WHERE pnum = ?1"
        static let logAppended = """
            INSERT INTO logs(pnum, start, next, bytes) VALUES(?1, 0, ?2, ?3)
            ON CONFLICT(pnum) DO UPDATE SET next = excluded.next, bytes = bytes + excluded.bytes
            """
        static let insertChunk = "INSERT INTO chunks(id, last, n, bytes, txn, data) VALUES(?1, ?2, ?3, ?4, ?5, ?6)"
        /// The rows holding offsets `?1 ... ?2` (ids): the last row starting at or below `?1`
        /// (within the partition, whose ids start at `?3`), then forward.
        static let readChunks = """
            SELECT id, last, txn, data FROM chunks
            WHERE id >= coalesce((SELECT id FROM chunks WHERE id <= ?1 AND id >= ?3 ORDER BY id DESC LIMIT 1), ?1)
              AND id <= ?2 ORDER BY id
            """
        /// The same rows' bounds alone (the blob is not loaded).
        static let chunkBounds = """
            SELECT id, last FROM chunks
            WHERE id >= coalesce((SELECT id FROM chunks WHERE id <= ?1 AND id >= ?3 ORDER BY id DESC LIMIT 1), ?1)
              AND id <= ?2 ORDER BY id
            """
        /// The last row starting below `?1`, within the partition whose ids start at `?2`.
        static let chunkBelow = "SELECT id, last, n, bytes, txn, data FROM chunks WHERE id < ?1 AND id >= ?2 ORDER BY id DESC LIMIT 1"
        static let chunkByID = "SELECT id, last, n, bytes, txn, data FROM chunks WHERE id = ?1"
        static let rangeBytes = "SELECT coalesce(sum(bytes), 0) FROM chunks WHERE id >= ?1 AND id < ?2"
        static let deleteRange = "DELETE FROM chunks WHERE id >= ?1 AND id < ?2"
        static let deleteChunk = "DELETE FROM chunks WHERE id = ?1"
        static let logTruncated = "UPDATE logs SET start = ?2, bytes = bytes - ?3 WHERE pnum = ?1"
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

        /// One row of `chunks`, its blob copied out (so it can be rewritten after the read).
        private struct ChunkRow {
            var id: Int64
            var last: Int64
            var count: Int
            var bytes: Int64
            var txn: Int64
            var blob: [UInt8]
        }

        /// The row `sql` (bound to `args`) selects as `id, last, n, bytes, txn, data`, or nil.
        private func chunkRow(_ sql: String, _ args: Int64..., context: @autoclosure () -> String) throws -> ChunkRow? {
            let c = try live()
            let stmt = try c.statement(sql)
            defer { sqlite3_reset(stmt) }
            for (i, a) in args.enumerated() { sqlite3_bind_int64(stmt, Int32(i + 1), a) }
            guard try c.step(stmt, context()) else { return nil }
            return ChunkRow(id: sqlite3_column_int64(stmt, 0), last: sqlite3_column_int64(stmt, 1),
                            count: Int(sqlite3_column_int64(stmt, 2)), bytes: sqlite3_column_int64(stmt, 3),
                            txn: sqlite3_column_int64(stmt, 4), blob: sqliteColumnBlob(stmt, 5) ?? [])
        }

        /// The records of `row` whose offset `keep` accepts (asked once per record, in order).
        private func survivors(_ row: ChunkRow, _ pnum: Int64, _ keep: (Int64) -> Bool) throws -> RecordChunk.Builder {
            var kept = RecordChunk.Builder()
            let first = row.id - Self.base(pnum)
            let path = try live().path
            _ = try row.blob.withUnsafeBytes { blob in
                try RecordChunk.visit(blob, first: first, txn: row.txn, from: first, below: .max, maxCount: .max,
                                      where: "partition \(pnum) at offset \(first) of \(path)") { r in
                    if keep(r.offset) { kept.add(r) }
                }
            }
            return kept
        }

        /// Inserts `kept` (nonempty) as the row of partition `pnum` starting at its first offset.
        private func insert(_ kept: RecordChunk.Builder, _ pnum: Int64, txn: Int64) throws {
            guard let first = kept.first, let last = kept.last else { return }
            let c = try live()
            try SQLiteStorage.insertChunk(c, try c.statement(SQL.insertChunk), id: Self.base(pnum) + first, last: last,
                                          count: kept.count, bytes: kept.bytes, txn: txn, blob: kept.blob(),
                                          context: "rewrite records of partition \(pnum) from offset \(first)")
        }

        /// Deletes the rows wholly below the new log start and rewrites the one row it cuts with
        /// the records it keeps.
        func truncateLog(_ pnum: Int64, before offset: Int64) throws -> Int64 {
            _ = try writer("truncateLog")
            let log = try logRow(pnum)
            let target = min(offset, log.next)
            guard target > log.start else { return log.start }
            let base = Self.base(pnum)
            // The last row starting below the new log start may reach past it.
            var cut: (kept: RecordChunk.Builder, txn: Int64)?
            if let row = try chunkRow(SQL.chunkBelow, base + target, base, context: "read partition \(pnum) below \(target)"),
               row.last >= target {
                cut = (try survivors(row, pnum) { $0 >= target }, row.txn)
            }
            var freed = try run(SQL.rangeBytes, base, base + target, context: "size of partition \(pnum) below \(target)")
            try run(SQL.deleteRange, base, base + target, context: "delete partition \(pnum) below \(target)")
            if let cut {
                try insert(cut.kept, pnum, txn: cut.txn)
                freed -= Int64(cut.kept.bytes)
            }
            try run(SQL.logTruncated, pnum, target, freed, context: "log start of partition \(pnum)")
            changed = true
            return target
        }

        /// Rewrites each row holding one of `offsets` with the records it keeps (deletes it when
        /// none are left).
        func removeRecords(_ pnum: Int64, at offsets: [Int64]) throws {
            let c = try writer("removeRecords")
            try checkPartitionNumber(pnum)
            let doomed = Set(offsets.filter { $0 >= 0 && $0 < 1 << StorageLimits.offsetBits }).sorted()
            guard let lo = doomed.first, let hi = doomed.last else { return }
            let base = Self.base(pnum)
            // The bounds of the rows that may hold them (their blobs are read only when needed).
            var rows: [(id: Int64, last: Int64)] = []
            do {
                let stmt = try c.statement(SQL.chunkBounds)
                defer { sqlite3_reset(stmt) }
                sqlite3_bind_int64(stmt, 1, base + lo)
                sqlite3_bind_int64(stmt, 2, base + hi)
                sqlite3_bind_int64(stmt, 3, base)
                while try c.step(stmt, "rows of partition \(pnum) holding \(lo)...\(hi)") {
                    rows.append((sqlite3_column_int64(stmt, 0), sqlite3_column_int64(stmt, 1)))
                }
            }
            var freed: Int64 = 0
            var k = 0
            for (id, last) in rows {
                while k < doomed.count && doomed[k] < id - base { k += 1 }
                var end = k
                while end < doomed.count && doomed[end] <= last { end += 1 }
                guard end > k else { continue }
                let gone = doomed[k..<end]
                k = end
                guard let row = try chunkRow(SQL.chunkByID, id, context: "read partition \(pnum) at \(id - base)") else { continue }
                var j = gone.startIndex
                let kept = try survivors(row, pnum) { o in
                    while j < gone.endIndex && gone[j] < o { j += 1 }
                    return j == gone.endIndex || gone[j] != o
                }
                guard kept.count < row.count else { continue }   // none of them was held
                try run(SQL.deleteChunk, id, context: "remove records of partition \(pnum) at \(id - base)")
                try insert(kept, pnum, txn: row.txn)
                freed += row.bytes - Int64(kept.bytes)
                changed = true
            }
            if freed != 0 { try run(SQL.logShrunk, pnum, freed, context: "bytes of partition \(pnum)") }
        }

        func readRecords(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int) throws -> [StoredRecord] {
            var out: [StoredRecord] = []
            _ = try forEachRecord(pnum, from: from, below: below, maxCount: maxCount) { r in out.append(r.stored) }
            return out
        }

        /// Finds the row holding `from` (the last one starting at or below it), then walks forward,
        /// handing out records in place from each row's blob.
        func forEachRecord(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int, _ body: (RecordView) throws -> Void) throws -> Int {
            try checkPartitionNumber(pnum)
            let c = try live()
            let lo = max(from, 0), hi = min(below, 1 << StorageLimits.offsetBits)
            guard lo < hi, maxCount > 0 else { return 0 }
            let stmt = try c.statement(SQL.readChunks)
            defer { sqlite3_reset(stmt) }
            let base = Self.base(pnum)
            sqlite3_bind_int64(stmt, 1, base + lo)
            sqlite3_bind_int64(stmt, 2, base + hi - 1)  // inclusive: no overflow
            sqlite3_bind_int64(stmt, 3, base)
            var n = 0
            while n < maxCount, try c.step(stmt, "read partition \(pnum)") {
                let first = sqlite3_column_int64(stmt, 0) - base
                if sqlite3_column_int64(stmt, 1) < lo { continue }   // the row before `from` ends before it
                let data = sqlite3_column_blob(stmt, 3)
                let blob = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : Int(sqlite3_column_bytes(stmt, 3)))
                n += try RecordChunk.visit(blob, first: first, txn: sqlite3_column_int64(stmt, 2), from: lo, below: hi,
                                           maxCount: maxCount - n, where: "partition \(pnum) at offset \(first) of \(c.path)", body)
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

        /// Inserts the batch as one row, or several when it exceeds a row's bounds.
        func append(_ pnum: Int64, _ batch: RecordBatch, txn: Int64) throws -> Int64 {
            let c = try writer("append")
            let first = try highWatermark(pnum)
            guard batch.count > 0 else { return first }
            try checkOffsetSpace(pnum, base: first, count: batch.count)
            let stmt = try c.statement(SQL.insertChunk)
            let base = Self.base(pnum)
            changed = true
            for range in RecordChunk.split(batch) {
                let at = first + Int64(range.lowerBound)
                let bytes = batch.entries[range].reduce(0) { $0 + $1.size }
                try SQLiteStorage.insertChunk(c, stmt, id: base + at, last: at + Int64(range.count - 1), count: range.count,
                                              bytes: bytes, txn: txn, blob: RecordChunk.pack(batch, range),
                                              context: "append to partition \(pnum)")
            }
            try run(SQL.logAppended, pnum, first + Int64(batch.count), Int64(batch.buffer.count), context: "high watermark of partition \(pnum)")
            return first
        }
    }
}
