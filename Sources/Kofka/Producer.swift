
/// A producer: writes records to topics with the guarantee of its delivery mode.
///
/// * at-most-once (`acks=0`, no retries): one attempt; the outcome is not waited for.
/// * at-least-once (`acks=all`, retries): retries on error or timeout until `delivery.timeout.ms`;
///   a lost acknowledgement makes the retry write the records again (a duplicate).
/// * exactly-once (idempotence): every batch carries the producer id, epoch and a per-partition
///   sequence number; the broker acknowledges a retried batch with its original offsets instead
///   of writing it again. With `transactional.id`, writes and consumer offsets commit atomically
///   (see `Producer+Transactions.swift`).
///
/// The link to the broker can lose requests and acknowledgements on purpose
/// (`fault.request.loss.rate`, `fault.ack.loss.rate`, `fault.seed`): both surface as a timeout
/// with the outcome unknown, which is exactly the situation the modes answer differently.
///
/// Threads: every method may be called from any thread. State lives in one `Mutex`, never held
/// across a storage call, a wait or a backoff; idempotent requests take turns (`Sequencer`) so
/// their sequence numbers reach the broker in order.
///
/// ```swift
/// let p = try broker.producer(try ProducerConfig([("delivery.mode", "exactly-once")]))
/// let md = try p.send("orders", Record(key: Array("k".utf8), value: Array("v".utf8)))
/// ```
public final class Producer: Sendable {
    /// The broker it writes to.
    public let broker: Broker
    /// Its settings.
    public let config: ProducerConfig

    /// A transactional producer's state (librdkafka's state machine, reduced to what callers see).
    enum TxnState: Sendable {
        /// `init_transactions` not called yet.
        case uninitialized
        /// Initialised, no transaction open.
        case ready
        /// Transaction `txn` is open.
        case open(Int64)
        /// Transaction `txn` failed in a way only an abort resolves (an unknown outcome, a
        /// refused write, offsets that could not be sent, a timeout).
        case abortable(Int64, KofkaError)
        /// A newer producer holds the transactional.id: fatal, the producer must be re-created.
        case fenced(KofkaError)
    }

    /// Everything that changes, in one place (guarded by `state`).
    struct State: Sendable {
        var closed = false
        /// The fault link's random source.
        var rng: SplitMix64
        /// The idempotent identity (pid -1 until known).
        var pid: Int64 = -1
        var epoch: Int32 = 0
        /// Next sequence number per storage partition number.
        var nextSeq: [Int64: Int32] = [:]
        /// Round robin of unkeyed batches over partitions.
        var spread: UInt32 = 0
        var txn = TxnState.uninitialized
        /// A transaction call (init, begin, send_offsets, commit, abort) is running on some thread.
        var txnCallInProgress = false
        /// A commit or abort is running: `produce` is refused until it ends.
        var txnEnding = false
        /// `send_offsets_to_transaction` failed with a retriable error (BUSY) in the open
        /// transaction and has not succeeded since: commit is refused, so outputs never commit
        /// without the offsets they were meant to go with.
        var offsetsUnsent = false
        /// Offsets handed to the open transaction, by group (for the interceptors' `onCommit`).
        var offsetsSent: [String: [TopicPartition: Int64]] = [:]
        /// The consumers whose offsets went into the open transaction, and those offsets: told
        /// when it commits (`Consumer.transactionCommitted`), so their returned records count
        /// as committed then and not before.
        var offsetsFrom: [(consumer: Consumer, offsets: [(TopicPartition, Int64)])] = []
        /// The topic `produce` used last.
        var topicMemo: TopicMemo?
    }

    /// A topic as `produce` last looked it up: valid while the broker's topic cache has not
    /// changed since (`Broker.topicsVersion`), so a record to the same topic as the one before
    /// needs no lookup.
    final class TopicMemo: Sendable {
        let name: String
        let meta: TopicMeta
        let maxBytes: Int
        let version: UInt64
        init(name: String, meta: TopicMeta, maxBytes: Int, version: UInt64) {
            self.name = name
            self.meta = meta
            self.maxBytes = maxBytes
            self.version = version
        }
    }

    let state: Locked<State>
    /// The interceptors it calls (those of its broker when it was opened).
    let interceptors: InterceptorChain
    /// Turns for sequenced requests and interruptible retry pauses.
    let sequencer = Sequencer()
    /// Asynchronous produce queue and delivery reports.
    let queue: ProduceQueue

    init(broker: Broker, config: ProducerConfig) throws {
        self.broker = broker
        self.config = config
        var s = State(rng: SplitMix64(seed: config.faultSeed))
        if config.idempotence && config.transactionalId == nil {
            s.pid = try broker.allocateProducerId()
        }
        state = Locked(s)
        interceptors = broker.interceptorChain
        queue = ProduceQueue(capacity: config.queueBufferingMaxMessages, clock: broker.clock)
        queue.start(self)
    }

    deinit { queue.stop() }

    /// Throws `.closed` if the producer or its broker is closed.
    public func checkOpenPublic() throws { try checkOpen() }

    func checkOpen() throws {
        if state.withLock({ $0.closed }) { throw KofkaError(.closed, "the producer is closed") }
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
        guard !interceptors.list.isEmpty else { return try sendPartitioned(topic, input, partitions: partitions, failed: failed) }
        var batch = input
        var partitions = partitions
        if interceptors.has(.send) { (batch, partitions) = intercepted(topic, batch, partitions) }
        do {
            let o = try sendPartitioned(topic, batch, partitions: partitions, failed: failed)
            if interceptors.has(.acknowledgement) {
                // a failed record reports the partition it asked for
                let asked = (0..<o.count).map { i in o.partitions[i] >= 0 ? o.partitions[i] : (partitions.map { $0[i] } ?? -1) }
                acknowledge(topic, batch, asked) { i in o.errors[i].map { .failure($0) } ?? .success(RecordMetadata(topic: topic, partition: o.partitions[i], offset: o.offsets[i])) }
            }
            return o
        } catch let e as KofkaError {
            if interceptors.has(.acknowledgement) { acknowledge(topic, batch, partitions ?? []) { _ in .failure(e) } }
            throw e
        }
    }

    /// Runs the interceptors' `onSend` on every record; returns the batch with their
    /// replacements (and the partitions the replacements ask for).
    private func intercepted(_ topic: String, _ batch: RecordBatch, _ partitions: [Int32]?) -> (RecordBatch, [Int32]?) {
        var replaced: [Int: Record] = [:]
        batch.buffer.withUnsafeBytes { buf in
            for i in 0..<batch.count {
                let p = partitions.map { $0[i] }.flatMap { $0 < 0 ? nil : $0 }
                if let r = interceptors.send(topic: topic, batch.outgoing(i, buf, partition: p)) { replaced[i] = r }
            }
        }
        guard !replaced.isEmpty else { return (batch, partitions) }
        var out = RecordBatch(reservingRecords: batch.count, bytes: batch.buffer.count)
        var parts = partitions ?? [Int32](repeating: -1, count: batch.count)
        for i in 0..<batch.count {
            if let r = replaced[i] {
                out.append(RecordData(timestampMs: r.timestampMs, key: r.key, value: r.value, headers: HeaderCodec.encode(r.headers)))
                parts[i] = r.partition ?? -1
            } else {
                out.append(copyOf: i, from: batch)
            }
        }
        return (out, parts)
    }

    /// Runs the interceptors' `onAcknowledgement` on every record of `batch` with its result.
    private func acknowledge(_ topic: String, _ batch: RecordBatch, _ partitions: [Int32], _ result: (Int) -> Result<RecordMetadata, KofkaError>) {
        batch.buffer.withUnsafeBytes { buf in
            for i in 0..<batch.count {
                let p = i < partitions.count && partitions[i] >= 0 ? partitions[i] : nil
                interceptors.acknowledge(topic: topic, batch.outgoing(i, buf, partition: p), result(i))
            }
        }
    }

    /// `handler` preceded by the interceptors' `onAcknowledgement` (delivery reports of `produce`).
    func reporting(_ handler: @escaping (DeliveryView) -> Void) -> (DeliveryView) -> Void {
        guard interceptors.has(.acknowledgement) else { return handler }
        return { [interceptors] view in
            interceptors.acknowledge(topic: view.topic, view.record, view.result)
            handler(view)
        }
    }

    private func sendPartitioned(_ topic: String, _ input: RecordBatch, partitions: [Int32]?, failed: [Int: KofkaError]) throws -> BatchOutcome {
        try checkOpen()
        let meta = try broker.topicMeta(topic, autoCreate: true)
        var batch = input
        batch.resolveTimestamps(now: broker.clock.wallMs())
        let sticky = nextSpread(meta.partitions)
        let maxBytes = broker.maxMessageBytes(meta)
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
                    failures[i] = KofkaError(.msgTooLarge, "record of \(e.size) bytes exceeds the largest record topic '\(meta.name)' takes (\(maxBytes) bytes: max.message.bytes / message.max.bytes)")
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
                let base = try deliver(meta, only, batch, queuedIn: nil)
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
                let base = try deliver(meta, p, batch.select(idx), queuedIn: nil)
                if base >= 0 { for (j, i) in idx.enumerated() { offsets[i] = base + Int64(j) } }
            } catch let e as KofkaError {
                for i in idx { failures[i] = e }
            }
        }
        return BatchOutcome(partitions: parts, offsets: offsets, errors: failures)
    }

    /// The partition for `record`: its explicit partition, murmur2 of its key, or `sticky`.
    func choosePartition(_ meta: TopicMeta, _ record: Record, sticky: Int32) throws -> Int32 {
        try record.key.withBytesOrNil { try choosePartition(meta, record.partition, key: $0, sticky: sticky) }
    }

    /// The partition for a record asked for `partition` with `key`.
    func choosePartition(_ meta: TopicMeta, _ partition: Int32?, key: UnsafeRawBufferPointer?, sticky: Int32) throws -> Int32 {
        if let p = partition {
            _ = try broker.pnum(meta, p)
            return p
        }
        if let key { return Partitioner.partition(forKey: key, partitions: meta.partitions) }
        return sticky
    }

    /// The partition unkeyed records of the next batch go to (round robin over batches).
    func nextSpread(_ partitions: Int32) -> Int32 {
        nextSpreads(partitions, count: 1)
    }

    /// The partitions `count` calls of `nextSpread` in a row would return: the first of them;
    /// the i-th is (first + i) % partitions.
    func nextSpreads(_ partitions: Int32, count: Int) -> Int32 {
        state.withLock { s in
            let first = s.spread &+ 1
            s.spread &+= UInt32(truncatingIfNeeded: count)
            return Int32(first % UInt32(partitions))
        }
    }

    /// Validates a record's size (against the topic's `max.message.bytes`) and resolves its timestamp.
    func recordData(_ r: Record, _ meta: TopicMeta, maxBytes: Int, now: Int64) throws -> RecordData {
        try check(r, meta, maxBytes: maxBytes)
        return RecordData(timestampMs: r.timestampMs == 0 ? now : r.timestampMs, key: r.key, value: r.value, headers: HeaderCodec.encode(r.headers))
    }

    /// The checks a record must pass to be written: its size against the topic's largest
    /// record (`maxBytes`, from `broker.maxMessageBytes`), and its timestamp.
    func check(_ r: Record, _ meta: TopicMeta, maxBytes: Int) throws {
        try check(size: r.size, timestampMs: r.timestampMs, meta, maxBytes: maxBytes)
    }

    /// `check` of a record of `size` bytes (`Record.size`) with timestamp `timestampMs`.
    func check(size: Int, timestampMs: Int64, _ meta: TopicMeta, maxBytes: Int) throws {
        if size > maxBytes {
            throw KofkaError(.msgTooLarge, "record of \(size) bytes exceeds the largest record topic '\(meta.name)' takes (\(maxBytes) bytes: max.message.bytes / message.max.bytes)")
        }
        if timestampMs < 0 { throw KofkaError(.invalidArg, "invalid timestamp \(timestampMs): expected milliseconds since the epoch, or 0 for now") }
    }

    /// Delivers one batch to one partition as the mode says; returns its first offset (-1 for
    /// acks=0). `queuedIn` is the transaction a queued (`produce`) batch was produced in: if that
    /// transaction is no longer the open one, the batch is purged, never written.
    func deliver(_ meta: TopicMeta, _ partition: Int32, _ data: RecordBatch, queuedIn: Int64?) throws -> Int64 {
        let transactional = config.transactionalId != nil
        guard transactional || config.idempotence else {
            return try attempts(meta, partition, data, identity: nil, seq: 0)
        }
        if transactional { broker.sweepExpiredTransactions() }
        let pnum = meta.firstPnum + Int64(partition)
        return try sequencer.withTurn {
            var retriedUnknownProducer = false
            while true {
                let (id, seq) = try identity(pnum, queuedIn: queuedIn)
                do {
                    let base = try attempts(meta, partition, data, identity: id, seq: seq)
                    state.withLock { s in
                        if s.pid == id.pid && s.epoch == id.epoch { s.nextSeq[pnum] = seq &+ Int32(data.count) }
                    }
                    return base
                } catch let e as KofkaError {
                    requestFailed(e, id)
                    // The broker forgot this producer (its state expired after
                    // producer.id.expiration.ms) and refused the batch, writing nothing: a plain
                    // idempotent producer starts a new epoch and sends it once more (KIP-360).
                    if e.code == .outOfOrderSequence && !transactional && seq != 0 && !retriedUnknownProducer {
                        retriedUnknownProducer = true
                        continue
                    }
                    throw e
                }
            }
        }
    }

    /// The identity and sequence number the next request to `pnum` carries.
    private func identity(_ pnum: Int64, queuedIn: Int64?) throws -> (ProducerIdentity, Int32) {
        try state.withLock { s in
            if s.closed { throw KofkaError(.closed, "the producer is closed") }
            var txn: Int64 = 0
            if let tid = config.transactionalId {
                let purged = { (t: Int64) in KofkaError(.purged, "transaction \(t) of '\(tid)' ended before the record was written; it was not written") }
                switch s.txn {
                case .open(let t):
                    if let q = queuedIn, q != t { throw purged(q) }
                    txn = t
                case .abortable(let t, let e):
                    if let q = queuedIn, q != t { throw purged(q) }
                    throw e
                case .fenced(let e):
                    throw e
                case .uninitialized, .ready:
                    if let q = queuedIn { throw purged(q) }
                    throw KofkaError(.invalidState, "transactional producer '\(tid)' can only send inside a transaction (call init_transactions, then begin_transaction)")
                }
            }
            return (ProducerIdentity(pid: s.pid, epoch: s.epoch, txn: txn), s.nextSeq[pnum] ?? 0)
        }
    }

    /// What a failed sequenced request does to the producer. A transaction becomes abort-only
    /// (its outcome is unknown, or the broker refused a write the application counted on); a
    /// newer producer fences this one for good; a plain idempotent producer starts a new epoch,
    /// so its sequences restart at 0 and cannot collide with a batch whose fate is unknown.
    private func requestFailed(_ e: KofkaError, _ id: ProducerIdentity) {
        // Closed: nothing more happens. Busy: the storage refused every attempt and nothing was
        // written, so the sequence is where it was and the transaction can go on.
        guard e.code != .closed && e.code != .busy else { return }
        state.withLock { s in
            guard s.pid == id.pid && s.epoch == id.epoch else { return }   // already moved on (an abort)
            if config.transactionalId != nil {
                if e.code == .producerFenced {
                    s.txn = .fenced(e)
                } else if case .open(let t) = s.txn, t == id.txn {
                    s.txn = .abortable(t, KofkaError(e.code, e.message + "; the transaction must be aborted"))
                }
            } else {
                s.epoch &+= 1
                s.nextSeq = [:]
            }
        }
    }

    /// Sends the request through the (possibly lossy) link, retrying as the config allows. The
    /// backoff between attempts holds no lock and is cut short by `close`.
    private func attempts(_ meta: TopicMeta, _ partition: Int32, _ data: RecordBatch, identity: ProducerIdentity?, seq: Int32) throws -> Int64 {
        let clock = broker.clock
        let started = clock.monotonicNs()
        var attempt = 0
        // Whether some attempt may have been written (anything but a busy refusal).
        var outcomeUnknown = false
        while true {
            do {
                try checkOpen()
                if faultDraw(config.faultRequestLossRate) {
                    throw KofkaError(.timedOut, "request to \(meta.name)[\(partition)] lost (fault.request.loss.rate=\(config.faultRequestLossRate))", retriable: true)
                }
                if config.acks == .none {
                    // Fire and forget: handed to the background writer; the producer neither
                    // waits for nor learns the outcome (a request lost above never got there).
                    try queue.enqueueUnacknowledged(meta, partition, data)
                    return -1
                }
                let base = try broker.appendRequest(meta, partition, data, identity: identity, baseSeq: seq)
                if faultDraw(config.faultAckLossRate) {
                    throw KofkaError(.timedOut, "acknowledgement from \(meta.name)[\(partition)] lost (fault.ack.loss.rate=\(config.faultAckLossRate))", retriable: true)
                }
                return base
            } catch let e as KofkaError where e.retriable {
                if config.acks == .none { return -1 }
                attempt += 1
                if e.code != .busy { outcomeUnknown = true }
                let elapsedMs = Int((clock.monotonicNs() &- started) / 1_000_000)
                if attempt > config.retries || elapsedMs + config.retryBackoffMs >= config.deliveryTimeoutMs {
                    let why = config.retries == 0 ? "no retries (retries=0)" : "gave up after \(attempt) attempt\(attempt == 1 ? "" : "s") in \(elapsedMs) ms"
                    // Refused every time because the storage was busy: nothing was written.
                    if !outcomeUnknown { throw KofkaError(.busy, "\(e.message); nothing was written, \(why)") }
                    throw KofkaError(.timedOut, "\(e.message); outcome unknown, \(why)")
                }
                if !sequencer.pause(ms: config.retryBackoffMs) {
                    throw KofkaError(.timedOut, "\(e.message); the producer was closed while retrying, outcome unknown")
                }
            }
        }
    }

    private func faultDraw(_ rate: Double) -> Bool {
        guard rate > 0 else { return false }
        return state.withLock { $0.rng.unit() < rate }
    }

    // MARK: Asynchronous produce

    /// Queues a copy of `record` for delivery by the background writer and returns. The outcome
    /// comes back as a `DeliveryReport` from `poll` / `flush`, with `opaque` unchanged. On a
    /// transactional producer the record belongs to the open transaction: if that transaction
    /// is aborted before the record is written, its report fails with `.purged`.
    /// Throws `.queueFull` when `queue.buffering.max.messages` reports are outstanding.
    public func produce(_ topic: String, _ record: Record, opaque: UInt = 0) throws {
        var record = record
        if interceptors.has(.send) {
            try checkOpen()   // a closed producer shows the interceptors nothing
            if let r = record.withOutgoing({ interceptors.send(topic: topic, $0) }) { record = r }
        }
        do {
            try enqueue(topic, record, opaque: opaque)
        } catch let e as KofkaError {
            // Refused before it was queued: its acknowledgement (a failure) comes now, once.
            if interceptors.has(.acknowledgement) {
                record.withOutgoing { interceptors.acknowledge(topic: topic, $0, .failure(e)) }
            }
            throw e
        }
    }

    private func enqueue(_ topic: String, _ record: Record, opaque: UInt) throws {
        let headers = HeaderCodec.encode(record.headers)
        try record.key.withBytesOrNil { k in
            try record.value.withBytesOrNil { v in
                try headers.withBytesOrNil { h in
                    try enqueue(topic, partition: record.partition, key: k, value: v, encodedHeaders: h, size: record.size,
                                timestampMs: record.timestampMs, opaque: opaque)
                }
            }
        }
    }

    /// What a record produced now needs of the producer's state, under one lock: the producer
    /// is open, the transaction that takes it (0 = none), the spread counter's next value
    /// (`nextSpread`), and the topic when the memo holds it.
    private func admit(_ topic: String) throws -> (txn: Int64, spread: UInt32, memo: TopicMemo?) {
        let version = broker.topicsVersion.load(ordering: .acquiring)
        return try state.withLock { s -> (Int64, UInt32, TopicMemo?) in
            if s.closed { throw KofkaError(.closed, "the producer is closed") }
            try broker.checkOpen()
            let txn = try produceTxn(s)
            s.spread &+= 1
            guard let memo = s.topicMemo, memo.version == version, memo.name == topic else { return (txn, s.spread, nil) }
            return (txn, s.spread, memo)
        }
    }

    /// Queues one record given as views (copied here): the checks and partitioning of `produce`.
    private func enqueue(_ topic: String, partition: Int32?, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?,
                         encodedHeaders: UnsafeRawBufferPointer?, size: Int, timestampMs: Int64, opaque: UInt) throws {
        let (txn, spread, known) = try admit(topic)
        let memo: TopicMemo
        if let known {
            memo = known
        } else {
            let version = broker.topicsVersion.load(ordering: .acquiring)
            let meta = try broker.topicMeta(topic, autoCreate: true)
            memo = TopicMemo(name: topic, meta: meta, maxBytes: broker.maxMessageBytes(meta), version: version)
            state.withLock { $0.topicMemo = memo }
        }
        let p = try choosePartition(memo.meta, partition, key: key, sticky: Int32(spread % UInt32(memo.meta.partitions)))
        try check(size: size, timestampMs: timestampMs, memo.meta, maxBytes: memo.maxBytes)
        try queue.enqueue(memo.meta, partition: p, explicit: partition != nil, timestampMs: timestampMs,
                          key: key, value: value, headers: encodedHeaders, size: size, opaque: opaque, txn: txn,
                          lingerMs: config.lingerMs, batch: config.batchNumMessages)
    }

    /// `produce` of a record given as views (copied before this returns): what the C face
    /// calls, without building a `Record`. With send interceptors installed the record goes
    /// through `produce(_:_:opaque:)` (they see and may change it).
    package func produce(_ topic: String, partition: Int32?, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?,
                         headers: [Header], timestampMs: Int64, opaque: UInt) throws {
        if interceptors.has(.send) || interceptors.has(.acknowledgement) {
            try produce(topic, Record(partition: partition, key: key.map { Array($0) }, value: value.map { Array($0) },
                                      headers: headers, timestampMs: timestampMs), opaque: opaque)
            return
        }
        var size = (key?.count ?? 0) + (value?.count ?? 0)
        for h in headers { size += h.name.utf8.count + (h.value?.count ?? 0) }
        try HeaderCodec.encode(headers).withBytesOrNil { h in
            try enqueue(topic, partition: partition, key: key, value: value, encodedHeaders: h, size: size,
                        timestampMs: timestampMs, opaque: opaque)
        }
    }

    /// The transaction a record produced now belongs to (0 = not transactional), or the error
    /// `produce` gives when none can take it.
    private func produceTxn() throws -> Int64 {
        try state.withLock { try produceTxn($0) }
    }

    /// `produceTxn` with the state lock held.
    private func produceTxn(_ s: State) throws -> Int64 {
        guard let tid = config.transactionalId else { return 0 }
        if s.txnEnding { throw KofkaError(.invalidState, "produce while the transaction of '\(tid)' is being committed or aborted") }
        switch s.txn {
        case .open(let t): return t
        case .abortable(_, let e), .fenced(let e): throw e
        case .uninitialized, .ready:
            throw KofkaError(.invalidState, "produce on a transactional producer needs an open transaction")
        }
    }

    // MARK: Leased produce (many records per call)

    /// What `lease` granted: queue slots, and what a caller needs to know to hand over only
    /// records that pass the record checks of `produce`.
    public struct ProduceLease: Sendable, Equatable {
        /// Queue slots reserved for the next `produce(_:leased:opaques:credits:)` (at least 1).
        public var credits: Int
        /// The topic's partition count: an explicit partition must be below it.
        public var partitions: Int32
        /// A record with no headers whose key and value bytes add up to at most this passes
        /// the size check (`Record.size` against the topic's `max.message.bytes`).
        public var maxKeyValueBytes: Int
        /// The producer's `linger.ms`: records a caller holds should reach the queue within it.
        public var holdMs: Int
        /// The transaction open when the lease was granted (0 = not transactional): records
        /// handed over in the lease belong to it, or fail if it has ended.
        public var txn: Int64
    }

    /// Performs every check of `produce` that does not depend on the record (the producer is
    /// open, a transaction can take records, the topic exists or is created) and reserves up
    /// to `max` slots of the queue; reserved slots count against
    /// `queue.buffering.max.messages` as queued records do, until `produce(_:leased:...)`
    /// fills or releases them. Throws what `produce` would throw for these reasons,
    /// `.queueFull` when no slot is free, and `.unsupported` when send or acknowledgement
    /// interceptors are installed (they see every record one by one: use `produce`).
    ///
    /// ```swift
    /// let lease = try p.lease("events", max: 512)
    /// try p.produce("events", leased: records, opaques: ids, credits: lease.credits)
    /// ```
    public func lease(_ topic: String, max: Int) throws -> ProduceLease {
        try checkOpen()
        if interceptors.has(.send) || interceptors.has(.acknowledgement) {
            throw KofkaError(.unsupported, "producer has send or acknowledgement interceptors: records must be produced one by one")
        }
        let txn = try produceTxn()
        let meta = try broker.topicMeta(topic, autoCreate: true)
        let credits = try queue.reserve(max)
        // Record.size of a record without headers is key + value bytes, checked against this.
        return ProduceLease(credits: credits, partitions: meta.partitions, maxKeyValueBytes: broker.maxMessageBytes(meta),
                            holdMs: config.lingerMs, txn: txn)
    }

    /// Queues `records`, in order, in the slots of a lease (`credits`, the lease's unused
    /// slots: all are released, the unused ones freed). Each record is checked and partitioned
    /// as `produce` does it now, and belongs to the lease's transaction (`txn`); a record
    /// `produce` would refuse (the producer or its broker closed, no transaction to take it,
    /// an explicit partition out of range, too large) is not queued and fails in its delivery
    /// report with the error `produce` would have thrown — and so does every record when the
    /// lease's transaction has ended (committed or aborted while the caller held them: they
    /// never join a later transaction). A record whose opaque is 0 has a quiet report:
    /// `poll` and `flush` count it without calling the handler.
    /// Throws `.invalidArg` when `opaques` does not match `records` (nothing queued), `.closed`
    /// once `close` stopped the queue, and `.queueFull` if records beyond `credits` find no slot.
    public func produce(_ topic: String, leased records: [Record], opaques: [UInt], credits: Int, txn leaseTxn: Int64 = 0) throws {
        guard opaques.count == records.count else {
            releaseLease(credits)
            throw KofkaError(.invalidArg, "\(records.count) records but \(opaques.count) opaques")
        }
        try produce(topic, leased: records.count, credits: credits, txn: leaseTxn) { sink in
            for (i, r) in records.enumerated() {
                let headers = HeaderCodec.encode(r.headers)
                r.key.withBytesOrNil { k in
                    r.value.withBytesOrNil { v in
                        headers.withBytesOrNil { h in
                            sink(LeasedRecord(partition: r.partition, key: k, value: v, encodedHeaders: h, size: r.size,
                                              timestampMs: r.timestampMs, opaque: opaques[i]))
                        }
                    }
                }
            }
        }
    }

    /// One record handed over in a lease, as views (copied before the sink returns).
    package struct LeasedRecord {
        package var partition: Int32?
        package var key: UnsafeRawBufferPointer?
        package var value: UnsafeRawBufferPointer?
        package var encodedHeaders: UnsafeRawBufferPointer?
        /// `Record.size`: key + value + header names and values.
        package var size: Int
        package var timestampMs: Int64
        package var opaque: UInt

        package init(partition: Int32?, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?,
                     encodedHeaders: UnsafeRawBufferPointer? = nil, size: Int, timestampMs: Int64 = 0, opaque: UInt) {
            self.partition = partition
            self.key = key
            self.value = value
            self.encodedHeaders = encodedHeaders
            self.size = size
            self.timestampMs = timestampMs
            self.opaque = opaque
        }
    }

    /// `produce(_:leased:opaques:credits:txn:)` of `count` records that `records` passes to
    /// its sink one by one, as views: they are packed straight into the queue's buffer, with no
    /// `Record` built (the C face's `kofka_produce_packed`). Passing other than `count` records
    /// queues none (`.invalidArg`).
    package func produce(_ topic: String, leased count: Int, credits: Int, txn leaseTxn: Int64,
                         _ records: ((LeasedRecord) -> Void) -> Void) throws {
        let now = broker.clock.monotonicNs()
        var run = PackedRecords()
        run.items.reserveCapacity(count)
        var meta = TopicMeta(name: topic, partitions: 0, firstPnum: -1)
        var whole: KofkaError? = nil
        var txn: Int64 = 0, maxBytes = 0, spread: UInt64 = 0
        do {
            try checkOpen()
            txn = try produceTxn()
            if txn != leaseTxn {
                throw KofkaError(.invalidState, "the transaction these records were produced in ended before they were handed over; they are not written")
            }
            meta = try broker.topicMeta(topic, autoCreate: true)
            maxBytes = broker.maxMessageBytes(meta)
            spread = UInt64(nextSpreads(meta.partitions, count: count))
        } catch {
            // Refused as a whole: every record reports the error, in its place in the queue.
            whole = Self.kofkaError(error)
            txn = 0
        }
        var i = 0
        records { r in
            var partition = r.partition ?? -1
            var refused = whole
            if refused == nil {
                do {
                    // the i-th record gets the spread the i-th call of `produce` would have
                    partition = try choosePartition(meta, r.partition, key: r.key, sticky: Int32((spread + UInt64(i)) % UInt64(meta.partitions)))
                    try check(size: r.size, timestampMs: r.timestampMs, meta, maxBytes: maxBytes)
                } catch {
                    refused = Self.kofkaError(error)
                }
            }
            run.append(topic: 0, partition: partition, explicit: r.partition != nil, timestampMs: r.timestampMs,
                       key: r.key, value: r.value, headers: r.encodedHeaders, size: r.size, opaque: r.opaque,
                       quiet: r.opaque == 0, enqueuedNs: now, txn: txn, refused: refused)
            i += 1
        }
        guard i == count else {
            releaseLease(credits)
            throw KofkaError(.invalidArg, "\(i) records handed over where \(count) were announced")
        }
        try queue.enqueueReserved(run, meta: meta, credits: credits, lingerMs: config.lingerMs, batch: config.batchNumMessages)
    }

    private static func kofkaError(_ error: any Error) -> KofkaError {
        error as? KofkaError ?? KofkaError(.storage, "\(error)")
    }

    /// Releases `credits` unused slots of a lease without queueing anything (never more slots
    /// than are reserved).
    public func releaseLease(_ credits: Int) { queue.release(credits) }

    /// Slots reserved by leases and not yet filled or released.
    public var leasedSlots: Int { queue.reservedSlots }

    /// Serves delivery reports on the calling thread, waiting up to `timeout` for the first
    /// (nil = until one arrives). Returns how many were served.
    @discardableResult
    public func poll(timeout: Duration? = .zero, _ handler: (DeliveryReport) -> Void) -> Int {
        pollViews(timeout: timeout) { handler($0.report) }
    }

    /// Keeps `flag` at 1 while delivery reports wait to be served and at 0 once none do (see
    /// `kofka_producer_set_ready_flag`); nil stops that. Once this returns, an earlier flag is
    /// never written again. Throws `.closed` once `retireReadyFlag` ran.
    package func setReadyFlag(_ flag: UnsafeMutablePointer<Int32>?) throws {
        try queue.setReadyFlag(flag)
    }

    /// Unregisters the ready flag for good (the handle is closing): no flag is written after
    /// this returns, even by a registration that raced it.
    package func retireReadyFlag() {
        queue.retireReadyFlag()
    }

    /// `poll` with each report as views valid during the call (the C face's callback).
    @discardableResult
    package func pollViews(timeout: Duration? = .zero, _ handler: (DeliveryView) -> Void) -> Int {
        withoutActuallyEscaping(handler) { h in queue.serve(deadline: broker.clock.deadline(after: timeout), reporting(h)) }
    }

    /// Waits until every queued record is delivered or failed, serving reports to `handler`.
    public func flush(timeout: Duration? = nil, _ handler: (DeliveryReport) -> Void = { _ in }) throws {
        try flushViews(timeout: timeout) { handler($0.report) }
    }

    /// `flush` with each report as views valid during the call.
    package func flushViews(timeout: Duration? = nil, _ handler: (DeliveryView) -> Void) throws {
        if !withoutActuallyEscaping(handler, do: { h in queue.drain(deadline: broker.clock.deadline(after: timeout), reporting(h)) }) {
            throw KofkaError(.timedOut, "flush timed out with \(queue.outstanding) record(s) undelivered", retriable: true)
        }
    }

    /// Flushes (up to `timeout`), then closes: records still queued fail with `.timedOut` in
    /// their reports, and a transaction left open or abort-only is aborted so it does not hold
    /// read_committed readers back. Idempotent. Another thread inside a send, a retry backoff,
    /// `poll` or `flush` returns (`.closed` for a send that had not started).
    public func close(timeout: Duration? = nil, _ handler: (DeliveryReport) -> Void = { _ in }) throws {
        try closeViews(timeout: timeout) { handler($0.report) }
    }

    /// `close` with each report as views valid during the call.
    package func closeViews(timeout: Duration? = nil, _ handler: (DeliveryView) -> Void) throws {
        if state.withLock({ $0.closed }) { return }
        let flushed = broker.closed ? true : withoutActuallyEscaping(handler) { h in queue.drain(deadline: broker.clock.deadline(after: timeout), reporting(h)) }
        let first = state.withLock { s -> Bool in
            defer { s.closed = true }
            return !s.closed
        }
        guard first else { return }
        sequencer.interrupt()
        queue.stopAndWait()
        queue.failAll(KofkaError(.timedOut, "the producer was closed before the record was delivered"))
        _ = withoutActuallyEscaping(handler) { h in queue.serve(deadline: 0, reporting(h)) }
        let open: ProducerIdentity? = state.withLock { s in
            switch s.txn {
            case .open(let t), .abortable(let t, _): ProducerIdentity(pid: s.pid, epoch: s.epoch, txn: t)
            default: nil
            }
        }
        if let id = open, !broker.closed { _ = try? broker.abortTransaction(id) }
        if !flushed { throw KofkaError(.timedOut, "close timed out: records were still queued") }
    }

    /// Called by the background writer for a fire-and-forget (`acks=0`) batch: one attempt,
    /// outcome ignored, as acks=0 promises.
    func writeUnacknowledged(_ meta: TopicMeta, _ partition: Int32, _ batch: RecordBatch) {
        _ = try? broker.appendRequest(meta, partition, batch, identity: nil, baseSeq: 0)
    }

    /// Called by the background writer for each batch of records produced in transaction `txn`
    /// (0 = none), `sizes` their `Record.size`: one result per record. A record the topic's
    /// `max.message.bytes` no longer takes fails alone; timestamps of 0 become now.
    func deliverQueued(_ meta: TopicMeta, _ partition: Int32, _ input: RecordBatch, sizes: [Int], txn: Int64) -> [Result<Int64, KofkaError>] {
        var batch = input
        batch.resolveTimestamps(now: broker.clock.wallMs())
        var bad: [Int: KofkaError] = [:]
        let maxBytes = broker.maxMessageBytes(meta)
        for (i, size) in sizes.enumerated() where size > maxBytes {
            do { try check(size: size, timestampMs: 0, meta, maxBytes: maxBytes) } catch let e as KofkaError { bad[i] = e } catch {}
        }
        if !bad.isEmpty { batch = batch.select(sizes.indices.filter { bad[$0] == nil }) }
        var results: [Result<Int64, KofkaError>] = []
        results.reserveCapacity(sizes.count)
        do {
            try checkOpen()
            let base = batch.count == 0 ? -1 : try deliver(meta, partition, batch, queuedIn: config.transactionalId == nil ? nil : txn)
            var j: Int64 = 0
            for i in sizes.indices {
                if let e = bad[i] { results.append(.failure(e)); continue }
                results.append(.success(base < 0 ? -1 : base + j))
                j += 1
            }
        } catch let e as KofkaError {
            results = sizes.indices.map { .failure(bad[$0] ?? e) }
        } catch {
            results = sizes.indices.map { _ in .failure(KofkaError(.storage, "\(error)")) }
        }
        return results
    }
}
