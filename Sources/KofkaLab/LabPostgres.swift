import Kofka
#if canImport(Glibc)
import Glibc
#endif

/// Throwaway stores on a PostgreSQL server, for the tests and the explorer: a fresh schema per
/// store (`?options=-csearch_path%3DSCHEMA` in the URI: the PostgreSQL storage plugin keeps
/// its tables in the first schema of the search_path), dropped afterwards; and the few
/// administrative statements the fault tests need (terminating sessions).
///
/// libpq is loaded with dlopen when first used, so nothing here is a build or run-time
/// dependency unless a PostgreSQL storage string is given.
///
/// ```swift
/// if let url = LabPostgres.testURL {
///     let (storage, schema) = LabPostgres.freshStore(url, tag: "mytest")
///     defer { LabPostgres.dropSchema(url, schema) }
///     let broker = try Broker(storage)
/// }
/// ```
public enum LabPostgres {
    /// `KOFKA_PG_URL` when set and not empty: the server the PostgreSQL tests run on.
    public static var testURL: String? {
        guard let p = getenv("KOFKA_PG_URL") else { return nil }
        let s = String(cString: p)
        return s.isEmpty ? nil : s
    }

    /// Whether `spec` is a PostgreSQL storage string (`postgresql:…` or `postgres:…`).
    public static func isPostgres(_ spec: String) -> Bool {
        spec.hasPrefix("postgresql:") || spec.hasPrefix("postgres:")
    }

    private static let counter = LabLock()
    nonisolated(unsafe) private static var next = 0

    /// A new schema name: `k_TAG_PID_N_RANDOM` (lower case, at most 63 bytes).
    public static func uniqueSchema(_ tag: String) -> String {
        let n = counter.with { next += 1; return next }
        let clean = String(tag.lowercased().map { ($0.isLetter || $0.isNumber) && $0.isASCII ? $0 : "_" }.prefix(24))
        return "k_\(clean)_\(getpid())_\(n)_\(String(UInt32.random(in: 0 ... .max), radix: 36))"
    }

    /// `url` with its search_path set to `schema` (an `options` parameter appended).
    public static func withSchema(_ url: String, _ schema: String) -> String {
        url + (url.contains("?") ? "&" : "?") + "options=-csearch_path%3D" + schema
    }

    /// The schema a storage string made by `withSchema` names, if any.
    public static func schema(of storage: String) -> String? {
        let pieces = storage.split(separator: "search_path%3D", omittingEmptySubsequences: false)
        guard pieces.count > 1, let last = pieces.last else { return nil }
        let schema = String(last.prefix { $0 != "&" })
        return schema.isEmpty ? nil : schema
    }

    /// A storage string for a store of its own on the server of `url`, and its schema.
    public static func freshStore(_ url: String, tag: String) -> (storage: String, schema: String) {
        let schema = uniqueSchema(tag)
        return (withSchema(url, schema), schema)
    }

    /// Loads the PostgreSQL plugin into this process (by opening and closing a broker on a
    /// throwaway schema), so that broker configs with `postgresql.*` keys are accepted: the core
    /// checks config keys before it resolves the storage string's scheme, and keys belong to a
    /// plugin only once it is loaded.
    public static func loadPlugin(_ url: String) throws {
        let (storage, schema) = freshStore(url, tag: "load")
        defer { dropSchema(url, schema) }
        try Broker(storage).close()
    }

    /// Redacts the password of a PostgreSQL storage string for printing
    /// (`postgresql://user:secret@host/db` → `postgresql://user:***@host/db`); others unchanged.
    public static func redacted(_ spec: String) -> String { Broker.redacted(spec) }

    /// Drops `schema` and everything in it (errors ignored: a store never created has none).
    public static func dropSchema(_ url: String, _ schema: String) {
        _ = try? query(url, "DROP SCHEMA IF EXISTS \"\(schema)\" CASCADE")
    }

    /// Terminates every Kofka session (application_name 'kofka') on the database of `url`,
    /// except this one; returns how many were terminated. What a network fault or a failing
    /// server does to a client, as `pg_terminate_backend` does it.
    @discardableResult
    public static func terminateKofkaSessions(_ url: String) throws -> Int {
        let rows = try query(url, """
            SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
            WHERE application_name = 'kofka' AND datname = current_database() AND pid <> pg_backend_pid()
            """)
        return Int(rows.first?.first ?? "0") ?? 0
    }

    /// Runs `sql` on a new session (application_name 'kofka-lab'); returns the rows as text.
    public static func query(_ url: String, _ sql: String) throws -> [[String]] {
        let pq = try LibPQ.shared()
        let conninfo = url + (url.contains("?") ? "&" : "?") + "application_name=kofka-lab"
        guard let conn = pq.connectdb(conninfo) else { throw KofkaError(.storage, "libpq: out of memory") }
        defer { pq.finish(conn) }
        guard pq.status(conn) == 0 else {
            throw KofkaError(.storage, "cannot connect to PostgreSQL: \(pq.message(pq.errorMessage(conn)))")
        }
        if let quiet = pq.exec(conn, "SET client_min_messages TO warning") { pq.clear(quiet) }
        guard let res = pq.exec(conn, sql) else { throw KofkaError(.storage, "libpq: \(pq.message(pq.errorMessage(conn)))") }
        defer { pq.clear(res) }
        let status = pq.resultStatus(res)
        guard status == 1 || status == 2 else {   // PGRES_COMMAND_OK, PGRES_TUPLES_OK
            throw KofkaError(.storage, "PostgreSQL: \(sql): \(pq.message(pq.resultErrorMessage(res)))")
        }
        var rows: [[String]] = []
        for r in 0..<pq.ntuples(res) {
            rows.append((0..<pq.nfields(res)).map { c in String(cString: pq.getvalue(res, r, c)) })
        }
        return rows
    }
}

/// The libpq functions `LabPostgres` uses, from `libpq.so.5` loaded at first use.
private struct LibPQ: @unchecked Sendable {
    typealias Conn = OpaquePointer
    let connectdb: @convention(c) (UnsafePointer<CChar>) -> Conn?
    let status: @convention(c) (Conn?) -> Int32
    let errorMessage: @convention(c) (Conn?) -> UnsafePointer<CChar>?
    let finish: @convention(c) (Conn?) -> Void
    let exec: @convention(c) (Conn?, UnsafePointer<CChar>) -> OpaquePointer?
    let resultStatus: @convention(c) (OpaquePointer?) -> Int32
    let resultErrorMessage: @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?
    let ntuples: @convention(c) (OpaquePointer?) -> Int32
    let nfields: @convention(c) (OpaquePointer?) -> Int32
    let getvalue: @convention(c) (OpaquePointer?, Int32, Int32) -> UnsafePointer<CChar>
    let clear: @convention(c) (OpaquePointer?) -> Void

    func message(_ p: UnsafePointer<CChar>?) -> String {
        p.map { String(cString: $0) }?.split(separator: "\n").first.map(String.init) ?? "unknown error"
    }

    private static let loaded: Result<LibPQ, KofkaError> = {
        guard let h = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL) else {
            return .failure(KofkaError(.storage, "cannot load libpq.so.5 (Debian: libpq5): \(dlerror().map { String(cString: $0) } ?? "")"))
        }
        func sym<T>(_ name: String, _: T.Type) -> T? { dlsym(h, name).map { unsafeBitCast($0, to: T.self) } }
        guard let a = sym("PQconnectdb", (@convention(c) (UnsafePointer<CChar>) -> Conn?).self),
              let b = sym("PQstatus", (@convention(c) (Conn?) -> Int32).self),
              let c = sym("PQerrorMessage", (@convention(c) (Conn?) -> UnsafePointer<CChar>?).self),
              let d = sym("PQfinish", (@convention(c) (Conn?) -> Void).self),
              let e = sym("PQexec", (@convention(c) (Conn?, UnsafePointer<CChar>) -> OpaquePointer?).self),
              let f = sym("PQresultStatus", (@convention(c) (OpaquePointer?) -> Int32).self),
              let g = sym("PQresultErrorMessage", (@convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?).self),
              let i = sym("PQntuples", (@convention(c) (OpaquePointer?) -> Int32).self),
              let j = sym("PQnfields", (@convention(c) (OpaquePointer?) -> Int32).self),
              let k = sym("PQgetvalue", (@convention(c) (OpaquePointer?, Int32, Int32) -> UnsafePointer<CChar>).self),
              let l = sym("PQclear", (@convention(c) (OpaquePointer?) -> Void).self)
        else { return .failure(KofkaError(.storage, "libpq.so.5 lacks a function LabPostgres needs")) }
        return .success(LibPQ(connectdb: a, status: b, errorMessage: c, finish: d, exec: e, resultStatus: f,
                              resultErrorMessage: g, ntuples: i, nfields: j, getvalue: k, clear: l))
    }()

    static func shared() throws -> LibPQ { try loaded.get() }
}
