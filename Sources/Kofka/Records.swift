/// A record header: a name and an optional value. Names need not be unique; order is kept.
public struct Header: Sendable, Hashable {
    /// The header's name.
    public var name: String
    /// The header's value; `nil` is distinct from empty.
    public var value: [UInt8]?

    public init(_ name: String, _ value: [UInt8]?) {
        self.name = name
        self.value = value
    }
}

/// A record to produce.
///
/// ```swift
/// let r = Record(key: Array("user-1".utf8), value: Array("clicked".utf8))
/// let md = try producer.send("events", r)
/// ```
public struct Record: Sendable, Hashable {
    /// The partition to write to, or `nil` to let the partitioner choose (murmur2 of the key, or spread).
    public var partition: Int32?
    /// The key; `nil` is distinct from empty.
    public var key: [UInt8]?
    /// The value; `nil` is distinct from empty.
    public var value: [UInt8]?
    /// Headers, in order.
    public var headers: [Header]
    /// Milliseconds since the epoch; 0 means "now" (set when the record is written).
    public var timestampMs: Int64

    public init(partition: Int32? = nil, key: [UInt8]? = nil, value: [UInt8]?, headers: [Header] = [], timestampMs: Int64 = 0) {
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
        self.timestampMs = timestampMs
    }

    /// Bytes this record counts against `message.max.bytes`: key + value + header names and values.
    public var size: Int {
        var n = (key?.count ?? 0) + (value?.count ?? 0)
        for h in headers { n += h.name.utf8.count + (h.value?.count ?? 0) }
        return n
    }
}

/// Where a record was written.
public struct RecordMetadata: Sendable, Hashable, CustomStringConvertible {
    /// The topic.
    public var topic: String
    /// The partition it went to.
    public var partition: Int32
    /// The offset it was written at, or -1 when not known (`acks=0`).
    public var offset: Int64

    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }

    public var description: String { "\(topic)[\(partition)]@\(offset)" }
}

/// A consumed record.
public struct Message: Sendable, Hashable {
    /// The topic it was read from.
    public var topic: String
    /// The partition it was read from.
    public var partition: Int32
    /// Its offset in the partition.
    public var offset: Int64
    /// Its timestamp, milliseconds since the epoch.
    public var timestampMs: Int64
    /// The key, or `nil`.
    public var key: [UInt8]?
    /// The value, or `nil`.
    public var value: [UInt8]?
    /// Headers, in order.
    public var headers: [Header]

    public init(topic: String, partition: Int32, offset: Int64, timestampMs: Int64, key: [UInt8]?, value: [UInt8]?, headers: [Header]) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestampMs = timestampMs
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// A topic and a partition.
public struct TopicPartition: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public static func < (a: TopicPartition, b: TopicPartition) -> Bool {
        a.topic != b.topic ? a.topic < b.topic : a.partition < b.partition
    }

    public var description: String { "\(topic)[\(partition)]" }
}

extension Optional where Wrapped == [UInt8] {
    /// The bytes as a view during `body`, nil for nil (an empty array gives an empty view).
    @inline(__always)
    func withBytesOrNil<T>(_ body: (UnsafeRawBufferPointer?) throws -> T) rethrows -> T {
        guard let a = self else { return try body(nil) }
        return try a.withUnsafeBytes { try body($0) }
    }
}
