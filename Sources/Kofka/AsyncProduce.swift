import CKofkaShims

/// The outcome of one record given to `Producer.produce`, served by `Producer.poll` / `flush`
/// on the caller's thread (never on a library thread).
public struct DeliveryReport: Sendable {
    /// The topic.
    public var topic: String
    /// The record as it was produced.
    public var record: Record
    /// Where it was written, or why it failed.
    public var result: Result<RecordMetadata, KofkaError>
    /// The value passed to `produce(_:_:opaque:)`.
    public var opaque: UInt
}

/// A delivery report as the queue holds it: the record's bytes are views into the queue's
/// buffer, valid only during the handler call (`report` copies them out). The C face hands
/// these views to its callback as they are.
package struct DeliveryView {
    /// The topic.
    package var topic: String
    /// The record as it was produced (its partition is the one asked for, nil for none).
    package var record: OutgoingRecord
    /// Where it was written: the partition, and the offset (-1 when not known: `acks=0`).
    package var partition: Int32
    package var offset: Int64
    /// Why it failed (nil: written).
    package var error: KofkaError?
    /// The value passed to `produce`.
    package var opaque: UInt

    package var result: Result<RecordMetadata, KofkaError> {
        if let error { return .failure(error) }
        return .success(RecordMetadata(topic: topic, partition: partition, offset: offset))
    }

    /// The report with its record copied out.
    package var report: DeliveryReport {
        DeliveryReport(topic: topic, record: record.record, result: result, opaque: opaque)
    }
}

/// Records queued by `produce`, packed: their bytes back to back in one buffer (key, value,
/// encoded headers, as in `RecordBatch`), one fixed-size entry each and nothing allocated per
/// record. The writer writes a run of them as they are, and their delivery reports are served
/// from the same buffer.
struct PackedRecords {
    struct Item {
        /// Where the record's bytes are in `bytes`; its timestamp as produced (0 = now).
        var entry: RecordBatch.Entry
        /// `Record.size` (key + value + header names and values), checked against `max.message.bytes`.
        var size: Int
        /// The topic, an index into the queue's topic table.
        var topic: Int32
        /// The partition chosen (the one asked for when the record was refused).
        var partition: Int32
        var flags: UInt8
        /// The error of a record refused as it was handed over, or of its write: an index into
        /// `errors` (-1: none).
        var error: Int32
        var opaque: UInt
        /// When it was queued (the producer's clock, monotonic ns; coarse: its linger may end
        /// up to a clock tick, a few ms, early).
        var enqueuedNs: UInt64
        /// The transaction it was produced in (0 = none).
        var txn: Int64
        /// The offset it was written at (set by the writer).
        var offset: Int64

        /// The record asked for `partition` (its report shows it even when it failed).
        static let explicit: UInt8 = 1
        /// Nobody asked for its report (`produce(_:leased:...)` with opaque 0): it is counted
        /// as served, but not handed to the handler.
        static let quiet: UInt8 = 2
        /// The record moved to another run (a purge kept it queued): this copy is neither written nor reported.
        static let moved: UInt8 = 4

        func has(_ f: UInt8) -> Bool { flags & f != 0 }
    }

    var items: [Item] = []
    var bytes: [UInt8] = []
    var errors: [KofkaError] = []

    var count: Int { items.count }

    /// Appends one record (its bytes copied).
    mutating func append(topic: Int32, partition: Int32, explicit: Bool, timestampMs: Int64,
                         key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, headers: UnsafeRawBufferPointer?,
                         size: Int, opaque: UInt, quiet: Bool, enqueuedNs: UInt64, txn: Int64, refused: KofkaError? = nil) {
        let start = bytes.count
        func put(_ p: UnsafeRawBufferPointer?) -> Int32 {
            guard let p else { return -1 }
            if p.count > 0 { bytes.append(contentsOf: p) }
            return Int32(truncatingIfNeeded: p.count)
        }
        let kl = put(key), vl = put(value), hl = put(headers)
        var error: Int32 = -1
        if let refused {
            error = Int32(errors.count)
            errors.append(refused)
        }
        items.append(Item(entry: RecordBatch.Entry(timestampMs: timestampMs, start: start, keyLen: kl, valueLen: vl, headersLen: hl),
                          size: size, topic: topic, partition: partition,
                          flags: (explicit ? Item.explicit : 0) | (quiet ? Item.quiet : 0),
                          error: error, opaque: opaque, enqueuedNs: enqueuedNs, txn: txn, offset: -1))
    }

    /// Appends item `i` of `other` (its bytes and error copied).
    mutating func append(_ i: Int, of other: PackedRecords) {
        var it = other.items[i]
        let e = it.entry
        if e.size > 0 {
            other.bytes.withUnsafeBytes { b in bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[e.start ..< e.start + e.size])) }
        }
        it.entry.start = bytes.count - e.size
        if it.error >= 0 {
            errors.append(other.errors[Int(it.error)])
            it.error = Int32(errors.count - 1)
        }
        items.append(it)
    }

    /// Appends every item of `other`, in order.
    mutating func append(contentsOf other: PackedRecords) {
        if items.isEmpty && errors.isEmpty {
            self = other
            return
        }
        let shift = bytes.count, errShift = Int32(errors.count)
        bytes.append(contentsOf: other.bytes)
        errors.append(contentsOf: other.errors)
        items.reserveCapacity(items.count + other.items.count)
        for var it in other.items {
            it.entry.start += shift
            if it.error >= 0 { it.error += errShift }
            items.append(it)
        }
    }

    /// Fails item `i` with `e` unless it already failed (refused).
    mutating func fail(_ i: Int, _ e: KofkaError) {
        guard items[i].error < 0 else { return }
        items[i].error = Int32(errors.count)
        errors.append(e)
    }

    /// Items that will be reported (not moved).
    var reportable: Int {
        var n = 0
        for it in items where !it.has(Item.moved) { n += 1 }
        return n
    }

    /// The records at `indices` as a batch to write (one copy of their bytes), or the whole
    /// buffer as it is when `indices` are all the items.
    func batch(_ indices: [Int]) -> RecordBatch {
        let all = RecordBatch(buffer: bytes, entries: items.map(\.entry))
        return indices.count == items.count ? all : all.select(indices)
    }

    /// Item `i` as a report (views into `buf`, this run's bytes).
    func view(_ i: Int, _ buf: UnsafeRawBufferPointer, topics: [TopicMeta]) -> DeliveryView {
        let it = items[i], e = it.entry
        func part(_ start: Int, _ len: Int32) -> UnsafeRawBufferPointer? {
            len < 0 ? nil : UnsafeRawBufferPointer(rebasing: buf[start ..< start + Int(len)])
        }
        let record = OutgoingRecord(partition: it.has(Item.explicit) ? it.partition : nil, timestampMs: e.timestampMs,
                                    key: part(e.start, e.keyLen), value: part(e.valueStart, e.valueLen),
                                    encodedHeaders: part(e.headersStart, e.headersLen))
        let error = it.error >= 0 ? errors[Int(it.error)] : nil
        return DeliveryView(topic: Int(it.topic) < topics.count ? topics[Int(it.topic)].name : "",
                            record: record, partition: error == nil ? it.partition : (record.partition ?? -1),
                            offset: error == nil ? it.offset : -1, error: error, opaque: it.opaque)
    }
}

/// librdkafka's model of asynchronous produce: a bounded queue, a background writer that
/// batches by `linger.ms` and `batch.num.messages` so many records share one storage commit
/// (group commit), and delivery reports handed back on the caller's thread.
///
/// Queued records are packed (`PackedRecords`) in runs of at most `batch.num.messages`: the
/// writer takes the oldest run whole, writes it, and its reports are served from it.
///
/// Everything is guarded by one monitor, which the writer releases while it writes; producers
/// wait on it only for reports (`serve`, `drain`) or for a write of an aborted transaction to
/// finish (`purge`).
final class ProduceQueue: @unchecked Sendable {
    private let m = Monitor()
    private let clock: any TimeSource
    // Everything below is guarded by `m`, which makes every access exclusive: the runtime's
    // exclusivity checks (a begin and an end access per property use) are left out.
    /// Queued runs, oldest first (from `head`); only the last one takes more records.
    @exclusivity(unchecked) private var pending: [PackedRecords] = []
    @exclusivity(unchecked) private var head = 0
    @exclusivity(unchecked) private var pendingCount = 0
    /// Items and bytes of the last full run the writer took: a new run reserves that much, so
    /// that filling it copies no bytes twice (and the memory backend keeps it without slack).
    @exclusivity(unchecked) private var runHint = (items: 0, bytes: 0)
    /// Topics of queued and reported records (`PackedRecords.Item.topic`); `lastTopic` is the
    /// index of the one used last.
    @exclusivity(unchecked) private var topics: [TopicMeta] = []
    @exclusivity(unchecked) private var lastTopic = -1
    /// Fire-and-forget batches (`acks=0`): written in the background, never reported.
    @exclusivity(unchecked) private var unacked: [(topic: TopicMeta, partition: Int32, batch: RecordBatch)] = []
    /// Fire-and-forget batches queued or being written.
    @exclusivity(unchecked) private var unackedCount = 0
    /// Records the writer is writing now, by transaction.
    @exclusivity(unchecked) private var writing: [Int64: Int] = [:]
    /// True while the writer thread runs.
    @exclusivity(unchecked) private var writerRunning = false
    /// True while the writer sleeps with nothing to do (so only then does a producer wake it).
    @exclusivity(unchecked) private var writerIdle = false
    /// Written (or failed) runs whose reports have not been served.
    @exclusivity(unchecked) private var reports: [PackedRecords] = [] {
        didSet { publishReady() }
    }
    /// A word kept at 1 while `reports` holds runs to serve, 0 otherwise (`setReadyFlag`).
    @exclusivity(unchecked) private var readyFlag: UnsafeMutablePointer<Int32>?
    /// Set by `retireReadyFlag`: no flag is registered any more.
    @exclusivity(unchecked) private var readyFlagRetired = false
    /// Records produced whose report has not been served yet.
    @exclusivity(unchecked) private var outstandingCount = 0
    /// Slots promised by `reserve` and not yet filled or released; they count against
    /// `capacity` exactly as outstanding records do.
    @exclusivity(unchecked) private var reserved = 0
    @exclusivity(unchecked) private var flushers = 0
    @exclusivity(unchecked) private var stopped = false
    @exclusivity(unchecked) private var lingerNs: UInt64 = 5_000_000
    @exclusivity(unchecked) private var batchSize = 10_000
    private let capacity: Int
    private weak var producer: Producer?

    init(capacity: Int, clock: any TimeSource) {
        self.capacity = capacity
        self.clock = clock
    }

    var outstanding: Int { m.locked { outstandingCount } }

    func start(_ p: Producer) {
        m.locked { producer = p }
    }

    /// Keeps `flag` at 1 while reports wait to be served and at 0 once none do (stores with
    /// release ordering, under the queue's lock), from now until it is replaced; nil stops that.
    /// Once this returns, the previous flag is never written again. Throws `.closed` for a flag
    /// after `retireReadyFlag` (a registration racing the producer's close).
    func setReadyFlag(_ flag: UnsafeMutablePointer<Int32>?) throws {
        try m.locked {
            if readyFlagRetired && flag != nil { throw KofkaError(.closed, "the producer is closed") }
            readyFlag = flag
            publishReady()
        }
    }

    /// Stores in the registered flag whether reports wait (with `m` held).
    private func publishReady() {
        if let readyFlag { kofka_store_release_i32(readyFlag, reports.isEmpty ? 0 : 1) }
    }

    /// Unregisters the flag for good (the producer's handle is closing): once this returns,
    /// no flag is written again, whatever other threads still inside the producer do.
    func retireReadyFlag() {
        m.locked {
            readyFlag = nil
            readyFlagRetired = true
        }
    }

    /// Queues a batch to be written without an acknowledgement (`acks=0`): the caller does not
    /// wait, and no report comes back. `close`/`flush` still wait for it to be written.
    func enqueueUnacknowledged(_ topic: TopicMeta, _ partition: Int32, _ batch: RecordBatch) throws {
        try m.locked {
            if stopped { throw KofkaError(.closed, "the producer is closed") }
            unacked.append((topic, partition, batch))
            unackedCount += 1
            startWriterIfNeeded()
            if writerIdle { m.broadcast() }
        }
    }

    /// The index of `meta` in the topic table (called with `m` held).
    private func topicIndex(_ meta: TopicMeta) -> Int32 {
        if lastTopic >= 0 && topics[lastTopic] == meta { return Int32(lastTopic) }
        if let i = topics.firstIndex(of: meta) {
            lastTopic = i
        } else {
            if topics.count >= 256 && pendingCount == 0 && reports.isEmpty && writing.isEmpty { topics = [] }
            topics.append(meta)
            lastTopic = topics.count - 1
        }
        return Int32(lastTopic)
    }

    /// Queues one record (its bytes copied); `spread` gives the partition of a record with none.
    func enqueue(_ meta: TopicMeta, partition: Int32, explicit: Bool, timestampMs: Int64,
                 key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, headers: UnsafeRawBufferPointer?,
                 size: Int, opaque: UInt, txn: Int64, lingerMs: Int, batch: Int) throws {
        try m.locked {
            if stopped { throw KofkaError(.closed, "the producer is closed") }
            if outstandingCount + reserved >= capacity { throw queueFull() }
            batchSize = batch
            let before = pendingCount
            if pending.count == head || pending[pending.count - 1].count >= batch { pending.append(newRun()) }
            let t = topicIndex(meta)
            pending[pending.count - 1].append(topic: t, partition: partition, explicit: explicit, timestampMs: timestampMs,
                                              key: key, value: value, headers: headers, size: size, opaque: opaque,
                                              quiet: false, enqueuedNs: clock.coarseMonotonicNs(), txn: txn)
            queued(1, before: before, lingerMs: lingerMs)
        }
    }

    /// The error of a queue with no free slot (called with `m` held).
    private func queueFull() -> KofkaError {
        let held = reserved == 0 ? "" : " and \(reserved) slot\(reserved == 1 ? " is" : "s are") reserved"
        return KofkaError(.queueFull, "producer queue is full: \(outstandingCount) records await delivery reports\(held) (queue.buffering.max.messages=\(capacity)); call poll and retry", retriable: true)
    }

    /// `n` items were added behind `before` waiting ones (called with `m` held): counts them
    /// and wakes the writer for the first item or a full batch.
    private func queued(_ n: Int, before: Int, lingerMs: Int) {
        lingerNs = UInt64(lingerMs) * 1_000_000
        pendingCount += n
        outstandingCount += n
        startWriterIfNeeded()
        if before == 0 || (pendingCount >= batchSize && before < batchSize) { m.broadcast() }
    }

    /// Reserves up to `max` slots (at least 1) for a later `enqueueReserved`; throws
    /// `.queueFull` when none is free, as `enqueue` would, and `.closed` once stopped.
    func reserve(_ max: Int) throws -> Int {
        try m.locked {
            if stopped { throw KofkaError(.closed, "the producer is closed") }
            let free = capacity - outstandingCount - reserved
            if free <= 0 { throw queueFull() }
            let n = Swift.min(Swift.max(max, 1), free)
            reserved += n
            return n
        }
    }

    /// Releases `credits` reserved slots (never more than are reserved), then queues the
    /// records `fill` packs (topic index 0 of `fill` is `meta`) in their place, in order.
    /// Records beyond the released slots need free slots of their own, or nothing is queued
    /// (`.queueFull`). Throws `.closed` once stopped (the slots are released all the same).
    func enqueueReserved(_ records: PackedRecords, meta: TopicMeta, credits: Int, lingerMs: Int, batch: Int) throws {
        try m.locked {
            let released = releaseLocked(credits)
            if stopped { throw KofkaError(.closed, "the producer is closed") }
            let extra = records.count - released
            if extra > 0 && outstandingCount + reserved + extra > capacity { throw queueFull() }
            guard records.count > 0 else { return }
            batchSize = batch
            var run = records
            let t = topicIndex(meta)
            if t != 0 { for i in run.items.indices { run.items[i].topic = t } }
            let before = pendingCount
            if pending.count == head || pending[pending.count - 1].count + run.count > batch {
                pending.append(run)
            } else {
                pending[pending.count - 1].append(contentsOf: run)
            }
            queued(run.count, before: before, lingerMs: lingerMs)
        }
    }

    /// Releases up to `credits` reserved slots (never more than are reserved).
    func release(_ credits: Int) {
        m.locked { _ = releaseLocked(credits) }
    }

    /// `release` with `m` held; returns how many slots it released.
    private func releaseLocked(_ credits: Int) -> Int {
        let n = Swift.min(Swift.max(credits, 0), reserved)
        reserved -= n
        return n
    }

    /// Slots reserved and not yet filled or released (for tests).
    var reservedSlots: Int { m.locked { reserved } }

    private func startWriterIfNeeded() {
        // called with m held
        guard !writerRunning, !stopped else { return }
        writerRunning = true
        startThread { [self] in writerLoop() }
    }

    private enum Work {
        case fireAndForget([(topic: TopicMeta, partition: Int32, batch: RecordBatch)])
        case run(PackedRecords, [TopicMeta])
    }

    /// An empty run with the room of the last full one (with `m` held).
    private func newRun() -> PackedRecords {
        var run = PackedRecords()
        run.items.reserveCapacity(runHint.items)
        run.bytes.reserveCapacity(runHint.bytes)
        return run
    }

    /// The oldest queued run, taken off the queue (with `m` held).
    private func takeRun() -> PackedRecords {
        let run = pending[head]
        if run.count >= batchSize { runHint = (run.count, Swift.min(run.bytes.count, 64 << 20)) }
        pending[head] = PackedRecords()
        head += 1
        if head == pending.count {
            pending.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 64 && head * 2 > pending.count {
            pending.removeFirst(head)
            head = 0
        }
        pendingCount -= run.count
        return run
    }

    /// The next piece of work, waiting for it (with `m` held); nil once stopped.
    private func nextWork() -> Work? {
        while true {
            if stopped { return nil }
            if !unacked.isEmpty {
                defer { unacked = [] }
                return .fireAndForget(unacked)
            }
            if pendingCount == 0 {
                writerIdle = true
                m.wait(timeoutNs: nil)
                writerIdle = false
                continue
            }
            let due = pending[head].items[0].enqueuedNs &+ lingerNs
            let now = clock.monotonicNs()
            if flushers > 0 || pendingCount >= batchSize || pending.count - head > 1 || now >= due { break }
            m.wait(timeoutNs: due - now)
        }
        let run = takeRun()
        for (txn, count) in Self.txnRuns(run) { writing[txn, default: 0] += count }
        return .run(run, topics)
    }

    /// The run's transactions as runs (a batch usually holds one): one count per run, not per item.
    private static func txnRuns(_ run: PackedRecords) -> [(txn: Int64, count: Int)] {
        var runs: [(txn: Int64, count: Int)] = []
        for it in run.items {
            if let last = runs.indices.last, runs[last].txn == it.txn { runs[last].count += 1 } else { runs.append((it.txn, 1)) }
        }
        return runs
    }

    private func writerLoop() {
        while true {
            let (work, p) = m.locked { (nextWork(), producer) }
            guard let work else {
                m.locked {
                    writerRunning = false
                    m.broadcast()
                }
                return
            }
            switch work {
            case .fireAndForget(let batches):
                for f in batches { p?.writeUnacknowledged(f.topic, f.partition, f.batch) }
                m.locked {
                    unackedCount -= batches.count
                    m.broadcast()
                }
            case .run(var run, let metas):
                write(&run, metas, p)
                m.locked {
                    for (txn, count) in Self.txnRuns(run) {
                        writing[txn, default: 0] -= count
                        if writing[txn] == 0 { writing[txn] = nil }
                    }
                    reports.append(run)
                    m.broadcast()
                }
            }
        }
    }

    /// Writes a run (one request per partition and transaction, in order), setting each
    /// record's offset or error.
    private func write(_ run: inout PackedRecords, _ metas: [TopicMeta], _ p: Producer?) {
        let n = run.count
        guard n > 0 else { return }
        let closed = KofkaError(.closed, "the producer is closed")
        // The common run: one topic, partition and transaction, nothing refused.
        let first = run.items[0]
        var single = true
        for it in run.items where it.error >= 0 || it.topic != first.topic || it.partition != first.partition || it.txn != first.txn {
            single = false
            break
        }
        if single {
            let all = Array(0..<n)
            deliver(&run, all, metas[Int(first.topic)], first.partition, first.txn, p, closed)
            return
        }
        struct Key: Hashable { var topic: Int32; var partition: Int32; var txn: Int64 }
        var groups: [Key: [Int]] = [:]
        var order: [Key] = []
        for i in 0..<n where run.items[i].error < 0 {
            let it = run.items[i]
            let key = Key(topic: it.topic, partition: it.partition, txn: it.txn)
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(i)
        }
        for key in order {
            guard let idx = groups[key] else { continue }
            deliver(&run, idx, metas[Int(key.topic)], key.partition, key.txn, p, closed)
        }
    }

    /// Writes the records at `idx` of `run` (one topic, partition and transaction).
    private func deliver(_ run: inout PackedRecords, _ idx: [Int], _ meta: TopicMeta, _ partition: Int32, _ txn: Int64,
                         _ p: Producer?, _ closed: KofkaError) {
        guard let p else {
            for i in idx { run.fail(i, closed) }
            return
        }
        let results = p.deliverQueued(meta, partition, run.batch(idx), sizes: idx.map { run.items[$0].size }, txn: txn)
        for (j, i) in idx.enumerated() {
            switch results[j] {
            case .success(let off): run.items[i].offset = off
            case .failure(let e): run.fail(i, e)
            }
        }
    }

    /// Serves the reports ready now (waiting until `deadline` for the first; nil = forever):
    /// `handler` gets each one that is not quiet. Returns how many were served.
    func serve(deadline: UInt64?, _ handler: (DeliveryView) -> Void) -> Int {
        let (ready, metas, count): ([PackedRecords], [TopicMeta], Int) = m.locked {
            while reports.isEmpty {
                // nothing outstanding: no report can come (a poll with a timeout returns at once,
                // as librdkafka's does when nothing is in flight)
                if outstandingCount == 0 && unackedCount == 0 { return ([], [], 0) }
                if outstandingCount == 0 && deadline == nil {
                    m.wait(timeoutNs: 50_000_000)   // a fire-and-forget write in progress
                    return ([], [], 0)
                }
                let left = clock.remainingNs(until: deadline)
                if left == 0 { return ([], [], 0) }
                m.wait(timeoutNs: left)
            }
            let r = reports
            reports = []
            var n = 0
            for run in r { n += run.reportable }
            outstandingCount -= n
            m.broadcast()
            return (r, topics, n)
        }
        for run in ready {
            run.bytes.withUnsafeBytes { buf in
                for i in run.items.indices where run.items[i].flags & (PackedRecords.Item.quiet | PackedRecords.Item.moved) == 0 {
                    handler(run.view(i, buf, topics: metas))
                }
            }
        }
        return count
    }

    /// Serves reports until nothing is outstanding or `deadline` passes; true when drained.
    func drain(deadline: UInt64?, _ handler: (DeliveryView) -> Void) -> Bool {
        m.locked {
            flushers += 1
            m.broadcast()
        }
        defer { m.locked { flushers -= 1 } }
        while true {
            if m.locked({ outstandingCount == 0 && unackedCount == 0 }) { return true }
            let left = clock.remainingNs(until: deadline)
            if left == 0 { return false }
            let step = clock.monotonicNs() &+ min(left ?? UInt64.max, 50_000_000)
            _ = serve(deadline: step, handler)
        }
    }

    /// Removes every record of transaction `txn` not yet taken by the writer and fails it with
    /// `error` (its report); then waits until no record of `txn` is being written, so nothing of
    /// the transaction reaches storage after this returns.
    func purge(txn: Int64, _ error: KofkaError) {
        m.locked {
            var kept: [PackedRecords] = []
            var keptCount = 0
            var current = PackedRecords()
            for r in head..<pending.count {
                var run = pending[r]
                guard run.items.contains(where: { $0.txn == txn }) else {
                    if current.count > 0 { kept.append(current); current = PackedRecords() }
                    kept.append(run)
                    keptCount += run.count
                    continue
                }
                // The run is reported (its records of `txn` failed); the others move on.
                for i in run.items.indices {
                    if run.items[i].txn == txn {
                        run.fail(i, error)
                    } else {
                        current.append(i, of: run)
                        run.items[i].flags |= PackedRecords.Item.moved
                        keptCount += 1
                    }
                }
                reports.append(run)
            }
            if current.count > 0 { kept.append(current) }
            pending = kept
            head = 0
            pendingCount = keptCount
            m.broadcast()
            while writing[txn] != nil { m.wait(timeoutNs: nil) }
        }
    }

    /// Fails every record not yet taken by the writer.
    func failAll(_ e: KofkaError) {
        m.locked {
            for r in head..<pending.count {
                var run = pending[r]
                for i in run.items.indices { run.fail(i, e) }
                reports.append(run)
            }
            pending = []
            head = 0
            pendingCount = 0
            m.broadcast()
        }
    }

    /// Stops the writer after the write it is doing now; it takes nothing more.
    func stop() {
        m.locked {
            stopped = true
            reserved = 0
            m.broadcast()
        }
    }

    /// `stop`, then waits until the writer has finished its current write and exited.
    func stopAndWait() {
        m.locked {
            stopped = true
            reserved = 0
            m.broadcast()
            while writerRunning { m.wait(timeoutNs: nil) }
        }
    }
}
