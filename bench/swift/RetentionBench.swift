import ArgumentParser
import CSQLite
import Kofka
import KofkaCommandSupport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `kofka-bench retention`: what retention costs and what it keeps bounded (issue 12), measured
/// in one run. Four sections:
///
/// * **steady**: `--megabytes` written through one partition with `retention.bytes=1000000`,
///   sampled as it goes (file, `-wal`, resident size), with retention applied by the background
///   cleaner, by explicit `maintain()` calls, and not at all (the control);
/// * **cost**: produce throughput with retention and a busy cleaner beside the same produce with
///   neither, in alternating rounds;
/// * **delete**: `deleteRecords` and retention deleting 0.1 %, 1 % and 10 % of a large partition
///   (and of one a quarter its size), with the cost per record;
/// * **lock holds**: for each maintenance above, its longest write transaction, and the send
///   latency a concurrent producer saw while it ran.
struct RetentionBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retention",
        abstract: "Measure retention: steady-state size, the cleaner's cost to producers, deletion cost, lock holds.",
        discussion: """
            steady: --megabytes MB (1,000-byte records, batches of 100) through one partition with \
            retention.bytes=1000000, printing every tenth of the way the MB written, the file and its \
            -wal (SQLite) and the process's resident size (/proc/self/statm). Each backend runs with \
            the background cleaner (log.retention.check.interval.ms=--interval-ms; the writes paced at \
            --cleaner-rate MB/s so that the run spans many passes), with explicit \
            maintain() every 2 MB written and no cleaner, and with no retention at all (the control).
            cost: produce for --seconds per run, on a topic with retention.bytes=1000000 and a cleaner \
            every --interval-ms, and on one with neither, alternating (--runs rounds after a warm-up; \
            the order flips every round). Batched: sendBatch of 1,000 × 100 B; async: produce of single \
            100 B records, then flush. Prints the best rate of each, their ratio, the median of the \
            per-round ratios, and the slowest sendBatch call of each side, beside a raw SQLite \
            reference measured in the same run (rows inserted, then deleted by rowid range, with \
            Kofka's file settings).
            delete: a partition of --records 10-byte records (and one of a quarter as many); \
            deleteRecords then retention (retention.bytes set so that maintain() deletes exactly the \
            count) each delete 0.1 %, 1 % and 10 % of --records; then compaction of a tenth as many \
            keyed records over 1,000 keys, alone and in one maintain() with retention deleting 1 %; timed, while a second producer sends \
            single records to another topic every 100 us; prints seconds, us per record, maintain()'s \
            writes and longest write, and that producer's p50/p99/max send latency (and the same \
            producer's latency with no maintenance running, the baseline).
            Default: 200 MB, 10,000,000 records, 1 s runs: 2-3 minutes in a release build. \
            --quick: 20 MB, 200,000 records, 0.3 s runs (the CI smoke form). SQLite files go to a new \
            directory under --dir (default $TMPDIR or /tmp), removed afterwards.
            """)

    @Flag(name: .long, help: "CI smoke run: 20 MB, 200,000-record partitions, 0.3 s runs, 2 rounds.")
    var quick = false

    @Option(name: .long, help: "MB written in each steady-state run (default 200; --quick 20).")
    var megabytes: Int?

    @Option(name: .long, help: "Records in the large partition of the delete rows (default 10,000,000; --quick 200,000).")
    var records: Int?

    @Option(name: .long, help: "Records per sendBatch when filling the delete rows' partitions (each is one stored batch).")
    var fillBatch: Int = 10_000

    @Option(name: .long, help: "Seconds per produce run in the cost rows (default 1; --quick 0.3).")
    var seconds: Double?

    @Option(name: .long, help: "Rounds of (with, without) in the cost rows (default 3; --quick 2).")
    var runs: Int?

    @Option(name: .long, help: "log.retention.check.interval.ms of the background cleaner.")
    var intervalMs: Int = 100

    @Option(name: .long, help: "MB/s the steady-state runs with the background cleaner write at (0: as fast as they can).")
    var cleanerRate: Double = 20

    @Option(name: .long, help: "Run only these sections, comma-separated: steady, cost, delete.")
    var only: String?

    @Option(name: .long, help: "Run only this backend: memory or sqlite (default: both).")
    var backend: String?

    @Option(name: .long, help: "Directory for the SQLite files (default: a new directory under $TMPDIR or /tmp).")
    var dir: String?

    @Flag(name: .long, help: "Print the results as JSON instead of tables.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Write the crash test's fixture to this SQLite file and exit.", visibility: .hidden))
    var makeCrashFixture: String?

    @Option(name: .long, help: ArgumentHelp("Records of the crash fixture's large partition.", visibility: .hidden))
    var fixtureRecords: Int = 300_000

    func validate() throws {
        if let m = megabytes, m < 4 { throw ValidationError("--megabytes must be at least 4") }
        if let r = records, r < 20_000 { throw ValidationError("--records must be at least 20000") }
        if let s = seconds, s <= 0 { throw ValidationError("--seconds must be positive") }
        if let r = runs, r < 1 { throw ValidationError("--runs must be at least 1") }
        if intervalMs < 1 { throw ValidationError("--interval-ms must be at least 1") }
        if let b = backend, !["memory", "sqlite"].contains(b) { throw ValidationError("--backend must be memory or sqlite") }
        if cleanerRate < 0 { throw ValidationError("--cleaner-rate must be >= 0") }
        if fillBatch < 1 { throw ValidationError("--fill-batch must be at least 1") }
        if fixtureRecords < 1000 { throw ValidationError("--fixture-records must be at least 1000") }
        for s in sections where !["steady", "cost", "delete"].contains(s) {
            throw ValidationError("unknown section '\(s)' in --only: expected steady, cost, delete")
        }
    }

    var sections: [String] { only.map { $0.split(separator: ",").map(String.init) } ?? ["steady", "cost", "delete"] }

    func run() throws {
        if let path = makeCrashFixture {
            try CrashFixture.make(path: path, records: fixtureRecords)
            return
        }
        let base = dir ?? (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp")
        var template = Array("\(base)/kofka-bench-retention-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw CLIError("cannot create a temporary directory under \(base)") }
        let work = String(cString: made)
        defer { _ = rmdir(work) }

        let r = RetentionRunner(dir: work, quiet: json, intervalMs: intervalMs, cleanerRate: cleanerRate)
        if let backend { r.backends = [backend] }
        let mb = megabytes ?? (quick ? 20 : 200)
        let big = records ?? (quick ? 200_000 : 10_000_000)
        let secs = seconds ?? (quick ? 0.3 : 1.0)
        let rounds = runs ?? (quick ? 2 : 3)
        let t0 = monoSeconds()
        if sections.contains("steady") { try r.steady(megabytes: mb) }
        if sections.contains("cost") { try r.cost(seconds: secs, rounds: rounds) }
        if sections.contains("delete") { try r.deletion(records: big, fillBatch: fillBatch) }
        let total = monoSeconds() - t0
        if json {
            print(r.json(megabytes: mb, records: big, seconds: secs, rounds: rounds, total: total))
        } else {
            print(r.report())
            print("bench-retention: \(mb) MB steady runs, \(big)-record partition, \(fmt(secs, 2)) s cost runs × \(rounds) rounds, "
                  + "cleaner every \(intervalMs) ms; total \(fmt(total, 1)) s")
        }
    }
}

// MARK: - Measurements

/// Resident set size of this process in MiB (/proc/self/statm).
func residentMiB() -> Double {
    guard let f = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(f) }
    var size = 0, resident = 0
    _ = withUnsafeMutablePointer(to: &size) { sp in
        withUnsafeMutablePointer(to: &resident) { rp in withVaList([sp, rp]) { vfscanf(f, "%ld %ld", $0) } }
    }
    return Double(resident) * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
}

/// The size of the file at `path` in MB (0 when missing).
func fileMB(_ path: String) -> Double {
    var st = stat()
    guard stat(path, &st) == 0 else { return 0 }
    return Double(st.st_size) / 1e6
}

/// Percentiles of a list of samples.
struct Percentiles {
    var count = 0
    var p50 = 0.0, p99 = 0.0, max = 0.0

    init(_ samples: [Double]) {
        let s = samples.sorted()
        count = s.count
        guard !s.isEmpty else { return }
        func pct(_ p: Double) -> Double { s[Swift.min(s.count - 1, Int(Double(s.count) * p))] }
        p50 = pct(0.5)
        p99 = pct(0.99)
        max = s[s.count - 1]
    }

    var text: String { "p50 \(fmt(p50, 2)) p99 \(fmt(p99, 2)) max \(fmt(max, 2)) ms (\(count) sends)" }
}

/// A producer on its own thread sending single records every `paceUs` until stopped, timing
/// each send; `window` brackets the operation measured, and only the sends that overlap it count.
final class LatencyProbe: @unchecked Sendable {
    private let stopFlag = Atomic<Bool>(false)
    private let sent = Atomic<Int>(0)
    private var samples: [(start: UInt64, end: UInt64)] = []   // read only after join
    private var failure: String?
    private var thread: Thread?

    /// Starts the producer thread and returns once it has made `warm` sends.
    func start(_ broker: Broker, topic: String, paceUs: UInt32, warm: Int = 20) throws {
        let producer = try broker.producer(ProducerConfig([("delivery.mode", "at-least-once")]))
        let t = Thread { [self] in
            var value = [UInt8](repeating: 0x70, count: 10)
            while !stopFlag.load(ordering: .relaxed) {
                value[0] &+= 1
                let t0 = monoNanos()
                do { _ = try producer.send(topic, Record(partition: 0, value: value)) } catch {
                    failure = "\(error)"
                    break
                }
                samples.append((t0, monoNanos()))
                sent.add(1, ordering: .relaxed)
                if paceUs > 0 { usleep(paceUs) }
            }
            try? producer.close()
        }
        thread = t
        t.start()
        while sent.load(ordering: .relaxed) < warm && failure == nil { usleep(1000) }
    }

    /// Times `body` and returns its duration in seconds with the latencies of the sends that overlapped it.
    func around<T>(_ body: () throws -> T) throws -> (T, Double, Percentiles) {
        let s0 = monoNanos()
        let out = try body()
        let s1 = monoNanos()
        return (out, Double(s1 &- s0) / 1e9, try stop(from: s0, to: s1))
    }

    /// Stops the thread; returns the latencies (ms) of the sends that overlapped `from ..< to`
    /// (nanoseconds, monotonic); every send when `to` is 0.
    func stop(from: UInt64 = 0, to: UInt64 = 0) throws -> Percentiles {
        stopFlag.store(true, ordering: .relaxed)
        thread?.join()
        if let failure { throw CLIError("bench-retention: the probe producer failed: \(failure)") }
        let mine = to == 0 ? samples : samples.filter { $0.end >= from && $0.start <= to }
        return Percentiles(mine.map { Double($0.end &- $0.start) / 1e6 })
    }
}

struct SteadySample {
    var mbWritten: Double
    var low: Int64
    var high: Int64
    var fileMB: Double
    var walMB: Double
    var rssMiB: Double
}

struct SteadyRun {
    var backend: String
    /// "cleaner", "explicit" or "none".
    var mode: String
    var samples: [SteadySample] = []
    var seconds = 0.0
    var maintains = 0
    var writes = 0
    var longestWriteMs = 0.0
    var longestMaintainMs = 0.0
    var slowestSendMs = 0.0
    var maxDiskMB: Double { samples.map { $0.fileMB + $0.walMB }.max() ?? 0 }
    var maxRSS: Double { samples.map(\.rssMiB).max() ?? 0 }
}

struct CostRow {
    var backend: String
    var kind: String
    var with: [Double] = []
    var without: [Double] = []
    var slowestWithMs = 0.0
    var slowestWithoutMs = 0.0
    var deletedPerRun = 0.0
    var best: (Double, Double) { (with.max() ?? 0, without.max() ?? 0) }
    var ratio: Double { best.1 > 0 ? best.0 / best.1 : 0 }
    var medianRatio: Double {
        let r = zip(with, without).map { $0.0 / Swift.max($0.1, 1e-9) }.sorted()
        return r.isEmpty ? 0 : r.count % 2 == 1 ? r[r.count / 2] : (r[r.count / 2 - 1] + r[r.count / 2]) / 2
    }
}

/// Raw SQLite's cost per row of inserting and of deleting by range (µs).
struct RawDelete {
    var insertUs = 0.0
    var deleteUs = 0.0
    var sumDeleteUs = 0.0
    /// What a single writer that deletes every row it inserts keeps of insert-only speed.
    var bound: Double { insertUs / max(insertUs + sumDeleteUs, 1e-9) }
}

struct DeleteRow {
    var backend: String
    var partition: Int
    /// "delete-records" or "retention".
    var op: String
    var deleted: Int
    var seconds: Double
    var writes: Int?
    var longestWriteMs: Double?
    var probe: Percentiles
    /// `reclaimSpace()` afterwards, giving the freed pages back (delete-records only), ms.
    var reclaimMs: Double?
    /// The probe's slowest send while `reclaimSpace()` ran, ms.
    var reclaimProbeMaxMs: Double?
    /// What a complete pass removes (compaction rows: every record but each key's last, and the
    /// one before the log's last record, which is never cleaned).
    var expected: Int?
    var usPerRecord: Double { deleted > 0 ? seconds * 1e6 / Double(deleted) : 0 }
}

final class RetentionRunner {
    let dir: String
    let quiet: Bool
    let intervalMs: Int
    /// MB/s of the steady-state runs with the cleaner (0: unpaced).
    let cleanerRate: Double
    var steadyRuns: [SteadyRun] = []
    var costRows: [CostRow] = []
    var rawDelete: RawDelete?
    var deleteRows: [DeleteRow] = []
    var baselines: [(backend: String, partition: Int, probe: Percentiles)] = []
    var fillBatch = 10_000
    var fills: [(backend: String, partition: Int, seconds: Double, fileMB: Double)] = []
    private var counter = 0

    init(dir: String, quiet: Bool, intervalMs: Int, cleanerRate: Double) {
        self.dir = dir
        self.quiet = quiet
        self.intervalMs = intervalMs
        self.cleanerRate = cleanerRate
    }

    func note(_ s: String) { if !quiet { stderrLine("bench-retention: " + s) } }

    var backends = ["memory", "sqlite"]

    /// A fresh broker on `backend` with `config`; the closure closes it and removes its files.
    func open(_ backend: String, _ config: [(String, String)]) throws -> (Broker, String?, () -> Void) {
        if backend == "memory" {
            let b = try Broker("memory:", config: config)
            return (b, nil, { b.close() })
        }
        counter += 1
        let path = "\(dir)/r\(counter).db"
        let b = try Broker("sqlite:" + path, config: config)
        return (b, path, { b.close(); for s in ["", "-wal", "-shm", "-journal", "-bell"] { unlink(path + s) } })
    }

    /// `n` records of `size` bytes, each value distinct (a counter in its first 8 bytes), as one packed batch.
    func batch(_ n: Int, size: Int, counter: inout UInt64) -> RecordBatch {
        var b = RecordBatch(reservingRecords: n, bytes: n * size)
        var v = [UInt8](repeating: 0x61, count: size)
        for _ in 0..<n {
            counter &+= 1
            for i in 0..<Swift.min(8, size) { v[i] = UInt8(truncatingIfNeeded: counter >> (8 * UInt64(i))) }
            v.withUnsafeBytes { b.append(timestampMs: 0, key: nil, value: $0, headers: nil) }
        }
        return b
    }

    func sendChecked(_ p: Producer, _ topic: String, _ b: RecordBatch, _ parts: [Int32]) throws {
        let o = try p.send(topic, b, partitions: parts)
        if let (_, e) = o.firstError { throw e }
    }

    // MARK: Steady state

    func steady(megabytes: Int) throws {
        let recordBytes = 1000, perBatch = 100
        let batchBytes = recordBytes * perBatch
        let total = megabytes * 1_000_000 / batchBytes   // batches
        let sampleEvery = Swift.max(1, total / 10)
        let maintainEvery = 2_000_000 / batchBytes       // explicit: maintain() every 2 MB
        for backend in backends {
            for mode in ["cleaner", "explicit", "none"] {
                var config: [(String, String)] = [("log.retention.check.interval.ms", mode == "cleaner" ? String(intervalMs) : "0")]
                if backend == "sqlite" { config.append(("sqlite.synchronous", "full")) }
                let (broker, path, done) = try open(backend, config)
                defer { done() }
                try broker.createTopic("steady", partitions: 1, config: mode == "none" ? [] : [("retention.bytes", "1000000")])
                let producer = try broker.producer(ProducerConfig([("delivery.mode", "at-least-once")]))
                var run = SteadyRun(backend: backend, mode: mode)
                let parts = [Int32](repeating: 0, count: perBatch)
                var c: UInt64 = 0
                func sample(_ batches: Int) throws {
                    let w = try broker.watermarks("steady", 0)
                    let s = SteadySample(mbWritten: Double(batches * batchBytes) / 1e6, low: w.low, high: w.high,
                                         fileMB: path.map(fileMB) ?? 0, walMB: path.map { fileMB($0 + "-wal") } ?? 0,
                                         rssMiB: residentMiB())
                    run.samples.append(s)
                }
                try sample(0)
                let t0 = monoSeconds()
                for i in 1...total {
                    let b = batch(perBatch, size: recordBytes, counter: &c)
                    let s0 = monoNanos()
                    try sendChecked(producer, "steady", b, parts)
                    run.slowestSendMs = Swift.max(run.slowestSendMs, Double(monoNanos() &- s0) / 1e6)
                    if mode == "cleaner" && cleanerRate > 0 {
                        // Paced: the cleaner wakes every interval, so what accumulates between
                        // two passes is the write rate × the interval.
                        let due = t0 + Double(i * batchBytes) / (cleanerRate * 1e6)
                        let now = monoSeconds()
                        if due > now { usleep(UInt32((due - now) * 1e6)) }
                    }
                    if mode == "explicit" && i % maintainEvery == 0 {
                        let rep = try broker.maintain()
                        run.maintains += 1
                        run.writes += rep.writes
                        run.longestWriteMs = Swift.max(run.longestWriteMs, rep.longestWriteMs)
                        run.longestMaintainMs = Swift.max(run.longestMaintainMs, rep.durationMs)
                    }
                    if i % sampleEvery == 0 || i == total { try sample(i) }
                }
                run.seconds = monoSeconds() - t0
                try producer.close()
                steadyRuns.append(run)
                let last = run.samples.last!
                note("steady \(backend) \(mode): \(megabytes) MB in \(fmt(run.seconds, 1)) s; max file+wal \(fmt(run.maxDiskMB, 1)) MB, "
                     + "rss \(fmt(run.samples[1].rssMiB, 1)) -> \(fmt(last.rssMiB, 1)) MiB (max \(fmt(run.maxRSS, 1))), low \(last.low) of \(last.high)")
            }
        }
    }

    // MARK: Produce cost

    func cost(seconds: Double, rounds: Int) throws {
        if backends.contains("sqlite") {
            let ref = try deleteReference(rows: 200_000, chunk: 12_500)
            rawDelete = ref
            note("cost reference, raw SQLite: insert \(fmt(ref.insertUs, 2)) us/row, range delete \(fmt(ref.deleteUs, 2)) us/row, "
                 + "sum + range delete \(fmt(ref.sumDeleteUs, 2)) us/row -> bound \(fmt(ref.bound, 2))")
        }
        for backend in backends {
            for kind in ["batch", "async"] {
                var row = CostRow(backend: backend, kind: kind)
                var deleted: [Double] = []
                func one(_ with: Bool, _ secs: Double) throws {
                    let r = try costRun(backend, kind, withRetention: with, seconds: secs)
                    if with {
                        row.with.append(r.rate); row.slowestWithMs = Swift.max(row.slowestWithMs, r.slowestMs); deleted.append(Double(r.deleted))
                    } else {
                        row.without.append(r.rate); row.slowestWithoutMs = Swift.max(row.slowestWithoutMs, r.slowestMs)
                    }
                }
                _ = try costRun(backend, kind, withRetention: true, seconds: seconds / 4)    // warm-up
                _ = try costRun(backend, kind, withRetention: false, seconds: seconds / 4)
                for round in 0..<rounds {
                    if round % 2 == 0 { try one(true, seconds); try one(false, seconds) } else { try one(false, seconds); try one(true, seconds) }
                }
                row.deletedPerRun = deleted.reduce(0, +) / Double(Swift.max(1, deleted.count))
                costRows.append(row)
                note("cost \(backend) \(kind): with retention+cleaner \(fmt(row.best.0, 0)) rec/s, without \(fmt(row.best.1, 0)) rec/s, "
                     + "ratio \(fmt(row.ratio, 2)) (median of rounds \(fmt(row.medianRatio, 2))), cleaner deleted \(fmt(row.deletedPerRun, 0)) records per run")
            }
        }
    }

    /// Produces 100 B records for `seconds`; returns the rate, the slowest sendBatch call (ms)
    /// and how many records retention had deleted by the end.
    func costRun(_ backend: String, _ kind: String, withRetention: Bool, seconds: Double) throws -> (rate: Double, slowestMs: Double, deleted: Int64) {
        var config: [(String, String)] = [("log.retention.check.interval.ms", withRetention ? String(intervalMs) : "0")]
        if backend == "sqlite" { config.append(("sqlite.synchronous", "full")) }
        let (broker, _, done) = try open(backend, config)
        defer { done() }
        try broker.createTopic("cost", partitions: 1, config: withRetention ? [("retention.bytes", "1000000")] : [])
        let producer = try broker.producer(ProducerConfig([("delivery.mode", "at-least-once")]))
        var c: UInt64 = 0
        var n = 0
        var slowest = 0.0
        let t0 = monoSeconds()
        if kind == "batch" {
            let parts = [Int32](repeating: 0, count: 1000)
            while monoSeconds() - t0 < seconds {
                let b = batch(1000, size: 100, counter: &c)
                let s0 = monoNanos()
                try sendChecked(producer, "cost", b, parts)
                slowest = Swift.max(slowest, Double(monoNanos() &- s0) / 1e6)
                n += 1000
            }
        } else {
            var failed: KofkaError?
            let handler: (DeliveryReport) -> Void = { r in if case .failure(let e) = r.result, failed == nil { failed = e } }
            var v = [UInt8](repeating: 0x61, count: 100)
            outer: while true {
                for _ in 0..<1000 {
                    c &+= 1
                    for i in 0..<8 { v[i] = UInt8(truncatingIfNeeded: c >> (8 * UInt64(i))) }
                    while true {
                        do { try producer.produce("cost", Record(partition: 0, value: v)); break } catch let e as KofkaError where e.code == .queueFull {
                            producer.poll(timeout: .milliseconds(1), handler)
                        }
                    }
                    n += 1
                }
                producer.poll(timeout: .zero, handler)
                if monoSeconds() - t0 >= seconds { break outer }
            }
            try producer.flush(timeout: .seconds(120), handler)
            if let failed { throw failed }
        }
        let secs = monoSeconds() - t0
        try producer.close()
        let low = try broker.watermarks("cost", 0).low
        return (Double(n) / secs, slowest, low)
    }

    /// Raw SQLite with Kofka's file settings (auto_vacuum=INCREMENTAL, WAL, synchronous=FULL):
    /// `rows` 100 B rows inserted 1,000 per transaction, then deleted from the front by rowid
    /// range, `chunk` rows per transaction, alone and after a sum of the rows' sizes (what
    /// `truncateLog` does). A writer that deletes every row it inserts does insert + delete of
    /// work per row, so it produces at most insert / (insert + delete) of insert-only speed.
    func deleteReference(rows: Int, chunk: Int) throws -> RawDelete {
        var out = RawDelete()
        for withSum in [false, true] {
            counter += 1
            let path = "\(dir)/raw\(counter).db"
            defer { for s in ["", "-wal", "-shm", "-bell"] { unlink(path + s) } }
            var pre: OpaquePointer?
            guard sqlite3_open_v2(path, &pre, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK else { throw CLIError("cannot open \(path)") }
            sqlite3_exec(pre, "PRAGMA auto_vacuum=INCREMENTAL; CREATE TABLE records(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, key BLOB, value BLOB, headers BLOB, txn INTEGER NOT NULL DEFAULT 0)", nil, nil, nil)
            sqlite3_close_v2(pre)
            let db = try RawSQLite(path: path, synchronous: "full")
            defer { db.close() }
            let v = [UInt8](repeating: 0x61, count: 100)
            let ins = try db.insert(n: rows, value: v, batch: 1000)
            let sum = try db.prepare("SELECT coalesce(sum(coalesce(length(key), 0) + coalesce(length(value), 0) + coalesce(length(headers), 0)), 0) FROM records WHERE id >= ?1 AND id < ?2")
            let del = try db.prepare("DELETE FROM records WHERE id >= ?1 AND id < ?2")
            defer { sqlite3_finalize(sum); sqlite3_finalize(del) }
            let t0 = monoSeconds()
            var at: Int64 = 0
            while at < Int64(rows) {
                let end = min(Int64(rows), at + Int64(chunk))
                try db.exec("BEGIN IMMEDIATE")
                for stmt in withSum ? [sum, del] : [del] {
                    sqlite3_bind_int64(stmt, 1, at)
                    sqlite3_bind_int64(stmt, 2, end)
                    while sqlite3_step(stmt) == SQLITE_ROW {}
                    sqlite3_reset(stmt)
                }
                try db.exec("COMMIT")
                at = end
            }
            let d = (monoSeconds() - t0) * 1e6 / Double(rows)
            let i = ins.seconds * 1e6 / Double(rows)
            if withSum { out.sumDeleteUs = d; out.insertUs = (out.insertUs + i) / 2 } else { out.deleteUs = d; out.insertUs = i }
        }
        return out
    }

    // MARK: Deletion cost and lock holds

    func deletion(records big: Int, fillBatch: Int) throws {
        self.fillBatch = fillBatch
        let recordBytes: Int64 = 10
        for backend in backends {
            for partition in [big / 4, big] {
                var config: [(String, String)] = [("log.retention.check.interval.ms", "0")]
                if backend == "sqlite" { config.append(("sqlite.synchronous", "full")) }
                let (broker, path, done) = try open(backend, config)
                defer { done() }
                try broker.createTopic("log", partitions: 1)
                try broker.createTopic("probe", partitions: 1)
                let producer = try broker.producer(ProducerConfig([("delivery.mode", "at-least-once")]))
                var c: UInt64 = 0
                let t0 = monoSeconds()
                var left = partition
                let parts = [Int32](repeating: 0, count: fillBatch)
                while left > 0 {
                    let k = Swift.min(fillBatch, left)
                    try sendChecked(producer, "log", batch(k, size: Int(recordBytes), counter: &c), Array(parts.prefix(k)))
                    left -= k
                }
                try producer.close()
                let fillSecs = monoSeconds() - t0
                fills.append((backend, partition, fillSecs, path.map(fileMB) ?? 0))
                note("delete \(backend): filled \(partition) records (batches of \(fillBatch)) in \(fmt(fillSecs, 1)) s\(path.map { ", file \(fmt(fileMB($0), 1)) MB" } ?? "")")

                // The probe producer with no maintenance running: its baseline latency.
                let base = LatencyProbe()
                try base.start(broker, topic: "probe", paceUs: 100)
                usleep(500_000)
                let baseline = try base.stop()
                baselines.append((backend, partition, baseline))
                note("delete \(backend) \(partition): probe baseline \(baseline.text)")

                let counts = [big / 1000, big / 100, big / 10]
                for op in ["delete-records", "retention"] {
                    for count in counts {
                        let (low0, high) = try broker.watermarks("log", 0)
                        let probe = LatencyProbe()
                        var row: DeleteRow
                        if op == "delete-records" {
                            try probe.start(broker, topic: "probe", paceUs: 100)
                            let (low, secs, lat) = try probe.around { try broker.deleteRecords("log", 0, before: low0 + Int64(count)) }
                            guard low == low0 + Int64(count) else { throw CLIError("bench-retention: deleteRecords left low \(low), expected \(low0 + Int64(count))") }
                            row = DeleteRow(backend: backend, partition: partition, op: op, deleted: count, seconds: secs, probe: lat)
                            // Not in the time above: give the freed pages back, as the next maintenance
                            // would (SQLite: incremental_vacuum steps and a WAL checkpoint, each holding
                            // the writer; not counted in MaintenanceReport.longestWriteMs).
                            let rp = LatencyProbe()
                            try rp.start(broker, topic: "probe", paceUs: 100)
                            let (_, rsecs, rlat) = try rp.around { try broker.storage.reclaimSpace() }
                            row.reclaimMs = rsecs * 1000
                            row.reclaimProbeMaxMs = rlat.max
                        } else {
                            try broker.setTopicConfig("log", [("retention.bytes", String((high - low0 - Int64(count)) * recordBytes))])
                            try probe.start(broker, topic: "probe", paceUs: 100)
                            let (rep, secs, lat) = try probe.around { try broker.maintain() }
                            try broker.setTopicConfig("log", [("retention.bytes", "")])
                            guard rep.recordsDeleted == count else { throw CLIError("bench-retention: retention deleted \(rep.recordsDeleted), expected \(count)") }
                            row = DeleteRow(backend: backend, partition: partition, op: op, deleted: count, seconds: secs,
                                            writes: rep.writes, longestWriteMs: rep.longestWriteMs, probe: lat)
                        }
                        deleteRows.append(row)
                        noteRow(row)
                    }
                }

                // Compaction: `partition / 10` keyed records over 1,000 keys, compacted alone; then as
                // many again, compacted in the same maintain() as retention deleting `big / 100`.
                try broker.createTopic("keyed", partitions: 1, config: [("cleanup.policy", "compact")])
                let keys = 1000, n = partition / 10
                var present = 0
                for combined in [false, true] {
                    let kp = try broker.producer(ProducerConfig([("delivery.mode", "at-least-once")]))
                    var i = 0
                    while i < n {
                        let k = Swift.min(10_000, n - i)
                        var b = RecordBatch(reservingRecords: k, bytes: k * 16)
                        for j in i..<(i + k) {
                            let key = Array("k\(j % keys)".utf8), value = Array(CrashFixture.digits8(j).utf8) + [0x2e, 0x2e]
                            key.withUnsafeBytes { kb in value.withUnsafeBytes { b.append(timestampMs: 0, key: kb, value: $0, headers: nil) } }
                        }
                        try sendChecked(kp, "keyed", b, [Int32](repeating: 0, count: k))
                        i += k
                    }
                    try kp.close()
                    present += n
                    let (low0, high) = try broker.watermarks("log", 0)
                    if combined { try broker.setTopicConfig("log", [("retention.bytes", String((high - low0 - Int64(big / 100)) * recordBytes))]) }
                    let probe = LatencyProbe()
                    try probe.start(broker, topic: "probe", paceUs: 100)
                    let (rep, secs, lat) = try probe.around { try broker.maintain() }
                    if combined { try broker.setTopicConfig("log", [("retention.bytes", "")]) }
                    var row = DeleteRow(backend: backend, partition: partition, op: combined ? "retention+compaction" : "compaction",
                                        deleted: rep.recordsDeleted + rep.recordsCompacted, seconds: secs,
                                        writes: rep.writes, longestWriteMs: rep.longestWriteMs, probe: lat)
                    row.expected = present - (keys + 1) + (combined ? big / 100 : 0)
                    present -= rep.recordsCompacted
                    deleteRows.append(row)
                    noteRow(row)
                }
            }
        }
    }

    func noteRow(_ row: DeleteRow) {
        note("delete \(row.backend) \(row.partition) \(row.op) \(row.deleted)\(row.expected.map { " (a complete pass: \($0))" } ?? ""): "
             + "\(fmt(row.seconds, 3)) s, \(fmt(row.usPerRecord, 2)) us/record"
             + (row.writes.map { ", \($0) writes, longest \(fmt(row.longestWriteMs ?? 0, 1)) ms" } ?? "")
             + "; probe \(row.probe.text)")
    }

    // MARK: Output

    func report() -> String {
        var out: [String] = []
        if !steadyRuns.isEmpty {
            out.append("== steady state: one partition, retention.bytes=1000000 (none: no retention), 1,000-byte records in batches of 100")
            for r in steadyRuns {
                let how = r.mode == "cleaner" ? "background cleaner every \(intervalMs) ms, writing at \(cleanerRate > 0 ? "\(fmt(cleanerRate, 0)) MB/s" : "full speed")"
                    : r.mode == "explicit" ? "explicit maintain() every 2 MB, no cleaner" : "no retention (control)"
                out.append("")
                out.append("\(r.backend), \(how):")
                var t: [[String]] = [["MB written", "low", "high", "retained MB", "file MB", "-wal MB", "RSS MiB"]]
                for s in r.samples {
                    t.append([fmt(s.mbWritten, 0), String(s.low), String(s.high), fmt(Double(s.high - s.low) * 1000 / 1e6, 1),
                              r.backend == "memory" ? "-" : fmt(s.fileMB, 1), r.backend == "memory" ? "-" : fmt(s.walMB, 1), fmt(s.rssMiB, 1)])
                }
                out += alignTable(t, rightAligned: Set(0..<7), sep: "  ").map { "  " + $0 }
                var summary = "  \(fmt(r.samples.last!.mbWritten, 0)) MB in \(fmt(r.seconds, 1)) s; "
                if r.backend != "memory" { summary += "max file + -wal \(fmt(r.maxDiskMB, 1)) MB; " }
                summary += "RSS after the first tenth \(fmt(r.samples[1].rssMiB, 1)) MiB, at the end \(fmt(r.samples.last!.rssMiB, 1)) MiB, max \(fmt(r.maxRSS, 1)) MiB; "
                summary += "slowest sendBatch \(fmt(r.slowestSendMs, 1)) ms"
                if r.mode == "explicit" {
                    summary += "; \(r.maintains) maintain() calls, \(r.writes) writes, longest write \(fmt(r.longestWriteMs, 1)) ms, longest maintain() \(fmt(r.longestMaintainMs, 1)) ms"
                }
                out.append(summary)
            }
            out.append("")
        }
        if !costRows.isEmpty {
            out.append("== produce cost of the cleaner: retention.bytes=1000000 + cleaner every \(intervalMs) ms vs no retention, no cleaner (alternating rounds)")
            var t: [[String]] = [["case", "backend", "with rec/s", "without rec/s", "ratio (best)", "ratio (median)", "slowest send with", "without", "deleted/run"]]
            for r in costRows {
                t.append([r.kind == "batch" ? "sendBatch 1000 × 100 B" : "produce 100 B + flush", r.backend, fmt(r.best.0, 0), fmt(r.best.1, 0),
                          fmt(r.ratio, 2), fmt(r.medianRatio, 2),
                          r.kind == "batch" ? fmt(r.slowestWithMs, 1) + " ms" : "-", r.kind == "batch" ? fmt(r.slowestWithoutMs, 1) + " ms" : "-",
                          fmt(r.deletedPerRun, 0)])
            }
            var lines = alignTable(t, rightAligned: Set(2..<9), sep: " | ")
            lines.insert(String(repeating: "-", count: lines.map(\.count).max() ?? 0), at: 1)
            out += lines
            if let r = rawDelete {
                out.append("reference, raw SQLite (auto_vacuum=INCREMENTAL, WAL, synchronous=FULL, 100 B rows): insert \(fmt(r.insertUs, 2)) us/row in "
                           + "1,000-row transactions; delete by rowid range \(fmt(r.deleteUs, 2)) us/row, with the size sum first (as truncateLog) "
                           + "\(fmt(r.sumDeleteUs, 2)) us/row, in 12,500-row transactions: one writer that deletes every row it inserts keeps at most "
                           + "\(fmt(r.bound, 2))x of insert-only speed")
            }
            out.append("")
        }
        if !deleteRows.isEmpty {
            out.append("== deletion cost and lock holds: 10-byte records; a probe producer sends single records to another topic every 100 us meanwhile")
            for f in fills {
                let base = baselines.first { $0.backend == f.backend && $0.partition == f.partition }
                out.append("fill \(f.backend) \(f.partition) records in batches of \(fillBatch): \(fmt(f.seconds, 1)) s\(f.backend == "sqlite" ? ", file \(fmt(f.fileMB, 1)) MB" : ""); "
                           + "probe with no maintenance: \(base.map { $0.probe.text } ?? "-")")
            }
            var t: [[String]] = [["backend", "partition", "op", "deleted", "complete pass", "seconds", "us/record", "writes", "longest write", "probe sends", "p50", "p99", "max", "reclaim", "probe max"]]
            for r in deleteRows {
                t.append([r.backend, String(r.partition), r.op, String(r.deleted), String(r.expected ?? r.deleted), fmt(r.seconds, 3), fmt(r.usPerRecord, 2),
                          r.writes.map(String.init) ?? "-", r.longestWriteMs.map { fmt($0, 1) + " ms" } ?? "-",
                          String(r.probe.count), fmt(r.probe.p50, 2) + " ms", fmt(r.probe.p99, 2) + " ms", fmt(r.probe.max, 2) + " ms",
                          r.reclaimMs.map { fmt($0, 0) + " ms" } ?? "-", r.reclaimProbeMaxMs.map { fmt($0, 2) + " ms" } ?? "-"])
            }
            var lines = alignTable(t, rightAligned: Set([1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]), sep: " | ")
            lines.insert(String(repeating: "-", count: lines.map(\.count).max() ?? 0), at: 1)
            out += lines
            out.append("writes / longest write: maintain()'s MaintenanceReport (deleteRecords returns only the low watermark); "
                       + "reclaim: storage.reclaimSpace() run after a delete-records row (not in its seconds), and the probe's slowest send meanwhile")
        }
        return out.joined(separator: "\n")
    }

    func json(megabytes: Int, records: Int, seconds: Double, rounds: Int, total: Double) -> String {
        var o = Out()
        func str(_ s: String) -> String { var x = Out(); jsonString(s, &x); return String(decoding: x.buf, as: UTF8.self) }
        func pct(_ p: Percentiles) -> String {
            "{\"sends\":\(p.count),\"p50_ms\":\(fmt(p.p50, 3)),\"p99_ms\":\(fmt(p.p99, 3)),\"max_ms\":\(fmt(p.max, 3))}"
        }
        o.put("{\"megabytes\":\(megabytes),\"records\":\(records),\"fill_batch\":\(fillBatch),\"cost_seconds\":\(fmt(seconds, 2)),\"rounds\":\(rounds),")
        o.put("\"interval_ms\":\(intervalMs),\"cleaner_rate_mb_per_s\":\(fmt(cleanerRate, 1)),\"seconds\":\(fmt(total, 2)),\"steady\":[")
        o.put(steadyRuns.map { r in
            "{\"backend\":\(str(r.backend)),\"mode\":\(str(r.mode)),\"seconds\":\(fmt(r.seconds, 2)),\"max_file_wal_mb\":\(fmt(r.maxDiskMB, 2)),"
                + "\"max_rss_mib\":\(fmt(r.maxRSS, 1)),\"slowest_send_ms\":\(fmt(r.slowestSendMs, 2)),\"maintains\":\(r.maintains),"
                + "\"writes\":\(r.writes),\"longest_write_ms\":\(fmt(r.longestWriteMs, 2)),\"samples\":["
                + r.samples.map { s in
                    "{\"mb_written\":\(fmt(s.mbWritten, 1)),\"low\":\(s.low),\"high\":\(s.high),\"file_mb\":\(fmt(s.fileMB, 2)),"
                        + "\"wal_mb\":\(fmt(s.walMB, 2)),\"rss_mib\":\(fmt(s.rssMiB, 1))}"
                }.joined(separator: ",") + "]}"
        }.joined(separator: ","))
        o.put("],\"cost\":[")
        o.put(costRows.map { r in
            "{\"backend\":\(str(r.backend)),\"case\":\(str(r.kind)),\"with_records_per_s\":\(fmt(r.best.0, 0)),"
                + "\"without_records_per_s\":\(fmt(r.best.1, 0)),\"ratio\":\(fmt(r.ratio, 3)),\"median_ratio\":\(fmt(r.medianRatio, 3)),"
                + "\"slowest_send_with_ms\":\(fmt(r.slowestWithMs, 2)),\"slowest_send_without_ms\":\(fmt(r.slowestWithoutMs, 2)),"
                + "\"deleted_per_run\":\(fmt(r.deletedPerRun, 0))}"
        }.joined(separator: ","))
        o.put("]")
        if let r = rawDelete {
            o.put(",\"raw_sqlite\":{\"insert_us_per_row\":\(fmt(r.insertUs, 3)),\"delete_us_per_row\":\(fmt(r.deleteUs, 3)),"
                  + "\"sum_delete_us_per_row\":\(fmt(r.sumDeleteUs, 3)),\"bound\":\(fmt(r.bound, 3))}")
        }
        o.put(",\"delete\":[")
        o.put(deleteRows.map { r in
            "{\"backend\":\(str(r.backend)),\"partition\":\(r.partition),\"op\":\(str(r.op)),\"deleted\":\(r.deleted),"
                + "\"seconds\":\(fmt(r.seconds, 4)),\"us_per_record\":\(fmt(r.usPerRecord, 3)),"
                + "\"complete_pass\":\(r.expected ?? r.deleted),\"writes\":\(r.writes.map(String.init) ?? "null"),\"longest_write_ms\":\(r.longestWriteMs.map { fmt($0, 2) } ?? "null"),"
                + "\"reclaim_ms\":\(r.reclaimMs.map { fmt($0, 1) } ?? "null"),\"reclaim_probe_max_ms\":\(r.reclaimProbeMaxMs.map { fmt($0, 2) } ?? "null"),\"probe\":\(pct(r.probe))}"
        }.joined(separator: ","))
        o.put("],\"probe_baseline\":[")
        o.put(baselines.map { "{\"backend\":\(str($0.backend)),\"partition\":\($0.partition),\"probe\":\(pct($0.probe))}" }.joined(separator: ","))
        o.put("]}")
        return String(decoding: o.buf, as: UTF8.self)
    }
}

// MARK: - Crash test fixture

/// The SQLite file `Tests/crash/maintenance_kill.sh` kills maintenance on, and the facts it checks:
///
/// * topic `big`: `records` records at offsets 0..<records, value = the offset as 8 digits, with
///   `retention.bytes` = 8 × records / 6 set after writing: maintenance must delete exactly the
///   oldest five sixths and keep the newest sixth (offsets ≥ records − records / 6);
/// * topic `compacted` (`cleanup.policy=compact`, `delete.retention.ms=0`): records / 3 keyed
///   writes over 2,000 keys, then tombstones for every fifth key, then new values for every
///   twenty-fifth (written after its tombstone), then one record of key `last`.
///
/// Writes `PATH.expect`: the expected log start of `big`, then one line per key of `compacted`:
/// `KEY VALUE` (the latest value) or `KEY -` (the latest write is a tombstone).
enum CrashFixture {
    static func make(path: String, records: Int) throws {
        for s in ["", "-wal", "-shm", "-bell"] { unlink(path + s) }
        let broker = try Broker("sqlite:" + path, config: [("log.retention.check.interval.ms", "0"), ("sqlite.synchronous", "normal")])
        defer { broker.close() }
        try broker.createTopic("big", partitions: 1)
        try broker.createTopic("compacted", partitions: 1, config: [("cleanup.policy", "compact"), ("delete.retention.ms", "0")])
        let producer = try broker.producer(ProducerConfig([("delivery.mode", "at-least-once")]))
        var offset = 0
        while offset < records {
            let k = min(10_000, records - offset)
            var b = RecordBatch(reservingRecords: k, bytes: 8 * k)
            for i in offset..<(offset + k) {
                let v = Array(digits8(i).utf8)
                v.withUnsafeBytes { b.append(timestampMs: 0, key: nil, value: $0, headers: nil) }
            }
            let o = try producer.send("big", b, partitions: [Int32](repeating: 0, count: k))
            if let (_, e) = o.firstError { throw e }
            offset += k
        }
        let keep = records / 6
        try broker.setTopicConfig("big", [("retention.bytes", String(8 * keep))])

        let keys = 2000
        var latest: [String: String?] = [:]
        var pending: [Record] = []
        func put(_ key: String, _ value: String?) throws {
            pending.append(Record(partition: 0, key: Array(key.utf8), value: value.map { Array($0.utf8) }))
            latest[key] = .some(value)
            if pending.count == 1000 { try flush() }
        }
        func flush() throws {
            for r in try producer.sendBatch("compacted", pending) { if case .failure(let e) = r { throw e } }
            pending.removeAll()
        }
        for i in 0..<(records / 3) {
            let k = "k\((i &* 7919) % keys)"
            try put(k, "\(k)=\(i)")
        }
        for k in stride(from: 0, to: keys, by: 5) { try put("k\(k)", nil) }
        for k in stride(from: 0, to: keys, by: 25) { try put("k\(k)", "k\(k)=back") }
        try put("last", "last=1")
        try flush()
        try producer.close()

        var text = "\(records - keep)\n"
        for (k, v) in latest.sorted(by: { $0.key < $1.key }) { text += "\(k) \(v ?? "-")\n" }
        guard let f = fopen(path + ".expect", "w") else { throw CLIError("cannot write \(path).expect") }
        fputs(text, f)
        fclose(f)
        let w = try broker.watermarks("compacted", 0)
        print("fixture \(path): big 0..<\(records) (retention keeps \(keep)), compacted \(w.high) records over \(latest.count) keys")
    }

    static func digits8(_ n: Int) -> String {
        let s = String(n)
        return String(repeating: "0", count: max(0, 8 - s.count)) + s
    }
}
