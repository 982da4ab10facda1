import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A broker: a storage backend opened with Kofka's rules on top. Producers and consumers made
/// from it share its storage. Several processes opening the same SQLite file form one broker.
///
/// ```swift
/// let broker = try Broker("sqlite:events.db")
/// try broker.createTopic("orders", partitions: 3)
/// let p = try broker.producer(ProducerConfig(mode: .exactlyOnce))
/// _ = try p.send("orders", Record(key: Array("k".utf8), value: Array("v".utf8)))
/// ```
public final class Broker: Sendable {
    /// The storage backend.
    public let storage: any StorageBackend
    /// The broker's settings.
    public let config: BrokerConfig
    /// The storage string it was opened with.
    public let storageString: String
    /// The one clock its rules, producers and consumers read.
    package let clock: any TimeSource

    /// What changes on a broker handle (guarded by `state`; never held across storage).
    struct State {
        /// Topics seen, by name (a topic's partitions never change).
        var topicCache: [String: TopicMeta] = [:]
        var closed = false
        /// When this handle last looked for timed-out transactions (monotonic ns).
        var lastTxnSweepNs: UInt64 = 0
        /// The storage fault source (`fault.storage.failure.rate`).
        var storageFaults: SplitMix64
        /// The background cleaner, once started.
        var cleaner: Cleaner?
        /// Interceptors producers and consumers opened from now on call, in order, by name.
        var interceptors: [(name: String, interceptor: any Interceptor)] = []
    }
    let state: Locked<State>

    /// `storage` with the password of a URL's user info masked (`postgresql://u:***@host/db`),
    /// for messages and logs: a storage string may carry a password, a message never does.
    public static func redacted(_ storage: String) -> String {
        let chars = Array(storage)
        guard let slash = (0..<max(0, chars.count - 1)).first(where: { chars[$0] == "/" && chars[$0 + 1] == "/" }),
              let at = chars[(slash + 2)...].firstIndex(where: { $0 == "@" || $0 == "/" }), chars[at] == "@",
              let colon = chars[(slash + 2)..<at].firstIndex(of: ":") else { return storage }
        return String(chars[...colon]) + "***" + String(chars[at...])
    }

    /// The storage schemes `Broker.init` understands now (plugins add more).
    public static var schemes: [String] { ["memory:", "sqlite:PATH"] + Plugins.registered.map { "\($0):…" } }

    /// Opens a broker on `storage` (`"memory:"` or `"sqlite:PATH"`).
    /// Throws `.invalidArg` for an unknown scheme, `.invalidConfig` for bad settings, `.storage` when the file can't be used.
    public convenience init(_ storage: String = "memory:", config: [(String, String)] = []) throws {
        Self.loadStoragePlugin(for: storage, config: config)
        try self.init(storage, config: try BrokerConfig(config))
    }

    /// The config keys `SCHEME.*` belong to the plugin that serves `SCHEME:`, which may not be
    /// loaded yet in this process: when the config has such keys (and no `plugin.library.paths`
    /// that might register the scheme itself), the plugin is looked up first, so that its keys
    /// are accepted on the first open as on every later one. A lookup that fails is not an
    /// error here: opening the storage reports it, naming where it looked.
    static func loadStoragePlugin(for storage: String, config: [(String, String)]) {
        guard let colon = storage.firstIndex(of: ":"), colon != storage.startIndex else { return }
        let scheme = String(storage[..<colon])
        guard scheme != "memory", scheme != "sqlite", Plugins.factory(scheme) == nil,
              !config.contains(where: { $0.0 == "plugin.library.paths" }) else { return }
        let served = PluginLoader.libraryName[scheme] ?? scheme
        guard config.contains(where: { $0.0.hasPrefix(scheme + ".") || $0.0.hasPrefix(served + ".") }) else { return }
        _ = try? PluginLoader.factory(scheme: scheme, config: config)
    }

    /// Opens a broker on `storage` with parsed settings.
    public convenience init(_ storage: String, config: BrokerConfig) throws {
        try self.init(storage, config: config, clock: SystemClock())
    }

    /// Opens a broker whose rules read `clock` (tests and the schedule explorer step time with it).
    package init(_ storage: String, config: BrokerConfig, clock: any TimeSource) throws {
        self.clock = clock
        self.config = config
        self.storageString = storage
        self.state = Locked(State(storageFaults: SplitMix64(seed: config.faultStorageSeed)))
        if storage == "memory:" || storage == "memory" {
            self.storage = MemoryStorage()
        } else if storage.hasPrefix("sqlite:") {
            let path = String(storage.dropFirst("sqlite:".count))
            guard !path.isEmpty else {
                throw KofkaError(.invalidArg, "storage 'sqlite:' needs a file path, e.g. 'sqlite:events.db'")
            }
            self.storage = try SQLiteStorage(path: path, synchronous: config.sqliteSynchronous == "normal" ? .normal : .full,
                                             busyTimeoutMs: config.sqliteBusyTimeoutMs)
        } else if let colon = storage.firstIndex(of: ":"), colon != storage.startIndex {
            // A registered scheme, or a plugin library named after it (libkofka_SCHEME.so).
            let factory = try PluginLoader.factory(scheme: String(storage[..<colon]), config: config.pairs)
            self.storage = try factory(String(storage[storage.index(after: colon)...]), config.pairs)
        } else {
            throw KofkaError(.invalidArg, "unknown storage '\(storage)': expected SCHEME:LOCATION; known schemes are \(Self.schemes.joined(separator: ", "))")
        }
        state.withLock { $0.interceptors = Plugins.selectedInterceptors(config) }
        startCleaner()
    }

    /// Opens a broker on a storage backend you made (any `StorageBackend`: your own, or one of
    /// Kofka's). The broker closes it when it closes.
    ///
    /// ```swift
    /// let broker = try Broker(storage: MemoryStorage(), config: BrokerConfig())
    /// ```
    public init(storage: any StorageBackend, config: BrokerConfig = BrokerConfig()) {
        self.clock = SystemClock()
        self.config = config
        self.storageString = "\(type(of: storage)):"
        self.state = Locked(State(storageFaults: SplitMix64(seed: config.faultStorageSeed)))
        self.storage = storage
        state.withLock { $0.interceptors = Plugins.selectedInterceptors(config) }
        startCleaner()
    }

    deinit { close() }

    /// Starts this handle's background cleaner (`log.retention.check.interval.ms`).
    private func startCleaner() {
        guard config.logRetentionCheckIntervalMs > 0 else { return }
        var rng = SplitMix64(seed: monoNs() ^ UInt64(UInt(bitPattern: ObjectIdentifier(self).hashValue)))
        let cleaner = Cleaner(holder: "pid \(getpid()) handle \(rng.unitHex())")
        state.withLock { $0.cleaner = cleaner }
        cleaner.start(self, intervalMs: config.logRetentionCheckIntervalMs)
    }

    /// Closes the broker. Producers and consumers on it get `.closed` afterwards. Idempotent.
    public func close() {
        let first = state.withLock { s -> Bool in
            defer { s.closed = true }
            return !s.closed
        }
        guard first else { return }
        closedFlag.store(true, ordering: .releasing)
        let (cleaner, interceptors) = state.withLock { ($0.cleaner, $0.interceptors) }
        cleaner?.interrupt()
        for ic in interceptors where ic.interceptor.hooks.contains(.close) { ic.interceptor.onClose() }
        storage.wakeAll()
        storage.close()
    }

    /// Whether `close()` was called.
    public var closed: Bool { closedFlag.load(ordering: .acquiring) }
    /// `closed`, read without the lock (every produce and poll checks it); set after
    /// `state.closed`, which only decides which `close` is the first, so a call that sees it
    /// unset may still find the storage closing — as one that read it just before would.
    private let closedFlag = Atomic<Bool>(false)

    /// Counts changes of the topic cache: a producer's memo of a topic (`Producer.TopicMemo`)
    /// holds while this has not moved.
    let topicsVersion = Atomic<UInt64>(0)

    func checkOpen() throws {
        if closed { throw KofkaError(.closed, "the broker on '\(Self.redacted(storageString))' is closed") }
    }

    /// Draws a storage fault for one write: nil, or whether it strikes after the commit.
    func drawStorageFault() -> Bool? {
        let rate = config.faultStorageFailureRate
        guard rate > 0 else { return nil }
        return state.withLock { s in
            guard s.storageFaults.unit() < rate else { return nil }
            return s.storageFaults.unit() < 0.5
        }
    }

    // MARK: Interceptors

    /// Adds `interceptor` under `name`: every producer and consumer opened on this broker from
    /// now on calls it (after those added before). Throws `.invalidArg` for an empty name or a
    /// name already added, `.closed` after close.
    public func add(_ interceptor: any Interceptor, name: String) throws {
        guard !name.isEmpty else { throw KofkaError(.invalidArg, "an interceptor needs a name") }
        try state.withLock { s in
            if s.closed { throw KofkaError(.closed, "the broker on '\(Self.redacted(storageString))' is closed") }
            guard !s.interceptors.contains(where: { $0.name == name }) else {
                throw KofkaError(.invalidArg, "interceptors named '\(name)' were already added to this broker")
            }
            s.interceptors.append((name, interceptor))
        }
    }

    /// The interceptors a producer or consumer opened now calls.
    var interceptorChain: InterceptorChain { InterceptorChain(state.withLock { $0.interceptors.map(\.interceptor) }) }

    // MARK: Handles

    /// Creates a producer.
    public func producer(_ config: ProducerConfig = ProducerConfig()) throws -> Producer {
        try checkOpen()
        return try Producer(broker: self, config: config)
    }

    /// Creates a consumer.
    public func consumer(_ config: ConsumerConfig = ConsumerConfig()) throws -> Consumer {
        try checkOpen()
        return Consumer(broker: self, config: config)
    }

    // MARK: Transaction timeouts

    /// Whether this handle should look for timed-out transactions now (at most every `intervalMs`).
    func sweepDue(intervalMs: Int) -> Bool {
        state.withLock { s in
            let now = clock.monotonicNs()
            if intervalMs > 0 && now &- s.lastTxnSweepNs < UInt64(intervalMs) * 1_000_000 { return false }
            s.lastTxnSweepNs = now
            return true
        }
    }
}
