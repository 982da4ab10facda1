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

    /// The last stable offset of partition `pnum`: the first offset of its oldest open
    /// transaction, or the high watermark `hw` when none is open. read_committed readers stop there.
    static func lastStableOffset(_ r: any StorageReader, _ pnum: Int64, hw: Int64) throws -> Int64 {
        var end = hw
        let (lo, hi) = Keys.openTxnRange(pnum)
        for e in try r.scan(from: lo, to: hi) {
            var rd = BinaryReader(e.value)
            end = Swift.min(end, try rd.i64())
        }
        return end
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
    static func endOpen(_ w: any StorageWriter, pid: Int64, _ ps: inout ProducerState, commit: Bool, forced: ErrorCode? = nil, now: Int64) throws {
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
            if commit { try w.putCommittedOffset(Keys.offset(o.group, o.tp), o.offset, now: now) }
        }
        if let forced {
            ps.lastForcedAbortTxn = txn
            ps.lastForcedAbortReason = forced.rawValue
        }
        if commit { ps.lastCommittedTxn = txn }
        ps.openTxn = 0
        ps.txnPartitions = []
        ps.txnOffsets = []
        ps.lastUsedMs = now
        try w.delete(Keys.txnDeadline(pid))
    }

    /// Aborts the open transaction of `pid` if it has outlived its deadline (`now` in wall ms).
    /// Returns true when the producer has no open transaction afterwards (none was open, or
    /// this call aborted it), so whatever waited on it (a read_committed reader, a group member
    /// waiting for pending offsets) may go on.
    @discardableResult
    static func expireIfDue(_ w: any StorageWriter, pid: Int64, now: Int64) throws -> Bool {
        guard let b = try w.get(Keys.producer(pid)) else {
            try w.delete(Keys.txnDeadline(pid))
            return true
        }
        var ps = try ProducerState.decode(b)
        guard ps.openTxn != 0 else {
            try w.delete(Keys.txnDeadline(pid))
            return true
        }
        guard let deadline = try w.getInt64(Keys.txnDeadline(pid)), deadline <= now else { return false }
        try endOpen(w, pid: pid, &ps, commit: false, forced: .txnTimedOut, now: now)
        try w.put(Keys.producer(pid), ps.encode())
        return true
    }

    /// Starts a new epoch for a transactional producer, fencing every holder of an older one
    /// (KIP-360: also after an abort, so sequence numbers restart and can never match a batch
    /// of the aborted transaction). When the epoch is exhausted the transactional.id gets a new
    /// producer id, as Kafka does. Returns the producer id and epoch to use from now on.
    static func bumpEpoch(_ w: any StorageWriter, pid: Int64, _ ps: inout ProducerState) throws -> (pid: Int64, epoch: Int32) {
        guard ps.epoch < Int32.max else {
            let fresh = try w.nextCounter(Keys.nextProducerId)
            try w.putInt64(Keys.transactionalId(ps.transactionalId), fresh)
            try w.delete(Keys.producer(pid))
            ps = ProducerState(epoch: 0, transactionalId: ps.transactionalId)
            try w.put(Keys.producer(fresh), ps.encode())
            return (fresh, 0)
        }
        ps.epoch += 1
        try w.put(Keys.producer(pid), ps.encode())
        return (pid, ps.epoch)
    }

    /// Opens a new transaction for `pid` (none may be open) with its deadline; returns its number.
    static func open(_ w: any StorageWriter, pid: Int64, _ ps: inout ProducerState, timeoutMs: Int, now: Int64) throws -> Int64 {
        let txn = try w.nextCounter(Keys.nextTxn)
        ps.lastUsedMs = now
        ps.openTxn = txn
        ps.txnStartMs = now
        try w.putInt64(Keys.txnDeadline(pid), now + Int64(timeoutMs))
        try w.put(Keys.producer(pid), ps.encode())
        return txn
    }

    /// Throws `.producerFenced` unless (pid, epoch) is the producer's current identity.
    static func checkEpoch(_ ps: ProducerState?, pid: Int64, epoch: Int32) throws -> ProducerState {
        guard let ps else { throw KofkaError(.producerFenced, "producer id \(pid) is unknown to the broker") }
        if ps.epoch != epoch {
            throw KofkaError(.producerFenced, "transactional producer '\(ps.transactionalId)' epoch \(epoch) is fenced by epoch \(ps.epoch)")
        }
        return ps
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
            ps.transactionalId = transactionalId
            try Transactions.endOpen(w, pid: pid, &ps, commit: false, forced: .producerFenced, now: clock.wallMs())
            ps.lastUsedMs = clock.wallMs()
            return try Transactions.bumpEpoch(w, pid: pid, &ps)
        }
    }

    /// Opens a transaction for (pid, epoch); returns its number.
    func beginTransaction(pid: Int64, epoch: Int32, timeoutMs: Int) throws -> Int64 {
        try checkOpen()
        return try storage.write { w in
            var ps = try Transactions.checkEpoch(try w.get(Keys.producer(pid)).map(ProducerState.decode), pid: pid, epoch: epoch)
            let now = clock.wallMs()
            if ps.openTxn != 0 { try Transactions.endOpen(w, pid: pid, &ps, commit: false, now: now) }
            return try Transactions.open(w, pid: pid, &ps, timeoutMs: timeoutMs, now: now)
        }
    }

    /// Commits transaction `txn` of (pid, epoch): its records become visible to read_committed
    /// readers and its offsets become the groups' committed offsets, in one storage transaction.
    func commitTransaction(_ id: ProducerIdentity) throws {
        try checkOpen()
        try storage.write { w in
            // A commit retried after an unknown outcome (the storage failed as it committed)
            // finds it committed: the same result again, as Kafka answers a retried EndTxn.
            if let b = try w.get(Keys.producer(id.pid)), case let ps = try ProducerState.decode(b),
               ps.epoch == id.epoch, ps.openTxn != id.txn, ps.lastCommittedTxn == id.txn { return }
            try Transactions.checkWritable(w, id)
            guard let b = try w.get(Keys.producer(id.pid)) else { return }
            var ps = try ProducerState.decode(b)
            try Transactions.endOpen(w, pid: id.pid, &ps, commit: true, now: clock.wallMs())
            try w.put(Keys.producer(id.pid), ps.encode())
        }
    }

    /// Aborts transaction `txn` of (pid, epoch) — or nothing, if the broker already aborted it
    /// (timeout) — and starts a new epoch, in one storage transaction. Returns the identity to
    /// use from now on. Throws `.producerFenced` if a newer producer holds the id, and
    /// `TransactionCommitted` if the transaction committed (a commit whose outcome its producer
    /// did not learn): it stays committed.
    func abortTransaction(_ id: ProducerIdentity) throws -> (pid: Int64, epoch: Int32) {
        try checkOpen()
        return try storage.write { w in
            var ps = try Transactions.checkEpoch(try w.get(Keys.producer(id.pid)).map(ProducerState.decode), pid: id.pid, epoch: id.epoch)
            if ps.openTxn != id.txn && ps.lastCommittedTxn == id.txn { throw TransactionCommitted(txn: id.txn, transactionalId: ps.transactionalId) }
            if ps.openTxn != 0 { try Transactions.endOpen(w, pid: id.pid, &ps, commit: false, now: clock.wallMs()) }
            return try Transactions.bumpEpoch(w, pid: id.pid, &ps)
        }
    }

    /// What `abortTransaction` throws for a transaction that had committed.
    struct TransactionCommitted: Error {
        var txn: Int64
        var transactionalId: String
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

    /// Aborts every transaction (of any producer, in any process) open longer than its
    /// `transaction.timeout.ms`. Called by consumers and producers as they work, at most every
    /// `intervalMs` per broker handle, so a crashed producer cannot block read_committed readers.
    func sweepExpiredTransactions(intervalMs: Int = 100) {
        guard sweepDue(intervalMs: intervalMs), !closed else { return }
        let now = clock.wallMs()
        do {
            let expired = try storage.read { r in
                try r.scan(from: Keys.txnDeadlineRange.0, to: Keys.txnDeadlineRange.1).compactMap { e -> Int64? in
                    var rd = BinaryReader(e.value)
                    let deadline = try rd.i64()
                    guard deadline <= now, let pid = Int64(e.key.dropFirst(2), radix: 16) else { return nil }
                    return pid
                }
            }
            guard !expired.isEmpty else { return }
            try storage.write { w in
                for pid in expired { try Transactions.expireIfDue(w, pid: pid, now: now) }
            }
        } catch {
            // A sweep is best effort: a busy file or a closed handle just means another handle will do it.
        }
    }
}

// MARK: What the Kafka wire protocol needs (KofkaWire)

extension Broker {
    /// The open transaction of (pid, epoch). Throws `.producerFenced` for another epoch,
    /// `.txnTimedOut` when the broker aborted it for its timeout, `.invalidState` when none is open.
    func openTransaction(pid: Int64, epoch: Int32) throws -> Int64 {
        try checkOpen()
        return try storage.read { r in
            let ps = try Transactions.checkEpoch(try r.get(Keys.producer(pid)).map(ProducerState.decode), pid: pid, epoch: epoch)
            guard ps.openTxn != 0 else {
                if ps.lastForcedAbortTxn != 0, ps.lastForcedAbortReason == ErrorCode.txnTimedOut.rawValue {
                    throw KofkaError(.txnTimedOut, "the transaction of '\(ps.transactionalId)' was aborted: open longer than its transaction.timeout.ms")
                }
                throw KofkaError(.invalidState, "producer '\(ps.transactionalId)' has no open transaction")
            }
            return ps.openTxn
        }
    }

    /// Kafka's InitProducerId for a transactional.id: `initTransactions` (a new epoch that
    /// fences the previous holder and aborts its open transaction). With `current` (KIP-360: a
    /// producer bumping its own epoch after an abortable error) the id must still be held by
    /// exactly that producer id and epoch, else `.producerFenced`.
    package func wireInitTransactions(_ transactionalId: String, current: (pid: Int64, epoch: Int32)?) throws -> (pid: Int64, epoch: Int32) {
        if let current {
            try checkOpen()
            let held = try storage.read { r -> (Int64, Int32)? in
                guard let pid = try r.getInt64(Keys.transactionalId(transactionalId)),
                      let b = try r.get(Keys.producer(pid)) else { return nil }
                return (pid, try ProducerState.decode(b).epoch)
            }
            guard let held, held.0 == current.pid, held.1 == current.epoch else {
                throw KofkaError(.producerFenced, "transactional id '\(transactionalId)' is no longer held by producer id \(current.pid) epoch \(current.epoch)")
            }
        }
        return try initTransactions(transactionalId)
    }

    /// A producer id for an idempotent (not transactional) Kafka producer, epoch 0.
    package func wireAllocateProducerId() throws -> Int64 { try allocateProducerId() }

    /// Opens a transaction for (pid, epoch) unless one is open (Kafka opens one implicitly with
    /// the first AddPartitionsToTxn or AddOffsetsToTxn); returns its number.
    package func wireEnsureTransaction(pid: Int64, epoch: Int32, timeoutMs: Int) throws -> Int64 {
        try checkOpen()
        return try storage.write { w in
            var ps = try Transactions.checkEpoch(try w.get(Keys.producer(pid)).map(ProducerState.decode), pid: pid, epoch: epoch)
            if ps.openTxn != 0 { return ps.openTxn }
            return try Transactions.open(w, pid: pid, &ps, timeoutMs: timeoutMs, now: clock.wallMs())
        }
    }

    /// Kafka's EndTxn: commits or aborts the open transaction of (pid, epoch). Unlike a library
    /// producer's abort, an abort here keeps the epoch: Kafka clients bump it themselves with
    /// InitProducerId(pid, epoch) when they need to (KIP-360). Nothing open: a commit of a
    /// transaction the broker aborted for its timeout is `.txnTimedOut`; anything else succeeds
    /// (an abort of an aborted transaction; an empty transaction).
    package func wireEndTransaction(pid: Int64, epoch: Int32, commit: Bool) throws {
        try checkOpen()
        try storage.write { w in
            var ps = try Transactions.checkEpoch(try w.get(Keys.producer(pid)).map(ProducerState.decode), pid: pid, epoch: epoch)
            let now = clock.wallMs()
            if ps.openTxn == 0 {
                if commit, ps.lastForcedAbortTxn != 0, ps.lastForcedAbortReason == ErrorCode.txnTimedOut.rawValue {
                    throw KofkaError(.txnTimedOut, "the transaction of '\(ps.transactionalId)' was aborted: open longer than its transaction.timeout.ms")
                }
                return
            }
            try Transactions.endOpen(w, pid: pid, &ps, commit: commit, now: now)
            try w.put(Keys.producer(pid), ps.encode())
        }
    }

    /// Kafka's TxnOffsetCommit: offsets added to the open transaction of (pid, epoch), fenced by
    /// the group generation when `memberId` is given (KIP-447), as `send_offsets_to_transaction`.
    package func wireTxnOffsetCommit(pid: Int64, epoch: Int32, group: String, memberId: String?, generation: Int32,
                                     offsets: [(TopicPartition, Int64)]) throws {
        let txn = try openTransaction(pid: pid, epoch: epoch)
        try addOffsetsToTransaction(ProducerIdentity(pid: pid, epoch: epoch, txn: txn), group: group, memberId: memberId,
                                    generation: generation, offsets: offsets)
    }

    /// Aborts transactions open longer than their timeout (at most every `intervalMs` per handle).
    package func wireSweepTransactions(intervalMs: Int = 100) { sweepExpiredTransactions(intervalMs: intervalMs) }
}
