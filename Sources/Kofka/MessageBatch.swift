/// Records returned by one poll, sharing one buffer: reading a batch costs a copy of its bytes
/// and a few allocations per batch, not two per record. Each element's key and value are
/// slices of the shared buffer (no copy); `message` copies one out for those who keep it.
///
/// ```swift
/// for m in try consumer.pollMessages(max: 500, timeout: .seconds(1)) {
///     handle(m.key, m.value)            // ArraySlice<UInt8>?, no copy
///     if important(m) { keep(m.message) } // a Message that owns its bytes
/// }
/// ```
public struct MessageBatch: RandomAccessCollection, Sendable {
    /// One record of the batch.
    public struct Element: Sendable {
        /// The topic it was read from.
        public let topic: String
        /// The partition it was read from.
        public let partition: Int32
        /// Its offset in the partition.
        public let offset: Int64
        /// Its timestamp, milliseconds since the epoch.
        public let timestampMs: Int64
        /// The key, or nil: a slice of the batch's buffer.
        public let key: ArraySlice<UInt8>?
        /// The value, or nil: a slice of the batch's buffer.
        public let value: ArraySlice<UInt8>?
        fileprivate let encodedHeaders: ArraySlice<UInt8>?

        /// The headers, decoded.
        public var headers: [Header] { (try? HeaderCodec.decode(encodedHeaders.map { Array($0) })) ?? [] }

        /// A copy that owns its bytes.
        public var message: Message {
            Message(topic: topic, partition: partition, offset: offset, timestampMs: timestampMs,
                    key: key.map { Array($0) }, value: value.map { Array($0) }, headers: headers)
        }
    }

    fileprivate struct Entry: Sendable {
        var partition: Int32       // index into `partitions`
        var offset: Int64
        var timestampMs: Int64
        var start: Int             // key, then value, then headers, from here
        var keyLen: Int32
        var valueLen: Int32
        var headersLen: Int32
    }

    private var buffer: [UInt8] = []
    private var entries: [Entry] = []
    private var partitions: [TopicPartition] = []

    public init() {}

    public var startIndex: Int { 0 }
    public var endIndex: Int { entries.count }

    public subscript(i: Int) -> Element {
        let e = entries[i]
        let tp = partitions[Int(e.partition)]
        func part(_ start: Int, _ len: Int32) -> ArraySlice<UInt8>? {
            len < 0 ? nil : buffer[start ..< start + Int(len)]
        }
        let valueStart = e.start + Int(Swift.max(0, e.keyLen))
        return Element(topic: tp.topic, partition: tp.partition, offset: e.offset, timestampMs: e.timestampMs,
                       key: part(e.start, e.keyLen), value: part(valueStart, e.valueLen),
                       encodedHeaders: part(valueStart + Int(Swift.max(0, e.valueLen)), e.headersLen))
    }

    /// Every record copied out.
    public var messages: [Message] { map(\.message) }

    /// Adds a record seen in place (its bytes copied into the shared buffer).
    mutating func append(_ tp: TopicPartition, _ r: RecordView) {
        let index: Int
        if let last = partitions.indices.last, partitions[last] == tp {
            index = last
        } else if let i = partitions.firstIndex(of: tp) {
            index = i
        } else {
            partitions.append(tp)
            index = partitions.count - 1
        }
        let start = buffer.count
        func put(_ p: UnsafeRawBufferPointer?) -> Int32 {
            guard let p else { return -1 }
            if let base = p.baseAddress, p.count > 0 {
                buffer.append(contentsOf: UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: p.count))
            }
            return Int32(truncatingIfNeeded: p.count)
        }
        let k = put(r.key), v = put(r.value), h = put(r.headers)
        entries.append(Entry(partition: Int32(index), offset: r.offset, timestampMs: r.timestampMs, start: start,
                             keyLen: k, valueLen: v, headersLen: h))
    }

    mutating func reserve(records: Int, bytes: Int) {
        entries.reserveCapacity(records)
        buffer.reserveCapacity(bytes)
    }
}

extension Consumer {
    /// `pollBatch` returning the records in one shared buffer (`MessageBatch`): no allocation per
    /// record. Same rules: up to `max` records (at most `max.poll.records`), waiting up to
    /// `timeout` (nil = forever) for the first; empty when nothing arrived.
    public func pollMessages(max: Int, timeout: Duration?) throws -> MessageBatch {
        var out = MessageBatch()
        out.reserve(records: Swift.min(max, config.maxPollRecords), bytes: 0)
        // Each record goes straight from the read-ahead queue into the batch's buffer.
        _ = try poll(max: max, timeout: timeout, discard: { _ in out = MessageBatch() }) { topic, partition, r in
            out.append(TopicPartition(topic, partition), r)
        }
        return out
    }
}

extension Consumer {
    /// `poll(max:timeout:discard:make:)` for results that are raw pointers (the C face's
    /// messages): a non-generic entry, so a call from another module runs code specialised here
    /// rather than the generic one (which looks up type metadata on every call).
    public func pollPointers(max: Int, timeout: Duration?, discard: ([UnsafeMutableRawPointer]) -> Void,
                             make: (String, Int32, RecordView) throws -> UnsafeMutableRawPointer) throws -> [UnsafeMutableRawPointer] {
        try poll(max: max, timeout: timeout, discard: discard, make: make)
    }

    /// `poll(max: 1, …)` for one raw-pointer result, without arrays, non-generic as above.
    public func pollOnePointer(timeout: Duration?, discard: ([UnsafeMutableRawPointer]) -> Void,
                               make: (String, Int32, RecordView) throws -> UnsafeMutableRawPointer) throws -> UnsafeMutableRawPointer? {
        try pollOne(timeout: timeout, discard: discard, make: make)
    }

    /// `lend(settling:max:timeout:discard:make:)` for raw-pointer results, non-generic as above.
    public func lendPointers(settling: Int, max: Int, timeout: Duration?, discard: ([UnsafeMutableRawPointer]) -> Void,
                             make: (String, Int32, RecordView) throws -> UnsafeMutableRawPointer) throws -> [UnsafeMutableRawPointer] {
        try lend(settling: settling, max: max, timeout: timeout, discard: discard, make: make)
    }
}
