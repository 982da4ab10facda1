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
    /// True for a record handed over by `produce(_:leased:opaques:credits:)` with opaque 0:
    /// nobody asked for its report, so `poll` / `flush` count it without calling the handler.
    var quiet = false
}

/// librdkafka's model of asynchronous produce: a bounded queue, a background writer that
/// batches by `linger.ms` and `batch.num.messages` so many records share one storage commit
/// (group commit), and delivery reports handed back on the caller's thread.
///
/// Everything is guarded by one monitor, which the writer releases while it writes; producers
/// wait on it only for reports (`serve`, `drain`) or for a write of an aborted transaction to
/// finish (`purge`).
final class ProduceQueue: @unchecked Sendable {
    struct Item {
        var topic: TopicMeta
        var partition: Int32
        var record: Record
        var opaque: UInt
        /// When it was queued (the producer's clock, monotonic ns).
        var enqueuedNs: UInt64
        /// The transaction it was produced in (0 = none).
        var txn: Int64
        /// Its report goes to no handler (see `DeliveryReport.quiet`).
        var quiet = false
        /// Set when the record was refused as it was handed over (`Producer.produce(_:leased:...)`):
        /// the writer writes nothing and reports this error, in the record's place in the queue.
        var refused: KofkaError? = nil
    }

    private let m = Monitor()
    private let clock: any TimeSource
    // Everything below is guarded by `m`.
    private var pending: [Item] = []
    private var head = 0
    /// Fire-and-forget batches (`acks=0`): written in the background, never reported.
    private var unacked: [(topic: TopicMeta, partition: Int32, batch: RecordBatch)] = []
    /// Fire-and-forget batches queued or being written.
    private var unackedCount = 0
    /// Records the writer is writing now, by transaction.
    private var writing: [Int64: Int] = [:]
    /// True while the writer thread runs.
    private var writerRunning = false
    /// True while the writer sleeps with nothing to do (so only then does a producer wake it).
    private var writerIdle = false
    private var reports: [DeliveryReport] = []
    /// Records produced whose report has not been served yet.
    private var outstandingCount = 0
    /// Slots promised by `reserve` and not yet filled or released; they count against
    /// `capacity` exactly as outstanding records do.
    private var reserved = 0
    private var flushers = 0
    private var stopped = false
    private var lingerNs: UInt64 = 5_000_000
    private var batchSize = 10_000
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

    func enqueue(_ item: Item, lingerMs: Int, batch: Int) throws {
        try m.locked {
            if stopped { throw KofkaError(.closed, "the producer is closed") }
            if outstandingCount + reserved >= capacity { throw queueFull() }
            let before = pending.count - head
            pending.append(item)
            queued(1, before: before, lingerMs: lingerMs, batch: batch)
        }
    }

    /// The error of a queue with no free slot (called with `m` held).
    private func queueFull() -> KofkaError {
        let held = reserved == 0 ? "" : " and \(reserved) slot\(reserved == 1 ? " is" : "s are") reserved"
        return KofkaError(.queueFull, "producer queue is full: \(outstandingCount) records await delivery reports\(held) (queue.buffering.max.messages=\(capacity)); call poll and retry", retriable: true)
    }

    /// Queues `items` (called with `m` held).
    private func append(_ items: [Item], lingerMs: Int, batch: Int) {
        guard !items.isEmpty else { return }
        let before = pending.count - head
        if before == 0 {
            // The writer took everything: the array becomes the queue, its items not copied.
            pending = items
            head = 0
        } else {
            pending.append(contentsOf: items)
        }
        queued(items.count, before: before, lingerMs: lingerMs, batch: batch)
    }

    /// `n` items were added behind `before` waiting ones (called with `m` held): counts them
    /// and wakes the writer for the first item or a full batch.
    private func queued(_ n: Int, before: Int, lingerMs: Int, batch: Int) {
        lingerNs = UInt64(lingerMs) * 1_000_000
        batchSize = batch
        outstandingCount += n
        startWriterIfNeeded()
        if before == 0 || pending.count - head >= batchSize { m.broadcast() }
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

    /// Releases `credits` reserved slots (never more than are reserved), then queues `items`
    /// in their place, in order. Items beyond the released slots need free slots of their own,
    /// or nothing is queued (`.queueFull`). Throws `.closed` once stopped (the slots are
    /// released all the same).
    func enqueueReserved(_ items: [Item], credits: Int, lingerMs: Int, batch: Int) throws {
        try m.locked {
            let released = releaseLocked(credits)
            if stopped { throw KofkaError(.closed, "the producer is closed") }
            let extra = items.count - released
            if extra > 0 && outstandingCount + reserved + extra > capacity { throw queueFull() }
            append(items, lingerMs: lingerMs, batch: batch)
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
        case batch([Item])
    }

    /// The next piece of work, waiting for it (with `m` held); nil once stopped.
    private func nextWork() -> Work? {
        while true {
            if stopped { return nil }
            if !unacked.isEmpty {
                defer { unacked = [] }
                return .fireAndForget(unacked)
            }
            if pending.count == head {
                writerIdle = true
                m.wait(timeoutNs: nil)
                writerIdle = false
                continue
            }
            let due = pending[head].enqueuedNs &+ lingerNs
            let now = clock.monotonicNs()
            if flushers > 0 || pending.count - head >= batchSize || now >= due { break }
            m.wait(timeoutNs: due - now)
        }
        let n = min(batchSize, pending.count - head)
        let out: [Item]
        if head == 0 && n == pending.count {
            // Everything queued goes: the array itself is taken, its items neither copied nor destroyed.
            out = pending
            pending = []
            pending.reserveCapacity(n)
        } else {
            out = Array(pending[head..<head + n])
            head += n
            if head > 4096 && head * 2 > pending.count {
                pending.removeFirst(head)
                head = 0
            }
        }
        for (txn, count) in Self.txnRuns(out) { writing[txn, default: 0] += count }
        return .batch(out)
    }

    /// The items' transactions as runs (a batch usually holds one): one count per run, not per item.
    private static func txnRuns(_ items: [Item]) -> [(txn: Int64, count: Int)] {
        var runs: [(txn: Int64, count: Int)] = []
        for it in items {
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
            case .batch(let batch):
                let out = write(batch, p)
                m.locked {
                    for (txn, count) in Self.txnRuns(batch) {
                        writing[txn, default: 0] -= count
                        if writing[txn] == 0 { writing[txn] = nil }
                    }
                    reports.append(contentsOf: out)
                    m.broadcast()
                }
            }
        }
    }

    /// Writes a batch (one request per partition and transaction, in order) and makes its reports.
    private func write(_ batch: [Item], _ p: Producer?) -> [DeliveryReport] {
        struct Key: Hashable { var pnum: Int64; var txn: Int64 }
        var groups: [Key: [Int]] = [:]
        var order: [Key] = []
        var results = [Result<Int64, KofkaError>?](repeating: nil, count: batch.count)
        for (i, it) in batch.enumerated() {
            if let e = it.refused {
                results[i] = .failure(e)   // nothing to write
                continue
            }
            let key = Key(pnum: it.topic.firstPnum + Int64(it.partition), txn: it.txn)
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(i)
        }
        for key in order {
            guard let idx = groups[key], let first = idx.first else { continue }
            let it0 = batch[first]
            guard let r = p?.deliverQueued(it0.topic, it0.partition, idx.map { batch[$0].record }, txn: key.txn) else { continue }
            for (j, i) in idx.enumerated() { results[i] = r[j] }
        }
        // Reports in the order the records were queued.
        return batch.indices.map { i in
            let it = batch[i]
            let result = results[i] ?? .failure(KofkaError(.closed, "the producer is closed"))
            return DeliveryReport(topic: it.topic.name, record: it.record,
                                  result: result.map { RecordMetadata(topic: it.topic.name, partition: it.partition, offset: $0) },
                                  opaque: it.opaque, quiet: it.quiet)
        }
    }

    /// Serves the reports ready now (waiting until `deadline` for the first; nil = forever).
    func serve(deadline: UInt64?, _ handler: (DeliveryReport) -> Void) -> Int {
        let ready: [DeliveryReport] = m.locked {
            while reports.isEmpty {
                // nothing outstanding: no report can come (a poll with a timeout returns at once,
                // as librdkafka's does when nothing is in flight)
                if outstandingCount == 0 && unackedCount == 0 { return [] }
                if outstandingCount == 0 && deadline == nil {
                    m.wait(timeoutNs: 50_000_000)   // a fire-and-forget write in progress
                    return []
                }
                let left = clock.remainingNs(until: deadline)
                if left == 0 { return [] }
                m.wait(timeoutNs: left)
            }
            let r = reports
            reports = []
            outstandingCount -= r.count
            m.broadcast()
            return r
        }
        for r in ready where !r.quiet { handler(r) }
        return ready.count
    }

    /// Serves reports until nothing is outstanding or `deadline` passes; true when drained.
    func drain(deadline: UInt64?, _ handler: (DeliveryReport) -> Void) -> Bool {
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
            var kept: [Item] = []
            kept.reserveCapacity(pending.count - head)
            for it in pending[head...] {
                if it.txn == txn {
                    reports.append(DeliveryReport(topic: it.topic.name, record: it.record, result: .failure(it.refused ?? error), opaque: it.opaque, quiet: it.quiet))
                } else {
                    kept.append(it)
                }
            }
            pending = kept
            head = 0
            m.broadcast()
            while writing[txn] != nil { m.wait(timeoutNs: nil) }
        }
    }

    /// Fails every record not yet taken by the writer.
    func failAll(_ e: KofkaError) {
        m.locked {
            for it in pending[head...] {
                reports.append(DeliveryReport(topic: it.topic.name, record: it.record, result: .failure(it.refused ?? e), opaque: it.opaque, quiet: it.quiet))
            }
            pending = []
            head = 0
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
