import ArgumentParser
import Kofka
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
        subcommands: [LabExplore.self, LabReplay.self, LabShow.self, LabWorkerCommand.self])
}

/// `kofka lab explore`
struct LabExplore: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "explore", abstract: "Run seeded histories for a while; report and shrink violations.")

    @Option(help: "Seconds to explore (shrinking not counted).") var seconds = 10.0
    @Option(help: "memory: or sqlite:PATH (a fresh file PATH-… per history).") var storage = "memory:"
    @Option(help: "sequential (deterministic, shrinkable), threads, or processes (sqlite only).") var mode = "sequential"
    @Option(help: "First seed (default: from the clock).") var seed: UInt64?
    @Option(name: .customLong("shrink-seconds"), help: "Time limit for shrinking one violation.") var shrinkSeconds = 60.0
    @Flag(name: .customLong("no-shrink"), help: "Report violations without shrinking them.") var noShrink = false
    @Flag(name: .customLong("stop-on-first"), help: "Stop at the first violation.") var stopOnFirst = false
    @Option(help: "processes mode: worker processes.") var workers = 3

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
        print("exploring \(mode) on \(storage) for \(seconds) s from seed \(first)")
        let stats: LabExploreStats
        switch mode {
        case "threads":
            stats = LabThreads.explore(storage: st, seconds: seconds, seed: first, stopOnFirst: stopOnFirst) { print($0); fflush(stdout) }
        case "processes":
            stats = try LabProcesses.explore(storage: storage, seconds: seconds, seed: first, workers: workers, executable: selfExecutable(),
                                             spawn: spawnProcess) { print($0); fflush(stdout) }
        default:
            stats = LabRunner.explore(storage: st, seconds: seconds, seed: first, shrink: !noShrink, shrinkSeconds: shrinkSeconds,
                                      stopOnFirst: stopOnFirst, found: { f in
                                          print(f.text(storage: storage))
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
            print("  \(f.violation.kind.rawValue): after \(fmt(f.secondsToFind, 2)) s, \(f.historiesToFind) histories; minimal history \(f.minimal.ops.count) ops")
        }
        if !stats.findings.isEmpty { throw CLIError("\(stats.findings.count) kind(s) of violation found") }
    }
}

/// `kofka lab replay`
struct LabReplay: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "replay", abstract: "Run one seeded history (or some of its operations) sequentially, with a trace.")

    @Option(help: "The history's seed.") var seed: UInt64
    @Option(help: "memory: or sqlite:PATH.") var storage = "memory:"
    @Option(help: "Operation numbers to keep, comma-separated (default: all).") var ops: String?
    @Flag(name: .customLong("quiet"), help: "No op-by-op trace.") var quiet = false

    func run() throws {
        let st = try LabStorage(storage)
        let numbers = try ops.map { s in
            try s.split(separator: ",").map { t -> Int in
                guard let n = Int(t.trimmingCharacters()) else { throw ValidationError("invalid operation number '\(t)'") }
                return n
            }
        }
        let h = LabRunner.history(seed: seed, ops: numbers)
        print("seed \(seed), \(h.ops.count) operations; setup: \(h.setup)")
        let r = LabRunner.run(h, storage: st, trace: !quiet)
        if !quiet { for line in r.trace { print(line) } }
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
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Print the history a seed generates.")
    @Option(help: "The history's seed.") var seed: UInt64
    func run() throws {
        let h = LabRunner.history(seed: seed, ops: nil)
        print("seed \(seed): \(h.setup)")
        print(h.listing)
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
    func run() throws {}
}
