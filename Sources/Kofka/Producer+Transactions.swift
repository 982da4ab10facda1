/// The producer side of transactions: `init_transactions`, begin, offsets sent to a
/// transaction, commit, abort — Kafka's rules (KIP-98, KIP-360, KIP-447):
///
/// * A failure whose outcome is unknown, a write the broker refused, offsets that could not be
///   sent (the consumer lost a partition it had returned records from) or a transaction that
///   outlived `transaction.timeout.ms` make the transaction **abort-only**: commit fails with
///   that error, `transactionRequiresAbort` is true, and only `abortTransaction` goes on.
/// * An abort purges records still queued by `produce` (their reports fail with `.purged`;
///   they are never written) and starts a new epoch, so sequence numbers restart and a batch of
///   the aborted transaction can never acknowledge a new one. An abort that fails after purging
///   (`.busy`) leaves the transaction abort-only: commit fails, call abort again.
/// * `.producerFenced` is fatal: a newer producer holds the transactional.id.
/// * Transaction calls do not overlap: a second one while one runs gets `.invalidState`.
extension Producer {
    /// True when the open transaction failed in a way that only an abort can resolve
    /// (librdkafka's `txn_requires_abort`): call `abortTransaction`, then start over.
    public var transactionRequiresAbort: Bool {
        state.withLock { s in
            if case .abortable = s.txn { return true }
            return false
        }
    }

    /// Runs one transaction call; a concurrent second one fails with `.invalidState`.
    private func txnCall<T>(_ name: String, _ body: (String) throws -> T) throws -> T {
        try checkOpen()
        guard let tid = config.transactionalId else {
            throw KofkaError(.invalidState, "\(name) needs transactional.id to be set")
        }
        try state.withLock { s in
            if s.txnCallInProgress {
                throw KofkaError(.invalidState, "\(name): another transaction call is in progress on producer '\(tid)'")
            }
            s.txnCallInProgress = true
        }
        defer { state.withLock { $0.txnCallInProgress = false } }
        return try body(tid)
    }

    /// The identity of the open transaction; throws what the state says otherwise.
    private func openIdentity(_ what: String) throws -> ProducerIdentity {
        try state.withLock { s in
            switch s.txn {
            case .open(let t): return ProducerIdentity(pid: s.pid, epoch: s.epoch, txn: t)
            case .abortable(_, let e), .fenced(let e): throw e
            case .uninitialized, .ready: throw KofkaError(.invalidState, "\(what) without an open transaction")
            }
        }
    }

    /// Moves the state after a failed call on transaction `id`: fatal when fenced, abort-only
    /// when the error leaves the transaction unusable; a retriable error changes nothing.
    private func txnFailed(_ e: KofkaError, _ id: ProducerIdentity) {
        state.withLock { s in
            guard s.pid == id.pid && s.epoch == id.epoch else { return }
            switch e.code {
            case .producerFenced: s.txn = .fenced(e)
            case .busy, .closed: break
            default:
                if case .open(let t) = s.txn, t == id.txn { s.txn = .abortable(t, e) }
            }
        }
    }

    /// Takes the identity the broker handed out; sequences restart at 0, no transaction is open.
    private func startEpoch(_ identity: (pid: Int64, epoch: Int32)) {
        state.withLock { s in
            s.pid = identity.pid
            s.epoch = identity.epoch
            s.nextSeq = [:]
            s.txn = .ready
        }
    }

    /// Registers `transactional.id`: bumps its epoch, fencing any earlier producer with the same
    /// id and aborting its open transaction.
    public func initTransactions() throws {
        try txnCall("init_transactions") { tid in
            try state.withLock { s in
                guard case .uninitialized = s.txn else {
                    throw KofkaError(.invalidState, "init_transactions was already called on producer '\(tid)'")
                }
            }
            startEpoch(try broker.initTransactions(tid))
        }
    }

    /// Opens a transaction.
    public func beginTransaction() throws {
        try txnCall("begin_transaction") { tid in
            let (pid, epoch) = try state.withLock { s -> (Int64, Int32) in
                switch s.txn {
                case .ready: return (s.pid, s.epoch)
                case .uninitialized: throw KofkaError(.invalidState, "begin_transaction before init_transactions on producer '\(tid)'")
                case .open: throw KofkaError(.invalidState, "a transaction is already open on producer '\(tid)'")
                case .abortable(_, let e): throw KofkaError(.invalidState, "the previous transaction failed and must be aborted first: \(e.message)")
                case .fenced(let e): throw e
                }
            }
            do {
                let txn = try broker.beginTransaction(pid: pid, epoch: epoch, timeoutMs: config.transactionTimeoutMs)
                state.withLock { s in
                    if s.pid == pid && s.epoch == epoch {
                        s.txn = .open(txn)
                        s.offsetsUnsent = false
                        s.offsetsSent = [:]
                        s.offsetsFrom = []
                    }
                }
            } catch let e as KofkaError where e.code == .producerFenced {
                state.withLock { $0.txn = .fenced(e) }
                throw e
            }
        }
    }

    /// Adds the consumer's current positions to the open transaction: they become the group's
    /// committed offsets if and only if the transaction commits. Fails with `.rebalanced` — and
    /// makes the transaction abort-only — when the consumer is no longer the owner in its
    /// group's generation, or lost a partition it had returned records from since its last
    /// commit (those records' outputs must not commit without their offsets). Offsets sent to
    /// a transaction that then aborts or fails were not committed: the records stay
    /// uncommitted until a transaction holding their offsets commits.
    public func sendOffsetsToTransaction(_ consumer: Consumer) throws {
        try txnCall("send_offsets_to_transaction") { _ in
            let id = try openIdentity("send_offsets_to_transaction")
            do {
                try consumer.handOverOffsets { group, memberId, generation, offsets in
                    try broker.addOffsetsToTransaction(id, group: group, memberId: memberId, generation: generation, offsets: offsets)
                    state.withLock { s in
                        for (tp, off) in offsets { s.offsetsSent[group, default: [:]][tp] = off }
                        s.offsetsFrom.append((consumer, offsets))
                    }
                }
                state.withLock { $0.offsetsUnsent = false }
            } catch let e as KofkaError {
                if e.code == .busy { state.withLock { $0.offsetsUnsent = true } }
                txnFailed(e, id)
                throw e
            }
        }
    }

    /// Commits the open transaction, after delivering everything queued by `produce` (serving
    /// their reports to `handler` on this thread). A flush that times out leaves the transaction
    /// open (call again); a failed queued record makes it abort-only.
    public func commitTransaction(timeout: Duration? = nil, _ handler: (DeliveryReport) -> Void = { _ in }) throws {
        try commitTransactionViews(timeout: timeout) { handler($0.report) }
    }

    /// `commitTransaction` with each delivery report as views valid during the call.
    package func commitTransactionViews(timeout: Duration? = nil, _ handler: (DeliveryView) -> Void) throws {
        try txnCall("commit_transaction") { _ in
            _ = try openIdentity("commit_transaction")
            try flushViews(timeout: timeout, handler)
            // A transaction past its transaction.timeout.ms must not commit: abort expired ones first.
            broker.sweepExpiredTransactions(intervalMs: 0)
            let id = try openIdentity("commit_transaction")
            try state.withLock { s in
                if s.offsetsUnsent {
                    throw KofkaError(.invalidState, "send_offsets_to_transaction failed in this transaction and has not succeeded since: call it again, or abort the transaction")
                }
            }
            state.withLock { $0.txnEnding = true }
            defer { state.withLock { $0.txnEnding = false } }
            do {
                try broker.commitTransaction(id)
                let (sent, from) = state.withLock { s in
                    if s.pid == id.pid && s.epoch == id.epoch, case .open(id.txn) = s.txn { s.txn = .ready }
                    defer { s.offsetsSent = [:]; s.offsetsFrom = [] }
                    return (s.offsetsSent, s.offsetsFrom)
                }
                for f in from { f.consumer.transactionCommitted(f.offsets) }
                for (group, offsets) in sent.sorted(by: { $0.key < $1.key }) { interceptors.commit(group: group, offsets, error: nil) }
            } catch let e as KofkaError {
                if e.code != .storage { txnFailed(e, id) }
                throw e
            }
        }
    }

    /// Aborts the open (or abort-only) transaction: records still queued for it fail with
    /// `.purged` (reports served to `handler` on this thread) and are never written; its written
    /// records are skipped by read_committed readers forever; its offsets are discarded. A new
    /// epoch starts. Consumers are not rewound (see `Consumer.seekToCommitted`).
    public func abortTransaction(timeout: Duration? = nil, _ handler: (DeliveryReport) -> Void = { _ in }) throws {
        try abortTransactionViews(timeout: timeout) { handler($0.report) }
    }

    /// `abortTransaction` with each delivery report as views valid during the call.
    package func abortTransactionViews(timeout: Duration? = nil, _ handler: (DeliveryView) -> Void) throws {
        try txnCall("abort_transaction") { tid in
            let id = try state.withLock { s -> ProducerIdentity in
                switch s.txn {
                case .open(let t):
                    // From here the queued records are purged: should the abort itself fail
                    // (a held lock), the transaction must not commit without them, so it is
                    // abort-only until an abort succeeds (librdkafka: commit in state
                    // AbortingTransaction fails with _STATE).
                    s.txn = .abortable(t, KofkaError(.invalidState, "transaction \(t) of '\(tid)' is being aborted and its queued records were purged: only abort_transaction can end it"))
                    s.txnEnding = true
                    return ProducerIdentity(pid: s.pid, epoch: s.epoch, txn: t)
                case .abortable(let t, _):
                    s.txnEnding = true
                    return ProducerIdentity(pid: s.pid, epoch: s.epoch, txn: t)
                case .fenced(let e): throw e
                case .uninitialized, .ready: throw KofkaError(.invalidState, "abort_transaction without an open transaction on producer '\(tid)'")
                }
            }
            defer { state.withLock { $0.txnEnding = false } }
            queue.purge(txn: id.txn, KofkaError(.purged, "transaction \(id.txn) of '\(tid)' was aborted before the record was written; it was not written"))
            _ = withoutActuallyEscaping(handler) { h in queue.serve(deadline: 0, reporting(h)) }
            do {
                startEpoch(try broker.abortTransaction(id))
            } catch let e as KofkaError {
                if e.code == .producerFenced { state.withLock { $0.txn = .fenced(e) } }
                throw e
            } catch let c as Broker.TransactionCommitted {
                // An earlier commit whose outcome was unknown took effect: the transaction
                // stands committed, offsets included.
                let from = state.withLock { s in
                    if s.pid == id.pid && s.epoch == id.epoch { s.txn = .ready }
                    defer { s.offsetsSent = [:]; s.offsetsFrom = [] }
                    return s.offsetsFrom
                }
                for f in from { f.consumer.transactionCommitted(f.offsets) }
                throw KofkaError(.invalidState, "transaction \(c.txn) of '\(c.transactionalId)' had committed (a commit reported an unknown outcome and took effect): it cannot be aborted; its records and offsets stand")
            }
        }
    }

    /// Runs `body` in a transaction: commits when it returns, aborts and rethrows when it throws.
    ///
    /// ```swift
    /// try producer.transaction { _ = try producer.send("out", record) }
    /// ```
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try beginTransaction()
        do {
            let v = try body()
            try commitTransaction()
            return v
        } catch {
            try? abortTransaction()
            throw error
        }
    }
}
