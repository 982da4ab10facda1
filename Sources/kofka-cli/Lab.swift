import ArgumentParser
import Kofka
import KofkaCommandSupport
import KofkaLab
#if canImport(Glibc)
import Glibc
#endif

/// `kofka lab`: the schedule explorer.
struct Lab: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Explore random histories of producers, transactions, groups, crashes, stalls and faults against Kafka's rules.",
        discussion: """
            Each history is generated from a seed: plain producers in every mode, a transactional \
            producer, exactly-once / at-least-once / at-most-once consume-transform-produce pipelines, \
            group joins and leaves, crashes and restarts, stalls past session and transaction timeouts, \
            lossy links, storage failures and a busy SQLite writer. A violation is shrunk to a minimal \
            history that `kofka lab replay` runs again exactly.
            """,
        subcommands: [LabExplore.self, LabReplay.self, LabShow.self, LabBugs.self, LabConformance.self, LabWorkerCommand.self])
}

/// `kofka lab explore`
struct LabExplore: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "explore", abstract: "Run seeded histories for a while; report and shrink violations.")

    @Option(help: "Seconds to explore (shrinking not counted).") var seconds = 10.0
    @Option(help: "memory:, sqlite:PATH or a plugin's SCHEME:PATH such as lmdb:PATH (a fresh store PATH-… per history), or postgresql://USER@HOST/DB (a fresh schema per history).") var storage = "memory:"
    @Option(help: "sequential (deterministic, shrinkable), threads, or processes (sqlite only).") var mode = "sequential"
    @Option(help: "First seed (default: from the clock).") var seed: UInt64?
    @Option(name: .customLong("shrink-seconds"), help: "Time limit for shrinking one violation.") var shrinkSeconds = 60.0
    @Flag(name: .customLong("no-shrink"), help: "Report violations without shrinking them.") var noShrink = false
    @Flag(name: .customLong("stop-on-first"), help: "Stop at the first violation.") var stopOnFirst = false
    @Flag(help: "Count every failing history by the kind of its first violation (with a few seeds of each).") var census = false
    @Option(help: "Stop after this many histories (sequential mode).") var histories: Int?
    @Option(help: ArgumentHelp("Steer clear of the triggers of the review's bugs, e.g. 1,2,7 (see kofka lab bugs).", valueName: "bugs")) var avoid: String?
    @Option(help: "processes mode: worker processes.") var workers = 3
    @Option(help: "Write each minimal history to DIR/<kind>-<seed>.history (replay it with --history); processes mode: keep a failing history's database and worker journals in DIR.") var save: String?

    func validate() throws {
        guard ["sequential", "threads", "processes"].contains(mode) else {
            throw ValidationError("unknown mode '\(mode)': expected sequential, threads or processes")
        }
        if mode == "processes" && !storage.hasPrefix("sqlite:") {
            throw ValidationError("--mode processes needs a shared file: use --storage sqlite:PATH")
        }
    }

    func run() throws {
        let st = try LabStorage(storage)
        let first = seed ?? UInt64(monoNsNow() % 1_000_000_000)
        print("exploring \(mode) on \(LabPostgres.redacted(storage)) for \(seconds) s from seed \(first)")
        let stats: LabExploreStats
        switch mode {
        case "threads":
            stats = LabThreads.explore(storage: st, seconds: seconds, seed: first, stopOnFirst: stopOnFirst, avoiding: try parseBugs(avoid)) { print($0); fflush(stdout) }
        case "processes":
            stats = try LabProcesses.explore(storage: storage, seconds: seconds, seed: first, workers: workers, executable: selfExecutable(),
                                             avoiding: try parseBugs(avoid), keep: save, spawn: spawnProcess) { print($0); fflush(stdout) }
        default:
            stats = LabRunner.explore(storage: st, seconds: seconds, seed: first, shrink: !noShrink, shrinkSeconds: shrinkSeconds,
                                      stopOnFirst: stopOnFirst, maxHistories: histories ?? .max, avoiding: try parseBugs(avoid), found: { f in
                                          print(f.text(storage: storage))
                                          if let save {
                                              let path = "\(save)/\(f.violation.kind.rawValue)-\(f.minimal.seed).history"
                                              if writeLabFile(path, f.minimal.encoded) { print("saved: \(path) (kofka lab replay --history \(path) --storage \(storage))") }
                                          }
                                          print("")
                                          fflush(stdout)
                                      }, progress: { s in
                                          if isatty(2) != 0 {
                                              eprint("\r\u{1b}[K  \(s.histories) histories, \(s.ops) ops, \(Int(s.historiesPerSecond)) histories/s, \(Int(s.opsPerSecond)) ops/s, \(s.failing) failing")
                                          }
                                      })
            if isatty(2) != 0 { eprint("\r\u{1b}[K") }
        }
        print("explored \(stats.histories) histories, \(stats.ops) operations in \(fmt(stats.seconds, 1)) s: "
              + "\(fmt(stats.historiesPerSecond, 1)) histories/s, \(Int(stats.opsPerSecond)) ops/s; "
              + "\(stats.failing) failing, \(stats.findings.count) kind(s) of violation\(stats.errors > 0 ? ", \(stats.errors) could not run" : "")")
        for f in stats.findings {
            print("  \(f.violation.kind.rawValue): after \(fmt(f.secondsToFind, 2)) s, \(f.historiesToFind) histories; "
                  + (f.shrinkRuns > 0 ? "minimal history \(f.minimal.ops.count) ops" : "seed \(f.history.seed), not shrunk"))
        }
        if census {
            for (k, c) in stats.census.sorted(by: { $0.value.count > $1.value.count }) {
                print("  census \(k.rawValue): \(c.count) histories, e.g. seeds \(c.seeds.map(String.init).joined(separator: ", "))")
            }
        }
        if !stats.findings.isEmpty { throw CLIError("\(stats.findings.count) kind(s) of violation found") }
        if let e = stats.firstSetupError {
            throw CLIError("\(stats.errors) of \(stats.histories) histories could not be set up, so they checked nothing: \(e)")
        }
    }
}

/// `kofka lab replay`
struct LabReplay: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "replay", abstract: "Run one seeded history (or some of its operations) sequentially, with a trace.")

    @OptionGroup var which: LabHistoryOptions
    @Option(help: "memory:, sqlite:PATH or postgresql://USER@HOST/DB.") var storage = "memory:"
    @Flag(name: .customLong("quiet"), help: "No op-by-op trace.") var quiet = false

    func run() throws {
        let st = try LabStorage(storage)
        let h = try which.history()
        print("seed \(h.seed), \(h.ops.count) operations; setup: \(h.setup)")
        let r = LabRunner.run(h, storage: st, trace: !quiet)
        if !quiet { for line in r.trace { print(line) } }
        if let e = r.setupError { throw CLIError("the history could not be set up, so it checked nothing: \(e)") }
        print("ran \(r.opsRun) operations in \(fmt(r.seconds * 1000, 1)) ms")
        if r.violations.isEmpty {
            print("no violation")
        } else {
            for v in r.violations { print("VIOLATION \(v)") }
            throw CLIError("\(r.violations.count) violation(s)")
        }
    }
}

/// `kofka lab show`
struct LabShow: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Print a history: numbered operations, or the history file format.")
    @OptionGroup var which: LabHistoryOptions
    @Flag(help: "Print the history file format (for --history).") var encoded = false
    func run() throws {
        let h = try which.history()
        if encoded {
            print(h.encoded, terminator: "")
        } else {
            print("seed \(h.seed): \(h.setup)")
            print(h.listing)
        }
    }
}

extension Substring {
    func trimmingCharacters() -> String { String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
}

func monoNsNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// `kofka lab worker`: one pipeline worker process of the processes mode (started by `kofka lab explore --mode processes`).
struct LabWorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "worker", abstract: "A lab worker process.", shouldDisplay: false)
    @Option var storage: String
    @Option var seed: UInt64
    @Option var kind: String
    @Option var slot: Int
    @Option var incarnation: Int
    @Option var avoid: String?

    func run() throws {
        guard let k = PipeKind(rawValue: kind) else { throw ValidationError("unknown pipeline kind '\(kind)'") }
        try LabProcesses.worker(storage: storage, seed: seed, kind: k, slot: slot, incarnation: incarnation, avoiding: try parseBugs(avoid))
    }
}

/// Which history a lab command works on: a generated one (seed, some operations) or a file.
struct LabHistoryOptions: ParsableArguments {
    @Option(help: "The generated history's seed.") var seed: UInt64?
    @Option(help: "Operation numbers to keep, comma-separated (default: all).") var ops: String?
    @Option(name: .customLong("history"), help: "A history file (kofka lab show --encoded, or explore --save).") var file: String?
    @Option(help: ArgumentHelp("With --seed: the bugs whose triggers the generator avoided (as explore --avoid).", valueName: "bugs")) var avoid: String?

    func history() throws -> LabHistory {
        if let file {
            guard let text = readLabFile(file) else { throw CLIError("cannot read '\(file)'") }
            var h = try LabHistory(decoding: text)
            if let numbers = try numbers() { h = h.keeping(numbers: numbers) }
            return h
        }
        guard let seed else { throw ValidationError("give --seed or --history") }
        return LabRunner.history(seed: seed, ops: try numbers(), avoiding: try parseBugs(avoid))
    }

    func numbers() throws -> [Int]? {
        try ops.map { s in
            try s.split(separator: ",").map { t -> Int in
                guard let n = Int(t.trimmingCharacters()) else { throw ValidationError("invalid operation number '\(t)'") }
                return n
            }
        }
    }
}

/// `kofka lab bugs`: the minimal histories of the bugs an outside review found, run again.
struct LabBugs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bugs",
        abstract: "Replay the minimal histories of the review's bugs 1–7; each says whether its violation still shows.",
        discussion: "On the core the review broke, every history shows its violation; once a bug is fixed its history runs clean. Exits non-zero while any still shows.")
    @Option(help: "A directory for SQLite files (the bugs that need a busy writer run there).") var dir = "/tmp"

    func run() throws {
        var showing = 0
        for b in LabKnownBugs.all {
            let st = try LabStorage(b.needsSQLite ? "sqlite:\(dir)/kofka-lab-bug\(b.number)" : "memory:")
            let h = try b.history()
            let r = LabRunner.run(h, storage: st)
            let shows = r.violations.contains { b.kinds.contains($0.kind) }
            if shows { showing += 1 }
            print("bug \(b.number) (\(b.title)): \(shows ? "SHOWS" : "clean") — \(h.ops.count) ops on \(st.spec)"
                  + (r.first.map { "\n    \($0)" } ?? ""))
        }
        if showing > 0 { throw CLIError("\(showing) of \(LabKnownBugs.all.count) bug histories still show their violation") }
    }
}


/// "1,2,7" → {1, 2, 7}; each must be a bug `LabGenerator.avoid` knows.
func parseBugs(_ s: String?) throws -> Set<Int> {
    guard let s else { return [] }
    var out: Set<Int> = []
    for t in s.split(separator: ",") {
        guard let n = Int(t.trimmingCharacters()), LabGenerator.avoidable[n] != nil else {
            throw ValidationError("invalid bug '\(t)' for --avoid: expected numbers among \(LabGenerator.avoidable.keys.sorted().map(String.init).joined(separator: ", "))")
        }
        out.insert(n)
    }
    return out
}
