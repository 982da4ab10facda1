/// A topic's own settings, Kafka's topic-level keys: only keys set explicitly are kept (and
/// stored with the topic); every other key takes the broker's default (`log.*`).
///
/// | key | meaning | broker default |
/// |---|---|---|
/// | `retention.ms` | delete records older than this (by timestamp), -1 = never | `log.retention.ms` (-1) |
/// | `retention.bytes` | delete the oldest records while a partition holds more, -1 = never | `log.retention.bytes` (-1) |
/// | `cleanup.policy` | `delete`, `compact` or `compact,delete` | `log.cleanup.policy` (`delete`) |
/// | `delete.retention.ms` | how long compaction keeps tombstones | `log.cleaner.delete.retention.ms` (86400000) |
/// | `min.compaction.lag.ms` | records younger than this are not compacted | `log.cleaner.min.compaction.lag.ms` (0) |
/// | `max.message.bytes` | largest record | `message.max.bytes` (1048576) |
///
/// ```swift
/// try broker.createTopic("events", partitions: 3, config: [("retention.bytes", "1000000")])
/// ```
public struct TopicConfig: Sendable, Hashable {
    /// The keys a topic understands.
    public static let keys = ["retention.ms", "retention.bytes", "cleanup.policy", "delete.retention.ms",
                              "min.compaction.lag.ms", "max.message.bytes"]
    static let policies = ["delete", "compact", "compact,delete", "delete,compact"]

    /// The values set explicitly, by key (already validated).
    public private(set) var values: [String: String] = [:]

    public init() {}

    /// Validates and sets `pairs`; an empty value removes the topic's own value (back to the
    /// broker default). Throws `.invalidConfig` naming an unknown key or an invalid value.
    public mutating func set(_ pairs: [(String, String)]) throws {
        for (k, v) in pairs {
            guard Self.keys.contains(k) else {
                throw KofkaError(.invalidConfig, "unknown topic config key '\(k)' (known keys: \(Self.keys.joined(separator: ", ")))")
            }
            if v.isEmpty {
                values[k] = nil
            } else {
                values[k] = try Self.validate(k, v)
            }
        }
    }

    /// A config holding `pairs`.
    public init(_ pairs: [(String, String)]) throws { try set(pairs) }

    static func normalPolicy(_ p: String) -> String { p == "delete,compact" ? "compact,delete" : p }

    /// The value stored for `key`, normalised; throws when it is not valid for the key.
    static func validate(_ key: String, _ value: String) throws -> String {
        func invalid(_ want: String) -> KofkaError {
            KofkaError(.invalidConfig, "invalid value '\(value)' for topic config key '\(key)': expected \(want)")
        }
        switch key {
        case "cleanup.policy":
            guard policies.contains(value) else { throw invalid("one of delete | compact | compact,delete") }
            return normalPolicy(value)
        case "retention.ms", "retention.bytes":
            guard let n = Int64(value), n >= -1 else { throw invalid("an integer >= -1 (-1 = unlimited)") }
            return String(n)
        case "delete.retention.ms", "min.compaction.lag.ms":
            guard let n = Int64(value), n >= 0 else { throw invalid("an integer >= 0") }
            return String(n)
        case "max.message.bytes":
            guard let n = Int(value), (1...1_073_741_824).contains(n) else { throw invalid("an integer in 1...1073741824") }
            return String(n)
        default:
            throw invalid("a known key")
        }
    }

    func encode(into w: inout BinaryWriter) {
        w.i32(Int32(values.count))
        for (k, v) in values.sorted(by: { $0.key < $1.key }) { w.string(k); w.string(v) }
    }

    static func decode(_ r: inout BinaryReader) throws -> TopicConfig {
        var c = TopicConfig()
        let n = try r.i32()
        for _ in 0..<max(0, n) {
            let k = try r.string(), v = try r.string()
            c.values[k] = v
        }
        return c
    }
}

/// A topic's settings in effect: its own values, else the broker's defaults.
struct EffectiveTopicConfig: Sendable {
    var retentionMs: Int64
    var retentionBytes: Int64
    /// `cleanup.policy` includes `delete`.
    var delete: Bool
    /// `cleanup.policy` includes `compact`.
    var compact: Bool
    var deleteRetentionMs: Int64
    var minCompactionLagMs: Int64
    var maxMessageBytes: Int

    init(_ own: TopicConfig, _ broker: BrokerConfig) {
        let v = own.values
        retentionMs = v["retention.ms"].flatMap { Int64($0) } ?? broker.logRetentionMs
        retentionBytes = v["retention.bytes"].flatMap { Int64($0) } ?? broker.logRetentionBytes
        let policy = v["cleanup.policy"] ?? broker.logCleanupPolicy
        delete = policy.contains("delete")
        compact = policy.contains("compact")
        deleteRetentionMs = v["delete.retention.ms"].flatMap { Int64($0) } ?? broker.logCleanerDeleteRetentionMs
        minCompactionLagMs = v["min.compaction.lag.ms"].flatMap { Int64($0) } ?? broker.logCleanerMinCompactionLagMs
        maxMessageBytes = Self.maxMessageBytes(own, broker)
    }

    /// `max.message.bytes` alone: checked on every produced record, so it skips parsing the rest.
    static func maxMessageBytes(_ own: TopicConfig, _ broker: BrokerConfig) -> Int {
        own.values["max.message.bytes"].flatMap { Int($0) } ?? broker.messageMaxBytes
    }

    /// The value in effect for `key`, as a string.
    func value(_ key: String) -> String? {
        switch key {
        case "retention.ms": String(retentionMs)
        case "retention.bytes": String(retentionBytes)
        case "cleanup.policy": compact && delete ? "compact,delete" : compact ? "compact" : "delete"
        case "delete.retention.ms": String(deleteRetentionMs)
        case "min.compaction.lag.ms": String(minCompactionLagMs)
        case "max.message.bytes": String(maxMessageBytes)
        default: nil
        }
    }
}
