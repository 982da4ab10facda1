import ArgumentParser
import CRefPG
import Kofka
import KofkaCommandSupport
import KofkaLab
#if canImport(Glibc)
import Glibc
#endif

/// `kofka-bench postgres`: Kofka on the PostgreSQL plugin beside raw libpq, in one run.
struct BenchPostgres: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "postgres",
        abstract: "Measure Kofka on the PostgreSQL plugin beside raw libpq writing and reading the same records, in one run.",
        discussion: """
            Rows, each Kofka run on a fresh schema of the server at --url (or KOFKA_PG_URL), for \
            each --commit setting of synchronous_commit (given to Kofka and to the references \
            alike, as ?options=-csynchronous_commit%3DVALUE in the URI): produce (sync sendBatch \
            of --batch 100-byte records, at-least-once, one partition); consume (pollBatch of \
            --poll, read_uncommitted) of what was produced; single-record sync sends. Three raw \
            references in the same run (Sources/CRefPG, C on libpq): "rows" — one row per record, \
            a multi-row INSERT per batch (one statement, one transaction) and a range query per \
            poll; "plugin shape" — the rows the plugin writes, one batches row (records packed as \
            the plugin packs them) and the logs upsert in the plugin's own statement per batch, \
            read back with the plugin's read query; "plugin txn" — the plugin shape inside the \
            plugin's whole transaction as it pipelines it (BEGIN, lock_timeout, advisory lock, \
            log state; then append, pg_notify, COMMIT; reads: BEGIN REPEATABLE READ, log state; \
            then the read), which leaves out only Kofka's own work. Each row alternates Kofka and the references \
            (a warm-up of each at a tenth, then --runs rounds) and reports the best of each. The \
            schemas are dropped afterwards.
            Example:
              eval "$(bash scripts/pg.sh start)"; kofka-bench postgres --quick; bash scripts/pg.sh stop
            """)

    @Option(help: "The server: postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME (default: KOFKA_PG_URL).") var url: String?
    @Option(help: "Records per produce/consume row.") var records = 200_000
    @Option(help: "Records per single-record-send row.") var single = 2_000
    @Option(help: "Value bytes per record.") var size = 100
    @Option(help: "Records per sendBatch (and per raw INSERT).") var batch = 1_000
    @Option(help: "Records per pollBatch (and per raw range query).") var poll = 500
    @Option(help: "Timed runs per row; the best is reported.") var runs = 3
    @Option(help: "synchronous_commit settings to measure, comma-separated (on, remote_write, local, off).") var commit = "on,off"
    @Flag(help: "CI smoke run: 10,000 records, 100 single sends, 1 run.") var quick = false

    struct Row {
        var name: String        // the case
        var commit: String      // synchronous_commit
        var kofka: Double       // Kofka rec/s
        var rows: Double        // raw one-row-per-record rec/s
        var shape: Double       // raw plugin-shape rec/s
        var txn: Double         // raw plugin-transaction rec/s
    }

    func run() throws {
        guard let server = url ?? LabPostgres.testURL else {
            throw CLIError("bench-postgres needs a server: --url postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME or KOFKA_PG_URL (bash scripts/pg.sh start)")
        }
        guard LabPostgres.isPostgres(server) else { throw CLIError("invalid --url '\(LabPostgres.redacted(server))': expected postgresql://… or postgres://…") }
        guard !server.contains("options=") else {
            throw CLIError("--url must not carry options=: bench-postgres sets search_path and synchronous_commit through it")
        }
        let settings = commit.split(separator: ",").map { String($0).filter { $0 != " " } }
        for s in settings where !["on", "remote_write", "local", "off", "remote_apply"].contains(s) {
            throw CLIError("invalid --commit value '\(s)': expected on, remote_write, remote_apply, local or off")
        }
        guard !settings.isEmpty, size >= 0, batch >= 1, batch <= 20_000, poll >= 1 else { throw CLIError("bench-postgres: invalid sizes") }
        let n = quick ? 10_000 : records, singles = quick ? 100 : single, rounds = quick ? 1 : max(1, runs)
        let rowsLayout = Int32(CREFPG_ROWS), shapeLayout = Int32(CREFPG_BATCHES), txnLayout = Int32(CREFPG_PLUGIN_TXN)
        let value = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }

        // Every schema made is dropped, also when a row fails.
        var made: [String] = []
        defer { for s in made { LabPostgres.dropSchema(server, s) } }
        func fresh(_ tag: String, _ sync: String) -> (url: String, schema: String) {
            let schema = LabPostgres.uniqueSchema("bench_\(tag)")
            made.append(schema)
            let u = server + (server.contains("?") ? "&" : "?") + "options=-csearch_path%3D\(schema)%20-csynchronous_commit%3D\(sync)"
            return (u, schema)
        }
        func drop(_ schema: String) {
            LabPostgres.dropSchema(server, schema)
            made.removeAll { $0 == schema }
        }

        let version = (try? LabPostgres.query(server, "SHOW server_version").first?.first) ?? "?"
        let fsync = (try? LabPostgres.query(server, "SHOW fsync").first?.first) ?? "?"
        for s in settings {
            // The setting must reach the sessions, or the rows would measure something else.
            let (u, schema) = fresh("check", s)
            let seen = try LabPostgres.query(u, "SHOW synchronous_commit").first?.first ?? ""
            drop(schema)
            if seen != s { throw CLIError("synchronous_commit=\(s) in the URI gave a session with synchronous_commit=\(seen)") }
        }

        func open(_ u: String) throws -> Broker {
            try Broker(u, config: [("log.retention.check.interval.ms", "0")])
        }
        func produce(_ b: Broker, _ count: Int, batch: Int) throws -> Double {
            try BenchLoops.sendBatches(b, count: count, batch: batch, value: value)
        }
        func consume(_ b: Broker, _ count: Int) throws -> Double {
            try BenchLoops.pollBatches(b, count: count, poll: poll, config: [("isolation.level", "read_uncommitted")],
                                       valueBytes: count * size, who: "bench-postgres")
        }
        /// A Kofka produce run on a fresh schema.
        func kofkaProduce(_ count: Int, batch: Int, _ sync: String) throws -> Double {
            let (u, schema) = fresh("k", sync)
            defer { drop(schema) }
            let b = try open(u)
            defer { b.close() }
            return try produce(b, count, batch: batch)
        }
        /// A raw produce run (CREFPG_ROWS or CREFPG_BATCHES) on a fresh schema, kept when `keep`.
        func rawProduce(_ count: Int, batch: Int, _ sync: String, layout: Int32, keep: Bool = false) throws -> (Double, String, String) {
            let (u, schema) = fresh(layout == rowsLayout ? "rows" : layout == shapeLayout ? "shape" : "txn", sync)
            var err = [CChar](repeating: 0, count: 512)
            let s = crefpg_produce(u, schema, layout, Int64(count), size, Int64(batch), &err, err.count)
            if !keep { drop(schema) }
            if s < 0 { throw CLIError("raw libpq: \(String(cString: err))") }
            return (s, u, schema)
        }
        func rawConsume(_ u: String, _ schema: String, _ count: Int, layout: Int32) throws -> Double {
            var err = [CChar](repeating: 0, count: 512)
            var got: Int64 = 0
            let s = crefpg_consume(u, schema, layout, Int64(count), Int64(poll), &got, &err, err.count)
            if s < 0 { throw CLIError("raw libpq: \(String(cString: err))") }
            if got != count { throw CLIError("raw libpq read \(got) of \(count) records") }
            return s
        }
        /// Kofka and the two references alternately: a warm-up of each at a tenth, then
        /// `rounds` rounds; the best rate of each.
        func paired(_ count: Int, _ body: (Int) throws -> Double, _ refs: [(Int) throws -> Double]) throws -> (Double, [Double]) {
            _ = try body(max(1, count / 10))
            for r in refs { _ = try r(max(1, count / 10)) }
            var best = 0.0
            var refBest = [Double](repeating: 0, count: refs.count)
            for _ in 0..<rounds {
                best = max(best, Double(count) / max(try body(count), 1e-9))
                for (i, r) in refs.enumerated() { refBest[i] = max(refBest[i], Double(count) / max(try r(count), 1e-9)) }
            }
            return (best, refBest)
        }

        var rows: [Row] = []
        func add(_ r: Row) {
            rows.append(r)
            stderrLine("bench-postgres: \(r.name) synchronous_commit=\(r.commit): Kofka \(fmt(r.kofka, 0)) rec/s, "
                + "raw rows \(fmt(r.rows, 0)) rec/s, raw plugin shape \(fmt(r.shape, 0)) rec/s, raw plugin txn \(fmt(r.txn, 0)) rec/s")
            fflush(stdout)
        }
        for sync in settings {
            let (k, r) = try paired(n, { c in try kofkaProduce(c, batch: batch, sync) }, [
                { c in try rawProduce(c, batch: batch, sync, layout: rowsLayout).0 },
                { c in try rawProduce(c, batch: batch, sync, layout: shapeLayout).0 },
                { c in try rawProduce(c, batch: batch, sync, layout: txnLayout).0 },
            ])
            add(Row(name: "produce batch \(batch) × \(size) B", commit: sync, kofka: k, rows: r[0], shape: r[1], txn: r[2]))
        }
        for sync in settings {
            let (u, schema) = fresh("kc", sync)
            let b = try open(u)
            defer { b.close(); drop(schema) }
            _ = try produce(b, n, batch: batch)
            let (_, ru, rs) = try rawProduce(n, batch: batch, sync, layout: rowsLayout, keep: true)
            let (_, su, ss) = try rawProduce(n, batch: batch, sync, layout: shapeLayout, keep: true)
            defer { drop(rs); drop(ss) }
            let (k, r) = try paired(n, { c in try consume(b, c) }, [
                { c in try rawConsume(ru, rs, c, layout: rowsLayout) },
                { c in try rawConsume(su, ss, c, layout: shapeLayout) },
                { c in try rawConsume(su, ss, c, layout: txnLayout) },
            ])
            add(Row(name: "consume pollBatch \(poll) × \(size) B", commit: sync, kofka: k, rows: r[0], shape: r[1], txn: r[2]))
        }
        for sync in settings {
            let (k, r) = try paired(singles, { c in try kofkaProduce(c, batch: 1, sync) }, [
                { c in try rawProduce(c, batch: 1, sync, layout: rowsLayout).0 },
                { c in try rawProduce(c, batch: 1, sync, layout: shapeLayout).0 },
                { c in try rawProduce(c, batch: 1, sync, layout: txnLayout).0 },
            ])
            add(Row(name: "produce sync single \(size) B", commit: sync, kofka: k, rows: r[0], shape: r[1], txn: r[2]))
        }

        func ratio(_ a: Double, _ b: Double) -> String { fmt(a / max(b, 1e-9), 2) }
        print("| case | synchronous_commit | Kofka rec/s | raw rows rec/s | Kofka / rows | raw plugin shape rec/s | Kofka / shape | raw plugin txn rec/s | Kofka / txn |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows {
            print("| \(r.name) | \(r.commit) | \(fmt(r.kofka, 0)) | \(fmt(r.rows, 0)) | \(ratio(r.kofka, r.rows)) | "
                + "\(fmt(r.shape, 0)) | \(ratio(r.kofka, r.shape)) | \(fmt(r.txn, 0)) | \(ratio(r.kofka, r.txn)) |")
        }
        print("")
        print("PostgreSQL \(version) at \(LabPostgres.redacted(server)), fsync=\(fsync); \(n) records per produce/consume row "
            + "(\(size)-byte values, one partition), \(singles) single sends, best of \(rounds) run(s).")
        // The targets of issue 15: batched produce ≥ 0.8× and consume ≥ 0.5× raw libpq.
        for r in rows where !r.name.hasPrefix("produce sync single") {
            let target = r.name.hasPrefix("consume") ? 0.5 : 0.8
            let lo = min(r.kofka / max(r.rows, 1e-9), r.kofka / max(r.shape, 1e-9))
            let hi = max(r.kofka / max(r.rows, 1e-9), r.kofka / max(r.shape, 1e-9))
            let verdict = lo >= target ? "met against both references" : hi >= target ? "met against one reference" : "missed"
            print("target \(fmt(target, 1))× for \(r.name), synchronous_commit=\(r.commit): "
                + "\(ratio(r.kofka, r.rows))× rows, \(ratio(r.kofka, r.shape))× plugin shape: \(verdict) "
                + "(\(ratio(r.kofka, r.txn))× plugin txn)")
        }
    }
}
