import CKofka
#if canImport(Glibc)
import Glibc
#endif
import Kofka

// The C ABI of include/kofka.h. Each function looks its handles up in the registry (Handles.swift),
// converts and checks its arguments, calls the core, and maps errors to codes; no behaviour lives
// here, and no lock is held across a call into the core.

// MARK: Broker

@c @implementation
public func kofka_broker_open(_ storage: UnsafePointer<CChar>?, _ config: UnsafePointer<UnsafePointer<CChar>?>?,
                              _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kofka_err {
    run {
        let out = try need(out, "out", "kofka_broker_open")
        let s = try string(storage, "storage", "kofka_broker_open")
        let b = try Broker(s, config: try configPairs(config))
        do {
            out.pointee = try handles.issue(.broker, .broker(b))
        } catch {
            b.close()
            throw error
        }
    }
}

@c @implementation
public func kofka_broker_close(_ b: OpaquePointer?) -> kofka_err {
    run {
        guard let b else { return }
        if case .broker(let broker) = try handles.remove(b, .broker, "kofka_broker_close") { broker.close() }
    }
}

@c @implementation
public func kofka_topic_create(_ b: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partitions: Int32) -> kofka_err {
    run {
        let br = try brokerHandle(b, "kofka_topic_create")
        try br.createTopic(try string(topic, "topic", "kofka_topic_create"), partitions: partitions)
    }
}

@c @implementation
public func kofka_topic_partitions(_ b: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partitions: UnsafeMutablePointer<Int32>?) -> kofka_err {
    run {
        let br = try brokerHandle(b, "kofka_topic_partitions")
        let out = try need(partitions, "partitions", "kofka_topic_partitions")
        out.pointee = try br.partitions(of: try string(topic, "topic", "kofka_topic_partitions"))
    }
}

@c @implementation
public func kofka_watermarks(_ b: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partition: Int32,
                             _ low: UnsafeMutablePointer<Int64>?, _ high: UnsafeMutablePointer<Int64>?) -> kofka_err {
    run {
        let br = try brokerHandle(b, "kofka_watermarks")
        let lo = try need(low, "low", "kofka_watermarks"), hi = try need(high, "high", "kofka_watermarks")
        let w = try br.watermarks(try string(topic, "topic", "kofka_watermarks"), partition)
        lo.pointee = w.low
        hi.pointee = w.high
    }
}

// MARK: Producer

@c @implementation
public func kofka_producer_new(_ b: OpaquePointer?, _ config: UnsafePointer<UnsafePointer<CChar>?>?,
                               _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kofka_err {
    run {
        let br = try brokerHandle(b, "kofka_producer_new")
        let out = try need(out, "out", "kofka_producer_new")
        let p = try br.producer(try ProducerConfig(try configPairs(config)))
        do {
            out.pointee = try handles.issue(.producer, .producer(ProducerBox(p)))
        } catch {
            try? p.close(timeout: .zero)
            throw error
        }
    }
}

/// Hands delivery reports to the C callback, with a temporary kofka_record. The callback is read
/// once, here, for the whole batch of reports the caller serves.
private func deliver(_ handle: OpaquePointer, _ box: ProducerBox) -> (DeliveryView) -> Void {
    let callback = box.callback.withLock { $0 }
    guard let cb = callback.cb else { return { _ in } }
    let cbOpaque = callback.opaque
    return { report in
        // The key and value point into the producer's queue buffer, valid during the call.
        var r = kofka_record()
        r.key = report.record.key.map { $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)! }
        r.key_len = report.record.key?.count ?? 0
        r.value = report.record.value.map { $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)! }
        r.value_len = report.record.value?.count ?? 0
        r.timestamp_ms = report.record.timestampMs
        r.partition = report.partition
        r.offset = report.offset
        r.err = report.error.map(code) ?? KOFKA_OK
        report.topic.withCString { t in
            withUnsafePointer(to: &r) { cb(handle, t, $0, UnsafeMutableRawPointer(bitPattern: report.opaque), cbOpaque) }
        }
    }
}


@c @implementation
public func kofka_producer_close(_ p: OpaquePointer?, _ timeout_ms: Int32) -> kofka_err {
    run {
        guard let p else { return }
        // The handle leaves the registry first: from here on every call with it, including a
        // second close, is KOFKA_ERR_CLOSED; calls already running keep their reference.
        guard case .producer(let box) = try handles.remove(p, .producer, "kofka_producer_close") else { return }
        defer { box.producer.retireReadyFlag() }   // the caller may free the flag once this returns
        try box.producer.closeViews(timeout: duration(timeout_ms), deliver(p, box))
    }
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

/// The most records one batch call accepts (a C array of more could not be addressed).
let maxBatchCount = Int.max / MemoryLayout<kofka_record>.stride

@c @implementation
public func kofka_send_batch(_ p: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ records: UnsafeMutablePointer<kofka_record>?, _ count: Int) -> kofka_err {
    run {
        let box = try producerHandle(p, "kofka_send_batch")
        let t = try string(topic, "topic", "kofka_send_batch")
        let count = try checkedCount(count, "kofka_send_batch: count", limit: maxBatchCount)
        if count == 0 { return }
        let recs = try need(records, "records", "kofka_send_batch")
        let maxBytes = box.producer.broker.config.messageMaxBytes
        // Pack every record into one batch; a record whose pointers or lengths are bad fails alone.
        var bytes = 0
        for i in 0..<count {
            let k = unsigned(recs[i].key_len), v = unsigned(recs[i].value_len)
            if k <= UInt(maxBytes) && v <= UInt(maxBytes) { bytes = min(bytes + Int(k + v), 1 << 31) }
        }
        var batch = RecordBatch(reservingRecords: min(count, 1 << 16), bytes: bytes)
        var parts: [Int32] = []
        var slots: [Int] = []
        parts.reserveCapacity(min(count, 1 << 16))
        slots.reserveCapacity(min(count, 1 << 16))
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
        let box = try producerHandle(p, "kofka_send_packed")
        let t = try string(topic, "topic", "kofka_send_packed")
        let count = try checkedCount(count, "kofka_send_packed: count", limit: Int.max / MemoryLayout<Int64>.stride)
        guard partition >= -1 else { throw invalidArg("kofka_send_packed: invalid partition \(partition)") }
        if count == 0 { return }
        // A record above message.max.bytes fails alone, in the core; a length no
        // message.max.bytes can allow fails the call (PackedBuffers).
        let packed = try PackedBuffers("kofka_send_packed", keys: keys, keyLens: key_lens,
                                       values: values, valueLens: value_lens, count: count)
        var batch = RecordBatch(reservingRecords: min(count, 1 << 16), bytes: min(packed.bytes, 1 << 31))
        packed.forEach { _, k, v in batch.append(timestampMs: 0, key: k, value: v, headers: nil) }
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
        let box = try producerHandle(p, "kofka_produce")
        let t = try topicName(box, topic)
        let r = try need(record, "record", "kofka_produce").pointee
        let maxBytes = box.messageMaxBytes
        // Headers are rare: they are converted (and checked) through the general path.
        let headers = r.header_count == 0 ? [] : try convertRecord(r, maxBytes: maxBytes).headers
        try checkPartition(r.partition)
        let (keyLen, valueLen) = try keyValueLengths(r, maxBytes: maxBytes)
        let key = try view(r.key, keyLen, "key"), value = try view(r.value, valueLen, "value")
        // `box` holds the producer for the call: no retain of it per record (its weak
        // reference from the queue makes every retain take the slow path).
        try Unmanaged.passUnretained(box.producer)._withUnsafeGuaranteedRef { producer in
            try producer.produce(t, partition: r.partition == -1 ? nil : r.partition, key: key, value: value,
                                 headers: headers, timestampMs: r.timestamp_ms, opaque: UInt(bitPattern: msg_opaque))
        }
    }
}

/// `topic` as a String; the one of the last call when the bytes are the same (no conversion).
private func topicName(_ box: ProducerBox, _ topic: UnsafePointer<CChar>?) throws -> String {
    let t = try need(topic, "topic", "kofka_produce")
    let len = strlen(t)
    if let name = box.lastTopic.withLock({ last -> String? in
        len > 0 && last.bytes.count == len && last.bytes.withUnsafeBufferPointer { memcmp(UnsafeRawPointer($0.baseAddress!), t, len) == 0 } ? last.name : nil
    }) {
        return name
    }
    let name = String(cString: t)
    if len <= 255 { box.lastTopic.withLock { $0 = (Array(UnsafeBufferPointer(start: t, count: len)), name) } }
    return name
}

@c @implementation
public func kofka_producer_set_delivery_cb(_ p: OpaquePointer?, _ cb: kofka_delivery_cb?, _ cb_opaque: UnsafeMutableRawPointer?) -> kofka_err {
    run {
        let box = try producerHandle(p, "kofka_producer_set_delivery_cb")
        box.callback.withLock { $0 = ProducerBox.Callback(cb: cb, opaque: cb_opaque) }
    }
}

@c @implementation
public func kofka_producer_set_ready_flag(_ p: OpaquePointer?, _ flag: UnsafeMutablePointer<Int32>?) -> kofka_err {
    // A registration that looked the handle up just before kofka_producer_close removed it
    // finds the flag retired (`.closed`): no flag outlives the close.
    run { try producerHandle(p, "kofka_producer_set_ready_flag").producer.setReadyFlag(flag) }
}

@c @implementation
public func kofka_producer_poll(_ p: OpaquePointer?, _ timeout_ms: Int32) -> Int32 {
    let box: ProducerBox
    do {
        box = try producerHandle(p, "kofka_producer_poll")
    } catch let e as KofkaError {
        LastError.set(e.message)
        return -1
    } catch {
        LastError.set("kofka_producer_poll: \(error)")
        return -1
    }
    LastError.clear()
    return Int32(clamping: box.producer.pollViews(timeout: duration(timeout_ms), deliver(p!, box)))
}

@c @implementation
public func kofka_flush(_ p: OpaquePointer?, _ timeout_ms: Int32) -> kofka_err {
    run {
        let box = try producerHandle(p, "kofka_flush")
        try box.producer.checkOpenPublic()
        try box.producer.flushViews(timeout: duration(timeout_ms), deliver(p!, box))
    }
}

@c @implementation
public func kofka_init_transactions(_ p: OpaquePointer?, _ timeout_ms: Int32) -> kofka_err {
    run { try producerHandle(p, "kofka_init_transactions").producer.initTransactions() }
}

@c @implementation
public func kofka_begin_transaction(_ p: OpaquePointer?) -> kofka_err {
    run { try producerHandle(p, "kofka_begin_transaction").producer.beginTransaction() }
}

@c @implementation
public func kofka_send_offsets_to_transaction(_ p: OpaquePointer?, _ c: OpaquePointer?, _ timeout_ms: Int32) -> kofka_err {
    run {
        let box = try producerHandle(p, "kofka_send_offsets_to_transaction")
        try box.producer.sendOffsetsToTransaction(try consumerHandle(c, "kofka_send_offsets_to_transaction"))
    }
}

@c @implementation
public func kofka_commit_transaction(_ p: OpaquePointer?, _ timeout_ms: Int32) -> kofka_err {
    run {
        let box = try producerHandle(p, "kofka_commit_transaction")
        try box.producer.commitTransactionViews(timeout: duration(timeout_ms), deliver(p!, box))
    }
}

@c @implementation
public func kofka_abort_transaction(_ p: OpaquePointer?, _ timeout_ms: Int32) -> kofka_err {
    run {
        let box = try producerHandle(p, "kofka_abort_transaction")
        try box.producer.abortTransactionViews(timeout: duration(timeout_ms), deliver(p!, box))
    }
}

@c @implementation
public func kofka_txn_requires_abort(_ p: OpaquePointer?) -> Int32 {
    do {
        let box = try producerHandle(p, "kofka_txn_requires_abort")
        LastError.clear()
        return box.producer.transactionRequiresAbort ? 1 : 0
    } catch let e as KofkaError {
        LastError.set(e.message)
        return 0
    } catch {
        LastError.set("kofka_txn_requires_abort: \(error)")
        return 0
    }
}

// MARK: Consumer

@c @implementation
public func kofka_consumer_new(_ b: OpaquePointer?, _ config: UnsafePointer<UnsafePointer<CChar>?>?,
                               _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kofka_err {
    run {
        let br = try brokerHandle(b, "kofka_consumer_new")
        let out = try need(out, "out", "kofka_consumer_new")
        let c = try br.consumer(try ConsumerConfig(try configPairs(config)))
        do {
            out.pointee = try handles.issue(.consumer, .consumer(c))
        } catch {
            c.destroy()
            throw error
        }
    }
}

@c @implementation
public func kofka_subscribe(_ c: OpaquePointer?, _ topics: UnsafePointer<UnsafePointer<CChar>?>?, _ count: Int) -> kofka_err {
    run {
        let consumer = try consumerHandle(c, "kofka_subscribe")
        let count = try checkedCount(count, "kofka_subscribe: count", limit: 100_000)
        guard count > 0 else { throw invalidArg("kofka_subscribe: count is 0; at least one topic is needed") }
        let ts = try need(topics, "topics", "kofka_subscribe")
        try consumer.subscribe(try (0..<count).map { try string(ts[$0], "topics[\($0)]", "kofka_subscribe") })
    }
}

@c @implementation
public func kofka_assign(_ c: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partitions: UnsafePointer<Int32>?, _ count: Int) -> kofka_err {
    run {
        let consumer = try consumerHandle(c, "kofka_assign")
        let t = try string(topic, "topic", "kofka_assign")
        let count = try checkedCount(count, "kofka_assign: count", limit: 100_000)
        if count == 0 { return }
        let ps = try need(partitions, "partitions", "kofka_assign")
        try consumer.assign(t, partitions: Array(UnsafeBufferPointer(start: ps, count: count)))
    }
}

@c @implementation
public func kofka_poll(_ c: OpaquePointer?, _ timeout_ms: Int32, _ out: UnsafeMutablePointer<UnsafeMutablePointer<kofka_message>?>?) -> kofka_err {
    run {
        let consumer = try consumerHandle(c, "kofka_poll")
        let out = try need(out, "out", "kofka_poll")
        out.pointee = nil
        guard let m = try consumer.pollOnePointer(timeout: duration(timeout_ms), discard: freeMessages, make: makeMessagePointer) else { return }
        liveMessages.add(CollectionOfOne(m))
        out.pointee = m.assumingMemoryBound(to: kofka_message.self)
    }
}

@c @implementation
public func kofka_poll_batch(_ c: OpaquePointer?, _ timeout_ms: Int32, _ out: UnsafeMutablePointer<UnsafeMutablePointer<kofka_message>?>?,
                             _ max: Int, _ count: UnsafeMutablePointer<Int>?) -> kofka_err {
    run {
        let consumer = try consumerHandle(c, "kofka_poll_batch")
        let n = try need(count, "count", "kofka_poll_batch")
        // max is the caller's array size: any value above max.poll.records asks for max.poll.records.
        let limit = Int(clamping: unsigned(max))
        guard limit > 0 else { throw invalidArg("kofka_poll_batch: max is 0; at least 1 is needed") }
        let out = try need(out, "out", "kofka_poll_batch")
        n.pointee = 0
        let msgs = try consumer.pollPointers(max: limit, timeout: duration(timeout_ms), discard: freeMessages, make: makeMessagePointer)
        liveMessages.add(msgs)
        for (i, m) in msgs.enumerated() { out[i] = m.assumingMemoryBound(to: kofka_message.self) }
        n.pointee = msgs.count
    }
}

@c @implementation
public func kofka_poll_lend(_ c: OpaquePointer?, _ settle: Int, _ timeout_ms: Int32,
                            _ out: UnsafeMutablePointer<UnsafeMutablePointer<kofka_message>?>?,
                            _ max: Int, _ count: UnsafeMutablePointer<Int>?, _ window_ns: UnsafeMutablePointer<UInt64>?) -> kofka_err {
    run {
        let consumer = try consumerHandle(c, "kofka_poll_lend")
        let n = try need(count, "count", "kofka_poll_lend")
        n.pointee = 0
        window_ns?.pointee = 0
        let settling = Int(clamping: unsigned(settle)), limit = Int(clamping: unsigned(max))
        if limit > 0 { _ = try need(out, "out", "kofka_poll_lend") }
        let msgs = try consumer.lendPointers(settling: settling, max: limit, timeout: duration(timeout_ms),
                                             discard: freeMessages, make: makeMessagePointer)
        guard let out else { return }
        liveMessages.add(msgs)
        for (i, m) in msgs.enumerated() { out[i] = m.assumingMemoryBound(to: kofka_message.self) }
        n.pointee = msgs.count
        window_ns?.pointee = consumer.lendWindowNs()
    }
}

/// Frees messages made for a poll that cannot hand them out (never registered as live).
func freeMessages(_ ms: [UnsafeMutableRawPointer]) { for m in ms { free(m) } }

/// `makeMessage` as the raw pointer `Consumer.pollPointers` hands around.
func makeMessagePointer(_ topic: String, _ partition: Int32, _ r: RecordView) throws -> UnsafeMutableRawPointer {
    UnsafeMutableRawPointer(try makeMessage(topic, partition, r))
}

@c @implementation
public func kofka_message_free(_ m: UnsafeMutablePointer<kofka_message>?) {
    guard let m else { LastError.clear(); return }
    guard liveMessages.remove(m) else {
        LastError.set("kofka_message_free: \(m) is not a message returned by kofka_poll/kofka_poll_batch and not yet freed; ignored")
        return
    }
    LastError.clear()
    free(m)
}

@c @implementation
public func kofka_commit(_ c: OpaquePointer?) -> kofka_err {
    run { try consumerHandle(c, "kofka_commit").commit() }
}

@c @implementation
public func kofka_commit_message(_ c: OpaquePointer?, _ m: UnsafePointer<kofka_message>?) -> kofka_err {
    run {
        let consumer = try consumerHandle(c, "kofka_commit_message")
        let msg = try need(m, "message", "kofka_commit_message").pointee
        let t = try string(msg.topic, "message->topic", "kofka_commit_message")
        // The core checks the offset against the partition; this only keeps offset + 1 representable.
        guard msg.offset < Int64.max else {
            throw KofkaError(.offsetOutOfRange, "kofka_commit_message: offset \(msg.offset) of \(t)[\(msg.partition)] has no next offset to commit")
        }
        try consumer.commit(Message(topic: t, partition: msg.partition, offset: msg.offset, timestampMs: msg.timestamp_ms, key: nil, value: nil, headers: []))
    }
}

@c @implementation
public func kofka_committed(_ c: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partition: Int32, _ offset: UnsafeMutablePointer<Int64>?) -> kofka_err {
    run {
        let consumer = try consumerHandle(c, "kofka_committed")
        let out = try need(offset, "offset", "kofka_committed")
        out.pointee = try consumer.committed(try string(topic, "topic", "kofka_committed"), partition)
    }
}

@c @implementation
public func kofka_position(_ c: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partition: Int32, _ offset: UnsafeMutablePointer<Int64>?) -> kofka_err {
    run {
        let consumer = try consumerHandle(c, "kofka_position")
        let out = try need(offset, "offset", "kofka_position")
        out.pointee = try consumer.position(try string(topic, "topic", "kofka_position"), partition)
    }
}

@c @implementation
public func kofka_seek(_ c: OpaquePointer?, _ topic: UnsafePointer<CChar>?, _ partition: Int32, _ offset: Int64) -> kofka_err {
    run {
        let consumer = try consumerHandle(c, "kofka_seek")
        try consumer.seek(try string(topic, "topic", "kofka_seek"), partition, offset)
    }
}

@c @implementation
public func kofka_seek_to_committed(_ c: OpaquePointer?) -> kofka_err {
    run { try consumerHandle(c, "kofka_seek_to_committed").seekToCommitted() }
}

@c @implementation
public func kofka_consumer_close(_ c: OpaquePointer?) -> kofka_err {
    run {
        guard let c else { return }
        if case .consumer(let consumer) = try handles.remove(c, .consumer, "kofka_consumer_close") { try consumer.close() }
    }
}

@c @implementation
public func kofka_consumer_destroy(_ c: OpaquePointer?) {
    _ = run {
        guard let c else { return }
        if case .consumer(let consumer) = try handles.remove(c, .consumer, "kofka_consumer_destroy") { consumer.destroy() }
    }
}
