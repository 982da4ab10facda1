import CKofka
#if canImport(Glibc)
import Glibc
#endif
import Kofka

// The C ABI of include/kofka.h. Each function converts its arguments, calls the core, and maps
// errors to codes; no behaviour lives here.

// MARK: Broker

@c @implementation
public func kofka_broker_open(_ storage: UnsafePointer<CChar>?, _ config: UnsafePointer<UnsafePointer<CChar>?>?,
                              _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kofka_err {
    run {
        let out = try need(out, "out", "kofka_broker_open")
        let s = try string(storage, "storage", "kofka_broker_open")
        out.pointee = retain(try Broker(s, config: try configPairs(config)))
    }
}

@c @implementation
public func kofka_broker_close(_ b: OpaquePointer?) -> kofka_err {
    run {
        guard let b else { return }
        object(b, Broker.self).close()
        release(b, Broker.self)
    }
}

@c @implementation
public func kofka_topic_create(_ b: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partitions: Int32) -> kofka_err {
    run {
        let broker = object(try need(b, "broker", "kofka_topic_create"), Broker.self)
        try broker.createTopic(try string(topic, "topic", "kofka_topic_create"), partitions: partitions)
    }
}

@c @implementation
public func kofka_topic_partitions(_ b: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partitions: UnsafeMutablePointer<Int32>?) -> kofka_err {
    run {
        let broker = object(try need(b, "broker", "kofka_topic_partitions"), Broker.self)
        let out = try need(partitions, "partitions", "kofka_topic_partitions")
        out.pointee = try broker.partitions(of: try string(topic, "topic", "kofka_topic_partitions"))
    }
}

@c @implementation
public func kofka_watermarks(_ b: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partition: Int32,
                             _ low: UnsafeMutablePointer<Int64>?, _ high: UnsafeMutablePointer<Int64>?) -> kofka_err {
    run {
        let broker = object(try need(b, "broker", "kofka_watermarks"), Broker.self)
        let lo = try need(low, "low", "kofka_watermarks"), hi = try need(high, "high", "kofka_watermarks")
        let w = try broker.watermarks(try string(topic, "topic", "kofka_watermarks"), partition)
        lo.pointee = w.low
        hi.pointee = w.high
    }
}

// MARK: Producer

@c @implementation
public func kofka_producer_new(_ b: OpaquePointer?, _ config: UnsafePointer<UnsafePointer<CChar>?>?,
                               _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kofka_err {
    run {
        let broker = object(try need(b, "broker", "kofka_producer_new"), Broker.self)
        let out = try need(out, "out", "kofka_producer_new")
        let p = try broker.producer(try ProducerConfig(try configPairs(config)))
        out.pointee = retain(ProducerBox(p))
    }
}

/// Hands delivery reports to the C callback, with a temporary kofka_record.
private func deliver(_ handle: OpaquePointer, _ box: ProducerBox) -> (DeliveryReport) -> Void {
    { report in
        guard let cb = box.cb else { return }
        let key = report.record.key, value = report.record.value
        key.withUnsafeBytesOrNil { kp in
            value.withUnsafeBytesOrNil { vp in
                var r = kofka_record()
                r.key = kp; r.key_len = key?.count ?? 0
                r.value = vp; r.value_len = value?.count ?? 0
                r.timestamp_ms = report.record.timestampMs
                switch report.result {
                case .success(let md): r.partition = md.partition; r.offset = md.offset; r.err = KOFKA_OK
                case .failure(let e): r.partition = report.record.partition ?? -1; r.offset = -1; r.err = code(e)
                }
                report.topic.withCString { t in
                    withUnsafePointer(to: &r) { cb(handle, t, $0, UnsafeMutableRawPointer(bitPattern: report.opaque), box.cbOpaque) }
                }
            }
        }
    }
}

extension Optional where Wrapped == [UInt8] {
    func withUnsafeBytesOrNil<T>(_ body: (UnsafeRawPointer?) -> T) -> T {
        guard let a = self else { return body(nil) }
        return a.withUnsafeBytes { body($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)) }
    }
}

@c @implementation
public func kofka_producer_close(_ p: OpaquePointer?, _ timeout_ms: Int32) -> kofka_err {
    guard let p else { LastError.clear(); return KOFKA_OK }
    let box = object(p, ProducerBox.self)
    let rc = run { try box.producer.close(timeout: duration(timeout_ms), deliver(p, box)) }
    release(p, ProducerBox.self)
    return rc
}

/// Copies the outcome of one record into the C struct.
private func setResult(_ r: UnsafeMutablePointer<kofka_record>, _ result: Result<RecordMetadata, KofkaError>) {
    switch result {
    case .success(let md): r.pointee.partition = md.partition; r.pointee.offset = md.offset; r.pointee.err = KOFKA_OK
    case .failure(let e): r.pointee.offset = -1; r.pointee.err = code(e)
    }
}

@c @implementation
public func kofka_send(_ p: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ record: UnsafeMutablePointer<kofka_record>?) -> kofka_err {
    guard record != nil else {
        LastError.set("kofka_send: record is NULL")
        return KOFKA_ERR_INVALID_ARG
    }
    return kofka_send_batch(p, topic, record, 1)
}

@c @implementation
public func kofka_send_batch(_ p: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ records: UnsafeMutablePointer<kofka_record>?, _ count: Int) -> kofka_err {
    run {
        let box = object(try need(p, "producer", "kofka_send_batch"), ProducerBox.self)
        let t = try string(topic, "topic", "kofka_send_batch")
        guard count >= 0 else { throw invalidArg("kofka_send_batch: count \(count) is negative") }
        if count == 0 { return }
        let recs = try need(records, "records", "kofka_send_batch")
        let maxBytes = box.producer.broker.config.messageMaxBytes
        // Pack every record into one batch; a record whose pointers or lengths are bad fails alone.
        var bytes = 0
        for i in 0..<count where recs[i].key_len < Int(Int32.max) && recs[i].value_len < Int(Int32.max) {
            bytes &+= recs[i].key_len &+ recs[i].value_len
        }
        var batch = RecordBatch(reservingRecords: count, bytes: min(bytes, count &* maxBytes))
        var parts: [Int32] = []
        var slots: [Int] = []
        parts.reserveCapacity(count)
        slots.reserveCapacity(count)
        var first: (Int, KofkaError)?
        for i in 0..<count {
            let r = recs[i]
            do {
                try appendRecord(r, to: &batch, maxBytes: maxBytes)
                parts.append(r.partition)
                slots.append(i)
            } catch let e as KofkaError {
                setResult(recs + i, .failure(e))
                if first == nil { first = (i, e) }
            }
        }
        let o = try box.producer.send(t, batch, partitions: parts)
        for (j, i) in slots.enumerated() {
            recs[i].partition = o.partitions[j]
            recs[i].offset = o.offsets[j]
            recs[i].err = KOFKA_OK
        }
        for (j, e) in o.errors {
            let i = slots[j]
            recs[i].err = code(e)
            recs[i].offset = -1
            if first == nil || i < first!.0 { first = (i, e) }
        }
        if let first { throw first.1 }
    }
}

@c @implementation
public func kofka_send_packed(_ p: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partition: Int32,
                              _ keys: UnsafeRawPointer?, _ key_lens: UnsafePointer<Int64>?,
                              _ values: UnsafeRawPointer?, _ value_lens: UnsafePointer<Int64>?, _ count: Int,
                              _ partitions_out: UnsafeMutablePointer<Int32>?, _ offsets_out: UnsafeMutablePointer<Int64>?,
                              _ errs_out: UnsafeMutablePointer<kofka_err>?) -> kofka_err {
    run {
        let box = object(try need(p, "producer", "kofka_send_packed"), ProducerBox.self)
        let t = try string(topic, "topic", "kofka_send_packed")
        guard count >= 0 else { throw invalidArg("kofka_send_packed: count \(count) is negative") }
        guard partition >= -1 else { throw invalidArg("kofka_send_packed: invalid partition \(partition)") }
        if count == 0 { return }
        let vlens = try need(value_lens, "value_lens", "kofka_send_packed")
        if keys == nil && key_lens != nil { throw invalidArg("kofka_send_packed: keys is NULL but key_lens is not") }
        var bytes = 0
        for i in 0..<count {
            bytes &+= Int(clamping: max(0, vlens[i])) &+ Int(clamping: max(0, key_lens?[i] ?? 0))
        }
        var batch = RecordBatch(reservingRecords: count, bytes: min(max(0, bytes), 1 << 31))
        var koff = 0, voff = 0
        func take(_ base: UnsafeRawPointer?, _ len: Int64, _ off: inout Int, _ what: String, _ i: Int) throws -> UnsafeRawBufferPointer? {
            if len == -1 { return nil }
            guard len >= 0 && len <= Int64(Int32.max) else { throw invalidArg("kofka_send_packed: \(what)_lens[\(i)] is \(len); expected -1 or a length") }
            guard let base else {
                if len == 0 { return UnsafeRawBufferPointer(start: nil, count: 0) }
                throw invalidArg("kofka_send_packed: \(what)s is NULL but \(what)_lens[\(i)] is \(len)")
            }
            defer { off += Int(len) }
            return UnsafeRawBufferPointer(start: base + off, count: Int(len))
        }
        for i in 0..<count {
            let k = try key_lens.map { try take(keys, $0[i], &koff, "key", i) } ?? nil
            let v = try take(values, vlens[i], &voff, "value", i)
            batch.append(timestampMs: 0, key: k, value: v, headers: nil)
        }
        let parts = partition == -1 ? nil : [Int32](repeating: partition, count: count)
        let o = try box.producer.send(t, batch, partitions: parts)
        for i in 0..<count {
            partitions_out?[i] = o.partitions[i]
            offsets_out?[i] = o.offsets[i]
            errs_out?[i] = KOFKA_OK
        }
        for (i, e) in o.errors {
            partitions_out?[i] = -1
            errs_out?[i] = code(e)
        }
        if let (_, e) = o.firstError { throw e }
    }
}

@c @implementation
public func kofka_produce(_ p: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ record: UnsafePointer<kofka_record>?,
                          _ msg_opaque: UnsafeMutableRawPointer?) -> kofka_err {
    run {
        let box = object(try need(p, "producer", "kofka_produce"), ProducerBox.self)
        let t = try string(topic, "topic", "kofka_produce")
        let r = try convertRecord(try need(record, "record", "kofka_produce").pointee, maxBytes: box.producer.broker.config.messageMaxBytes)
        try box.producer.produce(t, r, opaque: UInt(bitPattern: msg_opaque))
    }
}

@c @implementation
public func kofka_producer_set_delivery_cb(_ p: OpaquePointer?, _ cb: kofka_delivery_cb?, _ cb_opaque: UnsafeMutableRawPointer?) -> kofka_err {
    run {
        let box = object(try need(p, "producer", "kofka_producer_set_delivery_cb"), ProducerBox.self)
        box.cb = cb
        box.cbOpaque = cb_opaque
    }
}

@c @implementation
public func kofka_producer_poll(_ p: OpaquePointer?, _ timeout_ms: Int32) -> Int32 {
    guard let p else { LastError.set("kofka_producer_poll: producer is NULL"); return -1 }
    let box = object(p, ProducerBox.self)
    LastError.clear()
    return Int32(clamping: box.producer.poll(timeout: duration(timeout_ms), deliver(p, box)))
}

@c @implementation
public func kofka_flush(_ p: OpaquePointer?, _ timeout_ms: Int32) -> kofka_err {
    run {
        let h = try need(p, "producer", "kofka_flush")
        let box = object(h, ProducerBox.self)
        try box.producer.checkOpenPublic()
        try box.producer.flush(timeout: duration(timeout_ms), deliver(h, box))
    }
}

@c @implementation
public func kofka_init_transactions(_ p: OpaquePointer?, _ timeout_ms: Int32) -> kofka_err {
    run { try object(try need(p, "producer", "kofka_init_transactions"), ProducerBox.self).producer.initTransactions() }
}

@c @implementation
public func kofka_begin_transaction(_ p: OpaquePointer?) -> kofka_err {
    run { try object(try need(p, "producer", "kofka_begin_transaction"), ProducerBox.self).producer.beginTransaction() }
}

@c @implementation
public func kofka_send_offsets_to_transaction(_ p: OpaquePointer?, _ c: OpaquePointer?, _ timeout_ms: Int32) -> kofka_err {
    run {
        let box = object(try need(p, "producer", "kofka_send_offsets_to_transaction"), ProducerBox.self)
        let consumer = object(try need(c, "consumer", "kofka_send_offsets_to_transaction"), Consumer.self)
        try box.producer.sendOffsetsToTransaction(consumer)
    }
}

@c @implementation
public func kofka_commit_transaction(_ p: OpaquePointer?, _ timeout_ms: Int32) -> kofka_err {
    run {
        let h = try need(p, "producer", "kofka_commit_transaction")
        let box = object(h, ProducerBox.self)
        try box.producer.commitTransaction(timeout: duration(timeout_ms), deliver(h, box))
    }
}

@c @implementation
public func kofka_abort_transaction(_ p: OpaquePointer?, _ timeout_ms: Int32) -> kofka_err {
    run {
        let h = try need(p, "producer", "kofka_abort_transaction")
        let box = object(h, ProducerBox.self)
        try box.producer.abortTransaction(timeout: duration(timeout_ms), deliver(h, box))
    }
}

// MARK: Consumer

@c @implementation
public func kofka_consumer_new(_ b: OpaquePointer?, _ config: UnsafePointer<UnsafePointer<CChar>?>?,
                               _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kofka_err {
    run {
        let broker = object(try need(b, "broker", "kofka_consumer_new"), Broker.self)
        let out = try need(out, "out", "kofka_consumer_new")
        out.pointee = retain(try broker.consumer(try ConsumerConfig(try configPairs(config))))
    }
}

@c @implementation
public func kofka_subscribe(_ c: OpaquePointer?, _ topics: UnsafePointer<UnsafePointer<CChar>?>?, _ count: Int) -> kofka_err {
    run {
        let consumer = object(try need(c, "consumer", "kofka_subscribe"), Consumer.self)
        guard count > 0 else { throw invalidArg("kofka_subscribe: count is \(count); at least one topic is needed") }
        let ts = try need(topics, "topics", "kofka_subscribe")
        try consumer.subscribe(try (0..<count).map { try string(ts[$0], "topics[\($0)]", "kofka_subscribe") })
    }
}

@c @implementation
public func kofka_assign(_ c: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partitions: UnsafePointer<Int32>?, _ count: Int) -> kofka_err {
    run {
        let consumer = object(try need(c, "consumer", "kofka_assign"), Consumer.self)
        let t = try string(topic, "topic", "kofka_assign")
        guard count >= 0 && count <= 100_000 else { throw invalidArg("kofka_assign: invalid partition count \(count)") }
        if count == 0 { return }
        let ps = try need(partitions, "partitions", "kofka_assign")
        try consumer.assign(t, partitions: Array(UnsafeBufferPointer(start: ps, count: count)))
    }
}

@c @implementation
public func kofka_poll(_ c: OpaquePointer?, _ timeout_ms: Int32, _ out: UnsafeMutablePointer<UnsafeMutablePointer<kofka_message>?>?) -> kofka_err {
    run {
        let consumer = object(try need(c, "consumer", "kofka_poll"), Consumer.self)
        let out = try need(out, "out", "kofka_poll")
        out.pointee = try consumer.poll(max: 1, timeout: duration(timeout_ms), discard: freeMessages, make: makeMessage).first
    }
}

@c @implementation
public func kofka_poll_batch(_ c: OpaquePointer?, _ timeout_ms: Int32, _ out: UnsafeMutablePointer<UnsafeMutablePointer<kofka_message>?>?,
                             _ max: Int, _ count: UnsafeMutablePointer<Int>?) -> kofka_err {
    run {
        let consumer = object(try need(c, "consumer", "kofka_poll_batch"), Consumer.self)
        let n = try need(count, "count", "kofka_poll_batch")
        guard max > 0 else { throw invalidArg("kofka_poll_batch: max is \(max); at least 1 is needed") }
        let out = try need(out, "out", "kofka_poll_batch")
        n.pointee = 0
        let msgs = try consumer.poll(max: max, timeout: duration(timeout_ms), discard: freeMessages, make: makeMessage)
        for (i, m) in msgs.enumerated() { out[i] = m }
        n.pointee = msgs.count
    }
}

/// Frees messages made for a poll that cannot hand them out.
func freeMessages(_ ms: [UnsafeMutablePointer<kofka_message>]) { for m in ms { free(m) } }

@c @implementation
public func kofka_message_free(_ m: UnsafeMutablePointer<kofka_message>?) {
    free(m)
}

@c @implementation
public func kofka_commit(_ c: OpaquePointer?) -> kofka_err {
    run { try object(try need(c, "consumer", "kofka_commit"), Consumer.self).commit() }
}

@c @implementation
public func kofka_commit_message(_ c: OpaquePointer?, _ m: UnsafePointer<kofka_message>?) -> kofka_err {
    run {
        let consumer = object(try need(c, "consumer", "kofka_commit_message"), Consumer.self)
        let msg = try need(m, "message", "kofka_commit_message").pointee
        let t = try string(msg.topic, "message->topic", "kofka_commit_message")
        try consumer.commit(Message(topic: t, partition: msg.partition, offset: msg.offset, timestampMs: msg.timestamp_ms, key: nil, value: nil, headers: []))
    }
}

@c @implementation
public func kofka_committed(_ c: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partition: Int32, _ offset: UnsafeMutablePointer<Int64>?) -> kofka_err {
    run {
        let consumer = object(try need(c, "consumer", "kofka_committed"), Consumer.self)
        let out = try need(offset, "offset", "kofka_committed")
        out.pointee = try consumer.committed(try string(topic, "topic", "kofka_committed"), partition)
    }
}

@c @implementation
public func kofka_position(_ c: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partition: Int32, _ offset: UnsafeMutablePointer<Int64>?) -> kofka_err {
    run {
        let consumer = object(try need(c, "consumer", "kofka_position"), Consumer.self)
        let out = try need(offset, "offset", "kofka_position")
        out.pointee = try consumer.position(try string(topic, "topic", "kofka_position"), partition)
    }
}

@c @implementation
public func kofka_seek(_ c: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partition: Int32, _ offset: Int64) -> kofka_err {
    run {
        let consumer = object(try need(c, "consumer", "kofka_seek"), Consumer.self)
        try consumer.seek(try string(topic, "topic", "kofka_seek"), partition, offset)
    }
}

@c @implementation
public func kofka_seek_to_committed(_ c: OpaquePointer?) -> kofka_err {
    run { try object(try need(c, "consumer", "kofka_seek_to_committed"), Consumer.self).seekToCommitted() }
}

@c @implementation
public func kofka_consumer_close(_ c: OpaquePointer?) -> kofka_err {
    guard let c else { LastError.clear(); return KOFKA_OK }
    let rc = run { try object(c, Consumer.self).close() }
    release(c, Consumer.self)
    return rc
}

@c @implementation
public func kofka_consumer_destroy(_ c: OpaquePointer?) {
    guard let c else { return }
    object(c, Consumer.self).destroy()
    release(c, Consumer.self)
}
