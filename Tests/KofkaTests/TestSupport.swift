import Testing
import Dispatch
#if canImport(Glibc)
import Glibc
#endif
@testable import Kofka
import KofkaLab

/// The backends every behaviour test runs on (PostgreSQL too when KOFKA_PG_URL is set).
let backends = ["memory", "sqlite"] + postgresKinds

/// A broker on a fresh backend of `kind`; `path` is the SQLite file ("" for memory); `storage`
/// the storage string (for PostgreSQL: a fresh schema, dropped at the end).
final class BrokerFixture: @unchecked Sendable {
    let kind: String
    let path: String
    let storage: String
    private var schema = ""
    let config: [(String, String)]
    /// The clock every handle of this fixture reads.
    let clock: any TimeSource
    private(set) var broker: Broker
    private var extra: [Broker] = []

    /// `clock`: a `SteppedClock` lets a test make a stall past a timeout happen at once.
    init(_ kind: String, config: [(String, String)] = [], clock: any TimeSource = SystemClock()) throws {
        self.kind = kind
        self.config = config
        self.clock = clock
        switch kind {
        case "memory":
            path = ""
            storage = "memory:"
        case "postgresql":
            path = ""
            guard let url = LabPostgres.testURL else { throw KofkaError(.invalidArg, "KOFKA_PG_URL is not set") }
            (storage, schema) = LabPostgres.freshStore(url, tag: "fixture")
        default:
            path = tempPath()
            storage = "sqlite:" + path
        }
        broker = try Broker(storage, config: try BrokerConfig(config), clock: clock)
    }

    /// Closes the broker and opens it again on the same store (SQLite, PostgreSQL).
    func reopen() throws -> Broker {
        precondition(kind != "memory")
        broker.close()
        broker = try Broker(storage, config: try BrokerConfig(config), clock: clock)
        return broker
    }

    /// A second, independent broker handle on the same store (as another process would open).
    func secondHandle() throws -> Broker {
        precondition(kind != "memory")
        let b = try Broker(storage, config: try BrokerConfig(config), clock: clock)
        extra.append(b)
        return b
    }

    deinit {
        for b in extra { b.close() }
        broker.close()
        if !path.isEmpty { removeDatabase(path) }
        if !schema.isEmpty, let url = LabPostgres.testURL { LabPostgres.dropSchema(url, schema) }
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
func string(_ b: [UInt8]?) -> String { b.map { String(decoding: $0, as: UTF8.self) } ?? "<nil>" }

/// The value "v<i>" as an Int, or nil.
func intValue(_ m: Message) -> Int? {
    let s = string(m.value)
    guard s.hasPrefix("v") else { return nil }
    return Int(s.dropFirst())
}

func pcfg(_ pairs: [(String, String)]) throws -> ProducerConfig { try ProducerConfig(pairs) }
func ccfg(_ pairs: [(String, String)]) throws -> ConsumerConfig { try ConsumerConfig(pairs) }

/// The error code `body` throws, or nil when it does not throw (or throws something else).
func errorCode(_ body: () throws -> Void) -> ErrorCode? {
    do { try body() } catch let e as KofkaError { return e.code } catch { return nil }
    return nil
}

/// Everything a fresh manually-assigned consumer can read from every partition of `topic`
/// with `isolation`, polling until a poll comes back empty.
func readAll(_ broker: Broker, _ topic: String, isolation: IsolationLevel = .readUncommitted) throws -> [Message] {
    var cfg = ConsumerConfig()
    cfg.isolationLevel = isolation
    let c = try broker.consumer(cfg)
    defer { c.destroy() }
    try c.assign(topic, partitions: Array(0..<(try broker.partitions(of: topic))))
    var out: [Message] = []
    while true {
        let batch = try c.pollBatch(max: 10_000, timeout: .milliseconds(30))
        if batch.isEmpty { return out }
        out += batch
    }
}

/// Counts of how `values` compare to the ids `0..<sent`.
struct Tally: CustomStringConvertible {
    var lost = 0
    var duplicated = 0
    var unexpected = 0
    init(sent: Int, values: [Int]) {
        var seen = [Int](repeating: 0, count: sent)
        for v in values {
            if v >= 0 && v < sent { seen[v] += 1 } else { unexpected += 1 }
        }
        lost = seen.filter { $0 == 0 }.count
        duplicated = seen.reduce(0) { $0 + Swift.max(0, $1 - 1) }
    }
    var description: String { "lost=\(lost) duplicated=\(duplicated) unexpected=\(unexpected)" }
}

/// Pairs of positions where a later record carries a smaller value (order violations).
func reorderings(_ values: [Int]) -> Int {
    zip(values, values.dropFirst()).filter { $0.0 > $0.1 }.count
}

/// Runs `body(i)` on `n` real threads at once and waits for all of them.
func onThreads(_ n: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let done = DispatchSemaphore(value: 0)
    for i in 0..<n {
        startThread {
            body(i)
            done.signal()
        }
    }
    for _ in 0..<n { done.wait() }
}

/// A thread-safe bag of values and failures, for threads to report into.
final class Collector<T>: @unchecked Sendable {
    private let lock = NSLockish()
    private var items: [T] = []
    private var errs: [String] = []
    func add(_ t: T) { lock.with { items.append(t) } }
    func fail(_ e: String) { lock.with { errs.append(e) } }
    var values: [T] { lock.with { items } }
    var errors: [String] { lock.with { errs } }
}

/// Monotonic milliseconds.
func nowMonoMs() -> Int { Int(monoNs() / 1_000_000) }

extension Result where Failure == KofkaError {
    /// The error's code, nil for a success.
    var failureCode: ErrorCode? {
        if case .failure(let e) = self { return e.code }
        return nil
    }
}
