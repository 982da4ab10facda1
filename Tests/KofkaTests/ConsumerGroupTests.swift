import Testing
@testable import Kofka

/// Consumer delivery modes and consumer groups.
@Suite("ConsumerGroups")
struct ConsumerGroupTests {
    static func fill(_ b: Broker, _ topic: String, partitions: Int32, perPartition: Int, from: Int = 0) throws {
        let p = try b.producer()
        var v = from
        for part in 0..<partitions {
            _ = try p.sendBatch(topic, (0..<perPartition).map { _ in defer { v += 1 }; return Record(partition: part, value: bytes("v\(v)")) })
        }
    }

    /// Polls until `want` records were returned or `seconds` passed.
    static func pollUntil(_ c: Consumer, count want: Int, seconds: Double = 5) throws -> [Message] {
        var out: [Message] = []
        let end = nowMonoMs() + Int(seconds * 1000)
        while out.count < want && nowMonoMs() < end { out += try c.pollBatch(max: 1000, timeout: .milliseconds(50)) }
        return out
    }

    @Test(arguments: backends.flatMap { k in DeliveryMode.allCases.map { (k, $0) } })
    func nextConsumerResumesWhereTheModeCommittedAfterACrash(kind: String, mode: DeliveryMode) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("seed", partitions: 1)
        try Self.fill(f.broker, "seed", partitions: 1, perPartition: 30)
        let cfg: [(String, String)] = [("group.id", "g"), ("delivery.mode", mode.rawValue), ("max.poll.records", "10"), ("session.timeout.ms", "300")]
        let c1 = try f.broker.consumer(try ccfg(cfg))
        try c1.subscribe(["seed"])
        #expect(try c1.pollBatch(max: 100, timeout: .seconds(2)).map(\.offset) == Array(0..<10))
        #expect(try c1.pollBatch(max: 100, timeout: .seconds(2)).map(\.offset) == Array(10..<20))
        c1.destroy()   // dies while processing the second batch
        let c2 = try f.broker.consumer(try ccfg(cfg))
        try c2.subscribe(["seed"])
        let first = try c2.poll(timeout: .seconds(3))?.offset
        let expected: Int64 = switch mode { case .atMostOnce: 20; case .atLeastOnce: 10; case .exactlyOnce: 0 }
        print("[\(kind)] \(mode.rawValue): after a crash in the second batch, the next consumer resumes at \(first ?? -1)")
        #expect(first == expected)
        // at-most-once has already committed past the record it just returned; at-least-once commits it at the next poll
        let committed: Int64 = switch mode { case .atMostOnce: 21; case .atLeastOnce: 10; case .exactlyOnce: -1 }
        #expect(try c2.committed("seed", 0) == committed)
        try c2.close()
    }

    @Test(arguments: backends)
    func twoMembersSplitSixPartitionsAndTheSurvivorTakesAllAfterTheSessionTimeout(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("six", partitions: 6)
        try Self.fill(f.broker, "six", partitions: 6, perPartition: 10)
        let cfg: [(String, String)] = [("group.id", "pair"), ("session.timeout.ms", "400")]
        let a = try f.broker.consumer(try ccfg(cfg)), b = try f.broker.consumer(try ccfg(cfg))
        try a.subscribe(["six"]); try b.subscribe(["six"])
        var seenA: [Message] = [], seenB: [Message] = []
        let end = nowMonoMs() + 5000
        while seenA.count + seenB.count < 60 && nowMonoMs() < end {
            seenA += try a.pollBatch(max: 7, timeout: .milliseconds(20))
            seenB += try b.pollBatch(max: 7, timeout: .milliseconds(20))
        }
        let pa = Set(seenA.map(\.partition)), pb = Set(seenB.map(\.partition))
        print("[\(kind)] two members: A read \(seenA.count) from \(pa.sorted()), B read \(seenB.count) from \(pb.sorted())")
        #expect(pa.isDisjoint(with: pb))
        #expect(Set(a.assigned).isDisjoint(with: Set(b.assigned)))
        #expect(a.assigned.count == 3 && b.assigned.count == 3)
        let t = Tally(sent: 60, values: (seenA + seenB).compactMap(intValue))
        #expect(t.lost == 0 && t.duplicated == 0)
        try b.commit()
        b.destroy()
        let died = nowMonoMs()
        try Self.fill(f.broker, "six", partitions: 6, perPartition: 5, from: 60)
        var next: [Message] = []
        let end2 = nowMonoMs() + 5000
        while (next.count < 30 || a.assigned.count < 6) && nowMonoMs() < end2 { next += try a.pollBatch(max: 100, timeout: .milliseconds(50)) }
        print("[\(kind)] survivor owns \(a.assigned.count) partitions \(nowMonoMs() - died) ms after the other died; read \(next.count) new records")
        #expect(a.assigned.count == 6)
        #expect(next.compactMap(intValue).sorted() == Array(60..<90))
        try a.close()
    }

    @Test(arguments: backends)
    func aMemberWhoseSessionExpiredCannotCommit(kind: String) throws {
        let f = try BrokerFixture(kind)
        try Self.fill(f.broker, "exp", partitions: 1, perPartition: 10)
        let cfg: [(String, String)] = [("group.id", "z"), ("session.timeout.ms", "300"), ("enable.auto.commit", "false")]
        let zombie = try f.broker.consumer(try ccfg(cfg))
        try zombie.subscribe(["exp"])
        #expect(try zombie.pollBatch(max: 3, timeout: .seconds(2)).count == 3)
        let live = try f.broker.consumer(try ccfg(cfg))
        try live.subscribe(["exp"])
        let got = try Self.pollUntil(live, count: 10, seconds: 3)   // the zombie stops polling; live takes over
        #expect(got.first?.offset == 0)
        #expect(live.assigned == [TopicPartition("exp", 0)])
        let e = errorCode { try zombie.commit() }
        print("[\(kind)] commit by an expired member: \(e.map { $0.name } ?? "accepted")")
        #expect(e == .rebalanced)
        #expect(try live.committed("exp", 0) == -1)
        try live.commit()
        #expect(try live.committed("exp", 0) == 10)
    }

    @Test(arguments: backends)
    func autoOffsetResetLatestAndNone(kind: String) throws {
        let f = try BrokerFixture(kind)
        try Self.fill(f.broker, "r", partitions: 1, perPartition: 5)
        let latest = try f.broker.consumer(try ccfg([("group.id", "l"), ("auto.offset.reset", "latest")]))
        try latest.subscribe(["r"])
        #expect(try latest.poll(timeout: .milliseconds(100)) == nil)
        #expect(try latest.position("r", 0) == 5)
        _ = try f.broker.producer().send("r", Record(value: bytes("v5")))
        #expect(try latest.poll(timeout: .seconds(2))?.offset == 5)
        let none = try f.broker.consumer(try ccfg([("group.id", "n"), ("auto.offset.reset", "none")]))
        try none.subscribe(["r"])
        #expect(errorCode { _ = try none.poll(timeout: .milliseconds(100)) } == .noOffset)
        let earliest = try f.broker.consumer(try ccfg([("group.id", "e")]))
        try earliest.subscribe(["r"])
        #expect(try earliest.poll(timeout: .seconds(1))?.offset == 0)
        for c in [latest, none, earliest] { c.destroy() }
    }

    @Test(arguments: backends)
    func seekPositionCommittedAndSeekToCommitted(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("s", partitions: 2)
        try Self.fill(f.broker, "s", partitions: 2, perPartition: 10)
        let c = try f.broker.consumer(try ccfg([("group.id", "sk"), ("enable.auto.commit", "false")]))
        try c.assign("s", partitions: [1])
        #expect(try c.position("s", 1) == -1)
        #expect(try c.committed("s", 1) == -1)
        #expect(try c.pollBatch(max: 4, timeout: .seconds(1)).map(\.offset) == [0, 1, 2, 3])
        #expect(try c.position("s", 1) == 4)
        try c.commit()
        #expect(try c.committed("s", 1) == 4)
        #expect(try c.committed("s", 0) == -1)
        try c.seek("s", 1, 8)
        #expect(try c.position("s", 1) == 8)
        #expect(try c.poll(timeout: .seconds(1))?.offset == 8)
        try c.seekToCommitted()
        #expect(try c.poll(timeout: .seconds(1))?.offset == 4)
        let m = try #require(try c.poll(timeout: .seconds(1)))
        try c.commit(m)
        #expect(try c.committed("s", 1) == 6)
        #expect(errorCode { try c.seek("s", 1, 11) } == .offsetOutOfRange)
        #expect(errorCode { try c.seek("s", 1, -1) } == .offsetOutOfRange)
        try c.seek("s", 1, 10)
        #expect(try c.poll(timeout: .milliseconds(50)) == nil)
        #expect(errorCode { try c.seek("s", 0, 1) } == .invalidState)
        #expect(errorCode { _ = try c.position("s", 0) } == .invalidState)
        #expect(errorCode { _ = try c.committed("s", 9) } == .unknownPartition)
        try c.close()
    }

    @Test
    func rangeAndRoundRobinAssignmentsAreDeterministic() throws {
        let counts = ["t1": Int32(3), "t2": Int32(3)]
        func members(_ strategy: String, _ ids: [String]) -> [GroupState.Member] {
            ids.map { .init(id: $0, clientId: "c", topics: ["t1", "t2"], lastHeartbeatMs: 0, sessionTimeoutMs: 1000, strategy: strategy) }
        }
        func owners(_ a: [TopicPartition: String]) -> [String] {
            a.keys.sorted().map { "\($0)=\(a[$0]!)" }
        }
        let range = try Groups.assign(members("range", ["b", "a"]), partitionsOf: { counts[$0] })
        #expect(owners(range) == ["t1[0]=a", "t1[1]=a", "t1[2]=b", "t2[0]=a", "t2[1]=a", "t2[2]=b"])
        #expect(try Groups.assign(members("range", ["a", "b"]), partitionsOf: { counts[$0] }) == range)
        let rr = try Groups.assign(members("roundrobin", ["b", "a"]), partitionsOf: { counts[$0] })
        #expect(owners(rr) == ["t1[0]=a", "t1[1]=b", "t1[2]=a", "t2[0]=b", "t2[1]=a", "t2[2]=b"])
        #expect(try Groups.assign(members("roundrobin", ["a", "b"]), partitionsOf: { counts[$0] }) == rr)
        let three = try Groups.assign(members("range", ["c", "a", "b"]), partitionsOf: { counts[$0] })
        #expect(owners(three) == ["t1[0]=a", "t1[1]=b", "t1[2]=c", "t2[0]=a", "t2[1]=b", "t2[2]=c"])
    }

    @Test(arguments: backends)
    func twentyMembershipChangesUnderProductionLoseNothingAtLeastOnce(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("churn", partitions: 4)
        let total = 1200
        let producer = try f.broker.producer()
        let perr = Collector<String>()
        let producing = Collector<Bool>()
        startThread {
            for i in 0..<total {
                do { _ = try producer.send("churn", Record(key: bytes("k\(i % 17)"), value: bytes("v\(i)"))) } catch { perr.fail("\(error)") }
                if i % 10 == 0 { sleepMs(1) }
            }
            producing.add(true)
        }
        let cfg: [(String, String)] = [("group.id", "churn"), ("delivery.mode", "at-least-once"), ("session.timeout.ms", "300"), ("max.poll.records", "50")]
        var live: [Consumer] = []
        var seen: [Int] = []
        func pollAll(_ rounds: Int) throws {
            for _ in 0..<rounds { for c in live { seen += try c.pollBatch(max: 50, timeout: .milliseconds(5)).compactMap(intValue) } }
        }
        var changes = 0, closed = 0, destroyed = 0
        for step in 0..<20 {
            if live.count < 2 || step % 3 == 0 {
                let c = try f.broker.consumer(try ccfg(cfg))
                try c.subscribe(["churn"])
                live.append(c)
            } else if step % 3 == 1 {
                try live.removeFirst().close(); closed += 1
            } else {
                live.removeLast().destroy(); destroyed += 1
            }
            changes += 1
            try pollAll(8)
        }
        if live.isEmpty { let c = try f.broker.consumer(try ccfg(cfg)); try c.subscribe(["churn"]); live.append(c) }
        let end = nowMonoMs() + 15_000
        while nowMonoMs() < end {
            try pollAll(1)
            if producing.values.count == 1 && Set(seen).count == total { break }
        }
        let t = Tally(sent: total, values: seen)
        print("[\(kind)] \(changes) membership changes (\(closed) closed, \(destroyed) destroyed) under production: \(t), \(seen.count) deliveries")
        #expect(perr.errors.isEmpty)
        #expect(t.lost == 0)
        #expect(t.unexpected == 0)
        for c in live { try c.close() }
    }
}
