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
        case truncate(pnum: Int64, count: Int)
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
            case let .truncate(pnum, count):
                if count == 0 {
                    logs[pnum] = nil
                } else {
                    logs[pnum]?.truncate(to: count)
                }
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
        return Int64(logs[pnum]?.count ?? 0)
    }

    fileprivate func readRecords(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int) throws -> [StoredRecord] {
        try checkPartitionNumber(pnum)
        guard let log = logs[pnum], maxCount > 0 else { return [] }
        let lo = max(from, 0)
        let hi = min(below, Int64(log.count), lo + Int64(maxCount))
        guard lo < hi else { return [] }
        return log.slice(Int(lo), Int(hi))
    }

    fileprivate func forEachRecord(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int, _ body: (RecordView) throws -> Void) throws -> Int {
        try checkPartitionNumber(pnum)
        guard let log = logs[pnum], maxCount > 0 else { return 0 }
        let lo = max(from, 0)
        let hi = min(below, Int64(log.count), lo + Int64(maxCount))
        guard lo < hi else { return 0 }
        try log.visit(Int(lo), Int(hi), body)
        return Int(hi - lo)
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
        let count = logs[pnum]?.count ?? 0
        let base = Int64(count)
        guard batch.count > 0 else { return base }
        try checkOffsetSpace(pnum, base: base, count: batch.count)
        undo.append(.truncate(pnum: pnum, count: count))
        logs[pnum, default: BatchLog()].append(batch, txn: txn)
        return base
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
        func forEachRecord(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int, _ body: (RecordView) throws -> Void) throws -> Int {
            try live().forEachRecord(pnum, from: from, below: below, maxCount: maxCount, body)
        }

        func readRecords(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int) throws -> [StoredRecord] {
            try live().readRecords(pnum, from: from, below: below, maxCount: maxCount)
        }
        func put(_ key: String, _ value: [UInt8]) throws {
            let s = try live()
            guard s.writing else { throw KofkaError(.invalidState, "put inside a read transaction") }
            s.put(key, value)
        }
        func delete(_ key: String) throws {
            let s = try live()
            guard s.writing else { throw KofkaError(.invalidState, "delete inside a read transaction") }
            s.delete(key)
        }
        func append(_ pnum: Int64, _ batch: RecordBatch, txn: Int64) throws -> Int64 {
            let s = try live()
            guard s.writing else { throw KofkaError(.invalidState, "append inside a read transaction") }
            return try s.append(pnum, batch, txn: txn)
        }
    }
}

/// A partition log as the batches that were appended to it: appending keeps the batch itself
/// (no copy, no allocation per record); reading copies records out.
struct BatchLog {
    private struct Stored {
        /// Offset of the batch's first record.
        var base: Int64
        var batch: RecordBatch
        var txn: Int64
    }
    private var batches: [Stored] = []
    /// Records held.
    private(set) var count = 0

    mutating func append(_ batch: RecordBatch, txn: Int64) {
        batches.append(Stored(base: Int64(count), batch: batch, txn: txn))
        count += batch.count
    }

    /// Keeps the first `n` records (`n` is always a batch boundary: rollback undoes whole appends).
    mutating func truncate(to n: Int) {
        while let last = batches.last, last.base >= Int64(n) { batches.removeLast() }
        count = batches.last.map { Int($0.base) + $0.batch.count } ?? 0
    }

    /// The index of the last batch whose base is <= `offset`.
    private func batchIndex(_ offset: Int) -> Int {
        var a = 0, b = batches.count - 1
        while a < b {
            let mid = (a + b + 1) / 2
            if batches[mid].base <= Int64(offset) { a = mid } else { b = mid - 1 }
        }
        return a
    }

    /// Visits records `lo ..< hi` (within `0 ..< count`) in place.
    func visit(_ lo: Int, _ hi: Int, _ body: (RecordView) throws -> Void) rethrows {
        var i = batchIndex(lo), at = lo
        while at < hi && i < batches.count {
            let s = batches[i]
            let first = at - Int(s.base)
            let n = min(s.batch.count - first, hi - at)
            try s.batch.buffer.withUnsafeBytes { buf in
                for j in first ..< first + n {
                    let e = s.batch.entries[j]
                    func view(_ start: Int, _ len: Int32) -> UnsafeRawBufferPointer? {
                        len < 0 ? nil : UnsafeRawBufferPointer(rebasing: buf[start ..< start + Int(len)])
                    }
                    try body(RecordView(offset: s.base + Int64(j), txn: s.txn, timestampMs: e.timestampMs,
                                        key: view(e.start, e.keyLen), value: view(e.valueStart, e.valueLen),
                                        headers: view(e.headersStart, e.headersLen)))
                }
            }
            at += n
            i += 1
        }
    }

    /// Records `lo ..< hi` (within `0 ..< count`), copied.
    func slice(_ lo: Int, _ hi: Int) -> [StoredRecord] {
        var out: [StoredRecord] = []
        out.reserveCapacity(hi - lo)
        visit(lo, hi) { out.append($0.stored) }
        return out
    }
}
