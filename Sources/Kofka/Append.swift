/// The broker side of a produce request for one partition: the idempotence check, the
/// transaction bookkeeping and the append, in one storage transaction.

/// Who is writing: the identity an idempotent or transactional producer carries on each request.
struct ProducerIdentity: Sendable {
    /// The producer id.
    var pid: Int64
    /// Its epoch.
    var epoch: Int32
    /// The open transaction's number (0 = not transactional).
    var txn: Int64
}

extension Broker {
    /// Appends `records` to one partition. With `identity` the request carries `baseSeq`: a batch
    /// already written (one of the last five) is acknowledged again with its original first
    /// offset and not written twice; a gap is `.outOfOrderSequence`; an older epoch is
    /// `.producerFenced`. The sequence state is written in the same storage transaction as the
    /// records. Returns the first offset.
    func appendRequest(_ meta: TopicMeta, _ partition: Int32, _ records: RecordBatch,
                       identity: ProducerIdentity?, baseSeq: Int32) throws -> Int64 {
        try checkOpen()
        let pnum = try pnum(meta, partition)
        let fault = drawStorageFault()
        let base = try storage.write { w in
            if fault == false {
                throw KofkaError(.storage, "injected storage failure before commit on \(meta.name)[\(partition)] (fault.storage.failure.rate)", retriable: true)
            }
            guard let id = identity else { return try w.append(pnum, records, txn: 0) }
            if id.txn != 0 {
                try Transactions.checkWritable(w, id, addPartition: pnum)
            }
            let key = Keys.sequence(id.pid, pnum)
            var st = try w.get(key).map(SequenceState.decode)
            let n = Int32(records.count)
            if let s = st {
                if id.epoch < s.epoch {
                    throw KofkaError(.producerFenced, "producer id \(id.pid) epoch \(id.epoch) is fenced: partition \(meta.name)[\(partition)] has seen epoch \(s.epoch)")
                }
                if id.epoch == s.epoch {
                    if let b = s.batches.first(where: { $0.baseSeq == baseSeq && $0.count == n }) {
                        guard b.txn == id.txn else {
                            // The same sequence from another transaction is not a retry: the
                            // producer reused a sequence it should have retired (KIP-360).
                            throw KofkaError(.outOfOrderSequence, "out of order sequence for producer id \(id.pid) on \(meta.name)[\(partition)]: sequence \(baseSeq) was written by transaction \(b.txn), not \(id.txn)")
                        }
                        return b.baseOffset   // a retry of a batch already written
                    }
                    if baseSeq != s.nextSeq {
                        throw KofkaError(.outOfOrderSequence, "out of order sequence for producer id \(id.pid) on \(meta.name)[\(partition)]: expected \(s.nextSeq), got \(baseSeq)")
                    }
                } else {
                    guard baseSeq == 0 else {
                        throw KofkaError(.outOfOrderSequence, "out of order sequence for producer id \(id.pid) epoch \(id.epoch) on \(meta.name)[\(partition)]: a new epoch must start at 0, got \(baseSeq)")
                    }
                    st = SequenceState(epoch: id.epoch, nextSeq: 0, batches: [])
                }
            } else {
                guard baseSeq == 0 else {
                    throw KofkaError(.outOfOrderSequence, "out of order sequence for producer id \(id.pid) on \(meta.name)[\(partition)]: no batch seen yet, expected 0, got \(baseSeq)")
                }
                st = SequenceState(epoch: id.epoch, nextSeq: 0, batches: [])
            }
            let base = try w.append(pnum, records, txn: id.txn)
            if var s = st {
                s.lastWriteMs = clock.wallMs()
                s.nextSeq = baseSeq &+ n
                s.batches.append(.init(baseSeq: baseSeq, count: n, baseOffset: base, txn: id.txn))
                if s.batches.count > SequenceState.window { s.batches.removeFirst(s.batches.count - SequenceState.window) }
                try w.put(key, s.encode())
            }
            if id.txn != 0 {
                try Transactions.notePartitionWrite(w, id, pnum: pnum, firstOffset: base)
            }
            return base
        }
        if fault == true {
            throw KofkaError(.storage, "injected storage failure after commit on \(meta.name)[\(partition)]: the write happened, the caller cannot know (fault.storage.failure.rate)", retriable: true)
        }
        return base
    }

    /// `appendRequest` for records given one by one.
    func appendRequest(_ meta: TopicMeta, _ partition: Int32, _ records: [RecordData],
                       identity: ProducerIdentity?, baseSeq: Int32) throws -> Int64 {
        try appendRequest(meta, partition, RecordBatch(records), identity: identity, baseSeq: baseSeq)
    }

    /// A new producer id for a plain idempotent producer (epoch 0).
    func allocateProducerId() throws -> Int64 {
        try checkOpen()
        return try storage.write { w in try w.nextCounter(Keys.nextProducerId) }
    }
}
