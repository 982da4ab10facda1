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
    private struct State {
        /// Topics seen, by name (a topic's partitions never change).
        var topicCache: [String: TopicMeta] = [:]
        var closed = false
        /// When this handle last looked for timed-out transactions (monotonic ns).
        var lastTxnSweepNs: UInt64 = 0
        /// The storage fault source (`fault.storage.failure.rate`).
        var storageFaults: SplitMix64
    }
    private let state: Mutex<State>

    /// The storage schemes `Broker.init` understands.
    public static let schemes = ["memory:", "sqlite:PATH"]

    /// Opens a broker on `storage` (`"memory:"` or `"sqlite:PATH"`).
    /// Throws `.invalidArg` for an unknown scheme, `.invalidConfig` for bad settings, `.storage` when the file can't be used.
    public convenience init(_ storage: String = "memory:", config: [(String, String)] = []) throws {
        try self.init(storage, config: try BrokerConfig(config))
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
        self.state = Mutex(State(storageFaults: SplitMix64(seed: config.faultStorageSeed)))
        if storage == "memory:" || storage == "memory" {
            self.storage = MemoryStorage()
        } else if storage.hasPrefix("sqlite:") {
            let path = String(storage.dropFirst("sqlite:".count))
            guard !path.isEmpty else {
                throw KofkaError(.invalidArg, "storage 'sqlite:' needs a file path, e.g. 'sqlite:events.db'")
            }
            self.storage = try SQLiteStorage(path: path, synchronous: config.sqliteSynchronous == "normal" ? .normal : .full,
                                             busyTimeoutMs: config.sqliteBusyTimeoutMs)
        } else {
            throw KofkaError(.invalidArg, "unknown storage '\(storage)': known schemes are \(Self.schemes.joined(separator: ", "))")
        }
    }

    deinit { close() }

    /// Closes the broker. Producers and consumers on it get `.closed` afterwards. Idempotent.
    public func close() {
        let first = state.withLock { s -> Bool in
            defer { s.closed = true }
            return !s.closed
        }
        guard first else { return }
        storage.wakeAll()
        storage.close()
    }

    /// Whether `close()` was called.
    public var closed: Bool { state.withLock { $0.closed } }

    func checkOpen() throws {
        if closed { throw KofkaError(.closed, "the broker on '\(storageString)' is closed") }
    }

    // MARK: Topics

    /// Checks Kafka's topic-name rule: `[A-Za-z0-9._-]{1,249}`, not `.` or `..`.
    public static func validateTopicName(_ name: String) throws {
        let ok = !name.isEmpty && name.utf8.count <= 249 && name != "." && name != ".."
            && name.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2e || c == 0x5f || c == 0x2d
            }
        if !ok {
            throw KofkaError(.invalidArg, "invalid topic name '\(name)': names are 1 to 249 characters of [A-Za-z0-9._-], not '.' or '..'")
        }
    }

    /// Creates a topic with `partitions` partitions (1...100000). Throws `.topicExists` if it exists.
    public func createTopic(_ name: String, partitions: Int32) throws {
        try Self.validateTopicName(name)
        guard partitions >= 1 && partitions <= 100_000 else {
            throw KofkaError(.invalidArg, "invalid partition count \(partitions) for topic '\(name)': expected 1...100000")
        }
        try checkOpen()
        let meta = try storage.write { w -> TopicMeta in
            if try w.get(Keys.topic(name)) != nil {
                throw KofkaError(.topicExists, "topic '\(name)' already exists")
            }
            return try Self.insertTopic(w, name, partitions)
        }
        state.withLock { $0.topicCache[name] = meta }
    }

    private static func insertTopic(_ w: any StorageWriter, _ name: String, _ partitions: Int32) throws -> TopicMeta {
        let first = try w.nextCounter(Keys.nextPnum, first: 0, count: Int64(partitions))
        guard first + Int64(partitions) <= StorageLimits.maxPartitionNumbers else {
            throw KofkaError(.invalidArg, "cannot create topic '\(name)': the storage holds at most \(StorageLimits.maxPartitionNumbers) partitions in all")
        }
        let meta = TopicMeta(name: name, partitions: partitions, firstPnum: first)
        try w.put(Keys.topic(name), meta.encode())
        return meta
    }

    /// The topic's metadata; creates it (with `num.partitions`) when `autoCreate` and
    /// `auto.create.topics.enable` allow, else throws `.unknownTopic`.
    func topicMeta(_ name: String, autoCreate: Bool = false) throws -> TopicMeta {
        if let m = state.withLock({ $0.topicCache[name] }) { return m }
        try Self.validateTopicName(name)
        try checkOpen()
        let found = try storage.read { r in try r.get(Keys.topic(name)).map { try TopicMeta.decode(name, $0) } }
        let meta: TopicMeta
        if let found {
            meta = found
        } else if autoCreate && config.autoCreateTopics {
            let n = config.numPartitions
            meta = try storage.write { w in
                if let b = try w.get(Keys.topic(name)) { return try TopicMeta.decode(name, b) }
                return try Self.insertTopic(w, name, n)
            }
        } else {
            throw KofkaError(.unknownTopic, "unknown topic '\(name)'")
        }
        state.withLock { $0.topicCache[name] = meta }
        return meta
    }

    /// The storage partition number of `partition`, checking the range.
    func pnum(_ meta: TopicMeta, _ partition: Int32) throws -> Int64 {
        guard partition >= 0 && partition < meta.partitions else {
            throw KofkaError(.unknownPartition, "topic '\(meta.name)' has \(meta.partitions) partition\(meta.partitions == 1 ? "" : "s"), asked for partition \(partition)")
        }
        return meta.firstPnum + Int64(partition)
    }

    /// The number of partitions of `topic`.
    public func partitions(of topic: String) throws -> Int32 {
        try checkOpen()
        return try topicMeta(topic).partitions
    }

    /// Every topic and its partition count, by name.
    public func topics() throws -> [(name: String, partitions: Int32)] {
        try checkOpen()
        return try storage.read { r in
            try r.scan(from: Keys.topicPrefix, to: "t0").map { e in
                let name = String(e.key.dropFirst(Keys.topicPrefix.count))
                return (name, try TopicMeta.decode(name, e.value).partitions)
            }
        }
    }

    /// The partition's low watermark (first offset held: 0) and high watermark (next offset to be written).
    public func watermarks(_ topic: String, _ partition: Int32) throws -> (low: Int64, high: Int64) {
        try checkOpen()
        let meta = try topicMeta(topic)
        let p = try pnum(meta, partition)
        return (0, try storage.read { r in try r.highWatermark(p) })
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
