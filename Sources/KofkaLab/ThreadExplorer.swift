import Kofka
#if canImport(Glibc)
import Glibc
#endif

/// The threaded mode: a seeded history is split into one script per client (each plain producer,
/// the transactional producer, each pipeline slot, and the clock), and every script runs on its
/// own thread at once. Real interleavings, so runs do not replay exactly: a violation is reported
/// with its seed and every thread's script (and whether the sequential order of the same history
/// shows it too). Checks that need a group to hold still (who polled what) are off; the rest run
/// as in the sequential mode, with the end phase after the threads are joined.
public enum LabThreads {
    /// The thread that runs `op`.
    static func owner(_ op: LabOp) -> String {
        switch op {
        case .send(let p, _, _), .flush(let p), .restartProducer(let p): "p\(p)"
        case .txBegin, .txSend, .txCommit, .txAbort, .txCrash, .txClose: "T"
        case .start(let k, let s, _), .poll(let k, let s, _), .process(let k, let s, _, _), .commit(let k, let s, _),
             .leave(let k, let s), .closeNow(let k, let s), .crash(let k, let s, _):
            "\(k.rawValue)\(s)"
        case .abort(let s, _): "eo\(s)"
        case .stall, .stallOne, .busyNext: "clock"
        }
    }

    /// Each thread's script: (thread, [(op number, op)]), in a stable order.
    public static func scripts(_ h: LabHistory) -> [(String, [(Int, LabOp)])] {
        var by: [String: [(Int, LabOp)]] = [:]
        for (n, op) in zip(h.numbers, h.ops) { by[owner(op), default: []].append((n, op)) }
        return by.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// The scripts as text.
    public static func listing(_ h: LabHistory) -> String {
        scripts(h).map { name, ops in
            "  thread \(name): " + ops.map { "\($0.0). \($0.1)" }.joined(separator: "; ")
        }.joined(separator: "\n")
    }

    /// Runs `history` with one thread per client.
    public static func run(_ history: LabHistory, storage: LabStorage) -> LabRunResult {
        let (s, cleanup) = storage.fresh()
        defer { cleanup() }
        let world: LabWorld
        do { world = try LabWorld(history, storage: s, concurrent: true) } catch {
            return .notSetUp(error)
        }
        defer { world.close() }
        let t0 = monoNs()
        let box = LabBox(world)
        let done = LabFlag()
        var bodies: [@Sendable () -> Void] = scripts(history).map { _, ops in
            { @Sendable in
                for (n, op) in ops {
                    switch op {
                    case .busyNext: continue
                    case .stallOne(_, _, let ms): box.world.clock.advance(ms: ms)
                    default: box.world.execute(op, number: n)
                    }
                }
            }
        }
        bodies.append { @Sendable in
            while !done.value {
                box.world.observe()
                usleep(2_000)
            }
        }
        labRunThreads(bodies, last: { done.set() })
        world.observe()
        if !world.model.failed { world.endPhase() }
        return LabRunResult(violations: world.model.violations, opsRun: history.ops.count + world.opsRun,
                            seconds: Double(monoNs() - t0) / 1e9, trace: [])
    }

    /// Runs seeded histories with threads for `seconds`; prints each violation with its seed and scripts.
    public static func explore(storage: LabStorage, seconds: Double, seed: UInt64, stopOnFirst: Bool, avoiding: Set<Int> = [],
                               print: (String) -> Void) -> LabExploreStats {
        var stats = LabExploreStats()
        let t0 = monoNs()
        var kinds: Set<LabViolationKind> = []
        var s = seed
        while Double(monoNs() - t0) / 1e9 < seconds {
            let h = LabGenerator.history(seed: s, avoiding: avoiding)
            s &+= 1
            let r = run(h, storage: storage)
            guard let v = stats.count(r, seed: h.seed) else { continue }
            guard !kinds.contains(v.kind) else { continue }
            kinds.insert(v.kind)
            let when = Double(monoNs() - t0) / 1e9
            let sequential = LabRunner.run(h, storage: storage).first
            print("""
                VIOLATION \(v.kind.rawValue) (threads) — found after \(format2(when)) s, \(stats.histories) histories; seed \(h.seed)
                  \(v.detail)
                  setup: \(h.setup)
                \(listing(h))
                  the same history in sequential order: \(sequential.map { "\($0.kind.rawValue)" } ?? "no violation")\
                \(sequential != nil ? " — replay: kofka lab replay --seed \(h.seed) --storage \(storage.spec)" : "")

                """)
            stats.findings.append(LabFinding(violation: v, history: h, minimal: h, minimalViolation: v, secondsToFind: when,
                                             historiesToFind: stats.histories, shrinkRuns: 0, reproduced: 0))
            if stopOnFirst { break }
        }
        stats.seconds = Double(monoNs() - t0) / 1e9
        return stats
    }
}

/// Hands a non-Sendable value to threads that the caller joins before touching it again.
final class LabBox: @unchecked Sendable {
    let world: LabWorld
    init(_ w: LabWorld) { world = w }
}

/// A flag threads poll.
final class LabFlag: @unchecked Sendable {
    private let lock = LabLock()
    private var v = false
    var value: Bool { lock.with { v } }
    func set() { lock.with { v = true } }
}

/// Runs every body but the last on its own thread; when they are all done, calls `last()`
/// (which must make the last body return) and joins it.
func labRunThreads(_ bodies: [@Sendable () -> Void], last: () -> Void) {
    final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    var threads: [pthread_t] = []
    for b in bodies {
        let arg = Unmanaged.passRetained(Box(b)).toOpaque()
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { p in
            guard let p else { return nil }
            Unmanaged<Box>.fromOpaque(p).takeRetainedValue().body()
            return nil
        }, arg)
        if rc == 0 {
            threads.append(t)
        } else {
            Unmanaged<Box>.fromOpaque(arg).takeRetainedValue().body()
        }
    }
    for t in threads.dropLast() { pthread_join(t, nil) }
    last()
    if let t = threads.last { pthread_join(t, nil) }
}
