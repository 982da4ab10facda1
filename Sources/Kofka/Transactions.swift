/// The broker side of transactions: `transactional.id` → a stable producer id whose epoch every
/// `init_transactions` bumps (fencing the previous holder and aborting its open transaction);
/// begin / commit / abort; offsets sent to a transaction; and the bookkeeping read_committed
/// consumers use: per partition, the open transactions' first offsets (the last stable offset is
/// the smallest) and an index of aborted transactions (records tagged with an aborted
/// transaction number are skipped forever). Transaction markers do not occupy offsets.
enum Transactions {
    /// Checks that `id` may still write in its transaction; registers nothing.
    static func checkWritable(_ w: any StorageReader, _ id: ProducerIdentity, addPartition pnum: Int64? = nil) throws {
        guard let b = try w.get(Keys.producer(id.pid)) else {
            throw KofkaError(.producerFenced, "producer id \(id.pid) is unknown to the broker")
        }
        let ps = try ProducerState.decode(b)
        if ps.epoch != id.epoch {
            throw KofkaError(.producerFenced, "transactional producer '\(ps.transactionalId)' epoch \(id.epoch) is fenced by epoch \(ps.epoch)")
        }
        if ps.openTxn != id.txn {
            if ps.lastForcedAbortTxn == id.txn, let code = ErrorCode(rawValue: ps.lastForcedAbortReason) {
                throw KofkaError(code, code == .txnTimedOut
                    ? "transaction \(id.txn) of '\(ps.transactionalId)' was aborted: open longer than transaction.timeout.ms"
                    : "transaction \(id.txn) of '\(ps.transactionalId)' was aborted")
            }
            throw KofkaError(.invalidState, "transaction \(id.txn) of '\(ps.transactionalId)' is not open")
        }
    }

    /// Records that the transaction wrote to `pnum` starting at `firstOffset` (first write only).
    static func notePartitionWrite(_ w: any StorageWriter, _ id: ProducerIdentity, pnum: Int64, firstOffset: Int64) throws {
        guard let b = try w.get(Keys.producer(id.pid)) else { return }
        var ps = try ProducerState.decode(b)
        guard !ps.txnPartitions.contains(pnum) else { return }
        ps.txnPartitions.append(pnum)
        try w.putInt64(Keys.openTxn(pnum, id.txn), firstOffset)
        try w.put(Keys.producer(id.pid), ps.encode())
    }

    /// Ends the producer's open transaction (if any) in `ps`: commit applies its offsets; abort
    /// indexes its partitions as aborted. `forced` marks an abort the producer did not ask for.
    static func endOpen(_ w: any StorageWriter, pid: Int64, _ ps: inout ProducerState, commit: Bool, forced: ErrorCode? = nil) throws {
        let txn = ps.openTxn
        guard txn != 0 else { return }
        for pnum in ps.txnPartitions {
            let first = try w.getInt64(Keys.openTxn(pnum, txn)) ?? 0
            try w.delete(Keys.openTxn(pnum, txn))
            if !commit {
                let last = try w.highWatermark(pnum) - 1
                try w.putInt64(Keys.abortedTxn(pnum, last: last, txn), first)
            }
        }
        for o in ps.txnOffsets {
            try w.delete(Keys.pendingOffset(o.group, o.tp))
            if commit { try w.putInt64(Keys.offset(o.group, o.tp), o.offset) }
        }
        if let forced {
            ps.lastForcedAbortTxn = txn
            ps.lastForcedAbortReason = forced.rawValue
        }
        ps.openTxn = 0
        ps.txnPartitions = []
        ps.txnOffsets = []
        try w.delete(Keys.txnDeadline(pid))
    }
}

extension Broker {
    /// `init_transactions`: the stable producer id of `transactionalId` with its epoch bumped.
    /// Aborts the previous holder's open transaction; the previous holder is fenced from then on.
    func initTransactions(_ transactionalId: String) throws -> (pid: Int64, epoch: Int32) {
        try checkOpen()
        return try storage.write { w in
            let pid: Int64
            if let existing = try w.getInt64(Keys.transactionalId(transactionalId)) {
                pid = existing
            } else {
                pid = try w.nextCounter(Keys.nextProducerId)
                try w.putInt64(Keys.transactionalId(transactionalId), pid)
            }
            var ps = try w.get(Keys.producer(pid)).map(ProducerState.decode) ?? ProducerState(epoch: -1, transactionalId: transactionalId)
            try Transactions.endOpen(w, pid: pid, &ps, commit: false, forced: .producerFenced)
            ps.epoch &+= 1
            if ps.epoch < 0 { ps.epoch = 0 }
            ps.transactionalId = transactionalId
            try w.put(Keys.producer(pid), ps.encode())
            return (pid, ps.epoch)
        }
    }

    /// Opens a transaction for (pid, epoch); returns its number.
    func beginTransaction(pid: Int64, epoch: Int32, timeoutMs: Int) throws -> Int64 {
        try checkOpen()
        return try storage.write { w in
            guard let b = try w.get(Keys.producer(pid)) else { throw KofkaError(.producerFenced, "producer id \(pid) is unknown to the broker") }
            var ps = try ProducerState.decode(b)
            if ps.epoch != epoch {
                throw KofkaError(.producerFenced, "transactional producer '\(ps.transactionalId)' epoch \(epoch) is fenced by epoch \(ps.epoch)")
            }
            if ps.openTxn != 0 { try Transactions.endOpen(w, pid: pid, &ps, commit: false) }
            let txn = try w.nextCounter(Keys.nextTxn)
            let now = clock.wallMs()
            ps.openTxn = txn
            ps.txnStartMs = now
            try w.putInt64(Keys.txnDeadline(pid), now + Int64(timeoutMs))
            try w.put(Keys.producer(pid), ps.encode())
            return txn
        }
    }

    /// Commits or aborts transaction `txn` of (pid, epoch).
    func endTransaction(_ id: ProducerIdentity, commit: Bool) throws {
        try checkOpen()
        try storage.write { w in
            try Transactions.checkWritable(w, id)
            guard let b = try w.get(Keys.producer(id.pid)) else { return }
            var ps = try ProducerState.decode(b)
            try Transactions.endOpen(w, pid: id.pid, &ps, commit: commit)
            try w.put(Keys.producer(id.pid), ps.encode())
        }
    }

    /// Adds a consumer's positions to the open transaction, fenced by the group generation
    /// (KIP-447): the member must be current and hold every partition.
    func addOffsetsToTransaction(_ id: ProducerIdentity, group: String, memberId: String?, generation: Int32,
                                 offsets: [(TopicPartition, Int64)]) throws {
        try checkOpen()
        try storage.write { w in
            try Transactions.checkWritable(w, id)
            if let memberId {
                let gs = try w.get(Keys.group(group)).map(GroupState.decode) ?? GroupState()
                try Groups.checkOwner(gs, group: group, memberId: memberId, generation: generation, partitions: offsets.map(\.0))
            }
            guard let b = try w.get(Keys.producer(id.pid)) else { return }
            var ps = try ProducerState.decode(b)
            for (tp, off) in offsets {
                ps.txnOffsets.removeAll { $0.group == group && $0.tp == tp }
                ps.txnOffsets.append(.init(group: group, tp: tp, offset: off))
                try w.putInt64(Keys.pendingOffset(group, tp), id.pid)
            }
            try w.put(Keys.producer(id.pid), ps.encode())
        }
    }
}
