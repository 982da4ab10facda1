/// Consumer groups, kept entirely in storage so members may be threads or processes.
///
/// * A member joins with its subscription; any change of membership starts a new generation
///   with a deterministic assignment (`range` or `roundrobin`), each partition to one member.
/// * Members heartbeat as they poll; one whose last heartbeat is older than its
///   `session.timeout.ms` is removed by whichever member notices first.
/// * A partition's target owner may fetch it only once the previous holder has *released* it
///   (after committing what its mode requires) or expired, and while no open transaction holds
///   offsets for it (KIP-447), so two members never work on one partition at once.
/// * A commit is accepted only from a member of the current generation that holds the
///   partition; anything else is `.rebalanced`, so a zombie can never move offsets.
enum Groups {
    /// Throws `.rebalanced` unless `memberId` is in the current generation and holds every partition.
    static func checkOwner(_ gs: GroupState, group: String, memberId: String, generation: Int32, partitions: [TopicPartition]) throws {
        guard gs.member(memberId) != nil else {
            throw KofkaError(.rebalanced, "member '\(memberId)' is no longer in group '\(group)' (its session expired or it left)")
        }
        guard gs.generation == generation else {
            throw KofkaError(.rebalanced, "group '\(group)' rebalanced: member '\(memberId)' is at generation \(generation), the group at \(gs.generation)")
        }
        for tp in partitions where gs.held[tp] != memberId {
            throw KofkaError(.rebalanced, "member '\(memberId)' of group '\(group)' does not own \(tp) in generation \(gs.generation)")
        }
    }

    /// Removes members whose session expired (except `keep`); returns whether any was removed.
    static func expire(_ gs: inout GroupState, now: Int64, keep: String?) -> Bool {
        let before = gs.members.count
        gs.members.removeAll { $0.id != keep && now - $0.lastHeartbeatMs > Int64($0.sessionTimeoutMs) }
        return gs.members.count != before
    }

    /// Starts a new generation: recomputes the assignment and drops holds of departed members.
    static func rebalance(_ gs: inout GroupState, now: Int64, partitionsOf: (String) throws -> Int32?) throws {
        gs.generation &+= 1
        gs.emptySinceMs = gs.members.isEmpty ? (gs.emptySinceMs == 0 ? now : gs.emptySinceMs) : 0
        let ids = Set(gs.members.map(\.id))
        gs.held = gs.held.filter { ids.contains($0.value) }
        gs.assignment = try assign(gs.members, partitionsOf: partitionsOf)
    }

    /// True when no open transaction holds offsets for `tp` (KIP-447), so its new owner may
    /// fetch it. Offsets pending in a transaction past its `transaction.timeout.ms` — its
    /// producer died after `send_offsets_to_transaction` — are released by aborting that
    /// transaction here: whoever waits on an expired transaction aborts it.
    static func pendingOffsetsCleared(_ w: any StorageWriter, _ group: String, _ tp: TopicPartition, now: Int64) throws -> Bool {
        guard let pid = try w.getInt64(Keys.pendingOffset(group, tp)) else { return true }
        guard try Transactions.expireIfDue(w, pid: pid, now: now) else { return false }
        // The transaction is over; a pending mark it left behind means nothing any more.
        try w.delete(Keys.pendingOffset(group, tp))
        return true
    }

    /// The deterministic assignment of every subscribed partition to one member.
    static func assign(_ members: [GroupState.Member], partitionsOf: (String) throws -> Int32?) throws -> [TopicPartition: String] {
        let sorted = members.sorted { $0.id < $1.id }
        guard let strategy = sorted.first.map({ AssignmentStrategy(rawValue: $0.strategy) ?? .range }) else { return [:] }
        let topics = Set(sorted.flatMap(\.topics)).sorted()
        var result: [TopicPartition: String] = [:]
        switch strategy {
        case .range:
            for t in topics {
                guard let n = try partitionsOf(t) else { continue }
                let subs = sorted.filter { $0.topics.contains(t) }
                let per = Int(n) / subs.count, extra = Int(n) % subs.count
                var p: Int32 = 0
                for (i, m) in subs.enumerated() {
                    for _ in 0..<(per + (i < extra ? 1 : 0)) {
                        result[TopicPartition(t, p)] = m.id
                        p += 1
                    }
                }
            }
        case .roundrobin:
            var i = 0
            for t in topics {
                guard let n = try partitionsOf(t) else { continue }
                for p in 0..<n {
                    // the next member, in round-robin order, that subscribes to t
                    for _ in 0..<sorted.count {
                        let m = sorted[i % sorted.count]
                        i += 1
                        if m.topics.contains(t) {
                            result[TopicPartition(t, p)] = m.id
                            break
                        }
                    }
                }
            }
        }
        return result
    }
}

/// What a member learns from one round of group maintenance.
struct GroupView: Sendable {
    /// False when the member is no longer in the group (expired): it must rejoin.
    var isMember: Bool
    var generation: Int32
    /// The partitions this member holds (may fetch and commit), sorted.
    var held: [TopicPartition]
}

extension Broker {
    private func partitionsLookup(_ r: any StorageReader) -> (String) throws -> Int32? {
        { t in try r.get(Keys.topic(t)).map { try TopicMeta.decode(t, $0).partitions } }
    }

    /// Adds a member to `group` and starts a new generation.
    func joinGroup(_ group: String, member: GroupState.Member) throws -> Int32 {
        try checkOpen()
        return try storage.write { w in
            var gs = try w.get(Keys.group(group)).map(GroupState.decode) ?? GroupState()
            _ = Groups.expire(&gs, now: member.lastHeartbeatMs, keep: nil)
            gs.members.removeAll { $0.id == member.id }
            gs.members.append(member)
            try Groups.rebalance(&gs, now: member.lastHeartbeatMs, partitionsOf: partitionsLookup(w))
            try w.put(Keys.group(group), gs.encode())
            return gs.generation
        }
    }

    /// One round of maintenance for a member: heartbeat, expire dead members (rebalancing if
    /// any), commit `revokeCommits` for partitions the member must give up and release them,
    /// and claim target partitions that are free.
    func syncGroup(_ group: String, memberId: String, now: Int64, revokeCommits: [TopicPartition: Int64]) throws -> GroupView {
        try checkOpen()
        return try storage.write { w in
            var gs = try w.get(Keys.group(group)).map(GroupState.decode) ?? GroupState()
            if Groups.expire(&gs, now: now, keep: memberId) {
                try Groups.rebalance(&gs, now: now, partitionsOf: partitionsLookup(w))
            }
            guard let i = gs.members.firstIndex(where: { $0.id == memberId }) else {
                try w.put(Keys.group(group), gs.encode())
                return GroupView(isMember: false, generation: gs.generation, held: [])
            }
            gs.members[i].lastHeartbeatMs = now
            for (tp, owner) in gs.held where owner == memberId && gs.assignment[tp] != memberId {
                if let off = revokeCommits[tp] { try w.putCommittedOffset(Keys.offset(group, tp), off, now: now) }
                gs.held[tp] = nil
            }
            for (tp, target) in gs.assignment where target == memberId && gs.held[tp] == nil {
                if try Groups.pendingOffsetsCleared(w, group, tp, now: now) { gs.held[tp] = memberId }
            }
            try w.put(Keys.group(group), gs.encode())
            return GroupView(isMember: true, generation: gs.generation,
                             held: gs.held.filter { $0.value == memberId }.map(\.key).sorted())
        }
    }

    /// Whether a member's view is out of date (a read-only check, so idle polls don't write).
    func groupNeedsSync(_ r: any StorageReader, _ group: String, memberId: String, generation: Int32, holding: Int, now: Int64) throws -> Bool {
        guard let b = try r.get(Keys.group(group)) else { return true }
        let gs = try GroupState.decode(b)
        if gs.generation != generation { return true }
        if gs.members.contains(where: { $0.id != memberId && now - $0.lastHeartbeatMs > Int64($0.sessionTimeoutMs) }) { return true }
        let mine = gs.held.values.filter { $0 == memberId }.count
        if mine != holding { return true }
        for (tp, target) in gs.assignment where target == memberId && gs.held[tp] == nil {
            guard let pid = try r.getInt64(Keys.pendingOffset(group, tp)) else { return true }
            // offsets pending in a transaction past its deadline: syncing will abort it
            if let deadline = try r.getInt64(Keys.txnDeadline(pid)), deadline <= now { return true }
            if try r.getInt64(Keys.txnDeadline(pid)) == nil { return true }
        }
        return false
    }

    /// Leaves the group after committing `commits` (for partitions still held), starting a new generation.
    func leaveGroup(_ group: String, memberId: String, commits: [TopicPartition: Int64]) throws {
        try checkOpen()
        try storage.write { w in
            guard var gs = try w.get(Keys.group(group)).map(GroupState.decode) else { return }
            let now = clock.wallMs()
            for (tp, off) in commits where gs.held[tp] == memberId { try w.putCommittedOffset(Keys.offset(group, tp), off, now: now) }
            guard gs.member(memberId) != nil else { return }
            gs.members.removeAll { $0.id == memberId }
            _ = Groups.expire(&gs, now: now, keep: nil)
            try Groups.rebalance(&gs, now: now, partitionsOf: partitionsLookup(w))
            try w.put(Keys.group(group), gs.encode())
        }
    }

    /// Commits offsets for a group: checked against the generation and holds when `memberId` is given.
    func commitOffsets(_ group: String, memberId: String?, generation: Int32, _ offsets: [TopicPartition: Int64]) throws {
        try checkOpen()
        guard !offsets.isEmpty else { return }
        try storage.write { w in
            if let memberId {
                let gs = try w.get(Keys.group(group)).map(GroupState.decode) ?? GroupState()
                try Groups.checkOwner(gs, group: group, memberId: memberId, generation: generation, partitions: Array(offsets.keys))
            }
            let now = clock.wallMs()
            for (tp, off) in offsets { try w.putCommittedOffset(Keys.offset(group, tp), off, now: now) }
        }
    }

    /// The group's committed offset for a partition, or nil.
    public func committedOffset(group: String, _ tp: TopicPartition) throws -> Int64? {
        try checkOpen()
        return try storage.read { r in try r.getInt64(Keys.offset(group, tp)) }
    }

    /// A description of a group for tools: members, their holds, and committed offsets.
    public func describeGroup(_ group: String) throws -> GroupDescription? {
        try checkOpen()
        return try storage.read { r in
            guard let b = try r.get(Keys.group(group)) else {
                let offs = try r.scan(from: Keys.offsetRange(group).0, to: Keys.offsetRange(group).1)
                if offs.isEmpty { return nil }
                return GroupDescription(name: group, generation: 0, members: [], committed: try Self.decodeOffsets(offs, group))
            }
            let gs = try GroupState.decode(b)
            let offs = try r.scan(from: Keys.offsetRange(group).0, to: Keys.offsetRange(group).1)
            return GroupDescription(
                name: group, generation: gs.generation,
                members: gs.members.sorted { $0.id < $1.id }.map { m in
                    GroupDescription.Member(id: m.id, clientId: m.clientId, topics: m.topics,
                                            assigned: gs.assignment.filter { $0.value == m.id }.map(\.key).sorted(),
                                            held: gs.held.filter { $0.value == m.id }.map(\.key).sorted(),
                                            lastHeartbeatMs: m.lastHeartbeatMs)
                },
                committed: try Self.decodeOffsets(offs, group))
        }
    }

    private static func decodeOffsets(_ entries: [(key: String, value: [UInt8])], _ group: String) throws -> [TopicPartition: Int64] {
        var out: [TopicPartition: Int64] = [:]
        for e in entries {
            let parts = e.key.split(separator: "\u{1}", omittingEmptySubsequences: false)
            guard parts.count == 3, let p = Int64(parts[2], radix: 16) else { continue }
            var r = BinaryReader(e.value)
            out[TopicPartition(String(parts[1]), Int32(p))] = try r.i64()
        }
        return out
    }

    /// Every group name in storage.
    public func groups() throws -> [String] {
        try checkOpen()
        return try storage.read { r in
            var names = Set(try r.scan(from: Keys.groupPrefix, to: "g0").map { String($0.key.dropFirst(2)) })
            for e in try r.scan(from: "c/", to: "c0") {
                if let g = e.key.dropFirst(2).split(separator: "\u{1}").first { names.insert(String(g)) }
            }
            return names.sorted()
        }
    }
}

/// A consumer group as tools show it.
public struct GroupDescription: Sendable {
    public struct Member: Sendable {
        public var id: String
        public var clientId: String
        public var topics: [String]
        /// Target partitions in this generation.
        public var assigned: [TopicPartition]
        /// Partitions it holds now.
        public var held: [TopicPartition]
        public var lastHeartbeatMs: Int64
    }
    public var name: String
    public var generation: Int32
    public var members: [Member]
    public var committed: [TopicPartition: Int64]
}

// MARK: Kafka's classic group protocol (KofkaWire)

/// A member of a group that speaks Kafka's classic protocol (JoinGroup/SyncGroup): its
/// partitions are chosen by the group's leader client, not by the broker.
package struct ClassicMember: Sendable {
    package var id: String
    package var clientId: String
    /// Topics it subscribes to (from its consumer-protocol metadata).
    package var topics: [String]
    package var sessionTimeoutMs: Int32
    /// The protocol (assignor) the group chose, e.g. "range".
    package var protocolName: String
    package init(id: String, clientId: String, topics: [String], sessionTimeoutMs: Int32, protocolName: String) {
        self.id = id; self.clientId = clientId; self.topics = topics; self.sessionTimeoutMs = sessionTimeoutMs; self.protocolName = protocolName
    }
}

extension Groups {
    /// A classic-protocol member's strategy, as kept in `GroupState.Member.strategy`.
    static let classicPrefix = "classic:"
    static func isClassic(_ m: GroupState.Member) -> Bool { m.strategy.hasPrefix(classicPrefix) }
}

extension Broker {
    /// Completes a join round of the classic protocol: `members` are every classic member that
    /// rejoined; classic members not among them leave, library members stay (unless expired).
    /// Starts a new generation with no target assignment (the leader's SyncGroup sets it; until
    /// then library members release what they hold) and drops every hold of a classic member
    /// (they revoked their partitions before rejoining). Returns the generation and the library
    /// members (id, client id, topics), whom the leader must assign partitions to as well.
    package func classicCompleteJoin(_ group: String, members: [ClassicMember], now: Int64)
        throws -> (generation: Int32, libraryMembers: [(id: String, clientId: String, topics: [String])]) {
        try checkOpen()
        return try storage.write { w in
            var gs = try w.get(Keys.group(group)).map(GroupState.decode) ?? GroupState()
            let ids = Set(members.map(\.id))
            _ = Groups.expire(&gs, now: now, keep: nil)
            gs.members.removeAll { Groups.isClassic($0) || ids.contains($0.id) }
            for m in members {
                gs.members.append(.init(id: m.id, clientId: m.clientId, topics: m.topics, lastHeartbeatMs: now,
                                        sessionTimeoutMs: m.sessionTimeoutMs, strategy: Groups.classicPrefix + m.protocolName))
            }
            gs.generation &+= 1
            gs.emptySinceMs = gs.members.isEmpty ? (gs.emptySinceMs == 0 ? now : gs.emptySinceMs) : 0
            let library = Set(gs.members.filter { !Groups.isClassic($0) }.map(\.id))
            gs.held = gs.held.filter { library.contains($0.value) }
            gs.assignment = [:]
            try w.put(Keys.group(group), gs.encode())
            return (gs.generation, gs.members.filter { !Groups.isClassic($0) }.sorted { $0.id < $1.id }.map { ($0.id, $0.clientId, $0.topics) })
        }
    }

    /// The leader's SyncGroup: makes `assignment` (every partition to one member, classic or
    /// library) the generation's target. Classic members hold their partitions at once unless a
    /// library member still holds one (it is claimed by a later heartbeat, once released).
    /// Throws `.rebalanced` when the generation moved on.
    package func classicAssign(_ group: String, generation: Int32, assignment: [TopicPartition: String], now: Int64) throws {
        try checkOpen()
        try storage.write { w in
            var gs = try w.get(Keys.group(group)).map(GroupState.decode) ?? GroupState()
            guard gs.generation == generation else {
                throw KofkaError(.rebalanced, "group '\(group)' rebalanced: the leader assigned generation \(generation), the group is at \(gs.generation)")
            }
            let members = Set(gs.members.map(\.id))
            gs.assignment = assignment.filter { members.contains($0.value) }
            Self.claimClassic(&gs)
            try w.put(Keys.group(group), gs.encode())
        }
    }

    /// Classic members hold their free target partitions.
    private static func claimClassic(_ gs: inout GroupState) {
        let classic = Set(gs.members.filter(Groups.isClassic).map(\.id))
        for (tp, target) in gs.assignment where classic.contains(target) && gs.held[tp] == nil { gs.held[tp] = target }
    }

    /// A classic member's heartbeat: records it (so library members do not expire it) and
    /// claims target partitions a library member has released since. Returns the group's
    /// generation, or nil when the member is no longer in the group (expired or removed).
    package func classicHeartbeat(_ group: String, memberId: String, now: Int64) throws -> Int32? {
        try checkOpen()
        return try storage.write { w in
            guard var gs = try w.get(Keys.group(group)).map(GroupState.decode),
                  let i = gs.members.firstIndex(where: { $0.id == memberId }) else { return nil }
            gs.members[i].lastHeartbeatMs = now
            Self.claimClassic(&gs)
            try w.put(Keys.group(group), gs.encode())
            return gs.generation
        }
    }

    /// Classic members leaving (LeaveGroup, or expired by the coordinator): a new generation
    /// with the broker's own assignment for the library members left (the next join round of
    /// the classic members replaces it).
    package func classicLeave(_ group: String, memberIds: [String], now: Int64) throws {
        try checkOpen()
        try storage.write { w in
            guard var gs = try w.get(Keys.group(group)).map(GroupState.decode) else { return }
            let gone = Set(memberIds)
            guard gs.members.contains(where: { gone.contains($0.id) }) else { return }
            gs.members.removeAll { gone.contains($0.id) }
            try Groups.rebalance(&gs, now: now, partitionsOf: partitionsLookup(w))
            try w.put(Keys.group(group), gs.encode())
        }
    }

    /// The group's generation in storage (0 for a group never joined).
    package func groupGeneration(_ group: String) throws -> Int32 {
        try checkOpen()
        return try storage.read { r in try r.get(Keys.group(group)).map(GroupState.decode)?.generation ?? 0 }
    }

    /// Kafka's OffsetCommit: with `memberId` the member must be in `generation` and hold every
    /// partition (else `.rebalanced`); without, the offsets are stored as they are (a consumer
    /// that assigns its partitions itself).
    package func commitGroupOffsets(_ group: String, memberId: String?, generation: Int32, _ offsets: [TopicPartition: Int64]) throws {
        try commitOffsets(group, memberId: memberId, generation: generation, offsets)
    }
}

extension Broker {
    /// Partitions of `tps` whose offsets in `group` are pending in an open transaction (KIP-447:
    /// a consumer asking for stable offsets must wait for that transaction to end). A pending
    /// transaction past its `transaction.timeout.ms` is aborted here, as a library member's
    /// sync does, so a dead producer never blocks the group.
    package func unstableOffsets(_ group: String, _ tps: [TopicPartition]) throws -> Set<TopicPartition> {
        try checkOpen()
        let now = clock.wallMs()
        let pending = try storage.read { r in try tps.filter { try r.getInt64(Keys.pendingOffset(group, $0)) != nil } }
        guard !pending.isEmpty else { return [] }
        return try storage.write { w in
            Set(try pending.filter { !(try Groups.pendingOffsetsCleared(w, group, $0, now: now)) })
        }
    }
}
