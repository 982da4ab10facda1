/// Records returned by one poll, sharing buffers: the consumer's read-ahead buffers (on the
/// memory backend, the log's own), so reading a batch costs a few allocations per batch and no
/// copy and no allocation per record. Each element's key and value are slices of a shared
/// buffer; `message` copies one out for those who keep it.
///
/// An element is a reference to the batch's storage and a position in it (two words): reading
/// one costs one reference count, whatever it holds, and its topic, partition, offset and
/// timestamp are looked up in that storage when asked for. An element kept after the batch is
/// let go keeps the storage (and so its bytes) alive.
///
/// ```swift
/// for m in try consumer.pollMessages(max: 500, timeout: .seconds(1)) {
///     handle(m.key, m.value)            // ArraySlice<UInt8>?, no copy
///     if important(m) { keep(m.message) } // a Message that owns its bytes
/// }
/// ```
public struct MessageBatch: RandomAccessCollection, Sendable {
    /// One record of the batch: a view of it in the batch's storage, which it keeps alive.
    public struct Element: Sendable {
        /// The storage of the batch it came from.
        @usableFromInline let storage: Storage
        /// Its entry in `storage.entries`.
        @usableFromInline let index: Int

        @inlinable
        init(_ storage: Storage, _ index: Int) {
            self.storage = storage
            self.index = index
        }

        @inlinable var entry: RecordSet.Entry { storage.entries[index] }

        /// The topic it was read from.
        public var topic: String { storage.partitions[Int(entry.partition)].topic }
        /// The partition it was read from.
        public var partition: Int32 { storage.partitions[Int(entry.partition)].partition }
        /// Its offset in the partition.
        @inlinable public var offset: Int64 { entry.offset }
        /// Its timestamp, milliseconds since the epoch.
        @inlinable public var timestampMs: Int64 { entry.timestampMs }

        /// The key, or nil: a slice of a shared buffer.
        @inlinable public var key: ArraySlice<UInt8>? {
            let e = entry
            return e.keyLen < 0 ? nil : storage.segments[Int(e.segment)][e.start ..< e.start + Int(e.keyLen)]
        }
        /// The value, or nil: a slice of a shared buffer.
        @inlinable public var value: ArraySlice<UInt8>? {
            let e = entry
            let from = e.valueStart
            return e.valueLen < 0 ? nil : storage.segments[Int(e.segment)][from ..< from + Int(e.valueLen)]
        }
        var encodedHeaders: ArraySlice<UInt8>? {
            let e = entry
            let from = e.valueStart + Int(Swift.max(0, e.valueLen))
            return e.headersLen < 0 ? nil : storage.segments[Int(e.segment)][from ..< from + Int(e.headersLen)]
        }

        /// The headers, decoded.
        public var headers: [Header] { (try? HeaderCodec.decode(encodedHeaders.map { Array($0) })) ?? [] }

        /// A copy that owns its bytes.
        public var message: Message {
            let tp = storage.partitions[Int(entry.partition)]
            return Message(topic: tp.topic, partition: tp.partition, offset: offset, timestampMs: timestampMs,
                           key: key.map { Array($0) }, value: value.map { Array($0) }, headers: headers)
        }
    }

    /// What a batch and its elements share, never changed once made: the records' entries and
    /// the buffers and partitions they refer to (arrays shared with the read-ahead that filled
    /// them, not copied). Its fields are constants, so an element reads them without exclusivity
    /// checks and an iteration needs no reference count beyond the element's own.
    @usableFromInline
    final class Storage: Sendable {
        @usableFromInline let entries: [RecordSet.Entry]
        @usableFromInline let segments: [[UInt8]]
        @usableFromInline let partitions: [TopicPartition]

        init(_ records: RecordSet) {
            entries = records.entries
            segments = records.segments
            partitions = records.partitions
        }

        static let empty = Storage(RecordSet())
    }

    /// The storage the records are in: records `lower..<upper` of its entries are this batch.
    @usableFromInline let storage: Storage
    @usableFromInline let lower: Int
    @usableFromInline let upper: Int

    /// An empty batch.
    public init() {
        storage = .empty
        lower = 0
        upper = 0
    }

    /// Records `range` of `records`, sharing its arrays.
    init(_ records: RecordSet, _ range: Range<Int>) {
        storage = Storage(records)
        lower = range.lowerBound
        upper = range.upperBound
    }

    @inlinable public var startIndex: Int { 0 }
    @inlinable public var endIndex: Int { upper &- lower }

    @inlinable
    public subscript(i: Int) -> Element {
        precondition(i >= 0 && i < upper &- lower, "MessageBatch index out of range")
        return Element(storage, lower &+ i)
    }

    /// Every record copied out.
    public var messages: [Message] { map(\.message) }

    /// This batch followed by records `range` of `records` (a poll that gathered records twice).
    func appending(_ records: RecordSet, _ range: Range<Int>) -> MessageBatch {
        if isEmpty { return MessageBatch(records, range) }
        var both = RecordSet()
        both.append(contentsOf: RecordSet(storage), lower..<upper)
        both.append(contentsOf: records, range)
        return MessageBatch(both, 0..<both.count)
    }
}

/// Records a consumer holds: the entries of each, with the buffers their bytes are in and the
/// partitions they came from. The read-ahead's chunks are record sets; a poll hands a range of
/// one out as a `MessageBatch`, sharing its arrays.
@usableFromInline
struct RecordSet: Sendable {
    @usableFromInline
    struct Entry: Sendable {
        @usableFromInline var partition: Int32       // index into `partitions`
        @usableFromInline var segment: Int32         // index into `segments`
        @usableFromInline var offset: Int64
        @usableFromInline var timestampMs: Int64
        @usableFromInline var start: Int             // key, then value, then headers, from here in its segment
        @usableFromInline var keyLen: Int32
        @usableFromInline var valueLen: Int32
        @usableFromInline var headersLen: Int32

        @inlinable var valueStart: Int { start &+ Int(Swift.max(0, keyLen)) }
        var size: Int { Int(Swift.max(0, keyLen)) + Int(Swift.max(0, valueLen)) + Int(Swift.max(0, headersLen)) }
    }

    /// The buffers the records' bytes are in: buffers shared with their owner (a read-ahead
    /// chunk, the memory backend's log), never copied, and buffers the batch filled itself with
    /// bytes that came from anywhere else.
    @usableFromInline var segments: [[UInt8]] = []
    /// Where the last segment's bytes are when it was shown by `share` (an address compared,
    /// never read through); `sharedCount` 0 otherwise.
    private var sharedBase: UInt = 0
    private var sharedCount = 0
    /// Whether the last segment is a buffer the batch fills itself.
    private var lastIsOwn = false
    /// An emptied buffer of the batch's own, reused when it next needs one (`removeAll`).
    private var spareOwn: [UInt8] = []
    @usableFromInline var entries: [Entry] = []
    @usableFromInline var partitions: [TopicPartition] = []
    /// Key, value and header bytes of the records (what `queued.max.messages.kbytes` counts).
    private(set) var byteCount = 0

    init() {}

    /// The records of a batch's storage, sharing its arrays.
    init(_ storage: MessageBatch.Storage) {
        entries = storage.entries
        segments = storage.segments
        partitions = storage.partitions
        byteCount = entries.reduce(0) { $0 &+ $1.size }
    }

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }

    /// The records appended next may lie in `buffer` (whose bytes are at `bytes`): they are
    /// kept as slices of it, without a copy. `buffer` must not change while it is shared (an
    /// array's copy on write sees to that).
    mutating func share(_ buffer: [UInt8], _ bytes: UnsafeRawBufferPointer) {
        if sharedCount > 0, UInt(bitPattern: bytes.baseAddress) == sharedBase, bytes.count == sharedCount { return }
        segments.append(buffer)
        sharedBase = UInt(bitPattern: bytes.baseAddress)
        sharedCount = bytes.count
        lastIsOwn = false
    }

    /// Adds records `range` of `other`, sharing its buffers (no copy of their bytes).
    mutating func append(contentsOf other: RecordSet, _ range: Range<Int>) {
        guard !range.isEmpty else { return }
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: other.segments.count) { segmentMap in
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: other.partitions.count) { partitionMap in
                segmentMap.initialize(repeating: -1)
                partitionMap.initialize(repeating: -1)
                // The segments and partitions the run uses, in this batch's numbering (runs are
                // long: a look per change).
                var lastSegment: Int32 = -1, lastPartition: Int32 = -1
                for e in other.entries[range] where e.segment != lastSegment || e.partition != lastPartition {
                    lastSegment = e.segment
                    lastPartition = e.partition
                    if segmentMap[Int(e.segment)] < 0 {
                        segments.append(other.segments[Int(e.segment)])
                        segmentMap[Int(e.segment)] = Int32(segments.count - 1)
                    }
                    if partitionMap[Int(e.partition)] < 0 {
                        partitionMap[Int(e.partition)] = partitionIndex(other.partitions[Int(e.partition)])
                    }
                }
                let from = entries.count
                entries.append(contentsOf: other.entries[range])
                var added = 0
                entries.withUnsafeMutableBufferPointer { all in
                    for i in from..<all.count {
                        all[i].segment = segmentMap[Int(all[i].segment)]
                        all[i].partition = partitionMap[Int(all[i].partition)]
                        added &+= all[i].size
                    }
                }
                byteCount += added
            }
        }
        sharedBase = 0
        sharedCount = 0
        lastIsOwn = false
    }

    /// Adds the records of a stored run as slices of its buffer (no copy of their bytes), up
    /// to the first that finds `maxBytes` or more held; returns the offset of the last one added.
    mutating func append(run: StoredRun, partition: Int32, maxBytes: Int) -> Int64? {
        guard !run.entries.isEmpty, byteCount < maxBytes else { return nil }
        // How many fit: each is added while fewer than `maxBytes` are held.
        var n = 0
        var held = byteCount
        for e in run.entries {
            if held >= maxBytes { break }
            held &+= e.size
            n += 1
        }
        segments.append(run.buffer)
        let segment = Int32(segments.count - 1)
        sharedBase = 0
        sharedCount = 0
        lastIsOwn = false
        byteCount = held
        let from = entries.count
        entries.append(contentsOf: repeatElement(Entry(partition: partition, segment: segment, offset: 0, timestampMs: 0, start: 0,
                                                       keyLen: -1, valueLen: -1, headersLen: -1), count: n))
        entries.withUnsafeMutableBufferPointer { dst in
            run.entries.withUnsafeBufferPointer { src in
                for k in 0..<n {
                    let e = src[k]
                    dst[from + k].offset = run.offset(k)
                    dst[from + k].timestampMs = e.timestampMs
                    dst[from + k].start = e.start
                    dst[from + k].keyLen = e.keyLen
                    dst[from + k].valueLen = e.valueLen
                    dst[from + k].headersLen = e.headersLen
                }
            }
        }
        return run.offset(n - 1)
    }

    /// Calls `body` once per run of consecutive records of one partition among records `range`.
    func forEachRun(_ range: Range<Int>, _ body: (TopicPartition, Range<Int>) -> Void) {
        forEachRunIndex(range) { body(partitions[Int($0)], $1) }
    }

    /// `forEachRun` giving the partition's index in `partitions`.
    func forEachRunIndex(_ range: Range<Int>, _ body: (Int32, Range<Int>) -> Void) {
        entries.withUnsafeBufferPointer { all in
            var i = range.lowerBound
            while i < range.upperBound {
                let o = all[i].partition
                var j = i + 1
                while j < range.upperBound && all[j].partition == o { j += 1 }
                body(o, i..<j)
                i = j
            }
        }
    }

    /// The index of `tp` in `partitions`, added when new.
    mutating func partitionIndex(_ tp: TopicPartition) -> Int32 {
        if let last = partitions.indices.last, partitions[last] == tp { return Int32(last) }
        if let i = partitions.firstIndex(of: tp) { return Int32(i) }
        partitions.append(tp)
        return Int32(partitions.count - 1)
    }

    /// Adds `tp` to `partitions` without looking for it (a fetch visits each partition once).
    mutating func addPartition(_ tp: TopicPartition) -> Int32 {
        partitions.append(tp)
        return Int32(partitions.count - 1)
    }

    /// Adds a record seen in place.
    mutating func append(_ tp: TopicPartition, _ r: RecordView) {
        append(partition: partitionIndex(tp), r)
    }

    /// Adds a record of `partitions[partition]` seen in place: as a slice of the shared segment
    /// its bytes lie in, or else copied into a buffer of the batch's own.
    mutating func append(partition: Int32, _ r: RecordView) {
        let k = Self.length(r.key), v = Self.length(r.value), h = Self.length(r.headers)
        let size = Int(Swift.max(0, k)) &+ Int(Swift.max(0, v)) &+ Int(Swift.max(0, h))
        byteCount &+= size
        // A record from a shared buffer has its parts back to back (key, value, headers) in
        // it; any record whose parts are not, or lie outside it, is copied.
        if sharedCount > 0 {
            let first = r.key ?? r.value ?? r.headers
            let at = first.map { UInt(bitPattern: $0.baseAddress) &- sharedBase } ?? 0
            if at <= UInt(sharedCount), Int(at) &+ size <= sharedCount, Self.contiguous(r, at: sharedBase &+ at) {
                entries.append(Entry(partition: partition, segment: Int32(segments.count - 1), offset: r.offset,
                                     timestampMs: r.timestampMs, start: Int(at), keyLen: k, valueLen: v, headersLen: h))
                return
            }
        }
        if !lastIsOwn {   // start a buffer of the batch's own
            segments.append(spareOwn)
            spareOwn = []
            sharedBase = 0
            sharedCount = 0
            lastIsOwn = true
        }
        let own = segments.count - 1
        let start = segments[own].count
        func put(_ p: UnsafeRawBufferPointer?) {
            if let p, let base = p.baseAddress, p.count > 0 {
                segments[own].append(contentsOf: UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: p.count))
            }
        }
        put(r.key)
        put(r.value)
        put(r.headers)
        entries.append(Entry(partition: partition, segment: Int32(own), offset: r.offset, timestampMs: r.timestampMs,
                             start: start, keyLen: k, valueLen: v, headersLen: h))
    }

    @inline(__always) private static func length(_ p: UnsafeRawBufferPointer?) -> Int32 {
        p.map { Int32(truncatingIfNeeded: $0.count) } ?? -1
    }

    /// Whether the record's present parts follow one another from address `at`.
    @inline(__always) private static func contiguous(_ r: RecordView, at: UInt) -> Bool {
        var next = at
        func follows(_ p: UnsafeRawBufferPointer?) -> Bool {
            guard let p else { return true }
            if p.count > 0 && UInt(bitPattern: p.baseAddress) != next { return false }
            next &+= UInt(p.count)
            return true
        }
        return follows(r.key) && follows(r.value) && follows(r.headers)
    }

    /// Visits records `range` in place: `segment` sees each buffer before the records in it
    /// (to share it), `body` each record's partition and view (valid during the call).
    func visit(_ range: Range<Int>, segment: ([UInt8], UnsafeRawBufferPointer) -> Void,
               _ body: (TopicPartition, RecordView) throws -> Void) rethrows {
        var i = range.lowerBound
        while i < range.upperBound {
            let seg = entries[i].segment
            try segments[Int(seg)].withUnsafeBytes { buf in
                segment(segments[Int(seg)], buf)
                while i < range.upperBound && entries[i].segment == seg {
                    let e = entries[i]
                    // Entries lie inside their segment by construction.
                    func part(_ start: Int, _ len: Int32) -> UnsafeRawBufferPointer? {
                        len < 0 ? nil : UnsafeRawBufferPointer(start: buf.baseAddress.map { $0 + start }, count: Int(len))
                    }
                    let valueStart = e.start + Int(Swift.max(0, e.keyLen))
                    try body(partitions[Int(e.partition)],
                             RecordView(offset: e.offset, txn: 0, timestampMs: e.timestampMs, key: part(e.start, e.keyLen),
                                        value: part(valueStart, e.valueLen),
                                        headers: part(valueStart + Int(Swift.max(0, e.valueLen)), e.headersLen)))
                    i += 1
                }
            }
        }
    }

    /// Empties the batch, keeping its storage (and one buffer of its own, when no one else
    /// holds it) for the next records.
    mutating func removeAll() {
        if lastIsOwn {
            swap(&spareOwn, &segments[segments.count - 1])
            spareOwn.removeAll(keepingCapacity: true)
        }
        segments.removeAll(keepingCapacity: true)
        entries.removeAll(keepingCapacity: true)
        partitions.removeAll(keepingCapacity: true)
        sharedBase = 0
        sharedCount = 0
        lastIsOwn = false
        byteCount = 0
    }
}

extension Consumer {
    /// `pollBatch` returning the records in one batch (`MessageBatch`) whose keys and values are
    /// slices of the consumer's read-ahead buffers: no allocation and no copy per record. Same
    /// rules: up to `max` records (at most `max.poll.records`), waiting up to `timeout` (nil =
    /// forever) for the first; empty when nothing arrived. A batch holds the read-ahead buffers
    /// it shares until it is let go (a fetch reuses a buffer no batch holds any more).
    public func pollMessages(max: Int, timeout: Duration?) throws -> MessageBatch {
        var out = MessageBatch()
        _ = try poll(max: max, timeout: timeout, discard: { (_: [Void]) in out = MessageBatch() },
                     bulk: { records, range in
                         out = out.appending(records, range)
                         return [Void](repeating: (), count: range.count)
                     }) { topic, partition, r in
            // Not taken: with `bulk` given, every record comes from the read-ahead in runs.
            var one = RecordSet()
            one.append(TopicPartition(topic, partition), r)
            out = out.appending(one, 0..<1)
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
