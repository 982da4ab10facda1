#if canImport(Glibc)
import Glibc
#endif

/// A consumer: reads records from assigned partitions, by manual assignment or as a member of a
/// consumer group, and commits offsets as its delivery mode says.
///
/// * at-most-once: a poll commits the new positions *before* it returns the records; if that
///   commit fails, the poll returns nothing and the positions do not move.
/// * at-least-once: what a poll returned is committed at the next poll and at `close()`.
/// * exactly-once: read_committed, no automatic commits; offsets go through a producer
///   transaction (`Producer.sendOffsetsToTransaction`).
///
/// Threads: every method may be called from any thread. The consumer's state lives in one
/// `Mutex` that is never held across storage; its storage operations (group maintenance, fetch,
/// commit) run one at a time, but a poll waiting for records holds nothing, so `commit`,
/// `position`, `close` and `destroy` on another thread never wait for it — and a waiting poll
/// returns (with nothing) as soon as the consumer is closed.
///
/// ```swift
/// let c = try broker.consumer(ConsumerConfig(groupId: "billing"))
/// try c.subscribe(["orders"])
/// for m in try c.pollBatch(max: 100, timeout: .seconds(1)) { print(m.offset) }
/// try c.close()
/// ```
public final class Consumer: Sendable {
    /// The broker it reads from.
    public let broker: Broker
    /// Its settings.
    public let config: ConsumerConfig

    enum Subscription: Sendable { case none, manual, group([String]) }

    /// Everything that changes, in one place (guarded by `state`).
    struct State: Sendable {
        var closed = false
        var subscription = Subscription.none
        /// Partitions it may fetch: the manual assignment, or what it holds in its group.
        var assignment: [TopicPartition] = []
        /// Next offset to return per partition; absent until resolved (committed or reset).
        var positions: PositionMap = [:]
        /// Partitions whose position an automatic commit has still to write: records were
        /// returned from them, or their position was set by `auto.offset.reset` (Kafka commits
        /// every consumed position, so the next member starts where this one stood).
        var uncommitted: PartitionSet = []
        /// Partitions records were returned from since their offsets were last committed or
        /// handed to a transaction.
        var returned: PartitionSet = []
        /// Partitions the group took away while they were in `returned`: the records returned
        /// from them cannot be committed by this member any more, so a transaction that
        /// processed them must abort (cleared by `seekToCommitted` and by a new subscription).
        var revokedWithUncommitted: Set<TopicPartition> = []
        var memberId: String?
        var generation: Int32 = -1
        /// When the member last heartbeated (the broker clock's monotonic ns).
        var lastSyncNs: UInt64 = 0
        /// Records read ahead of the application, not yet returned.
        var prefetched = PrefetchQueue()
        /// Next offset to read from storage per partition: ahead of `positions` while records
        /// are read ahead; absent when it equals the position.
        var fetchPositions: [TopicPartition: Int64] = [:]
        /// When the last automatic commit ran (monotonic ns).
        var lastAutoCommitNs: UInt64 = 0
        /// Round robin of the partition fetched first.
        var rotate = 0
        /// Records the last `lend` handed out as returned at once (at-most-once, or a consume
        /// interceptor): settling them changes nothing more.
        var lentReturned = 0
    }

    private let state = Locked(State())
    /// The interceptors it calls (those of its broker when it was opened).
    let interceptors: InterceptorChain
    /// Runs this consumer's storage operations one at a time (used as a plain mutex; never
    /// held while a poll waits for records).
    private let ops = Monitor()

    init(broker: Broker, config: ConsumerConfig) {
        self.broker = broker
        self.config = config
        interceptors = broker.interceptorChain
    }

    private var autoCommit: Bool { config.enableAutoCommit && config.groupId != nil && config.deliveryMode != .exactlyOnce }
    private var heartbeatIntervalNs: UInt64 { UInt64(max(10, min(config.sessionTimeoutMs / 3, 1000))) * 1_000_000 }
    private var isClosed: Bool { state.withLock { $0.closed } }

    private func checkOpen() throws {
        if isClosed { throw KofkaError(.closed, "the consumer is closed") }
        try broker.checkOpen()
    }

    private func requireGroup(_ what: String) throws -> String {
        guard let g = config.groupId else { throw KofkaError(.invalidState, "\(what) needs group.id to be set") }
        return g
    }

    /// Runs `body` as this consumer's only storage operation, on a copy of the state that is
    /// stored back when it ends (also when it throws: each step changes the copy only after its
    /// storage call succeeded). `closed` is never written back (close sets it without waiting).
    private func withOps<T>(_ body: (inout State) throws -> T) rethrows -> T {
        try ops.locked {
            // The fields only operations read are moved out of the shared state, not shared with
            // it: a poll that changes them (the read-ahead queue above all) then changes storage
            // it alone holds, instead of copying it on every call. What other threads read
            // (closed, assignment, positions, membership) stays in place.
            var s = state.withLock { live -> State in
                let copy = live
                live.prefetched = PrefetchQueue()
                live.fetchPositions = [:]
                live.uncommitted = []
                live.returned = []
                live.revokedWithUncommitted = []
                return copy
            }
            defer {
                state.withLock { live in
                    let closed = live.closed
                    live = s
                    live.closed = closed
                }
            }
            return try body(&s)
        }
    }

    /// `withOps` for a call that must not run once the consumer is closed: it answers `.closed`
    /// even when the close happened while it waited for its turn (never, say, `.rebalanced`
    /// because the close had already left the group).
    private func whileOpen<T>(_ body: (inout State) throws -> T) throws -> T {
        try withOps { s in
            try checkOpen()
            return try body(&s)
        }
    }

    // MARK: Assignment

    /// Joins `group.id` and subscribes to `topics`; the group assigns partitions.
    public func subscribe(_ topics: [String]) throws {
        try checkOpen()
        let group = try requireGroup("subscribe")
        guard !topics.isEmpty else { throw KofkaError(.invalidArg, "subscribe needs at least one topic") }
        try whileOpen { s in
            if case .manual = s.subscription { throw KofkaError(.invalidState, "the consumer has a manual assignment; subscribe is not allowed") }
            for t in topics { _ = try broker.topicMeta(t, autoCreate: true) }
            if case .group = s.subscription, let id = s.memberId {
                try broker.leaveGroup(group, memberId: id, commits: autoCommitOffsets(s))
            }
            s.subscription = .group(Array(Set(topics)).sorted())
            s.revokedWithUncommitted = []
            try join(&s)
        }
    }

    /// Joins as a new member; positions start again from the group's committed offsets.
    private func join(_ s: inout State) throws {
        guard case .group(let topics) = s.subscription, let group = config.groupId else { return }
        // Records returned and not committed can no longer be committed by the new member.
        if !autoCommit { s.revokedWithUncommitted.formUnion(s.returned) }
        var rng = SplitMix64(seed: monoNs() ^ UInt64(UInt(bitPattern: ObjectIdentifier(self).hashValue)) ^ UInt64(getpid()))
        let id = config.clientId + "-" + rng.unitHex()
        s.memberId = id
        s.assignment = []
        s.positions = [:]
        s.fetchPositions = [:]
        s.prefetched.removeAll()
        s.uncommitted = []
        s.returned = []
        s.generation = -1
        _ = try broker.joinGroup(group, member: .init(id: id, clientId: config.clientId, topics: topics, lastHeartbeatMs: broker.clock.wallMs(),
                                                      sessionTimeoutMs: Int32(config.sessionTimeoutMs), strategy: config.assignmentStrategy.rawValue))
        try sync(&s, force: true)
    }

    /// Assigns partitions of `topic` manually (no group membership); adds to earlier assignments.
    public func assign(_ topic: String, partitions: [Int32]) throws {
        try checkOpen()
        try whileOpen { s in
            if case .group = s.subscription { throw KofkaError(.invalidState, "the consumer is subscribed to a group; assign is not allowed") }
            let meta = try broker.topicMeta(topic)
            for p in partitions { _ = try broker.pnum(meta, p) }
            s.subscription = .manual
            for p in partitions where !s.assignment.contains(TopicPartition(topic, p)) {
                s.assignment.append(TopicPartition(topic, p))
            }
        }
    }

    /// The partitions this consumer may fetch now.
    public var assigned: [TopicPartition] { state.withLock { $0.assignment } }

    /// The member id and generation this consumer last saw in its group (nil / -1 outside one).
    package var membership: (memberId: String?, generation: Int32) {
        state.withLock { ($0.memberId, $0.generation) }
    }

    // MARK: Group maintenance

    /// Heartbeats and follows rebalances: releases partitions it lost (committing first, as the
    /// mode requires) and takes partitions it gained.
    private func sync(_ s: inout State, force: Bool) throws {
        guard case .group = s.subscription, let group = config.groupId, let id = s.memberId else { return }
        let now = broker.clock.wallMs()
        if !force {
            let due = heartbeatDue(&s, broker.clock.monotonicNs())
            let generation = s.generation, holding = s.assignment.count
            let stale = try broker.storage.read { r in
                try broker.groupNeedsSync(r, group, memberId: id, generation: generation, holding: holding, now: now)
            }
            if !due && !stale { return }
        }
        let revokeCommits = autoCommitOffsets(s)
        let view = try broker.syncGroup(group, memberId: id, now: now, revokeCommits: revokeCommits)
        s.lastSyncNs = broker.clock.monotonicNs()
        if interceptors.has(.commit) && view.isMember {
            let released = Set(s.assignment).subtracting(view.held)
            interceptors.commit(group: group, revokeCommits.filter { released.contains($0.key) }, error: nil)
        }
        guard view.isMember else {
            if !isClosed { try join(&s) }   // expired while away: rejoin as a new member
            return
        }
        s.generation = view.generation
        let kept = Set(view.held)
        s.prefetched.drop(Set(s.assignment).subtracting(kept))
        for tp in s.assignment where !kept.contains(tp) {
            s.positions[tp] = nil
            s.fetchPositions[tp] = nil
            s.uncommitted.remove(tp)
            if s.returned.remove(tp) != nil && !autoCommit { s.revokedWithUncommitted.insert(tp) }
        }
        s.assignment = view.held
    }

    /// The offsets an automatic commit would write now (at-least-once: what was returned; at-most-once: already written).
    private func autoCommitOffsets(_ s: State) -> [TopicPartition: Int64] {
        guard autoCommit else { return [:] }
        var out: [TopicPartition: Int64] = [:]
        for tp in s.uncommitted { if let p = s.positions[tp] { out[tp] = p } }
        return out
    }

    // MARK: Polling

    /// Returns the next record, waiting up to `timeout` (nil = forever); nil when nothing arrived.
    public func poll(timeout: Duration?) throws -> Message? {
        try pollBatch(max: 1, timeout: timeout).first
    }

    /// Returns up to `max` records (at most `max.poll.records`), waiting up to `timeout`
    /// (nil = forever) for the first; empty when nothing arrived. Wakes as soon as a record is written.
    public func pollBatch(max: Int, timeout: Duration?) throws -> [Message] {
        try poll(max: max, timeout: timeout, discard: { _ in }, make: Self.message)
    }

    /// `lend` with `Message` results (see `lend(settling:max:timeout:discard:make:)`).
    public func lendBatch(settling: Int, max: Int, timeout: Duration?) throws -> [Message] {
        try lend(settling: settling, max: max, timeout: timeout, discard: { _ in }, make: Self.message)
    }

    static func message(_ topic: String, _ partition: Int32, _ r: RecordView) throws -> Message {
        Message(topic: topic, partition: partition, offset: r.offset, timestampMs: r.timestampMs,
                key: r.key.map { Array($0) }, value: r.value.map { Array($0) },
                headers: try HeaderCodec.decode(r.headers.map { Array($0) }))
    }

    /// `pollBatch` that builds each result straight from the stored bytes with `make` (the view
    /// is valid only during the call), so a binding can copy each record once, into its own
    /// format. `discard` releases results that were made but must not be handed out (an
    /// at-most-once poll whose commit failed). Returns empty, without an error, when the
    /// consumer is closed by another thread while this poll waits.
    public func poll<T>(max: Int, timeout: Duration?, discard: ([T]) -> Void,
                        make: (String, Int32, RecordView) throws -> T) throws -> [T] {
        try poll(max: max, timeout: timeout, discard: discard, bulk: nil, make: make)
    }

    /// Results made a run of read-ahead records at a time (records `range` of one chunk), instead
    /// of one `make` per record: a result that shares the chunk's buffers (`pollMessages`).
    typealias Bulk<T> = (RecordSet, Range<Int>) -> [T]

    func poll<T>(max: Int, timeout: Duration?, discard: ([T]) -> Void, bulk: Bulk<T>?,
                 make: (String, Int32, RecordView) throws -> T) throws -> [T] {
        try checkOpen()
        return try pollRounds(limit: Swift.max(1, Swift.min(max, config.maxPollRecords)), timeout: timeout,
                              lend: false, discard: discard, bulk: bulk, make: make)
    }

    /// Lends up to `max` records (at most `max.poll.records`), waiting up to `timeout` for the
    /// first, after settling the previous lend: of the records that lend made, the first
    /// `settling` count as returned now (positions move past them, commits cover them), and the
    /// rest are taken back — the next poll or lend makes them again. Lent records are not
    /// returned: a commit, `position`, a close or a transaction's offsets do not count them
    /// until they are settled, so a binding can make a batch in one call, hand it out one
    /// record at a time and say at its next call how many it handed out.
    ///
    /// Lent records may be handed out for `lendWindowNs()` after the lend: a group member's
    /// heartbeat and an automatic commit are due then, and only a call into the consumer runs
    /// them. With `auto.commit.interval.ms=0` (commit at every poll) a lend makes one record.
    ///
    /// In at-most-once mode (which commits before it returns) and with a consume interceptor
    /// (which sees what is returned), a lend makes at most one record and returns it at once;
    /// settling it then changes nothing. `max` 0 only settles. Any other operation that moves
    /// the read-ahead (a poll, a seek, an assignment change, a rebalance) takes lent records
    /// back: settling more than the last lend made, or than is still lent, is
    /// `.invalidArg` and changes nothing.
    public func lend<T>(settling: Int, max: Int, timeout: Duration?, discard: ([T]) -> Void,
                        make: (String, Int32, RecordView) throws -> T) throws -> [T] {
        try checkOpen()
        try whileOpen { s in try settleLent(&s, settling) }
        if max <= 0 { return [] }
        if (autoCommit && config.deliveryMode == .atMostOnce) || interceptors.has(.consume) {
            let items = try pollRounds(limit: 1, timeout: timeout, lend: false, discard: discard, make: make)
            state.withLock { $0.lentReturned = items.count }
            return items
        }
        let limit = autoCommit && config.autoCommitIntervalMs == 0 ? 1 : Swift.min(max, config.maxPollRecords)
        return try pollRounds(limit: limit, timeout: timeout, lend: true, discard: discard, make: make)
    }

    /// How long (ns, from now) records lent now may be handed out before this consumer needs a
    /// call: until a group member's next heartbeat, or the next automatic commit, is due.
    /// `UInt64.max` when neither applies (a manual assignment without automatic commits).
    public func lendWindowNs() -> UInt64 {
        let now = broker.clock.monotonicNs()
        return state.withLock { s in
            [heartbeatAt(&s), autoCommitAt(&s)].compactMap { $0 }.map { $0 > now ? $0 - now : 0 }.min() ?? .max
        }
    }

    /// The first `k` records of the last lend count as returned; the rest are taken back.
    private func settleLent(_ s: inout State, _ k: Int) throws {
        let lent = s.lentReturned + s.prefetched.lent
        guard k >= 0 && k <= lent else {
            throw KofkaError(.invalidArg, "cannot settle \(k) lent record(s): \(lent) are lent (a poll, seek, assignment change or rebalance since the lend takes lent records back)")
        }
        let n = k - s.lentReturned
        s.lentReturned = 0
        s.prefetched.lent = 0
        guard n > 0 else { return }
        var handed: [(tp: TopicPartition, next: Int64)] = []
        _ = s.prefetched.peek(n) { tp, view in
            if let i = handed.lastIndex(where: { $0.tp == tp }) { handed[i].next = view.offset + 1 } else { handed.append((tp, view.offset + 1)) }
        }
        handOut(&s, n, handed)
    }

    /// The rounds of a poll or a lend (`lend`: the records made stay read ahead, lent).
    /// `bulk`, when given, makes the results instead of `make` (see `Bulk`).
    private func pollRounds<T>(limit: Int, timeout: Duration?, lend: Bool, discard: ([T]) -> Void,
                               bulk: Bulk<T>? = nil,
                               make: (String, Int32, RecordView) throws -> T) throws -> [T] {
        if let items = try pollFromReadAhead(limit: limit, lend: lend, discard: discard, bulk: bulk, make: make) { return items }
        let clock = broker.clock
        let deadline = clock.deadline(after: timeout)
        // The storage's change token, taken before a round whose finding nothing leads to a wait
        // (a commit after it moves the token, so the wait returns at once). The first round goes
        // without: a poll served from the read-ahead touches no storage at all (on SQLite reading
        // the token takes a file lock).
        var lastToken: UInt64?
        while true {
            let found: Fetched<T>? = try withOps { s in
                if isClosed { return nil }
                try broker.checkOpen()
                return try pollStep(&s, limit: limit, lend: lend, discard: discard, bulk: bulk, make: make)
            }
            guard let f = found else { return [] }
            if !f.items.isEmpty { return f.items }
            if f.blocked { broker.sweepExpiredTransactions() }
            if f.progressed { continue }
            guard let token = lastToken else {
                lastToken = broker.storage.changeToken()
                continue   // look once more, now that a commit from here on will be noticed
            }
            let now = clock.monotonicNs()
            if let deadline, now >= deadline { return [] }
            var wake = deadline ?? (now &+ 3_600_000_000_000)
            let (grouped, lastSync) = state.withLock { s -> (Bool, UInt64) in
                if case .group = s.subscription { return (true, s.lastSyncNs) }
                return (false, 0)
            }
            if grouped { wake = Swift.min(wake, lastSync &+ heartbeatIntervalNs) }
            if f.blocked { wake = Swift.min(wake, now &+ 100_000_000) }
            broker.storage.waitForChange(since: token, timeoutNs: wake > now ? wake - now : 0)
            if isClosed { return [] }
            lastToken = broker.storage.changeToken()   // before the next round looks
        }
    }

    /// When a group member's next heartbeat is due (monotonic ns); nil for a manual assignment,
    /// which sends none.
    private func heartbeatAt(_ s: inout State) -> UInt64? {
        guard case .group = s.subscription else { return nil }
        return s.lastSyncNs &+ heartbeatIntervalNs
    }

    /// At-least-once: when the next automatic commit falls due (monotonic ns); nil when this
    /// consumer makes none.
    private func autoCommitAt(_ s: inout State) -> UInt64? {
        guard autoCommit && config.deliveryMode != .atMostOnce else { return nil }
        return s.lastAutoCommitNs &+ UInt64(config.autoCommitIntervalMs) * 1_000_000
    }

    /// Whether a group member's heartbeat is due at `now`.
    private func heartbeatDue(_ s: inout State, _ now: UInt64) -> Bool {
        heartbeatAt(&s).map { now >= $0 } ?? false
    }

    /// Whether the automatic commit of what earlier polls returned is due at `now`.
    private func autoCommitDue(_ s: inout State, _ now: UInt64) -> Bool {
        !s.uncommitted.isEmpty && (autoCommitAt(&s).map { now >= $0 } ?? false)
    }

    /// One round of a poll: group maintenance, the at-least-once commit of what earlier polls
    /// returned, a read-ahead from storage when nothing is read ahead, then up to `limit`
    /// records handed out from the read-ahead queue — after the at-most-once commit, which
    /// covers exactly what is handed out.
    private func pollStep<T>(_ s: inout State, limit: Int, lend: Bool, discard: ([T]) -> Void, bulk: Bulk<T>?,
                             make: (String, Int32, RecordView) throws -> T) throws -> Fetched<T> {
        let clock = broker.clock
        // Group maintenance when there is nothing read ahead to hand out, or the heartbeat is
        // due: partitions the group takes away are released (their read-ahead dropped) first.
        if s.prefetched.isEmpty || heartbeatDue(&s, clock.monotonicNs()) { try sync(&s, force: false) }
        // at-least-once: what earlier polls returned counts as processed now.
        if autoCommitDue(&s, clock.monotonicNs()) {
            try commitAuto(&s)
            s.lastAutoCommitNs = clock.monotonicNs()
        }
        while true {
            var out = Fetched<T>()
            if s.prefetched.isEmpty {
                let f = try readAhead(&s, Swift.max(limit, config.queuedMinMessages))
                out.progressed = f.progressed
                out.blocked = f.blocked
                if autoCommit { s.uncommitted.formUnion(f.reset) }
            }
            let handed = try peekReadAhead(&s, limit: limit, into: &out.items, discard: discard, bulk: bulk, make: make)
            let n = out.items.count
            if lend {   // never at-most-once, never with a consume interceptor (see `lend`)
                s.prefetched.lent = n
                return out
            }
            if n > 0 && autoCommit && config.deliveryMode == .atMostOnce {
                let next = Dictionary(handed, uniquingKeysWith: { _, b in b })
                // Commit before handing the records out. If the commit fails, hand out nothing
                // and keep the positions: no record is skipped without having been returned.
                do {
                    try commitOffsets(&s, next)
                } catch let e as KofkaError where e.code == .rebalanced {
                    discard(out.items)
                    try sync(&s, force: true)
                    continue
                } catch {
                    discard(out.items)
                    throw error
                }
            }
            if interceptors.has(.consume) {
                _ = s.prefetched.peek(n) { tp, view in interceptors.consume(topic: tp.topic, partition: tp.partition, view) }
            }
            handOut(&s, n, handed)
            return out
        }
    }

    /// Makes up to `limit` results from the front of the read-ahead queue, leaving the queue as
    /// it is; returns the position after the last record made, per partition (a poll spans few
    /// partitions: a list, not a dictionary built per poll). A `make` that throws discards what
    /// was made.
    private func peekReadAhead<T>(_ s: inout State, limit: Int, into items: inout [T], discard: ([T]) -> Void, bulk: Bulk<T>? = nil,
                                  make: (String, Int32, RecordView) throws -> T) throws -> [(tp: TopicPartition, next: Int64)] {
        var handed: [(tp: TopicPartition, next: Int64)] = []
        items.reserveCapacity(Swift.min(limit, s.prefetched.count))
        if let bulk {
            s.prefetched.peekRuns(limit) { records, range in
                items.append(contentsOf: bulk(records, range))
                records.forEachRun(range) { tp, run in
                    let next = records.entries[run.upperBound - 1].offset + 1
                    if let i = handed.lastIndex(where: { $0.tp == tp }) { handed[i].next = next } else { handed.append((tp, next)) }
                }
            }
            return handed
        }
        do {
            _ = try s.prefetched.peek(limit) { tp, view in
                items.append(try make(tp.topic, tp.partition, view))
                if let i = handed.lastIndex(where: { $0.tp == tp }) {
                    handed[i].next = view.offset + 1
                } else {
                    handed.append((tp, view.offset + 1))
                }
            }
        } catch {
            discard(items)
            items = []
            throw error
        }
        return handed
    }

    /// The first `n` read-ahead records are handed out: they leave the queue, the positions move
    /// past them and (unless at-most-once already committed them) they await a commit.
    /// `settleAll` false: every partition in `fetchPositions` had records read ahead before
    /// (a full round settled the rest), so only those this hand-out emptied are settled.
    private func handOut(_ s: inout State, _ n: Int, _ handed: some Collection<(tp: TopicPartition, next: Int64)>, settleAll: Bool = true) {
        let emptied = s.prefetched.removeFirst(n)
        for h in handed { s.positions[h.tp] = h.next }
        if settleAll {
            settlePositions(&s)
        } else {
            for tp in emptied { settlePosition(&s, tp) }
        }
        if n > 0 && !(autoCommit && config.deliveryMode == .atMostOnce) {
            for h in handed {
                if autoCommit { s.uncommitted.insert(h.tp) }
                s.returned.insert(h.tp)
            }
        }
    }

    /// A poll served from the read-ahead queue alone, in place in the shared state (no copy of
    /// it, no storage call): taken only when the queue holds records and nothing else is due —
    /// no heartbeat, no automatic commit, no at-most-once commit before the hand-out — and no
    /// consume interceptor would run (application code never runs under the state's lock).
    /// nil: take the full round.
    private func pollFromReadAhead<T>(limit: Int, lend: Bool, discard: ([T]) -> Void, bulk: Bulk<T>?,
                                      make: (String, Int32, RecordView) throws -> T) throws -> [T]? {
        try inPlace { s in
                var items: [T] = []
                let handed = try peekReadAhead(&s, limit: limit, into: &items, discard: discard, bulk: bulk, make: make)
                if lend {
                    s.prefetched.lent = items.count
                    return items
                }
                handOut(&s, items.count, handed, settleAll: s.fetchPositions.count > s.prefetched.partitionCount)
                return items
        }
    }

    /// Runs `body` on the shared state in place when a poll may be served from the read-ahead
    /// queue alone (see `pollFromReadAhead`); nil without running it otherwise. A partition
    /// positioned ahead with nothing read ahead (a read that skipped only aborted records) is
    /// settled by the hand-out as a full round would (`settleAll` when there is one).
    @inline(__always)
    private func inPlace<R>(_ body: (inout State) throws -> R?) throws -> R? {
        if autoCommit && config.deliveryMode == .atMostOnce { return nil }
        if interceptors.has(.consume) { return nil }
        // Only the state's lock, not the operations lock: an operation in flight (`withOps`)
        // has moved the read-ahead queue out of the shared state, so this finds it empty and
        // takes the full round, which waits for the operation; otherwise the hand-out below is
        // one step under the state's lock. This runs once per record of a per-record poll loop.
        if broker.closed { try broker.checkOpen() }
        return try state.withLock { s -> R? in
            if s.closed { throw KofkaError(.closed, "the consumer is closed") }
            if s.prefetched.isEmpty { return nil }
            // A heartbeat or automatic commit due at most a kernel tick ago is run by the next
            // poll instead of this one (they fall due seconds apart).
            let now = broker.clock.coarseMonotonicNs()
            if heartbeatDue(&s, now) || autoCommitDue(&s, now) { return nil }
            return try body(&s)
        }
    }

    /// `poll(max: 1, …)` without arrays: a poll the read-ahead can serve makes its one result
    /// in place (a per-record poll loop, the C face's kofka_poll).
    @inline(__always)
    func pollOne<T>(timeout: Duration?, discard: ([T]) -> Void, make: (String, Int32, RecordView) throws -> T) throws -> T? {
        let served: T? = try inPlace { s in
            var made: T?
            var next: (tp: TopicPartition, next: Int64)?
            _ = try s.prefetched.peek(1) { tp, view in
                made = try make(tp.topic, tp.partition, view)
                next = (tp, view.offset + 1)
            }
            guard let handed = next else { return nil }
            handOut(&s, 1, CollectionOfOne(handed), settleAll: s.fetchPositions.count > s.prefetched.partitionCount)
            return made
        }
        if let served { return served }
        try checkOpen()
        return try pollRounds(limit: 1, timeout: timeout, lend: false, discard: discard, make: make).first
    }

    /// A partition with nothing left read ahead is positioned where reading stopped (past
    /// records of aborted transactions that were skipped).
    private func settlePositions(_ s: inout State) {
        for (tp, _) in s.fetchPositions where s.prefetched.remaining(tp) == 0 { settlePosition(&s, tp) }
    }

    private func settlePosition(_ s: inout State, _ tp: TopicPartition) {
        guard let off = s.fetchPositions[tp], s.prefetched.remaining(tp) == 0 else { return }
        if (s.positions[tp] ?? -1) < off { s.positions[tp] = off }
        s.fetchPositions[tp] = nil
    }

    /// What one poll round found.
    private struct Fetched<T> {
        var items: [T] = []
        /// Whether reading moved on (records may all have been skipped as aborted).
        var progressed = false
        /// Whether an open transaction held a partition back (read_committed).
        var blocked = false
    }

    /// What one read-ahead found.
    private struct ReadAhead {
        var progressed = false
        var blocked = false
        /// Partitions whose position `auto.offset.reset` set.
        var reset: Set<TopicPartition> = []
    }

    /// Where a partition starts when it has no committed offset, or its position fell below the
    /// log start offset (retention deleted those records): `auto.offset.reset`. `earliest` is
    /// the log start; `latest` the high watermark, or for a read_committed reader the last
    /// stable offset, so a transaction open now is delivered when it commits; `none` is
    /// `.noOffset` (no committed offset) or `.offsetOutOfRange` (`outOfRange` given).
    private func resetPosition(_ r: any StorageReader, _ tp: TopicPartition, pnum: Int64, hw: Int64, outOfRange: Int64? = nil) throws -> Int64 {
        switch config.autoOffsetReset {
        case .earliest: return try r.logStartOffset(pnum)
        case .latest:
            return config.isolationLevel == .readCommitted ? try Transactions.lastStableOffset(r, pnum, hw: hw) : hw
        case .none:
            if let pos = outOfRange {
                throw KofkaError(.offsetOutOfRange, "position \(pos) of \(tp) is below its log start offset \(try r.logStartOffset(pnum)) (those records were deleted) and auto.offset.reset=none")
            }
            throw KofkaError(.noOffset, "no committed offset for \(tp) in group '\(config.groupId ?? "")' and auto.offset.reset=none")
        }
    }

    /// Reads up to `want` records (and `queued.max.messages.kbytes`) from the assigned
    /// partitions in one snapshot into the read-ahead queue, resolving positions that are not
    /// known yet (committed offset, or `auto.offset.reset`) and those below the log start.
    /// read_committed stops at the last stable offset and skips records of aborted transactions.
    private func readAhead(_ s: inout State, _ want: Int) throws -> ReadAhead {
        var out = ReadAhead()
        guard !s.assignment.isEmpty else { return out }
        var metas: [String: TopicMeta] = [:]
        for tp in s.assignment where metas[tp.topic] == nil { metas[tp.topic] = try broker.topicMeta(tp.topic) }
        let readCommitted = config.isolationLevel == .readCommitted
        let group = config.groupId
        let assignment = s.assignment
        let order = (0..<assignment.count).map { assignment[($0 + s.rotate) % assignment.count] }
        s.rotate &+= 1
        let maxBytes = config.queuedMaxKBytes * 1024
        var chunk = s.prefetched.freshChunk()
        var positions = s.positions
        var fetchPositions = s.fetchPositions
        try broker.storage.read { r in
            for tp in order {
                guard chunk.records.count < want, chunk.bytes < maxBytes, let meta = metas[tp.topic] else { break }
                let pnum = meta.firstPnum + Int64(tp.partition)
                let hw = try r.highWatermark(pnum)
                var pos: Int64
                if let p = fetchPositions[tp] ?? positions[tp] {
                    pos = p
                } else if let g = group, let c = try r.getInt64(Keys.offset(g, tp)) {
                    pos = c
                } else {
                    pos = try resetPosition(r, tp, pnum: pnum, hw: hw)
                    out.reset.insert(tp)
                }
                if pos < hw, pos < (try r.logStartOffset(pnum)) {
                    pos = try resetPosition(r, tp, pnum: pnum, hw: hw, outOfRange: pos)
                    out.reset.insert(tp)
                    fetchPositions[tp] = nil
                    positions[tp] = pos
                }
                if positions[tp] == nil { positions[tp] = pos }
                var end = hw
                var aborted: Set<Int64> = []
                if readCommitted {
                    end = try Transactions.lastStableOffset(r, pnum, hw: hw)
                    if end < hw { out.blocked = true }
                    if pos < end {
                        let (alo, ahi) = Keys.abortedRange(pnum, from: pos)
                        for e in try r.scan(from: alo, to: ahi) {
                            if let t = e.key.split(separator: "/").last, let txn = Int64(t, radix: 16) { aborted.insert(txn) }
                        }
                    }
                }
                guard pos < end else { continue }
                let index = chunk.records.addPartition(tp)
                var last: Int64 = -1
                // Where the backend keeps records in arrays (memory), they are kept as slices of
                // its buffers, a stored run at a time; otherwise each is copied once.
                let runs = try r.forEachRun(pnum, from: pos, below: end, maxCount: want - chunk.records.count) { run in
                    guard chunk.bytes < maxBytes else { return }
                    if run.txn != 0 && aborted.contains(run.txn) {
                        last = run.offset(run.entries.count - 1)
                        return
                    }
                    if let l = chunk.records.append(run: run, partition: index, maxBytes: maxBytes) { last = l }
                }
                if runs == nil {
                    _ = try r.forEachRecord(pnum, from: pos, below: end, maxCount: want - chunk.records.count) { rec in
                        guard chunk.bytes < maxBytes else { return }
                        last = rec.offset
                        if rec.txn != 0 && aborted.contains(rec.txn) { return }
                        chunk.records.append(partition: index, rec)
                    }
                }
                guard last >= 0 else { continue }
                fetchPositions[tp] = last + 1
                out.progressed = true
            }
        }
        s.positions = positions
        s.fetchPositions = fetchPositions
        s.prefetched.append(chunk)
        return out
    }

    // MARK: Offsets

    /// Commits `offsets` for the group (checked against the generation when subscribed).
    private func commitOffsets(_ s: inout State, _ offsets: [TopicPartition: Int64]) throws {
        guard let group = config.groupId, !offsets.isEmpty else { return }
        let member: String? = if case .group = s.subscription { s.memberId } else { nil }
        do {
            try broker.commitOffsets(group, memberId: member, generation: s.generation, offsets)
        } catch let e as KofkaError {
            interceptors.commit(group: group, offsets, error: e)
            throw e
        }
        interceptors.commit(group: group, offsets, error: nil)
        for tp in offsets.keys {
            s.uncommitted.remove(tp)
            s.returned.remove(tp)
        }
    }

    private func currentPositions(_ s: State, _ tps: some Sequence<TopicPartition>) -> [TopicPartition: Int64] {
        var offs: [TopicPartition: Int64] = [:]
        for tp in tps { if let p = s.positions[tp] { offs[tp] = p } }
        return offs
    }

    private func commitAuto(_ s: inout State) throws {
        do {
            try commitOffsets(&s, currentPositions(s, s.uncommitted))
        } catch let e as KofkaError where e.code == .rebalanced {
            s.uncommitted = []   // the partitions moved on; their records will be delivered again
        }
    }

    /// Commits the position after every message returned so far, for every assigned partition.
    public func commit() throws {
        try checkOpen()
        _ = try requireGroup("commit")
        try whileOpen { s in try commitOffsets(&s, currentPositions(s, s.assignment)) }
    }

    /// Commits `message.offset + 1` for the message's partition. The message must be one that
    /// exists: its topic and partition must exist and `0 <= offset < high watermark`
    /// (`.unknownTopic`, `.unknownPartition`, `.offsetOutOfRange` otherwise).
    public func commit(_ message: Message) throws {
        try checkOpen()
        let group = try requireGroup("commit")
        let tp = TopicPartition(message.topic, message.partition)
        let high = try broker.watermarks(message.topic, message.partition).high
        guard message.offset >= 0 && message.offset < high else {
            throw KofkaError(.offsetOutOfRange, "cannot commit message offset \(message.offset) of \(tp): offsets held are 0..<\(high)")
        }
        try whileOpen { s in
            let member: String? = if case .group = s.subscription { s.memberId } else { nil }
            try broker.commitOffsets(group, memberId: member, generation: s.generation, [tp: message.offset + 1])
        }
    }

    /// The group's committed offset for a partition, or -1 when none.
    public func committed(_ topic: String, _ partition: Int32) throws -> Int64 {
        try checkOpen()
        let group = try requireGroup("committed")
        let meta = try broker.topicMeta(topic)
        _ = try broker.pnum(meta, partition)
        return try broker.committedOffset(group: group, TopicPartition(topic, partition)) ?? -1
    }

    /// The next offset this consumer will return for an assigned partition; -1 before its first fetch.
    public func position(_ topic: String, _ partition: Int32) throws -> Int64 {
        try checkOpen()
        let tp = TopicPartition(topic, partition)
        return try state.withLock { s in
            guard s.assignment.contains(tp) else { throw KofkaError(.invalidState, "\(tp) is not assigned to this consumer") }
            return s.positions[tp] ?? -1
        }
    }

    /// Moves the position of an assigned partition (log start ... high watermark).
    public func seek(_ topic: String, _ partition: Int32, _ offset: Int64) throws {
        try checkOpen()
        let tp = TopicPartition(topic, partition)
        try whileOpen { s in
            guard s.assignment.contains(tp) else { throw KofkaError(.invalidState, "\(tp) is not assigned to this consumer") }
            let (low, hw) = try broker.watermarks(topic, partition)
            guard offset >= low && offset <= hw else {
                throw KofkaError(.offsetOutOfRange, "offset \(offset) is out of range for \(tp): valid offsets are \(low)...\(hw)")
            }
            s.positions[tp] = offset
            s.fetchPositions[tp] = nil
            s.prefetched.drop([tp])
            s.uncommitted.remove(tp)
            s.returned.remove(tp)
        }
    }

    /// Rewinds every assigned partition to the group's committed offset (or the reset
    /// position) — what an application does after aborting a transaction.
    public func seekToCommitted() throws {
        try checkOpen()
        let group = try requireGroup("seek_to_committed")
        try whileOpen { s in
            let assignment = s.assignment
            var metas: [String: TopicMeta] = [:]
            for tp in assignment where metas[tp.topic] == nil { metas[tp.topic] = try broker.topicMeta(tp.topic) }
            let fresh = try broker.storage.read { r -> [TopicPartition: Int64] in
                var out: [TopicPartition: Int64] = [:]
                for tp in assignment {
                    guard let meta = metas[tp.topic] else { continue }
                    if let c = try r.getInt64(Keys.offset(group, tp)) {
                        out[tp] = c
                    } else {
                        let pnum = meta.firstPnum + Int64(tp.partition)
                        out[tp] = try resetPosition(r, tp, pnum: pnum, hw: try r.highWatermark(pnum))
                    }
                }
                return out
            }
            s.positions = PositionMap(fresh)
            s.fetchPositions = [:]
            s.prefetched.removeAll()
            s.uncommitted = []
            s.returned = []
            s.revokedWithUncommitted = []
        }
    }

    /// Hands the group, member, generation and current positions to `body` (which adds them to
    /// a producer's transaction), with no poll in between. Throws `.rebalanced` when the group
    /// took a partition away after records were returned from it and before their offsets were
    /// committed: those records' outputs must not commit (KIP-447's generation fencing covers the
    /// partitions still held).
    func handOverOffsets(_ body: (String, String?, Int32, [(TopicPartition, Int64)]) throws -> Void) throws {
        try checkOpen()
        let group = try requireGroup("send_offsets_to_transaction")
        try whileOpen { s in
            if !s.revokedWithUncommitted.isEmpty {
                let lost = s.revokedWithUncommitted.sorted().map(\.description).joined(separator: ", ")
                throw KofkaError(.rebalanced, "group '\(group)' reassigned \(lost) after records were returned from it and before their offsets were committed: abort the transaction and seek_to_committed")
            }
            let member: String? = if case .group = s.subscription { s.memberId } else { nil }
            let offs = s.assignment.compactMap { tp in s.positions[tp].map { (tp, $0) } }
            // The records stay returned-and-uncommitted (`returned`) until the transaction
            // commits (`transactionCommitted`): an abort or a failed commit must leave a
            // partition lost in a rebalance fenced (KIP-447), or a later transaction would
            // commit those records' outputs again without their offsets.
            try body(group, member, s.generation, offs)
        }
    }

    /// The transaction that took `offsets` from `handOverOffsets` committed: a partition whose
    /// position is still the offset handed over has returned nothing since that is not committed.
    func transactionCommitted(_ offsets: [(TopicPartition, Int64)]) {
        try? whileOpen { s in
            for (tp, off) in offsets where s.positions[tp] == off { s.returned.remove(tp) }
        }
    }

    // MARK: Closing

    /// Graceful close: the mode's final commit, then leaves the group. Idempotent. A poll
    /// waiting on another thread returns at once with nothing.
    public func close() throws {
        let first = state.withLock { s -> Bool in
            defer { s.closed = true }
            return !s.closed
        }
        guard first else { return }
        broker.storage.wakeAll()
        guard !broker.closed else { return }
        try withOps { s in
            if case .group = s.subscription, let group = config.groupId, let id = s.memberId {
                let commits = autoCommitOffsets(s)
                try broker.leaveGroup(group, memberId: id, commits: commits)
                interceptors.commit(group: group, commits.filter { s.assignment.contains($0.key) }, error: nil)
            } else if autoCommit && !s.uncommitted.isEmpty {
                try commitOffsets(&s, currentPositions(s, s.uncommitted))
            }
        }
    }

    /// As if the process died: no commit, no leave. The group notices after `session.timeout.ms`.
    /// A poll waiting on another thread returns at once with nothing.
    public func destroy() {
        state.withLock { $0.closed = true }
        broker.storage.wakeAll()
    }
}
