import Kofka

// A history for the schedule explorer: a seeded setup (which clients exist and how each is
// configured) and a list of operations that interleave them. Every operation is an *intent*
// ("pipeline eo1 polls up to 3 records") that the executor interprets against the state it finds,
// so any sub-list of a history is itself a valid history: that is what lets the shrinker drop
// operations freely.

/// How a client hands records to its producer.
public enum SendStyle: String, Sendable, CaseIterable {
    /// `Producer.send`, one record at a time.
    case send
    /// `Producer.sendBatch`, all records in one call.
    case batch
    /// `Producer.produce` (asynchronous, delivery reports later).
    case produce
}

/// The kinds of consume-transform-produce pipeline the explorer runs, one consumer group each.
public enum PipeKind: String, Sendable, CaseIterable {
    /// Exactly-once: group consumer (read_committed, no auto commit) + transactional producer;
    /// offsets go through `sendOffsetsToTransaction`.
    case eo
    /// At-least-once: group consumer committing at the next poll + a retrying producer.
    case alo
    /// At-most-once: the poll commits before it returns; fire-and-forget producer.
    case amo
    /// At-least-once with `auto.offset.reset=latest` (read_committed): starts at the last stable offset.
    case late

    /// The output topic of this kind.
    public var output: String { "out-" + rawValue }
    /// The consumer group of this kind.
    public var group: String { "g-" + rawValue }
}

/// A plain (non-transactional) producer writing ids to the input topic.
public struct LabProducerSpec: Sendable, Hashable {
    /// Its delivery mode preset (exactly-once here means idempotent, no transactions).
    public var mode: DeliveryMode
    public var requestLoss: Double
    public var ackLoss: Double
    /// `retries`, or nil for the preset's.
    public var retries: Int?
    public var faultSeed: UInt64
}

/// A transactional producer: the input-topic transactional writer or an exactly-once pipeline slot.
public struct LabTxnSpec: Sendable, Hashable {
    public var requestLoss: Double
    public var ackLoss: Double
    /// `retries` (0 makes a lossy send give up with the outcome unknown).
    public var retries: Int
    /// `transaction.timeout.ms` short (a stall expires it) or long (only the drain does).
    public var shortTxnTimeout: Bool
    /// After an abort caused by a failed send: send the same records again in a new transaction
    /// (true), or rewind the consumer to its committed offsets and re-poll (false; pipelines only).
    public var redo: Bool
    public var faultSeed: UInt64
}

/// Which clients a history has and how each is configured.
public struct LabSetup: Sendable, Hashable {
    /// Partitions of the input and output topics.
    public var partitions: Int32
    /// Plain producers P0, P1, … writing the input topic.
    public var producers: [LabProducerSpec]
    /// The transactional input producer T, if any.
    public var txnInput: LabTxnSpec?
    /// Exactly-once pipeline slots (one `transactional.id` each).
    public var eoSlots: [LabTxnSpec]
    /// Slots of the other pipeline kinds.
    public var aloSlots: Int
    public var amoSlots: Int
    public var lateSlots: Int
    /// Broker `fault.storage.failure.rate` (failures before and after the commit of an append).
    public var storageFaultRate: Double
    public var storageFaultSeed: UInt64

    /// Number of slots of `kind`.
    public func slots(_ kind: PipeKind) -> Int {
        switch kind {
        case .eo: eoSlots.count
        case .alo: aloSlots
        case .amo: amoSlots
        case .late: lateSlots
        }
    }
}

/// One operation of a history.
public enum LabOp: Sendable, Hashable {
    // Plain producers (input topic).
    case send(producer: Int, ids: [UInt64], style: SendStyle)
    case flush(producer: Int)
    case restartProducer(producer: Int)
    // The transactional input producer T.
    case txBegin
    case txSend(ids: [UInt64], style: SendStyle, deferReaction: Bool)
    case txCommit
    case txAbort(zeroTimeout: Bool)
    /// T dies: producer abandoned without close (its open transaction stays open); the next T
    /// operation restarts it with the same `transactional.id`.
    case txCrash
    case txClose
    // Pipeline instances.
    /// Starts (or restarts, after a crash) the instance of a slot; joins its group.
    case start(PipeKind, slot: Int, shortSession: Bool)
    /// Polls up to `max` records (eo: inside a transaction, begun if none is open; alo/late:
    /// and writes them out at once; amo: keeps them to process later).
    case poll(PipeKind, slot: Int, max: Int)
    /// Writes the polled records out (eo, amo).
    case process(PipeKind, slot: Int, style: SendStyle, deferReaction: Bool)
    /// eo: writes what is left, `sendOffsetsToTransaction`, `commitTransaction`. With
    /// `commitAnyway`, an app that calls commit even after `sendOffsetsToTransaction` failed.
    case commit(PipeKind, slot: Int, commitAnyway: Bool)
    /// eo: `abortTransaction` (with a zero timeout: queued records must not survive it), rewind.
    case abort(slot: Int, zeroTimeout: Bool)
    /// Graceful: finish (eo: commit) and close consumer and producer.
    case leave(PipeKind, slot: Int)
    /// Close consumer and producer at once, transaction or not.
    case closeNow(PipeKind, slot: Int)
    /// The process dies: consumer destroyed, producer abandoned without close. With
    /// `afterOffsets`, an eo instance first sends its offsets to its open transaction.
    case crash(PipeKind, slot: Int, afterOffsets: Bool)
    // Time and storage.
    /// The whole process stalls: the clock jumps `ms`.
    case stall(ms: Int64)
    /// One instance stalls: the clock moves `ms` in steps while every other instance polls between steps.
    case stallOne(PipeKind, slot: Int, ms: Int64)
    /// SQLite: the next consumer or transaction call meets another handle holding the file's write lock.
    case busyNext
}

extension LabOp: CustomStringConvertible {
    public var description: String {
        func ids(_ v: [UInt64]) -> String { v.map(String.init).joined(separator: ",") }
        switch self {
        case .send(let p, let v, let s): return "p\(p) \(s.rawValue) ids \(ids(v))"
        case .flush(let p): return "p\(p) flush"
        case .restartProducer(let p): return "p\(p) close and reopen"
        case .txBegin: return "T begin"
        case .txSend(let v, let s, let d): return "T \(s.rawValue) ids \(ids(v))\(d ? " (react later)" : "")"
        case .txCommit: return "T commit"
        case .txAbort(let z): return "T abort\(z ? " (timeout 0)" : "")"
        case .txCrash: return "T crash"
        case .txClose: return "T close"
        case .start(let k, let s, let short): return "\(k.rawValue)\(s) start (session \(short ? "short" : "long"))"
        case .poll(let k, let s, let m): return "\(k.rawValue)\(s) poll ≤\(m)"
        case .process(let k, let s, let st, let d): return "\(k.rawValue)\(s) process (\(st.rawValue))\(d ? " (react later)" : "")"
        case .commit(let k, let s, let a): return "\(k.rawValue)\(s) commit\(a ? " (commit even if offsets fail)" : "")"
        case .abort(let s, let z): return "eo\(s) abort\(z ? " (timeout 0)" : "")"
        case .leave(let k, let s): return "\(k.rawValue)\(s) leave (graceful)"
        case .closeNow(let k, let s): return "\(k.rawValue)\(s) close now"
        case .crash(let k, let s, let a): return "\(k.rawValue)\(s) crash\(a ? " after send_offsets" : "")"
        case .stall(let ms): return "stall all \(ms) ms"
        case .stallOne(let k, let s, let ms): return "\(k.rawValue)\(s) stalls \(ms) ms (others poll)"
        case .busyNext: return "busy: next call meets a held write lock"
        }
    }
}

extension LabTxnSpec: CustomStringConvertible {
    public var description: String {
        "loss req \(requestLoss) ack \(ackLoss), retries \(retries), txn timeout \(shortTxnTimeout ? "short" : "long"), on failure \(redo ? "redo" : "rewind")"
    }
}

extension LabSetup: CustomStringConvertible {
    public var description: String {
        var out = ["partitions \(partitions)"]
        for (i, p) in producers.enumerated() {
            out.append("p\(i): \(p.mode.rawValue), loss req \(p.requestLoss) ack \(p.ackLoss)\(p.retries.map { ", retries \($0)" } ?? "")")
        }
        if let t = txnInput { out.append("T: \(t)") }
        for (i, s) in eoSlots.enumerated() { out.append("eo\(i): \(s)") }
        out.append("alo slots \(aloSlots), amo slots \(amoSlots), late slots \(lateSlots)")
        if storageFaultRate > 0 { out.append("storage failure rate \(storageFaultRate)") }
        return out.joined(separator: "; ")
    }
}

/// A seeded history: setup and operations. `numbers` are the operations' numbers in the history
/// generated from `seed` (a shrunk history keeps the numbers of the operations it kept).
public struct LabHistory: Sendable {
    public var seed: UInt64
    public var setup: LabSetup
    public var ops: [LabOp]
    public var numbers: [Int]

    public init(seed: UInt64, setup: LabSetup, ops: [LabOp], numbers: [Int]? = nil) {
        self.seed = seed
        self.setup = setup
        self.ops = ops
        self.numbers = numbers ?? Array(ops.indices)
    }

    /// The sub-history of the operations at positions `keep` (positions in this history).
    public func keeping(positions keep: [Int]) -> LabHistory {
        LabHistory(seed: seed, setup: setup, ops: keep.map { ops[$0] }, numbers: keep.map { numbers[$0] })
    }

    /// The sub-history of the generated operations numbered `numbers`.
    public func keeping(numbers wanted: [Int]) -> LabHistory {
        let set = Set(wanted)
        return keeping(positions: ops.indices.filter { set.contains(numbers[$0]) })
    }

    /// Numbered lines, one per operation (the numbers are those `--ops` takes).
    public var listing: String {
        zip(numbers, ops).map { n, op in "  \(n.leftPadded(4)). \(op)" }.joined(separator: "\n")
    }

    /// The `--ops` argument naming these operations.
    public var opsArgument: String { numbers.map(String.init).joined(separator: ",") }
}

extension Int {
    func leftPadded(_ w: Int) -> String {
        let s = String(self)
        return String(repeating: " ", count: Swift.max(0, w - s.count)) + s
    }
}

// MARK: Generation

/// Generates histories from a seed.
public enum LabGenerator {
    /// The history of `seed`. `length` overrides the seeded number of operations.
    public static func history(seed: UInt64, length: Int? = nil, avoiding bugs: Set<Int> = []) -> LabHistory {
        var rng = SplitMix64(seed: seed ^ 0x6b6f_666b_615f_6c61)
        let setup = makeSetup(&rng, seed: seed)
        let n = length ?? Int(rng.below(100)) + 60
        var g = GenState(setup: setup)
        var ops: [LabOp] = []
        ops.reserveCapacity(n)
        for i in 0..<n { ops.append(nextOp(&rng, &g, index: i)) }
        let h = LabHistory(seed: seed, setup: setup, ops: ops)
        return bugs.isEmpty ? h : avoid(bugs, in: h)
    }

    /// The bugs `avoid` knows how to steer clear of (the review's numbering).
    public static let avoidable: [Int: String] = [
        1: "transactional sends never give up (retries unlimited)",
        2: "aborts wait for queued records (no zero timeout)",
        3: "one exactly-once slot and no stalls (no rebalance inside a transaction)",
        4: "crashes never follow send_offsets_to_transaction",
        5: "exactly-once instances leave gracefully instead of closing inside a transaction",
        6: "no busy writer",
        7: "no 'latest' group",
    ]

    /// `h` without the triggers of the review's bugs `bugs` (operations keep their numbers; an
    /// operation without a harmless form goes), so the explorer can look past bugs known to be
    /// there, or test one fix at a time.
    public static func avoid(_ bugs: Set<Int>, in h: LabHistory) -> LabHistory {
        var setup = h.setup
        if bugs.contains(1) {
            setup.txnInput?.retries = Int(Int32.max)
            for i in setup.eoSlots.indices { setup.eoSlots[i].retries = Int(Int32.max) }
        }
        if bugs.contains(3) { setup.eoSlots = Array(setup.eoSlots.prefix(1)) }
        if bugs.contains(7) { setup.lateSlots = 0 }
        var ops: [LabOp] = [], numbers: [Int] = []
        for (n, op) in zip(h.numbers, h.ops) {
            var o: LabOp? = op
            switch op {
            case .txAbort(true) where bugs.contains(2): o = .txAbort(zeroTimeout: false)
            case .abort(let s, true) where bugs.contains(2): o = .abort(slot: s, zeroTimeout: false)
            case .crash(.eo, let s, true) where bugs.contains(4): o = .crash(.eo, slot: s, afterOffsets: false)
            case .closeNow(.eo, let s) where bugs.contains(5): o = .leave(.eo, slot: s)
            case .busyNext where bugs.contains(6): o = nil
            case .stall, .stallOne: if bugs.contains(3) { o = nil }
            default: break
            }
            if let x = o, bugs.contains(3) || bugs.contains(7) {
                if case .stallOne = x { o = nil }
                let h2 = LabHistory(seed: h.seed, setup: setup, ops: [x])
                if (try? h2.validate()) == nil { o = nil }
            }
            if let o { ops.append(o); numbers.append(n) }
        }
        return LabHistory(seed: h.seed, setup: setup, ops: ops, numbers: numbers)
    }

    static func makeSetup(_ r: inout SplitMix64, seed: UInt64) -> LabSetup {
        let losses = [0.0, 0.0, 0.1, 0.3]
        func loss() -> Double { losses[Int(r.below(UInt64(losses.count)))] }
        func txnSpec(_ salt: UInt64) -> LabTxnSpec {
            LabTxnSpec(requestLoss: loss(), ackLoss: loss(), retries: [0, 0, 1, 3, Int(Int32.max)][Int(r.below(5))],
                       shortTxnTimeout: r.chance(0.4), redo: r.chance(0.5), faultSeed: seed &+ salt)
        }
        let producers = DeliveryMode.allCases.enumerated().map { i, m in
            LabProducerSpec(mode: m, requestLoss: loss(), ackLoss: m == .atMostOnce ? 0 : loss(),
                            retries: m == .atMostOnce ? nil : (r.chance(0.3) ? 2 : nil), faultSeed: seed &+ UInt64(100 + i))
        }
        let txnInput = r.chance(0.7) ? txnSpec(200) : nil
        let eo = (0..<(2 + Int(r.below(2)))).map { txnSpec(300 + UInt64($0)) }
        return LabSetup(partitions: Int32(2 + r.below(3)), producers: producers, txnInput: txnInput, eoSlots: eo,
                        aloSlots: 1 + Int(r.below(2)), amoSlots: Int(r.below(2)), lateSlots: r.chance(0.5) ? 1 : 0,
                        storageFaultRate: r.chance(0.2) ? 0.03 : 0, storageFaultSeed: seed &+ 7)
    }

    /// A rough picture of the state, so generated operations are mostly meaningful.
    struct GenState {
        let setup: LabSetup
        var running: [PipeKind: Set<Int>] = [:]
        var eoTxn: Set<Int> = []
        var txOpen = false
        init(setup: LabSetup) { self.setup = setup }
    }

    static func nextOp(_ r: inout SplitMix64, _ g: inout GenState, index: Int) -> LabOp {
        let s = g.setup
        let kinds = PipeKind.allCases.filter { s.slots($0) > 0 }
        func ids() -> [UInt64] { (0..<(1 + r.below(4))).map { UInt64(index) * 10 + $0 + 1 } }
        func style() -> SendStyle { SendStyle.allCases[Int(r.below(3))] }
        func kindWeighted() -> PipeKind {
            // exactly-once pipelines are where most of the rules live: pick them half the time
            r.chance(0.5) ? .eo : kinds[Int(r.below(UInt64(kinds.count)))]
        }
        // weighted choice of a family of operations
        let table: [(Double, String)] = [
            (10, "send"), (2, "flush"), (0.6, "restart"),
            (s.txnInput == nil ? 0 : 10, "tx"),
            (30, "pipe"), (3, "stall"), (2, "busy"),
        ]
        var pick = r.unit() * table.reduce(0) { $0 + $1.0 }
        var family = "pipe"
        for (w, f) in table {
            if pick < w { family = f; break }
            pick -= w
        }
        switch family {
        case "send":
            return .send(producer: Int(r.below(UInt64(s.producers.count))), ids: ids(), style: style())
        case "flush":
            return .flush(producer: Int(r.below(UInt64(s.producers.count))))
        case "restart":
            return .restartProducer(producer: Int(r.below(UInt64(s.producers.count))))
        case "tx":
            let x = r.unit()
            if !g.txOpen && x < 0.5 { g.txOpen = true; return .txBegin }
            if x < 0.55 { g.txOpen = false; return .txCrash }
            if x < 0.58 { g.txOpen = false; return .txClose }
            if x < 0.7 { g.txOpen = false; return r.chance(0.7) ? .txCommit : .txAbort(zeroTimeout: r.chance(0.5)) }
            g.txOpen = true
            return .txSend(ids: ids(), style: style(), deferReaction: r.chance(0.3))
        case "stall":
            let x = r.unit()
            let ms: Int64 = x < 0.3 ? 3_000 : (x < 0.65 ? 15_000 : 25_000)
            if r.chance(0.5) {
                let k = kindWeighted()
                return .stallOne(k, slot: Int(r.below(UInt64(s.slots(k)))), ms: ms)
            }
            return .stall(ms: ms)
        case "busy":
            return .busyNext
        default:
            let k = kindWeighted()
            let slot = Int(r.below(UInt64(s.slots(k))))
            let running = g.running[k, default: []].contains(slot)
            if !running {
                if r.chance(0.85) {
                    g.running[k, default: []].insert(slot)
                    return .start(k, slot: slot, shortSession: r.chance(0.5))
                }
                return .poll(k, slot: slot, max: 1 + Int(r.below(4)))
            }
            let x = r.unit()
            switch k {
            case .eo:
                if x < 0.36 { g.eoTxn.insert(slot); return .poll(k, slot: slot, max: 1 + Int(r.below(4))) }
                if x < 0.56 { return .process(k, slot: slot, style: style(), deferReaction: r.chance(0.3)) }
                if x < 0.78 { g.eoTxn.remove(slot); return .commit(k, slot: slot, commitAnyway: r.chance(0.3)) }
                if x < 0.83 { g.eoTxn.remove(slot); return .abort(slot: slot, zeroTimeout: r.chance(0.6)) }
            case .amo:
                if x < 0.5 { return .poll(k, slot: slot, max: 1 + Int(r.below(4))) }
                if x < 0.8 { return .process(k, slot: slot, style: style(), deferReaction: false) }
            case .alo, .late:
                if x < 0.82 { return .poll(k, slot: slot, max: 1 + Int(r.below(4))) }
            }
            let y = r.unit()
            g.running[k, default: []].remove(slot)
            g.eoTxn.remove(slot)
            if y < 0.35 { return .leave(k, slot: slot) }
            if y < 0.55 { return .closeNow(k, slot: slot) }
            return .crash(k, slot: slot, afterOffsets: k == .eo && r.chance(0.6))
        }
    }
}

extension SplitMix64 {
    /// A number in `0..<n` (n > 0).
    mutating func below(_ n: UInt64) -> UInt64 { n == 0 ? 0 : next() % n }
    /// True with probability `p`.
    mutating func chance(_ p: Double) -> Bool { unit() < p }
}

// MARK: The history file format

/// A history as text, one line per item, so a minimal history can be kept in a file (or in
/// source) and replayed without the generator that first made it:
///
/// ```
/// kofka-lab-history 1
/// seed 3
/// partitions 3
/// storage-faults 0.03 10
/// producer at-least-once 0.1 0.3 - 101
/// txn-input 0.0 0.0 2147483647 long redo 200
/// eo 0.3 0.1 0 long rewind 300
/// slots alo=1 amo=1 late=0
/// 93 start eo 0 short
/// 94 produce p1 941,942,943
/// ```
extension LabHistory {
    public static let formatHeader = "kofka-lab-history 1"

    /// The history in the file format.
    public var encoded: String {
        var out = [Self.formatHeader, "seed \(seed)", "partitions \(setup.partitions)"]
        out.append("storage-faults \(setup.storageFaultRate) \(setup.storageFaultSeed)")
        for p in setup.producers {
            out.append("producer \(p.mode.rawValue) \(p.requestLoss) \(p.ackLoss) \(p.retries.map(String.init) ?? "-") \(p.faultSeed)")
        }
        func txn(_ s: LabTxnSpec) -> String {
            "\(s.requestLoss) \(s.ackLoss) \(s.retries) \(s.shortTxnTimeout ? "short" : "long") \(s.redo ? "redo" : "rewind") \(s.faultSeed)"
        }
        if let t = setup.txnInput { out.append("txn-input " + txn(t)) }
        for e in setup.eoSlots { out.append("eo " + txn(e)) }
        out.append("slots alo=\(setup.aloSlots) amo=\(setup.amoSlots) late=\(setup.lateSlots)")
        for (n, op) in zip(numbers, ops) { out.append("\(n) " + op.encoded) }
        return out.joined(separator: "\n") + "\n"
    }

    /// Reads the file format; throws `.invalidArg` naming the bad line.
    public init(decoding text: String) throws {
        var lines = text.split(separator: "\n").map { String($0).trimmed }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard lines.first == Self.formatHeader else {
            throw KofkaError(.invalidArg, "not a lab history: the first line must be '\(Self.formatHeader)'")
        }
        lines.removeFirst()
        var seed: UInt64 = 0
        var setup = LabSetup(partitions: 1, producers: [], txnInput: nil, eoSlots: [], aloSlots: 0, amoSlots: 0, lateSlots: 0,
                             storageFaultRate: 0, storageFaultSeed: 0)
        var ops: [LabOp] = [], numbers: [Int] = []
        for line in lines {
            let w = line.split(separator: " ").map(String.init)
            func bad() -> KofkaError { KofkaError(.invalidArg, "invalid history line '\(line)'") }
            func num<T: LosslessStringConvertible>(_ i: Int) throws -> T {
                guard i < w.count, let v = T(w[i]) else { throw bad() }
                return v
            }
            func txn() throws -> LabTxnSpec {
                guard w.count == 7 else { throw bad() }
                return LabTxnSpec(requestLoss: try num(1), ackLoss: try num(2), retries: try num(3), shortTxnTimeout: w[4] == "short",
                                  redo: w[5] == "redo", faultSeed: try num(6))
            }
            switch w[0] {
            case "seed": seed = try num(1)
            case "partitions": setup.partitions = try num(1)
            case "storage-faults": setup.storageFaultRate = try num(1); setup.storageFaultSeed = try num(2)
            case "producer":
                guard w.count == 6, let mode = DeliveryMode(rawValue: w[1]) else { throw bad() }
                setup.producers.append(LabProducerSpec(mode: mode, requestLoss: try num(2), ackLoss: try num(3),
                                                       retries: w[4] == "-" ? nil : try num(4), faultSeed: try num(5)))
            case "txn-input": setup.txnInput = try txn()
            case "eo": setup.eoSlots.append(try txn())
            case "slots":
                for kv in w.dropFirst() {
                    let p = kv.split(separator: "=")
                    guard p.count == 2, let n = Int(p[1]) else { throw bad() }
                    switch p[0] {
                    case "alo": setup.aloSlots = n
                    case "amo": setup.amoSlots = n
                    case "late": setup.lateSlots = n
                    default: throw bad()
                    }
                }
            default:
                guard let n = Int(w[0]), let op = LabOp(decoding: Array(w.dropFirst())) else { throw bad() }
                numbers.append(n)
                ops.append(op)
            }
        }
        self.init(seed: seed, setup: setup, ops: ops, numbers: numbers)
        try validate()
    }

    /// Throws when an operation names a client the setup does not have.
    func validate() throws {
        for (n, op) in zip(numbers, ops) {
            let ok: Bool = switch op {
            case .send(let p, _, _), .flush(let p), .restartProducer(let p): p >= 0 && p < setup.producers.count
            case .txBegin, .txSend, .txCommit, .txAbort, .txCrash, .txClose: setup.txnInput != nil
            case .start(let k, let s, _), .poll(let k, let s, _), .process(let k, let s, _, _), .commit(let k, let s, _),
                 .leave(let k, let s), .closeNow(let k, let s), .crash(let k, let s, _), .stallOne(let k, let s, _):
                s >= 0 && s < setup.slots(k)
            case .abort(let s, _): s >= 0 && s < setup.slots(.eo)
            case .stall, .busyNext: true
            }
            if !ok { throw KofkaError(.invalidArg, "operation \(n) (\(op)) names a client the setup does not have") }
        }
    }
}

extension LabOp {
    /// The operation's words in the file format.
    public var encoded: String {
        func ids(_ v: [UInt64]) -> String { v.map(String.init).joined(separator: ",") }
        func flag(_ b: Bool, _ s: String) -> String { b ? " " + s : "" }
        switch self {
        case .send(let p, let v, let s): return "\(s.rawValue) p\(p) \(ids(v))"
        case .flush(let p): return "flush p\(p)"
        case .restartProducer(let p): return "restart p\(p)"
        case .txBegin: return "tx-begin"
        case .txSend(let v, let s, let d): return "tx-\(s.rawValue) \(ids(v))" + flag(d, "later")
        case .txCommit: return "tx-commit"
        case .txAbort(let z): return "tx-abort" + flag(z, "zero")
        case .txCrash: return "tx-crash"
        case .txClose: return "tx-close"
        case .start(let k, let s, let short): return "start \(k.rawValue) \(s) \(short ? "short" : "long")"
        case .poll(let k, let s, let m): return "poll \(k.rawValue) \(s) \(m)"
        case .process(let k, let s, let st, let d): return "process \(k.rawValue) \(s) \(st.rawValue)" + flag(d, "later")
        case .commit(let k, let s, let a): return "commit \(k.rawValue) \(s)" + flag(a, "anyway")
        case .abort(let s, let z): return "abort eo \(s)" + flag(z, "zero")
        case .leave(let k, let s): return "leave \(k.rawValue) \(s)"
        case .closeNow(let k, let s): return "close \(k.rawValue) \(s)"
        case .crash(let k, let s, let a): return "crash \(k.rawValue) \(s)" + flag(a, "after-offsets")
        case .stall(let ms): return "stall \(ms)"
        case .stallOne(let k, let s, let ms): return "stall-one \(k.rawValue) \(s) \(ms)"
        case .busyNext: return "busy"
        }
    }

    init?(decoding w: [String]) {
        guard let verb = w.first else { return nil }
        let has = { (s: String) in w.dropFirst().contains(s) }
        func ids(_ s: String) -> [UInt64]? {
            let v = s.split(separator: ",").compactMap { UInt64($0) }
            return v.isEmpty ? nil : v
        }
        func producer(_ s: String) -> Int? { s.hasPrefix("p") ? Int(s.dropFirst()) : nil }
        func kindSlot() -> (PipeKind, Int)? {
            guard w.count >= 3, let k = PipeKind(rawValue: w[1]), let s = Int(w[2]) else { return nil }
            return (k, s)
        }
        if let style = SendStyle(rawValue: verb) {
            guard w.count == 3, let p = producer(w[1]), let v = ids(w[2]) else { return nil }
            self = .send(producer: p, ids: v, style: style)
            return
        }
        if verb.hasPrefix("tx-"), let style = SendStyle(rawValue: String(verb.dropFirst(3))) {
            guard w.count >= 2, let v = ids(w[1]) else { return nil }
            self = .txSend(ids: v, style: style, deferReaction: has("later"))
            return
        }
        switch verb {
        case "flush", "restart":
            guard w.count == 2, let p = producer(w[1]) else { return nil }
            self = verb == "flush" ? .flush(producer: p) : .restartProducer(producer: p)
        case "tx-begin": self = .txBegin
        case "tx-commit": self = .txCommit
        case "tx-abort": self = .txAbort(zeroTimeout: has("zero"))
        case "tx-crash": self = .txCrash
        case "tx-close": self = .txClose
        case "start":
            guard let (k, s) = kindSlot(), w.count == 4 else { return nil }
            self = .start(k, slot: s, shortSession: w[3] == "short")
        case "poll":
            guard let (k, s) = kindSlot(), w.count == 4, let m = Int(w[3]) else { return nil }
            self = .poll(k, slot: s, max: m)
        case "process":
            guard let (k, s) = kindSlot(), w.count >= 4, let st = SendStyle(rawValue: w[3]) else { return nil }
            self = .process(k, slot: s, style: st, deferReaction: has("later"))
        case "commit":
            guard let (k, s) = kindSlot() else { return nil }
            self = .commit(k, slot: s, commitAnyway: has("anyway"))
        case "abort":
            guard let (k, s) = kindSlot(), k == .eo else { return nil }
            self = .abort(slot: s, zeroTimeout: has("zero"))
        case "leave", "close":
            guard let (k, s) = kindSlot() else { return nil }
            self = verb == "leave" ? .leave(k, slot: s) : .closeNow(k, slot: s)
        case "crash":
            guard let (k, s) = kindSlot() else { return nil }
            self = .crash(k, slot: s, afterOffsets: has("after-offsets"))
        case "stall":
            guard w.count == 2, let ms = Int64(w[1]) else { return nil }
            self = .stall(ms: ms)
        case "stall-one":
            guard let (k, s) = kindSlot(), w.count == 4, let ms = Int64(w[3]) else { return nil }
            self = .stallOne(k, slot: s, ms: ms)
        case "busy": self = .busyNext
        default: return nil
        }
    }
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return String(s)
    }
}
