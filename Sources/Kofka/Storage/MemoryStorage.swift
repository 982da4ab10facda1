/// An in-process, volatile `StorageBackend`: a sorted key/value map and one array per
/// partition log, guarded by one lock. The fastest backend; its contents vanish with it.
///
/// `write` holds the lock for its whole body and keeps an undo log, so a body that throws
/// leaves nothing behind. `read` takes the same lock (reads are short).
public final class MemoryStorage: StorageBackend, @unchecked Sendable {
    // Everything below is guarded by `monitor`.
    private let monitor = Monitor()
    /// Values by key.
    private var values: [String: [UInt8]] = [:]
    /// Every key of `values`, in UTF-8 byte order (for range scans).
    private var sortedKeys: [String] = []
    /// Partition logs by partition number; record `i` of a log has offset `i`.
    private var logs: [Int64: BatchLog] = [:]
    /// Bumped by every committed write that changed something.
    private var token: UInt64 = 0
    /// Bumped by every commit and every `wakeAll`, so waiters can tell a wakeup from a timeout.
    private var wakeups: UInt64 = 0
    private var closed = false
    /// How to undo the current write, newest last.
    private var undo: [Undo] = []
    private var writing = false

    private enum Undo {
        /// Appends to `pnum` since its log was `mark`.
        case appended(pnum: Int64, mark: BatchLog.Mark)
        /// `pnum`'s whole log before a deletion (nil: it had none).
        case log(pnum: Int64, old: BatchLog?)
        case restore(key: String, old: [UInt8]?)
    }

    /// Creates an empty store.
    public init() {}

    /// Runs `body` under the lock; if it throws, the undo log restores every change.
    public func write<T>(_ body: (any StorageWriter) throws -> T) throws -> T {
        try monitor.withLock {
            guard !closed else { throw KofkaError(.closed, "the memory storage is closed") }
            writing = true
            undo.removeAll(keepingCapacity: true)
            defer { writing = false }
            let writer = Writer(self)
            defer { writer.storage = nil }
            let result: T
            do {
                result = try body(writer)
            } catch {
                rollback()
                throw error
            }
            if !undo.isEmpty {
                undo.removeAll(keepingCapacity: true)
                token &+= 1
                wakeups &+= 1
                monitor.broadcast()
            }
            return result
        }
    }

    /// Runs `body` under the lock (a trivially consistent snapshot).
    public func read<T>(_ body: (any StorageReader) throws -> T) throws -> T {
        try monitor.withLock {
            guard !closed else { throw KofkaError(.closed, "the memory storage is closed") }
            let reader = Writer(self)
            defer { reader.storage = nil }
            return try body(reader)
        }
    }

    /// A counter bumped by every committed write that changed something.
    public func changeToken() -> UInt64 {
        monitor.withLock { token }
    }

    /// Blocks until a commit, `wakeAll`, `close`, or `timeoutNs` nanoseconds.
    public func waitForChange(since token: UInt64, timeoutNs: UInt64) {
        let deadline = monoNs() &+ timeoutNs
        monitor.withLock {
            guard self.token == token, !closed else { return }
            let seen = wakeups
            while self.token == token, wakeups == seen {
                let now = monoNs()
                if now >= deadline { return }
                monitor.wait(timeoutNs: deadline - now)
            }
        }
    }

    /// Wakes every `waitForChange` waiter.
    public func wakeAll() {
        monitor.withLock {
            wakeups &+= 1
            monitor.broadcast()
        }
    }

    /// Drops all data; later `read`/`write` calls throw `.closed`.
    public func close() {
        monitor.withLock {
            closed = true
            values = [:]
            sortedKeys = []
            logs = [:]
            wakeups &+= 1
            monitor.broadcast()
        }
    }

    // MARK: - Operations (lock held)

    private func rollback() {
        while let step = undo.popLast() {
            switch step {
            case let .appended(pnum, mark):
                logs[pnum]?.undoAppends(to: mark)
            case let .log(pnum, old):
                logs[pnum] = old
            case let .restore(key, old):
                if let old { setValue(key, old) } else { removeValue(key) }
            }
        }
    }

    /// The index in `sortedKeys` of the first key `>= key`.
    private func lowerBound(_ key: String) -> Int {
        var lo = 0, hi = sortedKeys.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if utf8Less(sortedKeys[mid], key) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    private func setValue(_ key: String, _ value: [UInt8]) {
        if values.updateValue(value, forKey: key) == nil {
            sortedKeys.insert(key, at: lowerBound(key))
        }
    }

    private func removeValue(_ key: String) {
        if values.removeValue(forKey: key) != nil {
            let i = lowerBound(key)
            if i < sortedKeys.count, sortedKeys[i] == key { sortedKeys.remove(at: i) }
        }
    }

    fileprivate func get(_ key: String) -> [UInt8]? { values[key] }

    fileprivate func scan(from lower: String, to upper: String) -> [(key: String, value: [UInt8])] {
        var out: [(key: String, value: [UInt8])] = []
        var i = lowerBound(lower)
        while i < sortedKeys.count, utf8Less(sortedKeys[i], upper) {
            let key = sortedKeys[i]
            if let value = values[key] { out.append((key, value)) }
            i += 1
        }
        return out
    }

    fileprivate func highWatermark(_ pnum: Int64) throws -> Int64 {
        try checkPartitionNumber(pnum)
        return logs[pnum]?.next ?? 0
    }

    fileprivate func logStartOffset(_ pnum: Int64) throws -> Int64 {
        try checkPartitionNumber(pnum)
        return logs[pnum]?.start ?? 0
    }

    fileprivate func logBytes(_ pnum: Int64) throws -> Int64 {
        try checkPartitionNumber(pnum)
        return logs[pnum]?.bytes ?? 0
    }

    fileprivate func readRecords(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int) throws -> [StoredRecord] {
        var out: [StoredRecord] = []
        _ = try forEachRecord(pnum, from: from, below: below, maxCount: maxCount) { out.append($0.stored) }
        return out
    }

    fileprivate func forEachRecord(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int, _ body: (RecordView) throws -> Void) throws -> Int {
        try checkPartitionNumber(pnum)
        guard let log = logs[pnum], maxCount > 0 else { return 0 }
        return try log.visit(from: max(from, 0), below: below, maxCount: maxCount, body)
    }

    fileprivate func put(_ key: String, _ value: [UInt8]) {
        undo.append(.restore(key: key, old: values[key]))
        setValue(key, value)
    }

    fileprivate func delete(_ key: String) {
        guard let old = values[key] else { return }
        undo.append(.restore(key: key, old: old))
        removeValue(key)
    }

    fileprivate func append(_ pnum: Int64, _ batch: RecordBatch, txn: Int64) throws -> Int64 {
        try checkPartitionNumber(pnum)
        let base = logs[pnum]?.next ?? 0
        guard batch.count > 0 else { return base }
        try checkOffsetSpace(pnum, base: base, count: batch.count)
        if logs[pnum] == nil {
            undo.append(.log(pnum: pnum, old: nil))
            logs[pnum] = BatchLog()
        } else if let mark = logs[pnum]?.mark {
            undo.append(.appended(pnum: pnum, mark: mark))
        }
        logs[pnum]?.append(batch, txn: txn)
        return base
    }

    fileprivate func truncateLog(_ pnum: Int64, before offset: Int64) throws -> Int64 {
        try checkPartitionNumber(pnum)
        guard let log = logs[pnum] else { return 0 }
        guard offset > log.start, log.start < log.next else { return log.start }
        undo.append(.log(pnum: pnum, old: log))
        return logs[pnum]?.truncate(before: offset) ?? 0
    }

    fileprivate func removeRecords(_ pnum: Int64, at offsets: [Int64]) throws {
        try checkPartitionNumber(pnum)
        guard let log = logs[pnum], !offsets.isEmpty else { return }
        undo.append(.log(pnum: pnum, old: log))
        logs[pnum]?.remove(Set(offsets))
    }

    /// The reader/writer handed to `read` and `write` bodies; detached when the call returns.
    private final class Writer: StorageWriter {
        var storage: MemoryStorage?
        init(_ storage: MemoryStorage) { self.storage = storage }

        private func live() throws -> MemoryStorage {
            guard let storage else {
                throw KofkaError(.invalidState, "a storage reader/writer was used after its transaction ended")
            }
            return storage
        }

        func get(_ key: String) throws -> [UInt8]? { try live().get(key) }
        func scan(from lower: String, to upper: String) throws -> [(key: String, value: [UInt8])] {
            try live().scan(from: lower, to: upper)
        }
        func highWatermark(_ pnum: Int64) throws -> Int64 { try live().highWatermark(pnum) }
        func logStartOffset(_ pnum: Int64) throws -> Int64 { try live().logStartOffset(pnum) }
        func logBytes(_ pnum: Int64) throws -> Int64 { try live().logBytes(pnum) }
        func forEachRecord(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int, _ body: (RecordView) throws -> Void) throws -> Int {
            try live().forEachRecord(pnum, from: from, below: below, maxCount: maxCount, body)
        }

        func readRecords(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int) throws -> [StoredRecord] {
            try live().readRecords(pnum, from: from, below: below, maxCount: maxCount)
        }
        func put(_ key: String, _ value: [UInt8]) throws { try writable("put").put(key, value) }
        func delete(_ key: String) throws { try writable("delete").delete(key) }
        func append(_ pnum: Int64, _ batch: RecordBatch, txn: Int64) throws -> Int64 {
            try writable("append").append(pnum, batch, txn: txn)
        }
        func truncateLog(_ pnum: Int64, before offset: Int64) throws -> Int64 {
            try writable("truncateLog").truncateLog(pnum, before: offset)
        }
        func removeRecords(_ pnum: Int64, at offsets: [Int64]) throws {
            try writable("removeRecords").removeRecords(pnum, at: offsets)
        }
        private func writable(_ op: String) throws -> MemoryStorage {
            let s = try live()
            guard s.writing else { throw KofkaError(.invalidState, "\(op) inside a read transaction") }
            return s
        }
    }
}

/// A partition log as the batches that were appended to it: appending keeps the batch itself
/// (no copy, no allocation per record); reading visits records in place. Retention drops whole
/// batches below the log start (and copies the survivors of the one batch it cuts); compaction
/// copies each batch it touches into one holding only its survivors, with their offsets listed.
struct BatchLog {
    private struct Stored {
        var batch: RecordBatch
        /// The transaction that wrote it (0 = none).
        var txn: Int64
        /// Offset of record 0 when the offsets are dense.
        var base: Int64
        /// Each record's offset, when they are not dense (after compaction or a cut).
        var listed: [Int64]?

        @inline(__always) func offset(_ j: Int) -> Int64 { listed?[j] ?? base + Int64(j) }
        var first: Int64 { offset(0) }
        var last: Int64 { offset(batch.count - 1) }
        /// Bytes held (key + value + headers of every record: exactly the batch's buffer).
        var bytes: Int64 { Int64(batch.buffer.count) }

        /// A copy keeping the records whose offset satisfies `keep`; nil when none survive.
        func keeping(_ keep: (Int64) -> Bool) -> Stored? {
            let idx = (0..<batch.count).filter { keep(offset($0)) }
            if idx.count == batch.count { return self }
            guard !idx.isEmpty else { return nil }
            return Stored(batch: batch.select(idx), txn: txn, base: 0, listed: idx.map { offset($0) })
        }
    }
    private var batches: [Stored] = []
    /// The log start offset.
    private(set) var start: Int64 = 0
    /// The high watermark.
    private(set) var next: Int64 = 0
    /// Bytes held.
    private(set) var bytes: Int64 = 0

    /// Where the log stood, to undo appends made after it.
    struct Mark { var batches: Int; var next: Int64; var bytes: Int64 }
    var mark: Mark { Mark(batches: batches.count, next: next, bytes: bytes) }

    mutating func append(_ batch: RecordBatch, txn: Int64) {
        batches.append(Stored(batch: batch, txn: txn, base: next, listed: nil))
        next += Int64(batch.count)
        bytes += Int64(batch.buffer.count)
    }

    mutating func undoAppends(to m: Mark) {
        if batches.count > m.batches { batches.removeLast(batches.count - m.batches) }
        next = m.next
        bytes = m.bytes
    }

    /// Drops every record below `offset` (clamped to the high watermark); returns the log start.
    mutating func truncate(before offset: Int64) -> Int64 {
        let target = min(offset, next)
        guard target > start else { return start }
        var drop = 0
        while drop < batches.count && batches[drop].last < target {
            bytes -= batches[drop].bytes
            drop += 1
        }
        batches.removeFirst(drop)
        if let b = batches.first, b.first < target {
            let kept = b.keeping { $0 >= target }
            bytes -= b.bytes - (kept?.bytes ?? 0)
            if let kept { batches[0] = kept } else { batches.removeFirst() }
        }
        start = target
        return start
    }

    /// Removes the records at `offsets`.
    mutating func remove(_ offsets: Set<Int64>) {
        guard let lo = offsets.min(), let hi = offsets.max() else { return }
        var out: [Stored] = []
        out.reserveCapacity(batches.count)
        for b in batches {
            guard b.last >= lo && b.first <= hi else { out.append(b); continue }
            let kept = b.keeping { !offsets.contains($0) }
            bytes -= b.bytes - (kept?.bytes ?? 0)
            if let kept { out.append(kept) }
        }
        batches = out
    }

    /// The index of the first batch whose last offset is >= `offset`.
    private func firstBatch(atOrAfter offset: Int64) -> Int {
        var a = 0, b = batches.count
        while a < b {
            let mid = (a + b) / 2
            if batches[mid].last < offset { a = mid + 1 } else { b = mid }
        }
        return a
    }

    /// Visits, in place, up to `maxCount` records with `from <= offset < below`; returns how many.
    func visit(from: Int64, below: Int64, maxCount: Int, _ body: (RecordView) throws -> Void) rethrows -> Int {
        var visited = 0
        var i = firstBatch(atOrAfter: from)
        while i < batches.count && visited < maxCount {
            let s = batches[i]
            if s.first >= below { break }
            try s.batch.buffer.withUnsafeBytes { buf in
                // the first record of this batch at or after `from`
                var j = 0
                if s.listed == nil {
                    j = Int(max(0, from - s.base))
                } else {
                    while j < s.batch.count && s.offset(j) < from { j += 1 }
                }
                while j < s.batch.count && visited < maxCount {
                    let off = s.offset(j)
                    if off >= below { break }
                    let e = s.batch.entries[j]
                    func view(_ start: Int, _ len: Int32) -> UnsafeRawBufferPointer? {
                        len < 0 ? nil : UnsafeRawBufferPointer(rebasing: buf[start ..< start + Int(len)])
                    }
                    try body(RecordView(offset: off, txn: s.txn, timestampMs: e.timestampMs,
                                        key: view(e.start, e.keyLen), value: view(e.valueStart, e.valueLen),
                                        headers: view(e.headersStart, e.headersLen)))
                    visited += 1
                    j += 1
                }
            }
            i += 1
        }
        return visited
    }
}
