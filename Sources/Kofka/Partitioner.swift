/// Kafka's default partitioner for keyed records: `toPositive(murmur2(key)) % partitions`, with
/// the same murmur2 as Kafka's Java client (`org.apache.kafka.common.utils.Utils.murmur2`), so a
/// key lands on the same partition as it would in Kafka.
public enum Partitioner {
    /// Kafka's murmur2 hash (seed 0x9747b28c) of `data`.
    ///
    /// ```swift
    /// Partitioner.murmur2(Array("21".utf8)) == -973932308
    /// ```
    public static func murmur2(_ data: [UInt8]) -> Int32 {
        data.withUnsafeBytes { murmur2($0) }
    }

    /// Kafka's murmur2 hash of raw bytes.
    public static func murmur2(_ data: UnsafeRawBufferPointer) -> Int32 {
        let d = data.bindMemory(to: UInt8.self)
        let length = d.count
        let m: UInt32 = 0x5bd1_e995
        let r: UInt32 = 24
        var h: UInt32 = 0x9747_b28c ^ UInt32(truncatingIfNeeded: length)
        let length4 = length / 4
        do {
            for i in 0..<length4 {
                let i4 = i * 4
                var k = UInt32(d[i4]) | UInt32(d[i4 + 1]) << 8 | UInt32(d[i4 + 2]) << 16 | UInt32(d[i4 + 3]) << 24
                k = k &* m
                k ^= k >> r
                k = k &* m
                h = h &* m
                h ^= k
            }
            let tail = length & ~3
            switch length % 4 {
            case 3:
                h ^= UInt32(d[tail + 2]) << 16
                h ^= UInt32(d[tail + 1]) << 8
                h ^= UInt32(d[tail])
                h = h &* m
            case 2:
                h ^= UInt32(d[tail + 1]) << 8
                h ^= UInt32(d[tail])
                h = h &* m
            case 1:
                h ^= UInt32(d[tail])
                h = h &* m
            default:
                break
            }
        }
        h ^= h >> 13
        h = h &* m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }

    /// The partition Kafka's default partitioner picks for `key` among `partitions`.
    public static func partition(forKey key: [UInt8], partitions: Int32) -> Int32 {
        (murmur2(key) & 0x7fff_ffff) % partitions
    }

    /// The partition Kafka's default partitioner picks for a key given as raw bytes.
    public static func partition(forKey key: UnsafeRawBufferPointer, partitions: Int32) -> Int32 {
        (murmur2(key) & 0x7fff_ffff) % partitions
    }
}
