import ArgumentParser
import CRefLMDB
import Kofka
import KofkaCommandSupport
import KofkaStorageTesting
#if canImport(Glibc)
import Glibc
#endif

/// `kofka-bench storage`: Kofka on LMDB beside SQLite and raw LMDB.
struct BenchStorage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "Measure Kofka on the LMDB plugin beside SQLite and a raw LMDB reference, in one run.",
        discussion: """
            Rows, each on a fresh store: produce (sync sendBatch of 1,000 100-byte records, \
            at-least-once, one partition) on lmdb and sqlite with sync full and normal, and lmdb \
            with sync off (MDB_NOSYNC); consume \
            (pollBatch of 500, read_uncommitted) of what was produced; single-record sync sends \
            (one write transaction each). References in the same run: raw LMDB through its C API \
            writing the same records as the plugin lays them out (same keys, head and \
            partition-state update, 1,000 per write transaction) and reading them back 500 per \
            read transaction, copying each value. Each row alternates Kofka and the reference \
            (--runs rounds after a warm-up) and reports the best of each.
            """)

    @Option(help: "Records per produce/consume row.") var records = 200_000
    @Option(help: "Records per single-record-send row.") var single = 2_000
    @Option(help: "Value bytes per record.") var size = 100
    @Option(help: "Timed runs per row; the best is reported.") var runs = 3
    @Option(help: "Directory for the stores (default: a new one under /tmp, removed afterwards).") var dir: String?
    @Flag(help: "CI smoke run: 20,000 records, 200 single sends, 1 run.") var quick = false

    struct Row {
        var name: String
        var backend: String
        var rate: Double
        var reference: String
        var refRate: Double
    }

    func run() throws {
        guard creflmdb_available() == 1 else { throw CLIError("bench-storage needs LMDB: install liblmdb-dev and rebuild") }
        let n = quick ? 20_000 : records, singles = quick ? 200 : single, rounds = quick ? 1 : max(1, runs)
        var template = Array("\(dir ?? "/tmp")/kofka-bench-storage-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw CLIError("cannot create a directory under \(dir ?? "/tmp")") }
        let work = String(cString: made)
        defer { rmdir(work) }
        var counter = 0
        func fresh(_ suffix: String) -> String { counter += 1; return "\(work)/s\(counter)\(suffix)" }
        let value = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }

        func open(_ backend: String) throws -> (Broker, () -> Void) {
            let (scheme, sync) = (String(backend.split(separator: " ")[0]), String(backend.split(separator: " ")[1]))
            let path = fresh(scheme == "sqlite" ? ".db" : "")
            let key = scheme == "sqlite" ? "sqlite.synchronous" : "lmdb.sync"
            var config = [(key, sync), ("log.retention.check.interval.ms", "0")]
            // Named so that lmdb.sync is accepted on the first open (the broker checks config
            // keys before it loads the plugin a storage string names).
            if scheme == "lmdb" { config.append(("plugin.library.paths", pluginBesideCommand("lmdb"))) }
            let b = try Broker("\(scheme):\(path)", config: config)
            return (b, { b.close(); StorageConformance.removeStore(at: path) })
        }
        func produce(_ b: Broker, _ count: Int, batch: Int) throws -> Double {
            try BenchLoops.sendBatches(b, count: count, batch: batch, value: value)
        }
        func consume(_ b: Broker, _ count: Int) throws -> Double {
            try BenchLoops.pollBatches(b, count: count, poll: 500, who: "bench-storage")
        }
        func raw(_ count: Int, batch: Int, sync: Int32, read: Bool) throws -> Double {
            let path = fresh("-raw")
            defer { StorageConformance.removeStore(at: path) }
            var err = [CChar](repeating: 0, count: 512)
            let w = creflmdb_produce(path, Int64(count), size, Int64(batch), sync, &err, err.count)
            if w < 0 { throw CLIError("raw LMDB: \(String(cString: err))") }
            guard read else { return w }
            var got: Int64 = 0
            let r = creflmdb_consume(path, 500, &got, &err, err.count)
            if r < 0 { throw CLIError("raw LMDB: \(String(cString: err))") }
            if got != count { throw CLIError("raw LMDB read \(got) of \(count) records") }
            return r
        }
        /// Kofka and reference alternately: a warm-up at a tenth, then `rounds` rounds; best rates.
        func paired(_ count: Int, _ body: (Int) throws -> Double, _ ref: ((Int) throws -> Double)?) throws -> (Double, Double) {
            _ = try body(max(1, count / 10))
            _ = try ref?(max(1, count / 10))
            var best = 0.0, refBest = 0.0
            for _ in 0..<rounds {
                best = max(best, Double(count) / max(try body(count), 1e-9))
                if let ref { refBest = max(refBest, Double(count) / max(try ref(count), 1e-9)) }
            }
            return (best, refBest)
        }

        var rows: [Row] = []
        func add(_ r: Row) {
            rows.append(r)
            stderrLine("bench-storage: \(r.name) \(r.backend): \(fmt(r.rate, 0)) rec/s" + (r.refRate > 0 ? " (\(r.reference) \(fmt(r.refRate, 0)) rec/s)" : ""))
        }
        let syncCode: [String: Int32] = ["full": 0, "normal": 1, "off": 2]
        /// Produce rows: `count` records in sends of `batch`, each backend on a fresh store.
        func produceRows(_ name: String, _ count: Int, batch: Int) throws {
            for backend in ["lmdb full", "sqlite full", "lmdb normal", "sqlite normal", "lmdb off"] {
                let isLMDB = backend.hasPrefix("lmdb")
                let sync = syncCode[String(backend.split(separator: " ")[1])] ?? 0
                let (rate, ref) = try paired(count, { k in
                    let (b, done) = try open(backend)
                    defer { done() }
                    return try produce(b, k, batch: batch)
                }, isLMDB ? { k in try raw(k, batch: batch, sync: sync, read: false) } : nil)
                add(Row(name: name, backend: backend, rate: rate, reference: isLMDB ? "raw LMDB" : "", refRate: ref))
            }
        }
        try produceRows("produce batch \(size) B", n, batch: 1000)
        for backend in ["lmdb full", "sqlite full"] {
            let isLMDB = backend.hasPrefix("lmdb")
            let (b, done) = try open(backend)
            defer { done() }
            _ = try produce(b, n, batch: 1000)
            let (rate, ref) = try paired(n, { k in try consume(b, k) }, isLMDB ? { k in try raw(k, batch: 1000, sync: 2, read: true) } : nil)
            add(Row(name: "consume pollBatch \(size) B", backend: backend, rate: rate, reference: isLMDB ? "raw LMDB" : "", refRate: ref))
        }
        try produceRows("produce sync single \(size) B", singles, batch: 1)

        print("| case | backend (sync) | Kofka rec/s | raw LMDB rec/s | Kofka / raw |")
        print("|---|---|---:|---:|---:|")
        for r in rows {
            print("| \(r.name) | \(r.backend) | \(fmt(r.rate, 0)) | \(r.refRate > 0 ? fmt(r.refRate, 0) : "") | \(r.refRate > 0 ? fmt(r.rate / r.refRate, 2) : "") |")
        }
        print("")
        print("\(n) records per produce/consume row (\(size)-byte values, one partition), \(singles) single sends, best of \(rounds) run(s).")
    }
}

/// The plugin library `libkofka_SCHEME.so` beside the benchmark (where `swift build` puts it).
func pluginBesideCommand(_ scheme: String) -> String { besideCommand("libkofka_\(scheme).so") }
