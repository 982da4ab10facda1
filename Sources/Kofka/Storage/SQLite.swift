import CSQLite

/// One SQLite connection with a cache of prepared statements. Not thread-safe: the owner
/// guarantees that only one thread uses it at a time (it is opened with `SQLITE_OPEN_NOMUTEX`);
/// it is `Sendable` only so that the owner's `Mutex` can hold it.
final class SQLiteConnection: @unchecked Sendable {
    let path: String
    private(set) var db: OpaquePointer?
    private let busyTimeoutMs: Int
    private var statements: [String: OpaquePointer] = [:]

    /// Opens (creating if missing) `path` and sets the busy timeout and `synchronous` level.
    init(path: String, busyTimeoutMs: Int, synchronous: String) throws {
        self.path = path
        self.busyTimeoutMs = busyTimeoutMs
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_close_v2(handle)
            throw KofkaError(.storage, "cannot open SQLite database \(path): \(message)")
        }
        db = handle
        sqlite3_extended_result_codes(handle, 0)
        sqlite3_busy_timeout(handle, Int32(clamping: busyTimeoutMs))
        do {
            try exec("PRAGMA synchronous=\(synchronous)")
            // After a checkpoint, a WAL file larger than this is cut back, so it cannot stay big.
            try exec("PRAGMA journal_size_limit=16777216")
            // Deleted records are not overwritten with zeros where that costs extra writes (freed
            // pages: the bulk of a chunk row), as Kafka does not overwrite deleted segment files;
            // builds of SQLite that default to secure_delete=ON (Debian's) would otherwise write
            // every page retention frees once more. Pages are reused or given back
            // (`reclaimSpace`) as before.
            try exec("PRAGMA secure_delete=FAST")
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// Finalizes every statement and closes the connection. Idempotent.
    func close() {
        for stmt in statements.values { sqlite3_finalize(stmt) }
        statements = [:]
        if let db { sqlite3_close_v2(db) }
        db = nil
    }

    /// The `.storage` error for result code `rc`, naming the path and SQLite's message.
    func error(_ rc: Int32, _ context: String) -> KofkaError {
        let primary = rc & 0xff
        if primary == SQLITE_BUSY || primary == SQLITE_LOCKED {
            return KofkaError(.busy, "database is locked (busy for more than \(busyTimeoutMs) ms): \(path) (\(context))", retriable: true)
        }
        let detail = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
        return KofkaError(.storage, "SQLite error \(rc) (\(String(cString: sqlite3_errstr(rc)))) during \(context): \(detail): \(path)")
    }

    /// The cached prepared statement for `sql`, preparing it on first use.
    func statement(_ sql: String) throws -> OpaquePointer {
        if let stmt = statements[sql] { return stmt }
        guard let db else { throw KofkaError(.closed, "the SQLite connection to \(path) is closed") }
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, "prepare \(sql)") }
        statements[sql] = stmt
        return stmt
    }

    /// Steps `stmt` once; returns true for a row, false when done.
    @inline(__always)
    func step(_ stmt: OpaquePointer, _ context: @autoclosure () -> String) throws -> Bool {
        let rc = sqlite3_step(stmt)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        sqlite3_reset(stmt)
        throw error(rc, context())
    }

    /// Runs a statement without parameters (cached), discarding rows.
    func exec(_ sql: String) throws {
        let stmt = try statement(sql)
        defer { sqlite3_reset(stmt) }
        while try step(stmt, sql) {}
    }

    /// Runs a statement without parameters (cached) and returns the first column of its first row.
    func int64(_ sql: String) throws -> Int64? {
        let stmt = try statement(sql)
        defer { sqlite3_reset(stmt) }
        guard try step(stmt, sql), sqlite3_column_type(stmt, 0) != SQLITE_NULL else { return nil }
        return sqlite3_column_int64(stmt, 0)
    }

    /// Runs a statement without parameters (cached) and returns the first three columns of its first row.
    func int64Triple(_ sql: String) throws -> (Int64, Int64, Int64) {
        let stmt = try statement(sql)
        defer { sqlite3_reset(stmt) }
        guard try step(stmt, sql) else { return (0, 0, 0) }
        return (sqlite3_column_int64(stmt, 0), sqlite3_column_int64(stmt, 1), sqlite3_column_int64(stmt, 2))
    }

    /// Runs uncached SQL and returns every row's columns as integers (NULL as 0; a blob or
    /// text column as its length, in bytes). For inspecting a file (tests, diagnostics).
    func integerRows(_ sql: String) throws -> [[Int64]] {
        guard let db else { throw KofkaError(.closed, "the SQLite connection to \(path) is closed") }
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, "prepare \(sql)") }
        defer { sqlite3_finalize(stmt) }
        var rows: [[Int64]] = []
        while try step(stmt, sql) {
            rows.append((0..<sqlite3_column_count(stmt)).map { i in
                switch sqlite3_column_type(stmt, i) {
                case SQLITE_BLOB, SQLITE_TEXT: Int64(sqlite3_column_bytes(stmt, i))
                default: sqlite3_column_int64(stmt, i)
                }
            })
        }
        return rows
    }

    /// Runs uncached SQL (schema setup, pragmas that take a value).
    func execOnce(_ sql: String) throws {
        guard let db else { throw KofkaError(.closed, "the SQLite connection to \(path) is closed") }
        let rc = sqlite3_exec(db, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw error(rc, sql) }
    }
}

// MARK: - Binding and reading columns

/// Binds `text` as its UTF-8 bytes with their length (a NUL inside is a byte like any other).
@inline(__always)
func sqliteBindText(_ stmt: OpaquePointer, _ index: Int32, _ text: String) {
    var text = text
    text.withUTF8 { buf in
        buf.withMemoryRebound(to: CChar.self) { chars in
            // An empty string's buffer may have no address; "" binds the empty text, not NULL.
            guard let base = chars.baseAddress, chars.count > 0 else {
                sqlite3_bind_text(stmt, index, "", 0, kofka_sqlite_transient())
                return
            }
            sqlite3_bind_text(stmt, index, base, Int32(chars.count), kofka_sqlite_transient())
        }
    }
}

/// Binds `bytes` (NULL for nil, a zero-length blob for empty) without copying, for the
/// duration of `body`.
@inline(__always)
func sqliteWithBlob<R>(_ stmt: OpaquePointer, _ index: Int32, _ bytes: [UInt8]?, _ body: () throws -> R) rethrows -> R {
    guard let bytes else {
        sqlite3_bind_null(stmt, index)
        return try body()
    }
    return try bytes.withUnsafeBufferPointer { buf in
        if let base = buf.baseAddress, buf.count > 0 {
            sqlite3_bind_blob(stmt, index, base, Int32(buf.count), kofka_sqlite_static())
        } else {
            sqlite3_bind_zeroblob(stmt, index, 0)
        }
        return try body()
    }
}

/// Binds `len` bytes of `buf` at `start` (no copy; the buffer must outlive the step), NULL for
/// `len` -1, or a zero-length blob for 0.
@inline(__always)
func sqliteBindSlice(_ stmt: OpaquePointer, _ index: Int32, _ buf: UnsafeRawBufferPointer, _ start: Int, _ len: Int32) {
    if len < 0 {
        sqlite3_bind_null(stmt, index)
    } else if len > 0, let base = buf.baseAddress {
        sqlite3_bind_blob(stmt, index, base + start, len, kofka_sqlite_static())
    } else {
        sqlite3_bind_zeroblob(stmt, index, 0)
    }
}

/// Column `index` as bytes: nil for NULL, `[]` for a zero-length blob.
@inline(__always)
func sqliteColumnBlob(_ stmt: OpaquePointer, _ index: Int32) -> [UInt8]? {
    if sqlite3_column_type(stmt, index) == SQLITE_NULL { return nil }
    let ptr = sqlite3_column_blob(stmt, index)
    let count = Int(sqlite3_column_bytes(stmt, index))
    guard count > 0, let ptr else { return [] }
    return [UInt8](UnsafeRawBufferPointer(start: ptr, count: count))
}

/// Column `index` as text (UTF-8).
@inline(__always)
func sqliteColumnText(_ stmt: OpaquePointer, _ index: Int32) -> String {
    guard let ptr = sqlite3_column_text(stmt, index) else { return "" }
    let count = Int(sqlite3_column_bytes(stmt, index))
    return String(decoding: UnsafeBufferPointer(start: ptr, count: count), as: UTF8.self)
}
