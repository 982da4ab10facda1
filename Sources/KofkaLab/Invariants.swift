import Kofka
#if canImport(Glibc)
import Glibc
#endif

// Kafka's rules, as the explorer checks them. The executor tells `LabModel` what the application
// saw (acknowledged offsets, transactions begun and ended, records polled); a read_uncommitted
// mirror of every topic shows what storage really holds; read_committed scans at the end show
// what readers get. A rule that does not hold is a `LabViolation`.

/// The kinds of broken rule.
public enum LabViolationKind: String, Sendable, CaseIterable {
    /// A send or delivery report said "written at P@O", but offset O holds another record.
    case ackMismatch
    /// A well-behaved idempotent producer was answered OUT_OF_ORDER_SEQUENCE.
    case outOfOrderSequence
    /// A record of a transaction was written after the application saw that transaction end.
    case lateWrite
    /// A poll returned records of a partition its member does not hold in the group.
    case foreignPoll
    /// A group's committed offset moved backwards.
    case offsetsBackwards
    /// `commitTransaction` succeeded after `sendOffsetsToTransaction` failed in the same transaction.
    case commitAfterFailedOffsets
    /// `commitTransaction` succeeded, but the offsets of records processed in it were not committed.
    case offsetsNotCommitted
    /// read_committed readers are held back by a transaction the application ended (committed, aborted, closed, fenced).
    case lsoStuck
    /// After every timeout passed, the surviving instances could not drain a partition.
    case liveness
    /// An acknowledged (or committed) input record is not in the input topic.
    case lostInput
    /// An input record is in the input topic more often than its mode allows.
    case duplicateInput
    /// read_committed shows a record of a transaction that did not commit.
    case abortedVisible
    /// An input record never reached an exactly-once or at-least-once pipeline's output.
    case lostOutput
    /// An input record is in an exactly-once (or at-most-once) pipeline's output more than once.
    case duplicateOutput
    /// An output record whose input record is not visible to read_committed readers.
    case phantomOutput
    /// An at-most-once group committed past a record no poll ever returned.
    case amoSkipped
    /// A read_committed group with auto.offset.reset=latest never got a record that was not yet stable when it started.
    case lateMissed
    /// Processes mode: worker journals end one transaction label in two ways. Two transactions
    /// shared a label, so the lab cannot judge either one (a fault in the lab, not in Kofka).
    case labelReused
}

/// One broken rule.
public struct LabViolation: Sendable, CustomStringConvertible {
    public var kind: LabViolationKind
    /// The history operation after which it was seen (nil: the end phase).
    public var op: Int?
    public var detail: String

    public var description: String {
        "\(kind.rawValue)\(op.map { " at op \($0)" } ?? " at the end"): \(detail)"
    }
}

/// What the explorer writes into every record: its id, a label naming who wrote it (for a
/// transactional producer, the transaction), and for pipeline output the input record it came from.
public struct LabRecord: Sendable, Hashable {
    public var label: String
    public var id: UInt64
    public var src: LabSource?

    /// Reads the fields back from a consumed message.
    public init?(_ m: Message) {
        guard let id = LabValue.decode(m.value) else { return nil }
        self.id = id
        var label = "", src: LabSource? = nil
        for h in m.headers {
            let v = String(decoding: h.value ?? [], as: UTF8.self)
            if h.name == "l" { label = v }
            if h.name == "s" { src = LabSource(v) }
        }
        self.label = label
        self.src = src
    }

    /// The record to send for `id`, labelled, with an optional source.
    public static func make(id: UInt64, label: String, src: LabSource? = nil, key: [UInt8]? = nil) -> Record {
        var headers = [Header("l", Array(label.utf8))]
        if let src { headers.append(Header("s", Array(src.text.utf8))) }
        return Record(key: key ?? Array("k\(id % 13)".utf8), value: LabValue.encode(id), headers: headers)
    }
}

/// An input record's coordinates.
public struct LabSource: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var partition: Int32
    public var offset: Int64
    public init(_ partition: Int32, _ offset: Int64) { self.partition = partition; self.offset = offset }
    init?(_ text: String) {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let p = Int32(parts[0]), let o = Int64(parts[1]) else { return nil }
        self.init(p, o)
    }
    var text: String { "\(partition):\(offset)" }
    public var description: String { "in[\(partition)]@\(offset)" }
    public static func < (a: LabSource, b: LabSource) -> Bool { (a.partition, a.offset) < (b.partition, b.offset) }
}

/// How the application saw a transaction end.
public enum LabTxnEnd: String, Sendable {
    case committed, aborted
    /// The producer was closed with the transaction not committed (close aborts it).
    case closed
    /// A new producer with the same transactional.id ran init_transactions.
    case fenced
    /// commit_transaction was called and failed: committed or not, the application cannot tell.
    case commitUnknown = "commit outcome unknown"
}

/// A transaction as the application saw it.
struct LabTxn: Sendable {
    var topic: String
    /// How it ended, nil while the application holds it open (or abandoned it in a crash).
    var end: LabTxnEnd?
    /// The history operation that ended it.
    var endOp: Int?
    /// High watermarks of `topic` right after it ended: its records must all lie below.
    var endHW: [Int32: Int64] = [:]
    /// Its producer died with it open.
    var abandoned = false
    /// Clock skew when it began, and its `transaction.timeout.ms`: past that it may have been aborted by the broker.
    var beganSkewMs: Int64
    var timeoutMs: Int64

    /// Records of it may be visible to read_committed readers.
    var mayBeVisible: Bool { end == .committed || end == .commitUnknown }
}

/// An acknowledgement to verify against storage.
struct LabAck: Sendable {
    var tp: TopicPartition
    var offset: Int64
    var label: String
    var id: UInt64
    var op: Int?
}

/// The application's view of a history plus the storage mirror, and the rules over both.
final class LabModel: @unchecked Sendable {
    private let lock = LabLock()
    private(set) var violations: [LabViolation] = []
    /// The operation now running (for violation reports).
    var op: Int? = nil

    /// Every record in storage, by topic partition, dense by offset (read_uncommitted mirror).
    private(set) var mirror: [TopicPartition: [LabRecord?]] = [:]
    /// First offset of each label in each partition.
    private(set) var firstOffset: [String: [TopicPartition: Int64]] = [:]
    private var pendingAcks: [LabAck] = []
    private(set) var txns: [String: LabTxn] = [:]

    /// Plain producer ids: the producer's mode, and whether the send was acknowledged.
    private(set) var plainMode: [UInt64: DeliveryMode] = [:]
    private(set) var plainAcked: Set<UInt64> = []
    /// Transactional input ids → labels of the transactions that wrote them.
    private(set) var txnIds: [UInt64: [String]] = [:]
    /// At-most-once group: input records its polls returned.
    private(set) var amoReturned: Set<LabSource> = []
    /// The `latest` group: per input partition, the lowest offset it must deliver from.
    private(set) var lateBound: [Int32: Int64] = [:]
    /// Last committed offsets seen per group.
    private var lastCommitted: [String: [TopicPartition: Int64]] = [:]

    func violation(_ kind: LabViolationKind, _ detail: String) {
        lock.with { violations.append(LabViolation(kind: kind, op: op, detail: detail)) }
    }

    var failed: Bool { lock.with { !violations.isEmpty } }

    // MARK: What the application saw

    func plainSent(_ id: UInt64, mode: DeliveryMode) { lock.with { plainMode[id] = mode } }

    func acknowledged(_ tp: TopicPartition, offset: Int64, label: String, id: UInt64, plain: Bool) {
        lock.with {
            if plain { plainAcked.insert(id) }
            guard offset >= 0 else { return }
            pendingAcks.append(LabAck(tp: tp, offset: offset, label: label, id: id, op: op))
        }
        verifyAcks()
    }

    func txnWrote(_ id: UInt64, label: String) { lock.with { txnIds[id, default: []].append(label) } }

    func began(_ label: String, topic: String, skewMs: Int64, timeoutMs: Int64) {
        lock.with { txns[label] = LabTxn(topic: topic, beganSkewMs: skewMs, timeoutMs: timeoutMs) }
    }

    /// The application saw `label` end; `hw` are the topic's high watermarks read right after.
    func ended(_ label: String, _ how: LabTxnEnd, hw: [Int32: Int64]) {
        let changed = lock.with { () -> Bool in
            guard var t = txns[label], t.end == nil || t.end == .commitUnknown else { return false }
            t.end = how
            t.endOp = op
            t.endHW = hw
            txns[label] = t
            return true
        }
        if changed { journal?(label, how) }
    }

    /// Processes mode: a worker writes every transaction end it saw here (its journal).
    var journal: (@Sendable (String, LabTxnEnd) -> Void)?

    /// Processes mode: a transaction end read from a worker's journal.
    func learned(_ label: String, topic: String, _ how: LabTxnEnd) {
        let earlier = lock.with { () -> LabTxnEnd? in
            var t = txns[label] ?? LabTxn(topic: topic, beganSkewMs: 0, timeoutMs: Int64.max / 2)
            let earlier = t.end
            t.end = how
            txns[label] = t
            return earlier
        }
        if let earlier, earlier != how {
            violation(.labelReused, "the workers' journals end transaction \(label) both as \(earlier.rawValue) and as \(how.rawValue)")
        }
    }

    func abandoned(_ label: String) { lock.with { txns[label]?.abandoned = true } }

    /// Labels with `prefix` whose producer died with them open: a new incarnation has fenced them.
    func abandonedLabels(prefix: String) -> [String] {
        lock.with { txns.filter { $0.key.hasPrefix(prefix) && $0.value.abandoned && $0.value.end == nil }.map(\.key).sorted() }
    }

    func txn(_ label: String) -> LabTxn? { lock.with { txns[label] } }

    func amoPolled(_ msgs: [Message]) {
        lock.with { for m in msgs { amoReturned.insert(LabSource(m.partition, m.offset)) } }
    }

    func raiseLateBound(_ partition: Int32, _ bound: Int64) {
        lock.with { lateBound[partition] = max(lateBound[partition] ?? bound, bound) }
    }

    // MARK: The storage mirror

    /// Adds records read (read_uncommitted) from storage; checks late writes and pending acks.
    func ingest(_ msgs: [Message]) {
        lock.with {
            for m in msgs {
                let tp = TopicPartition(m.topic, m.partition)
                var log = mirror[tp] ?? []
                while log.count <= Int(m.offset) { log.append(nil) }
                let rec = LabRecord(m)
                log[Int(m.offset)] = rec
                mirror[tp] = log
                guard let rec else { continue }
                if firstOffset[rec.label]?[tp] == nil { firstOffset[rec.label, default: [:]][tp] = m.offset }
                if let t = txns[rec.label], let hw = t.endHW[m.partition], m.offset >= hw, t.topic == m.topic {
                    violations.append(LabViolation(kind: .lateWrite, op: op, detail:
                        "\(tp)@\(m.offset) holds id \(rec.id) of transaction \(rec.label), written after the application saw that transaction \(t.end?.rawValue ?? "end") at op \(t.endOp.map(String.init) ?? "?") (the partition ended at offset \(hw) then)"))
                }
            }
        }
        verifyAcks()
    }

    /// The mirrored record at `tp`@`offset`.
    func record(_ tp: TopicPartition, _ offset: Int64) -> LabRecord? {
        lock.with {
            guard let log = mirror[tp], offset >= 0, Int(offset) < log.count else { return nil }
            return log[Int(offset)]
        }
    }

    /// Mirrored length of a partition (its high watermark as last read).
    func mirroredEnd(_ tp: TopicPartition) -> Int64 { lock.with { Int64(mirror[tp]?.count ?? 0) } }

    private func verifyAcks() {
        lock.with {
            pendingAcks.removeAll { a in
                guard let log = mirror[a.tp], Int(a.offset) < log.count else { return false }
                let r = log[Int(a.offset)]
                if r?.label != a.label || r?.id != a.id {
                    violations.append(LabViolation(kind: .ackMismatch, op: a.op, detail:
                        "id \(a.id) (\(a.label)) was acknowledged at \(a.tp)@\(a.offset), but that offset holds "
                        + (r.map { "id \($0.id) of \($0.label)\(txns[$0.label]?.end.map { " (a transaction that \($0.rawValue))" } ?? "")" } ?? "a foreign record")))
                }
                return true
            }
        }
    }

    /// Acknowledgements whose offsets storage does not hold.
    func unverifiedAcks() -> [LabAck] { lock.with { pendingAcks } }

    /// The last stable offset of an input partition as the application's transactions imply it:
    /// the first offset of a transaction still open (not ended, not possibly timed out), else the end.
    func modelLSO(_ tp: TopicPartition, skewMs: Int64) -> Int64 {
        lock.with {
            var lso = Int64(mirror[tp]?.count ?? 0)
            for (label, t) in txns where t.end == nil && t.topic == tp.topic && skewMs - t.beganSkewMs < t.timeoutMs {
                if let f = firstOffset[label]?[tp] { lso = min(lso, f) }
            }
            return lso
        }
    }

    // MARK: Groups

    /// Committed offsets never move backwards.
    func observeCommitted(_ group: String, _ committed: [TopicPartition: Int64], generation: Int32) {
        lock.with {
            let before = lastCommitted[group] ?? [:]
            for (tp, off) in committed {
                if let b = before[tp], off < b {
                    violations.append(LabViolation(kind: .offsetsBackwards, op: op, detail:
                        "group \(group) committed offset of \(tp) moved back from \(b) to \(off) (generation \(generation))"))
                }
            }
            lastCommitted[group] = before.merging(committed) { $1 }
        }
    }
}

/// A small lock for the model (shared by threads in the threaded mode).
final class LabLock: @unchecked Sendable {
    private let m: UnsafeMutablePointer<pthread_mutex_t>
    init() {
        m = .allocate(capacity: 1)
        m.initialize(to: pthread_mutex_t())
        pthread_mutex_init(m, nil)
    }
    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }
    @inline(__always) func with<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(m)
        defer { pthread_mutex_unlock(m) }
        return try body()
    }
}

// MARK: The end-of-history rules

/// What read_committed readers see at the end, and the rules over it.
struct LabFinalCheck {
    let model: LabModel
    let setup: LabSetup
    /// Visible (read_committed) records of each topic.
    let visible: [String: [(TopicPartition, Int64, LabRecord)]]
    /// The groups' committed offsets.
    let committed: [String: [TopicPartition: Int64]]
    /// Pipeline kinds that ran an instance.
    let kindsRun: Set<PipeKind>

    func run() {
        let input = visible["in"] ?? []
        var inputSrc: Set<LabSource> = []
        var idCount: [UInt64: Int] = [:]
        for (tp, off, r) in input {
            inputSrc.insert(LabSource(tp.partition, off))
            idCount[r.id, default: 0] += 1
            checkCommittedLabel(tp, off, r)
        }
        // input producers
        for (id, mode) in model.plainMode.sorted(by: { $0.key < $1.key }) {
            let n = idCount[id] ?? 0
            if mode != .atMostOnce && model.plainAcked.contains(id) && n == 0 {
                model.violation(.lostInput, "id \(id) was acknowledged to a \(mode.rawValue) producer but is not in the input topic")
            }
            if mode != .atLeastOnce && n > 1 {
                model.violation(.duplicateInput, "id \(id) of a \(mode.rawValue) producer is in the input topic \(n) times")
            }
        }
        for (id, labels) in model.txnIds.sorted(by: { $0.key < $1.key }) {
            let n = idCount[id] ?? 0
            let committed = labels.filter { model.txn($0)?.end == .committed }
            if !committed.isEmpty && n == 0 {
                model.violation(.lostInput, "id \(id) was sent in transaction \(committed.joined(separator: ", ")), which committed, but read_committed readers never see it (sent in: \(labels.joined(separator: ", ")))")
            }
            if n > 1 {
                model.violation(.duplicateInput, "id \(id) of the transactional producer is visible \(n) times (sent in: \(labels.joined(separator: ", ")))")
            }
        }
        // pipelines
        for kind in PipeKind.allCases where kindsRun.contains(kind) {
            var count: [LabSource: Int] = [:]
            for (tp, off, r) in visible[kind.output] ?? [] {
                checkCommittedLabel(tp, off, r)
                guard let s = r.src else { continue }
                count[s, default: 0] += 1
                if !inputSrc.contains(s) {
                    model.violation(.phantomOutput, "\(tp)@\(off) (\(r.label)) came from \(s), which read_committed readers do not see")
                }
            }
            for s in inputSrc.sorted() {
                let n = count[s] ?? 0
                switch kind {
                case .eo:
                    if n == 0 { model.violation(.lostOutput, "\(s) never reached the exactly-once output") }
                    if n > 1 { model.violation(.duplicateOutput, "\(s) is in the exactly-once output \(n) times") }
                case .alo:
                    if n == 0 { model.violation(.lostOutput, "\(s) never reached the at-least-once output") }
                case .amo:
                    if n > 1 { model.violation(.duplicateOutput, "\(s) is in the at-most-once output \(n) times") }
                    let c = committed[kind.group]?[TopicPartition("in", s.partition)] ?? 0
                    if s.offset < c && !model.amoReturned.contains(s) {
                        model.violation(.amoSkipped, "group \(kind.group) committed \(c) on in[\(s.partition)], past \(s), which no poll returned")
                    }
                case .late:
                    if let b = model.lateBound[s.partition], s.offset >= b, n == 0 {
                        model.violation(.lateMissed, "group \(kind.group) (auto.offset.reset=latest, read_committed) took in[\(s.partition)] when its last stable offset was \(b), so every record from \(b) on is its to deliver; \(s) never was")
                    }
                }
            }
        }
        for a in model.unverifiedAcks() {
            model.violation(.ackMismatch, "id \(a.id) (\(a.label)) was acknowledged at \(a.tp)@\(a.offset), beyond the end of the log")
        }
    }

    /// A visible record of a transaction must come from a transaction that committed.
    private func checkCommittedLabel(_ tp: TopicPartition, _ off: Int64, _ r: LabRecord) {
        guard let t = model.txn(r.label), !t.mayBeVisible else { return }
        let how = t.end.map { "\($0.rawValue) at op \(t.endOp.map(String.init) ?? "?")" } ?? (t.abandoned ? "was abandoned by a crash" : "is still open")
        model.violation(.abortedVisible, "read_committed shows \(tp)@\(off), id \(r.id) of transaction \(r.label), which \(how)")
    }
}
