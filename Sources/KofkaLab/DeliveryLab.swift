import Kofka

/// The delivery-semantics lab: the workload behind `kofka demo`, the crash harness and the tests.
///
/// For one delivery mode it runs
/// 1. the **producer flow**: `records` unique ids sent one by one through a link that loses
///    requests and acknowledgements, each outcome given to a `DeliveryChecker`;
/// 2. the **consumer flow**: a group consumer that "crashes" (`destroy`, no commit, no leave)
///    every `crashEvery` processed records, right after processing one record of a batch and before
///    the commit its mode would make; for exactly-once, a transactional read-process-write into an
///    output topic whose crash leaves the transaction open (its restart fences it);
/// and reports what was sent, stored, processed, lost and duplicated, and whether the mode's
/// guarantee held.
public enum DeliveryLab {
    /// Workload settings.
    public struct Options: Sendable {
        public var records = 1000
        public var partitions: Int32 = 3
        public var requestLoss = 0.1
        public var ackLoss = 0.1
        /// Processed records between two consumer crashes (0 = never crash).
        public var crashEvery = 100
        public var seed: UInt64 = 42
        public var sessionTimeoutMs = 200
        public var maxPollRecords = 30
        /// Polls per read-process-write transaction (exactly-once pipelines): more than one lets
        /// a rebalance land inside an open transaction.
        public var pollsPerTransaction = 1
        /// Upper bound on one mode's consumer flow.
        public var timeLimitMs = 120_000
        public init() {}
    }

    /// One mode's findings.
    public struct Result: Sendable {
        public var mode: DeliveryMode
        /// Records the producer tried to send.
        public var sent: Int
        /// Records stored in the input topic (duplicates included), as a read_committed reader sees them.
        public var stored: Int
        /// Records processed (duplicates included); for exactly-once, records in the committed output.
        public var processed: Int
        /// Sent ids never processed.
        public var lost: Int
        /// Extra processings of ids already processed.
        public var duplicated: Int
        /// Consumer crashes injected.
        public var crashes: Int
        /// Producer-flow throughput through the lossy link, records/s.
        public var produceRate: Double
        /// Consumer-flow throughput (processing, excluding waits for a crashed member's session to expire), records/s.
        public var processRate: Double
        /// Wall time of the whole mode, seconds.
        public var seconds: Double
        /// The producer flow's check (input topic against send outcomes).
        public var producerCheck: DeliveryChecker.Report
        /// The end-to-end check (processed against send outcomes).
        public var endToEnd: DeliveryChecker.Report
        /// The mode's promise, e.g. "no duplicates".
        public var promise: String
        /// Whether the promise held.
        public var held: Bool

        public init(mode: DeliveryMode, sent: Int, stored: Int, processed: Int, lost: Int, duplicated: Int, crashes: Int,
                    produceRate: Double, processRate: Double, seconds: Double, producerCheck: DeliveryChecker.Report,
                    endToEnd: DeliveryChecker.Report, promise: String, held: Bool) {
            self.mode = mode; self.sent = sent; self.stored = stored; self.processed = processed; self.lost = lost
            self.duplicated = duplicated; self.crashes = crashes; self.produceRate = produceRate; self.processRate = processRate
            self.seconds = seconds; self.producerCheck = producerCheck; self.endToEnd = endToEnd; self.promise = promise; self.held = held
        }
    }

    /// What each mode promises.
    public static func promise(_ mode: DeliveryMode) -> String {
        switch mode {
        case .atMostOnce: "no duplicates"
        case .atLeastOnce: "nothing lost"
        case .exactlyOnce: "exactly once"
        }
    }

    /// Whether `report` keeps the promise of `mode`.
    public static func holds(_ mode: DeliveryMode, _ r: DeliveryChecker.Report) -> Bool {
        let clean = r.unexpected.isEmpty && r.abortedReads.isEmpty
        switch mode {
        case .atMostOnce: return clean && r.duplicates.isEmpty
        case .atLeastOnce: return clean && r.lost.isEmpty && r.unknown == 0 && r.failed == 0
        case .exactlyOnce: return clean && r.lost.isEmpty && r.unknown == 0 && r.failed == 0 && r.duplicates.isEmpty && r.reordered == 0
        }
    }

    /// Producer config for a mode with the lossy link.
    public static func producerConfig(_ mode: DeliveryMode, _ o: Options, extra: [(String, String)] = []) throws -> ProducerConfig {
        try ProducerConfig([("delivery.mode", mode.rawValue), ("fault.request.loss.rate", "\(o.requestLoss)"),
                            ("fault.ack.loss.rate", "\(o.ackLoss)"), ("fault.seed", "\(o.seed)"), ("retry.backoff.ms", "0")] + extra)
    }

    /// Consumer config for a mode in a group. At-least-once commits what a poll returned at the
    /// very next poll (`auto.commit.interval.ms=0`), as soon as it is processed: the demonstration
    /// shows the duplicates the mode cannot avoid, not the ones a five-second default adds.
    public static func consumerConfig(_ mode: DeliveryMode, group: String, _ o: Options) throws -> ConsumerConfig {
        try ConsumerConfig([("group.id", group), ("delivery.mode", mode.rawValue), ("session.timeout.ms", "\(o.sessionTimeoutMs)"),
                            ("max.poll.records", "\(o.maxPollRecords)"), ("auto.commit.interval.ms", "0")])
    }

    /// The producer flow: sends ids `1...records` one by one; returns the checker with every outcome.
    public static func produce(_ mode: DeliveryMode, broker: Broker, topic: String, _ o: Options) throws -> (DeliveryChecker, Double) {
        let p = try broker.producer(try producerConfig(mode, o))
        defer { try? p.close() }
        var checker = DeliveryChecker()
        let start = monoNs()
        send(p, topic: topic, ids: 1...UInt64(max(1, o.records)), into: &checker)
        let secs = Double(monoNs() - start) / 1e9
        return (checker, Double(o.records) / max(secs, 1e-9))
    }

    /// Sends each id one by one and records its outcome.
    public static func send(_ p: Producer, topic: String, ids: ClosedRange<UInt64>, into checker: inout DeliveryChecker) {
        for i in ids {
            let rec = Record(key: Array("k\(i % 64)".utf8), value: LabValue.encode(i))
            do {
                let md = try p.send(topic, rec)
                checker.sent(i, md.offset < 0 ? .unknown : .acknowledged)
            } catch let e as KofkaError where e.code == .timedOut {
                checker.sent(i, .unknown)
            } catch {
                checker.sent(i, .failed)
            }
        }
    }

    /// Reads a whole topic with a read_committed reader; feeds each id to `each`. Returns the record count.
    @discardableResult
    public static func readAll(broker: Broker, topic: String, _ each: (UInt64, Int32) -> Void) throws -> Int {
        let c = try broker.consumer(ConsumerConfig())
        defer { c.destroy() }
        let n = try broker.partitions(of: topic)
        try c.assign(topic, partitions: Array(0..<n))
        var count = 0
        while true {
            let msgs = try c.pollBatch(max: 1000, timeout: .zero)
            if msgs.isEmpty { break }
            for m in msgs {
                count += 1
                if let id = LabValue.decode(m.value) { each(id, m.partition) }
            }
        }
        return count
    }

    /// True when the group's committed offsets reached the end of every partition of `topic`.
    public static func caughtUp(broker: Broker, group: String, topic: String) throws -> Bool {
        let n = try broker.partitions(of: topic)
        for p in 0..<n {
            let hw = try broker.watermarks(topic, p).high
            let c = try broker.committedOffset(group: group, TopicPartition(topic, p)) ?? 0
            if c < hw { return false }
        }
        return true
    }

    /// Runs one mode on `broker`, with topics and group names prefixed by `runId`.
    public static func run(_ mode: DeliveryMode, broker: Broker, options o: Options, runId: String) throws -> Result {
        let started = monoNs()
        let tin = "\(runId)-\(mode.rawValue)-in", tout = "\(runId)-\(mode.rawValue)-out", group = "\(runId)-\(mode.rawValue)"
        try broker.createTopic(tin, partitions: o.partitions)
        try broker.createTopic(tout, partitions: o.partitions)
        var (checker, produceRate) = try produce(mode, broker: broker, topic: tin, o)
        let producerView = checker
        var inputCheck = producerView
        let stored = try readAll(broker: broker, topic: tin) { id, p in inputCheck.read(id, partition: "\(p)") }

        var crashes = 0
        var processed = 0
        var idleNs: UInt64 = 0
        let flowStart = monoNs()
        let deadline = flowStart + UInt64(o.timeLimitMs) * 1_000_000
        var nextCrash = o.crashEvery > 0 ? o.crashEvery : Int.max
        let ccfg = try consumerConfig(mode, group: group, o)
        var consumer = try broker.consumer(ccfg)
        try consumer.subscribe([tin])
        let txnId = "\(runId)-tx"
        var txp: Producer? = nil
        func newTxProducer() throws -> Producer {
            let p = try broker.producer(try producerConfig(.exactlyOnce, o, extra: [("transactional.id", txnId)]))
            try p.initTransactions()
            return p
        }
        if mode == .exactlyOnce { txp = try newTxProducer() }

        flow: while monoNs() < deadline {
            let t0 = monoNs()
            let msgs = try consumer.pollBatch(max: o.maxPollRecords, timeout: .milliseconds(20))
            if msgs.isEmpty {
                idleNs += monoNs() - t0
                if try caughtUp(broker: broker, group: group, topic: tin) {
                    // at-least-once commits the last batch at the next poll: one more poll, then done
                    _ = try consumer.pollBatch(max: o.maxPollRecords, timeout: .zero)
                    if try caughtUp(broker: broker, group: group, topic: tin) { break }
                }
                continue
            }
            if mode == .exactlyOnce, let p = txp {
                do {
                    try p.beginTransaction()
                    for m in msgs {
                        guard let id = LabValue.decode(m.value) else { continue }
                        _ = try p.send(tout, Record(key: m.key, value: LabValue.encode(id)))
                        processed += 1
                        if processed >= nextCrash {
                            // crash inside the transaction: consumer and producer abandoned, nothing committed
                            crashes += 1
                            nextCrash += o.crashEvery
                            consumer.destroy()
                            txp = try newTxProducer()   // same transactional.id: fences and aborts the dead one
                            consumer = try broker.consumer(ccfg)
                            try consumer.subscribe([tin])
                            continue flow
                        }
                    }
                    try p.sendOffsetsToTransaction(consumer)
                    try p.commitTransaction()
                } catch let e as KofkaError where p.transactionRequiresAbort || e.code == .rebalanced || e.code == .txnTimedOut {
                    try? p.abortTransaction()
                    try consumer.seekToCommitted()
                }
            } else {
                for m in msgs {
                    guard let id = LabValue.decode(m.value) else { continue }
                    checker.read(id, partition: "\(m.partition)")
                    processed += 1
                    if processed >= nextCrash {
                        crashes += 1
                        nextCrash += o.crashEvery
                        consumer.destroy()   // dies after processing this record, before any further commit
                        consumer = try broker.consumer(ccfg)
                        try consumer.subscribe([tin])
                        continue flow
                    }
                }
            }
        }
        let flowNs = monoNs() - flowStart
        try? consumer.close()
        try? txp?.close()
        if mode == .exactlyOnce {
            processed = try readAll(broker: broker, topic: tout) { id, p in checker.read(id, partition: "\(p)") }
        }
        let report = checker.report()
        let uniqueProcessed = report.uniqueReads
        let busy = Double(flowNs > idleNs ? flowNs - idleNs : 1) / 1e9
        return Result(mode: mode, sent: o.records, stored: stored, processed: processed,
                      lost: o.records - uniqueProcessed, duplicated: report.duplicateCount, crashes: crashes,
                      produceRate: produceRate, processRate: Double(processed) / busy,
                      seconds: Double(monoNs() - started) / 1e9,
                      producerCheck: inputCheck.report(), endToEnd: report,
                      promise: promise(mode), held: holds(mode, report))
    }
}

extension DeliveryLab {
    /// A consume-transform-produce worker for the crash harness: reads `input` in `group`, writes
    /// each id to `output`, in `mode`:
    /// * at-most-once: the poll commits first, then the outputs are written (a kill in between loses them);
    /// * at-least-once: outputs are written, the next poll commits (a kill in between duplicates them);
    /// * exactly-once: outputs and offsets in one transaction of `transactionalId` (a kill aborts it).
    /// Runs until `stop()` returns true; throws on errors it cannot handle (the harness restarts it).
    public static func pipelineWorker(_ mode: DeliveryMode, broker: Broker, input: String, output: String, group: String,
                                      transactionalId: String, options o: Options, workMs: Int = 0, stop: () -> Bool) throws {
        let consumer = try broker.consumer(try consumerConfig(mode, group: group, o))
        defer { try? consumer.close() }
        try consumer.subscribe([input])
        let producer: Producer
        if mode == .exactlyOnce {
            producer = try broker.producer(try ProducerConfig([("delivery.mode", "exactly-once"), ("transactional.id", transactionalId)]))
            try producer.initTransactions()
        } else {
            producer = try broker.producer(try ProducerConfig([("delivery.mode", "at-least-once"), ("retry.backoff.ms", "1")]))
        }
        defer { try? producer.close() }
        while !stop() {
            if mode == .exactlyOnce {
                // One transaction over several polls: a rebalance may land between them.
                do {
                    try producer.beginTransaction()
                    var processed = 0
                    for _ in 0..<max(1, o.pollsPerTransaction) {
                        let msgs = try consumer.pollBatch(max: o.maxPollRecords, timeout: .milliseconds(50))
                        if msgs.isEmpty { continue }
                        sleepMs(workMs)   // the "processing" a crash can interrupt
                        for r in try producer.sendBatch(output, msgs.map { Record(key: $0.key, value: $0.value) }) { _ = try r.get() }
                        processed += msgs.count
                    }
                    if processed > 0 { try producer.sendOffsetsToTransaction(consumer) }
                    try producer.commitTransaction()
                } catch let e as KofkaError where producer.transactionRequiresAbort || e.code == .rebalanced || e.code == .txnTimedOut {
                    try? producer.abortTransaction()
                    try consumer.seekToCommitted()
                }
                continue
            }
            let msgs = try consumer.pollBatch(max: o.maxPollRecords, timeout: .milliseconds(50))
            if msgs.isEmpty { continue }
            sleepMs(workMs)   // the "processing" a crash can interrupt
            for r in try producer.sendBatch(output, msgs.map { Record(key: $0.key, value: $0.value) }) { _ = try r.get() }
        }
    }
}
