import Kofka

/// JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups.
extension WireService {
    func joinGroup(_ ctx: RequestContext, _ req: JoinGroupRequest) -> WireOutcome {
        guard !req.groupId.isEmpty else {
            return reply(ctx) { ClassicCoordinator.joinError(KafkaError.invalidRequest, req.memberId).encode(to: &$0, version: ctx.version) }
        }
        guard req.sessionTimeoutMs >= 1000 && req.sessionTimeoutMs <= 3_600_000 else {
            return reply(ctx) { ClassicCoordinator.joinError(KafkaError.invalidSessionTimeout, req.memberId).encode(to: &$0, version: ctx.version) }
        }
        switch groups.join(req.groupId, req, clientId: ctx.clientId) {
        case .error(let code, let id):
            return reply(ctx) { ClassicCoordinator.joinError(code, id).encode(to: &$0, version: ctx.version) }
        case .pending(let id):
            let timeout = UInt64(max(req.rebalanceTimeoutMs, req.sessionTimeoutMs, 1000)) + 5000
            return joinWait(ctx, req.groupId, id, deadline: monoNs() &+ timeout * 1_000_000)
        }
    }

    private func joinWait(_ ctx: RequestContext, _ group: String, _ memberId: String, deadline: UInt64) -> WireOutcome {
        if let r = groups.joinResult(group, memberId: memberId, version: ctx.version, expired: false) {
            return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
        }
        return .wait(WirePending(deadlineNs: deadline) { [self] expired in
            if expired, let r = groups.joinResult(group, memberId: memberId, version: ctx.version, expired: true) {
                return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
            }
            return joinWait(ctx, group, memberId, deadline: deadline)
        })
    }

    func syncGroup(_ ctx: RequestContext, _ req: SyncGroupRequest) -> WireOutcome {
        switch groups.sync(req.groupId, req) {
        case .done(let r): return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
        case .pending: return syncWait(ctx, req, deadline: monoNs() &+ 60_000_000_000)
        }
    }

    private func syncWait(_ ctx: RequestContext, _ req: SyncGroupRequest, deadline: UInt64) -> WireOutcome {
        if let r = groups.syncResult(req.groupId, memberId: req.memberId, generation: req.generationId, expired: false) {
            return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
        }
        return .wait(WirePending(deadlineNs: deadline) { [self] expired in
            if expired, let r = groups.syncResult(req.groupId, memberId: req.memberId, generation: req.generationId, expired: true) {
                return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
            }
            return syncWait(ctx, req, deadline: deadline)
        })
    }

    func heartbeat(_ ctx: RequestContext, _ req: HeartbeatRequest) -> WireOutcome {
        var r = HeartbeatResponse()
        r.errorCode = groups.heartbeat(req.groupId, memberId: req.memberId, generation: req.generationId)
        return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
    }

    func leaveGroup(_ ctx: RequestContext, _ req: LeaveGroupRequest) -> WireOutcome {
        var r = LeaveGroupResponse()
        if ctx.version >= 3 {
            let codes = groups.leave(req.groupId, memberIds: req.members.map(\.memberId))
            r.members = zip(req.members, codes).map { m, c in
                var x = LeaveGroupResponse.MemberResponse()
                x.memberId = m.memberId; x.groupInstanceId = m.groupInstanceId; x.errorCode = c
                return x
            }
        } else {
            r.errorCode = groups.leave(req.groupId, memberIds: [req.memberId])[0]
        }
        return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
    }

    func offsetCommit(_ ctx: RequestContext, _ req: OffsetCommitRequest) -> WireOutcome {
        var offsets: [TopicPartition: Int64] = [:]
        for t in req.topics { for p in t.partitions { offsets[TopicPartition(t.name, p.partitionIndex)] = p.committedOffset } }
        let member = ctx.version >= 1 && req.generationIdOrMemberEpoch >= 0 && !req.memberId.isEmpty ? req.memberId : nil
        var code = KafkaError.none
        var unknown: Set<String> = []
        for t in Set(req.topics.map(\.name)) where (try? broker.partitions(of: t)) == nil { unknown.insert(t) }
        if let member, let c = groups.checkCommit(req.groupId, memberId: member, generation: req.generationIdOrMemberEpoch) {
            code = c
        } else {
            do {
                try broker.commitGroupOffsets(req.groupId, memberId: member, generation: req.generationIdOrMemberEpoch,
                                              offsets.filter { !unknown.contains($0.key.topic) })
            } catch { code = KafkaError.code(error) }
        }
        var r = OffsetCommitResponse()
        r.topics = req.topics.map { t in
            var tr = OffsetCommitResponse.OffsetCommitResponseTopic()
            tr.name = t.name
            tr.partitions = t.partitions.map { p in
                var pr = OffsetCommitResponse.OffsetCommitResponseTopic.OffsetCommitResponsePartition()
                pr.partitionIndex = p.partitionIndex
                pr.errorCode = unknown.contains(t.name) ? KafkaError.unknownTopicOrPartition : code
                return pr
            }
            return tr
        }
        return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
    }

    func offsetFetch(_ ctx: RequestContext, _ req: OffsetFetchRequest) -> WireOutcome {
        var r = OffsetFetchResponse()
        let committed: [TopicPartition: Int64]
        do { committed = try broker.describeGroup(req.groupId)?.committed ?? [:] } catch {
            r.errorCode = KafkaError.code(error)
            return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
        }
        var wanted: [(String, [Int32])] = []
        if let topics = req.topics {
            wanted = topics.map { ($0.name, $0.partitionIndexes) }
        } else {
            let byTopic = Dictionary(grouping: committed.keys, by: \.topic)
            wanted = byTopic.sorted { $0.key < $1.key }.map { ($0.key, $0.value.map(\.partition).sorted()) }
        }
        // require_stable (KIP-447): offsets pending in an open transaction are UNSTABLE_OFFSET_COMMIT
        // until it ends, so a new owner never starts from offsets a zombie may still commit.
        var unstable: Set<TopicPartition> = []
        if req.requireStable {
            let tps = wanted.flatMap { name, parts in parts.map { TopicPartition(name, $0) } }
            unstable = (try? broker.unstableOffsets(req.groupId, tps)) ?? Set(tps)
        }
        r.topics = wanted.map { name, parts in
            var tr = OffsetFetchResponse.OffsetFetchResponseTopic()
            tr.name = name
            tr.partitions = parts.map { p in
                var pr = OffsetFetchResponse.OffsetFetchResponseTopic.OffsetFetchResponsePartition()
                pr.partitionIndex = p
                pr.committedOffset = committed[TopicPartition(name, p)] ?? -1
                pr.committedLeaderEpoch = -1
                pr.metadata = ""
                if unstable.contains(TopicPartition(name, p)) { pr.errorCode = 88 }   // UNSTABLE_OFFSET_COMMIT
                return pr
            }
            return tr
        }
        return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
    }

    func describeGroups(_ ctx: RequestContext, _ req: DescribeGroupsRequest) -> WireOutcome {
        var r = DescribeGroupsResponse()
        for name in req.groups {
            var d = DescribeGroupsResponse.DescribedGroup()
            d.groupId = name
            d.authorizedOperations = Int32.min
            let stored = try? broker.describeGroup(name)
            if let g = groups.describe(name), !g.members.isEmpty {
                d.groupState = g.phase.rawValue
                d.protocolType = g.protocolType ?? ""
                d.protocolData = g.phase == .stable || g.phase == .syncing ? g.protocolName ?? "" : ""
                d.members = g.order.compactMap { g.members[$0] }.map { m in
                    var x = DescribeGroupsResponse.DescribedGroup.DescribedGroupMember()
                    x.memberId = m.id; x.clientId = m.clientId; x.clientHost = "/127.0.0.1"
                    x.memberMetadata = m.protocols.first { $0.name == g.protocolName }?.metadata ?? []
                    x.memberAssignment = m.assignment
                    return x
                }
            } else if let s = stored {
                d.groupState = s.members.isEmpty ? "Empty" : "Stable"
                d.protocolType = "consumer"
                d.protocolData = s.members.isEmpty ? "" : "kofka"
            } else {
                d.groupState = "Dead"
            }
            // library members, as consumer-protocol members with the partitions they hold
            let classic = Set(groups.describe(name)?.members.keys.map { $0 } ?? [])
            for m in stored?.members ?? [] where !classic.contains(m.id) {
                var x = DescribeGroupsResponse.DescribedGroup.DescribedGroupMember()
                x.memberId = m.id; x.clientId = m.clientId; x.clientHost = "/127.0.0.1"
                x.memberMetadata = ConsumerProtocol.subscription(m.topics)
                x.memberAssignment = ConsumerProtocol.assignment(m.held)
                d.members.append(x)
            }
            r.groups.append(d)
        }
        return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
    }

    func listGroups(_ ctx: RequestContext, _ req: ListGroupsRequest) -> WireOutcome {
        var r = ListGroupsResponse()
        do {
            for name in try broker.groups() {
                var l = ListGroupsResponse.ListedGroup()
                l.groupId = name
                l.protocolType = "consumer"
                if let g = groups.describe(name), !g.members.isEmpty {
                    l.groupState = g.phase.rawValue
                } else {
                    l.groupState = ((try? broker.describeGroup(name))??.members.isEmpty ?? true) ? "Empty" : "Stable"
                }
                l.groupType = "classic"
                if !req.statesFilter.isEmpty && !req.statesFilter.contains(where: { $0.lowercased() == l.groupState.lowercased() }) { continue }
                r.groups.append(l)
            }
        } catch { r.errorCode = KafkaError.code(error) }
        return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
    }
}
