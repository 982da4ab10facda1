import Kofka

/// Kafka's classic group protocol on Kofka's groups.
///
/// A join round (Kafka's PreparingRebalance) waits until every known member has sent JoinGroup
/// again, or the round's rebalance timeout passed (members that did not rejoin are removed).
/// Completing it starts a new generation *in storage* (`Broker.classicCompleteJoin`), the
/// same generation counter library consumers of the group are fenced by; the leader client
/// receives every member's metadata — library members' subscriptions too, written as
/// consumer-protocol metadata — and its SyncGroup assignment becomes the generation's target
/// assignment in storage (`Broker.classicAssign`), which is what commits and
/// TxnOffsetCommit (KIP-447) are checked against. Heartbeats are recorded in storage so that
/// library members never expire a live wire member, and a generation started by a library
/// member (joining or leaving) makes the wire members rejoin (REBALANCE_IN_PROGRESS).
///
/// The round itself (who has rejoined, each member's metadata and assignment bytes) is kept in
/// this process: one `kofka serve` process coordinates the classic members of a storage.
final class ClassicCoordinator: Sendable {
    let broker: Broker

    struct Member: Sendable {
        var id: String
        var clientId: String
        var sessionTimeoutMs: Int32
        var rebalanceTimeoutMs: Int32
        var protocols: [(name: String, metadata: [UInt8])]
        /// Rejoined in the current round.
        var joined = false
        /// The generation whose JoinGroup response it may have.
        var joinedGeneration: Int32 = -1
        var assignment: [UInt8] = []
        var lastSeenNs: UInt64
        var topics: [String] {
            protocols.first.map { ConsumerProtocol.topics(ofSubscription: $0.metadata) } ?? []
        }
    }

    enum Phase: String, Sendable {
        case empty = "Empty", joining = "PreparingRebalance", syncing = "CompletingRebalance", stable = "Stable"
    }

    struct Group: Sendable {
        var phase = Phase.empty
        var generation: Int32 = 0
        var members: [String: Member] = [:]
        /// Members in the order they first joined (the first is leader unless it left).
        var order: [String] = []
        var leader: String?
        var protocolType: String?
        var protocolName: String?
        var roundDeadlineNs: UInt64 = 0
        /// Library members of the generation (id, client id, topics), assigned by the leader too.
        var libraryMembers: [(id: String, clientId: String, topics: [String])] = []
    }

    /// Every group with classic members, by name. Held across the coordinator's storage calls:
    /// it is the coordinator's turn-taking (a round's in-memory state and the generation it
    /// writes change together), never held while a request waits.
    let groups = Locked<[String: Group]>([:])

    init(broker: Broker) { self.broker = broker }

    // MARK: Rounds

    private func startRound(_ g: inout Group, now: UInt64) {
        g.phase = .joining
        for id in g.members.keys { g.members[id]!.joined = false }
        let timeout = g.members.values.map(\.rebalanceTimeoutMs).max() ?? 0
        g.roundDeadlineNs = now &+ UInt64(max(1000, timeout)) * 1_000_000
    }

    /// Completes the round when everyone rejoined or its time is up.
    private func maybeComplete(_ name: String, _ g: inout Group, now: UInt64) {
        guard g.phase == .joining else { return }
        let all = g.members.values.allSatisfy(\.joined)
        guard all || now >= g.roundDeadlineNs else { return }
        let leaving = g.members.values.filter { !$0.joined }.map(\.id)
        for id in leaving { g.members[id] = nil }
        g.order.removeAll { g.members[$0] == nil }
        if g.members.isEmpty {
            try? broker.classicLeave(name, memberIds: leaving, now: nowMs())
            g = Group(generation: g.generation)
            return
        }
        let leader = g.leader.flatMap { g.members[$0] != nil ? $0 : nil } ?? g.order.first!
        let lm = g.members[leader]!
        let chosen = lm.protocols.first { p in g.members.values.allSatisfy { m in m.protocols.contains { $0.name == p.name } } }?.name
            ?? lm.protocols.first?.name ?? ""
        let members = g.order.compactMap { g.members[$0] }.map { m in
            ClassicMember(id: m.id, clientId: m.clientId,
                          topics: m.protocols.first { $0.name == chosen }.map { ConsumerProtocol.topics(ofSubscription: $0.metadata) } ?? [],
                          sessionTimeoutMs: m.sessionTimeoutMs, protocolName: chosen)
        }
        do {
            let done = try broker.classicCompleteJoin(name, members: members, now: nowMs())
            g.generation = done.generation
            g.libraryMembers = done.libraryMembers
        } catch {
            return   // storage busy: the round completes on a later try
        }
        g.leader = leader
        g.protocolName = chosen
        g.phase = .syncing
        for id in g.members.keys {
            g.members[id]!.joinedGeneration = g.generation
            g.members[id]!.assignment = []
            g.members[id]!.lastSeenNs = now
        }
    }

    /// Removes members whose session ran out; a stable group starts a round.
    private func expire(_ name: String, _ g: inout Group, now: UInt64) {
        let dead = g.members.values.filter { now > $0.lastSeenNs &+ UInt64($0.sessionTimeoutMs) * 1_000_000 }.map(\.id)
        guard !dead.isEmpty else { return }
        for id in dead { g.members[id] = nil }
        g.order.removeAll { g.members[$0] == nil }
        if g.members.isEmpty {
            try? broker.classicLeave(name, memberIds: dead, now: nowMs())
            g = Group(generation: g.generation)
        } else if g.phase != .joining {
            startRound(&g, now: now)
        }
    }

    // MARK: Requests

    enum JoinStart { case error(Int16, memberId: String), pending(memberId: String) }

    func join(_ name: String, _ req: JoinGroupRequest, clientId: String) -> JoinStart {
        let now = monoNs()
        return groups.withLock { all -> JoinStart in
            var g = all[name] ?? Group(generation: (try? broker.groupGeneration(name)) ?? 0)
            defer { all[name] = g }
            expire(name, &g, now: now)
            var id = req.memberId
            if id.isEmpty {
                id = "\(clientId.isEmpty ? "member" : clientId)-\(randomHex())"
            } else if g.members[id] == nil {
                return .error(KafkaError.unknownMemberId, memberId: id)
            }
            if let t = g.protocolType, !g.members.isEmpty, t != req.protocolType {
                return .error(KafkaError.inconsistentGroupProtocol, memberId: id)
            }
            let others = g.members.values.filter { $0.id != id }
            if !others.isEmpty && !req.protocols.contains(where: { p in others.allSatisfy { m in m.protocols.contains { $0.name == p.name } } }) {
                return .error(KafkaError.inconsistentGroupProtocol, memberId: id)
            }
            if g.members.isEmpty { g.protocolType = req.protocolType }
            if let old = g.members[id], old.joinedGeneration == g.generation,
               g.phase == .syncing || (g.phase == .stable && id != g.leader),
               old.protocols.count == req.protocols.count,
               zip(old.protocols, req.protocols).allSatisfy({ $0.name == $1.name && $0.metadata == $1.metadata }) {
                // As Kafka's coordinator: a member rejoining with the metadata it joined with,
                // while its generation is being synced or is stable (and it is not the leader,
                // who may have seen metadata change), gets the current generation back without
                // a new round. kafka-python rejoins so when a poll timed out mid-join.
                g.members[id]!.lastSeenNs = now
                return .pending(memberId: id)
            }
            var m = g.members[id] ?? Member(id: id, clientId: clientId, sessionTimeoutMs: req.sessionTimeoutMs,
                                            rebalanceTimeoutMs: req.rebalanceTimeoutMs, protocols: [], lastSeenNs: now)
            m.sessionTimeoutMs = req.sessionTimeoutMs
            m.rebalanceTimeoutMs = req.rebalanceTimeoutMs > 0 ? req.rebalanceTimeoutMs : req.sessionTimeoutMs
            m.protocols = req.protocols.map { ($0.name, $0.metadata) }
            m.lastSeenNs = now
            m.joined = true
            if g.members[id] == nil { g.order.append(id) }
            g.members[id] = m
            if g.phase != .joining { startRound(&g, now: now) }
            g.members[id]!.joined = true
            maybeComplete(name, &g, now: now)
            return .pending(memberId: id)
        }
    }

    /// The JoinGroup response for `memberId`, or nil while its round is open.
    func joinResult(_ name: String, memberId: String, version: Int16, expired: Bool) -> JoinGroupResponse? {
        let now = monoNs()
        return groups.withLock { all -> JoinGroupResponse? in
            guard var g = all[name] else { return Self.joinError(KafkaError.unknownMemberId, memberId) }
            defer { all[name] = g }
            expire(name, &g, now: now)
            maybeComplete(name, &g, now: expired ? max(now, g.roundDeadlineNs) : now)
            guard let m = g.members[memberId] else { return Self.joinError(KafkaError.unknownMemberId, memberId) }
            guard g.phase != .joining, m.joinedGeneration == g.generation else {
                return expired ? Self.joinError(KafkaError.rebalanceInProgress, memberId) : nil
            }
            var r = JoinGroupResponse()
            r.generationId = g.generation
            r.protocolType = g.protocolType
            r.protocolName = g.protocolName
            r.leader = g.leader ?? ""
            r.memberId = memberId
            if memberId == g.leader {
                r.members = g.order.compactMap { g.members[$0] }.map { x in
                    var e = JoinGroupResponse.JoinGroupResponseMember()
                    e.memberId = x.id
                    e.metadata = x.protocols.first { $0.name == g.protocolName }?.metadata ?? []
                    return e
                }
                for l in g.libraryMembers {
                    var e = JoinGroupResponse.JoinGroupResponseMember()
                    e.memberId = l.id
                    e.metadata = ConsumerProtocol.subscription(l.topics)
                    r.members.append(e)
                }
            }
            return r
        }
    }

    static func joinError(_ code: Int16, _ memberId: String) -> JoinGroupResponse {
        var r = JoinGroupResponse()
        r.errorCode = code
        r.generationId = -1
        r.memberId = memberId
        r.protocolName = nil
        return r
    }

    enum SyncStart { case done(SyncGroupResponse), pending }

    func sync(_ name: String, _ req: SyncGroupRequest) -> SyncStart {
        let now = monoNs()
        return groups.withLock { all -> SyncStart in
            guard var g = all[name], g.members[req.memberId] != nil else { return .done(Self.syncError(KafkaError.unknownMemberId)) }
            defer { all[name] = g }
            guard req.generationId == g.generation else { return .done(Self.syncError(KafkaError.illegalGeneration)) }
            guard g.phase != .joining else { return .done(Self.syncError(KafkaError.rebalanceInProgress)) }
            g.members[req.memberId]!.lastSeenNs = now
            if req.memberId == g.leader && g.phase == .syncing {
                var target: [TopicPartition: String] = [:]
                for a in req.assignments {
                    if g.members[a.memberId] != nil { g.members[a.memberId]!.assignment = a.assignment }
                    if g.protocolType == "consumer" {
                        for tp in ConsumerProtocol.partitions(ofAssignment: a.assignment) { target[tp] = a.memberId }
                    }
                }
                do {
                    try broker.classicAssign(name, generation: g.generation, assignment: target, now: nowMs())
                } catch let e as KofkaError where e.code == .rebalanced {
                    startRound(&g, now: now)   // a library member changed the group meanwhile
                    return .done(Self.syncError(KafkaError.rebalanceInProgress))
                } catch {
                    return .done(Self.syncError(KafkaError.code(error)))
                }
                g.phase = .stable
            }
            return g.phase == .stable ? .done(syncOK(g, req.memberId)) : .pending
        }
    }

    /// The SyncGroup response of a follower waiting for its leader, or nil while it waits.
    func syncResult(_ name: String, memberId: String, generation: Int32, expired: Bool) -> SyncGroupResponse? {
        groups.withLock { all -> SyncGroupResponse? in
            guard let g = all[name], g.members[memberId] != nil else { return Self.syncError(KafkaError.unknownMemberId) }
            if g.generation != generation || g.phase == .joining { return Self.syncError(KafkaError.rebalanceInProgress) }
            if g.phase == .stable { return syncOK(g, memberId) }
            return expired ? Self.syncError(KafkaError.rebalanceInProgress) : nil
        }
    }

    private func syncOK(_ g: Group, _ memberId: String) -> SyncGroupResponse {
        var r = SyncGroupResponse()
        r.protocolType = g.protocolType
        r.protocolName = g.protocolName
        r.assignment = g.members[memberId]?.assignment ?? []
        return r
    }

    static func syncError(_ code: Int16) -> SyncGroupResponse {
        var r = SyncGroupResponse()
        r.errorCode = code
        return r
    }

    func heartbeat(_ name: String, memberId: String, generation: Int32) -> Int16 {
        let now = monoNs()
        return groups.withLock { all -> Int16 in
            guard var g = all[name], g.members[memberId] != nil else { return KafkaError.unknownMemberId }
            defer { all[name] = g }
            g.members[memberId]!.lastSeenNs = now
            expire(name, &g, now: now)
            maybeComplete(name, &g, now: now)
            guard g.members[memberId] != nil else { return KafkaError.unknownMemberId }
            if g.phase == .joining { return KafkaError.rebalanceInProgress }
            if generation != g.generation { return KafkaError.illegalGeneration }
            let stored: Int32??
            do { stored = .some(try broker.classicHeartbeat(name, memberId: memberId, now: nowMs())) } catch { stored = nil }
            switch stored {
            case .some(nil):
                // no longer a member in storage (a library member expired it): it must rejoin
                g.members[memberId] = nil
                g.order.removeAll { $0 == memberId }
                if g.members.isEmpty { g = Group(generation: g.generation) } else { startRound(&g, now: now) }
                return KafkaError.unknownMemberId
            case .some(let gen?) where gen != g.generation:
                startRound(&g, now: now)
                return KafkaError.rebalanceInProgress
            default:
                return KafkaError.none
            }
        }
    }

    func leave(_ name: String, memberIds: [String]) -> [Int16] {
        let now = monoNs()
        return groups.withLock { all -> [Int16] in
            guard var g = all[name] else { return memberIds.map { _ in KafkaError.unknownMemberId } }
            defer { all[name] = g }
            let codes = memberIds.map { g.members[$0] == nil ? KafkaError.unknownMemberId : KafkaError.none }
            let gone = memberIds.filter { g.members[$0] != nil }
            for id in gone { g.members[id] = nil }
            g.order.removeAll { g.members[$0] == nil }
            if !gone.isEmpty {
                try? broker.classicLeave(name, memberIds: gone, now: nowMs())
                if g.members.isEmpty {
                    g = Group(generation: (try? broker.groupGeneration(name)) ?? g.generation)
                } else {
                    startRound(&g, now: now)
                }
            }
            return codes
        }
    }

    /// Checks a commit from `memberId` at `generation` against the round (the core checks the
    /// generation and holds again in its write). nil: go ahead; else the error for every partition.
    func checkCommit(_ name: String, memberId: String, generation: Int32) -> Int16? {
        let now = monoNs()
        return groups.withLock { all -> Int16? in
            guard var g = all[name] else { return nil }   // not a classic group here: the core decides
            defer { all[name] = g }
            guard g.members[memberId] != nil else { return KafkaError.unknownMemberId }
            g.members[memberId]!.lastSeenNs = now
            if generation != g.generation { return KafkaError.illegalGeneration }
            if g.phase == .joining { return KafkaError.rebalanceInProgress }
            return nil
        }
    }

    /// The group as DescribeGroups and ListGroups show it, if it has classic members.
    func describe(_ name: String) -> Group? { groups.withLock { $0[name] } }

    private func randomHex() -> String {
        var g = SystemRandomNumberGenerator()
        return String(g.next() as UInt64, radix: 16) + String(g.next() as UInt32, radix: 16)
    }
}
