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
    /// Logs whose prefix the current write deleted (their dropped slots are reclaimed after it commits).
    private var touched: Set<Int64> = []
    private var writing = false

    private enum Undo {
        /// Appends to `pnum` since its log was `mark`.
        case appended(pnum: Int64, mark: BatchLog.Mark)
        /// A deletion in `pnum`'s log, and what it replaced.
        case deleted(pnum: Int64, BatchLog.Restore)
        /// `pnum` had no log before this write.
        case created(pnum: Int64)
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
                touched.removeAll()
                throw error
            }
            for pnum in touched { logs[pnum]?.reclaimDroppedSlots() }
            touched.removeAll()
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
            case let .deleted(pnum, restore):
                logs[pnum]?.undo(restore)
            case let .created(pnum):
                logs[pnum] = nil
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

    fileprivate func forEachRun(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int, _ body: (StoredRun) throws -> Void) throws -> Int {
        try checkPartitionNumber(pnum)
        guard let log = logs[pnum], maxCount > 0 else { return 0 }
        return try log.visitRuns(from: max(from, 0), below: below, maxCount: maxCount, body)
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
            undo.append(.created(pnum: pnum))
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
        if let restore = logs[pnum]?.truncate(before: offset) { undo.append(.deleted(pnum: pnum, restore)) }
        touched.insert(pnum)
        return logs[pnum]?.start ?? 0
    }

    fileprivate func removeRecords(_ pnum: Int64, at offsets: [Int64]) throws {
        try checkPartitionNumber(pnum)
        guard logs[pnum] != nil, !offsets.isEmpty else { return }
        if let restore = logs[pnum]?.remove(offsets.sorted()) { undo.append(.deleted(pnum: pnum, restore)) }
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
        func forEachRun(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int, _ body: (StoredRun) throws -> Void) throws -> Int? {
            try live().forEachRun(pnum, from: from, below: below, maxCount: maxCount, body)
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
/// (no copy, no allocation per record); reading visits records in place.
///
/// Deleting never shifts the array inside a write: retention empties the slots below the new
/// log start and moves `head` past them (copying only the survivors of the one batch it cuts),
/// compaction replaces each slot it touches with a copy holding only its survivors (offsets
/// listed). Each keeps what it replaced, so a write that fails is undone in time proportional
/// to what it changed; emptied slots at the front are dropped once the write has committed.
/// A slot keeps the offsets it was written with (`first ... last`) even when its records go, so
/// slots stay sorted for the binary search.
struct BatchLog {
    fileprivate struct Stored {
        var batch: RecordBatch
        /// The transaction that wrote it (0 = none).
        var txn: Int64
        /// Offset of record 0 when the offsets are dense.
        var base: Int64
        /// Each record's offset, when they are not dense (after compaction or a cut).
        var listed: [Int64]?
        /// The offsets the slot was written with.
        var first: Int64
        var last: Int64

        @inline(__always) func offset(_ j: Int) -> Int64 { listed?[j] ?? base + Int64(j) }
        /// Bytes held (key + value + headers of every record: exactly the batch's buffer).
        var bytes: Int64 { Int64(batch.buffer.count) }

        /// A copy holding the records whose offset satisfies `keep` (possibly none).
        func keeping(_ keep: (Int64) -> Bool) -> Stored {
            let idx = (0..<batch.count).filter { keep(offset($0)) }
            if idx.count == batch.count { return self }
            return Stored(batch: idx.isEmpty ? RecordBatch() : batch.select(idx), txn: txn, base: 0,
                          listed: idx.map { offset($0) }, first: first, last: last)
        }
    }
    private var slots: [Stored] = []
    /// Slots before `head` are emptied (below the log start).
    private var head = 0
    /// The log start offset.
    private(set) var start: Int64 = 0
    /// The high watermark.
    private(set) var next: Int64 = 0
    /// Bytes held.
    private(set) var bytes: Int64 = 0

    /// Where the log stood, to undo appends made after it.
    struct Mark { fileprivate var slots: Int; var next: Int64; var bytes: Int64 }
    var mark: Mark { Mark(slots: slots.count, next: next, bytes: bytes) }

    /// What a deletion replaced: enough to put it back.
    struct Restore {
        fileprivate var head: Int
        fileprivate var start: Int64
        fileprivate var bytes: Int64
        fileprivate var replaced: [(Int, Stored)]
    }

    mutating func append(_ batch: RecordBatch, txn: Int64) {
        var batch = batch
        batch.shrinkToFit()   // the log keeps it: not the room a producer's buffer grew
        let n = Int64(batch.count)
        slots.append(Stored(batch: batch, txn: txn, base: next, listed: nil, first: next, last: next + n - 1))
        next += n
        bytes += Int64(batch.buffer.count)
    }

    mutating func undoAppends(to m: Mark) {
        if slots.count > m.slots { slots.removeLast(slots.count - m.slots) }
        next = m.next
        bytes = m.bytes
    }

    mutating func undo(_ r: Restore) {
        for (i, s) in r.replaced.reversed() { slots[i] = s }
        head = r.head
        start = r.start
        bytes = r.bytes
    }

    private static func emptied(_ s: Stored) -> Stored {
        Stored(batch: RecordBatch(), txn: s.txn, base: 0, listed: [], first: s.first, last: s.last)
    }

    /// Drops every record below `offset` (clamped to the high watermark); nil when nothing changed.
    mutating func truncate(before offset: Int64) -> Restore? {
        let target = min(offset, next)
        guard target > start else { return nil }
        var r = Restore(head: head, start: start, bytes: bytes, replaced: [])
        while head < slots.count && slots[head].last < target {
            bytes -= slots[head].bytes
            r.replaced.append((head, slots[head]))
            slots[head] = Self.emptied(slots[head])
            head += 1
        }
        if head < slots.count, slots[head].first < target, slots[head].batch.count > 0 {
            let old = slots[head]
            let kept = old.keeping { $0 >= target }
            bytes -= old.bytes - kept.bytes
            r.replaced.append((head, old))
            slots[head] = kept
        }
        start = target
        return r
    }

    /// Removes the records at `offsets` (ascending); nil when none was held.
    mutating func remove(_ offsets: [Int64]) -> Restore? {
        guard let lo = offsets.first, let hi = offsets.last else { return nil }
        var r = Restore(head: head, start: start, bytes: bytes, replaced: [])
        let doomed = Set(offsets)
        var i = firstSlot(atOrAfter: lo)
        while i < slots.count && slots[i].first <= hi {
            let old = slots[i]
            if old.batch.count > 0 {
                let kept = old.keeping { !doomed.contains($0) }
                if kept.batch.count != old.batch.count {
                    bytes -= old.bytes - kept.bytes
                    r.replaced.append((i, old))
                    slots[i] = kept
                }
            }
            i += 1
        }
        return r.replaced.isEmpty ? nil : r
    }

    /// Frees the emptied slots at the front, once no undo refers to them (after a commit).
    mutating func reclaimDroppedSlots() {
        guard head > 64 && head * 2 > slots.count else { return }
        slots.removeFirst(head)
        head = 0
    }

    /// The index of the first slot (from `head`) whose last offset is >= `offset`.
    private func firstSlot(atOrAfter offset: Int64) -> Int {
        var a = head, b = slots.count
        while a < b {
            let mid = (a + b) / 2
            if slots[mid].last < offset { a = mid + 1 } else { b = mid }
        }
        return a
    }

    /// The first record of slot `s` at or after `from`.
    private static func firstRecord(_ s: Stored, atOrAfter from: Int64) -> Int {
        if s.listed == nil { return Int(max(0, from - s.base)) }
        var j = 0
        while j < s.batch.count && s.offset(j) < from { j += 1 }
        return j
    }

    /// Visits up to `maxCount` records with `from <= offset < below` a slot's run at a time,
    /// sharing each slot's buffer (a slot's batch never changes once stored: retention and
    /// compaction replace slots); returns how many.
    func visitRuns(from: Int64, below: Int64, maxCount: Int, _ body: (StoredRun) throws -> Void) rethrows -> Int {
        var visited = 0
        var i = firstSlot(atOrAfter: from)
        while i < slots.count && visited < maxCount {
            let s = slots[i]
            if s.first >= below { break }
            i += 1
            guard s.batch.count > 0 else { continue }
            let j = Self.firstRecord(s, atOrAfter: from)
            var k = j
            while k < s.batch.count && k - j < maxCount - visited && s.offset(k) < below { k += 1 }
            guard k > j else { continue }
            try body(StoredRun(buffer: s.batch.buffer, entries: s.batch.entries[j..<k], txn: s.txn,
                               base: s.base + Int64(j), listed: s.listed?[j..<k]))
            visited += k - j
        }
        return visited
    }

    /// Visits, in place, up to `maxCount` records with `from <= offset < below`; returns how many.
    func visit(from: Int64, below: Int64, maxCount: Int, _ body: (RecordView) throws -> Void) rethrows -> Int {
        try visitRuns(from: from, below: below, maxCount: maxCount) { run in
            try run.buffer.withUnsafeBytes { buf in
                // Entries lie inside the buffer by construction (`RecordBatch`).
                func view(_ start: Int, _ len: Int32) -> UnsafeRawBufferPointer? {
                    len < 0 ? nil : UnsafeRawBufferPointer(start: buf.baseAddress.map { $0 + start }, count: Int(len))
                }
                for (k, e) in run.entries.enumerated() {
                    try body(RecordView(offset: run.offset(k), txn: run.txn, timestampMs: e.timestampMs,
                                        key: view(e.start, e.keyLen), value: view(e.valueStart, e.valueLen),
                                        headers: view(e.headersStart, e.headersLen)))
                }
            }
        }
    }
}
