/// The packed form of a run of one partition's records, as the SQLite backend keeps it in one row
/// of its `chunks` table (`SQLiteStorage`): one row per appended batch, split so that no row is
/// larger than `maxBytes`. Retention then deletes whole rows, an append inserts one row per
/// 16 KiB instead of one per record, and a read walks one row per run of records.
///
/// Layout of the blob (integers little-endian):
///
/// ```
/// header   8 bytes          format (1), flags (bit 0: offsets listed), 2 zero bytes, record count (u32)
/// entries  20 or 28 bytes   per record: timestamp (i64, ms), key, value and headers lengths
///                           (i32 each, -1 = none), then, only when offsets are listed, its offset (i64)
/// bytes                     every record's key, value and encoded headers, back to back, in order
/// ```
///
/// Offsets are listed only when the row's records are not dense (compaction removed some); when
/// they are, record `i` of a row whose first offset is `first` has offset `first + i`. Which of
/// the two a row is follows from its columns too: dense exactly when `last - first + 1 == n`.
enum RecordChunk {
    static let format: UInt8 = 1
    static let headerSize = 8
    /// Bytes of a record's entry when the row is dense, and when its offsets are listed.
    static let denseEntrySize = 20
    static let listedEntrySize = 28
    static let listedFlag: UInt8 = 1

    /// At most this many blob bytes per row, unless one record alone is larger (it then has a row
    /// of its own). 16 KiB is Kafka's default `batch.size`, so a row holds about what a Kafka
    /// producer sends as one record batch. It also bounds the records per row (an entry is 20
    /// bytes: at most 818) and what a cut or a compaction rewrites. Larger rows save little
    /// more: appends and retention are bound by the commit, not by the rows, from a few KiB on;
    /// but a reader loads a whole row to read even one record of it (a poll of one record on a
    /// log of 100-byte records read 64 KiB rows at ~0.6x and 256 KiB rows at ~0.4x of the speed
    /// of one row per record, 16 KiB rows at ~0.75x). See BENCHMARKS.md.
    static let maxBytes = 16 * 1024

    /// Blob bytes of a dense row of `count` records holding `bytes` bytes of keys, values and headers.
    @inline(__always)
    static func denseSize(count: Int, bytes: Int) -> Int { headerSize + count * denseEntrySize + bytes }

    // MARK: - Splitting and packing a batch

    /// Where to cut `batch` into rows: consecutive ranges of its records, each of at most
    /// `maxBytes` blob bytes (a record larger than that alone).
    static func split(_ batch: RecordBatch, maxBytes: Int = maxBytes) -> [Range<Int>] {
        let entries = batch.entries
        guard !entries.isEmpty else { return [] }
        var out: [Range<Int>] = []
        var start = 0
        var size = headerSize
        for i in entries.indices {
            let add = denseEntrySize + entries[i].size
            if i > start && size + add > maxBytes {
                out.append(start..<i)
                start = i
                size = headerSize
            }
            size += add
        }
        out.append(start..<entries.count)
        return out
    }

    /// The blob of records `range` of `batch` (dense: their offsets follow from the row's first).
    static func pack(_ batch: RecordBatch, _ range: Range<Int>) -> [UInt8] {
        let entries = batch.entries[range]
        let bytes = entries.reduce(0) { $0 + $1.size }
        let total = denseSize(count: range.count, bytes: bytes)
        return [UInt8](unsafeUninitializedCapacity: total) { out, initialized in
            let p = UnsafeMutableRawPointer(out.baseAddress!)
            writeHeader(p, count: range.count, listed: false)
            var at = headerSize
            for e in entries {
                writeEntry(p + at, e.timestampMs, e.keyLen, e.valueLen, e.headersLen)
                at += denseEntrySize
            }
            batch.buffer.withUnsafeBytes { src in
                guard let s = src.baseAddress, let firstEntry = entries.first, bytes > 0 else { return }
                // A batch's records are back to back in its buffer (RecordBatch appends them so);
                // copied per record should that ever not hold.
                if let lastEntry = entries.last, lastEntry.start + lastEntry.size - firstEntry.start == bytes {
                    (p + at).copyMemory(from: s + firstEntry.start, byteCount: bytes)
                } else {
                    for e in entries where e.size > 0 {
                        (p + at).copyMemory(from: s + e.start, byteCount: e.size)
                        at += e.size
                    }
                }
            }
            initialized = total
        }
    }

    @inline(__always)
    private static func writeHeader(_ p: UnsafeMutableRawPointer, count: Int, listed: Bool) {
        p.storeBytes(of: format, toByteOffset: 0, as: UInt8.self)
        p.storeBytes(of: listed ? listedFlag : 0, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: UInt32(truncatingIfNeeded: count).littleEndian, toByteOffset: 4, as: UInt32.self)
    }

    @inline(__always)
    private static func writeEntry(_ p: UnsafeMutableRawPointer, _ ts: Int64, _ k: Int32, _ v: Int32, _ h: Int32) {
        p.storeBytes(of: ts.littleEndian, toByteOffset: 0, as: Int64.self)
        p.storeBytes(of: k.littleEndian, toByteOffset: 8, as: Int32.self)
        p.storeBytes(of: v.littleEndian, toByteOffset: 12, as: Int32.self)
        p.storeBytes(of: h.littleEndian, toByteOffset: 16, as: Int32.self)
    }

    // MARK: - Building a row from records (rewrites, migration)

    /// Collects records (in ascending offset order) into one row: what a cut or a compaction
    /// keeps of a row, or what migration gathers from the one-row-per-record layout.
    struct Builder {
        private var stamps: [Int64] = []
        private var lengths: [Int32] = []     // key, value, headers length per record
        private var offsets: [Int64] = []
        private var data: [UInt8] = []

        /// Records added.
        var count: Int { stamps.count }
        /// Key, value and header bytes added (what the row counts against `logBytes`).
        var bytes: Int { data.count }
        /// Whether the offsets added so far have a gap (the blob then lists them).
        private(set) var isListed = false

        /// Blob bytes once a record of `size` bytes at `offset` is added too.
        func size(adding offset: Int64, bytes size: Int) -> Int {
            let listed = isListed || (last.map { offset != $0 + 1 } ?? false)
            return headerSize + (count + 1) * (listed ? listedEntrySize : denseEntrySize) + bytes + size
        }
        var first: Int64? { offsets.first }
        var last: Int64? { offsets.last }

        init() {}

        /// Adds a copy of `r`; its offset must be above every offset added before.
        mutating func add(_ r: RecordView) {
            if let last, r.offset != last + 1 { isListed = true }
            stamps.append(r.timestampMs)
            offsets.append(r.offset)
            put(r.key)
            put(r.value)
            put(r.headers)
        }

        private mutating func put(_ part: UnsafeRawBufferPointer?) {
            guard let part else { lengths.append(-1); return }
            lengths.append(Int32(truncatingIfNeeded: part.count))
            data.append(contentsOf: part)
        }

        /// The blob: offsets listed unless they are dense.
        func blob() -> [UInt8] {
            let n = count
            let listed = isListed
            let entry = listed ? listedEntrySize : denseEntrySize
            let total = headerSize + n * entry + data.count
            return [UInt8](unsafeUninitializedCapacity: total) { out, initialized in
                let p = UnsafeMutableRawPointer(out.baseAddress!)
                writeHeader(p, count: n, listed: listed)
                var at = headerSize
                for i in 0..<n {
                    writeEntry(p + at, stamps[i], lengths[3 * i], lengths[3 * i + 1], lengths[3 * i + 2])
                    if listed { (p + at).storeBytes(of: offsets[i].littleEndian, toByteOffset: denseEntrySize, as: Int64.self) }
                    at += entry
                }
                data.withUnsafeBytes { src in
                    if let s = src.baseAddress, !src.isEmpty { (p + at).copyMemory(from: s, byteCount: src.count) }
                }
                initialized = total
            }
        }
    }

    // MARK: - Reading

    /// Visits, in place, the records of the row `blob` (first offset `first`, written by
    /// transaction `txn`) with `from <= offset < below`, at most `maxCount`; returns how many.
    /// A blob that does not parse is a `.storage` error naming `where`.
    static func visit(_ blob: UnsafeRawBufferPointer, first: Int64, txn: Int64, from: Int64, below: Int64, maxCount: Int,
                      where place: @autoclosure () -> String, _ body: (RecordView) throws -> Void) throws -> Int {
        func corrupt(_ what: String) -> KofkaError {
            KofkaError(.storage, "corrupt record chunk (\(what)) in \(place())")
        }
        guard let p = blob.baseAddress, blob.count >= headerSize else { throw corrupt("\(blob.count) bytes") }
        guard p.load(as: UInt8.self) == format else { throw corrupt("format \(p.load(as: UInt8.self))") }
        let listed = p.load(fromByteOffset: 1, as: UInt8.self) & listedFlag != 0
        let count = Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        let entry = listed ? listedEntrySize : denseEntrySize
        let dataStart = headerSize + count * entry
        guard dataStart <= blob.count else { throw corrupt("\(count) records in \(blob.count) bytes") }

        @inline(__always) func offset(_ i: Int) -> Int64 {
            listed ? Int64(littleEndian: p.loadUnaligned(fromByteOffset: headerSize + i * entry + denseEntrySize, as: Int64.self))
                   : first + Int64(i)
        }
        @inline(__always) func length(_ i: Int, _ field: Int) -> Int32 {
            Int32(littleEndian: p.loadUnaligned(fromByteOffset: headerSize + i * entry + 8 + 4 * field, as: Int32.self))
        }
        @inline(__always) func size(_ i: Int) -> Int {
            Int(max(0, length(i, 0))) + Int(max(0, length(i, 1))) + Int(max(0, length(i, 2)))
        }

        // The first record at or after `from`.
        var i: Int
        if listed {
            var a = 0, b = count
            while a < b {
                let mid = (a + b) / 2
                if offset(mid) < from { a = mid + 1 } else { b = mid }
            }
            i = a
        } else {
            i = Int(max(0, min(Int64(count), from - first)))
        }
        var at = dataStart
        for j in 0..<i { at += size(j) }

        var visited = 0
        while i < count && visited < maxCount {
            let off = offset(i)
            if off >= below { break }
            let ts = Int64(littleEndian: p.loadUnaligned(fromByteOffset: headerSize + i * entry, as: Int64.self))
            var parts: (UnsafeRawBufferPointer?, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?) = (nil, nil, nil)
            for field in 0..<3 {
                let len = length(i, field)
                guard len >= 0 else {
                    guard len == -1 else { throw corrupt("length \(len)") }
                    continue
                }
                guard at + Int(len) <= blob.count else { throw corrupt("record \(i) ends past \(blob.count) bytes") }
                let part = UnsafeRawBufferPointer(start: p + at, count: Int(len))
                switch field {
                case 0: parts.0 = part
                case 1: parts.1 = part
                default: parts.2 = part
                }
                at += Int(len)
            }
            try body(RecordView(offset: off, txn: txn, timestampMs: ts, key: parts.0, value: parts.1, headers: parts.2))
            visited += 1
            i += 1
        }
        return visited
    }
}
