import Kofka
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Kofka's storage conformance suite, as a library: every property a `StorageBackend` must have
/// for Kofka's delivery rules to hold on it (exact offsets, NULL vs empty, atomic and exclusive
/// writes, undo, change notification, deletion, persistence), as checks that run against any
/// backend — Swift, a C plugin (`kofka_storage_ops`) or a Python one — and report what failed.
///
/// It depends on no test framework. A Swift backend runs it from its own tests:
///
/// ```swift
/// import KofkaStorageTesting
///
/// let factory = StorageConformance.Factory(name: "mystore",
///     location: { "/tmp/mystore-\(UInt32.random(in: 0 ... .max))" },
///     open: { try MyStore(path: $0) },
///     remove: { MyStore.destroy(path: $0) })
/// for check in StorageConformance.checks {
///     let report = StorageConformance.Reporter()
///     check.run(factory, report)
///     // report.failures: each with its message, file and line; report.skipped: why it did not run
/// }
/// ```
///
/// A C or third-party backend registered under a storage scheme runs it with the command
/// `kofka lab conformance --storage SCHEME:LOCATION`.
public enum StorageConformance {
    /// Every check, in a stable order (their names are unique).
    public static let checks: [Check] = logChecks + keyValueChecks + transactionChecks + deletionChecks + persistenceChecks

    /// The check named `name`.
    public static func check(named name: String) -> Check? { checks.first { $0.name == name } }
}

extension StorageConformance {
    /// What a check needs from the backend beyond a fresh store.
    public enum Requirement: String, Sendable {
        /// Only fresh stores.
        case fresh
        /// Opening the same store again: after closing it (persistence), or while it is open
        /// (a second handle, as another process would have). Checks that need it are skipped
        /// for a factory that cannot reopen (a volatile backend such as `memory:`).
        case reopen
    }

    /// One property of a storage backend, checked on stores a `Factory` makes.
    public struct Check: Sendable {
        /// A unique name saying the property (`offsetsAreDenseFromZeroAcrossBatchesAndPartitions`).
        public let name: String
        /// One sentence: what it proves.
        public let summary: String
        /// What it needs from the factory.
        public let requirement: Requirement
        let body: @Sendable (Context) throws -> Void

        init(_ name: String, _ summary: String, needs: Requirement = .fresh, _ body: @escaping @Sendable (Context) throws -> Void) {
            self.name = name
            self.summary = summary
            self.requirement = needs
            self.body = body
        }

        /// Runs the check on stores from `factory`; every failed expectation, and an error the
        /// check did not expect, goes to `reporter`. Every store it made is closed and removed
        /// afterwards. Never throws.
        public func run(_ factory: Factory, _ reporter: Reporter) {
            if requirement == .reopen && !factory.canReopen {
                reporter.skip("\(factory.name) stores cannot be reopened (a volatile backend)")
                return
            }
            let context = Context(factory, reporter)
            do {
                try body(context)
            } catch {
                reporter.fail("unexpected error: \(error)", fileID: #fileID, filePath: #filePath, line: #line, column: #column)
            }
            context.cleanup()
        }
    }

    /// Makes the stores a check runs on: fresh, empty ones, and — for a persistent backend —
    /// the same store again (reopened after a close, or a second handle while it is open).
    public final class Factory: @unchecked Sendable {
        /// The backend's name in reports (`memory`, `sqlite`, `lmdb`).
        public let name: String
        private let fresh: @Sendable () throws -> String
        private let open: @Sendable (String) throws -> any StorageBackend
        private let remove: @Sendable (String) -> Void
        /// Whether `open` on a location opens the store made there (not a new empty one).
        public let canReopen: Bool

        /// A volatile backend: every `make` is a new store; none can be reopened.
        ///
        /// ```swift
        /// let memory = StorageConformance.Factory(name: "memory") { MemoryStorage() }
        /// ```
        public init(name: String, make: @escaping @Sendable () throws -> any StorageBackend) {
            self.name = name
            self.fresh = { "" }
            self.open = { _ in try make() }
            self.remove = { _ in }
            self.canReopen = false
        }

        /// A persistent backend: `location()` names a place where no store is yet, `open`
        /// opens (creating if missing) the store at a location, `remove` deletes what a store
        /// left there (called after every check, once every handle is closed).
        ///
        /// ```swift
        /// let sqlite = StorageConformance.Factory(name: "sqlite",
        ///     location: { "/tmp/conformance-\(UInt32.random(in: 0 ... .max)).db" },
        ///     open: { try SQLiteStorage(path: $0, synchronous: .normal) },
        ///     remove: { p in for s in ["", "-wal", "-shm"] { unlink(p + s) } })
        /// ```
        public init(name: String, location: @escaping @Sendable () throws -> String,
                    open: @escaping @Sendable (String) throws -> any StorageBackend,
                    remove: @escaping @Sendable (String) -> Void) {
            self.name = name
            self.fresh = location
            self.open = open
            self.remove = remove
            self.canReopen = true
        }

        func newLocation() throws -> String { try fresh() }
        func open(_ location: String) throws -> any StorageBackend { try open(location) }
        func removeStore(_ location: String) { remove(location) }
    }

    /// Where a check records what it found: failures (with the file and line of the
    /// expectation) and, for a check that could not run on this backend, why. Thread-safe.
    public final class Reporter: @unchecked Sendable {
        /// One failed expectation.
        public struct Failure: Sendable, CustomStringConvertible {
            public var message: String
            public var fileID: String
            public var filePath: String
            public var line: Int
            public var column: Int
            /// `Checks+Log.swift:42: message`.
            public var description: String { "\(fileID.split(separator: "/").last.map(String.init) ?? fileID):\(line): \(message)" }
        }

        private var lock = pthread_mutex_t()
        private var _failures: [Failure] = []
        private var _skipped: String?

        public init() { pthread_mutex_init(&lock, nil) }
        deinit { pthread_mutex_destroy(&lock) }

        private func locked<T>(_ body: () -> T) -> T {
            pthread_mutex_lock(&lock)
            defer { pthread_mutex_unlock(&lock) }
            return body()
        }

        /// Records a failure.
        public func fail(_ message: String, fileID: String = #fileID, filePath: String = #filePath, line: Int = #line, column: Int = #column) {
            locked { _failures.append(Failure(message: message, fileID: fileID, filePath: filePath, line: line, column: column)) }
        }

        /// Records that the check did not run, and why.
        public func skip(_ reason: String) { locked { _skipped = reason } }

        /// Every failure, in the order recorded.
        public var failures: [Failure] { locked { _failures } }
        /// Why the check was skipped, or nil when it ran.
        public var skipped: String? { locked { _skipped } }
        /// Ran and nothing failed.
        public var passed: Bool { locked { _failures.isEmpty && _skipped == nil } }
    }

    /// The outcome of one check, for a runner that prints or counts them.
    public struct Result: Sendable {
        public var check: Check
        public var failures: [Reporter.Failure]
        public var skipped: String?
        public var seconds: Double
        public var passed: Bool { failures.isEmpty && skipped == nil }
    }

    /// Runs `checks` (default: all) one after another on `factory`, calling `each` after each.
    @discardableResult
    public static func run(_ factory: Factory, checks: [Check] = StorageConformance.checks,
                           each: (Result) -> Void = { _ in }) -> [Result] {
        var results: [Result] = []
        let clock = ContinuousClock()
        for check in checks {
            let reporter = Reporter()
            let start = clock.now
            check.run(factory, reporter)
            let d = (clock.now - start).components
            let r = Result(check: check, failures: reporter.failures, skipped: reporter.skipped,
                           seconds: Double(d.seconds) + Double(d.attoseconds) / 1e18)
            each(r)
            results.append(r)
        }
        return results
    }
}

/// What a check's body works with: stores, and expectations that report to its `Reporter`.
final class Context: @unchecked Sendable {
    let factory: StorageConformance.Factory
    let reporter: StorageConformance.Reporter
    /// Every store opened, with its location, to close and remove afterwards.
    private var opened: [(store: any StorageBackend, location: String)] = []
    private var locations: [String] = []

    init(_ factory: StorageConformance.Factory, _ reporter: StorageConformance.Reporter) {
        self.factory = factory
        self.reporter = reporter
    }

    /// A fresh, empty store.
    func make() throws -> any StorageBackend {
        let location = try factory.newLocation()
        locations.append(location)
        let s = try factory.open(location)
        opened.append((s, location))
        return s
    }

    /// The store `store` was opened on, opened again (a new handle; `store` may be closed or open).
    func reopen(_ store: any StorageBackend) throws -> any StorageBackend {
        guard let location = opened.first(where: { $0.store === store })?.location else {
            throw KofkaError(.invalidArg, "conformance: reopen of a store this check did not make")
        }
        let s = try factory.open(location)
        opened.append((s, location))
        return s
    }

    func cleanup() {
        for o in opened { o.store.close() }
        opened.removeAll()
        for l in locations { factory.removeStore(l) }
        locations.removeAll()
    }

    // MARK: Expectations

    /// Records a failure unless `condition` holds.
    func expect(_ condition: Bool, _ message: @autoclosure () -> String = "",
                fileID: String = #fileID, filePath: String = #filePath, line: Int = #line, column: Int = #column) {
        if !condition { reporter.fail("expectation failed" + tail(message()), fileID: fileID, filePath: filePath, line: line, column: column) }
    }

    /// Records a failure unless `actual == expected`, showing both.
    func equal<T: Equatable>(_ actual: T, _ expected: T, _ message: @autoclosure () -> String = "",
                             fileID: String = #fileID, filePath: String = #filePath, line: Int = #line, column: Int = #column) {
        if actual != expected {
            reporter.fail("got \(shown(actual)), expected \(shown(expected))" + tail(message()),
                          fileID: fileID, filePath: filePath, line: line, column: column)
        }
    }

    /// Records a failure unless `body` throws a `KofkaError` with `code` (any code when nil).
    func throwsKofkaError(_ code: ErrorCode?, _ message: @autoclosure () -> String = "", _ body: () throws -> Void,
                          fileID: String = #fileID, filePath: String = #filePath, line: Int = #line, column: Int = #column) {
        do {
            try body()
            reporter.fail("expected \(code.map { "a \($0.name) error" } ?? "an error"), nothing was thrown" + tail(message()),
                          fileID: fileID, filePath: filePath, line: line, column: column)
        } catch let e as KofkaError {
            if let code, e.code != code {
                reporter.fail("expected \(code.name), got \(e.code.name): \(e.message)" + tail(message()),
                              fileID: fileID, filePath: filePath, line: line, column: column)
            }
        } catch {
            reporter.fail("expected a KofkaError, got \(error)" + tail(message()), fileID: fileID, filePath: filePath, line: line, column: column)
        }
    }

    /// Records a failure unless `body` throws an error of type `E`.
    func throwsError<E: Error>(_ type: E.Type, _ body: () throws -> Void,
                               fileID: String = #fileID, filePath: String = #filePath, line: Int = #line, column: Int = #column) {
        do {
            try body()
            reporter.fail("expected \(E.self) to be thrown, nothing was", fileID: fileID, filePath: filePath, line: line, column: column)
        } catch is E {
        } catch {
            reporter.fail("expected \(E.self) to be thrown, got \(error)", fileID: fileID, filePath: filePath, line: line, column: column)
        }
    }

    private func tail(_ m: String) -> String { m.isEmpty ? "" : " — " + m }

    /// A value as a failure message shows it (long collections abbreviated).
    private func shown<T>(_ v: T) -> String {
        let s = "\(v)"
        return s.count > 400 ? String(s.prefix(400)) + "… (\(s.count) characters)" : s
    }
}

extension StorageConformance.Factory {
    /// A backend opened from a storage string (`SCHEME:LOCATION`) the way a user opens one —
    /// a registered scheme or a plugin library found by its name — for stores at
    /// `prefix` + a fresh suffix. Each store is removed afterwards with `removeStore(at:)`.
    ///
    /// ```swift
    /// let lmdb = StorageConformance.Factory.storageString("lmdb:/tmp/conformance")
    /// ```
    /// `keep`: leave the stores in place (to look at them after a failure).
    public static func storageString(_ storage: String, config: [(String, String)] = [], keep: Bool = false) -> StorageConformance.Factory {
        let colon = storage.firstIndex(of: ":") ?? storage.endIndex
        let scheme = String(storage[..<colon])
        let prefix = colon < storage.endIndex ? String(storage[storage.index(after: colon)...]) : ""
        let counter = Counter()
        let pairs = config
        return StorageConformance.Factory(
            name: scheme,
            location: { prefix + "-\(getpid())-\(counter.next())-\(UInt32.random(in: 0 ... .max))" },
            open: { location in try BrokerStorage(scheme + ":" + location, config: pairs) },
            remove: { if !keep { StorageConformance.removeStore(at: $0) } })
    }

    /// Opens one fresh store and closes and removes it: throws what opening throws (a bad
    /// storage string, an unknown config key, a plugin that cannot be loaded).
    public func probe() throws {
        let location = try newLocation()
        defer { removeStore(location) }
        try open(location).close()
    }
}

extension StorageConformance {
    /// Removes what a store left at `path`: the file and its `-wal`, `-shm`, `-journal` and
    /// `-lock` siblings, or the directory with the files in it. Nothing else.
    public static func removeStore(at path: String) {
        var st = stat()
        if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
            if let dir = opendir(path) {
                while let e = readdir(dir) {
                    let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                    }
                    if name != "." && name != ".." { unlink(path + "/" + name) }
                }
                closedir(dir)
            }
            rmdir(path)
            return
        }
        for suffix in ["", "-wal", "-shm", "-journal", "-lock", "-bell"] { unlink(path + suffix) }
    }
}

/// Numbers for fresh locations.
final class Counter: @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var n = 0
    init() { pthread_mutex_init(&lock, nil) }
    func next() -> Int {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        n += 1
        return n
    }
}

/// The storage backend of a storage string, opened through a broker (Kofka has no public call
/// that opens a storage string's backend alone). The broker runs no cleaner and writes
/// nothing; closing this closes it.
final class BrokerStorage: StorageBackend, @unchecked Sendable {
    let broker: Broker
    let inner: any StorageBackend

    init(_ storage: String, config: [(String, String)]) throws {
        broker = try Broker(storage, config: config + [("log.retention.check.interval.ms", "0")])
        inner = broker.storage
    }

    func write<T>(_ body: (any StorageWriter) throws -> T) throws -> T { try inner.write(body) }
    func read<T>(_ body: (any StorageReader) throws -> T) throws -> T { try inner.read(body) }
    func changeToken() -> UInt64 { inner.changeToken() }
    func waitForChange(since token: UInt64, timeoutNs: UInt64) { inner.waitForChange(since: token, timeoutNs: timeoutNs) }
    func wakeAll() { inner.wakeAll() }
    func reclaimSpace() throws -> Bool { try inner.reclaimSpace() }
    func close() { broker.close() }
}
