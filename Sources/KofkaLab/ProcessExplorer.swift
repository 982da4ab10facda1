import Kofka
#if canImport(Glibc)
import Glibc
#endif

/// The processes mode: a history's pipeline slots run as worker processes on one SQLite file
/// (`kofka lab worker`), each running random operations of its slot in real time; the parent
/// runs the history's producers and, meanwhile, kills workers with SIGKILL (restarting them with
/// the same `transactional.id`) and stalls them with SIGSTOP past their session. Then the workers
/// drain, and the parent checks what storage holds: exactly-once output once per input record,
/// at-least-once output at least once, acknowledged input present, no aborted record visible
/// (workers journal the transactions they saw end), and what the workers' own checks found.
public enum LabProcesses {
    /// Real-time timeouts: a killed or stopped worker's session and transaction expire within seconds.
    public static var timing: LabTiming {
        var t = LabTiming()
        t.shortSessionMs = 1_500
        t.longSessionMs = 3_000
        t.shortTxnMs = 3_000
        t.longTxnMs = 6_000
        return t
    }

    /// Seconds the parent waits for the drain before a stuck partition is a liveness violation.
    static let drainSeconds = 40.0

    /// The slots that get a worker process: exactly-once first, then at-least-once.
    static func workerSlots(_ s: LabSetup, max n: Int) -> [(PipeKind, Int)] {
        let all = (0..<s.slots(.eo)).map { (PipeKind.eo, $0) } + (0..<s.slots(.alo)).map { (PipeKind.alo, $0) }
        return Array(all.prefix(max(1, n)))
    }

    /// Runs seeded histories with worker processes for `seconds`; the files of a failing history
    /// (database, worker journal and findings) are moved into the folder `keep` when one is given.
    public static func explore(storage: String, seconds: Double, seed: UInt64, workers: Int, executable: String, avoiding: Set<Int> = [],
                               keep: String? = nil,
                               spawn: ([String]) throws -> Int32, print: (String) -> Void) throws -> LabExploreStats {
        guard storage.hasPrefix("sqlite:") else { throw KofkaError(.invalidArg, "the processes mode needs sqlite:PATH") }
        let prefix = String(storage.dropFirst("sqlite:".count))
        var stats = LabExploreStats()
        let t0 = monoNs()
        var s = seed
        var kinds: Set<LabViolationKind> = []
        while Double(monoNs() - t0) / 1e9 < seconds {
            let h = LabGenerator.history(seed: s, avoiding: avoiding)
            s &+= 1
            let path = prefix + "-\(getpid())-\(stats.histories).db"
            let r = try runOne(h, path: path, workers: workers, executable: executable, avoiding: avoiding, keep: keep, spawn: spawn, print: print)
            print("  seed \(h.seed): \(r.opsRun) operations in \(format2(r.seconds)) s, \(r.violations.isEmpty ? "clean" : "\(r.violations.count) violation(s)")")
            guard let v = stats.count(r, seed: h.seed) else { continue }
            guard !kinds.contains(v.kind) else { continue }
            kinds.insert(v.kind)
            let when = Double(monoNs() - t0) / 1e9
            print("""
                VIOLATION \(v.kind.rawValue) (processes) — found after \(format2(when)) s, \(stats.histories) histories; seed \(h.seed)
                  \(v.detail)
                  setup: \(h.setup)
                  workers: \(workerSlots(h.setup, max: workers).map { "\($0.0.rawValue)\($0.1)" }.joined(separator: ", ")); the parent ran: \
                \(h.ops.filter { LabThreads.owner($0).hasPrefix("p") || LabThreads.owner($0) == "T" }.count) producer operations
                \(r.violations.dropFirst().prefix(5).map { "  also: \($0)" }.joined(separator: "\n"))
                """)
            stats.findings.append(LabFinding(violation: v, history: h, minimal: h, minimalViolation: v, secondsToFind: when,
                                             historiesToFind: stats.histories, shrinkRuns: 0, reproduced: 0))
        }
        stats.seconds = Double(monoNs() - t0) / 1e9
        return stats
    }

    /// One history with worker processes on the SQLite file `path` (removed afterwards).
    static func runOne(_ h: LabHistory, path: String, workers: Int, executable: String, avoiding: Set<Int>, keep: String?,
                       spawn: ([String]) throws -> Int32, print: (String) -> Void) throws -> LabRunResult {
        let t0 = monoNs()
        let files = [path, path + "-wal", path + "-shm", path + "-bell", path + ".drain", path + ".journal", path + ".violations"]
        for f in files { unlink(f) }
        var keepAs: String? = nil
        defer {
            for f in files {
                // a failing history's database, journals and workers' findings go to `keep`
                if let keepAs { rename(f, keepAs + f.dropFirst(path.count)) } else { unlink(f) }
            }
        }
        let world = try LabWorld(h, storage: "sqlite:" + path, timing: timing, concurrent: true)
        defer { world.close() }
        let slots = workerSlots(h.setup, max: workers)
        world.markRun(Set(slots.map(\.0)))
        var incarnation = [Int](repeating: 0, count: slots.count)
        var pids = [Int32](repeating: 0, count: slots.count)
        func start(_ i: Int) throws {
            incarnation[i] += 1
            pids[i] = try spawn([executable, "lab", "worker", "--storage", "sqlite:" + path, "--seed", "\(h.seed)",
                                 "--kind", slots[i].0.rawValue, "--slot", "\(slots[i].1)", "--incarnation", "\(incarnation[i])"]
                                 + (avoiding.isEmpty ? [] : ["--avoid", avoiding.sorted().map(String.init).joined(separator: ",")]))
        }
        func reap() throws {
            for i in pids.indices {
                var st: Int32 = 0
                if waitpid(pids[i], &st, WNOHANG) == pids[i] { try start(i) }
            }
        }
        for i in slots.indices { try start(i) }
        defer {
            for p in pids { kill(p, SIGCONT); kill(p, SIGKILL); var st: Int32 = 0; waitpid(p, &st, 0) }
        }
        var rng = SplitMix64(seed: h.seed ^ 0x7072_6f63)
        var stopped: [Int: UInt64] = [:]
        var nextChaos = monoNs() + 300_000_000 + rng.below(1_200) * 1_000_000
        var chaos = 0
        func tick() throws {
            let now = monoNs()
            for (i, until) in stopped where now >= until {
                kill(pids[i], SIGCONT)
                stopped[i] = nil
            }
            if now >= nextChaos {
                let i = Int(rng.below(UInt64(slots.count)))
                if stopped[i] == nil {
                    if rng.chance(0.65) {
                        kill(pids[i], SIGKILL)
                        var st: Int32 = 0
                        waitpid(pids[i], &st, 0)
                        try start(i)
                    } else {
                        kill(pids[i], SIGSTOP)
                        stopped[i] = now + UInt64(timing.shortSessionMs) * 1_000_000 + rng.below(UInt64(timing.longTxnMs)) * 1_000_000
                    }
                    chaos += 1
                }
                nextChaos = now + 300_000_000 + rng.below(1_200) * 1_000_000
            }
            try reap()
        }
        // the history's producers, in real time, while the chaos goes on
        var ran = 0
        for (n, op) in zip(h.numbers, h.ops) where LabThreads.owner(op).hasPrefix("p") || LabThreads.owner(op) == "T" {
            world.execute(op, number: n)
            ran += 1
            world.observe()
            try tick()
            usleep(UInt32(10_000 + rng.below(40_000)))
        }
        let minEnd = t0 + 4_000_000_000
        while monoNs() < minEnd { try tick(); usleep(20_000) }
        for (i, _) in stopped { kill(pids[i], SIGCONT) }
        world.quiesce()
        world.observe()
        // drain: the workers switch to poll-process-commit
        _ = writeLabFile(path + ".drain", "drain\n")
        let deadline = monoNs() + UInt64(drainSeconds * 1e9)
        while !world.undrained().isEmpty && monoNs() < deadline {
            try reap()
            usleep(200_000)
            world.observe()
        }
        for (group, tp, got, want) in world.undrained() {
            world.model.violation(.liveness, "group \(group) is stuck on \(tp) at committed offset \(got.map(String.init) ?? "none") (needs \(want)) \(Int(drainSeconds)) s after the chaos stopped")
        }
        for p in pids { kill(p, SIGKILL); var st: Int32 = 0; waitpid(p, &st, 0) }
        pids = []
        // what the workers saw
        var workerOps = 0
        for line in (readLabFile(path + ".journal") ?? "").split(separator: "\n") {
            let w = line.split(separator: " ")
            if w.first == "#ops", w.count == 2, let n = Int(w[1]) { workerOps += n; continue }
            guard w.count == 2, let how = journalEnds[String(w[1])] else { continue }
            world.model.learned(String(w[0]), topic: PipeKind.eo.output, how)
        }
        for line in (readLabFile(path + ".violations") ?? "").split(separator: "\n") {
            let w = line.split(separator: "\t", maxSplits: 1)
            guard w.count == 2, let k = LabViolationKind(rawValue: String(w[0])) else { continue }
            world.model.violation(k, "(in a worker) " + w[1])
        }
        world.observe()
        world.finalCheck()
        if let keep, !world.model.violations.isEmpty {
            keepAs = "\(keep)/processes-\(h.seed).db"
            print("  kept the files of seed \(h.seed) as \(keepAs!)*")
        }
        return LabRunResult(violations: world.model.violations, opsRun: ran + chaos + workerOps, seconds: Double(monoNs() - t0) / 1e9, trace: [])
    }

    /// How a worker journals the end of a transaction it saw (one letter); an outcome the
    /// application could not tell (a failed commit) is not journaled.
    static let journalEnds: [String: LabTxnEnd] = ["C": .committed, "A": .aborted, "X": .closed, "F": .fenced]

    /// A worker process: runs random operations of one pipeline slot until killed; after the
    /// parent writes the drain file, only polls, writes and commits.
    public static func worker(storage: String, seed: UInt64, kind: PipeKind, slot: Int, incarnation: Int, avoiding: Set<Int> = []) throws -> Never {
        let h = LabGenerator.history(seed: seed, avoiding: avoiding)
        let path = String(storage.dropFirst("sqlite:".count))
        let world = try LabWorld(h, storage: storage, timing: timing, concurrent: true, createTopics: false)
        guard let p = world.pipe(kind, slot) else { throw KofkaError(.invalidArg, "the history of seed \(seed) has no slot \(kind.rawValue)\(slot)") }
        let journal = open(path + ".journal", O_WRONLY | O_APPEND | O_CREAT, 0o644)
        let violations = open(path + ".violations", O_WRONLY | O_APPEND | O_CREAT, 0o644)
        world.model.journal = { label, how in
            guard let letter = journalEnds.first(where: { $0.value == how })?.key else { return }
            let line = Array("\(label) \(letter)\n".utf8)
            _ = line.withUnsafeBytes { write(journal, $0.baseAddress, $0.count) }
        }
        // A worker restarts its slot in-process (after a fence or a leave), which counts the
        // slot's incarnation up; each process starts its count 1000 apart so that transaction
        // labels ("e<slot>.<incarnation>.<n>") never repeat across processes.
        p.incarnation = (incarnation - 1) * 1000
        var rng = SplitMix64(seed: seed ^ UInt64(slot) << 8 ^ UInt64(incarnation) << 20 ^ (kind == .eo ? 1 : 2))
        var reported = 0
        var n = 0
        while true {
            n += 1
            if !p.running { world.start(p, shortSession: rng.chance(0.5)) }
            if access(path + ".drain", F_OK) == 0 {
                world.poll(p, max: 100)
                if kind == .eo && p.label != nil { world.eoCommit(p, commitAnyway: false) }
                usleep(5_000)
            } else {
                let x = rng.unit()
                let op: LabOp
                if kind == .eo {
                    op = x < 0.4 ? .poll(kind, slot: slot, max: 1 + Int(rng.below(5)))
                        : x < 0.6 ? .process(kind, slot: slot, style: SendStyle.allCases[Int(rng.below(3))], deferReaction: rng.chance(0.2))
                        : x < 0.9 ? .commit(kind, slot: slot, commitAnyway: rng.chance(0.2))
                        : x < 0.97 ? .abort(slot: slot, zeroTimeout: rng.chance(0.5))
                        : .leave(kind, slot: slot)
                } else {
                    op = x < 0.97 ? .poll(kind, slot: slot, max: 1 + Int(rng.below(5))) : .leave(kind, slot: slot)
                }
                if let op = LabGenerator.avoid(avoiding, in: LabHistory(seed: seed, setup: h.setup, ops: [op])).ops.first {
                    world.execute(op, number: n)
                }
                usleep(UInt32(rng.below(3_000)))
            }
            if n % 20 == 0 { world.observe() }
            if n % 100 == 0 { _ = Array("#ops 100\n".utf8).withUnsafeBytes { write(journal, $0.baseAddress, $0.count) } }
            let vs = world.model.violations
            while reported < vs.count {
                let line = Array("\(vs[reported].kind.rawValue)\t\(p.clientId): \(vs[reported].detail)\n".utf8)
                _ = line.withUnsafeBytes { write(violations, $0.baseAddress, $0.count) }
                reported += 1
            }
        }
    }
}

/// The text of a file, or nil when it cannot be read.
public func readLabFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

/// Writes `text` to a file (created or truncated); false when it cannot.
@discardableResult
public func writeLabFile(_ path: String, _ text: String) -> Bool {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    let b = Array(text.utf8)
    return b.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == b.count
}
