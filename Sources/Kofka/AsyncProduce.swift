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

/// librdkafka's model of asynchronous produce: a bounded queue, a background writer that
/// batches by `linger.ms` and `batch.num.messages` so many records share one storage commit
/// (group commit), and delivery reports handed back on the caller's thread.
final class ProduceQueue: @unchecked Sendable {
    struct Item {
        var topic: TopicMeta
        var partition: Int32
        var record: Record
        var opaque: UInt
        var enqueuedNs: UInt64
    }

    private let m = Monitor()
    private var pending: [Item] = []
    /// Fire-and-forget batches (`acks=0`): written in the background, never reported.
    private var unacked: [(topic: TopicMeta, partition: Int32, batch: RecordBatch)] = []
    /// Fire-and-forget batches queued or being written.
    private var unackedCount = 0
    /// True while the writer sleeps with nothing to do (so only then does a producer wake it).
    private var writerIdle = false
    private var head = 0
    private var reports: [DeliveryReport] = []
    /// Records produced whose report has not been served yet.
    private var outstandingCount = 0
    private var flushers = 0
    private var stopped = false
    private var lingerNs: UInt64 = 5_000_000
    private var batchSize = 10_000
    private let capacity: Int
    private weak var producer: Producer?
    private var started = false

    init(capacity: Int) { self.capacity = capacity }

    var outstanding: Int { m.locked { outstandingCount } }

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

    func start(_ p: Producer) {
        m.locked { producer = p }
    }

    private func startWriterIfNeeded() {
        // called with m held
        guard !started else { return }
        started = true
        startThread { [self] in writerLoop() }
    }

    func enqueue(_ item: Item, lingerMs: Int, batch: Int) throws {
        try m.locked {
            if stopped { throw KofkaError(.closed, "the producer is closed") }
            if outstandingCount >= capacity {
                throw KofkaError(.queueFull, "producer queue is full: \(outstandingCount) records await delivery reports (queue.buffering.max.messages=\(capacity)); call poll and retry")
            }
            lingerNs = UInt64(lingerMs) * 1_000_000
            batchSize = batch
            pending.append(item)
            outstandingCount += 1
            startWriterIfNeeded()
            if pending.count - head == 1 || pending.count - head >= batchSize { m.broadcast() }
        }
    }

    private func writerLoop() {
        while true {
            // fire-and-forget batches first: they were handed over as they are
            let fire = m.locked { () -> [(topic: TopicMeta, partition: Int32, batch: RecordBatch)] in
                defer { unacked = [] }
                return unacked
            }
            if !fire.isEmpty {
                let p = m.locked { producer }
                for f in fire { p?.writeUnacknowledged(f.topic, f.partition, f.batch) }
                m.locked {
                    unackedCount -= fire.count
                    m.broadcast()
                }
                continue
            }
            let batch: [Item]? = m.locked {
                while true {
                    if !unacked.isEmpty { return [] }
                    if pending.count == head {
                        if stopped { return nil }
                        writerIdle = true
                        m.wait(timeoutNs: nil)
                        writerIdle = false
                        continue
                    }
                    let waiting = pending.count - head
                    let due = pending[head].enqueuedNs &+ lingerNs
                    if stopped || flushers > 0 || waiting >= batchSize || monoNs() >= due { break }
                    m.wait(timeoutNs: due &- monoNs())
                }
                let n = min(batchSize, pending.count - head)
                let out = Array(pending[head..<head + n])
                head += n
                if head > 4096 && head * 2 > pending.count {
                    pending.removeFirst(head)
                    head = 0
                }
                return out
            }
            guard let batch else { return }
            if batch.isEmpty { continue }
            var out: [DeliveryReport] = []
            out.reserveCapacity(batch.count)
            // group by partition, keeping order within each
            var groups: [Int64: [Int]] = [:]
            var order: [Int64] = []
            for (i, it) in batch.enumerated() {
                let key = it.topic.firstPnum + Int64(it.partition)
                if groups[key] == nil { order.append(key) }
                groups[key, default: []].append(i)
            }
            let p = m.locked { producer }
            for key in order {
                guard let idx = groups[key], let first = idx.first else { continue }
                let it0 = batch[first]
                let results = p?.deliverQueued(it0.topic, it0.partition, idx.map { batch[$0].record })
                    ?? idx.map { _ in .failure(KofkaError(.closed, "the producer is closed")) }
                for (j, i) in idx.enumerated() {
                    let it = batch[i]
                    out.append(DeliveryReport(topic: it.topic.name, record: it.record,
                                              result: results[j].map { RecordMetadata(topic: it.topic.name, partition: it.partition, offset: $0) },
                                              opaque: it.opaque))
                }
            }
            m.locked {
                reports.append(contentsOf: out)
                m.broadcast()
            }
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
                if let d = deadline, monoNs() >= d { return [] }
                m.wait(timeoutNs: deadline.map { $0 > monoNs() ? $0 - monoNs() : 0 })
            }
            let r = reports
            reports = []
            outstandingCount -= r.count
            m.broadcast()
            return r
        }
        for r in ready { handler(r) }
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
            if let d = deadline, monoNs() >= d { return false }
            let step = min(deadline ?? UInt64.max, monoNs() &+ 50_000_000)
            _ = serve(deadline: step, handler)
        }
    }

    /// Fails every record not yet taken by the writer.
    func failAll(_ e: KofkaError) {
        m.locked {
            for it in pending[head...] {
                reports.append(DeliveryReport(topic: it.topic.name, record: it.record, result: .failure(e), opaque: it.opaque))
            }
            pending = []
            head = 0
            m.broadcast()
        }
    }

    func stop() {
        m.locked {
            stopped = true
            m.broadcast()
        }
    }
}
