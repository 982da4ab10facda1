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
    /// A drain round that made no progress moves the clock this far: past an at-least-once
    /// consumer's `auto.commit.interval.ms` (5000 by default), shorter than any session, so the
    /// commit of what the last polls returned comes due while every member stays.
    public var drainIdleAdvanceMs: Int64 = 5_001
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
    /// Why the history could not run at all (its store or clients could not be set up); nil
    /// when it ran. Such a history checked nothing.
    public var setupError: String? = nil
    public var first: LabViolation? { violations.first }

    /// A history that could not be set up.
    static func notSetUp(_ error: any Error) -> LabRunResult {
        LabRunResult(violations: [], opsRun: 0, seconds: 0, trace: ["cannot set up: \(error)"], setupError: "\(error)")
    }
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
    /// alo, eo: records the last `lend` made, as a binding holds them (Python's poll), and how
    /// many polls handed out; settled before every other call on the consumer.
    var lent: [Message] = []
    var handed = 0
    /// The broker clock's monotonic ns until which `lent` may be handed out.
    var lentUntil: UInt64 = 0
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
    /// Whether the last `hold` got the lock (set before `held` is signalled).
    private var holding = false
    /// A second broker handle on the shared store `storage` (a SQLite file, a PostgreSQL schema).
    init(storage: String) throws { broker = try Broker(storage) }

    /// Takes the write lock on another thread and returns once it is held (or could not be taken).
    func hold() {
        holding = false
        DispatchQueue.global().async { [self] in
            _ = try? broker.storage.write { w in
                // Touch the store: a backend may take its lock with the first statement (PostgreSQL).
                _ = try w.get("lab/lock-holder")
                holding = true
                held.signal()
                release.wait()
            }
            if !holding { held.signal() }   // the lock could not be taken: the call meets no busy writer
            done.signal()
        }
        held.wait()
    }

    func unhold() {
        if holding { release.signal() }
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
    let lock = LabLock()
    /// A fault in the explorer's own application or model (tests only); it fires once.
    var sabotage: LabSabotage?
    private(set) var sabotageFired = false

    var plain: [LabPlainClient]
    var tx: LabTxClient?
    var pipes: [PipeKind: [LabPipe]] = [:]
    private var mirrors: [String: Consumer] = [:]
    var kindsRun: Set<PipeKind> = []

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
        var holderStorage: String? = nil
        let busyMs = concurrent ? max(timing.busyTimeoutMs, 200) : timing.busyTimeoutMs
        if storage.hasPrefix("sqlite:") {
            cfg += [("sqlite.busy.timeout.ms", "\(busyMs)"), ("sqlite.synchronous", "normal")]
            if !concurrent { holderStorage = storage }
        } else if LabPostgres.isPostgres(storage) {
            cfg += [("postgresql.lock.timeout.ms", "\(busyMs)")]
            if !concurrent { holderStorage = storage }
        }
        broker = try Broker(storage, config: try BrokerConfig(cfg), clock: clock)
        lockHolder = try holderStorage.map { try LabLockHolder(storage: $0) }
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
            if now == progress {
                stale += 1
                clock.advance(ms: timing.drainIdleAdvanceMs)
            } else { stale = 0; progress = now }
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
