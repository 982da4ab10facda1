import Kofka
import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Records and helpers the checks share.
enum Fixtures {
    static func rec(_ ts: Int64, _ key: [UInt8]?, _ value: [UInt8]?, _ headers: [UInt8]? = nil) -> RecordData {
        RecordData(timestampMs: ts, key: key, value: value, headers: headers)
    }

    /// `n` records with values `v<tag>-<i>`, no key, no headers.
    static func batch(_ n: Int, tag: Int = 0) -> [RecordData] {
        (0..<n).map { i in rec(Int64(i), nil, Array("v\(tag)-\(i)".utf8)) }
    }

    /// Records `v0`…`v(n-1)` of `size` bytes each (value only).
    static func sized(_ n: Int, size: Int, from: Int = 0) -> [RecordData] {
        (from..<from + n).map { i in rec(Int64(i), nil, Array(repeating: UInt8(truncatingIfNeeded: i), count: size)) }
    }

    /// The offsets partition `pnum` holds.
    static func heldOffsets(_ s: any StorageBackend, _ pnum: Int64) throws -> [Int64] {
        try s.read { try $0.readRecords(pnum, from: 0, below: 1 << 40, maxCount: 1 << 20).map(\.offset) }
    }
}

/// Collects results from several threads.
final class ThreadResults: @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var _bases: [Int64] = []
    private var _errors: [String] = []
    init() { pthread_mutex_init(&lock, nil) }
    deinit { pthread_mutex_destroy(&lock) }
    private func with<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return body()
    }
    func add(_ b: Int64) { with { _bases.append(b) } }
    func fail(_ e: String) { with { _errors.append(e) } }
    var bases: [Int64] { with { _bases } }
    var errors: [String] { with { _errors } }
}


extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}
