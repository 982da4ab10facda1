import CZlib

/// gzip (RFC 1952) through the system's zlib: the one compression codec besides `none` that
/// the protocol layer accepts and the only one it may be asked to read back.
enum Gzip {
    /// Inflates a gzip stream, refusing to grow past `limit` bytes (a decompression bomb is an error).
    static func decompress(_ input: ArraySlice<UInt8>, limit: Int) throws -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw WireError("zlib inflateInit failed")
        }
        defer { inflateEnd(&stream) }
        var out = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        let input = Array(input)
        return try input.withUnsafeBufferPointer { inp -> [UInt8] in
            stream.next_in = UnsafeMutablePointer(mutating: inp.baseAddress)
            stream.avail_in = UInt32(inp.count)
            while true {
                let rc = chunk.withUnsafeMutableBufferPointer { c -> Int32 in
                    stream.next_out = c.baseAddress
                    stream.avail_out = UInt32(c.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunk.count - Int(stream.avail_out)
                out.append(contentsOf: chunk[0..<produced])
                if out.count > limit { throw WireError("gzip data inflates past \(limit) bytes") }
                if rc == Z_STREAM_END { return out }
                if rc != Z_OK { throw WireError("corrupt gzip data (zlib \(rc))") }
                if produced == 0 && stream.avail_in == 0 { throw WireError("truncated gzip data") }
            }
        }
    }

    /// Deflates `input` into a gzip stream.
    static func compress(_ input: [UInt8]) throws -> [UInt8] {
        var stream = z_stream()
        guard deflateInit2_(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                            ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw WireError("zlib deflateInit failed")
        }
        defer { deflateEnd(&stream) }
        var out = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(input.count))) + 32)
        let n = input.withUnsafeBufferPointer { inp -> Int in
            out.withUnsafeMutableBufferPointer { o -> Int in
                stream.next_in = UnsafeMutablePointer(mutating: inp.baseAddress)
                stream.avail_in = UInt32(inp.count)
                stream.next_out = o.baseAddress
                stream.avail_out = UInt32(o.count)
                let rc = deflate(&stream, Z_FINISH)
                return rc == Z_STREAM_END ? o.count - Int(stream.avail_out) : -1
            }
        }
        guard n >= 0 else { throw WireError("gzip compression failed") }
        out.removeSubrange(n...)
        return out
    }
}
