import CKofka
import Kofka

// Records from packed buffers (include/kofka.h, "Producer"): kofka_send_packed's layout, and
// the leased asynchronous handover kofka_produce_lease / kofka_produce_packed.

/// Packed keys and values from C: record i's key is the next key_lens[i] bytes of `keys`
/// (-1 = NULL), its value the next value_lens[i] bytes of `values`. Every length is checked
/// before any byte is read: -1 or 0 ... 2^31-1, and a NULL buffer only with lengths -1 or 0.
struct PackedBuffers {
    let keys: UnsafeRawPointer?
    let keyLens: UnsafePointer<Int64>?
    let values: UnsafeRawPointer?
    let valueLens: UnsafePointer<Int64>
    let count: Int
    /// Key and value bytes of all records.
    private(set) var bytes = 0

    init(_ fn: String, keys: UnsafeRawPointer?, keyLens: UnsafePointer<Int64>?,
         values: UnsafeRawPointer?, valueLens: UnsafePointer<Int64>?, count: Int) throws {
        self.keys = keys
        self.keyLens = keyLens
        self.values = values
        self.count = count
        if count == 0 {
            self.valueLens = UnsafePointer(bitPattern: MemoryLayout<Int64>.alignment)!
            return
        }
        let vlens = try need(valueLens, "value_lens", fn)
        self.valueLens = vlens
        if keys == nil && keyLens != nil { throw invalidArg("\(fn): keys is NULL but key_lens is not") }
        func length(_ len: Int64, _ what: String, _ i: Int) throws -> Int {
            if len == -1 { return -1 }
            guard len >= 0 else { throw invalidArg("\(fn): \(what)_lens[\(i)] is \(len); expected -1 or a length") }
            guard len <= Int64(Int32.max) else {
                throw KofkaError(.msgTooLarge, "\(fn): \(what)_lens[\(i)] \(len) exceeds any message.max.bytes")
            }
            return Int(len)
        }
        for i in 0..<count {
            let v = try length(vlens[i], "value", i)
            if v > 0 && values == nil { throw invalidArg("\(fn): values is NULL but value_lens[\(i)] is \(v)") }
            var k = -1
            if let keyLens {
                k = try length(keyLens[i], "key", i)
                if k > 0 && keys == nil { throw invalidArg("\(fn): keys is NULL but key_lens[\(i)] is \(k)") }
            }
            let (sum, overflow) = bytes.addingReportingOverflow(max(0, v) + max(0, k))
            if overflow { throw invalidArg("\(fn): the lengths add up to more than the address space") }
            bytes = sum
        }
    }

    /// Calls `body` with each record's index, key and value (nil = NULL), in order.
    func forEach(_ body: (Int, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?) throws -> Void) rethrows {
        var koff = 0, voff = 0
        func take(_ base: UnsafeRawPointer?, _ len: Int, _ off: inout Int) -> UnsafeRawBufferPointer? {
            if len == -1 { return nil }
            guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }   // len is 0: checked
            defer { off += len }
            return UnsafeRawBufferPointer(start: base + off, count: len)
        }
        for i in 0..<count {
            let k = keyLens.map { take(keys, Int($0[i]), &koff) } ?? nil
            let v = take(values, Int(valueLens[i]), &voff)
            try body(i, k, v)
        }
    }
}

@c @implementation
public func kofka_produce_lease(_ p: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ max: Int,
                                _ out: UnsafeMutablePointer<kofka_lease>?) -> kofka_err {
    run {
        let box = try producerHandle(p, "kofka_produce_lease")
        let t = try string(topic, "topic", "kofka_produce_lease")
        let out = try need(out, "out", "kofka_produce_lease")
        let lease = try box.producer.lease(t, max: Int(clamping: unsigned(max)))
        // kofka_produce also refuses keys and values above the broker's message.max.bytes.
        let bound = Swift.min(lease.maxKeyValueBytes, box.producer.broker.config.messageMaxBytes)
        out.pointee = kofka_lease(credits: lease.credits, partitions: lease.partitions, max_kv_bytes: bound,
                                 hold_ms: Int32(clamping: lease.holdMs), txn: lease.txn)
    }
}

@c @implementation
public func kofka_produce_packed(_ p: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ lease: UnsafePointer<kofka_lease>?,
                                 _ keys: UnsafeRawPointer?, _ key_lens: UnsafePointer<Int64>?,
                                 _ values: UnsafeRawPointer?, _ value_lens: UnsafePointer<Int64>?,
                                 _ partitions: UnsafePointer<Int32>?, _ opaques: UnsafePointer<UnsafeMutableRawPointer?>?,
                                 _ count: Int) -> kofka_err {
    run {
        let box = try producerHandle(p, "kofka_produce_packed")
        let producer = box.producer
        let lease = try need(lease, "lease", "kofka_produce_packed").pointee
        let credits = Int(clamping: unsigned(lease.credits))
        let t: String
        let packed: PackedBuffers
        do {
            t = try string(topic, "topic", "kofka_produce_packed")
            guard unsigned(count) <= UInt(credits) else {
                throw invalidArg("kofka_produce_packed: count \(unsigned(count)) exceeds the lease's credits \(credits)")
            }
            packed = try PackedBuffers("kofka_produce_packed", keys: keys, keyLens: key_lens,
                                       values: values, valueLens: value_lens, count: count)
            if let partitions {
                for i in 0..<count where partitions[i] < -1 {
                    throw invalidArg("kofka_produce_packed: partitions[\(i)] is \(partitions[i]); expected a partition or KOFKA_PARTITION_ANY (-1)")
                }
            }
        } catch {
            producer.releaseLease(credits)   // nothing is queued: the lease's slots go back all the same
            throw error
        }
        // Every length and partition is checked: the records go straight into the queue's buffer.
        try producer.produce(t, leased: count, credits: credits, txn: lease.txn) { sink in
            packed.forEach { i, k, v in
                let part = partitions?[i] ?? -1
                sink(Producer.LeasedRecord(partition: part == -1 ? nil : part, key: k, value: v,
                                           size: (k?.count ?? 0) + (v?.count ?? 0), opaque: UInt(bitPattern: opaques?[i])))
            }
        }
    }
}
