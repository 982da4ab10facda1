/// Which hooks an interceptor implements; the others are never called (so an interceptor that
/// only counts acknowledgements costs nothing on the send path).
public struct InterceptorHooks: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public static let send = InterceptorHooks(rawValue: 1)
    public static let acknowledgement = InterceptorHooks(rawValue: 2)
    public static let consume = InterceptorHooks(rawValue: 4)
    public static let commit = InterceptorHooks(rawValue: 8)
    public static let close = InterceptorHooks(rawValue: 16)
    public static let all: InterceptorHooks = [.send, .acknowledgement, .consume, .commit, .close]
}

/// A record about to be sent, as an interceptor sees it: valid only during the hook (the
/// buffers point at the producer's copy).
public struct OutgoingRecord {
    /// The partition asked for, or nil to let the partitioner choose.
    public var partition: Int32?
    /// Milliseconds since the epoch; 0 = now.
    public var timestampMs: Int64
    /// The key, or nil.
    public var key: UnsafeRawBufferPointer?
    /// The value, or nil.
    public var value: UnsafeRawBufferPointer?
    /// The headers, encoded (`HeaderCodec`), or nil when none; see `headers`.
    public var encodedHeaders: UnsafeRawBufferPointer?

    /// The headers, decoded.
    public var headers: [Header] { (try? HeaderCodec.decode(encodedHeaders.map { Array($0) })) ?? [] }

    /// A copy that outlives the hook.
    public var record: Record {
        Record(partition: partition, key: key.map { Array($0) }, value: value.map { Array($0) }, headers: headers, timestampMs: timestampMs)
    }

    public init(partition: Int32?, timestampMs: Int64, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, encodedHeaders: UnsafeRawBufferPointer?) {
        self.partition = partition
        self.timestampMs = timestampMs
        self.key = key
        self.value = value
        self.encodedHeaders = encodedHeaders
    }
}

/// Observes (and may tag) what producers and consumers do, as librdkafka's interceptors do.
/// Add one to a broker with `Broker.add(_:name:)`; every producer and consumer opened on the
/// broker afterwards calls it. A hook never changes a record's fate: it cannot throw, and what
/// it does cannot fail a send, a poll or a commit.
///
/// ```swift
/// final class Counter: Interceptor, @unchecked Sendable {
///     var hooks: InterceptorHooks { .acknowledgement }
///     var acked = 0
///     func onAcknowledgement(topic: String, record: OutgoingRecord, result: Result<RecordMetadata, KofkaError>) { acked += 1 }
/// }
/// try broker.add(Counter(), name: "counter")
/// ```
public protocol Interceptor: AnyObject, Sendable {
    /// The hooks it implements (default: all).
    var hooks: InterceptorHooks { get }
    /// On the sending thread, inside `send` / `sendBatch` / `produce`, before partitioning.
    /// Return a replacement record (e.g. with a header added), or nil to send it as it is.
    func onSend(topic: String, record: OutgoingRecord) -> Record?
    /// Once per record with its final result, on the thread that settles it: the sender's for
    /// `send`, the one serving delivery reports for `produce`.
    func onAcknowledgement(topic: String, record: OutgoingRecord, result: Result<RecordMetadata, KofkaError>)
    /// On the polling thread, inside `poll` / `pollBatch`, for each record before it is returned.
    func onConsume(topic: String, partition: Int32, record: RecordView)
    /// After an offset commit (automatic, explicit or inside a transaction's commit), once per
    /// partition, with its error (nil on success).
    func onCommit(group: String, partition: TopicPartition, offset: Int64, error: KofkaError?)
    /// The broker handle is closing.
    func onClose()
}

extension Interceptor {
    public var hooks: InterceptorHooks { .all }
    public func onSend(topic: String, record: OutgoingRecord) -> Record? { nil }
    public func onAcknowledgement(topic: String, record: OutgoingRecord, result: Result<RecordMetadata, KofkaError>) {}
    public func onConsume(topic: String, partition: Int32, record: RecordView) {}
    public func onCommit(group: String, partition: TopicPartition, offset: Int64, error: KofkaError?) {}
    public func onClose() {}
}

/// The interceptors a producer or consumer calls, fixed when it is opened, with the union of
/// their hooks so that a hook nobody implements costs one bit test.
struct InterceptorChain: Sendable {
    let list: [any Interceptor]
    let hooks: InterceptorHooks

    init(_ list: [any Interceptor]) {
        self.list = list
        hooks = list.reduce(into: InterceptorHooks()) { $0.formUnion($1.hooks) }
    }

    static let none = InterceptorChain([])

    @inline(__always) func has(_ h: InterceptorHooks) -> Bool { hooks.contains(h) }

    /// Runs every `onSend` in turn on `record`; returns the final replacement, or nil when
    /// none replaced it.
    func send(topic: String, _ record: OutgoingRecord) -> Record? {
        var replaced: Record?
        for ic in list where ic.hooks.contains(.send) {
            if let r = replaced {
                replaced = r.withOutgoing { ic.onSend(topic: topic, record: $0) } ?? r
            } else {
                replaced = ic.onSend(topic: topic, record: record)
            }
        }
        return replaced
    }

    func acknowledge(topic: String, _ record: OutgoingRecord, _ result: Result<RecordMetadata, KofkaError>) {
        for ic in list where ic.hooks.contains(.acknowledgement) { ic.onAcknowledgement(topic: topic, record: record, result: result) }
    }

    func consume(topic: String, partition: Int32, _ record: RecordView) {
        for ic in list where ic.hooks.contains(.consume) { ic.onConsume(topic: topic, partition: partition, record: record) }
    }

    func commit(group: String, _ offsets: [TopicPartition: Int64], error: KofkaError?) {
        guard has(.commit) else { return }
        for (tp, off) in offsets.sorted(by: { $0.key < $1.key }) {
            for ic in list where ic.hooks.contains(.commit) { ic.onCommit(group: group, partition: tp, offset: off, error: error) }
        }
    }
}

extension Record {
    /// Runs `body` with this record seen as an `OutgoingRecord` (valid during the call).
    func withOutgoing<T>(_ body: (OutgoingRecord) -> T) -> T {
        func with(_ a: [UInt8]?, _ f: (UnsafeRawBufferPointer?) -> T) -> T {
            guard let a else { return f(nil) }
            return a.withUnsafeBytes { f($0) }
        }
        return with(key) { k in
            with(value) { v in
                with(HeaderCodec.encode(headers)) { h in
                    body(OutgoingRecord(partition: partition, timestampMs: timestampMs, key: k, value: v, encodedHeaders: h))
                }
            }
        }
    }
}
