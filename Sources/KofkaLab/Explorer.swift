import Kofka
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

// The sequential executor: one thread runs a history's operations in order on one broker whose
// clock only moves when an operation says so. Every timeout is far longer than the real time a
// history takes, so the run is deterministic: replaying the same operations gives the same result.

/// The timeouts a history runs with. The sequential mode's are far longer than a history's real
/// duration, so only the clock's stalls (3 s, 15 s, 25 s) and the drain's jump cross them.
public struct LabTiming: Sendable {
    public var shortSessionMs = 10_000
    public var longSessionMs = 3_600_000
    public var shortTxnMs = 20_000
    public var longTxnMs = 3_000_000
    /// The drain phase moves the clock past every timeout.
    public var drainAdvanceMs: Int64 = 4_000_000
    /// Steps of a one-member stall: shorter than any session, so members that poll between steps stay.
    public var stallStepMs: Int64 = 3_000
    /// Drain rounds at most, and rounds in a row without progress that make a partition that
    /// does not drain a liveness violation.
    public var drainRounds = 400
    public var drainStaleRounds = 30
    /// SQLite `sqlite.busy.timeout.ms`: short in the sequential mode, where only the lab's own
    /// busy writer holds the lock; longer where threads or processes really contend.
    public var busyTimeoutMs = 20
    public init() {}
}

/// A fault the explorer puts into its own application or model (never into Kofka), so that a
/// test can prove each rule is really checked: every sabotage must be reported as `expected`.
public enum LabSabotage: String, Sendable, CaseIterable {
    /// The exactly-once application writes no output for the first record it processes, yet commits its offset.
    case dropRecord
    /// The exactly-once application writes the first record it processes twice, in one transaction.
    case duplicateRecord
    /// The model is told the first acknowledged send went one offset further than it did.
    case misreportAck
    /// After its first abort, the exactly-once application writes a record of the aborted
    /// transaction into its next one (what bug "abort leaves queued records behind" does).
    case writeAfterAbort
    /// In the drain, the survivors hang and never poll.
    case hangInDrain
    /// The at-least-once application seeks back to offset 0 and commits, once it has committed more.
    case commitBackwards
    /// The at-most-once application seeks one record forward after a poll.
    case skipRecord

    /// The violation the sabotage must cause.
    public var expected: LabViolationKind {
        switch self {
        case .dropRecord: .lostOutput
        case .duplicateRecord: .duplicateOutput
        case .misreportAck: .ackMismatch
        case .writeAfterAbort: .lateWrite
        case .hangInDrain: .liveness
        case .commitBackwards: .offsetsBackwards
        case .skipRecord: .amoSkipped
        }
    }
}

/// The result of running one history.
public struct LabRunResult: Sendable {
    public var violations: [LabViolation]
    /// Operations executed (history operations plus drain steps).
    public var opsRun: Int
    /// Real seconds it took.
    public var seconds: Double
    /// Op-by-op trace (when asked for).
    public var trace: [String]
    public var first: LabViolation? { violations.first }
}

/// A plain producer P<i>.
final class LabPlainClient {
    let index: Int
    let spec: LabProducerSpec
    var producer: Producer?
    var incarnation = 0
    /// Number of the operation it runs now (labels name it).
    var opNumber = 0
    init(_ index: Int, _ spec: LabProducerSpec) { self.index = index; self.spec = spec }
}

/// The transactional input producer T.
final class LabTxClient {
    let spec: LabTxnSpec
    var producer: Producer?
    var incarnation = 0
    var seq = 0
    /// Label of the open transaction.
    var label: String?
    /// Ids sent in the open transaction (sent again if it has to be redone).
    var work: [UInt64] = []
    var needsAbort = false
    init(_ spec: LabTxnSpec) { self.spec = spec }
}

/// One pipeline slot and the instance running in it.
final class LabPipe {
    let kind: PipeKind
    let slot: Int
    /// eo: the slot's producer settings.
    let spec: LabTxnSpec?
    var incarnation = 0
    var consumer: Consumer?
    var producer: Producer?
    var clientId = ""
    var txnSeq = 0
    /// eo: label of the open transaction.
    var label: String?
    /// Polled, not yet written out.
    var buffer: [Message] = []
    /// eo: written out in the open transaction (sent again on a redo).
    var processed: [Message] = []
    /// eo: highest offset polled per partition in the open transaction.
    var polledMax: [TopicPartition: Int64] = [:]
    var needsAbort = false
    /// late: partitions held after the last poll, and the member id then.
    var lastHeld: Set<TopicPartition> = []
    var lastMember: String?
    /// Number of the operation it runs now (labels name it).
    var opNumber = 0
    /// eo, sabotage `writeAfterAbort`: a record of an aborted transaction, written at the next begin.
    var zombie: (label: String, message: Message)?
    /// eo: transactions committed; the drain's poll size (one record after a failed round).
    var commits = 0
    var drainMax = 500
    var running: Bool { consumer != nil }
    init(_ kind: PipeKind, _ slot: Int, _ spec: LabTxnSpec?) { self.kind = kind; self.slot = slot; self.spec = spec }
    var name: String { "\(kind.rawValue)\(slot)" }
}

/// Holds another handle's write lock on a SQLite file while one call runs (a busy writer).
final class LabLockHolder: @unchecked Sendable {
    let broker: Broker
    private let held = DispatchSemaphore(value: 0)
    private let release = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    init(path: String) throws { broker = try Broker("sqlite:" + path) }

    func hold() {
        DispatchQueue.global().async { [self] in
            _ = try? broker.storage.write { _ in
                held.signal()
                release.wait()
            }
            done.signal()
        }
        held.wait()
    }

    func unhold() {
        release.signal()
        done.wait()
    }
}

/// Runs histories.
final class LabWorld {
    let history: LabHistory
    let storage: String
    let clock = SteppedClock()
    let broker: Broker
    let model = LabModel()
    private let lockHolder: LabLockHolder?
    private var busyArmed = false
    private let tracing: Bool
    private(set) var trace: [String] = []
    private(set) var opsRun = 0
    let partitions: Int32
    let timing: LabTiming
    /// Threaded mode: clients run concurrently, so checks that need a still group are off.
    let concurrent: Bool
    private let lock = LabLock()
    /// A fault in the explorer's own application or model (tests only); it fires once.
    var sabotage: LabSabotage?
    private var sabotageFired = false

    var plain: [LabPlainClient]
    var tx: LabTxClient?
    var pipes: [PipeKind: [LabPipe]] = [:]
    private var mirrors: [String: Consumer] = [:]
    private var kindsRun: Set<PipeKind> = []

    static let input = "in"

    init(_ history: LabHistory, storage: String, trace: Bool = false, timing: LabTiming = LabTiming(),
         concurrent: Bool = false, createTopics: Bool = true, sabotage: LabSabotage? = nil) throws {
        self.history = history
        self.sabotage = sabotage
        self.timing = timing
        self.concurrent = concurrent
        self.storage = storage
        self.tracing = trace
        let s = history.setup
        partitions = s.partitions
        var cfg: [(String, String)] = [("auto.create.topics.enable", "false")]
        if s.storageFaultRate > 0 {
            cfg += [("fault.storage.failure.rate", "\(s.storageFaultRate)"), ("fault.storage.seed", "\(s.storageFaultSeed)")]
        }
        var holderPath: String? = nil
        if storage.hasPrefix("sqlite:") {
            cfg += [("sqlite.busy.timeout.ms", "\(concurrent ? max(timing.busyTimeoutMs, 200) : timing.busyTimeoutMs)"), ("sqlite.synchronous", "normal")]
            if !concurrent { holderPath = String(storage.dropFirst("sqlite:".count)) }
        }
        broker = try Broker(storage, config: try BrokerConfig(cfg), clock: clock)
        lockHolder = try holderPath.map { try LabLockHolder(path: $0) }
        if createTopics {
            try broker.createTopic(Self.input, partitions: s.partitions)
            for k in PipeKind.allCases where s.slots(k) > 0 { try broker.createTopic(k.output, partitions: s.partitions) }
        }
        plain = s.producers.enumerated().map { LabPlainClient($0, $1) }
        tx = s.txnInput.map(LabTxClient.init)
        for k in PipeKind.allCases {
            pipes[k] = (0..<s.slots(k)).map { LabPipe(k, $0, k == .eo ? s.eoSlots[$0] : nil) }
        }
        for t in [Self.input] + PipeKind.allCases.filter({ s.slots($0) > 0 }).map(\.output) {
            var c = ConsumerConfig()
            c.isolationLevel = .readUncommitted
            let m = try broker.consumer(c)
            try m.assign(t, partitions: Array(0..<s.partitions))
            mirrors[t] = m
        }
    }

    func close() {
        broker.close()
        lockHolder?.broker.close()
    }

    // MARK: Running

    /// Runs every operation, then the end phase; stops at the first violation.
    func run() -> LabRunResult {
        let t0 = monoNs()
        for (i, op) in history.ops.enumerated() {
            model.op = history.numbers[i]
            if tracing { note("\(history.numbers[i]). \(op)   [at \(format2(Double(monoNs() - t0) / 1e6)) ms]") }
            execute(op, number: history.numbers[i])
            opsRun += 1
            observe()
            if model.failed { break }
        }
        if !model.failed {
            model.op = nil
            note("end phase   [at \(format2(Double(monoNs() - t0) / 1e6)) ms]")
            endPhase()
        }
        return LabRunResult(violations: model.violations, opsRun: opsRun, seconds: Double(monoNs() - t0) / 1e9, trace: trace)
    }

    func note(_ s: String) { if tracing { trace.append(s) } }

    /// True once, the first time it is asked about the sabotage in force.
    func sabotaging(_ kind: LabSabotage) -> Bool {
        guard sabotage == kind, !sabotageFired else { return false }
        sabotageFired = true
        note("   (sabotage: \(kind.rawValue))")
        return true
    }

    func execute(_ op: LabOp, number: Int) {
        switch op {
        case .send(let p, _, _), .flush(let p), .restartProducer(let p): plain[p].opNumber = number
        case .start(let k, let s, _), .poll(let k, let s, _), .process(let k, let s, _, _), .commit(let k, let s, _),
             .leave(let k, let s), .closeNow(let k, let s), .crash(let k, let s, _):
            pipe(k, s)?.opNumber = number
        case .abort(let s, _): pipe(.eo, s)?.opNumber = number
        default: break
        }
        switch op {
        case .send(let p, let ids, let style): plainSend(plain[p], ids, style)
        case .flush(let p): plainFlush(plain[p])
        case .restartProducer(let p): plainRestart(plain[p])
        case .txBegin: if let t = tx { txEnsureOpen(t) }
        case .txSend(let ids, let style, let d): if let t = tx { txSend(t, ids, style, deferReaction: d) }
        case .txCommit: if let t = tx { txCommit(t) }
        case .txAbort(let z): if let t = tx { txAbort(t, zeroTimeout: z) }
        case .txCrash: if let t = tx { txCrash(t) }
        case .txClose: if let t = tx { txClose(t) }
        case .start(let k, let s, let short): if let p = pipe(k, s) { start(p, shortSession: short) }
        case .poll(let k, let s, let m): if let p = pipe(k, s) { poll(p, max: m) }
        case .process(let k, let s, let style, let d): if let p = pipe(k, s) { process(p, style, deferReaction: d) }
        case .commit(let k, let s, let a): if let p = pipe(k, s), k == .eo { eoCommit(p, commitAnyway: a) }
        case .abort(let s, let z): if let p = pipe(.eo, s) { eoAbort(p, zeroTimeout: z) }
        case .leave(let k, let s): if let p = pipe(k, s) { leave(p) }
        case .closeNow(let k, let s): if let p = pipe(k, s) { closeNow(p) }
        case .crash(let k, let s, let a): if let p = pipe(k, s) { crash(p, afterOffsets: a) }
        case .stall(let ms): clock.advance(ms: ms)
        case .stallOne(let k, let s, let ms): stallOne(pipe(k, s), ms: ms)
        case .busyNext: if lockHolder != nil { busyArmed = true }
        }
    }

    func pipe(_ k: PipeKind, _ s: Int) -> LabPipe? {
        guard let ps = pipes[k], s >= 0, s < ps.count else { return nil }
        return ps[s]
    }

    /// Runs `body`; if a busy writer was armed, it holds the file's write lock meanwhile.
    func busy<T>(_ body: () throws -> T) rethrows -> T {
        guard busyArmed, let h = lockHolder else { return try body() }
        busyArmed = false
        h.hold()
        defer { h.unhold() }
        note("   (another handle holds the write lock)")
        return try body()
    }

    /// Reads what storage gained into the mirror, and samples the groups' committed offsets.
    func observe() {
        for (_, c) in mirrors.sorted(by: { $0.key < $1.key }) {
            while let msgs = try? c.pollBatch(max: 10_000, timeout: .zero), !msgs.isEmpty { model.ingest(msgs) }
        }
        for k in PipeKind.allCases where history.setup.slots(k) > 0 {
            if let d = try? broker.describeGroup(k.group) { model.observeCommitted(k.group, d.committed, generation: d.generation) }
        }
    }

    func hw(_ topic: String) -> [Int32: Int64] {
        var out: [Int32: Int64] = [:]
        for p in 0..<partitions { out[p] = (try? broker.watermarks(topic, p).high) ?? 0 }
        return out
    }

    func errText(_ e: Error) -> String { (e as? KofkaError).map { "\($0.code.name)" } ?? "\(e)" }

    /// Flags an OUT_OF_ORDER_SEQUENCE: idempotence promises it never happens to a well-behaved producer.
    func checkSequence(_ e: Error, _ who: String) {
        if let k = e as? KofkaError, k.code == .outOfOrderSequence {
            model.violation(.outOfOrderSequence, "\(who): \(k.message)")
        }
    }

    // MARK: Delivery reports

    func report(_ r: DeliveryReport, plain: Bool) {
        guard let rec = labelOf(r.record) else { return }
        switch r.result {
        case .success(let md):
            model.acknowledged(TopicPartition(r.topic, md.partition), offset: md.offset, label: rec.label, id: rec.id, plain: plain)
            note("   report \(rec.label) id \(rec.id): \(r.topic)[\(md.partition)]@\(md.offset)")
        case .failure(let e):
            checkSequence(e, "delivery report of id \(rec.id) (\(rec.label))")
            note("   report \(rec.label) id \(rec.id): \(e.code.name)")
        }
    }

    func labelOf(_ r: Record) -> (label: String, id: UInt64)? {
        guard let id = LabValue.decode(r.value) else { return nil }
        let l = r.headers.first { $0.name == "l" }.map { String(decoding: $0.value ?? [], as: UTF8.self) } ?? ""
        return (l, id)
    }

    /// Sends `records` to `topic` in `style`; returns the count written before the first failure
    /// and that failure. Acknowledgements go to the model; `produce` counts as written (its
    /// reports decide later).
    func write(_ p: Producer, _ topic: String, _ records: [Record], _ style: SendStyle, plain: Bool) -> (Int, Error?) {
        func ack(_ r: Record, _ md: RecordMetadata) {
            guard let l = labelOf(r) else { return }
            let offset = md.offset >= 0 && sabotaging(.misreportAck) ? md.offset + 1 : md.offset
            model.acknowledged(TopicPartition(topic, md.partition), offset: offset, label: l.label, id: l.id, plain: plain)
        }
        switch style {
        case .send:
            for (i, r) in records.enumerated() {
                do {
                    let md = try p.send(topic, r)
                    ack(r, md)
                    note("   sent id \(labelOf(r)?.id ?? 0): \(md)")
                } catch {
                    note("   send id \(labelOf(r)?.id ?? 0): \(errText(error))")
                    return (i, error)
                }
            }
            return (records.count, nil)
        case .batch:
            do {
                let results = try p.sendBatch(topic, records)
                var firstErr: (Int, Error)? = nil
                for (i, res) in results.enumerated() {
                    switch res {
                    case .success(let md): ack(records[i], md)
                    case .failure(let e): if firstErr == nil { firstErr = (i, e) }
                    }
                }
                note("   batch of \(records.count): " + results.map { r in (try? r.get()).map { "@\($0.offset)" } ?? "err" }.joined(separator: " "))
                if let (i, e) = firstErr { note("   batch: \(errText(e)) at record \(i)"); return (i, e) }
                return (records.count, nil)
            } catch {
                return (0, error)
            }
        case .produce:
            for (i, r) in records.enumerated() {
                do { try p.produce(topic, r) } catch { note("   produce: \(errText(error))"); return (i, error) }
            }
            note("   queued \(records.count)")
            return (records.count, nil)
        }
    }

    // MARK: Plain producers

    func plainProducer(_ c: LabPlainClient) -> Producer? {
        if let p = c.producer { return p }
        c.incarnation += 1
        var cfg: [(String, String)] = [("delivery.mode", c.spec.mode.rawValue), ("retry.backoff.ms", "0"),
                                       ("fault.request.loss.rate", "\(c.spec.requestLoss)"), ("fault.ack.loss.rate", "\(c.spec.ackLoss)"),
                                       ("fault.seed", "\(c.spec.faultSeed &+ UInt64(c.incarnation) &* 1000)"),
                                       ("linger.ms", "900000"), ("batch.num.messages", "100000"), ("client.id", "p\(c.index)")]
        if let r = c.spec.retries { cfg.append(("retries", "\(r)")) }
        do {
            c.producer = try broker.producer(try ProducerConfig(cfg))
        } catch {
            note("   p\(c.index) cannot start: \(errText(error))")
        }
        return c.producer
    }

    func plainSend(_ c: LabPlainClient, _ ids: [UInt64], _ style: SendStyle) {
        guard let p = plainProducer(c) else { return }
        let label = "p\(c.index).\(c.opNumber)"
        for id in ids { model.plainSent(id, mode: c.spec.mode) }
        let (_, e) = write(p, Self.input, ids.map { LabRecord.make(id: $0, label: label) }, style, plain: true)
        if let e { checkSequence(e, "producer p\(c.index)") }
        // fire-and-forget writes happen in the background: wait for them so the history stays deterministic
        if c.spec.mode == .atMostOnce { plainFlush(c) }
    }

    func plainFlush(_ c: LabPlainClient) {
        guard let p = c.producer else { return }
        do { try p.flush(timeout: nil) { self.report($0, plain: true) } } catch { note("   flush: \(errText(error))") }
    }

    func plainRestart(_ c: LabPlainClient) {
        guard let p = c.producer else { return }
        do { try p.close(timeout: nil) { self.report($0, plain: true) } } catch { note("   close: \(errText(error))") }
        c.producer = nil
    }

    // MARK: The transactional input producer

    func txConfig(_ tid: String, _ s: LabTxnSpec, incarnation: Int) throws -> ProducerConfig {
        try ProducerConfig([("delivery.mode", "exactly-once"), ("transactional.id", tid), ("retries", "\(s.retries)"),
                            ("retry.backoff.ms", "0"), ("fault.request.loss.rate", "\(s.requestLoss)"),
                            ("fault.ack.loss.rate", "\(s.ackLoss)"), ("fault.seed", "\(s.faultSeed &+ UInt64(incarnation) &* 1000)"),
                            ("linger.ms", "900000"), ("batch.num.messages", "100000"),
                            ("transaction.timeout.ms", "\(s.shortTxnTimeout ? timing.shortTxnMs : timing.longTxnMs)")])
    }

    /// Starts a transactional producer for `tid`: init_transactions fences earlier incarnations,
    /// whose abandoned transactions the model then counts as ended.
    func startTransactional(_ tid: String, _ spec: LabTxnSpec, incarnation: Int, labelPrefix: String, topic: String) -> Producer? {
        do {
            let p = try broker.producer(try txConfig(tid, spec, incarnation: incarnation))
            try busy { try p.initTransactions() }
            let hws = hw(topic)
            for l in model.abandonedLabels(prefix: labelPrefix) { model.ended(l, .fenced, hw: hws) }
            return p
        } catch {
            note("   \(tid) cannot start: \(errText(error))")
            return nil
        }
    }

    func txBeginNew(_ t: LabTxClient) -> Bool {
        guard let p = t.producer else { return false }
        let label = "t\(t.incarnation).\(t.seq + 1)"
        if let e = beginTransaction(p, label, topic: Self.input, shortTimeout: t.spec.shortTxnTimeout, who: "T") {
            if e.code == .producerFenced { t.producer = nil }
            return false
        }
        t.seq += 1
        t.label = label
        t.work = []
        return true
    }

    /// Begins a transaction the model will know as `label`; nil when it began, else the error.
    func beginTransaction(_ producer: Producer, _ label: String, topic: String, shortTimeout: Bool, who: String) -> KofkaError? {
        do {
            try busy { try producer.beginTransaction() }
        } catch {
            note("   \(who) begin: \(errText(error))")
            return error as? KofkaError ?? KofkaError(.storage, "\(error)")
        }
        model.began(label, topic: topic, skewMs: clock.skewMs, timeoutMs: Int64(shortTimeout ? timing.shortTxnMs : timing.longTxnMs))
        note("   \(who) began \(label)")
        return nil
    }

    @discardableResult
    func txEnsureOpen(_ t: LabTxClient) -> Bool {
        if t.producer == nil {
            t.incarnation += 1
            t.label = nil
            t.needsAbort = false
            t.producer = startTransactional("tin", t.spec, incarnation: t.incarnation, labelPrefix: "t", topic: Self.input)
            if t.producer == nil { return false }
        }
        if t.needsAbort { txAbortAndRedo(t) }
        if t.label != nil { return true }
        return txBeginNew(t)
    }

    func txSend(_ t: LabTxClient, _ ids: [UInt64], _ style: SendStyle, deferReaction: Bool) {
        guard txEnsureOpen(t), let p = t.producer, let label = t.label else { return }
        t.work += ids
        for id in ids { model.txnWrote(id, label: label) }
        let (_, e) = write(p, Self.input, ids.map { LabRecord.make(id: $0, label: label) }, style, plain: false)
        if let e { txFailed(t, e, deferReaction: deferReaction) }
    }

    /// The application's reaction to a failed transactional send or commit.
    func txFailed(_ t: LabTxClient, _ e: Error, deferReaction: Bool) {
        checkSequence(e, "transactional producer T")
        if (e as? KofkaError)?.code == .producerFenced {
            t.producer = nil
            return
        }
        if deferReaction { t.needsAbort = true } else { txAbortAndRedo(t) }
    }

    /// Aborts the open transaction and sends the same ids again in a new one, as an application
    /// that must not lose them would (twice at most, then it gives up on them).
    func txAbortAndRedo(_ t: LabTxClient, attempts: Int = 2) {
        let ids = t.work
        guard txAbortOnly(t, timeout: nil) else { return }
        guard attempts > 0, !ids.isEmpty, txBeginNew(t), let p = t.producer, let label = t.label else { return }
        note("   T redoes ids \(ids.map(String.init).joined(separator: ",")) in \(label)")
        t.work = ids
        for id in ids { model.txnWrote(id, label: label) }
        let (_, e) = write(p, Self.input, ids.map { LabRecord.make(id: $0, label: label) }, .batch, plain: false)
        if let e {
            checkSequence(e, "transactional producer T")
            txAbortAndRedo(t, attempts: attempts - 1)
        }
    }

    /// Aborts T's open transaction; true when it ended.
    @discardableResult
    func txAbortOnly(_ t: LabTxClient, timeout: Duration?) -> Bool {
        guard let p = t.producer, let label = t.label else { t.needsAbort = false; return true }
        if let e = abortTransaction(p, label, topic: Self.input, who: "T", timeout: timeout) {
            if e.code == .producerFenced { t.producer = nil; t.label = nil }
            return false
        }
        t.label = nil
        t.work = []
        t.needsAbort = false
        return true
    }

    /// Aborts `label` on `producer`; nil when the application saw it end, else the error.
    func abortTransaction(_ producer: Producer, _ label: String, topic: String, who: String, timeout: Duration?) -> KofkaError? {
        do {
            try busy { try producer.abortTransaction(timeout: timeout) { self.report($0, plain: false) } }
        } catch {
            note("   \(who) abort: \(errText(error))")
            return error as? KofkaError ?? KofkaError(.storage, "\(error)")
        }
        model.ended(label, .aborted, hw: hw(topic))
        note("   \(who) aborted \(label)")
        return nil
    }

    func txCommit(_ t: LabTxClient) {
        guard t.producer != nil, t.label != nil else { return }
        if t.needsAbort { txAbortAndRedo(t) }
        guard let p = t.producer, let label = t.label else { return }
        do {
            try p.commitTransaction(timeout: nil) { self.report($0, plain: false) }
        } catch {
            note("   T commit \(label): \(errText(error))")
            checkSequence(error, "transactional producer T")
            if let k = error as? KofkaError, k.code.isRetriable { return }
            if (error as? KofkaError)?.code == .producerFenced { model.ended(label, .commitUnknown, hw: hw(Self.input)); t.producer = nil; t.label = nil; return }
            txAbortAndRedo(t)
            return
        }
        model.ended(label, .committed, hw: hw(Self.input))
        note("   T committed \(label)")
        t.label = nil
        t.work = []
    }

    func txAbort(_ t: LabTxClient, zeroTimeout: Bool) {
        guard t.label != nil else { return }
        txAbortOnly(t, timeout: zeroTimeout ? .zero : nil)
    }

    func txCrash(_ t: LabTxClient) {
        guard t.producer != nil else { return }
        if let l = t.label { model.abandoned(l) }
        t.producer = nil   // abandoned without close: its open transaction stays open
        t.label = nil
        t.needsAbort = false
    }

    func txClose(_ t: LabTxClient) {
        guard let p = t.producer else { return }
        do { try p.close(timeout: nil) { self.report($0, plain: false) } } catch { note("   T close: \(errText(error))") }
        if let l = t.label { model.ended(l, .closed, hw: hw(Self.input)) }
        t.producer = nil
        t.label = nil
        t.needsAbort = false
    }

    // MARK: Pipelines

    func consumerConfig(_ p: LabPipe, shortSession: Bool) throws -> ConsumerConfig {
        let mode: DeliveryMode = switch p.kind { case .eo: .exactlyOnce; case .alo, .late: .atLeastOnce; case .amo: .atMostOnce }
        var cfg: [(String, String)] = [("group.id", p.kind.group), ("delivery.mode", mode.rawValue), ("client.id", p.clientId),
                                       ("session.timeout.ms", "\(shortSession ? timing.shortSessionMs : timing.longSessionMs)"),
                                       ("max.poll.records", "500")]
        if p.kind == .late { cfg.append(("auto.offset.reset", "latest")) }
        return try ConsumerConfig(cfg)
    }

    func start(_ p: LabPipe, shortSession: Bool) {
        guard !p.running else { return }
        p.incarnation += 1
        let inc = String(p.incarnation)
        p.clientId = "\(p.name)-i" + String(repeating: "0", count: max(0, 3 - inc.count)) + inc
        p.label = nil
        p.buffer = []
        p.processed = []
        p.polledMax = [:]
        p.needsAbort = false
        p.lastHeld = []
        p.lastMember = nil
        let producer: Producer?
        if p.kind == .eo, let spec = p.spec {
            producer = startTransactional("eo-\(p.slot)", spec, incarnation: p.incarnation, labelPrefix: "e\(p.slot).", topic: p.kind.output)
        } else {
            let mode: DeliveryMode = p.kind == .amo ? .atMostOnce : .atLeastOnce
            producer = try? broker.producer(try ProducerConfig([("delivery.mode", mode.rawValue), ("retry.backoff.ms", "0"),
                                                                ("fault.ack.loss.rate", mode == .atLeastOnce ? "0.1" : "0"),
                                                                ("fault.seed", "\(history.seed &+ UInt64(p.slot * 7 + p.incarnation))"),
                                                                ("linger.ms", "900000"), ("batch.num.messages", "100000")]))
        }
        guard let producer else { return }
        do {
            let c = try broker.consumer(try consumerConfig(p, shortSession: shortSession))
            try busy { try c.subscribe([Self.input]) }
            p.consumer = c
            p.producer = producer
            lock.with { _ = kindsRun.insert(p.kind) }
            note("   \(p.clientId) joined \(p.kind.group)")
        } catch {
            note("   \(p.name) cannot join: \(errText(error))")
            try? producer.close(timeout: .zero)
        }
    }

    /// A poll as the kind's application does it; returns how many records it got.
    @discardableResult
    func poll(_ p: LabPipe, max: Int) -> Int {
        guard p.running, let c = p.consumer else { return 0 }
        if p.kind == .eo && p.needsAbort { eoAbortAndRecover(p) }
        var lateCandidates: [Int32: Int64] = [:]
        var committedBefore: Set<Int32> = []
        if p.kind == .late && !concurrent {
            for part in 0..<partitions {
                let tp = TopicPartition(Self.input, part)
                if (try? broker.committedOffset(group: p.kind.group, tp)) != nil { committedBefore.insert(part) }
                lateCandidates[part] = model.modelLSO(tp, skewMs: clock.skewMs)
            }
        }
        // sabotage commitBackwards: armed once the group has committed something
        let backwards = sabotage == .commitBackwards && !sabotageFired
            && c.assigned.contains { ((try? broker.committedOffset(group: p.kind.group, $0)) ?? 0) > 0 }
        let msgs: [Message]
        do {
            msgs = try busy { try c.pollBatch(max: max, timeout: .zero) }
        } catch {
            note("   \(p.name) poll: \(errText(error))")
            // a rebalance inside a transaction: the transaction cannot commit these records
            if p.kind == .eo && p.label != nil && ((error as? KofkaError)?.code == .rebalanced || p.producer?.transactionRequiresAbort == true) {
                eoAbortAndRecover(p, rewind: true)
            }
            return 0
        }
        note("   \(p.name) polled " + (msgs.isEmpty ? "nothing" : msgs.map { "\($0.partition)@\($0.offset)" }.joined(separator: " ")))
        checkOwner(p, msgs)
        if p.kind == .late && !concurrent { trackLate(p, candidates: lateCandidates, committedBefore: committedBefore) }
        guard !msgs.isEmpty else { return 0 }
        switch p.kind {
        case .eo:
            if p.label == nil && !eoBegin(p) {
                if p.running { eoRewind(p) }   // not processed: read them again
                return msgs.count
            }
            p.buffer += msgs
            for m in msgs {
                let tp = TopicPartition(m.topic, m.partition)
                p.polledMax[tp] = Swift.max(p.polledMax[tp] ?? -1, m.offset)
            }
        case .amo:
            model.amoPolled(msgs)
            p.buffer += msgs
            if let m = msgs.last, sabotage == .skipRecord,
               ((try? broker.watermarks(m.topic, m.partition).high) ?? 0) > m.offset + 2, sabotaging(.skipRecord) {
                try? c.seek(m.topic, m.partition, m.offset + 2)
            }
        case .alo, .late:
            guard let prod = p.producer else { return msgs.count }
            let label = "\(p.name).\(p.incarnation).\(p.opNumber)"
            let (_, e) = write(prod, p.kind.output, msgs.map { outRecord($0, label) }, .batch, plain: false)
            if let e {
                // not written: must not be committed by the next poll
                note("   \(p.name) rewinds after \(errText(e))")
                try? c.seekToCommitted()
            } else if backwards, sabotaging(.commitBackwards) {
                for tp in c.assigned { try? c.seek(tp.topic, tp.partition, 0) }
                try? c.commit()
            }
        }
        return msgs.count
    }

    func outRecord(_ m: Message, _ label: String) -> Record {
        LabRecord.make(id: LabValue.decode(m.value) ?? 0, label: label, src: LabSource(m.partition, m.offset), key: m.key)
    }

    /// A poll may return records only of partitions its member holds in the group.
    func checkOwner(_ p: LabPipe, _ msgs: [Message]) {
        guard !msgs.isEmpty, !concurrent else { return }
        guard let d = try? broker.describeGroup(p.kind.group) else { return }
        let me = d.members.first { $0.clientId == p.clientId }
        for tp in Set(msgs.map { TopicPartition($0.topic, $0.partition) }).sorted() where !(me?.held.contains(tp) ?? false) {
            let holder = d.members.first { $0.held.contains(tp) }?.clientId ?? "nobody"
            model.violation(.foreignPoll, "\(p.clientId) polled records of \(tp), which \(holder) holds in \(p.kind.group) generation \(d.generation)\(me == nil ? " (\(p.clientId) is not a member)" : "")")
        }
    }

    /// The `latest` group resolves a partition's start when a member first holds it without a
    /// committed offset: it must start no later than the last stable offset of that moment.
    func trackLate(_ p: LabPipe, candidates: [Int32: Int64], committedBefore: Set<Int32>) {
        guard let d = try? broker.describeGroup(p.kind.group), let me = d.members.first(where: { $0.clientId == p.clientId }) else {
            p.lastHeld = []
            p.lastMember = nil
            return
        }
        let held = Set(me.held)
        let fresh = me.id != p.lastMember ? held : held.subtracting(p.lastHeld)
        for tp in fresh where !committedBefore.contains(tp.partition) {
            if let c = candidates[tp.partition] { model.raiseLateBound(tp.partition, c) }
        }
        p.lastHeld = held
        p.lastMember = me.id
    }

    func process(_ p: LabPipe, _ style: SendStyle, deferReaction: Bool) {
        guard p.running, let prod = p.producer, !p.buffer.isEmpty else { return }
        switch p.kind {
        case .eo:
            if p.needsAbort { eoAbortAndRecover(p); return }
            guard let label = p.label else { return }
            let batch = p.buffer
            var records = batch.map { outRecord($0, label) }
            let dropped = sabotaging(.dropRecord), doubled = sabotaging(.duplicateRecord)
            if dropped { records.removeFirst() }
            if doubled { records.append(records[0]) }
            var (n, e) = write(prod, p.kind.output, records, style, plain: false)
            if dropped || doubled { n = e == nil ? batch.count : 0 }
            p.processed += batch.prefix(n)
            p.buffer.removeFirst(n)
            if let e { eoFailed(p, e, deferReaction: deferReaction) }
        case .amo:
            let label = "\(p.name).\(p.incarnation).\(p.opNumber)"
            _ = write(prod, p.kind.output, p.buffer.map { outRecord($0, label) }, style, plain: false)
            p.buffer = []
            try? prod.flush(timeout: nil)   // fire-and-forget writes: wait, for determinism
        case .alo, .late:
            break
        }
    }

    // MARK: Exactly-once pipelines

    func eoBegin(_ p: LabPipe) -> Bool {
        guard let prod = p.producer else { return false }
        let label = "e\(p.slot).\(p.incarnation).\(p.txnSeq + 1)"
        if let e = beginTransaction(prod, label, topic: p.kind.output, shortTimeout: p.spec?.shortTxnTimeout == true, who: p.name) {
            if e.code == .producerFenced { die(p) }
            return false
        }
        p.txnSeq += 1
        p.label = label
        if let z = p.zombie {
            p.zombie = nil
            _ = try? prod.send(p.kind.output, outRecord(z.message, z.label))
        }
        return true
    }

    func eoFailed(_ p: LabPipe, _ e: Error, deferReaction: Bool) {
        checkSequence(e, "\(p.clientId)")
        let code = (e as? KofkaError)?.code
        if code == .producerFenced { die(p); return }
        if deferReaction { p.needsAbort = true; note("   \(p.name) will abort later"); return }
        eoAbortAndRecover(p, rewind: code == .rebalanced)
    }

    /// Aborts the open transaction, then either sends the processed records again in a new
    /// transaction (the slot's `redo` setting) or rewinds the consumer to its committed offsets.
    func eoAbortAndRecover(_ p: LabPipe, rewind forceRewind: Bool = false, attempts: Int = 2) {
        guard eoAbortOnly(p, timeout: nil) else { return }
        if !forceRewind, p.spec?.redo == true, attempts > 0, !p.processed.isEmpty, eoBegin(p), let prod = p.producer, let label = p.label {
            let redo = p.processed
            note("   \(p.name) redoes \(redo.count) record(s) in \(label)")
            let (n, e) = write(prod, p.kind.output, redo.map { outRecord($0, label) }, .batch, plain: false)
            if let e {
                p.processed = redo
                _ = n
                checkSequence(e, p.clientId)
                if (e as? KofkaError)?.code == .producerFenced { die(p); return }
                eoAbortAndRecover(p, rewind: (e as? KofkaError)?.code == .rebalanced, attempts: attempts - 1)
            }
            return
        }
        eoRewind(p)
    }

    func eoRewind(_ p: LabPipe) {
        p.buffer = []
        p.processed = []
        p.polledMax = [:]
        guard let c = p.consumer else { return }
        do { try busy { try c.seekToCommitted() } } catch { note("   \(p.name) seek_to_committed: \(errText(error))") }
        note("   \(p.name) rewound to its committed offsets")
    }

    /// Aborts the slot's open transaction; true when it ended.
    @discardableResult
    func eoAbortOnly(_ p: LabPipe, timeout: Duration?) -> Bool {
        guard let prod = p.producer, let label = p.label else { p.needsAbort = false; return true }
        let victim = p.processed.first
        if let e = abortTransaction(prod, label, topic: p.kind.output, who: p.name, timeout: timeout) {
            if e.code == .producerFenced { die(p) }
            return false
        }
        if let victim, sabotaging(.writeAfterAbort) { p.zombie = (label, victim) }
        p.label = nil
        p.needsAbort = false
        return true
    }

    func eoCommit(_ p: LabPipe, commitAnyway: Bool) {
        guard p.running, let prod = p.producer, let c = p.consumer, p.label != nil else { return }
        if p.needsAbort { eoAbortAndRecover(p); return }
        if !p.buffer.isEmpty {
            let before = p.label
            process(p, .batch, deferReaction: false)
            // a failure was handled (aborted, maybe redone): commit at the next chance, not now
            guard p.label == before, p.buffer.isEmpty, !p.needsAbort, p.running else { return }
        }
        guard let label = p.label else { return }
        do {
            try busy { try prod.sendOffsetsToTransaction(c) }
        } catch {
            note("   \(p.name) send_offsets: \(errText(error))")
            if commitAnyway {
                if (try? prod.commitTransaction(timeout: nil)) != nil {
                    model.violation(.commitAfterFailedOffsets, "\(p.clientId): send_offsets_to_transaction failed (\(errText(error))) in \(label), yet commit_transaction succeeded")
                    model.ended(label, .committed, hw: hw(p.kind.output))
                    p.label = nil
                    eoRewind(p)
                    return
                }
            }
            eoFailed(p, error, deferReaction: false)
            return
        }
        do {
            try busy { try prod.commitTransaction(timeout: nil) { self.report($0, plain: false) } }
        } catch {
            note("   \(p.name) commit \(label): \(errText(error))")
            checkSequence(error, p.clientId)
            let code = (error as? KofkaError)?.code
            if code == .producerFenced { model.ended(label, .commitUnknown, hw: hw(p.kind.output)); die(p); return }
            if code?.isRetriable == true { return }
            eoAbortAndRecover(p, rewind: true)
            return
        }
        model.ended(label, .committed, hw: hw(p.kind.output))
        note("   \(p.name) committed \(label)")
        p.commits += 1
        for (tp, last) in p.polledMax.sorted(by: { $0.key < $1.key }) {
            let got = try? broker.committedOffset(group: p.kind.group, tp)
            if (got ?? -1) < last + 1 {
                model.violation(.offsetsNotCommitted, "\(p.clientId) committed \(label), which holds the output of \(tp) up to offset \(last), but group \(p.kind.group) has committed offset \(got.map(String.init) ?? "none") for \(tp)")
            }
        }
        p.label = nil
        p.processed = []
        p.polledMax = [:]
    }

    /// Ends the open transaction for good: commit (a few tries), else abort and rewind.
    func eoFinish(_ p: LabPipe) {
        for _ in 0..<3 where p.running && p.label != nil { eoCommit(p, commitAnyway: false) }
        if p.running && p.label != nil && eoAbortOnly(p, timeout: nil) { eoRewind(p) }
    }

    func eoAbort(_ p: LabPipe, zeroTimeout: Bool) {
        guard p.running, p.label != nil else { return }
        if eoAbortOnly(p, timeout: zeroTimeout ? .zero : nil) { eoRewind(p) }
    }

    // MARK: Leaving, closing, crashing

    func leave(_ p: LabPipe) {
        guard p.running else { return }
        switch p.kind {
        case .eo:
            eoFinish(p)
        case .amo:
            process(p, .batch, deferReaction: false)
        case .alo, .late:
            break
        }
        closeNow(p)
    }

    /// Closes consumer and producer as they are (an open transaction included).
    func closeNow(_ p: LabPipe) {
        guard let c = p.consumer else { return }
        do { try busy { try c.close() } } catch { note("   \(p.name) consumer close: \(errText(error))") }
        if let prod = p.producer {
            do { try prod.close(timeout: nil) { self.report($0, plain: false) } } catch { note("   \(p.name) producer close: \(errText(error))") }
        }
        if let l = p.label { model.ended(l, .closed, hw: hw(p.kind.output)) }
        note("   \(p.clientId) closed")
        clear(p)
    }

    /// The instance's process dies.
    func crash(_ p: LabPipe, afterOffsets: Bool) {
        guard let c = p.consumer else { return }
        if afterOffsets, p.kind == .eo, p.label != nil, let prod = p.producer {
            do { try prod.sendOffsetsToTransaction(c); note("   \(p.name) sent offsets") } catch { note("   \(p.name) send_offsets: \(errText(error))") }
        }
        c.destroy()
        if let l = p.label { model.abandoned(l) }
        note("   \(p.clientId) crashed")
        clear(p)   // the producer is dropped without close: its transaction stays open
    }

    /// A fenced instance exits (it is a zombie).
    func die(_ p: LabPipe) {
        note("   \(p.clientId) is fenced and exits")
        try? p.consumer?.close()
        if let l = p.label { model.abandoned(l) }
        clear(p)
    }

    func clear(_ p: LabPipe) {
        p.consumer = nil
        p.producer = nil
        p.label = nil
        p.buffer = []
        p.processed = []
        p.polledMax = [:]
        p.needsAbort = false
    }

    /// One instance stalls: the clock moves in steps; every other running instance polls between steps.
    func stallOne(_ target: LabPipe?, ms: Int64) {
        var left = ms
        while left > 0 {
            let step = min(left, timing.stallStepMs)
            clock.advance(ms: step)
            left -= step
            for k in PipeKind.allCases {
                for p in pipes[k] ?? [] where p !== target && p.running { poll(p, max: 5) }
            }
        }
    }

    // MARK: The end phase

    /// Quiesce, check nothing ended holds readers back, move past every timeout, drain, check.
    func endPhase() {
        let t0 = monoNs()
        func at() -> String { "   [+\(format2(Double(monoNs() - t0) / 1e6)) ms]" }
        busyArmed = false
        quiesce()
        observe()
        guard !model.failed else { return }
        note("end: quiesced" + at())
        checkStableOffsets()
        guard !model.failed else { return }
        clock.advance(ms: timing.drainAdvanceMs)
        note("end: the clock moves \(timing.drainAdvanceMs) ms; the survivors drain" + at())
        drain()
        observe()
        guard !model.failed else { return }
        note("end: drained" + at())
        finalCheck()
        note("end: checked" + at())
    }

    /// Pipeline kinds run elsewhere (worker processes) count as run here.
    func markRun(_ kinds: Set<PipeKind>) { lock.with { kindsRun.formUnion(kinds) } }

    /// The end-of-history rules over what read_committed readers see now.
    func finalCheck() {
        let visible = Dictionary(uniqueKeysWithValues: ([Self.input] + PipeKind.allCases.filter { history.setup.slots($0) > 0 }.map(\.output)).map {
            ($0, readCommitted($0))
        })
        var committed: [String: [TopicPartition: Int64]] = [:]
        for k in PipeKind.allCases { committed[k.group] = (try? broker.describeGroup(k.group))?.committed ?? [:] }
        LabFinalCheck(model: model, setup: history.setup, visible: visible, committed: committed, kindsRun: kindsRun).run()
    }

    /// Live clients finish their work: producers flush, open transactions commit.
    func quiesce() {
        for c in plain { plainFlush(c) }
        if let t = tx, t.label != nil {
            txCommit(t)
            if t.label != nil { txAbortOnly(t, timeout: nil) }
        }
        for k in PipeKind.allCases {
            for p in pipes[k] ?? [] where p.running {
                switch k {
                case .eo: eoFinish(p)
                case .amo: process(p, .batch, deferReaction: false)
                default: break
                }
            }
        }
    }

    /// Before any further time passes, read_committed readers must get past every transaction the
    /// application ended: what holds them back must be a transaction still open (a crashed producer's).
    func checkStableOffsets() {
        for topic in [Self.input, PipeKind.eo.output] where topic == Self.input || history.setup.slots(.eo) > 0 {
            for part in 0..<partitions {
                let tp = TopicPartition(topic, part)
                let end = readCommittedEnd(tp)
                let high = (try? broker.watermarks(topic, part).high) ?? 0
                guard end < high, let rec = model.record(tp, end), let t = model.txn(rec.label), let how = t.end else { continue }
                model.violation(.lsoStuck, "read_committed readers of \(tp) stop at offset \(end) of \(high): it holds id \(rec.id) of transaction \(rec.label), which \(how.rawValue) at op \(t.endOp.map(String.init) ?? "?")")
            }
        }
    }

    /// How far a fresh read_committed reader gets in one partition.
    func readCommittedEnd(_ tp: TopicPartition) -> Int64 {
        guard let c = try? broker.consumer(ConsumerConfig()) else { return 0 }
        defer { c.destroy() }
        try? c.assign(tp.topic, partitions: [tp.partition])
        while let m = try? c.pollBatch(max: 10_000, timeout: .zero), !m.isEmpty {}
        return max(0, (try? c.position(tp.topic, tp.partition)) ?? 0)
    }

    /// Every record a fresh read_committed reader gets from `topic`.
    func readCommitted(_ topic: String) -> [(TopicPartition, Int64, LabRecord)] {
        var out: [(TopicPartition, Int64, LabRecord)] = []
        guard let c = try? broker.consumer(ConsumerConfig()) else { return out }
        defer { c.destroy() }
        try? c.assign(topic, partitions: Array(0..<partitions))
        while let msgs = try? c.pollBatch(max: 10_000, timeout: .zero), !msgs.isEmpty {
            for m in msgs { if let r = LabRecord(m) { out.append((TopicPartition(m.topic, m.partition), m.offset, r)) } }
        }
        return out
    }

    /// The surviving instances (or a fresh one per group, if none survived) poll, write and commit
    /// until every group has committed past every record its readers can see, or the rounds run out.
    func drain() {
        for k in PipeKind.allCases where history.setup.slots(k) > 0 && kindsRun.contains(k) {
            var ps = pipes[k] ?? []
            if !ps.contains(where: \.running) {
                let fresh = LabPipe(k, ps.count, k == .eo ? history.setup.eoSlots.first.map { var s = $0; s.shortTxnTimeout = false; return s } : nil)
                ps.append(fresh)
                pipes[k] = ps
                start(fresh, shortSession: false)
            }
        }
        // Rounds go on while they make progress; a lossy link may fail many commits in a row, so
        // an instance whose round failed takes one record at a time until it succeeds again.
        var stale = 0, round = 0
        var progress = drainProgress()
        while round < timing.drainRounds && stale < timing.drainStaleRounds {
            round += 1
            for k in PipeKind.allCases {
                for p in pipes[k] ?? [] where p.running && sabotage != .hangInDrain {
                    let commits = p.commits
                    let got = poll(p, max: p.drainMax)
                    opsRun += 1
                    switch k {
                    case .eo:
                        if p.label != nil { eoCommit(p, commitAnyway: false) }
                        p.drainMax = p.commits > commits ? min(500, p.drainMax * 4) : (got > 0 ? 1 : p.drainMax)
                    case .amo: process(p, .batch, deferReaction: false)
                    default: break
                    }
                    if model.failed { return }
                }
            }
            observe()
            if model.failed { return }
            if undrained().isEmpty { note("end: drained after \(round) round(s)"); return }
            let now = drainProgress()
            if now == progress { stale += 1 } else { stale = 0; progress = now }
        }
        for (group, tp, got, want) in undrained() where group != PipeKind.late.group {
            let d = try? broker.describeGroup(group)
            let holder = d?.members.first { $0.held.contains(tp) }?.clientId
            let target = d?.members.first { $0.assigned.contains(tp) }?.clientId
            model.violation(.liveness, "group \(group) is stuck on \(tp) at committed offset \(got.map(String.init) ?? "none") (needs \(want)): \(round) drain rounds past every timeout, the last \(stale) without progress; held by \(holder ?? "nobody"), assigned to \(target ?? "nobody")")
        }
    }

    /// What the drain has achieved so far: the groups' committed offsets and the commits made.
    func drainProgress() -> [Int64] {
        var out: [Int64] = []
        for k in PipeKind.allCases where kindsRun.contains(k) {
            for part in 0..<partitions { out.append((try? broker.committedOffset(group: k.group, TopicPartition(Self.input, part))) ?? -1) }
            out.append(Int64((pipes[k] ?? []).reduce(0) { $0 + $1.commits }))
        }
        return out
    }

    /// (group, partition, committed, needed) for every group not yet past its readable input.
    func undrained() -> [(String, TopicPartition, Int64?, Int64)] {
        var out: [(String, TopicPartition, Int64?, Int64)] = []
        for part in 0..<partitions {
            let tp = TopicPartition(Self.input, part)
            // the last record readers will see: non-transactional, or of a transaction that may have committed
            var last: Int64 = -1
            let end = model.mirroredEnd(tp)
            var o = end - 1
            while o >= 0 {
                if let r = model.record(tp, o), model.txn(r.label).map({ $0.mayBeVisible }) ?? true { last = o; break }
                o -= 1
            }
            guard last >= 0 else { continue }
            for k in PipeKind.allCases where kindsRun.contains(k) {
                if k == .late, (model.lateBound[part] ?? Int64.max) > last { continue }
                let got = try? broker.committedOffset(group: k.group, tp)
                if (got ?? -1) < last + 1 { out.append((k.group, tp, got, last + 1)) }
            }
        }
        return out
    }
}
