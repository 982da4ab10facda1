/// The primitive types of Kafka's wire format: big-endian integers, (unsigned) varints, strings,
/// bytes and arrays in their classic (length-prefixed) and compact (varint length + 1) forms,
/// and tagged fields. Every read checks the remaining length first and throws `WireError` on
/// anything short or malformed, so a hostile frame can never make the decoder read out of
/// bounds or allocate more than the frame holds.

/// A malformed frame.
public struct WireError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A Kafka UUID (16 bytes), as topic ids travel.
public struct WireUUID: Sendable, Hashable {
    public var high: UInt64
    public var low: UInt64
    public init(high: UInt64, low: UInt64) { self.high = high; self.low = low }
    public static let zero = WireUUID(high: 0, low: 0)
}

/// Reads Kafka's primitive types from a byte array.
public struct WireReader {
    public let bytes: [UInt8]
    public private(set) var pos: Int
    public let end: Int

    public init(_ bytes: [UInt8], from: Int = 0, to: Int? = nil) {
        self.bytes = bytes
        self.pos = from
        self.end = to ?? bytes.count
    }

    /// Bytes not read yet.
    public var remaining: Int { end - pos }

    @inline(__always) mutating func need(_ n: Int) throws {
        guard n >= 0, n <= end - pos else { throw WireError("truncated: needed \(n) bytes at \(pos), \(end - pos) left") }
    }

    @inline(__always) mutating func be<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let n = MemoryLayout<T>.size
        try need(n)
        var v: T = 0
        for i in 0..<n { v = (v << 8) | T(truncatingIfNeeded: bytes[pos + i]) }
        pos += n
        return v
    }

    public mutating func int8() throws -> Int8 { Int8(bitPattern: try be(UInt8.self)) }
    public mutating func int16() throws -> Int16 { Int16(bitPattern: try be(UInt16.self)) }
    public mutating func int32() throws -> Int32 { Int32(bitPattern: try be(UInt32.self)) }
    public mutating func int64() throws -> Int64 { Int64(bitPattern: try be(UInt64.self)) }
    public mutating func uint16() throws -> UInt16 { try be(UInt16.self) }
    public mutating func uint32() throws -> UInt32 { try be(UInt32.self) }
    public mutating func float64() throws -> Double { Double(bitPattern: try be(UInt64.self)) }
    public mutating func bool() throws -> Bool { try be(UInt8.self) != 0 }
    public mutating func uuid() throws -> WireUUID { WireUUID(high: try be(UInt64.self), low: try be(UInt64.self)) }

    /// An unsigned LEB128 varint of at most 32 bits.
    public mutating func uvarint() throws -> UInt32 {
        var v: UInt32 = 0
        var shift: UInt32 = 0
        while true {
            try need(1)
            let b = bytes[pos]; pos += 1
            v |= UInt32(b & 0x7f) << shift
            if b & 0x80 == 0 { return v }
            shift += 7
            if shift > 28 { throw WireError("varint longer than 5 bytes at \(pos)") }
        }
    }

    /// A zig-zag varint of at most 32 bits.
    public mutating func varint() throws -> Int32 {
        let u = try uvarint()
        return Int32(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
    }

    /// A zig-zag varint of at most 64 bits (record fields).
    public mutating func varlong() throws -> Int64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            try need(1)
            let b = bytes[pos]; pos += 1
            v |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { break }
            shift += 7
            if shift > 63 { throw WireError("varlong longer than 10 bytes at \(pos)") }
        }
        return Int64(bitPattern: (v >> 1) ^ (0 &- (v & 1)))
    }

    /// A length: -1 for null, else 0...remaining.
    mutating func length(compact: Bool) throws -> Int {
        let n: Int
        if compact { n = Int(try uvarint()) - 1 } else { n = Int(try int16()) }
        guard n >= -1 else { throw WireError("negative length \(n)") }
        return n
    }

    public mutating func nullableString(compact: Bool) throws -> String? {
        let n = try length(compact: compact)
        if n < 0 { return nil }
        try need(n)
        let s = String(decoding: bytes[pos ..< pos + n], as: UTF8.self)
        pos += n
        return s
    }

    public mutating func string(compact: Bool) throws -> String {
        guard let s = try nullableString(compact: compact) else { throw WireError("null string where none is allowed") }
        return s
    }

    public mutating func nullableBytes(compact: Bool) throws -> [UInt8]? {
        let n: Int
        if compact { n = Int(try uvarint()) - 1 } else { n = Int(try int32()) }
        guard n >= -1 else { throw WireError("negative bytes length \(n)") }
        if n < 0 { return nil }
        try need(n)
        let b = Array(bytes[pos ..< pos + n])
        pos += n
        return b
    }

    public mutating func bytes(compact: Bool) throws -> [UInt8] {
        guard let b = try nullableBytes(compact: compact) else { throw WireError("null bytes where none are allowed") }
        return b
    }

    /// An array's element count, or nil for a null array. Each element takes at least one byte,
    /// so a count above the bytes left is malformed (and never allocated).
    public mutating func arrayCount(compact: Bool, nullable: Bool) throws -> Int? {
        let n: Int
        if compact { n = Int(try uvarint()) - 1 } else { n = Int(try int32()) }
        if n < 0 {
            guard n == -1 else { throw WireError("negative array length \(n)") }
            return nullable ? nil : 0
        }
        guard n <= remaining else { throw WireError("array of \(n) elements in \(remaining) bytes") }
        return n
    }

    /// Skips `n` bytes.
    public mutating func skip(_ n: Int) throws {
        try need(n)
        pos += n
    }

    /// Reads a tagged-field section, handing each field's bytes to `body` as a reader of its own.
    public mutating func taggedFields(_ body: (UInt32, inout WireReader) throws -> Void) throws {
        let count = try uvarint()
        guard Int(count) <= remaining else { throw WireError("\(count) tagged fields in \(remaining) bytes") }
        for _ in 0..<count {
            let tag = try uvarint()
            let size = Int(try uvarint())
            try need(size)
            var sub = WireReader(bytes, from: pos, to: pos + size)
            try body(tag, &sub)
            pos += size
        }
    }
}

/// Writes Kafka's primitive types into a growing byte array.
public struct WireWriter {
    public var bytes: [UInt8] = []
    public init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    @inline(__always) mutating func be<T: FixedWidthInteger>(_ v: T) {
        var x = v.bigEndian
        withUnsafeBytes(of: &x) { bytes.append(contentsOf: $0) }
    }

    public mutating func int8(_ v: Int8) { bytes.append(UInt8(bitPattern: v)) }
    public mutating func int16(_ v: Int16) { be(v) }
    public mutating func int32(_ v: Int32) { be(v) }
    public mutating func int64(_ v: Int64) { be(v) }
    public mutating func uint16(_ v: UInt16) { be(v) }
    public mutating func uint32(_ v: UInt32) { be(v) }
    public mutating func float64(_ v: Double) { be(v.bitPattern) }
    public mutating func bool(_ v: Bool) { bytes.append(v ? 1 : 0) }
    public mutating func uuid(_ v: WireUUID) { be(v.high); be(v.low) }

    public mutating func uvarint(_ v: UInt32) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    public mutating func varint(_ v: Int32) { uvarint(UInt32(bitPattern: (v << 1) ^ (v >> 31))) }

    public mutating func varlong(_ v: Int64) {
        var u = UInt64(bitPattern: (v << 1) ^ (v >> 63))
        while u >= 0x80 { bytes.append(UInt8(u & 0x7f) | 0x80); u >>= 7 }
        bytes.append(UInt8(u))
    }

    public mutating func nullableString(_ s: String?, compact: Bool) {
        guard let s else {
            if compact { uvarint(0) } else { int16(-1) }
            return
        }
        string(s, compact: compact)
    }

    public mutating func string(_ s: String, compact: Bool) {
        let u = s.utf8
        if compact { uvarint(UInt32(u.count + 1)) } else { int16(Int16(truncatingIfNeeded: u.count)) }
        bytes.append(contentsOf: u)
    }

    public mutating func nullableBytes(_ b: [UInt8]?, compact: Bool) {
        guard let b else {
            if compact { uvarint(0) } else { int32(-1) }
            return
        }
        self.bytes(b, compact: compact)
    }

    public mutating func bytes(_ b: [UInt8], compact: Bool) {
        if compact { uvarint(UInt32(b.count + 1)) } else { int32(Int32(truncatingIfNeeded: b.count)) }
        bytes.append(contentsOf: b)
    }

    public mutating func arrayCount(_ n: Int, compact: Bool) {
        if compact { uvarint(UInt32(n + 1)) } else { int32(Int32(n)) }
    }

    /// A null array (an empty one where the version has no null).
    public mutating func nullArray(compact: Bool, nullable: Bool) {
        if nullable { if compact { uvarint(0) } else { int32(-1) } } else { arrayCount(0, compact: compact) }
    }

    /// A tagged-field section with `fields` (tag, encoded value), in ascending tag order.
    public mutating func taggedFields(_ fields: [(UInt32, [UInt8])]) {
        uvarint(UInt32(fields.count))
        for (tag, value) in fields.sorted(by: { $0.0 < $1.0 }) {
            uvarint(tag)
            uvarint(UInt32(value.count))
            bytes.append(contentsOf: value)
        }
    }

    /// Overwrites 4 bytes at `at` with `v` (a length or CRC written after its contents).
    public mutating func patchInt32(_ v: Int32, at: Int) {
        let u = UInt32(bitPattern: v)
        bytes[at] = UInt8(u >> 24); bytes[at + 1] = UInt8((u >> 16) & 0xff)
        bytes[at + 2] = UInt8((u >> 8) & 0xff); bytes[at + 3] = UInt8(u & 0xff)
    }
}
