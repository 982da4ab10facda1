import CKofka
#if canImport(Glibc)
import Glibc
#endif

/// Interceptors given as a C struct of hooks (`kofka_interceptors`): each hook translated to C
/// structs that point at Kofka's own bytes, valid during the call. An older, shorter struct
/// works: only the fields that fit in its `struct_size` are read.
package final class CInterceptor: Interceptor, @unchecked Sendable {
    private let ic: kofka_interceptors
    package let hooks: InterceptorHooks

    /// Copies the struct at `p` (at most `struct_size` bytes of it).
    package init(_ p: UnsafePointer<kofka_interceptors>) throws {
        let raw = UnsafeRawPointer(p)
        let size = raw.load(as: Int.self)
        let minimum = MemoryLayout<kofka_interceptors>.offset(of: \kofka_interceptors.on_send) ?? 16
        guard size >= minimum else {
            throw KofkaError(.invalidArg, "kofka_interceptors.struct_size is \(size); at least \(minimum) (struct_size and opaque) is needed")
        }
        var copy = kofka_interceptors()
        withUnsafeMutableBytes(of: &copy) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: min(size, MemoryLayout<kofka_interceptors>.size)))
        }
        ic = copy
        var h = InterceptorHooks()
        if ic.on_send != nil { h.insert(.send) }
        if ic.on_acknowledgement != nil { h.insert(.acknowledgement) }
        if ic.on_consume != nil { h.insert(.consume) }
        if ic.on_commit != nil { h.insert(.commit) }
        if ic.on_close != nil { h.insert(.close) }
        hooks = h
    }

    /// A non-NULL pointer for an empty key or value (NULL means "none" in C).
    nonisolated(unsafe) private static let empty = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)

    private static func pointer(_ b: UnsafeRawBufferPointer?) -> UnsafeRawPointer? {
        guard let b else { return nil }
        return b.baseAddress ?? UnsafeRawPointer(empty)
    }

    /// Runs `body` with `headers` as a C array (valid during the call).
    private static func withCHeaders<T>(_ headers: [Header], _ body: (UnsafePointer<kofka_header>?, Int) -> T) -> T {
        guard !headers.isEmpty else { return body(nil, 0) }
        let names = headers.map { strdup($0.name) }
        defer { for n in names { free(n) } }
        let values = headers.map { h -> UnsafeMutableRawPointer? in
            guard let v = h.value else { return nil }
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(1, v.count), alignment: 1)
            v.withUnsafeBytes { if let b = $0.baseAddress { p.copyMemory(from: b, byteCount: v.count) } }
            return p
        }
        defer { for v in values { v?.deallocate() } }
        let cs = headers.indices.map { i in
            kofka_header(name: UnsafePointer(names[i]), value: values[i].map { UnsafeRawPointer($0) }, value_len: headers[i].value?.count ?? 0)
        }
        return cs.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
    }

    /// Runs `body` with `r` as a `kofka_record` (valid during the call).
    private static func withCRecord<T>(_ r: OutgoingRecord, _ body: (inout kofka_record) -> T) -> T {
        withCHeaders(r.headers) { hp, hn in
            var c = kofka_record()
            c.partition = r.partition ?? -1
            c.key = pointer(r.key); c.key_len = r.key?.count ?? 0
            c.value = pointer(r.value); c.value_len = r.value?.count ?? 0
            c.headers = hp; c.header_count = hn
            c.timestamp_ms = r.timestampMs
            c.offset = -1
            return body(&c)
        }
    }

    /// The bytes a hook left at (p, len), checked so that a hook's mistake fails the record
    /// politely instead of crashing: nil for NULL, a copy otherwise.
    private static func bytes(_ p: UnsafeRawPointer?, _ len: Int) -> [UInt8]? {
        guard let p else { return nil }
        let n = UInt(bitPattern: len)
        guard n <= 1 << 30 else { return nil }
        return Array(UnsafeRawBufferPointer(start: p, count: Int(n)))
    }

    package func onSend(topic: String, record: OutgoingRecord) -> Record? {
        guard let f = ic.on_send else { return nil }
        return Self.withCRecord(record) { c in
            let before = c
            topic.withCString { f(ic.opaque, $0, &c) }
            let same = c.partition == before.partition && c.timestamp_ms == before.timestamp_ms
                && c.key == before.key && c.key_len == before.key_len && c.value == before.value && c.value_len == before.value_len
                && c.headers == before.headers && c.header_count == before.header_count
            if same { return nil }
            var headers: [Header] = []
            if let hs = c.headers, UInt(bitPattern: c.header_count) <= 65_536 {
                for i in 0..<c.header_count {
                    guard let name = hs[i].name else { continue }
                    headers.append(Header(String(cString: name), Self.bytes(hs[i].value, hs[i].value_len)))
                }
            }
            return Record(partition: c.partition < 0 ? nil : c.partition, key: Self.bytes(c.key, c.key_len),
                          value: Self.bytes(c.value, c.value_len), headers: headers, timestampMs: max(0, c.timestamp_ms))
        }
    }

    package func onAcknowledgement(topic: String, record: OutgoingRecord, result: Result<RecordMetadata, KofkaError>) {
        guard let f = ic.on_acknowledgement else { return }
        Self.withCRecord(record) { c in
            switch result {
            case .success(let md): c.partition = md.partition; c.offset = md.offset; c.err = KOFKA_OK
            case .failure(let e): c.offset = -1; c.err = kofka_err(rawValue: UInt32(bitPattern: e.code.rawValue))
            }
            topic.withCString { t in withUnsafePointer(to: &c) { f(ic.opaque, t, $0) } }
        }
    }

    package func onConsume(topic: String, partition: Int32, record: RecordView) {
        guard let f = ic.on_consume else { return }
        let headers = (try? HeaderCodec.decode(record.headers.map { Array($0) })) ?? []
        Self.withCHeaders(headers) { hp, hn in
            topic.withCString { t in
                var m = kofka_message(topic: t, partition: partition, offset: record.offset, timestamp_ms: record.timestampMs,
                                      key: Self.pointer(record.key), key_len: record.key?.count ?? 0,
                                      value: Self.pointer(record.value), value_len: record.value?.count ?? 0,
                                      headers: hp, header_count: hn)
                withUnsafePointer(to: &m) { f(ic.opaque, $0) }
            }
        }
    }

    package func onCommit(group: String, partition: TopicPartition, offset: Int64, error: KofkaError?) {
        guard let f = ic.on_commit else { return }
        let code = error.map { kofka_err(rawValue: UInt32(bitPattern: $0.code.rawValue)) } ?? KOFKA_OK
        group.withCString { g in partition.topic.withCString { t in f(ic.opaque, g, t, partition.partition, offset, code) } }
    }

    package func onClose() { ic.on_close?(ic.opaque) }
}
