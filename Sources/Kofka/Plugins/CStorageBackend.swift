import CKofka
#if canImport(Glibc)
import Glibc
#endif

/// A storage backend given as a C table of functions (`kofka_storage_ops`, registered with
/// `kofka_storage_register`): the storage protocol, translated call by call. It decides
/// nothing; a C error code becomes a `KofkaError` with the backend's message.
final class CStorageBackend: StorageBackend, @unchecked Sendable {
    let ops: kofka_storage_ops
    let instance: UnsafeMutableRawPointer
    let scheme: String
    /// Change notification when the backend gives none: this process's commits and wake-ups.
    private let signal = Monitor()
    private var commits: UInt64 = 0   // guarded by signal
    private var wakeups: UInt64 = 0   // guarded by signal
    /// Calls into the backend in flight, and whether close has begun: `close` waits for the
    /// calls in flight to return before it calls the backend's close, and no call starts after
    /// it (a plugin never sees a call on a closed instance).
    private let gate = Monitor()
    private var inFlight = 0        // guarded by gate
    private var closing = false     // guarded by gate

    init(ops: kofka_storage_ops, instance: UnsafeMutableRawPointer, scheme: String) {
        self.ops = ops
        self.instance = instance
        self.scheme = scheme
    }

    deinit { close() }

    /// Throws the `KofkaError` for a C result: the backend's message if it set one.
    func check(_ rc: kofka_err, _ op: String) throws {
        guard rc != KOFKA_OK else { return }
        let code = ErrorCode(rawValue: Int32(bitPattern: rc.rawValue)) ?? .storage
        let said = StorageErrorMessage.take()
        let message = "\(scheme) storage: \(op) failed" + (said.map { ": \($0)" } ?? " (\(code.name))")
        // BUSY: nothing was written; TIMED_OUT: the outcome is unknown (a connection lost
        // during a commit). A producer retries both; idempotence absorbs a retried write.
        throw KofkaError(code, message, retriable: code == .busy || code == .timedOut)
    }

    /// Starts a call into the backend; false once close has begun.
    private func enter() -> Bool {
        gate.locked {
            guard !closing else { return false }
            inFlight += 1
            return true
        }
    }

    private func leave() {
        gate.locked {
            inFlight -= 1
            if inFlight == 0 { gate.broadcast() }
        }
    }

    private func enterOrThrow() throws {
        guard enter() else { throw KofkaError(.closed, "the \(scheme) storage is closed") }
    }

    /// Begins a transaction; the caller owns one `enter` until it commits or rolls back.
    private func begin(_ writable: Bool) throws -> UnsafeMutableRawPointer {
        try enterOrThrow()
        StorageErrorMessage.clear()
        var txn: UnsafeMutableRawPointer?
        do {
            try check(ops.begin(instance, writable ? 1 : 0, &txn), writable ? "begin a write" : "begin a read")
            guard let txn else { throw KofkaError(.storage, "\(scheme) storage: begin returned no transaction") }
            return txn
        } catch {
            leave()
            throw error
        }
    }

    func write<T>(_ body: (any StorageWriter) throws -> T) throws -> T {
        let txn = try begin(true)
        defer { leave() }
        let w = CTransaction(self, txn, writable: true)
        let result: T
        do {
            result = try body(w)
            w.txn = nil
            try check(ops.commit(txn), "commit")
        } catch {
            if w.txn != nil { ops.rollback(txn) }
            throw error
        }
        signal.locked {
            commits &+= 1
            wakeups &+= 1
            signal.broadcast()
        }
        return result
    }

    func read<T>(_ body: (any StorageReader) throws -> T) throws -> T {
        let txn = try begin(false)
        let r = CTransaction(self, txn, writable: false)
        defer {
            r.txn = nil
            ops.rollback(txn)
            leave()
        }
        return try body(r)
    }

    func changeToken() -> UInt64 {
        let local = signal.locked { commits }
        guard let f = ops.change_token, enter() else { return local }
        defer { leave() }
        return f(instance)
    }

    func waitForChange(since token: UInt64, timeoutNs: UInt64) {
        if let f = ops.wait_for_change {
            guard enter() else { return }
            defer { leave() }
            f(instance, token, timeoutNs)
            return
        }
        let deadline = monoNs() &+ timeoutNs
        while true {
            let seen = signal.locked { wakeups }
            if changeToken() != token || gate.locked({ closing }) { return }
            let now = monoNs()
            if now >= deadline { return }
            let slice = ops.change_token == nil ? deadline - now : min(deadline - now, 2_000_000)
            let woken = signal.locked {
                if wakeups == seen { signal.wait(timeoutNs: slice) }
                return wakeups != seen
            }
            if woken { return }
        }
    }

    func wakeAll() {
        signal.locked {
            wakeups &+= 1
            signal.broadcast()
        }
        guard let f = ops.wake_all, enter() else { return }
        defer { leave() }
        f(instance)
    }

    func reclaimSpace() throws -> Bool {
        guard let f = ops.reclaim_space else { return false }
        try enterOrThrow()
        defer { leave() }
        var more: Int32 = 0
        try check(f(instance, &more), "reclaim space")
        return more != 0
    }

    func close() {
        // Wake every wait (this process's and the backend's) before closing the gate, so the
        // waits in flight return; then wait for every call in flight, then close.
        wakeAll()
        let first = gate.locked { () -> Bool in
            guard !closing else { return false }
            closing = true
            return true
        }
        guard first else { return }
        signal.locked {
            wakeups &+= 1
            signal.broadcast()
        }
        gate.locked {
            while inFlight > 0 {
                gate.wait(timeoutNs: 10_000_000)
                // A wait that began after the wake above: wake it again (calls into the
                // backend's wake_all are still allowed until its close).
                if inFlight > 0, let f = ops.wake_all { gate.unlock(); f(instance); gate.lock() }
            }
        }
        ops.close(instance)
    }
}

/// Passes a key as its UTF-8 bytes and their count, NUL-terminated for convenience: every
/// byte reaches the backend, a NUL inside the key too (the length, not the terminator, counts).
private func withKey<R>(_ key: String, _ body: (UnsafePointer<CChar>, Int) throws -> R) rethrows -> R {
    var bytes = ContiguousArray<CChar>()
    bytes.reserveCapacity(key.utf8.count + 1)
    for b in key.utf8 { bytes.append(CChar(bitPattern: b)) }
    bytes.append(0)
    return try bytes.withUnsafeBufferPointer { try body($0.baseAddress!, $0.count - 1) }
}

/// A transaction of a C storage backend, as a `StorageWriter`.
private final class CTransaction: StorageWriter {
    let backend: CStorageBackend
    var txn: UnsafeMutableRawPointer?
    let writable: Bool

    init(_ backend: CStorageBackend, _ txn: UnsafeMutableRawPointer, writable: Bool) {
        self.backend = backend
        self.txn = txn
        self.writable = writable
    }

    private var ops: kofka_storage_ops { backend.ops }

    private func live(_ op: String, write: Bool = false) throws -> UnsafeMutableRawPointer {
        guard let txn else { throw KofkaError(.invalidState, "a storage reader/writer was used after its transaction ended") }
        if write && !writable { throw KofkaError(.invalidState, "\(op) inside a read transaction") }
        StorageErrorMessage.clear()
        return txn
    }

    func get(_ key: String) throws -> [UInt8]? {
        let t = try live("get")
        var value: UnsafeRawPointer?
        var len = 0
        try withKey(key) { k, n in try backend.check(ops.get(t, k, n, &value, &len), "get \(key)") }
        guard let value else { return nil }
        return Array(UnsafeRawBufferPointer(start: value, count: len))
    }

    func scan(from lower: String, to upper: String) throws -> [(key: String, value: [UInt8])] {
        let t = try live("scan")
        final class Box { var out: [(key: String, value: [UInt8])] = [] }
        let box = Box()
        let visit: kofka_storage_visit_kv = { ctx, k, klen, v, vlen in
            guard let ctx, let k else { return 1 }
            let b = Unmanaged<Box>.fromOpaque(ctx).takeUnretainedValue()
            let key = String(decoding: UnsafeRawBufferPointer(start: k, count: klen), as: UTF8.self)
            let value = v.map { Array(UnsafeRawBufferPointer(start: $0, count: vlen)) } ?? []
            b.out.append((key, value))
            return 0
        }
        try withExtendedLifetime(box) {
            try withKey(lower) { lo, lon in
                try withKey(upper) { hi, hin in
                    try backend.check(ops.scan(t, lo, lon, hi, hin, visit, Unmanaged.passUnretained(box).toOpaque()),
                                      "scan \(lower)..<\(upper)")
                }
            }
        }
        return box.out
    }

    private func logState(_ pnum: Int64) throws -> (start: Int64, next: Int64, bytes: Int64) {
        try checkPartitionNumber(pnum)
        let t = try live("log state")
        var start: Int64 = 0, next: Int64 = 0, bytes: Int64 = 0
        try backend.check(ops.log_state(t, pnum, &start, &next, &bytes), "log state of partition \(pnum)")
        return (start, next, bytes)
    }

    func highWatermark(_ pnum: Int64) throws -> Int64 { try logState(pnum).next }
    func logStartOffset(_ pnum: Int64) throws -> Int64 { try logState(pnum).start }
    func logBytes(_ pnum: Int64) throws -> Int64 { try logState(pnum).bytes }

    func readRecords(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int) throws -> [StoredRecord] {
        var out: [StoredRecord] = []
        _ = try forEachRecord(pnum, from: from, below: below, maxCount: maxCount) { out.append($0.stored) }
        return out
    }

    func forEachRecord(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int, _ body: (RecordView) throws -> Void) throws -> Int {
        try checkPartitionNumber(pnum)
        let t = try live("read")
        guard maxCount > 0, from < below else { return 0 }
        return try withoutActuallyEscaping(body) { body in
            final class Box {
                let body: (RecordView) throws -> Void
                var error: (any Error)?
                init(_ body: @escaping (RecordView) throws -> Void) { self.body = body }
            }
            let box = Box(body)
            let visit: kofka_storage_visit_record = { ctx, rec in
                guard let ctx, let rec else { return 1 }
                let b = Unmanaged<Box>.fromOpaque(ctx).takeUnretainedValue()
                let r = rec.pointee
                func view(_ p: UnsafeRawPointer?, _ len: Int64) -> UnsafeRawBufferPointer? {
                    len < 0 ? nil : UnsafeRawBufferPointer(start: len == 0 ? nil : p, count: Int(len))
                }
                do {
                    try b.body(RecordView(offset: r.offset, txn: r.txn, timestampMs: r.timestamp_ms, key: view(r.key, r.key_len),
                                          value: view(r.value, r.value_len), headers: view(r.headers, r.headers_len)))
                    return 0
                } catch {
                    b.error = error
                    return 1
                }
            }
            var visited = 0
            try withExtendedLifetime(box) {
                try backend.check(ops.read(t, pnum, max(0, from), below, maxCount, visit, Unmanaged.passUnretained(box).toOpaque(), &visited),
                                  "read partition \(pnum)")
            }
            if let e = box.error { throw e }
            return visited
        }
    }

    func put(_ key: String, _ value: [UInt8]) throws {
        let t = try live("put", write: true)
        try withKey(key) { k, n in
            try value.withUnsafeBytes { v in try backend.check(ops.put(t, k, n, v.baseAddress, v.count), "put \(key)") }
        }
    }

    func delete(_ key: String) throws {
        let t = try live("delete", write: true)
        try withKey(key) { k, n in try backend.check(ops.del(t, k, n), "delete \(key)") }
    }

    func append(_ pnum: Int64, _ batch: RecordBatch, txn txnId: Int64) throws -> Int64 {
        try checkPartitionNumber(pnum)
        let t = try live("append", write: true)
        guard batch.count > 0 else { return try highWatermark(pnum) }
        try checkOffsetSpace(pnum, base: try highWatermark(pnum), count: batch.count)
        var base: Int64 = 0
        try batch.buffer.withUnsafeBytes { buf in
            let records = batch.entries.map { e in
                func ptr(_ start: Int, _ len: Int32) -> UnsafeRawPointer? { len <= 0 ? nil : buf.baseAddress.map { $0 + start } }
                return kofka_stored_record(offset: 0, txn: txnId, timestamp_ms: e.timestampMs,
                                           key: ptr(e.start, e.keyLen), key_len: Int64(e.keyLen),
                                           value: ptr(e.valueStart, e.valueLen), value_len: Int64(e.valueLen),
                                           headers: ptr(e.headersStart, e.headersLen), headers_len: Int64(e.headersLen))
            }
            try records.withUnsafeBufferPointer { rs in
                try backend.check(ops.append(t, pnum, txnId, rs.baseAddress, rs.count, &base), "append to partition \(pnum)")
            }
        }
        return base
    }

    func truncateLog(_ pnum: Int64, before offset: Int64) throws -> Int64 {
        try checkPartitionNumber(pnum)
        let t = try live("truncateLog", write: true)
        var start: Int64 = 0
        try backend.check(ops.truncate(t, pnum, offset, &start), "truncate partition \(pnum)")
        return start
    }

    func removeRecords(_ pnum: Int64, at offsets: [Int64]) throws {
        try checkPartitionNumber(pnum)
        let t = try live("removeRecords", write: true)
        guard !offsets.isEmpty else { return }
        let sorted = offsets.sorted()
        try sorted.withUnsafeBufferPointer { os in
            try backend.check(ops.remove(t, pnum, os.baseAddress, os.count), "remove records of partition \(pnum)")
        }
    }
}

/// The message a C storage backend gives for the error it is about to return
/// (`kofka_storage_set_error`), per thread.
enum StorageErrorMessage {
    static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k) { free($0) }
        return k
    }()

    static func set(_ message: UnsafePointer<CChar>?) {
        let old = pthread_getspecific(key)
        pthread_setspecific(key, message.map { UnsafeMutableRawPointer(strdup($0)) } ?? nil)
        free(old)
    }

    static func clear() {
        if let old = pthread_getspecific(key) {
            free(old)
            pthread_setspecific(key, nil)
        }
    }

    /// The message set since the last `clear`, taken (cleared).
    static func take() -> String? {
        guard let p = pthread_getspecific(key) else { return nil }
        let s = String(cString: p.assumingMemoryBound(to: CChar.self))
        clear()
        return s
    }
}
