import Testing
@testable import Kofka
import KofkaLab
import KofkaStorageTesting

/// The storage conformance suite (`KofkaStorageTesting`) on Kofka's own backends: every check
/// on memory and SQLite (and PostgreSQL when `KOFKA_PG_URL` names a server), each pair its own test case, so a failure names its check and backend.
/// Checks that reopen a store do not run on memory (it has nothing to reopen).
@Suite("StorageConformance")
struct StorageConformanceTests {
    static let backends = ["memory", "sqlite"] + postgresKinds

    static let cases: [(String, String)] = StorageConformance.checks.flatMap { check in
        backends.filter { !(check.requirement == .reopen && $0 == "memory") }.map { (check.name, $0) }
    }

    static func factory(_ backend: String) -> StorageConformance.Factory {
        switch backend {
        case "memory":
            return StorageConformance.Factory(name: "memory") { MemoryStorage() }
        case "postgresql":
            // A location is a fresh schema's storage string; removing it drops the schema.
            return StorageConformance.Factory(name: "postgresql", location: {
                guard let url = LabPostgres.testURL else { throw KofkaError(.invalidArg, "KOFKA_PG_URL is not set") }
                return LabPostgres.freshStore(url, tag: "conf").storage
            }, open: { storage in
                try PluginLoader.factory(scheme: "postgresql", config: [])(String(storage.dropFirst("postgresql:".count)), [])
            }, remove: { storage in
                guard let url = LabPostgres.testURL, let schema = LabPostgres.schema(of: storage) else { return }
                LabPostgres.dropSchema(url, schema)
            })
        default:
            return StorageConformance.Factory(name: "sqlite", location: { tempPath() },
                                              open: { try makeSQLite($0) }, remove: { removeDatabase($0) })
        }
    }

    @Test(arguments: cases)
    func conformance(check name: String, backend: String) throws {
        let check = try #require(StorageConformance.check(named: name))
        recordConformance(check, factory: Self.factory(backend))
    }

    @Test func everyCheckHasAUniqueNameAndASummary() {
        let names = StorageConformance.checks.map(\.name)
        #expect(Set(names).count == names.count)
        #expect(StorageConformance.checks.allSatisfy { !$0.summary.isEmpty })
        #expect(names.count >= 16)
    }

    /// The suite itself fails a backend that breaks a property: a store that loses the empty
    /// key, and one whose writes are not undone, each fail the check that covers it.
    @Test func theSuiteCatchesABrokenBackend() throws {
        let kv = try #require(StorageConformance.check(named: "kvPutGetDeleteAndScanInByteOrderOverHalfOpenRanges"))
        let r = StorageConformance.Reporter()
        kv.run(StorageConformance.Factory(name: "broken") { DroppingEmptyKey() }, r)
        #expect(!r.failures.isEmpty)
        #expect(r.failures.contains { $0.message.contains("the empty key") })
        #expect(r.failures.allSatisfy { $0.fileID.hasSuffix("Checks+KeyValue.swift") && $0.line > 0 })
    }
}

/// Runs `check` and records each failure as an issue at the line of the check that failed.
func recordConformance(_ check: StorageConformance.Check, factory: StorageConformance.Factory) {
    let reporter = StorageConformance.Reporter()
    check.run(factory, reporter)
    for f in reporter.failures {
        Issue.record(Comment(rawValue: "\(check.name) on \(factory.name): \(f.message)"),
                     sourceLocation: SourceLocation(fileID: f.fileID, filePath: f.filePath, line: f.line, column: f.column))
    }
}

/// A memory store that forgets puts under the empty key (a deliberately broken backend).
final class DroppingEmptyKey: StorageBackend, @unchecked Sendable {
    let inner = MemoryStorage()
    struct Writer: StorageWriter {
        let w: any StorageWriter
        func get(_ key: String) throws -> [UInt8]? { try w.get(key) }
        func scan(from lower: String, to upper: String) throws -> [(key: String, value: [UInt8])] { try w.scan(from: lower, to: upper) }
        func highWatermark(_ pnum: Int64) throws -> Int64 { try w.highWatermark(pnum) }
        func logStartOffset(_ pnum: Int64) throws -> Int64 { try w.logStartOffset(pnum) }
        func logBytes(_ pnum: Int64) throws -> Int64 { try w.logBytes(pnum) }
        func readRecords(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int) throws -> [StoredRecord] {
            try w.readRecords(pnum, from: from, below: below, maxCount: maxCount)
        }
        func forEachRecord(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int, _ body: (RecordView) throws -> Void) throws -> Int {
            try w.forEachRecord(pnum, from: from, below: below, maxCount: maxCount, body)
        }
        func put(_ key: String, _ value: [UInt8]) throws { if !key.isEmpty { try w.put(key, value) } }
        func delete(_ key: String) throws { try w.delete(key) }
        func append(_ pnum: Int64, _ batch: RecordBatch, txn: Int64) throws -> Int64 { try w.append(pnum, batch, txn: txn) }
        func truncateLog(_ pnum: Int64, before offset: Int64) throws -> Int64 { try w.truncateLog(pnum, before: offset) }
        func removeRecords(_ pnum: Int64, at offsets: [Int64]) throws { try w.removeRecords(pnum, at: offsets) }
    }
    func write<T>(_ body: (any StorageWriter) throws -> T) throws -> T { try inner.write { try body(Writer(w: $0)) } }
    func read<T>(_ body: (any StorageReader) throws -> T) throws -> T { try inner.read(body) }
    func changeToken() -> UInt64 { inner.changeToken() }
    func waitForChange(since token: UInt64, timeoutNs: UInt64) { inner.waitForChange(since: token, timeoutNs: timeoutNs) }
    func wakeAll() { inner.wakeAll() }
    func close() { inner.close() }
}
