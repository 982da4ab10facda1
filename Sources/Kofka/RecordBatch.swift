/// Records packed into one buffer — Kafka's record batch. It is the unit a producer sends and a
/// storage appends: building one costs one copy of each record's bytes into a shared buffer and
/// no allocation per record, and the memory backend keeps the batch itself as its log.
///
/// ```swift
/// var b = RecordBatch()
/// b.append(RecordData(timestampMs: 0, key: nil, value: Array("v".utf8), headers: nil))
/// let results = try producer.sendBatch("events", b)
/// ```
public struct RecordBatch: Sendable {
    /// Where one record's bytes are: key, then value, then encoded headers, back to back from `start`.
    public struct Entry: Sendable, Hashable {
        /// Milliseconds since the epoch (0 given to `append` means the batch's creation time).
        public var timestampMs: Int64
        /// Offset of the record's first byte in `buffer`.
        public var start: Int
        /// Key length, -1 for no key.
        public var keyLen: Int32
        /// Value length, -1 for no value.
        public var valueLen: Int32
        /// Encoded headers length (`HeaderCodec`), -1 for none.
        public var headersLen: Int32

        var valueStart: Int { start + Int(max(0, keyLen)) }
        var headersStart: Int { valueStart + Int(max(0, valueLen)) }
        /// Bytes counted against `message.max.bytes` (key + value + encoded headers).
        var size: Int { Int(max(0, keyLen)) + Int(max(0, valueLen)) + Int(max(0, headersLen)) }
    }

    /// Every record's bytes.
    public private(set) var buffer: [UInt8] = []
    /// One entry per record, in order.
    public private(set) var entries: [Entry] = []
    public init() {}

    /// An empty batch with room for `records` records of `bytes` bytes in all.
    public init(reservingRecords records: Int, bytes: Int) {
        entries.reserveCapacity(records)
        buffer.reserveCapacity(bytes)
    }

    /// The batch whose records `entries` describe in `buffer` (nothing copied).
    init(buffer: [UInt8], entries: [Entry]) {
        self.buffer = buffer
        self.entries = entries
    }

    /// Gives the buffer back the room it has beyond its bytes (a copy) when that is more than an
    /// eighth of them: for a batch kept for long, as the memory backend keeps its log.
    mutating func shrinkToFit() {
        if buffer.capacity - buffer.count > buffer.count / 8 + 256 { buffer = buffer.withUnsafeBufferPointer { Array($0) } }
        if entries.capacity - entries.count > entries.count / 8 + 16 { entries = entries.withUnsafeBufferPointer { Array($0) } }
    }

    /// Appends the record `e` describes in `buf` (its bytes copied, its timestamp as it is).
    mutating func append(verbatim e: Entry, from buf: UnsafeRawBufferPointer) {
        let start = buffer.count
        if e.size > 0 { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[e.start ..< e.start + e.size])) }
        entries.append(Entry(timestampMs: e.timestampMs, start: start, keyLen: e.keyLen, valueLen: e.valueLen, headersLen: e.headersLen))
    }

    /// A batch of `records`, copied.
    public init(_ records: [RecordData]) {
        self.init(reservingRecords: records.count, bytes: records.reduce(0) { $0 + ($1.key?.count ?? 0) + ($1.value?.count ?? 0) + ($1.headers?.count ?? 0) })
        for r in records { append(r) }
    }

    /// Records in the batch.
    public var count: Int { entries.count }

    private mutating func put(_ p: UnsafeRawBufferPointer?) -> Int32 {
        guard let p else { return -1 }
        if let base = p.baseAddress, p.count > 0 {
            buffer.append(contentsOf: UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: p.count))
        }
        return Int32(truncatingIfNeeded: p.count)
    }

    /// Appends one record from raw bytes (copied). nil key / value mean "none", distinct from
    /// empty; a timestamp of 0 means "now" (set by the producer when it sends the batch).
    public mutating func append(timestampMs: Int64, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, headers: [UInt8]?) {
        appendVerbatim(timestampMs, key, value, headers)
    }

    /// Gives every record whose timestamp is 0 ("now") the timestamp `now`.
    mutating func resolveTimestamps(now: Int64) {
        for i in entries.indices where entries[i].timestampMs == 0 { entries[i].timestampMs = now }
    }

    private mutating func appendVerbatim(_ timestampMs: Int64, _ key: UnsafeRawBufferPointer?, _ value: UnsafeRawBufferPointer?, _ headers: [UInt8]?) {
        let start = buffer.count
        let kl = put(key)
        let vl = put(value)
        var hl: Int32 = -1
        if let headers {
            buffer.append(contentsOf: headers)
            hl = Int32(truncatingIfNeeded: headers.count)
        }
        entries.append(Entry(timestampMs: timestampMs, start: start, keyLen: kl, valueLen: vl, headersLen: hl))
    }

    /// Appends one record (copied), its timestamp as it is.
    public mutating func append(_ r: RecordData) {
        func with<T>(_ a: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> T) -> T {
            guard let a else { return body(nil) }
            return a.withUnsafeBytes { body($0) }
        }
        with(r.key) { k in with(r.value) { v in appendVerbatim(r.timestampMs, k, v, r.headers) } }
    }

    /// Appends a copy of record `i` of `other`.
    mutating func append(copyOf i: Int, from other: RecordBatch) {
        other.buffer.withUnsafeBytes { append(verbatim: other.entries[i], from: $0) }
    }

    /// Record `i` as an interceptor sees it (`buf` is this batch's buffer, valid during the call).
    func outgoing(_ i: Int, _ buf: UnsafeRawBufferPointer, partition: Int32?) -> OutgoingRecord {
        let e = entries[i]
        func view(_ start: Int, _ len: Int32) -> UnsafeRawBufferPointer? {
            len < 0 ? nil : UnsafeRawBufferPointer(rebasing: buf[start ..< start + Int(len)])
        }
        return OutgoingRecord(partition: partition, timestampMs: e.timestampMs, key: view(e.start, e.keyLen),
                              value: view(e.valueStart, e.valueLen), encodedHeaders: view(e.headersStart, e.headersLen))
    }

    /// The records at `indices`, as a new batch.
    func select(_ indices: [Int]) -> RecordBatch {
        var out = RecordBatch(reservingRecords: indices.count, bytes: indices.reduce(0) { $0 + entries[$1].size })
        buffer.withUnsafeBytes { b in
            for i in indices { out.append(verbatim: entries[i], from: b) }
        }
        return out
    }

}
