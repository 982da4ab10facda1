/// A compact little-endian binary encoding for the metadata blobs Kofka keeps in storage
/// (producer state, groups, transactions) and for record headers.
struct BinaryWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func i32(_ v: Int32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func i64(_ v: Int64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func bool(_ v: Bool) { u8(v ? 1 : 0) }
    mutating func string(_ s: String) { blob(Array(s.utf8)) }
    mutating func blob(_ b: [UInt8]) { i32(Int32(b.count)); bytes.append(contentsOf: b) }
    mutating func optBlob(_ b: [UInt8]?) {
        guard let b else { i32(-1); return }
        blob(b)
    }
    mutating func strings(_ a: [String]) { i32(Int32(a.count)); for s in a { string(s) } }
}

/// Reads what `BinaryWriter` wrote; throws `.storage` on truncated or malformed input.
struct BinaryReader {
    let bytes: [UInt8]
    var pos = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// True when every byte has been read (fields appended by a later version are absent).
    var atEnd: Bool { pos >= bytes.count }

    private func corrupt() -> KofkaError { KofkaError(.storage, "corrupt metadata blob (\(bytes.count) bytes, at \(pos))") }

    mutating func u8() throws -> UInt8 {
        guard pos < bytes.count else { throw corrupt() }
        defer { pos += 1 }
        return bytes[pos]
    }
    mutating func i32() throws -> Int32 {
        guard pos + 4 <= bytes.count else { throw corrupt() }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[pos + i]) << (8 * UInt32(i)) }
        pos += 4
        return Int32(bitPattern: v)
    }
    mutating func i64() throws -> Int64 {
        guard pos + 8 <= bytes.count else { throw corrupt() }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[pos + i]) << (8 * UInt64(i)) }
        pos += 8
        return Int64(bitPattern: v)
    }
    mutating func bool() throws -> Bool { try u8() != 0 }
    mutating func blob() throws -> [UInt8] {
        guard let b = try optBlob() else { throw corrupt() }
        return b
    }
    mutating func optBlob() throws -> [UInt8]? {
        let n = try i32()
        if n < 0 { return nil }
        guard pos + Int(n) <= bytes.count else { throw corrupt() }
        defer { pos += Int(n) }
        return Array(bytes[pos..<pos + Int(n)])
    }
    mutating func string() throws -> String { String(decoding: try blob(), as: UTF8.self) }
    mutating func strings() throws -> [String] {
        let n = try i32()
        guard n >= 0 else { throw corrupt() }
        return try (0..<n).map { _ in try string() }
    }
}

/// Record headers as one blob: count, then name and optional value for each.
public enum HeaderCodec {
    /// The blob for `headers`, or nil when there are none.
    public static func encode(_ headers: [Header]) -> [UInt8]? {
        if headers.isEmpty { return nil }
        var w = BinaryWriter()
        w.i32(Int32(headers.count))
        for h in headers {
            w.string(h.name)
            w.optBlob(h.value)
        }
        return w.bytes
    }

    /// The headers in a blob (nil or empty: none).
    public static func decode(_ blob: [UInt8]?) throws -> [Header] {
        guard let blob, !blob.isEmpty else { return [] }
        var r = BinaryReader(blob)
        let n = try r.i32()
        guard n >= 0 else { throw KofkaError(.storage, "corrupt header blob") }
        return try (0..<n).map { _ in Header(try r.string(), try r.optBlob()) }
    }
}

extension Int64 {
    /// Fixed-width hex, so that keys sort in numeric order.
    var hex16: String {
        // Sixteen lower-case hex digits, written in place (storage keys are built on every fetch).
        let v = UInt64(bitPattern: self)
        return String(unsafeUninitializedCapacity: 16) { out in
            let digits: StaticString = "0123456789abcdef"
            for i in 0..<16 {
                out[i] = digits.utf8Start[Int((v >> UInt64(60 - 4 * i)) & 0xf)]
            }
            return 16
        }
    }
}
