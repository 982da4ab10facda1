import Kofka
#if canImport(Glibc)
import Glibc
#endif

/// Where the explorer runs histories: `memory:` (a fresh in-process store per history),
/// `sqlite:PATH` (a fresh file per history, named after PATH, removed afterwards), a plugin's
/// `SCHEME:PATH` such as `lmdb:PATH` (a fresh store PATH-… per history: a file or a directory of
/// files, removed afterwards) or `postgresql://…` (a fresh schema per history on that database,
/// dropped afterwards).
public final class LabStorage: @unchecked Sendable {
    public let spec: String
    private let lock = LabLock()
    private var counter = 0

    public init(_ spec: String) throws {
        let postgres = LabPostgres.isPostgres(spec)
        let colon = spec.firstIndex(of: ":")
        let isMemory = spec == "memory:" || spec == "memory"
        guard isMemory || postgres || (colon.map { $0 != spec.startIndex && spec.index(after: $0) != spec.endIndex } ?? false) else {
            throw KofkaError(.invalidArg, "unknown lab storage '\(spec)': expected memory:, sqlite:PATH, postgresql://USER@HOST/DB or a plugin's SCHEME:PATH (lmdb:PATH)")
        }
        self.spec = isMemory ? "memory:" : spec
        if postgres { try LabPostgres.loadPlugin(spec) }
    }

    public var isSQLite: Bool { spec.hasPrefix("sqlite:") }
    public var isMemory: Bool { spec == "memory:" }
    public var isPostgres: Bool { LabPostgres.isPostgres(spec) }

    /// A fresh storage string and what removes it afterwards.
    func fresh() -> (String, () -> Void) {
        guard !isMemory else { return ("memory:", {}) }
        if isPostgres {
            let (storage, schema) = LabPostgres.freshStore(spec, tag: "lab")
            return (storage, { [spec] in LabPostgres.dropSchema(spec, schema) })
        }
        let n = lock.with { counter += 1; return counter }
        let colon = spec.firstIndex(of: ":")!
        let scheme = String(spec[...colon])
        let path = String(spec[spec.index(after: colon)...]) + "-\(getpid())-\(n)" + (isSQLite ? ".db" : "")
        Self.remove(path)
        return (scheme + path, { Self.remove(path) })
    }

    /// Removes a store file with its side files, or a store directory with its files.
    static func remove(_ path: String) {
        var st = stat()
        if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
            if let dir = opendir(path) {
                while let e = readdir(dir) {
                    let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                    if name != "." && name != ".." { unlink(path + "/" + name) }
                }
                closedir(dir)
            }
            rmdir(path)
        } else {
            for suffix in ["", "-wal", "-shm", "-journal", "-bell"] { unlink(path + suffix) }
        }
    }
}

/// A violation found by exploring, with the history that showed it and its shrunk form.
public struct LabFinding: Sendable {
    public var violation: LabViolation
    /// The generated history that first showed it.
    public var history: LabHistory
    /// The minimal history (equal to `history` when not shrunk).
    public var minimal: LabHistory
    /// The violation the minimal history shows (its op numbers refer to the generated history).
    public var minimalViolation: LabViolation
    /// Seconds and histories from the start of the exploration until it was found.
    public var secondsToFind: Double
    public var historiesToFind: Int
    /// Runs the shrinker made, and how many of 3 replays of the minimal history showed the same kind.
    public var shrinkRuns: Int
    public var reproduced: Int
    /// The bugs whose triggers the generator avoided (replay needs them too).
    public var avoiding: Set<Int> = []

    /// The command that replays the minimal history.
    public func replayCommand(storage: String) -> String {
        "kofka lab replay --seed \(minimal.seed) --storage \(storage) --ops \(minimal.opsArgument)"
            + (avoiding.isEmpty ? "" : " --avoid " + avoiding.sorted().map(String.init).joined(separator: ","))
    }

    /// A report: the violation, the minimal history as numbered operations, and how to replay it.
    public func text(storage: String) -> String {
        """
        VIOLATION \(violation.kind.rawValue) — found after \(format2(secondsToFind)) s, \(historiesToFind) histor\(historiesToFind == 1 ? "y" : "ies") (seed \(history.seed), \(history.ops.count) operations)
          \(violation.detail)
        minimal history: \(minimal.ops.count) of \(history.ops.count) operations (\(shrinkRuns) shrink runs; the same violation on \(reproduced) of 3 replays)
          setup: \(minimal.setup)
        \(minimal.listing)
          then the end phase: quiesce, check stable offsets, move past every timeout, drain, check.
          shows: \(minimalViolation)
        replay: \(replayCommand(storage: storage))
        """
    }
}

/// Totals of an exploration.
public struct LabExploreStats: Sendable {
    public var histories = 0
    public var ops = 0
    public var seconds = 0.0
    public var failing = 0
    /// Histories that could not be set up (they checked nothing), and the first one's reason.
    public var errors = 0
    public var firstSetupError: String?
    public var findings: [LabFinding] = []
    /// How many histories failed first with each kind, and the first few seeds of each.
    public var census: [LabViolationKind: (count: Int, seeds: [UInt64])] = [:]
    public var historiesPerSecond: Double { Double(histories) / max(seconds, 1e-9) }
    public var opsPerSecond: Double { Double(ops) / max(seconds, 1e-9) }

    /// Counts one run of the history with `seed`: its operations, whether it could be set up,
    /// and the kind of its first violation (in the census). Returns that violation.
    mutating func count(_ r: LabRunResult, seed: UInt64) -> LabViolation? {
        histories += 1
        ops += r.opsRun
        if let e = r.setupError {
            errors += 1
            if firstSetupError == nil { firstSetupError = e }
        }
        guard let v = r.first else { return nil }
        failing += 1
        var c = census[v.kind] ?? (0, [])
        c.count += 1
        if c.seeds.count < 8 { c.seeds.append(seed) }
        census[v.kind] = c
        return v
    }
}

/// Entry points: run one history, replay, explore.
public enum LabRunner {
    /// Runs `history` sequentially on a fresh store of `storage`.
    public static func run(_ history: LabHistory, storage: LabStorage, trace: Bool = false, sabotage: LabSabotage? = nil) -> LabRunResult {
        let (s, cleanup) = storage.fresh()
        defer { cleanup() }
        do {
            let w = try LabWorld(history, storage: s, trace: trace, sabotage: sabotage)
            defer { w.close() }
            return w.run()
        } catch {
            return .notSetUp(error)
        }
    }

    /// The generated history of `seed`, reduced to the operations numbered `ops` (all when nil).
    public static func history(seed: UInt64, ops: [Int]?, length: Int? = nil, avoiding: Set<Int> = []) -> LabHistory {
        let h = LabGenerator.history(seed: seed, length: length, avoiding: avoiding)
        guard let ops else { return h }
        return h.keeping(numbers: ops)
    }

    /// Runs seeded histories from `seed` on for `seconds`; each first violation of a kind is
    /// shrunk (when `shrink`) and handed to `found`. `stopOnFirst` ends at the first violation.
    public static func explore(storage: LabStorage, seconds: Double, seed: UInt64, shrink: Bool = true,
                               shrinkSeconds: Double = 60, stopOnFirst: Bool = false, maxHistories: Int = .max, avoiding: Set<Int> = [],
                               found: (LabFinding) -> Void, progress: ((LabExploreStats) -> Void)? = nil) -> LabExploreStats {
        var stats = LabExploreStats()
        let t0 = monoNs()
        var kinds: Set<LabViolationKind> = []
        var s = seed
        var lastProgress = t0
        var shrinkingNs: UInt64 = 0
        // exploring time: shrinking is not counted
        func elapsed() -> Double { Double(monoNs() - t0 - shrinkingNs) / 1e9 }
        while elapsed() < seconds && stats.histories < maxHistories {
            let h = LabGenerator.history(seed: s, avoiding: avoiding)
            s &+= 1
            let r = run(h, storage: storage)
            if let v = stats.count(r, seed: h.seed) {
                if !kinds.contains(v.kind) {
                    kinds.insert(v.kind)
                    let when = elapsed()
                    let count = stats.histories
                    let s0 = monoNs()
                    defer { shrinkingNs += monoNs() - s0 }
                    var minimal = h, runs = 0
                    if shrink { (minimal, runs) = LabShrinker.shrink(h, kind: v.kind, storage: storage, maxSeconds: shrinkSeconds) }
                    var again: [LabRunResult] = []
                    for _ in 0..<3 { again.append(run(minimal, storage: storage)) }
                    let reproduced = again.filter { $0.first?.kind == v.kind }.count
                    let mv = again.first { $0.first?.kind == v.kind }?.first ?? v
                    let f = LabFinding(violation: v, history: h, minimal: minimal, minimalViolation: mv, secondsToFind: when,
                                       historiesToFind: count, shrinkRuns: runs, reproduced: reproduced, avoiding: avoiding)
                    stats.findings.append(f)
                    found(f)
                    if stopOnFirst { break }
                }
            }
            if let progress, monoNs() - lastProgress > 1_000_000_000 {
                lastProgress = monoNs()
                stats.seconds = elapsed()
                progress(stats)
            }
        }
        stats.seconds = elapsed()
        return stats
    }
}

func format2(_ d: Double) -> String {
    let t = (d * 100).rounded() / 100
    return "\(t)"
}
