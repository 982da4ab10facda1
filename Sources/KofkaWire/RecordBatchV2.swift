import CZlib
import Kofka

/// Kafka's RecordBatch v2 (magic 2) — the unit a Produce request carries and a Fetch response
/// returns — decoded into Kofka's `RecordBatch` and encoded from stored records.
///
/// ```
/// baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 (2)
/// crc uint32 (CRC-32C of attributes … end) | attributes int16 | lastOffsetDelta int32
/// baseTimestamp int64 | maxTimestamp int64 | producerId int64 | producerEpoch int16
/// baseSequence int32 | records: count int32, then each record (varint-framed), compressed
/// together with codec (attributes & 7): 0 none, 1 gzip (2 snappy, 3 lz4, 4 zstd: refused)
/// ```
public struct WireBatch: Sendable {
    /// The producer id (-1: none), epoch and first sequence number, as the producer sent them.
    public var producerId: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32
    /// Written inside a transaction (attributes bit 4).
    public var isTransactional: Bool
    /// A control batch (transaction marker; attributes bit 5): never accepted from producers.
    public var isControl: Bool
    /// The records, in Kofka's form (headers encoded with `HeaderCodec`).
    public var records: RecordBatch

    /// Why a batch was refused, as Kafka's error code.
    public enum Refusal: Error, Sendable {
        /// CORRUPT_MESSAGE (2): truncated, bad lengths, a CRC mismatch, a wrong record count.
        case corrupt(String)
        /// UNSUPPORTED_COMPRESSION_TYPE (76).
        case unsupportedCompression(Int)
        /// UNSUPPORTED_FOR_MESSAGE_FORMAT (43): magic 0 or 1.
        case oldMagic(Int8)
        /// INVALID_RECORD (87): a control batch from a producer, an empty batch.
        case invalid(String)

        public var code: Int16 {
            switch self {
            case .corrupt: 2
            case .unsupportedCompression: 76
            case .oldMagic: 43
            case .invalid: 87
            }
        }
        public var message: String {
            switch self {
            case .corrupt(let m): "corrupt record batch: \(m)"
            case .unsupportedCompression(let c): "compression codec \(c) is not supported (none and gzip are)"
            case .oldMagic(let m): "message format v\(m) is not supported (RecordBatch v2 only)"
            case .invalid(let m): "invalid record batch: \(m)"
            }
        }
    }

    /// Most bytes a compressed batch may inflate to.
    public static let maxInflatedBytes = 256 << 20

    /// Decodes every batch in a Produce request's `records` field. `now` (ms) replaces a
    /// timestamp of -1. Throws `Refusal`.
    public static func decodeAll(_ bytes: [UInt8], now: Int64) throws -> [WireBatch] {
        var out: [WireBatch] = []
        var pos = 0
        var legacy = RecordBatch()
        while pos < bytes.count {
            guard bytes.count - pos >= 17 else { throw Refusal.corrupt("\(bytes.count - pos) trailing bytes are not a batch") }
            if bytes[pos + 16] < 2 {
                // Produce v0-v2 carry message sets of magic 0 or 1 (one record per message; a
                // compressed message wraps an inner message set). Kept as one plain batch.
                pos = try decodeLegacy(bytes, at: pos, now: now, depth: 0, into: &legacy)
                continue
            }
            let (b, next) = try decode(bytes, at: pos, now: now)
            out.append(b)
            pos = next
        }
        if legacy.count > 0 {
            out.append(WireBatch(producerId: -1, producerEpoch: -1, baseSequence: -1, isTransactional: false, isControl: false, records: legacy))
        }
        return out
    }

    /// Decodes one message of magic 0 or 1 at `at` (CRC-32 checked) into `into`; returns the
    /// offset after it.
    static func decodeLegacy(_ bytes: [UInt8], at start: Int, now: Int64, depth: Int, into: inout RecordBatch) throws -> Int {
        var r = WireReader(bytes, from: start)
        do {
            _ = try r.int64()
            let size = Int(try r.int32())
            guard size >= 14, size <= r.remaining else { throw Refusal.corrupt("message size \(size) with \(r.remaining) bytes left") }
            let end = r.pos + size
            let crc = try r.uint32()
            let actual = bytes.withUnsafeBufferPointer { p in
                UInt32(crc32(0, p.baseAddress! + r.pos, UInt32(end - r.pos)))
            }
            guard actual == crc else { throw Refusal.corrupt("CRC-32 mismatch in a magic 0/1 message") }
            let magic = try r.int8()
            let attributes = try r.int8()
            var ts = now
            if magic == 1 { let t = try r.int64(); if t >= 0 { ts = t } }
            let key = try r.nullableBytes(compact: false)
            let value = try r.nullableBytes(compact: false)
            guard r.pos == end else { throw Refusal.corrupt("message has \(end - r.pos) trailing bytes") }
            switch Int(attributes & 7) {
            case 0:
                into.append(RecordData(timestampMs: ts, key: key, value: value, headers: nil))
            case 1:
                guard depth == 0, let value else { throw Refusal.corrupt("a nested or empty compressed message") }
                let inner: [UInt8]
                do { inner = try Gzip.decompress(value[...], limit: maxInflatedBytes) } catch let e as WireError { throw Refusal.corrupt(e.description) }
                var pos = 0
                while pos < inner.count { pos = try decodeLegacy(inner, at: pos, now: now, depth: 1, into: &into) }
            case let c:
                throw Refusal.unsupportedCompression(c)
            }
            return end
        } catch let e as WireError {
            throw Refusal.corrupt(e.description)
        }
    }

    /// Decodes one batch at `at`; returns it and the offset after it.
    static func decode(_ bytes: [UInt8], at start: Int, now: Int64) throws -> (WireBatch, Int) {
        var r = WireReader(bytes, from: start)
        do {
            _ = try r.int64()   // baseOffset: the broker assigns offsets
            let length = Int(try r.int32())
            guard length >= 49, length <= r.remaining else {
                throw Refusal.corrupt("batch length \(length) with \(r.remaining) bytes left")
            }
            let end = r.pos + length
            _ = try r.int32()   // partitionLeaderEpoch
            let magic = try r.int8()
            guard magic == 2 else { throw Refusal.oldMagic(magic) }
            let crc = try r.uint32()
            let crcStart = r.pos
            let actual = CRC32C.checksum(bytes, crcStart ..< end)
            guard actual == crc else {
                throw Refusal.corrupt("CRC-32C mismatch: batch says \(String(crc, radix: 16)), contents give \(String(actual, radix: 16))")
            }
            let attributes = try r.int16()
            let lastOffsetDelta = try r.int32()
            let baseTimestamp = try r.int64()
            _ = try r.int64()   // maxTimestamp
            let producerId = try r.int64()
            let producerEpoch = try r.int16()
            let baseSequence = try r.int32()
            let count = Int(try r.int32())
            let codec = Int(attributes & 7)
            let isControl = attributes & 0x20 != 0
            let isTransactional = attributes & 0x10 != 0
            guard count >= 0, count <= length else { throw Refusal.corrupt("record count \(count)") }
            guard count > 0 else { throw Refusal.invalid("a batch with no records") }
            guard lastOffsetDelta == Int32(count - 1) else {
                throw Refusal.corrupt("lastOffsetDelta \(lastOffsetDelta) for \(count) records")
            }
            if isControl { throw Refusal.invalid("producers may not send control batches") }
            var body: WireReader
            switch codec {
            case 0: body = WireReader(bytes, from: r.pos, to: end)
            case 1:
                let inflated: [UInt8]
                do { inflated = try Gzip.decompress(bytes[r.pos ..< end], limit: maxInflatedBytes) } catch let e as WireError {
                    throw Refusal.corrupt(e.description)
                }
                body = WireReader(inflated)
            default: throw Refusal.unsupportedCompression(codec)
            }
            var batch = RecordBatch(reservingRecords: count, bytes: body.remaining)
            for i in 0..<count {
                let len = Int(try body.varint())
                guard len >= 0, len <= body.remaining else { throw Refusal.corrupt("record \(i) length \(len)") }
                var rec = WireReader(body.bytes, from: body.pos, to: body.pos + len)
                try body.skip(len)
                _ = try rec.int8()   // attributes (unused)
                let tsDelta = try rec.varlong()
                let offDelta = try rec.varint()
                guard offDelta == Int32(i) else { throw Refusal.corrupt("record \(i) has offset delta \(offDelta)") }
                let key = try varbytes(&rec)
                let value = try varbytes(&rec)
                let nh = Int(try rec.varint())
                guard nh >= 0, nh <= rec.remaining else { throw Refusal.corrupt("record \(i) header count \(nh)") }
                var headers: [Header] = []
                for _ in 0..<nh {
                    guard let k = try varbytes(&rec) else { throw Refusal.corrupt("record \(i): a header with a null key") }
                    headers.append(Header(String(decoding: k, as: UTF8.self), try varbytes(&rec)))
                }
                guard rec.remaining == 0 else { throw Refusal.corrupt("record \(i) has \(rec.remaining) trailing bytes") }
                let ts = baseTimestamp < 0 ? now : baseTimestamp &+ tsDelta
                batch.append(RecordData(timestampMs: ts, key: key, value: value, headers: HeaderCodec.encode(headers)))
            }
            guard body.remaining == 0 else { throw Refusal.corrupt("\(body.remaining) bytes after the last record") }
            return (WireBatch(producerId: producerId, producerEpoch: producerEpoch, baseSequence: baseSequence,
                              isTransactional: isTransactional, isControl: isControl, records: batch), end)
        } catch let e as WireError {
            throw Refusal.corrupt(e.description)
        }
    }

    private static func varbytes(_ r: inout WireReader) throws -> [UInt8]? {
        let n = Int(try r.varint())
        if n < 0 { return nil }
        guard n <= r.remaining else { throw WireError("field of \(n) bytes with \(r.remaining) left") }
        let start = r.pos
        try r.skip(n)
        return Array(r.bytes[start ..< start + n])
    }
}

/// Writes stored records as RecordBatch v2 batches for a Fetch response: consecutive records
/// of one transaction (or of none) form one batch. A transactional batch carries Kofka's
/// transaction number as its producer id, so the (producer id, first offset) pairs of a
/// Fetch response's AbortedTransactions name exactly the batches a read_committed client
/// must drop. Offsets keep their gaps (compaction): each record's offset delta is its own.
public struct FetchBatchWriter {
    public private(set) var bytes: [UInt8] = []
    private var records = WireWriter(capacity: 4096)
    private var count: Int32 = 0
    private var baseOffset: Int64 = 0
    private var lastOffset: Int64 = 0
    private var baseTimestamp: Int64 = 0
    private var maxTimestamp: Int64 = 0
    private var txn: Int64 = 0
    private let maxRecordsPerBatch: Int32

    public init(maxRecordsPerBatch: Int32 = 1000) { self.maxRecordsPerBatch = maxRecordsPerBatch }

    /// Bytes written so far, including the batch being built.
    public var size: Int { bytes.count + (count > 0 ? 61 + records.bytes.count : 0) }

    /// Adds one record.
    public mutating func add(offset: Int64, txn: Int64, timestampMs: Int64, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?,
                             headers: [Header]) {
        if count > 0 && (txn != self.txn || count >= maxRecordsPerBatch) { flush() }
        if count == 0 {
            baseOffset = offset; baseTimestamp = timestampMs; maxTimestamp = timestampMs; self.txn = txn
        }
        lastOffset = offset
        maxTimestamp = max(maxTimestamp, timestampMs)
        var rec = WireWriter(capacity: 32 + (key?.count ?? 0) + (value?.count ?? 0))
        rec.int8(0)
        rec.varlong(timestampMs &- baseTimestamp)
        rec.varint(Int32(truncatingIfNeeded: offset - baseOffset))
        for f in [key, value] {
            if let f { rec.varint(Int32(f.count)); rec.bytes.append(contentsOf: f) } else { rec.varint(-1) }
        }
        rec.varint(Int32(headers.count))
        for h in headers {
            let k = Array(h.name.utf8)
            rec.varint(Int32(k.count)); rec.bytes.append(contentsOf: k)
            if let v = h.value { rec.varint(Int32(v.count)); rec.bytes.append(contentsOf: v) } else { rec.varint(-1) }
        }
        records.varint(Int32(rec.bytes.count))
        records.bytes.append(contentsOf: rec.bytes)
        count += 1
    }

    /// Closes the batch being built.
    public mutating func flush() {
        guard count > 0 else { return }
        var w = WireWriter(capacity: 61 + records.bytes.count)
        w.int64(baseOffset)
        w.int32(0)   // batchLength, patched below
        w.int32(-1)   // partitionLeaderEpoch: none kept
        w.int8(2)
        w.uint32(0)   // crc, patched below
        let crcStart = w.bytes.count
        w.int16(txn != 0 ? 0x10 : 0)
        w.int32(Int32(truncatingIfNeeded: lastOffset - baseOffset))
        w.int64(baseTimestamp)
        w.int64(maxTimestamp)
        w.int64(txn != 0 ? txn : -1)
        w.int16(txn != 0 ? 0 : -1)
        w.int32(-1)
        w.int32(count)
        w.bytes.append(contentsOf: records.bytes)
        w.patchInt32(Int32(w.bytes.count - 12), at: 8)
        w.patchInt32(Int32(bitPattern: CRC32C.checksum(w.bytes, crcStart ..< w.bytes.count)), at: crcStart - 4)
        bytes.append(contentsOf: w.bytes)
        records.bytes.removeAll(keepingCapacity: true)
        count = 0
    }

    /// Appends a control batch (a transaction marker) for producer id `pid` at `offset`:
    /// `commit` true for COMMIT (type 1), false for ABORT (type 0).
    public mutating func control(offset: Int64, pid: Int64, commit: Bool, timestampMs: Int64) {
        flush()
        var rec = WireWriter()
        rec.int8(0); rec.varlong(0); rec.varint(0)
        var key = WireWriter(); key.int16(0); key.int16(commit ? 1 : 0)
        var value = WireWriter(); value.int16(0); value.int32(-1)
        rec.varint(Int32(key.bytes.count)); rec.bytes.append(contentsOf: key.bytes)
        rec.varint(Int32(value.bytes.count)); rec.bytes.append(contentsOf: value.bytes)
        rec.varint(0)
        var w = WireWriter()
        w.int64(offset); w.int32(0); w.int32(-1); w.int8(2); w.uint32(0)
        let crcStart = w.bytes.count
        w.int16(0x30); w.int32(0); w.int64(timestampMs); w.int64(timestampMs)
        w.int64(pid); w.int16(0); w.int32(-1); w.int32(1)
        w.varint(Int32(rec.bytes.count)); w.bytes.append(contentsOf: rec.bytes)
        w.patchInt32(Int32(w.bytes.count - 12), at: 8)
        w.patchInt32(Int32(bitPattern: CRC32C.checksum(w.bytes, crcStart ..< w.bytes.count)), at: crcStart - 4)
        bytes.append(contentsOf: w.bytes)
    }

    /// Finishes and returns the bytes.
    public mutating func finish() -> [UInt8] {
        flush()
        return bytes
    }
}

/// Encodes one batch as a producer would (tests, the fuzz corpus and the benchmark client use it).
public func encodeProducerBatch(_ records: [(key: [UInt8]?, value: [UInt8]?)], producerId: Int64 = -1, epoch: Int16 = -1,
                                baseSequence: Int32 = -1, transactional: Bool = false, timestampMs: Int64 = 0,
                                gzip: Bool = false) throws -> [UInt8] {
    var body = WireWriter()
    for (i, r) in records.enumerated() {
        var rec = WireWriter()
        rec.int8(0); rec.varlong(0); rec.varint(Int32(i))
        for f in [r.key, r.value] {
            if let f { rec.varint(Int32(f.count)); rec.bytes.append(contentsOf: f) } else { rec.varint(-1) }
        }
        rec.varint(0)
        body.varint(Int32(rec.bytes.count)); body.bytes.append(contentsOf: rec.bytes)
    }
    let payload = gzip ? try Gzip.compress(body.bytes) : body.bytes
    var w = WireWriter()
    w.int64(0); w.int32(0); w.int32(-1); w.int8(2); w.uint32(0)
    let crcStart = w.bytes.count
    w.int16((transactional ? 0x10 : 0) | (gzip ? 1 : 0))
    w.int32(Int32(records.count - 1)); w.int64(timestampMs); w.int64(timestampMs)
    w.int64(producerId); w.int16(epoch); w.int32(baseSequence); w.int32(Int32(records.count))
    w.bytes.append(contentsOf: payload)
    w.patchInt32(Int32(w.bytes.count - 12), at: 8)
    w.patchInt32(Int32(bitPattern: CRC32C.checksum(w.bytes, crcStart ..< w.bytes.count)), at: crcStart - 4)
    return w.bytes
}
