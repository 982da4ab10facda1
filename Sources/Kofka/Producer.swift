/// A producer: writes records to topics with the guarantee of its delivery mode.
///
/// * at-most-once (`acks=0`, no retries): one attempt; the outcome is not waited for.
/// * at-least-once (`acks=all`, retries): retries on error or timeout until `delivery.timeout.ms`;
///   a lost acknowledgement makes the retry write the records again (a duplicate).
/// * exactly-once (idempotence): every batch carries the producer id, epoch and a per-partition
///   sequence number; the broker acknowledges a retried batch with its original offsets instead
///   of writing it again. With `transactional.id`, writes and consumer offsets commit atomically.
///
/// The link to the broker can lose requests and acknowledgements on purpose
/// (`fault.request.loss.rate`, `fault.ack.loss.rate`, `fault.seed`): both surface as a timeout
/// with the outcome unknown, which is exactly the situation the modes answer differently.
///
/// ```swift
/// let p = try broker.producer(try ProducerConfig([("delivery.mode", "exactly-once")]))
/// let md = try p.send("orders", Record(key: Array("k".utf8), value: Array("v".utf8)))
/// ```
public final class Producer: @unchecked Sendable {
    /// The broker it writes to.
    public let broker: Broker
    /// Its settings.
    public let config: ProducerConfig

    /// Serialises requests that carry sequence numbers, and guards the fault link's random source.
    private let sendLock = Monitor()
    /// Guards the fault link's random source and `isClosed` (never held while calling out).
    private let rngLock = Monitor()
    private var rng: SplitMix64
    /// The idempotent identity (pid -1 until known).
    private var pid: Int64 = -1
    private var epoch: Int32 = 0
    /// Next sequence number per storage partition.
    private var nextSeq: [Int64: Int32] = [:]
    private var spread: UInt32 = 0

    /// Transaction state (guarded by `sendLock`).
    private enum TxnState { case uninitialized, ready, open(Int64), abortable(Int64, KofkaError), fenced(KofkaError) }
    private var txnState = TxnState.uninitialized

    /// Asynchronous produce queue and delivery reports.
    let queue: ProduceQueue
    private var isClosed = false

    init(broker: Broker, config: ProducerConfig) throws {
        self.broker = broker
        self.config = config
        rng = SplitMix64(seed: config.faultSeed)
        queue = ProduceQueue(capacity: config.queueBufferingMaxMessages)
        if config.idempotence && config.transactionalId == nil {
            pid = try broker.allocateProducerId()
        }
        queue.start(self)
    }

    deinit { queue.stop() }

    /// True when the open transaction failed in a way that only an abort can resolve
    /// (librdkafka's `txn_requires_abort`): call `abortTransaction`, then start over.
    public var transactionRequiresAbort: Bool {
        sendLock.locked {
            if case .abortable = txnState { return true }
            return false
        }
    }

    /// Throws `.closed` if the producer or its broker is closed.
    public func checkOpenPublic() throws { try checkOpen() }

    func checkOpen() throws {
        if rngLock.locked({ isClosed }) { throw KofkaError(.closed, "the producer is closed") }
        try broker.checkOpen()
    }

    // MARK: Synchronous sends

    /// Sends one record and returns where it was written once the mode's guarantee is settled.
    /// With `acks=0` the offset is -1. Throws `.timedOut` when it gave up with the outcome unknown.
    public func send(_ topic: String, _ record: Record) throws -> RecordMetadata {
        try sendBatch(topic, [record])[0].get()
    }

    /// Sends records synchronously, one storage transaction per partition touched.
    /// Returns each record's outcome, in order.
    public func sendBatch(_ topic: String, _ records: [Record]) throws -> [Result<RecordMetadata, KofkaError>] {
        var batch = RecordBatch(reservingRecords: records.count, bytes: records.reduce(0) { $0 + $1.size })
        var parts = [Int32](repeating: -1, count: records.count)
        let now = broker.clock.wallMs()
        for (i, r) in records.enumerated() {
            if let p = r.partition { parts[i] = p < 0 ? -2 : p }
            batch.append(RecordData(timestampMs: r.timestampMs == 0 ? now : r.timestampMs, key: r.key, value: r.value, headers: HeaderCodec.encode(r.headers)))
        }
        return try sendBatch(topic, batch, partitions: parts)
    }

    /// Sends a packed batch synchronously (the fastest way in: no allocation per record).
    /// `partitions`, when given, holds a partition per record or -1 for "let the partitioner
    /// choose". Returns each record's outcome, in order.
    public func sendBatch(_ topic: String, _ batch: RecordBatch, partitions: [Int32]? = nil) throws -> [Result<RecordMetadata, KofkaError>] {
        try sendBatch(topic, batch, partitions: partitions, failed: [:])
    }

    private func sendBatch(_ topic: String, _ input: RecordBatch, partitions: [Int32]?, failed: [Int: KofkaError]) throws -> [Result<RecordMetadata, KofkaError>] {
        let o = try send(topic, input, partitions: partitions, failed: failed)
        return (0..<o.count).map { i in
            if let e = o.errors[i] { return .failure(e) }
            return .success(RecordMetadata(topic: topic, partition: o.partitions[i], offset: o.offsets[i]))
        }
    }

    /// What happened to each record of a batch, without a per-record object: where it went,
    /// its offset (-1 when unknown or failed), and the errors of the records that failed.
    public struct BatchOutcome: Sendable {
        public var partitions: [Int32]
        public var offsets: [Int64]
        public var errors: [Int: KofkaError]
        public var count: Int { offsets.count }
        /// The first failed record's index and error.
        public var firstError: (Int, KofkaError)? { errors.min { $0.key < $1.key }.map { ($0.key, $0.value) } }
    }

    /// Sends a packed batch synchronously and reports each record's partition, offset or error
    /// in compact arrays (the path the C face and bindings take).
    public func send(_ topic: String, _ batch: RecordBatch, partitions: [Int32]? = nil) throws -> BatchOutcome {
        try send(topic, batch, partitions: partitions, failed: [:])
    }

    private func send(_ topic: String, _ input: RecordBatch, partitions: [Int32]?, failed: [Int: KofkaError]) throws -> BatchOutcome {
        try checkOpen()
        let meta = try broker.topicMeta(topic, autoCreate: true)
        let batch = input
        let sticky = nextSpread(meta.partitions)
        let maxBytes = broker.config.messageMaxBytes
        let n = batch.count
        // Each record's partition (an explicit one, murmur2 of the key, or sticky); size checks.
        var parts = [Int32](repeating: -1, count: n)
        var failures = failed
        var only: Int32 = -1
        var mixed = false
        batch.buffer.withUnsafeBytes { buf in
            let checkFailed = !failures.isEmpty
            for i in 0..<n where !checkFailed || failures[i] == nil {
                let e = batch.entries[i]
                if e.timestampMs < 0 {
                    failures[i] = KofkaError(.invalidArg, "invalid timestamp \(e.timestampMs): expected milliseconds since the epoch, or 0 for now")
                    continue
                }
                if e.size > maxBytes {
                    failures[i] = KofkaError(.msgTooLarge, "record of \(e.size) bytes exceeds message.max.bytes (\(maxBytes))")
                    continue
                }
                let p: Int32
                if let ps = partitions, ps[i] != -1 {
                    guard ps[i] >= 0 && ps[i] < meta.partitions else {
                        failures[i] = KofkaError(.unknownPartition, "topic '\(meta.name)' has \(meta.partitions) partition\(meta.partitions == 1 ? "" : "s"), asked for partition \(ps[i])")
                        continue
                    }
                    p = ps[i]
                } else if e.keyLen >= 0, let base = buf.baseAddress {
                    p = Partitioner.partition(forKey: UnsafeRawBufferPointer(start: base + e.start, count: Int(e.keyLen)), partitions: meta.partitions)
                } else if e.keyLen >= 0 {
                    p = Partitioner.partition(forKey: [], partitions: meta.partitions)
                } else {
                    p = sticky
                }
                parts[i] = p
                if only < 0 { only = p } else if p != only { mixed = true }
            }
        }
        var offsets = [Int64](repeating: -1, count: n)
        if !mixed && failures.isEmpty {
            // One partition: the batch goes as it is, in one request.
            guard only >= 0 else { return BatchOutcome(partitions: parts, offsets: offsets, errors: [:]) }
            do {
                let base = try deliver(meta, only, batch)
                if base >= 0 { for i in 0..<n { offsets[i] = base + Int64(i) } }
            } catch let e as KofkaError {
                for i in 0..<n { failures[i] = e }
            }
            return BatchOutcome(partitions: parts, offsets: offsets, errors: failures)
        }
        // One request per partition, in order of first appearance.
        var groups: [Int32: [Int]] = [:]
        var order: [Int32] = []
        for i in 0..<n where failures[i] == nil {
            if groups[parts[i]] == nil { order.append(parts[i]) }
            groups[parts[i], default: []].append(i)
        }
        for p in order {
            guard let idx = groups[p] else { continue }
            do {
                let base = try deliver(meta, p, batch.select(idx))
                if base >= 0 { for (j, i) in idx.enumerated() { offsets[i] = base + Int64(j) } }
            } catch let e as KofkaError {
                for i in idx { failures[i] = e }
            }
        }
        return BatchOutcome(partitions: parts, offsets: offsets, errors: failures)
    }

    /// The partition for `record`: its explicit partition, murmur2 of its key, or `sticky`.
    func choosePartition(_ meta: TopicMeta, _ record: Record, sticky: Int32) throws -> Int32 {
        if let p = record.partition {
            _ = try broker.pnum(meta, p)
            return p
        }
        if let k = record.key { return Partitioner.partition(forKey: k, partitions: meta.partitions) }
        return sticky
    }

    /// The partition unkeyed records of the next batch go to (round robin over batches).
    func nextSpread(_ partitions: Int32) -> Int32 {
        sendLock.locked {
            spread &+= 1
            return Int32(spread % UInt32(partitions))
        }
    }

    /// Validates a record's size and resolves its timestamp.
    func recordData(_ r: Record, now: Int64) throws -> RecordData {
        let size = r.size
        if size > broker.config.messageMaxBytes {
            throw KofkaError(.msgTooLarge, "record of \(size) bytes exceeds message.max.bytes (\(broker.config.messageMaxBytes))")
        }
        if r.timestampMs < 0 { throw KofkaError(.invalidArg, "invalid timestamp \(r.timestampMs): expected milliseconds since the epoch, or 0 for now") }
        return RecordData(timestampMs: r.timestampMs == 0 ? now : r.timestampMs, key: r.key, value: r.value, headers: HeaderCodec.encode(r.headers))
    }

    /// Delivers one batch to one partition as the mode says; returns its first offset (-1 for acks=0).
    func deliver(_ meta: TopicMeta, _ partition: Int32, _ data: RecordBatch) throws -> Int64 {
        let transactional = config.transactionalId != nil
        if transactional { broker.sweepExpiredTransactions() }
        if transactional || config.idempotence {
            // Sequence numbers must reach the broker in order: one request at a time.
            return try sendLock.locked {
                var identity: ProducerIdentity
                if transactional {
                    switch txnState {
                    case .open(let txn): identity = ProducerIdentity(pid: pid, epoch: epoch, txn: txn)
                    case .fenced(let e): throw e
                    case .abortable(_, let e): throw e
                    case .uninitialized, .ready:
                        throw KofkaError(.invalidState, "transactional producer '\(config.transactionalId ?? "")' can only send inside a transaction (call init_transactions, then begin_transaction)")
                    }
                } else {
                    identity = ProducerIdentity(pid: pid, epoch: epoch, txn: 0)
                }
                let pnum = meta.firstPnum + Int64(partition)
                let seq = nextSeq[pnum] ?? 0
                do {
                    let base = try attempts(meta, partition, data, identity: identity, seq: seq)
                    nextSeq[pnum] = seq &+ Int32(data.count)
                    return base
                } catch let e as KofkaError {
                    if e.code == .timedOut || e.code == .storage {
                        // The batch's fate is unknown, so the sequence is too.
                        if transactional {
                            txnState = .abortable(identity.txn, KofkaError(e.code, e.message + "; the transaction must be aborted"))
                        } else {
                            // Start a new epoch: sequences restart at 0 and cannot collide with the lost batch.
                            epoch &+= 1
                            nextSeq = [:]
                        }
                    } else if e.code == .producerFenced {
                        if transactional { txnState = .fenced(e) }
                    } else if e.code == .txnTimedOut, transactional {
                        txnState = .abortable(identity.txn, e)
                    }
                    throw e
                }
            }
        }
        return try attempts(meta, partition, data, identity: nil, seq: 0)
    }

    /// Sends the request through the (possibly lossy) link, retrying as the config allows.
    private func attempts(_ meta: TopicMeta, _ partition: Int32, _ data: RecordBatch, identity: ProducerIdentity?, seq: Int32) throws -> Int64 {
        let started = monoNs()
        var attempt = 0
        while true {
            do {
                if faultDraw(config.faultRequestLossRate) {
                    throw KofkaError(.timedOut, "request to \(meta.name)[\(partition)] lost (fault.request.loss.rate=\(config.faultRequestLossRate))", retriable: true)
                }
                let base: Int64
                if config.acks == .none {
                    // Fire and forget: handed to the background writer; the producer neither
                    // waits for nor learns the outcome (a request lost above never got there).
                    try queue.enqueueUnacknowledged(meta, partition, data)
                    return -1
                }
                base = try broker.appendRequest(meta, partition, data, identity: identity, baseSeq: seq)
                if faultDraw(config.faultAckLossRate) {
                    throw KofkaError(.timedOut, "acknowledgement from \(meta.name)[\(partition)] lost (fault.ack.loss.rate=\(config.faultAckLossRate))", retriable: true)
                }
                return base
            } catch let e as KofkaError where e.retriable {
                if config.acks == .none { return -1 }
                attempt += 1
                let elapsedMs = Int((monoNs() &- started) / 1_000_000)
                if attempt > config.retries || elapsedMs + config.retryBackoffMs >= config.deliveryTimeoutMs {
                    let why = config.retries == 0 ? "no retries (retries=0)" : "gave up after \(attempt) attempt\(attempt == 1 ? "" : "s") in \(elapsedMs) ms"
                    throw KofkaError(.timedOut, "\(e.message); outcome unknown, \(why)")
                }
                sleepMs(config.retryBackoffMs)
                try checkOpen()   // takes rngLock, never sendLock, so it is safe under sendLock
            }
        }
    }

    private func faultDraw(_ rate: Double) -> Bool {
        guard rate > 0 else { return false }
        return rngLock.locked { rng.unit() < rate }
    }

    // MARK: Transactions

    /// Registers `transactional.id`: bumps its epoch, fencing any earlier producer with the same
    /// id and aborting its open transaction.
    public func initTransactions() throws {
        try checkOpen()
        guard let tid = config.transactionalId else {
            throw KofkaError(.invalidState, "init_transactions needs transactional.id to be set")
        }
        try sendLock.locked {
            guard case .uninitialized = txnState else {
                throw KofkaError(.invalidState, "init_transactions was already called on this producer")
            }
            let (p, e) = try broker.initTransactions(tid)
            pid = p
            epoch = e
            nextSeq = [:]
            txnState = .ready
        }
    }

    /// Opens a transaction.
    public func beginTransaction() throws {
        try checkOpen()
        try sendLock.locked {
            switch txnState {
            case .uninitialized:
                throw KofkaError(.invalidState, config.transactionalId == nil
                    ? "begin_transaction needs transactional.id to be set"
                    : "begin_transaction before init_transactions")
            case .open: throw KofkaError(.invalidState, "a transaction is already open")
            case .abortable(_, let e): throw KofkaError(.invalidState, "the previous transaction failed and must be aborted first: \(e.message)")
            case .fenced(let e): throw e
            case .ready:
                do {
                    txnState = .open(try broker.beginTransaction(pid: pid, epoch: epoch, timeoutMs: config.transactionTimeoutMs))
                } catch let e as KofkaError where e.code == .producerFenced {
                    txnState = .fenced(e)
                    throw e
                }
            }
        }
    }

    private func openTxn(_ what: String) throws -> ProducerIdentity {
        switch txnState {
        case .open(let t): return ProducerIdentity(pid: pid, epoch: epoch, txn: t)
        case .fenced(let e): throw e
        case .abortable(_, let e): throw e
        default: throw KofkaError(.invalidState, "\(what) needs an open transaction")
        }
    }

    private func txnFailed(_ e: KofkaError, txn: Int64) {
        switch e.code {
        case .producerFenced: txnState = .fenced(e)
        case .txnTimedOut: txnState = .abortable(txn, e)
        default: break
        }
    }

    /// Adds the consumer's current positions to the open transaction: they become the group's
    /// committed offsets if and only if the transaction commits.
    public func sendOffsetsToTransaction(_ consumer: Consumer) throws {
        try checkOpen()
        let t = try consumer.transactionOffsets()
        try sendLock.locked {
            let id = try openTxn("send_offsets_to_transaction")
            do {
                try broker.addOffsetsToTransaction(id, group: t.group, memberId: t.memberId, generation: t.generation, offsets: t.offsets)
            } catch let e as KofkaError {
                txnFailed(e, txn: id.txn)
                throw e
            }
        }
    }

    /// Commits the open transaction (after delivering everything queued by `produce`).
    public func commitTransaction(timeout: Duration? = nil, _ handler: (DeliveryReport) -> Void = { _ in }) throws {
        try checkOpen()
        try flush(timeout: timeout, handler)
        // A transaction past its transaction.timeout.ms must not commit: abort expired ones first.
        broker.sweepExpiredTransactions(intervalMs: 0)
        try endTxn(commit: true)
    }

    /// Aborts the open transaction; its records are never visible to read_committed readers.
    public func abortTransaction(timeout: Duration? = nil, _ handler: (DeliveryReport) -> Void = { _ in }) throws {
        try checkOpen()
        _ = try? flush(timeout: timeout, handler)
        try endTxn(commit: false)
    }

    private func endTxn(commit: Bool) throws {
        try sendLock.locked {
            switch txnState {
            case .abortable(let txn, let e):
                if commit { throw e }
                // The broker may still hold it open (an unknown outcome): abort it there too.
                do {
                    try broker.endTransaction(ProducerIdentity(pid: pid, epoch: epoch, txn: txn), commit: false)
                } catch let e2 as KofkaError where e2.code == .producerFenced {
                    txnState = .fenced(e2)
                    throw e2
                } catch let e2 as KofkaError where e2.code == .txnTimedOut || e2.code == .invalidState {
                    // already aborted by the broker
                }
                txnState = .ready
            case .fenced(let e): throw e
            case .open(let txn):
                do {
                    try broker.endTransaction(ProducerIdentity(pid: pid, epoch: epoch, txn: txn), commit: commit)
                    txnState = .ready
                } catch let e as KofkaError {
                    if e.code == .txnTimedOut && !commit { txnState = .ready; return }
                    txnFailed(e, txn: txn)
                    throw e
                }
            default:
                throw KofkaError(.invalidState, "\(commit ? "commit" : "abort")_transaction without an open transaction")
            }
        }
    }

    /// Runs `body` in a transaction: commits when it returns, aborts and rethrows when it throws.
    ///
    /// ```swift
    /// try producer.transaction { _ = try producer.send("out", record) }
    /// ```
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try beginTransaction()
        do {
            let v = try body()
            try commitTransaction()
            return v
        } catch {
            try? abortTransaction()
            throw error
        }
    }

    // MARK: Asynchronous produce

    /// Queues a copy of `record` for delivery by the background writer and returns. The outcome
    /// comes back as a `DeliveryReport` from `poll` / `flush`, with `opaque` unchanged.
    /// Throws `.queueFull` when `queue.buffering.max.messages` reports are outstanding.
    public func produce(_ topic: String, _ record: Record, opaque: UInt = 0) throws {
        try checkOpen()
        if config.transactionalId != nil {
            try sendLock.locked { _ = try openTxn("produce on a transactional producer") }
        }
        let meta = try broker.topicMeta(topic, autoCreate: true)
        let p = try choosePartition(meta, record, sticky: nextSpread(meta.partitions))
        _ = try recordData(record, now: 0)
        try queue.enqueue(.init(topic: meta, partition: p, record: record, opaque: opaque, enqueuedNs: monoNs()),
                          lingerMs: config.lingerMs, batch: config.batchNumMessages)
    }

    /// Serves delivery reports on the calling thread, waiting up to `timeout` for the first
    /// (nil = until one arrives). Returns how many were served.
    @discardableResult
    public func poll(timeout: Duration? = .zero, _ handler: (DeliveryReport) -> Void) -> Int {
        queue.serve(deadline: timeout.map { monoNs() &+ $0.nanoseconds }, handler)
    }

    /// Waits until every queued record is delivered or failed, serving reports to `handler`.
    public func flush(timeout: Duration? = nil, _ handler: (DeliveryReport) -> Void = { _ in }) throws {
        let deadline = timeout.map { monoNs() &+ $0.nanoseconds }
        if !queue.drain(deadline: deadline, handler) {
            throw KofkaError(.timedOut, "flush timed out with \(queue.outstanding) record(s) undelivered")
        }
    }

    /// Flushes (up to `timeout`), aborts an open transaction, and closes. Idempotent.
    public func close(timeout: Duration? = nil, _ handler: (DeliveryReport) -> Void = { _ in }) throws {
        if rngLock.locked({ isClosed }) { return }
        let flushed = broker.closed ? true : queue.drain(deadline: timeout.map { monoNs() &+ $0.nanoseconds }, handler)
        queue.stop()
        queue.failAll(KofkaError(.timedOut, "the producer was closed before the record was delivered"))
        _ = queue.serve(deadline: 0, handler)
        let open = sendLock.locked { () -> Bool in
            if case .open = txnState { return true }
            return false
        }
        if open && !broker.closed { try? endTxn(commit: false) }
        rngLock.locked { isClosed = true }
        if !flushed { throw KofkaError(.timedOut, "close timed out: records were still queued") }
    }

    /// Called by the background writer for a fire-and-forget (`acks=0`) batch: one attempt,
    /// outcome ignored, as acks=0 promises.
    func writeUnacknowledged(_ meta: TopicMeta, _ partition: Int32, _ batch: RecordBatch) {
        _ = try? broker.appendRequest(meta, partition, batch, identity: nil, baseSeq: 0)
    }

    /// Called by the background writer for each batch.
    func deliverQueued(_ meta: TopicMeta, _ partition: Int32, _ records: [Record]) -> [Result<Int64, KofkaError>] {
        let now = broker.clock.wallMs()
        var batch = RecordBatch(reservingRecords: records.count, bytes: records.reduce(0) { $0 + $1.size })
        var bad: [Int: KofkaError] = [:]
        for (i, r) in records.enumerated() {
            do { batch.append(try recordData(r, now: now)) } catch let e as KofkaError { bad[i] = e } catch {}
        }
        var results: [Result<Int64, KofkaError>] = []
        do {
            try checkOpen()
            let base = batch.count == 0 ? -1 : try deliver(meta, partition, batch)
            var j: Int64 = 0
            for i in records.indices {
                if let e = bad[i] { results.append(.failure(e)); continue }
                results.append(.success(base < 0 ? -1 : base + j))
                j += 1
            }
        } catch let e as KofkaError {
            results = records.indices.map { .failure(bad[$0] ?? e) }
        } catch {
            results = records.indices.map { _ in .failure(KofkaError(.storage, "\(error)")) }
        }
        return results
    }
}


