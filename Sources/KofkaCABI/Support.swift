import CKofka
import Kofka
#if canImport(Glibc)
import Glibc
#endif

/// Static C strings for names and descriptions, made once and never freed.
enum StaticStrings {
    nonisolated(unsafe) static let version: UnsafePointer<CChar> = make(Kofka.version)
    nonisolated(unsafe) static let names: [UnsafePointer<CChar>] = ErrorCode.allCases.map { make($0.name) }
    nonisolated(unsafe) static let descs: [UnsafePointer<CChar>] = ErrorCode.allCases.map { make($0.description) }
    nonisolated(unsafe) static let unknownName: UnsafePointer<CChar> = make("KOFKA_ERR_UNKNOWN")
    nonisolated(unsafe) static let unknownDesc: UnsafePointer<CChar> = make("Unknown error code.")

    static func make(_ s: String) -> UnsafePointer<CChar> { UnsafePointer(strdup(s)!) }

    static func name(_ code: Int32) -> UnsafePointer<CChar> {
        guard let c = ErrorCode(rawValue: code), let i = ErrorCode.allCases.firstIndex(of: c) else { return unknownName }
        return names[i]
    }

    static func desc(_ code: Int32) -> UnsafePointer<CChar> {
        guard let c = ErrorCode(rawValue: code), let i = ErrorCode.allCases.firstIndex(of: c) else { return unknownDesc }
        return descs[i]
    }
}

// MARK: - Calling into the core

/// Runs `body`, maps a thrown `KofkaError` to its code and records its message for
/// `kofka_last_error()`; clears the message on success.
@inline(__always)
func run(_ body: () throws -> Void) -> kofka_err {
    do {
        try body()
        LastError.clear()
        return KOFKA_OK
    } catch let e as KofkaError {
        LastError.set(e.message)
        return kofka_err(rawValue: UInt32(bitPattern: e.code.rawValue))
    } catch {
        LastError.set("unexpected error: \(error)")
        return KOFKA_ERR_STORAGE
    }
}

func invalidArg(_ what: String) -> KofkaError { KofkaError(.invalidArg, what) }

/// A required non-NULL pointer argument.
@inline(__always)
func need<T>(_ p: T?, _ name: String, _ fn: String) throws -> T {
    guard let p else { throw invalidArg("\(fn): \(name) is NULL") }
    return p
}

/// A NUL-terminated string argument.
func string(_ p: UnsafePointer<CChar>?, _ name: String, _ fn: String) throws -> String {
    String(cString: try need(p, name, fn))
}

/// A NULL-terminated key/value config array → pairs; an odd count is `.invalidConfig`.
func configPairs(_ config: UnsafePointer<UnsafePointer<CChar>?>?) throws -> [(String, String)] {
    guard let config else { return [] }
    var out: [(String, String)] = []
    var i = 0
    while let k = config[i] {
        guard let v = config[i + 1] else {
            throw KofkaError(.invalidConfig, "config array has an odd number of entries: key '\(String(cString: k))' has no value")
        }
        out.append((String(cString: k), String(cString: v)))
        i += 2
        if i > 100_000 { throw KofkaError(.invalidConfig, "config array is not NULL-terminated (more than 50000 pairs)") }
    }
    return out
}

// MARK: - Lengths and counts from C

// Swift imports `size_t` as `Int`, so a length above INT64_MAX arrives negative. Every length or
// count from C is read as the unsigned value the caller passed, checked against its limit, and
// only then used for arithmetic or a read.

/// The unsigned value of a C `size_t` that Swift imported as `Int`.
@inline(__always)
func unsigned(_ n: Int) -> UInt { UInt(bitPattern: n) }

/// A byte length from C: at most `maxBytes` (message.max.bytes), else `.msgTooLarge` naming it.
@inline(__always)
func byteLength(_ n: Int, _ name: @autoclosure () -> String, maxBytes: Int) throws -> Int {
    guard unsigned(n) <= UInt(maxBytes) else {
        throw KofkaError(.msgTooLarge, "\(name()) \(unsigned(n)) exceeds message.max.bytes (\(maxBytes))")
    }
    return n
}

/// A count from C: at most `limit`, else `.invalidArg` naming it.
@inline(__always)
func checkedCount(_ n: Int, _ name: @autoclosure () -> String, limit: Int) throws -> Int {
    guard unsigned(n) <= UInt(limit) else {
        throw invalidArg("\(name()) is \(unsigned(n)); at most \(limit) is accepted")
    }
    return n
}

/// Bytes from a (pointer, length) pair whose length was checked: NULL with length 0 is nil;
/// NULL with a length is an error.
func bytes(_ p: UnsafeRawPointer?, _ len: Int, _ name: String) throws -> [UInt8]? {
    guard len >= 0 else { throw invalidArg("\(name)_len \(unsigned(len)) is too large") }
    guard let p else {
        if len != 0 { throw invalidArg("\(name) is NULL but \(name)_len is \(len)") }
        return nil
    }
    return Array(UnsafeRawBufferPointer(start: p, count: len))
}

/// `bytes` without the copy: a view of the caller's bytes, valid while they are.
@inline(__always)
func view(_ p: UnsafeRawPointer?, _ len: Int, _ name: String) throws -> UnsafeRawBufferPointer? {
    guard len >= 0 else { throw invalidArg("\(name)_len \(unsigned(len)) is too large") }
    guard let p else {
        if len != 0 { throw invalidArg("\(name) is NULL but \(name)_len is \(len)") }
        return nil
    }
    return UnsafeRawBufferPointer(start: p, count: len)
}

/// A record's partition: a partition number or KOFKA_PARTITION_ANY.
@inline(__always)
func checkPartition(_ p: Int32) throws {
    guard p >= -1 else {
        throw invalidArg("invalid partition \(p): expected a partition number or KOFKA_PARTITION_ANY (-1)")
    }
}

/// A record's key and value lengths, each and together at most `maxBytes`.
@inline(__always)
func keyValueLengths(_ r: kofka_record, maxBytes: Int) throws -> (key: Int, value: Int) {
    let k = try byteLength(r.key_len, "key_len", maxBytes: maxBytes)
    let v = try byteLength(r.value_len, "value_len", maxBytes: maxBytes)
    if k + v > maxBytes {   // each is at most 1 GiB: no overflow
        throw KofkaError(.msgTooLarge, "record of key_len \(k) + value_len \(v) bytes exceeds message.max.bytes (\(maxBytes))")
    }
    return (k, v)
}

/// Converts a C record to a core `Record`, checking every pointer and length first. Lengths
/// larger than `maxBytes` fail before any byte is read.
func convertRecord(_ r: kofka_record, maxBytes: Int) throws -> Record {
    try checkPartition(r.partition)
    let (keyLen, valueLen) = try keyValueLengths(r, maxBytes: maxBytes)
    var total = keyLen + valueLen
    var headers: [Header] = []
    if r.header_count != 0 {
        // Every header takes at least one byte, so more headers than message.max.bytes never fit.
        let n = try byteLength(r.header_count, "header_count", maxBytes: maxBytes)
        guard let hs = r.headers else { throw invalidArg("headers is NULL but header_count is \(n)") }
        headers.reserveCapacity(Swift.min(n, 1024))
        for i in 0..<n {
            let h = hs[i]
            guard let name = h.name else { throw invalidArg("header \(i) has a NULL name") }
            let len = try byteLength(h.value_len, "header \(i) value_len", maxBytes: maxBytes)
            total += len   // both at most 1 GiB: no overflow
            if total > maxBytes {
                throw KofkaError(.msgTooLarge, "record with header \(i) value_len \(len) exceeds message.max.bytes (\(maxBytes))")
            }
            headers.append(Header(String(cString: name), try bytes(h.value, len, "header '\(String(cString: name))' value")))
        }
    }
    return Record(partition: r.partition == -1 ? nil : r.partition,
                  key: try bytes(r.key, keyLen, "key"),
                  value: try bytes(r.value, valueLen, "value"),
                  headers: headers, timestampMs: r.timestamp_ms)
}

/// Appends a C record to a batch (one copy of its bytes), checking every pointer and length
/// first; lengths larger than `maxBytes` fail before any byte is read.
func appendRecord(_ r: kofka_record, to batch: inout RecordBatch, maxBytes: Int) throws {
    try checkPartition(r.partition)
    let (keyLen, valueLen) = try keyValueLengths(r, maxBytes: maxBytes)
    if r.key == nil && keyLen != 0 { throw invalidArg("key is NULL but key_len is \(keyLen)") }
    if r.value == nil && valueLen != 0 { throw invalidArg("value is NULL but value_len is \(valueLen)") }
    var headers: [UInt8]? = nil
    if r.header_count != 0 {
        // Headers are rare: convert through the general path, which checks them.
        headers = HeaderCodec.encode(try convertRecord(r, maxBytes: maxBytes).headers)
    }
    batch.append(timestampMs: r.timestamp_ms,
                 key: r.key.map { UnsafeRawBufferPointer(start: $0, count: keyLen) },
                 value: r.value.map { UnsafeRawBufferPointer(start: $0, count: valueLen) },
                 headers: headers)
}

/// A timeout in milliseconds (negative = forever) as a `Duration?`.
func duration(_ ms: Int32) -> Duration? { ms < 0 ? nil : .milliseconds(Int64(ms)) }

/// The error code of a result, as the C enum.
func code(_ e: KofkaError) -> kofka_err { kofka_err(rawValue: UInt32(bitPattern: e.code.rawValue)) }

// MARK: - Messages

/// Packs a record into one malloc'd `kofka_message` block: the struct, the header array, then
/// the bytes, copied once from storage. `kofka_message_free` frees the block.
/// Copies `b` (and a NUL after it when `nul`) to `cursor`, moves the cursor past, and returns
/// where the copy starts.
@inline(__always)
private func putBytes(_ b: UnsafeRawBufferPointer, nul: Bool, at cursor: inout UnsafeMutableRawPointer) -> UnsafeRawPointer {
    let start = cursor
    if let base = b.baseAddress, b.count > 0 { cursor.copyMemory(from: base, byteCount: b.count) }
    cursor += b.count
    if nul { cursor.storeBytes(of: 0, as: UInt8.self); cursor += 1 }
    return UnsafeRawPointer(start)
}

func makeMessage(_ topic: String, _ partition: Int32, _ r: RecordView) throws -> UnsafeMutablePointer<kofka_message> {
    let headers = try r.headers.map { try HeaderCodec.decode(Array($0)) } ?? []
    let names = headers.map { Array($0.name.utf8) }
    var topic = topic   // its UTF-8 read in place (`withUTF8`), not copied into an array per message
    var size = MemoryLayout<kofka_message>.stride + MemoryLayout<kofka_header>.stride * headers.count
    size += topic.utf8.count + 1 + (r.key?.count ?? 0) + (r.value?.count ?? 0)
    for (i, h) in headers.enumerated() { size += names[i].count + 1 + (h.value?.count ?? 0) }
    guard let raw = malloc(size) else {
        throw KofkaError(.storage, "out of memory copying a message of \(size) bytes")
    }
    let msg = raw.bindMemory(to: kofka_message.self, capacity: 1)
    let hdrs = (raw + MemoryLayout<kofka_message>.stride).bindMemory(to: kofka_header.self, capacity: max(1, headers.count))
    // The bytes go after the headers array, one after another: each `put` returns where its
    // bytes start and the cursor moves past them. A static function over an inout cursor, not a
    // nested one capturing it (a captured variable pays the runtime's exclusivity checks).
    var cursor = UnsafeMutableRawPointer(hdrs + headers.count)
    let topicPtr = topic.withUTF8 { putBytes(UnsafeRawBufferPointer($0), nul: true, at: &cursor) }.assumingMemoryBound(to: CChar.self)
    let keyPtr = r.key.map { putBytes($0, nul: false, at: &cursor) }
    let valuePtr = r.value.map { putBytes($0, nul: false, at: &cursor) }
    for (i, h) in headers.enumerated() {
        let n = names[i].withUnsafeBytes { putBytes($0, nul: true, at: &cursor) }.assumingMemoryBound(to: CChar.self)
        let v = h.value.map { a in a.withUnsafeBytes { putBytes($0, nul: false, at: &cursor) } }
        (hdrs + i).initialize(to: kofka_header(name: n, value: v, value_len: h.value?.count ?? 0))
    }
    msg.initialize(to: kofka_message(topic: topicPtr, partition: partition, offset: r.offset, timestamp_ms: r.timestampMs,
                                     key: keyPtr, key_len: r.key?.count ?? 0, value: valuePtr, value_len: r.value?.count ?? 0,
                                     headers: headers.isEmpty ? nil : UnsafePointer(hdrs), header_count: headers.count))
    return msg
}

/// The messages handed to C and not yet freed, so that `kofka_message_free` of a pointer that
/// is not one of them (freed already, or never returned by a poll) is refused instead of
/// corrupting the heap. One lock, held only for the set operation (a poll's batch is added
/// under one acquisition).
final class LiveMessages: Sendable {
    private let live = Locked(WordTable<Void>())

    /// Records a poll's messages, about to be handed out.
    func add(_ ms: some Sequence<UnsafeMutableRawPointer>) {
        live.withLock { table in for m in ms { table.insert(UInt64(UInt(bitPattern: m)), ()) } }
    }

    /// Forgets a message; false when it was not live.
    func remove(_ m: UnsafeMutablePointer<kofka_message>) -> Bool {
        live.withLock { $0.removeValue(for: UInt64(UInt(bitPattern: m))) != nil }
    }
}

let liveMessages = LiveMessages()
