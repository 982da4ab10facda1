/// A delivery guarantee: a preset for producer and consumer settings.
public enum DeliveryMode: String, Sendable, CaseIterable {
    /// The producer never retries; the consumer commits before processing. May lose, never duplicates.
    case atMostOnce = "at-most-once"
    /// The producer retries until acknowledged; the consumer commits after processing. Never loses, may duplicate.
    case atLeastOnce = "at-least-once"
    /// Idempotent producer + transactions + read_committed. Neither loses nor duplicates.
    case exactlyOnce = "exactly-once"
}

/// Strict parsing of string key/value configuration: unknown keys and invalid values are errors
/// that name the key and the value.
struct ConfigMap {
    private(set) var values: [String: String] = [:]
    let kind: String

    /// `owned`: names whose `NAME.*` keys belong to someone else (plugins) and are skipped.
    init(_ pairs: [(String, String)], known: Set<String>, kind: String, owned: Set<String> = []) throws {
        self.kind = kind
        for (k, v) in pairs {
            if let dot = k.firstIndex(of: "."), owned.contains(String(k[..<dot])) { continue }
            guard known.contains(k) else {
                throw KofkaError(.invalidConfig, "unknown \(kind) config key '\(k)' (known keys: \(known.sorted().joined(separator: ", ")))")
            }
            values[k] = v
        }
    }

    func has(_ key: String) -> Bool { values[key] != nil }
    func string(_ key: String) -> String? { values[key] }

    private func invalid(_ key: String, _ value: String, _ want: String) -> KofkaError {
        KofkaError(.invalidConfig, "invalid value '\(value)' for \(kind) config key '\(key)': expected \(want)")
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = values[key] else { return nil }
        switch v.lowercased() {
        case "true", "1", "yes": return true
        case "false", "0", "no": return false
        default: throw invalid(key, v, "true or false")
        }
    }

    func int(_ key: String, _ range: ClosedRange<Int>) throws -> Int? {
        guard let v = values[key] else { return nil }
        guard let n = Int(v), range.contains(n) else {
            throw invalid(key, v, "an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return n
    }

    func double(_ key: String, _ range: ClosedRange<Double>) throws -> Double? {
        guard let v = values[key] else { return nil }
        guard let d = Double(v), range.contains(d) else {
            throw invalid(key, v, "a number in \(range.lowerBound)...\(range.upperBound)")
        }
        return d
    }

    func choice(_ key: String, _ options: [String]) throws -> String? {
        guard let v = values[key] else { return nil }
        guard options.contains(v) else { throw invalid(key, v, "one of \(options.joined(separator: " | "))") }
        return v
    }
}

/// Broker settings (the `config` of `kofka_broker_open`).
public struct BrokerConfig: Sendable {
    /// Create a topic on first use by a producer or subscriber (`auto.create.topics.enable`, default true).
    public var autoCreateTopics = true
    /// Partitions of an auto-created topic (`num.partitions`, default 1).
    public var numPartitions: Int32 = 1
    /// Largest record, key + value + headers, in bytes (`message.max.bytes`, default 1048576).
    public var messageMaxBytes = 1_048_576
    /// SQLite durability (`sqlite.synchronous`: `full`, default, or `normal`).
    public var sqliteSynchronous = "full"
    /// How long a SQLite writer waits for a lock held by another connection (`sqlite.busy.timeout.ms`, default 5000).
    public var sqliteBusyTimeoutMs = 5000
    /// Probability that a produce request's storage write fails (`fault.storage.failure.rate`,
    /// default 0): half of the failures roll back, half happen after the commit, so the caller
    /// sees an error for a write that did happen — the ambiguous failure idempotence must absorb.
    public var faultStorageFailureRate = 0.0
    /// Seed of the storage fault source (`fault.storage.seed`, default 1).
    public var faultStorageSeed: UInt64 = 1
    /// Topic default of `retention.ms` (`log.retention.ms`): -1, unlimited — unlike Kafka's
    /// seven days, an embedded log deletes nothing nobody asked it to delete.
    public var logRetentionMs: Int64 = -1
    /// Topic default of `retention.bytes` per partition (`log.retention.bytes`, -1: unlimited).
    public var logRetentionBytes: Int64 = -1
    /// Topic default of `cleanup.policy` (`log.cleanup.policy`, `delete`).
    public var logCleanupPolicy = "delete"
    /// Topic default of `delete.retention.ms` (`log.cleaner.delete.retention.ms`, one day).
    public var logCleanerDeleteRetentionMs: Int64 = 86_400_000
    /// Topic default of `min.compaction.lag.ms` (`log.cleaner.min.compaction.lag.ms`, 0).
    public var logCleanerMinCompactionLagMs: Int64 = 0
    /// How often each broker handle's background cleaner runs maintenance
    /// (`log.retention.check.interval.ms`, five minutes; 0 = never in the background).
    public var logRetentionCheckIntervalMs: Int64 = 300_000
    /// Idempotence state of a producer id unused this long is removed (`producer.id.expiration.ms`, one day).
    public var producerIdExpirationMs: Int64 = 86_400_000
    /// A transactional.id unused this long is forgotten (`transactional.id.expiration.ms`, seven days).
    public var transactionalIdExpirationMs: Int64 = 604_800_000
    /// Committed offsets of a group that has been empty this long are removed
    /// (`offsets.retention.minutes`, seven days).
    public var offsetsRetentionMinutes: Int64 = 10_080
    /// Plugin libraries loaded before the storage string is resolved (`plugin.library.paths`, `;`-separated).
    public var pluginLibraryPaths: [String] = []
    /// Registered interceptors this broker uses (`interceptors`, comma-separated); nil: those
    /// registered by the libraries of its own `plugin.library.paths`.
    public var interceptorNames: [String]?
    /// Every pair as given (plugins and storage backends read their own keys from it).
    public var pairs: [(String, String)] = []

    public static let keys: Set<String> = ["auto.create.topics.enable", "num.partitions", "message.max.bytes",
                                    "sqlite.synchronous", "sqlite.busy.timeout.ms", "fault.storage.failure.rate",
                                    "fault.storage.seed", "log.retention.ms", "log.retention.bytes", "log.cleanup.policy",
                                    "log.cleaner.delete.retention.ms", "log.cleaner.min.compaction.lag.ms",
                                    "log.retention.check.interval.ms", "producer.id.expiration.ms",
                                    "transactional.id.expiration.ms", "offsets.retention.minutes",
                                    "plugin.library.paths", "interceptors"]

    public init() {}

    /// Parses key/value pairs; unknown keys and invalid values throw `.invalidConfig`.
    /// Parses key/value pairs; unknown keys and invalid values throw `.invalidConfig`. Loads the
    /// libraries of `plugin.library.paths` first (once per process): keys under a name a plugin
    /// registered (`metrics.path`) belong to it.
    public init(_ pairs: [(String, String)]) throws {
        self.pairs = pairs
        if let paths = pairs.last(where: { $0.0 == "plugin.library.paths" })?.1 {
            pluginLibraryPaths = paths.split(separator: ";").map { String($0) }.filter { !$0.isEmpty }
            try PluginLoader.load(pluginLibraryPaths, config: pairs)
            try PluginLoader.configure(pluginLibraryPaths, config: pairs)
        }
        let owned = Plugins.registry.withLock { $0.pluginNames }
        let c = try ConfigMap(pairs, known: Self.keys, kind: "broker", owned: owned)
        if let names = c.string("interceptors") {
            interceptorNames = names.split(separator: ",").map { String($0).trimmedSpaces }.filter { !$0.isEmpty }
            let unknown = Plugins.unknownInterceptors(interceptorNames ?? [])
            guard unknown.isEmpty else {
                throw KofkaError(.invalidConfig, "invalid value '\(names)' for broker config key 'interceptors': no interceptors named \(unknown.map { "'\($0)'" }.joined(separator: ", ")) are registered")
            }
        }
        autoCreateTopics = try c.bool("auto.create.topics.enable") ?? autoCreateTopics
        numPartitions = Int32(try c.int("num.partitions", 1...100_000) ?? Int(numPartitions))
        messageMaxBytes = try c.int("message.max.bytes", 1...1_073_741_824) ?? messageMaxBytes
        sqliteSynchronous = try c.choice("sqlite.synchronous", ["full", "normal"]) ?? sqliteSynchronous
        sqliteBusyTimeoutMs = try c.int("sqlite.busy.timeout.ms", 0...3_600_000) ?? sqliteBusyTimeoutMs
        faultStorageFailureRate = try c.double("fault.storage.failure.rate", 0...1) ?? 0
        if let v = try c.int("fault.storage.seed", 0...Int.max) { faultStorageSeed = UInt64(v) }
        logRetentionMs = Int64(try c.int("log.retention.ms", -1...Int.max) ?? Int(logRetentionMs))
        logRetentionBytes = Int64(try c.int("log.retention.bytes", -1...Int.max) ?? Int(logRetentionBytes))
        logCleanupPolicy = try c.choice("log.cleanup.policy", TopicConfig.policies).map(TopicConfig.normalPolicy) ?? logCleanupPolicy
        logCleanerDeleteRetentionMs = Int64(try c.int("log.cleaner.delete.retention.ms", 0...Int.max) ?? Int(logCleanerDeleteRetentionMs))
        logCleanerMinCompactionLagMs = Int64(try c.int("log.cleaner.min.compaction.lag.ms", 0...Int.max) ?? Int(logCleanerMinCompactionLagMs))
        logRetentionCheckIntervalMs = Int64(try c.int("log.retention.check.interval.ms", 0...Int.max) ?? Int(logRetentionCheckIntervalMs))
        producerIdExpirationMs = Int64(try c.int("producer.id.expiration.ms", 1...Int.max) ?? Int(producerIdExpirationMs))
        transactionalIdExpirationMs = Int64(try c.int("transactional.id.expiration.ms", 1...Int.max) ?? Int(transactionalIdExpirationMs))
        offsetsRetentionMinutes = Int64(try c.int("offsets.retention.minutes", 1...Int(Int32.max)) ?? Int(offsetsRetentionMinutes))
    }
}

extension String {
    /// Without leading and trailing spaces.
    var trimmedSpaces: String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

/// How many acknowledgements a producer waits for.
public enum Acks: String, Sendable {
    /// Fire and forget: the producer does not wait for the outcome (offsets are -1).
    case none = "0"
    /// Wait for the write.
    case leader = "1"
    /// Wait for the write (the same as `leader` for an embedded broker; required by idempotence).
    case all = "all"
}

/// Producer settings (the `config` of `kofka_producer_new`).
public struct ProducerConfig: Sendable {
    public var deliveryMode: DeliveryMode = .atLeastOnce
    public var acks: Acks = .all
    /// Retries after the first attempt.
    public var retries = Int(Int32.max)
    public var retryBackoffMs = 100
    public var deliveryTimeoutMs = 120_000
    public var idempotence = false
    public var transactionalId: String?
    public var transactionTimeoutMs = 60_000
    public var lingerMs = 5
    public var batchNumMessages = 10_000
    public var queueBufferingMaxMessages = 100_000
    public var clientId = "kofka"
    /// Probability that a request is lost before the broker writes it.
    public var faultRequestLossRate = 0.0
    /// Probability that the acknowledgement is lost after the broker wrote the records.
    public var faultAckLossRate = 0.0
    /// Seed of the fault link's random source.
    public var faultSeed: UInt64 = 1

    static let keys: Set<String> = ["delivery.mode", "acks", "retries", "retry.backoff.ms", "delivery.timeout.ms",
                                    "enable.idempotence", "transactional.id", "transaction.timeout.ms", "linger.ms",
                                    "batch.num.messages", "queue.buffering.max.messages", "client.id",
                                    "fault.request.loss.rate", "fault.ack.loss.rate", "fault.seed"]

    public init(mode: DeliveryMode = .atLeastOnce) { applyPreset(mode) }

    mutating func applyPreset(_ mode: DeliveryMode) {
        deliveryMode = mode
        switch mode {
        case .atMostOnce: acks = .none; retries = 0; idempotence = false
        case .atLeastOnce: acks = .all; retries = Int(Int32.max); idempotence = false
        case .exactlyOnce: acks = .all; retries = Int(Int32.max); idempotence = true
        }
    }

    /// Parses key/value pairs: `delivery.mode` sets a preset, explicit keys override it.
    /// Throws `.invalidConfig` for unknown keys, invalid values and contradictions.
    public init(_ pairs: [(String, String)]) throws {
        let c = try ConfigMap(pairs, known: Self.keys, kind: "producer")
        if let m = try c.choice("delivery.mode", DeliveryMode.allCases.map(\.rawValue)), let mode = DeliveryMode(rawValue: m) {
            applyPreset(mode)
        }
        if let a = try c.choice("acks", ["0", "1", "all", "-1"]) { acks = a == "-1" ? .all : Acks(rawValue: a) ?? .all }
        retries = try c.int("retries", 0...Int(Int32.max)) ?? retries
        retryBackoffMs = try c.int("retry.backoff.ms", 0...300_000) ?? retryBackoffMs
        deliveryTimeoutMs = try c.int("delivery.timeout.ms", 1...Int(Int32.max)) ?? deliveryTimeoutMs
        if let t = c.string("transactional.id") {
            guard !t.isEmpty else { throw KofkaError(.invalidConfig, "invalid value '' for producer config key 'transactional.id': expected a non-empty string") }
            transactionalId = t
        }
        let explicitIdempotence = try c.bool("enable.idempotence")
        idempotence = explicitIdempotence ?? (transactionalId != nil ? true : idempotence)
        transactionTimeoutMs = try c.int("transaction.timeout.ms", 1...Int(Int32.max)) ?? transactionTimeoutMs
        lingerMs = try c.int("linger.ms", 0...900_000) ?? lingerMs
        batchNumMessages = try c.int("batch.num.messages", 1...1_000_000) ?? batchNumMessages
        queueBufferingMaxMessages = try c.int("queue.buffering.max.messages", 1...10_000_000) ?? queueBufferingMaxMessages
        clientId = c.string("client.id") ?? clientId
        faultRequestLossRate = try c.double("fault.request.loss.rate", 0...1) ?? 0
        faultAckLossRate = try c.double("fault.ack.loss.rate", 0...1) ?? 0
        if let s = c.string("fault.seed") {
            guard let v = UInt64(s) ?? Int64(s).map({ UInt64(bitPattern: $0) }) else {
                throw KofkaError(.invalidConfig, "invalid value '\(s)' for producer config key 'fault.seed': expected an integer")
            }
            faultSeed = v
        }
        if transactionalId != nil && acks == .none {
            throw KofkaError(.invalidConfig, "transactional.id '\(transactionalId ?? "")' requires acks=all, but acks=0")
        }
        if transactionalId != nil && explicitIdempotence == false {
            throw KofkaError(.invalidConfig, "transactional.id '\(transactionalId ?? "")' requires enable.idempotence=true")
        }
        if idempotence && acks != .all {
            throw KofkaError(.invalidConfig, "enable.idempotence=true requires acks=all, but acks=\(acks.rawValue)")
        }
    }
}

/// Where a consumer starts when its group has no committed offset.
public enum OffsetReset: String, Sendable {
    case earliest, latest, none
}

/// Which records a consumer may read.
public enum IsolationLevel: String, Sendable {
    /// Only records of committed transactions (and non-transactional ones), up to the last stable offset.
    case readCommitted = "read_committed"
    /// Everything written, including open and aborted transactions.
    case readUncommitted = "read_uncommitted"
}

/// How a group spreads partitions over its members.
public enum AssignmentStrategy: String, Sendable {
    case range, roundrobin
}

/// Consumer settings (the `config` of `kofka_consumer_new`).
public struct ConsumerConfig: Sendable {
    public var groupId: String?
    public var deliveryMode: DeliveryMode = .atLeastOnce
    public var enableAutoCommit = true
    public var autoOffsetReset: OffsetReset = .earliest
    public var isolationLevel: IsolationLevel = .readCommitted
    public var sessionTimeoutMs = 10_000
    public var maxPollRecords = 500
    public var assignmentStrategy: AssignmentStrategy = .range
    public var clientId = "kofka"
    /// At-least-once: how often a poll commits what earlier polls returned
    /// (`auto.commit.interval.ms`). 5000 (default, Kafka's): a consumer that polls one record at
    /// a time pays one storage commit per five seconds, not one per record; after a crash up to
    /// five seconds of records are delivered again. 0: commit what the previous poll returned at
    /// the very next poll (fewest duplicates, one commit per poll). `close` commits either way.
    public var autoCommitIntervalMs = 5000
    /// How many records the consumer reads ahead of the application (`queued.min.messages`,
    /// librdkafka's name): a poll that finds its read-ahead queue empty fetches up to this many,
    /// and later polls hand them out from memory.
    public var queuedMinMessages = 1000
    /// The most bytes held read ahead (`queued.max.messages.kbytes`, in KiB).
    public var queuedMaxKBytes = 65_536

    static let keys: Set<String> = ["group.id", "delivery.mode", "enable.auto.commit", "auto.offset.reset",
                                    "isolation.level", "session.timeout.ms", "max.poll.records",
                                    "partition.assignment.strategy", "client.id", "auto.commit.interval.ms",
                                    "queued.min.messages", "queued.max.messages.kbytes"]

    public init(groupId: String? = nil, mode: DeliveryMode = .atLeastOnce) {
        self.groupId = groupId
        deliveryMode = mode
        enableAutoCommit = mode != .exactlyOnce
    }

    /// Parses key/value pairs; unknown keys and invalid values throw `.invalidConfig`.
    public init(_ pairs: [(String, String)]) throws {
        let c = try ConfigMap(pairs, known: Self.keys, kind: "consumer")
        if let g = c.string("group.id") {
            guard !g.isEmpty else { throw KofkaError(.invalidConfig, "invalid value '' for consumer config key 'group.id': expected a non-empty string") }
            groupId = g
        }
        if let m = try c.choice("delivery.mode", DeliveryMode.allCases.map(\.rawValue)), let mode = DeliveryMode(rawValue: m) {
            deliveryMode = mode
            enableAutoCommit = mode != .exactlyOnce
            isolationLevel = .readCommitted
        }
        enableAutoCommit = try c.bool("enable.auto.commit") ?? enableAutoCommit
        if let r = try c.choice("auto.offset.reset", ["earliest", "latest", "none"]) { autoOffsetReset = OffsetReset(rawValue: r) ?? .earliest }
        if let i = try c.choice("isolation.level", ["read_committed", "read_uncommitted"]) { isolationLevel = IsolationLevel(rawValue: i) ?? .readCommitted }
        sessionTimeoutMs = try c.int("session.timeout.ms", 1...3_600_000) ?? sessionTimeoutMs
        maxPollRecords = try c.int("max.poll.records", 1...1_000_000) ?? maxPollRecords
        if let s = try c.choice("partition.assignment.strategy", ["range", "roundrobin"]) { assignmentStrategy = AssignmentStrategy(rawValue: s) ?? .range }
        clientId = c.string("client.id") ?? clientId
        autoCommitIntervalMs = try c.int("auto.commit.interval.ms", 0...86_400_000) ?? autoCommitIntervalMs
        queuedMinMessages = try c.int("queued.min.messages", 1...10_000_000) ?? queuedMinMessages
        queuedMaxKBytes = try c.int("queued.max.messages.kbytes", 1...2_097_151) ?? queuedMaxKBytes
    }
}
