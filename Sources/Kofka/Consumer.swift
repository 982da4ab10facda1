#if canImport(Glibc)
import Glibc
#endif

/// A consumer: reads records from assigned partitions, by manual assignment or as a member of a
/// consumer group, and commits offsets as its delivery mode says.
///
/// * at-most-once: a poll commits the new positions *before* it returns the records.
/// * at-least-once: what a poll returned is committed at the next poll and at `close()`.
/// * exactly-once: read_committed, no automatic commits; offsets go through a producer transaction.
///
/// ```swift
/// let c = try broker.consumer(ConsumerConfig(groupId: "billing"))
/// try c.subscribe(["orders"])
/// for m in try c.pollBatch(max: 100, timeout: .seconds(1)) { print(m.offset) }
/// try c.close()
/// ```
public final class Consumer: @unchecked Sendable {
    /// The broker it reads from.
    public let broker: Broker
    /// Its settings.
    public let config: ConsumerConfig

    private enum Subscription { case none, manual, group([String]) }

    private let lock = Monitor()
    private var subscription = Subscription.none
    /// Partitions it may fetch: the manual assignment, or what it holds in its group.
    private var assignment: [TopicPartition] = []
    /// Next offset to return per partition; absent until resolved (committed or reset).
    private var positions: [TopicPartition: Int64] = [:]
    /// Partitions returned by a poll and not yet committed (at-least-once).
    private var uncommitted: Set<TopicPartition> = []
    private var memberId: String?
    private var generation: Int32 = -1
    private var lastSyncNs: UInt64 = 0
    private var rotate = 0
    private var isClosed = false

    init(broker: Broker, config: ConsumerConfig) {
        self.broker = broker
        self.config = config
    }

    private var autoCommit: Bool { config.enableAutoCommit && config.groupId != nil && config.deliveryMode != .exactlyOnce }
    private var heartbeatIntervalNs: UInt64 { UInt64(max(10, min(config.sessionTimeoutMs / 3, 1000))) * 1_000_000 }

    private func checkOpen() throws {
        if isClosed { throw KofkaError(.closed, "the consumer is closed") }
        try broker.checkOpen()
    }

    private func requireGroup(_ what: String) throws -> String {
        guard let g = config.groupId else { throw KofkaError(.invalidState, "\(what) needs group.id to be set") }
        return g
    }

    // MARK: Assignment

    /// Joins `group.id` and subscribes to `topics`; the group assigns partitions.
    public func subscribe(_ topics: [String]) throws {
        try lock.locked {
            try checkOpen()
            let group = try requireGroup("subscribe")
            guard !topics.isEmpty else { throw KofkaError(.invalidArg, "subscribe needs at least one topic") }
            if case .manual = subscription { throw KofkaError(.invalidState, "the consumer has a manual assignment; subscribe is not allowed") }
            for t in topics { _ = try broker.topicMeta(t, autoCreate: true) }
            if case .group = subscription, let id = memberId {
                try broker.leaveGroup(group, memberId: id, commits: autoCommitOffsets())
            }
            subscription = .group(Array(Set(topics)).sorted())
            try join()
        }
    }

    private func join() throws {
        guard case .group(let topics) = subscription, let group = config.groupId else { return }
        var rng = SplitMix64(seed: monoNs() ^ UInt64(UInt(bitPattern: ObjectIdentifier(self).hashValue)) ^ UInt64(getpid()))
        let id = config.clientId + "-" + rng.unitHex()
        memberId = id
        assignment = []
        positions = [:]
        uncommitted = []
        generation = -1
        _ = try broker.joinGroup(group, member: .init(id: id, clientId: config.clientId, topics: topics, lastHeartbeatMs: broker.clock.wallMs(),
                                                      sessionTimeoutMs: Int32(config.sessionTimeoutMs), strategy: config.assignmentStrategy.rawValue))
        try sync(force: true)
    }

    /// Assigns partitions of `topic` manually (no group membership); adds to earlier assignments.
    public func assign(_ topic: String, partitions: [Int32]) throws {
        try lock.locked {
            try checkOpen()
            if case .group = subscription { throw KofkaError(.invalidState, "the consumer is subscribed to a group; assign is not allowed") }
            let meta = try broker.topicMeta(topic)
            for p in partitions { _ = try broker.pnum(meta, p) }
            subscription = .manual
            for p in partitions where !assignment.contains(TopicPartition(topic, p)) {
                assignment.append(TopicPartition(topic, p))
            }
        }
    }

    /// The partitions this consumer may fetch now.
    public var assigned: [TopicPartition] { lock.locked { assignment } }

    // MARK: Group maintenance

    /// Heartbeats and follows rebalances: releases partitions it lost (committing first, as the
    /// mode requires) and takes partitions it gained.
    private func sync(force: Bool) throws {
        guard case .group = subscription, let group = config.groupId, let id = memberId else { return }
        let now = broker.clock.wallMs()
        if !force {
            let due = monoNs() &- lastSyncNs >= heartbeatIntervalNs
            let stale = try broker.storage.read { r in
                try broker.groupNeedsSync(r, group, memberId: id, generation: generation, holding: assignment.count, now: now)
            }
            if !due && !stale { return }
        }
        let view = try broker.syncGroup(group, memberId: id, now: now, revokeCommits: autoCommitOffsets())
        lastSyncNs = monoNs()
        guard view.isMember else {
            try join()   // expired while away: rejoin as a new member
            return
        }
        generation = view.generation
        let kept = Set(view.held)
        for tp in assignment where !kept.contains(tp) {
            positions[tp] = nil
            uncommitted.remove(tp)
        }
        assignment = view.held
    }

    /// The offsets an automatic commit would write now (at-least-once: what was returned; at-most-once: already written).
    private func autoCommitOffsets() -> [TopicPartition: Int64] {
        guard autoCommit else { return [:] }
        var out: [TopicPartition: Int64] = [:]
        for tp in uncommitted { if let p = positions[tp] { out[tp] = p } }
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
        try poll(max: max, timeout: timeout, discard: { _ in }) { topic, partition, r in
            Message(topic: topic, partition: partition, offset: r.offset, timestampMs: r.timestampMs,
                    key: r.key.map { Array($0) }, value: r.value.map { Array($0) },
                    headers: try HeaderCodec.decode(r.headers.map { Array($0) }))
        }
    }

    /// `pollBatch` that builds each result straight from the stored bytes with `make` (the view
    /// is valid only during the call), so a binding can copy each record once, into its own
    /// format. `discard` releases results that were made but must not be handed out (an
    /// at-most-once poll whose commit found the group moved on).
    public func poll<T>(max: Int, timeout: Duration?, discard: ([T]) -> Void,
                        make: (String, Int32, RecordView) throws -> T) throws -> [T] {
        try lock.locked {
            try checkOpen()
            let deadline = timeout.map { monoNs() &+ $0.nanoseconds }
            let limit = Swift.max(1, Swift.min(max, config.maxPollRecords))
            // at-least-once: the previous poll's records count as processed now. Follow a
            // rebalance first, so partitions kept are committed in the new generation (and
            // partitions lost were committed as they were released).
            if autoCommit && config.deliveryMode != .atMostOnce && !uncommitted.isEmpty {
                try sync(force: false)
                try commitAuto()
            }
            while true {
                try checkOpen()
                let token = broker.storage.changeToken()
                try sync(force: false)
                let before = positions
                let f = try fetch(limit, make)
                if !f.items.isEmpty {
                    if autoCommit && config.deliveryMode == .atMostOnce {
                        // commit before handing the records out: if the group moved on, hand out nothing
                        do {
                            try commitPositions(f.partitions)
                        } catch let e as KofkaError where e.code == .rebalanced {
                            discard(f.items)
                            positions = before
                            try sync(force: true)
                            continue
                        }
                    } else if autoCommit {
                        uncommitted.formUnion(f.partitions)
                    }
                    return f.items
                }
                if f.blocked { broker.sweepExpiredTransactions() }
                if f.progressed { continue }
                let now = monoNs()
                if let deadline, now >= deadline { return [] }
                var wake = deadline ?? (now &+ 3_600_000_000_000)
                if case .group = subscription { wake = Swift.min(wake, lastSyncNs &+ heartbeatIntervalNs) }
                if f.blocked { wake = Swift.min(wake, now &+ 100_000_000) }
                broker.storage.waitForChange(since: token, timeoutNs: wake &- now)
            }
        }
    }

    /// What one fetch found.
    private struct Fetched<T> {
        var items: [T] = []
        /// Partitions records were returned from.
        var partitions: Set<TopicPartition> = []
        /// Whether any position moved (records may all have been skipped as aborted).
        var progressed = false
        /// Whether an open transaction held a partition back (read_committed).
        var blocked = false
    }

    /// Reads up to `limit` records from the assigned partitions in one snapshot, making each
    /// with `make`. read_committed stops at the last stable offset and skips aborted records.
    private func fetch<T>(_ limit: Int, _ make: (String, Int32, RecordView) throws -> T) throws -> Fetched<T> {
        var out = Fetched<T>()
        guard !assignment.isEmpty else { return out }
        var metas: [String: TopicMeta] = [:]
        for tp in assignment where metas[tp.topic] == nil { metas[tp.topic] = try broker.topicMeta(tp.topic) }
        let readCommitted = config.isolationLevel == .readCommitted
        let group = config.groupId
        let reset = config.autoOffsetReset
        let order = (0..<assignment.count).map { assignment[($0 + rotate) % assignment.count] }
        rotate &+= 1
        var newPositions = positions
        try broker.storage.read { r in
            for tp in order {
                guard out.items.count < limit, let meta = metas[tp.topic] else { break }
                let pnum = meta.firstPnum + Int64(tp.partition)
                let hw = try r.highWatermark(pnum)
                var pos: Int64
                if let p = newPositions[tp] {
                    pos = p
                } else if let g = group, let c = try r.getInt64(Keys.offset(g, tp)) {
                    pos = c
                } else {
                    switch reset {
                    case .earliest: pos = 0
                    case .latest: pos = hw
                    case .none: throw KofkaError(.noOffset, "no committed offset for \(tp) in group '\(group ?? "")' and auto.offset.reset=none")
                    }
                }
                newPositions[tp] = pos
                var end = hw
                var aborted: Set<Int64> = []
                if readCommitted {
                    let (lo, hi) = Keys.openTxnRange(pnum)
                    for e in try r.scan(from: lo, to: hi) {
                        var rd = BinaryReader(e.value)
                        end = Swift.min(end, try rd.i64())
                    }
                    if end < hw { out.blocked = true }
                    if pos < end {
                        let (alo, ahi) = Keys.abortedRange(pnum, from: pos)
                        for e in try r.scan(from: alo, to: ahi) {
                            if let t = e.key.split(separator: "/").last, let txn = Int64(t, radix: 16) { aborted.insert(txn) }
                        }
                    }
                }
                guard pos < end else { continue }
                var last: Int64 = -1
                var returned = false
                _ = try r.forEachRecord(pnum, from: pos, below: end, maxCount: limit - out.items.count) { rec in
                    last = rec.offset
                    if rec.txn != 0 && aborted.contains(rec.txn) { return }
                    out.items.append(try make(tp.topic, tp.partition, rec))
                    returned = true
                }
                guard last >= 0 else { continue }
                newPositions[tp] = last + 1
                out.progressed = true
                if returned { out.partitions.insert(tp) }
            }
        }
        positions = newPositions
        return out
    }

    // MARK: Offsets

    private func commitPositions(_ tps: Set<TopicPartition>) throws {
        guard let group = config.groupId else { return }
        var offs: [TopicPartition: Int64] = [:]
        for tp in tps { if let p = positions[tp] { offs[tp] = p } }
        let member: String? = if case .group = subscription { memberId } else { nil }
        try broker.commitOffsets(group, memberId: member, generation: generation, offs)
        for tp in tps { uncommitted.remove(tp) }
    }

    private func commitAuto() throws {
        do {
            try commitPositions(uncommitted)
        } catch let e as KofkaError where e.code == .rebalanced {
            uncommitted = []   // the partitions moved on; their records will be delivered again
        }
    }

    /// Commits the position after every message returned so far, for every assigned partition.
    public func commit() throws {
        try lock.locked {
            try checkOpen()
            _ = try requireGroup("commit")
            try commitPositions(Set(assignment.filter { positions[$0] != nil }))
        }
    }

    /// Commits `message.offset + 1` for the message's partition.
    public func commit(_ message: Message) throws {
        try lock.locked {
            try checkOpen()
            let group = try requireGroup("commit")
            let tp = TopicPartition(message.topic, message.partition)
            let member: String? = if case .group = subscription { memberId } else { nil }
            try broker.commitOffsets(group, memberId: member, generation: generation, [tp: message.offset + 1])
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
        try lock.locked {
            try checkOpen()
            let tp = TopicPartition(topic, partition)
            guard assignment.contains(tp) else { throw KofkaError(.invalidState, "\(tp) is not assigned to this consumer") }
            return positions[tp] ?? -1
        }
    }

    /// Moves the position of an assigned partition (0 ... high watermark).
    public func seek(_ topic: String, _ partition: Int32, _ offset: Int64) throws {
        try lock.locked {
            try checkOpen()
            let tp = TopicPartition(topic, partition)
            guard assignment.contains(tp) else { throw KofkaError(.invalidState, "\(tp) is not assigned to this consumer") }
            let hw = try broker.watermarks(topic, partition).high
            guard offset >= 0 && offset <= hw else {
                throw KofkaError(.offsetOutOfRange, "offset \(offset) is out of range for \(tp): valid offsets are 0...\(hw)")
            }
            positions[tp] = offset
            uncommitted.remove(tp)
        }
    }

    /// Rewinds every assigned partition to the group's committed offset (or the reset position).
    public func seekToCommitted() throws {
        try lock.locked {
            try checkOpen()
            let group = try requireGroup("seek_to_committed")
            var fresh: [TopicPartition: Int64] = [:]
            for tp in assignment {
                if let c = try broker.committedOffset(group: group, tp) {
                    fresh[tp] = c
                    continue
                }
                switch config.autoOffsetReset {
                case .earliest: fresh[tp] = 0
                case .latest: fresh[tp] = try broker.watermarks(tp.topic, tp.partition).high
                case .none: throw KofkaError(.noOffset, "no committed offset for \(tp) in group '\(group)' and auto.offset.reset=none")
                }
            }
            positions = fresh
            uncommitted = []
        }
    }

    /// The group, member and generation plus current positions, for `Producer.sendOffsetsToTransaction`.
    func transactionOffsets() throws -> (group: String, memberId: String?, generation: Int32, offsets: [(TopicPartition, Int64)]) {
        try lock.locked {
            try checkOpen()
            let group = try requireGroup("send_offsets_to_transaction")
            let member: String? = if case .group = subscription { memberId } else { nil }
            let offs = assignment.compactMap { tp in positions[tp].map { (tp, $0) } }
            return (group, member, generation, offs)
        }
    }

    // MARK: Closing

    /// Graceful close: the mode's final commit, then leaves the group. Idempotent.
    public func close() throws {
        try lock.locked {
            guard !isClosed else { return }
            defer { isClosed = true }
            guard !broker.closed else { return }
            if case .group = subscription, let group = config.groupId, let id = memberId {
                try broker.leaveGroup(group, memberId: id, commits: autoCommitOffsets())
            } else if autoCommit && !uncommitted.isEmpty {
                try commitPositions(uncommitted)
            }
        }
    }

    /// As if the process died: no commit, no leave. The group notices after `session.timeout.ms`.
    public func destroy() {
        lock.locked { isClosed = true }
    }
}


