import ArgumentParser
import Kofka
import KofkaCommandSupport
import KofkaLab
#if canImport(Glibc)
import Glibc
#endif

/// `kofka demo`: the delivery-semantics lab, in-process or with worker processes killed by SIGKILL.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what each delivery mode guarantees under lost requests, lost acks and crashes.",
        discussion: """
            For each mode: records are sent one by one through a link that loses requests and \
            acknowledgements; consumers crash between processing and commit (exactly-once: inside a \
            read-process-write transaction). The table counts what was lost and duplicated, and checks \
            each mode's promise. With --processes N, N worker processes share a SQLite file or a \
            PostgreSQL database and are killed with SIGKILL at random and restarted. Exits non-zero \
            if a promise was broken.
            """)

    @Option(help: "Storage: memory:, sqlite:PATH, lmdb:PATH or postgresql://USER@HOST/DB (any plugin's SCHEME:LOCATION).") var storage = "memory:"
    @Option(help: "Records per mode.") var records = 1000
    @Option(help: "Partitions of the demo topics.") var partitions: Int32 = 3
    @Option(name: .customLong("request-loss"), help: "Probability a produce request is lost.") var requestLoss = 0.1
    @Option(name: .customLong("ack-loss"), help: "Probability an acknowledgement is lost.") var ackLoss = 0.1
    @Option(name: .customLong("crash-every"), help: "In-process: a consumer crashes after every N processed records (0 = never).") var crashEvery = 100
    @Option(help: "Seed of the lossy link.") var seed: UInt64 = 42
    @Option(help: "Run N worker processes on a shared store (sqlite:, lmdb:, postgresql:), killed with SIGKILL at random and restarted.") var processes = 0
    @Option(help: "With --processes: SIGKILLs per mode.") var kills = 20
    @Option(name: .customLong("polls-per-transaction"), help: "Exactly-once: consumer polls per read-process-write transaction (more than 1 lets rebalances land inside open transactions).") var pollsPerTransaction = 1
    @Option(help: "Modes to run, comma-separated.") var modes = "at-most-once,at-least-once,exactly-once"
    @Flag(help: "Print JSON instead of a table.") var json = false

    func validate() throws {
        if records < 1 { throw ValidationError("--records must be at least 1") }
        if processes > 0 && (storage.hasPrefix("memory") || !storage.contains(":")) {
            throw ValidationError("--processes needs a store processes share: use --storage sqlite:PATH, lmdb:PATH or postgresql://USER@HOST/DB")
        }
        for m in modes.split(separator: ",") where DeliveryMode(rawValue: String(m)) == nil {
            throw ValidationError("unknown mode '\(m)': expected at-most-once, at-least-once or exactly-once")
        }
    }

    func run() throws {
        var o = DeliveryLab.Options()
        o.records = records
        o.partitions = partitions
        o.requestLoss = requestLoss
        o.ackLoss = ackLoss
        o.crashEvery = crashEvery
        o.seed = seed
        o.pollsPerTransaction = pollsPerTransaction
        let broker = try Broker(storage)
        defer { broker.close() }
        let runId = "demo-\(nowMs())"
        let progress = isatty(2) != 0 && !json
        var results: [DeliveryLab.Result] = []
        for m in modes.split(separator: ",") {
            guard let mode = DeliveryMode(rawValue: String(m)) else { continue }
            if progress { eprint("\r\u{1b}[K  running \(mode.rawValue)…") }
            if processes > 0 {
                results.append(try Harness(storage: storage, workers: processes, kills: kills, options: o, progress: progress)
                    .run(mode, broker: broker, runId: runId))
            } else {
                results.append(try DeliveryLab.run(mode, broker: broker, options: o, runId: runId))
            }
        }
        if progress { eprint("\r\u{1b}[K") }
        if json {
            print(jsonReport(results))
        } else {
            print(table(results))
        }
        let broken = results.filter { !$0.held }.map { "\($0.mode.rawValue) (\($0.promise))" }
        if !broken.isEmpty { throw CLIError("promise broken: \(broken.joined(separator: ", "))") }
    }

    func table(_ rs: [DeliveryLab.Result]) -> String {
        let header = ["mode", "sent", "stored", "processed", "lost", "duplicated", "throughput", "guarantee"]
        var rows = [header]
        for r in rs {
            rows.append([r.mode.rawValue, "\(r.sent)", "\(r.stored)", "\(r.processed)", "\(r.lost)", "\(r.duplicated)",
                         "\(Int(r.produceRate)) rec/s", "\(r.promise) \(r.held ? "✓" : "✗")"])
        }
        var widths = header.map { _ in 0 }
        for row in rows { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
        func line(_ row: [String]) -> String {
            "| " + row.enumerated().map { i, c in
                i == 0 || i == row.count - 1 ? c.padding(widths[i]) : c.leftPad(widths[i])
            }.joined(separator: " | ") + " |"
        }
        var out = [line(rows[0]), "|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|"]
        out += rows.dropFirst().map(line)
        let how = processes > 0 ? "\(processes) worker processes, \(kills) SIGKILLs per mode" : "a consumer crash every \(crashEvery) processed records"
        out.append("")
        out.append("storage \(LabPostgres.redacted(storage)); \(records) records per mode through a link losing \(Int(requestLoss * 100))% of requests and \(Int(ackLoss * 100))% of acks (seed \(seed)); \(how).")
        out.append("throughput: records/s sent one by one through the lossy link (at-most-once does not wait for the write, at-least-once waits and retries, exactly-once also carries sequence numbers the broker checks).")
        for r in rs {
            out.append("  \(r.mode.rawValue): \(r.crashes) crashes; producer: \(r.producerCheck.acknowledged) acknowledged, \(r.producerCheck.unknown) unknown; "
                       + "\(String(format1(r.seconds))) s in all")
        }
        return out.joined(separator: "\n")
    }

    func jsonReport(_ rs: [DeliveryLab.Result]) -> String {
        let items = rs.map { r in
            "{\"mode\":\"\(r.mode.rawValue)\",\"sent\":\(r.sent),\"stored\":\(r.stored),\"processed\":\(r.processed),\"lost\":\(r.lost),"
                + "\"duplicated\":\(r.duplicated),\"crashes\":\(r.crashes),\"produce_rate\":\(Int(r.produceRate)),\"process_rate\":\(Int(r.processRate)),"
                + "\"seconds\":\(format1(r.seconds)),\"acknowledged\":\(r.producerCheck.acknowledged),\"unknown\":\(r.producerCheck.unknown),"
                + "\"unexpected\":\(r.endToEnd.unexpected.count),\"aborted_reads\":\(r.endToEnd.abortedReads.count),\"reordered\":\(r.endToEnd.reordered),"
                + "\"guarantee\":\"\(r.promise)\",\"held\":\(r.held)}"
        }
        return "{\"storage\":\"\(LabPostgres.redacted(storage))\",\"records\":\(records),\"processes\":\(processes),\"results\":[" + items.joined(separator: ",") + "]}"
    }
}

func format1(_ d: Double) -> String {
    let t = (d * 10).rounded() / 10
    return "\(t)"
}



/// `kofka demo-worker`: one consume-transform-produce worker process of the crash harness.
struct DemoWorker: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo-worker", abstract: "A crash-harness worker (started by `kofka demo --processes`).", shouldDisplay: false)

    @Option var storage: String
    @Option var mode: String
    @Option var input: String
    @Option var output: String
    @Option var group: String
    @Option(name: .customLong("transactional-id")) var transactionalId: String
    @Option(name: .customLong("session-timeout-ms")) var sessionTimeoutMs = 300
    @Option(name: .customLong("work-ms")) var workMs = 0
    @Option(name: .customLong("polls-per-transaction")) var pollsPerTransaction = 1

    func run() throws {
        guard let m = DeliveryMode(rawValue: mode) else { throw ValidationError("unknown mode '\(mode)'") }
        let broker = try Broker(storage)
        var o = DeliveryLab.Options()
        o.sessionTimeoutMs = sessionTimeoutMs
        o.pollsPerTransaction = pollsPerTransaction
        // Runs until killed (SIGKILL) or terminated (SIGTERM ends the process at once).
        try DeliveryLab.pipelineWorker(m, broker: broker, input: input, output: output, group: group,
                                       transactionalId: transactionalId, options: o, workMs: workMs) { false }
    }
}

/// The crash harness: worker processes on one SQLite file, killed with SIGKILL at random moments
/// and restarted, then the checker reads the output.
struct Harness {
    let storage: String
    let workers: Int
    let kills: Int
    let options: DeliveryLab.Options
    let progress: Bool

    func run(_ mode: DeliveryMode, broker: Broker, runId: String) throws -> DeliveryLab.Result {
        let started = nowMs()
        let tin = "\(runId)-\(mode.rawValue)-in", tout = "\(runId)-\(mode.rawValue)-out", group = "\(runId)-\(mode.rawValue)"
        try broker.createTopic(tin, partitions: options.partitions)
        try broker.createTopic(tout, partitions: options.partitions)
        let exe = selfExecutable()
        func spawn(_ slot: Int) throws -> pid_t {
            let args = [exe, "demo-worker", "--storage", storage, "--mode", mode.rawValue, "--input", tin, "--output", tout,
                        "--group", group, "--transactional-id", "\(runId)-\(mode.rawValue)-worker-\(slot)",
                        "--session-timeout-ms", "\(options.sessionTimeoutMs)", "--work-ms", "10",
                        "--polls-per-transaction", "\(options.pollsPerTransaction)"]
            return try spawnProcess(args)
        }
        var pids = try (0..<workers).map { try spawn($0) }
        var rng = SystemRandomNumberGenerator()
        var killed = 0
        let flowStart = nowMs()
        // The producer writes the input in chunks while workers are being killed.
        let producer = try broker.producer(try DeliveryLab.producerConfig(mode, options))
        var checker = DeliveryChecker()
        var nextId: UInt64 = 1
        let total = UInt64(options.records)
        var sendNs: Int64 = 0
        func sendChunk(_ n: UInt64) {
            guard nextId <= total else { return }
            let last = min(total, nextId + n - 1)
            let t0 = nowMs()
            DeliveryLab.send(producer, topic: tin, ids: nextId...last, into: &checker)
            sendNs += nowMs() - t0
            nextId = last + 1
        }
        let chunk = max(1, total / UInt64(max(1, kills)))
        while killed < kills {
            sendChunk(chunk)
            usleep(UInt32.random(in: 60_000...250_000, using: &rng))
            let slot = Int.random(in: 0..<workers, using: &rng)
            kill(pids[slot], SIGKILL)
            var status: Int32 = 0
            waitpid(pids[slot], &status, 0)
            killed += 1
            if progress { eprint("\r\u{1b}[K  \(mode.rawValue): \(killed)/\(kills) SIGKILLs") }
            pids[slot] = try spawn(slot)
            // restart any worker that exited on its own (e.g. fenced)
            for s in 0..<workers {
                var st: Int32 = 0
                if waitpid(pids[s], &st, WNOHANG) == pids[s] { pids[s] = try spawn(s) }
            }
        }
        sendChunk(total)
        try? producer.close()
        let produceRate = Double(total) * 1000 / Double(max(1, sendNs))
        var inputCheck = checker
        let stored = try DeliveryLab.readAll(broker: broker, topic: tin) { id, p in inputCheck.read(id, partition: "\(p)") }
        // let the survivors finish the input
        let deadline = nowMs() + Int64(options.timeLimitMs)
        while nowMs() < deadline {
            if try DeliveryLab.caughtUp(broker: broker, group: group, topic: tin) { usleep(300_000); break }
            for s in 0..<workers {
                var st: Int32 = 0
                if waitpid(pids[s], &st, WNOHANG) == pids[s] { pids[s] = try spawn(s) }
            }
            usleep(50_000)
        }
        for p in pids { kill(p, SIGKILL); var st: Int32 = 0; waitpid(p, &st, 0) }
        let flowMs = nowMs() - flowStart
        let processed = try DeliveryLab.readAll(broker: broker, topic: tout) { id, p in checker.read(id, partition: "\(p)") }
        let report = checker.report()
        return DeliveryLab.Result(mode: mode, sent: options.records, stored: stored, processed: processed,
                                  lost: options.records - report.uniqueReads, duplicated: report.duplicateCount, crashes: killed,
                                  produceRate: produceRate, processRate: Double(processed) * 1000 / Double(max(1, flowMs)),
                                  seconds: Double(nowMs() - started) / 1000, producerCheck: inputCheck.report(), endToEnd: report,
                                  promise: DeliveryLab.promise(mode), held: DeliveryLab.holds(mode, report))
    }
}

/// Starts `args[0]` with `args`, inheriting stdio; returns its pid.
func spawnProcess(_ args: [String]) throws -> pid_t {
    var pid: pid_t = 0
    var cargs = args.map { strdup($0) }
    cargs.append(nil)
    defer { for a in cargs { free(a) } }
    let rc = posix_spawn(&pid, args[0], nil, nil, cargs, environ)
    if rc != 0 { throw KofkaError(.unsupported, "cannot start \(args[0]): error \(rc)") }
    return pid
}

/// Writes to standard error.
func eprint(_ s: String) {
    var bytes = Array(s.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}
