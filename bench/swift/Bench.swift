import ArgumentParser
import CRefLog
import CSQLite
import Dispatch
import Kofka
import KofkaCommandSupport
#if canImport(Glibc)
import Glibc
#endif

/// `kofka-bench run` (the default): the Swift face beside raw SQLite and a C log.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Measure throughput and latency, side by side with references measured in the same run.",
        discussion: """
            Rows: produce (sync sendBatch of 1,000-record batches; async produce + flush with the \
            default linger.ms; sync single-record send), consume (pollBatch of 500, poll), each on \
            memory and SQLite (synchronous=full and =normal) and for at-least-once and exactly-once \
            (idempotent) producers, then end-to-end latency (sync send -> blocked poll wakes, p50/p99).
            References, measured in the same run: raw SQLite through its C API writing the same rows \
            into the same table with the same pragmas and batch size and reading them back with a \
            range scan; the same with the records packed as Kofka's SQLite backend packs them (rows of \
            up to 16 KiB: a 20-byte entry per record, then the bytes), for the at-least-once batched \
            produce rows and the SQLite pollBatch rows; a minimal C log (malloc + memcpy per record) for \
            the memory backend; raw SQLite with one commit per record for single-record produce.
            Each row runs its Kofka case and its reference alternately (a warm-up of each at a tenth \
            of the size, then --runs rounds) and reports the best of each, so a ratio compares runs \
            taken under the same machine load. SQLite files go to a fresh temporary directory \
            (--dir) that is removed afterwards. Default: 200,000 records per row, about a minute \
            or two; --quick: 20,000, a few seconds.
            """)

    @Option(name: .long, help: "Records per produce/consume row (100-byte records; 1 KiB rows use a quarter).")
    var records: Int?

    @Flag(name: .long, help: "CI smoke run: 20,000 records, no 1 KiB rows, fewer single-record sends.")
    var quick = false

    @Flag(name: .long, help: "Include the 1 KiB rows in a --quick run (they are always in the full run).")
    var kib = false

    @Flag(name: .long, help: "Print the results as JSON instead of a table.")
    var json = false

    @Option(name: .long, help: "Timed runs per row; the best is reported.")
    var runs: Int = 3

    @Option(name: .long, help: "Directory for the SQLite files (default: a new directory under $TMPDIR or /tmp).")
    var dir: String?

    @Option(name: .long, help: "Run only the rows whose 'case backend mode' contains this text, e.g. 'produce batch 100 B memory'.")
    var only: String?

    func validate() throws {
        if let r = records, r < 1000 { throw ValidationError("--records must be at least 1000") }
        if runs < 1 { throw ValidationError("--runs must be at least 1") }
    }

    func run() throws {
        let base = dir ?? (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp")
        var template = Array("\(base)/kofka-bench-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw CLIError("cannot create a temporary directory under \(base)") }
        let workDir = String(cString: made)
        defer { _ = rmdir(workDir) }
        let b = BenchRunner(dir: workDir, runs: runs, quiet: json)
        b.only = only
        let n = records ?? (quick ? 20_000 : 200_000)
        let started = monoSeconds()
        try b.all(n: n, single: quick ? 300 : 2000, latency: quick ? 200 : 1000, withKiB: !quick || kib)
        let total = monoSeconds() - started
        if json {
            print(b.json(n: n, seconds: total))
        } else {
            print(b.table())
            for l in b.latencies { print(l.line) }
            for g in b.notes { print(g) }
            print("records per row: \(n) (1 KiB rows: \(n / 4)); warm-up, then best of \(runs) alternating with the reference; total \(fmt(total, 1)) s")
        }
    }
}

func monoSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func monoNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

enum Backend: String {
    case memory = "memory"
    case sqliteFull = "sqlite(full)"
    case sqliteNormal = "sqlite(normal)"
    var sync: String? { self == .sqliteFull ? "full" : self == .sqliteNormal ? "normal" : nil }
}

struct Row {
    var name: String
    var backend: Backend
    var mode: String
    var size: Int
    var rate: Double
    var reference: String
    var refRate: Double
    var ratio: Double { refRate > 0 ? rate / refRate : 0 }
    var mbps: Double { rate * Double(size) / 1e6 }
}

struct Latency {
    var backend: Backend
    var count: Int
    var p50: Double
    var p99: Double
    var line: String {
        "latency  \(backend.rawValue.padding(14))  sync send -> blocked poll wakes  p50 \(fmt(p50, 1).leftPad(8)) us  p99 \(fmt(p99, 1).leftPad(8)) us  (\(count) records)"
    }
}

final class BenchRunner {
    let dir: String
    let runs: Int
    let quiet: Bool
    var rows: [Row] = []
    var latencies: [Latency] = []
    var notes: [String] = []
    /// Only rows whose "case backend mode" contains this text run (nil = all).
    var only: String?
    private var fileCounter = 0

    func wants(_ name: String, _ backend: Backend, _ mode: String) -> Bool {
        guard let only else { return true }
        return "\(name) \(backend.rawValue) \(mode)".contains(only)
    }

    init(dir: String, runs: Int, quiet: Bool) {
        self.dir = dir
        self.runs = runs
        self.quiet = quiet
    }

    // MARK: Plan

    func all(n: Int, single: Int, latency: Int, withKiB: Bool) throws {
        let sizes = withKiB ? [(100, n), (1024, n / 4)] : [(100, n)]
        for (size, count) in sizes {
            for backend in [Backend.memory, .sqliteFull, .sqliteNormal] {
                let modes: [DeliveryMode] = size == 100 ? [.atMostOnce, .atLeastOnce, .exactlyOnce] : [.atLeastOnce]
                for mode in modes where wants("produce batch \(sizeName(size))", backend, mode.rawValue) {
                    let ref = batchReference(backend, size: size)
                    let (rate, refRate) = try paired(count, { try self.kofkaBatch(backend, mode, size: size, n: $0) }, count, ref.1)
                    add(Row(name: "produce batch \(sizeName(size))", backend: backend, mode: mode.rawValue, size: size,
                            rate: rate, reference: ref.0, refRate: refRate))
                    // Kofka writes a row per 16 KiB, not per record: the same rows written raw.
                    if backend != .memory && mode == .atLeastOnce {
                        let packed = packedBatchReference(backend, size: size)
                        let (rate, refRate) = try paired(count, { try self.kofkaBatch(backend, mode, size: size, n: $0) }, count, packed.1)
                        add(Row(name: "produce batch \(sizeName(size))", backend: backend, mode: mode.rawValue, size: size,
                                rate: rate, reference: packed.0, refRate: refRate))
                    }
                }
            }
        }
        // Async single-record produce (group commit) and sync single-record send.
        var asyncFull = 0.0, singleFull = 0.0
        for backend in [Backend.memory, .sqliteFull, .sqliteNormal] where wants("produce async 100 B", backend, "at-least-once") {
            let ref = backend == .memory ? batchReference(backend, size: 100) : singleCommitReference(backend)
            let (rate, refRate) = try paired(n, { try self.kofkaAsync(backend, size: 100, n: $0) }, backend == .memory ? n : single, ref.1)
            if backend == .sqliteFull { asyncFull = rate }
            add(Row(name: "produce async 100 B", backend: backend, mode: "at-least-once", size: 100,
                    rate: rate, reference: ref.0, refRate: refRate))
        }
        for backend in [Backend.sqliteFull, .sqliteNormal] where wants("produce sync single 100 B", backend, "at-least-once") {
            let ref = singleCommitReference(backend)
            let (rate, refRate) = try paired(single, { try self.kofkaSingle(backend, size: 100, n: $0) }, single, ref.1)
            if backend == .sqliteFull { singleFull = rate }
            add(Row(name: "produce sync single 100 B", backend: backend, mode: "at-least-once", size: 100,
                    rate: rate, reference: ref.0, refRate: refRate))
        }
        if singleFull > 0 {
            notes.append("group-commit gain, sqlite(full): async produce / sync single send = \(fmt(asyncFull / singleFull, 1))x")
        }
        // Consume.
        for (size, count) in sizes {
            for backend in [Backend.memory, .sqliteFull] where wants("consume poll", backend, "read_committed") || wants("consume pollBatch \(sizeName(size))", backend, "read_committed") {
                let src = try prefill(backend, size: size, n: count)
                defer { src.close() }
                let ref = try readReference(backend, size: size, n: count)
                defer { ref.cleanup() }
                let (rate, refRate) = try paired(count, { try self.kofkaConsume(src, batch: true, n: $0) }, count, ref.body)
                add(Row(name: "consume pollBatch \(sizeName(size))", backend: backend, mode: "read_committed", size: size,
                        rate: rate, reference: ref.name, refRate: refRate))
                // pollMessages: the same records in one shared buffer per batch (no allocation per record).
                let (srate, srefRate) = try paired(count, { try self.kofkaConsume(src, batch: true, shared: true, n: $0) }, count, ref.body)
                add(Row(name: "consume pollMessages \(sizeName(size))", backend: backend, mode: "read_committed", size: size,
                        rate: srate, reference: ref.name, refRate: srefRate))
                if backend != .memory {
                    let packed = try packedReadReference(backend, size: size, n: count)
                    defer { packed.cleanup() }
                    let (rate, refRate) = try paired(count, { try self.kofkaConsume(src, batch: true, n: $0) }, count, packed.body)
                    add(Row(name: "consume pollBatch \(sizeName(size))", backend: backend, mode: "read_committed", size: size,
                            rate: rate, reference: packed.name, refRate: refRate))
                }
                if size == 100 {
                    let pn = min(count, 50_000)
                    let (prate, prefRate) = try paired(pn, { try self.kofkaConsume(src, batch: false, n: $0) }, count, ref.body)
                    add(Row(name: "consume poll \(sizeName(size))", backend: backend, mode: "read_committed", size: size,
                            rate: prate, reference: ref.name, refRate: prefRate))
                }
            }
        }
        // Read-process-write: exactly-once (a transaction per poll: outputs + offsets) against at-least-once.
        for backend in [Backend.memory, .sqliteFull] where wants("read-process-write 100 B", backend, "exactly-once") {
            let src = try prefill(backend, size: 100, n: n)
            defer { src.close() }
            let (rate, refRate) = try paired(n, { try self.readProcessWrite(src, .exactlyOnce, n: $0) }, n,
                                             { try self.readProcessWrite(src, .atLeastOnce, n: $0) })
            add(Row(name: "read-process-write 100 B", backend: backend, mode: "exactly-once", size: 100,
                    rate: rate, reference: "at-least-once r-p-w", refRate: refRate))
        }
        // Resident memory while consuming many records (memory backend, one topic read over and over).
        if wants("rss", .memory, "") {
            notes.append(try consumeResidentSize(total: n * 50))
        }
        // Latency.
        for backend in [Backend.memory, .sqliteFull, .sqliteNormal] where wants("latency", backend, "") {
            let m = backend == .memory ? latency * 2 : latency
            let l = try measureLatency(backend, n: m)
            latencies.append(l)
            if !quiet { stderrLine(l.line) }
        }
    }

    func sizeName(_ size: Int) -> String { size >= 1024 ? "\(size / 1024) KiB" : "\(size) B" }

    func add(_ r: Row) {
        rows.append(r)
        if !quiet {
            stderrLine("bench: \(r.name) \(r.backend.rawValue) \(r.mode): \(fmt(r.rate, 0)) rec/s (\(r.reference) \(fmt(r.refRate, 0)) rec/s, \(fmt(r.ratio, 2))x)")
        }
    }

    /// A Kofka case and its reference measured in alternation (warm-up of each at a tenth of
    /// the size, then `runs` rounds of Kofka run + reference run), so both see the same machine
    /// conditions; returns the best rate of each.
    func paired(_ n: Int, _ body: (Int) throws -> Double, _ refN: Int, _ ref: (Int) throws -> Double) throws -> (Double, Double) {
        _ = try body(max(1, n / 10))
        _ = try ref(max(1, refN / 10))
        var best = 0.0, refBest = 0.0
        for _ in 0..<runs {
            best = max(best, Double(n) / max(try body(n), 1e-9))
            refBest = max(refBest, Double(refN) / max(try ref(refN), 1e-9))
        }
        return (best, refBest)
    }

    // MARK: Files

    func freshPath() -> String {
        fileCounter += 1
        return "\(dir)/b\(fileCounter).db"
    }

    func remove(_ path: String) {
        for s in ["", "-wal", "-shm", "-journal", "-bell"] { unlink(path + s) }
    }

    func value(_ size: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<size).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    /// A fresh broker; the returned closure closes it and deletes its file.
    func openBroker(_ backend: Backend) throws -> (Broker, () -> Void) {
        guard let sync = backend.sync else {
            let b = try Broker("memory:", config: [])
            return (b, { b.close() })
        }
        let path = freshPath()
        let b = try Broker("sqlite:" + path, config: [("sqlite.synchronous", sync)])
        let dir = self
        return (b, { b.close(); dir.remove(path) })
    }

    // MARK: Kofka runs

    func kofkaBatch(_ backend: Backend, _ mode: DeliveryMode, size: Int, n: Int) throws -> Double {
        let (broker, done) = try openBroker(backend)
        defer { done() }
        try broker.createTopic("bench", partitions: 1)
        let producer = try broker.producer(ProducerConfig([("delivery.mode", mode.rawValue)]))
        let source = value(size)
        var left = n
        let t0 = monoSeconds()
        try source.withUnsafeBytes { src in
            while left > 0 {
                // Each record's bytes are copied into the batch, as the C log's malloc + memcpy per
                // record copies them: the fastest way in from Swift (a RecordBatch, one buffer per
                // 1,000 records) against the fastest plain C.
                let k = min(1000, left)
                var batch = RecordBatch(reservingRecords: k, bytes: k * size)
                for _ in 0..<k { batch.append(timestampMs: 0, key: nil, value: src, headers: nil) }
                let o = try producer.send("bench", batch, partitions: [Int32](repeating: 0, count: k))
                if let (_, e) = o.firstError { throw e }
                left -= k
            }
        }
        try producer.close()   // at-most-once hands batches to a background writer: count them written
        return monoSeconds() - t0
    }

    func kofkaAsync(_ backend: Backend, size: Int, n: Int) throws -> Double {
        let (broker, done) = try openBroker(backend)
        defer { done() }
        try broker.createTopic("bench", partitions: 1)
        let producer = try broker.producer(ProducerConfig([("delivery.mode", "at-least-once")]))
        let source = value(size)
        var failed: KofkaError?
        var delivered = 0
        let handler: (DeliveryReport) -> Void = { r in
            if case .failure(let e) = r.result, failed == nil { failed = e }
            delivered += 1
        }
        let t0 = monoSeconds()
        for _ in 0..<n {
            while true {
                do {
                    try producer.produce("bench", Record(partition: 0, value: copyBytes(source)))
                    break
                } catch let e as KofkaError where e.code == .queueFull {
                    producer.poll(timeout: .milliseconds(1), handler)
                }
            }
        }
        try producer.flush(timeout: .seconds(120), handler)
        let secs = monoSeconds() - t0
        try producer.close()
        if let failed { throw failed }
        guard delivered == n else { throw CLIError("bench: \(delivered) delivery reports for \(n) records") }
        return secs
    }

    func kofkaSingle(_ backend: Backend, size: Int, n: Int) throws -> Double {
        let (broker, done) = try openBroker(backend)
        defer { done() }
        try broker.createTopic("bench", partitions: 1)
        let producer = try broker.producer(ProducerConfig([("delivery.mode", "at-least-once")]))
        let source = value(size)
        let t0 = monoSeconds()
        for _ in 0..<n { _ = try producer.send("bench", Record(partition: 0, value: copyBytes(source))) }
        let secs = monoSeconds() - t0
        try producer.close()
        return secs
    }

    final class Source {
        let broker: Broker
        let done: () -> Void
        init(_ broker: Broker, _ done: @escaping () -> Void) { self.broker = broker; self.done = done }
        func close() { done() }
    }

    func prefill(_ backend: Backend, size: Int, n: Int) throws -> Source {
        let (broker, done) = try openBroker(backend)
        try broker.createTopic("bench", partitions: 1)
        let producer = try broker.producer(ProducerConfig([("delivery.mode", "at-least-once")]))
        let chunk = [Record](repeating: Record(partition: 0, value: value(size)), count: 1000)
        var left = n
        while left > 0 {
            let part = left >= 1000 ? chunk : Array(chunk.prefix(left))
            for r in try producer.sendBatch("bench", part) { if case .failure(let e) = r { throw e } }
            left -= part.count
        }
        try producer.close()
        return Source(broker, done)
    }

    func kofkaConsume(_ src: Source, batch: Bool, shared: Bool = false, n: Int) throws -> Double {
        let consumer = try src.broker.consumer(ConsumerConfig([("max.poll.records", "500")]))
        try consumer.assign("bench", partitions: [0])
        try consumer.seek("bench", 0, 0)
        var got = 0
        var bytes = 0
        let t0 = monoSeconds()
        if batch && shared {
            while got < n {
                let ms = try consumer.pollMessages(max: min(500, n - got), timeout: .seconds(5))
                if ms.isEmpty { throw CLIError("bench: consumer stalled at \(got) of \(n)") }
                for m in ms { bytes &+= m.value?.count ?? 0 }
                got += ms.count
            }
        } else if batch {
            while got < n {
                let ms = try consumer.pollBatch(max: min(500, n - got), timeout: .seconds(5))
                if ms.isEmpty { throw CLIError("bench: consumer stalled at \(got) of \(n)") }
                for m in ms { bytes &+= m.value?.count ?? 0 }
                got += ms.count
            }
        } else {
            while got < n {
                guard let m = try consumer.poll(timeout: .seconds(5)) else { throw CLIError("bench: consumer stalled at \(got) of \(n)") }
                bytes &+= m.value?.count ?? 0
                got += 1
            }
        }
        let secs = monoSeconds() - t0
        consumer.destroy()
        return secs
    }

    // MARK: Latency

    /// Consumes `n` records of the prefilled topic in a fresh group, writing each to an output
    /// topic: at-least-once commits after writing; exactly-once writes and commits offsets in one
    /// transaction per poll. Returns seconds.
    func readProcessWrite(_ src: Source, _ mode: DeliveryMode, n: Int) throws -> Double {
        fileCounter += 1
        let group = "rpw-\(fileCounter)"
        let consumer = try src.broker.consumer(ConsumerConfig([("group.id", group), ("delivery.mode", mode.rawValue),
                                                               ("max.poll.records", "500")]))
        try consumer.subscribe(["bench"])
        var pcfg = [("delivery.mode", mode.rawValue)]
        if mode == .exactlyOnce { pcfg.append(("transactional.id", group)) }
        let producer = try src.broker.producer(ProducerConfig(pcfg))
        if mode == .exactlyOnce { try producer.initTransactions() }
        var got = 0
        let t0 = monoSeconds()
        while got < n {
            let ms = try consumer.pollBatch(max: min(500, n - got), timeout: .seconds(5))
            if ms.isEmpty { throw CLIError("bench: read-process-write stalled at \(got) of \(n)") }
            let out = ms.map { Record(partition: 0, key: $0.key, value: $0.value) }
            if mode == .exactlyOnce {
                try producer.beginTransaction()
                for r in try producer.sendBatch("bench-out", out) { if case .failure(let e) = r { throw e } }
                try producer.sendOffsetsToTransaction(consumer)
                try producer.commitTransaction()
            } else {
                for r in try producer.sendBatch("bench-out", out) { if case .failure(let e) = r { throw e } }
                try consumer.commit()
            }
            got += ms.count
        }
        let secs = monoSeconds() - t0
        try producer.close()
        try consumer.close()
        return secs
    }

    /// Reads one 100,000-record in-memory topic over and over until `total` records were
    /// consumed, and reports the resident size after the first pass and at the end.
    func consumeResidentSize(total: Int) throws -> String {
        let per = 100_000
        let src = try prefill(.memory, size: 100, n: per)
        defer { src.close() }
        let consumer = try src.broker.consumer(ConsumerConfig([("max.poll.records", "500")]))
        try consumer.assign("bench", partitions: [0])
        var consumed = 0
        var first = 0.0, peak = 0.0
        let t0 = monoSeconds()
        while consumed < total {
            try consumer.seek("bench", 0, 0)
            var pass = 0
            while pass < per {
                let ms = try consumer.pollBatch(max: 500, timeout: .seconds(5))
                if ms.isEmpty { throw CLIError("bench: consumer stalled") }
                pass += ms.count
            }
            consumed += pass
            let r = residentMiB()
            if first == 0 { first = r }
            peak = max(peak, r)
        }
        let secs = monoSeconds() - t0
        return "rss, memory backend, consuming \(consumed) records (one 100,000-record topic read \(consumed / per) times): "
            + "resident \(fmt(first, 1)) MiB after the first pass, peak \(fmt(peak, 1)) MiB after the last (\(fmt(Double(consumed) / secs, 0)) rec/s)"
    }

    func measureLatency(_ backend: Backend, n: Int) throws -> Latency {
        let (broker, done) = try openBroker(backend)
        defer { done() }
        try broker.createTopic("lat", partitions: 1)
        let producer = try broker.producer(ProducerConfig([("delivery.mode", "at-least-once")]))
        let consumer = try broker.consumer(ConsumerConfig([]))
        try consumer.assign("lat", partitions: [0])
        try consumer.seek("lat", 0, 0)
        let received = DispatchSemaphore(value: 0)
        let ready = DispatchSemaphore(value: 0)
        let box = LatencyBox()
        let warm = min(50, n / 10)
        let total = n + warm
        let thread = Thread {
            ready.signal()
            var seen = 0
            while seen < total {
                do {
                    guard let m = try consumer.poll(timeout: .seconds(10)) else { box.error = "poll timed out"; break }
                    let now = monoNanos()
                    var sent: UInt64 = 0
                    if let v = m.value, v.count >= 8 { for i in 0..<8 { sent |= UInt64(v[i]) << (8 * UInt64(i)) } }
                    if seen >= warm { box.samples.append(Double(now &- sent) / 1000) }
                } catch {
                    box.error = "\(error)"
                    break
                }
                seen += 1
                received.signal()
            }
            received.signal()
        }
        thread.start()
        ready.wait()
        var payload = value(100)
        for _ in 0..<total {
            usleep(200)   // let the consumer block in poll
            let t = monoNanos()
            for i in 0..<8 { payload[i] = UInt8(truncatingIfNeeded: t >> (8 * UInt64(i))) }
            _ = try producer.send("lat", Record(partition: 0, value: payload))
            received.wait()
            if box.error != nil { break }
        }
        thread.join()
        consumer.destroy()
        try producer.close()
        if let e = box.error { throw CLIError("bench: latency consumer failed: \(e)") }
        let s = box.samples.sorted()
        func pct(_ p: Double) -> Double { s.isEmpty ? 0 : s[min(s.count - 1, Int(Double(s.count) * p))] }
        return Latency(backend: backend, count: s.count, p50: pct(0.5), p99: pct(0.99))
    }

    // MARK: References

    /// The physical-limit reference for batched produce on `backend`: the C log, or raw SQLite
    /// with the backend's pragmas, 1,000 rows per BEGIN IMMEDIATE ... COMMIT.
    func batchReference(_ backend: Backend, size: Int) -> (String, (Int) throws -> Double) {
        if backend == .memory {
            let v = value(size)
            return ("C log malloc+memcpy", { n in
                let log = creflog_new()!
                defer { creflog_free(log) }
                let t0 = monoSeconds()
                v.withUnsafeBytes { p in
                    for _ in 0..<n { _ = creflog_append(log, p.baseAddress, p.count) }
                }
                return monoSeconds() - t0
            })
        }
        return rawWriteReference("raw SQLite batch 1000", backend, size: size) { db, v, n in try db.insert(n: n, value: v, batch: 1000) }
    }

    /// Raw SQLite writing what Kofka's SQLite backend writes for a batch: the records packed in
    /// rows of up to 16 KiB, 1,000 records per BEGIN IMMEDIATE ... COMMIT.
    func packedBatchReference(_ backend: Backend, size: Int) -> (String, (Int) throws -> Double) {
        rawWriteReference("raw SQLite packed rows", backend, size: size) { db, v, n in try db.insertPacked(n: n, value: v, batch: 1000) }
    }

    /// A reference that writes `n` records of `size` bytes with `write` into a fresh raw SQLite
    /// file with the backend's pragmas; returns its seconds.
    func rawWriteReference(_ name: String, _ backend: Backend, size: Int,
                           _ write: @escaping (RawSQLite, [UInt8], Int) throws -> Duration) -> (String, (Int) throws -> Double) {
        let v = value(size)
        let sync = backend.sync!
        return (name, { n in
            let path = self.freshPath()
            defer { self.remove(path) }
            let db = try RawSQLite(path: path, synchronous: sync)
            defer { db.close() }
            return try write(db, v, n).seconds
        })
    }

    /// Raw SQLite reading packed rows back (a range scan over rows, each record's value copied
    /// out), 500 records per query, over `n` records written beforehand.
    func packedReadReference(_ backend: Backend, size: Int, n: Int) throws -> (name: String, body: (Int) throws -> Double, cleanup: () -> Void) {
        let path = freshPath()
        let db = try RawSQLite(path: path, synchronous: backend.sync!)
        _ = try db.insertPacked(n: n, value: value(size), batch: 1000)
        return ("raw SQLite packed scan", { n in try db.scanPacked(n: n, chunk: 500) }, { db.close(); self.remove(path) })
    }

    /// Raw SQLite, one commit per record.
    func singleCommitReference(_ backend: Backend) -> (String, (Int) throws -> Double) {
        rawWriteReference("raw SQLite 1 commit/rec", backend, size: 100) { db, v, n in try db.insert(n: n, value: v, batch: 1) }
    }

    /// The reference for reading back: a C log copy-out, or a raw SQLite range scan in chunks of
    /// 500, over `n` records written beforehand.
    func readReference(_ backend: Backend, size: Int, n: Int) throws -> (name: String, body: (Int) throws -> Double, cleanup: () -> Void) {
        let v = value(size)
        if backend == .memory {
            let log = creflog_new()!
            v.withUnsafeBytes { p in for _ in 0..<n { _ = creflog_append(log, p.baseAddress, p.count) } }
            return ("C log copy-out", { n in
                var bytes: UInt64 = 0
                var at: Int64 = 0
                let t0 = monoSeconds()
                while at < Int64(n) { at += creflog_read_copy(log, at, min(500, Int64(n) - at), &bytes) }
                return monoSeconds() - t0
            }, { creflog_free(log) })
        }
        let path = freshPath()
        let db = try RawSQLite(path: path, synchronous: backend.sync!)
        _ = try db.insert(n: n, value: v, batch: 1000)
        return ("raw SQLite range scan", { n in try db.scan(n: n, chunk: 500) }, { db.close(); self.remove(path) })
    }

    // MARK: Output

    func table() -> String {
        var t: [[String]] = [["case", "backend", "mode", "records/s", "MB/s", "reference", "ref records/s", "ratio"]]
        for r in rows {
            let cells: [String] = [r.name, r.backend.rawValue, r.mode, fmt(r.rate, 0), fmt(r.mbps, 1),
                                   r.reference, fmt(r.refRate, 0), fmt(r.ratio, 2)]
            t.append(cells)
        }
        var lines = alignTable(t, rightAligned: [3, 4, 6, 7], sep: " | ")
        let width = lines.map(\.count).max() ?? 0
        lines.insert(String(repeating: "-", count: width), at: 1)
        return lines.joined(separator: "\n")
    }

    func json(n: Int, seconds: Double) -> String {
        var out = Out()
        func str(_ s: String) -> String { var o = Out(); jsonString(s, &o); return String(decoding: o.buf, as: UTF8.self) }
        out.put("{\"records\":\(n),\"runs\":\(runs),\"seconds\":\(fmt(seconds, 2)),\"rows\":[")
        for (i, r) in rows.enumerated() {
            if i > 0 { out.put(",") }
            out.put("{\"case\":\(str(r.name)),\"backend\":\(str(r.backend.rawValue)),\"mode\":\(str(r.mode)),\"record_bytes\":\(r.size),")
            out.put("\"records_per_s\":\(fmt(r.rate, 0)),\"mb_per_s\":\(fmt(r.mbps, 2)),")
            out.put("\"reference\":\(str(r.reference)),")
            out.put("\"ref_records_per_s\":\(fmt(r.refRate, 0)),\"ratio\":\(fmt(r.ratio, 3))}")
        }
        out.put("],\"latency\":[")
        for (i, l) in latencies.enumerated() {
            if i > 0 { out.put(",") }
            out.put("{\"backend\":\(str(l.backend.rawValue)),\"records\":\(l.count),")
            out.put("\"p50_us\":\(fmt(l.p50, 1)),\"p99_us\":\(fmt(l.p99, 1))}")
        }
        out.put("],\"notes\":[")
        out.put(notes.map(str).joined(separator: ","))
        out.put("]}")
        return String(decoding: out.buf, as: UTF8.self)
    }
}

final class LatencyBox: @unchecked Sendable {
    var samples: [Double] = []
    var error: String?
}

/// A thread running a closure; `join` waits for it.
final class Thread: @unchecked Sendable {
    private let body: () -> Void
    private var tid = pthread_t()
    init(_ body: @escaping () -> Void) { self.body = body }
    func start() {
        let ctx = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&tid, nil, { ctx in
            let me = Unmanaged<Thread>.fromOpaque(ctx!).takeRetainedValue()
            me.body()
            return nil
        }, ctx)
    }
    func join() { pthread_join(tid, nil) }
}

/// Raw SQLite through its C API: the same table, pragmas and statement shapes as Kofka's SQLite backend.
final class RawSQLite {
    var db: OpaquePointer?
    let path: String

    init(path: String, synchronous: String) throws {
        self.path = path
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK else {
            throw CLIError("bench: cannot open \(path)")
        }
        sqlite3_busy_timeout(db, 5000)
        try exec("PRAGMA page_size=\(SQLiteStorage.pageSizeForNewFiles)")   // as Kofka's new files
        try exec("PRAGMA journal_mode=WAL")
        try exec("PRAGMA synchronous=\(synchronous.uppercased())")
        try exec("PRAGMA secure_delete=FAST")   // as Kofka's connections
        try exec("""
            CREATE TABLE IF NOT EXISTS kv(key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS records(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL,
                key BLOB, value BLOB, headers BLOB, txn INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY, last INTEGER NOT NULL, n INTEGER NOT NULL,
                bytes INTEGER NOT NULL, txn INTEGER NOT NULL DEFAULT 0, data BLOB NOT NULL);
            """)
    }

    /// Inserts n records of `value` packed into `chunks` rows as Kofka's SQLite backend packs a
    /// batch (an 8-byte header, a 20-byte entry per record — timestamp, key, value and headers
    /// lengths — then the values; rows of at most `rowBytes`), `batch` records per transaction.
    func insertPacked(n: Int, value: [UInt8], batch: Int, rowBytes: Int = 16 * 1024) throws -> Duration {
        let stmt = try prepare("INSERT INTO chunks(id, last, n, bytes, txn, data) VALUES(?1, ?2, ?3, ?4, ?5, ?6)")
        defer { sqlite3_finalize(stmt) }
        let perRow = max(1, (rowBytes - 8) / (20 + value.count))
        var blob = [UInt8](repeating: 0, count: 8 + perRow * (20 + value.count))
        return try blob.withUnsafeMutableBytes { b in
            let p = b.baseAddress!
            return try value.withUnsafeBytes { v in
                try transactions(n: n, batch: batch) { from, end, now in
                    var offset = from
                    while offset < end {
                        let k = Int(min(Int64(perRow), end - offset))
                        p.storeBytes(of: UInt32(1), toByteOffset: 0, as: UInt32.self)
                        p.storeBytes(of: UInt32(k).littleEndian, toByteOffset: 4, as: UInt32.self)
                        var at = 8
                        for _ in 0..<k {
                            p.storeBytes(of: now.littleEndian, toByteOffset: at, as: Int64.self)
                            p.storeBytes(of: Int32(-1), toByteOffset: at + 8, as: Int32.self)
                            p.storeBytes(of: Int32(v.count).littleEndian, toByteOffset: at + 12, as: Int32.self)
                            p.storeBytes(of: Int32(-1), toByteOffset: at + 16, as: Int32.self)
                            at += 20
                        }
                        for _ in 0..<k {
                            (p + at).copyMemory(from: v.baseAddress!, byteCount: v.count)
                            at += v.count
                        }
                        sqlite3_bind_int64(stmt, 1, offset)
                        sqlite3_bind_int64(stmt, 2, offset + Int64(k) - 1)
                        sqlite3_bind_int64(stmt, 3, Int64(k))
                        sqlite3_bind_int64(stmt, 4, Int64(k * v.count))
                        sqlite3_bind_int64(stmt, 5, 0)
                        sqlite3_bind_blob(stmt, 6, p, Int32(at), kofka_sqlite_static())
                        guard sqlite3_step(stmt) == SQLITE_DONE else {
                            throw CLIError("bench: raw packed insert failed: \(String(cString: sqlite3_errmsg(self.db)))")
                        }
                        sqlite3_reset(stmt)
                        offset += Int64(k)
                    }
                }
            }
        }
    }

    /// Runs `body(from, end, now)` for records `from..<end`, `batch` records per BEGIN IMMEDIATE
    /// ... COMMIT, until n records are written (`now`: the wall clock in ms at each BEGIN).
    /// Returns the time taken.
    func transactions(n: Int, batch: Int, _ body: (Int64, Int64, Int64) throws -> Void) throws -> Duration {
        let begin = try prepare("BEGIN IMMEDIATE")
        let commit = try prepare("COMMIT")
        defer { sqlite3_finalize(begin); sqlite3_finalize(commit) }
        let start = ContinuousClock.now
        var offset: Int64 = 0
        while offset < Int64(n) {
            guard sqlite3_step(begin) == SQLITE_DONE else { throw CLIError("bench: BEGIN failed") }
            sqlite3_reset(begin)
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            let end = min(Int64(n), offset + Int64(batch))
            try body(offset, end, Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000)
            guard sqlite3_step(commit) == SQLITE_DONE else { throw CLIError("bench: COMMIT failed") }
            sqlite3_reset(commit)
            offset = end
        }
        return ContinuousClock.now - start
    }

    /// Reads the packed records 0..<n back, `chunk` records per query (the row holding the first,
    /// then forward, as Kofka's backend reads), copying each value out into a Swift array.
    /// Returns seconds.
    func scanPacked(n: Int, chunk: Int) throws -> Double {
        let stmt = try prepare("""
            SELECT id, last, txn, data FROM chunks
            WHERE id >= coalesce((SELECT id FROM chunks WHERE id <= ?1 ORDER BY id DESC LIMIT 1), ?1) AND id <= ?2 ORDER BY id
            """)
        defer { sqlite3_finalize(stmt) }
        var at: Int64 = 0
        var bytes = 0
        let t0 = monoSeconds()
        while at < Int64(n) {
            let want = min(Int64(chunk), Int64(n) - at)
            sqlite3_bind_int64(stmt, 1, at)
            sqlite3_bind_int64(stmt, 2, (1 << 40) - 1)
            var got: Int64 = 0
            while got < want, sqlite3_step(stmt) == SQLITE_ROW {
                let first = sqlite3_column_int64(stmt, 0)
                _ = sqlite3_column_int64(stmt, 2)
                guard let p = sqlite3_column_blob(stmt, 3) else { continue }
                let count = Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
                var data = 8 + 20 * count
                for i in 0..<count {
                    let e = 8 + 20 * i
                    let len = Int(Int32(littleEndian: p.loadUnaligned(fromByteOffset: e + 12, as: Int32.self)))
                    if first + Int64(i) >= at + got, got < want {
                        _ = p.loadUnaligned(fromByteOffset: e, as: Int64.self)
                        let copy = [UInt8](UnsafeRawBufferPointer(start: p + data, count: len))
                        bytes &+= copy.count
                        got += 1
                    }
                    data += len
                }
            }
            sqlite3_reset(stmt)
            if got == 0 { throw CLIError("bench: raw packed scan found no rows at \(at)") }
            at += got
        }
        return monoSeconds() - t0
    }

    func close() {
        if let db { sqlite3_close_v2(db) }
        db = nil
    }

    func exec(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        if sqlite3_exec(db, sql, nil, nil, &err) != SQLITE_OK {
            let m = err.map { String(cString: $0) } ?? "?"
            sqlite3_free(err)
            throw CLIError("bench: raw SQLite failed on '\(sql.prefix(40))': \(m)")
        }
    }

    func prepare(_ sql: String) throws -> OpaquePointer {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil) == SQLITE_OK, let stmt else {
            throw CLIError("bench: cannot prepare '\(sql)': \(String(cString: sqlite3_errmsg(db)))")
        }
        return stmt
    }

    /// Inserts n rows of `value` in transactions of `batch` rows (BEGIN IMMEDIATE ... COMMIT),
    /// with ids (pnum << 40) | offset for pnum 0, continuing after rows already there. Returns the time taken.
    func insert(n: Int, value: [UInt8], batch: Int) throws -> Duration {
        let stmt = try prepare("INSERT INTO records(id, ts, key, value, headers, txn) VALUES(?1, ?2, ?3, ?4, ?5, ?6)")
        defer { sqlite3_finalize(stmt) }
        let pnum: Int64 = 0
        return try value.withUnsafeBytes { v in
            try transactions(n: n, batch: batch) { from, end, now in
                for offset in from..<end {
                    sqlite3_bind_int64(stmt, 1, (pnum << 40) | offset)
                    sqlite3_bind_int64(stmt, 2, now)
                    sqlite3_bind_null(stmt, 3)
                    sqlite3_bind_blob(stmt, 4, v.baseAddress, Int32(v.count), kofka_sqlite_static())
                    sqlite3_bind_null(stmt, 5)
                    sqlite3_bind_int64(stmt, 6, 0)
                    guard sqlite3_step(stmt) == SQLITE_DONE else {
                        throw CLIError("bench: raw insert failed: \(String(cString: sqlite3_errmsg(self.db)))")
                    }
                    sqlite3_reset(stmt)
                }
            }
        }
    }

    /// Reads rows 0..<n back in chunks of `chunk` with the backend's range query, copying each
    /// key and value out into Swift arrays (as any consumer must). Returns seconds.
    func scan(n: Int, chunk: Int) throws -> Double {
        let stmt = try prepare("SELECT id, ts, key, value, headers, txn FROM records WHERE id >= ?1 AND id <= ?2 ORDER BY id LIMIT ?3")
        defer { sqlite3_finalize(stmt) }
        var at: Int64 = 0
        var bytes = 0
        let t0 = monoSeconds()
        while at < Int64(n) {
            sqlite3_bind_int64(stmt, 1, at)
            sqlite3_bind_int64(stmt, 2, (1 << 40) - 1)
            sqlite3_bind_int64(stmt, 3, Int64(min(chunk, n - Int(at))))
            var got: Int64 = 0
            while sqlite3_step(stmt) == SQLITE_ROW {
                _ = sqlite3_column_int64(stmt, 0)
                _ = sqlite3_column_int64(stmt, 1)
                let len = Int(sqlite3_column_bytes(stmt, 3))
                if let p = sqlite3_column_blob(stmt, 3) {
                    let copy = [UInt8](UnsafeRawBufferPointer(start: p, count: len))
                    bytes &+= copy.count
                }
                _ = sqlite3_column_int64(stmt, 5)
                got += 1
            }
            sqlite3_reset(stmt)
            if got == 0 { throw CLIError("bench: raw scan found no rows at \(at)") }
            at += got
        }
        return monoSeconds() - t0
    }
}

/// A freshly allocated copy of `b` (a plain `Array(b)` would share `b`'s storage).
@inline(never)
func copyBytes(_ b: [UInt8]) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: b.count) { dst, count in
        b.withUnsafeBufferPointer { src in
            if let d = dst.baseAddress, let s = src.baseAddress { d.update(from: s, count: src.count) }
        }
        count = b.count
    }
}
