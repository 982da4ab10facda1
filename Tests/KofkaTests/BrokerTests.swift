import Testing
@testable import Kofka

/// Topics, names, watermarks, the partitioner, size limits and configuration rules.
@Suite("Broker")
struct BrokerTests {
    @Test(arguments: backends)
    func topicIsCreatedOnceWithItsPartitionCount(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("orders", partitions: 3)
        #expect(try f.broker.partitions(of: "orders") == 3)
        #expect(errorCode { try f.broker.createTopic("orders", partitions: 3) } == .topicExists)
        #expect(errorCode { try f.broker.createTopic("orders", partitions: 5) } == .topicExists)
        #expect(try f.broker.partitions(of: "orders") == 3)
        #expect(errorCode { _ = try f.broker.partitions(of: "missing") } == .unknownTopic)
        #expect(errorCode { try f.broker.createTopic("zero", partitions: 0) } == .invalidArg)
        #expect(errorCode { try f.broker.createTopic("negative", partitions: -1) } == .invalidArg)
        #expect(try f.broker.topics().map(\.name) == ["orders"])
    }

    @Test(arguments: backends)
    func topicNamesFollowKafkasRule(kind: String) throws {
        let f = try BrokerFixture(kind)
        let good = ["a", "A-z_0.9", String(repeating: "x", count: 249), "...", "-"]
        for name in good { try f.broker.createTopic(name, partitions: 1) }
        let bad = ["", ".", "..", "a b", "a/b", "ä", "tab\t", String(repeating: "x", count: 250), "a:b"]
        for name in bad {
            #expect(errorCode { try f.broker.createTopic(name, partitions: 1) } == .invalidArg, "name '\(name)'")
        }
        #expect(try f.broker.topics().count == good.count)
    }

    @Test(arguments: backends)
    func topicsAreAutoCreatedWithNumPartitionsUnlessDisabled(kind: String) throws {
        let f = try BrokerFixture(kind, config: [("num.partitions", "4")])
        let p = try f.broker.producer()
        let md = try p.send("auto", Record(value: bytes("x")))
        #expect(md.offset == 0)
        #expect(try f.broker.partitions(of: "auto") == 4)
        let c = try f.broker.consumer(ConsumerConfig(groupId: "g"))
        try c.subscribe(["auto-sub"])
        #expect(try f.broker.partitions(of: "auto-sub") == 4)
        c.destroy()

        let g = try BrokerFixture(kind, config: [("auto.create.topics.enable", "false")])
        let q = try g.broker.producer()
        #expect(errorCode { _ = try q.send("nope", Record(value: bytes("x"))) } == .unknownTopic)
        #expect(errorCode { _ = try g.broker.partitions(of: "nope") } == .unknownTopic)
    }

    @Test(arguments: backends)
    func watermarksTrackTheNextOffsetPerPartition(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("w", partitions: 2)
        #expect(try f.broker.watermarks("w", 0) == (0, 0))
        let p = try f.broker.producer()
        for i in 0..<5 { _ = try p.send("w", Record(partition: 1, value: bytes("v\(i)"))) }
        _ = try p.sendBatch("w", (0..<3).map { Record(partition: 0, value: bytes("b\($0)")) })
        #expect(try f.broker.watermarks("w", 0) == (0, 3))
        #expect(try f.broker.watermarks("w", 1) == (0, 5))
        #expect(errorCode { _ = try f.broker.watermarks("w", 2) } == .unknownPartition)
        #expect(errorCode { _ = try f.broker.watermarks("w", -1) } == .unknownPartition)
        #expect(errorCode { _ = try f.broker.watermarks("none", 0) } == .unknownTopic)
        #expect(errorCode { _ = try p.send("w", Record(partition: 7, value: bytes("x"))) } == .unknownPartition)
    }

    @Test
    func murmur2MatchesKafkasJavaClient() {
        let known: [(String, Int32)] = [
            ("21", -973932308), ("foobar", -790332482), ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971), ("abc", 479470107),
        ]
        for (s, h) in known { #expect(Partitioner.murmur2(bytes(s)) == h, "murmur2(\(s))") }
        // Kafka: toPositive(murmur2(key)) % numPartitions
        #expect(Partitioner.partition(forKey: bytes("foobar"), partitions: 7) == Int32((-790332482 & 0x7fff_ffff) % 7))
    }

    @Test(arguments: backends)
    func sameKeyAlwaysLandsOnTheSamePartition(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("keyed", partitions: 5)
        let p = try f.broker.producer()
        for key in ["21", "foobar", "abc", "user-1", "user-2"] {
            let expected = Partitioner.partition(forKey: bytes(key), partitions: 5)
            var parts = Set<Int32>()
            for i in 0..<4 { parts.insert(try p.send("keyed", Record(key: bytes(key), value: bytes("v\(i)"))).partition) }
            parts.formUnion(try p.sendBatch("keyed", [Record(key: bytes(key), value: nil)]).map { try $0.get().partition })
            #expect(parts == [expected], "key \(key)")
        }
        // every record of a key is found on that partition
        for m in try readAll(f.broker, "keyed") where m.key != nil {
            #expect(m.partition == Partitioner.partition(forKey: m.key!, partitions: 5))
        }
    }

    @Test(arguments: backends)
    func recordsLargerThanMessageMaxBytesAreRefused(kind: String) throws {
        let f = try BrokerFixture(kind, config: [("message.max.bytes", "100")])
        let p = try f.broker.producer()
        _ = try p.send("big", Record(key: bytes("k"), value: Array(repeating: 1, count: 99)))
        #expect(errorCode { _ = try p.send("big", Record(key: bytes("k"), value: Array(repeating: 1, count: 100))) } == .msgTooLarge)
        #expect(errorCode { _ = try p.send("big", Record(value: [1], headers: [Header(String(repeating: "h", count: 100), nil)])) } == .msgTooLarge)
        let rs = try p.sendBatch("big", [Record(partition: 0, value: [1]), Record(partition: 0, value: Array(repeating: 0, count: 101)),
                                         Record(partition: 0, value: [2])])
        #expect(rs.map { (try? $0.get())?.offset } == [1, nil, 2])
        if case .failure(let e) = rs[1] { #expect(e.code == .msgTooLarge) } else { Issue.record("oversized record in a batch was accepted") }
        #expect(try f.broker.watermarks("big", 0).high == 3)
    }

    @Test
    func configErrorsNameTheKeyAndRejectContradictions() throws {
        func failure(_ body: () throws -> Void) -> KofkaError? {
            do { try body() } catch let e as KofkaError { return e } catch {}
            return nil
        }
        let unknown = failure { _ = try ProducerConfig([("ackz", "all")]) }
        #expect(unknown?.code == .invalidConfig)
        #expect(unknown?.message.contains("'ackz'") == true)
        let badValue = failure { _ = try ProducerConfig([("acks", "2")]) }
        #expect(badValue?.code == .invalidConfig)
        #expect(badValue?.message.contains("acks") == true && badValue?.message.contains("'2'") == true)
        let badMode = failure { _ = try ProducerConfig([("delivery.mode", "twice")]) }
        #expect(badMode?.code == .invalidConfig && badMode?.message.contains("delivery.mode") == true)
        let txnAcks0 = failure { _ = try ProducerConfig([("transactional.id", "t"), ("acks", "0")]) }
        #expect(txnAcks0?.code == .invalidConfig)
        #expect(txnAcks0?.message.contains("transactional.id") == true)
        let idemAcks1 = failure { _ = try ProducerConfig([("enable.idempotence", "true"), ("acks", "1")]) }
        #expect(idemAcks1?.code == .invalidConfig)
        #expect(idemAcks1?.message.contains("enable.idempotence") == true)
        #expect(failure { _ = try ProducerConfig([("delivery.mode", "exactly-once"), ("acks", "0")]) }?.code == .invalidConfig)
        #expect(failure { _ = try ProducerConfig([("fault.request.loss.rate", "1.5")]) }?.message.contains("fault.request.loss.rate") == true)
        // explicit keys override the preset
        let p = try ProducerConfig([("delivery.mode", "at-most-once"), ("acks", "all"), ("retries", "3")])
        #expect(p.acks == .all && p.retries == 3 && !p.idempotence)
        let e = try ProducerConfig([("delivery.mode", "exactly-once")])
        #expect(e.acks == .all && e.idempotence)

        let b = failure { _ = try BrokerConfig([("num.partition", "3")]) }
        #expect(b?.code == .invalidConfig && b?.message.contains("'num.partition'") == true)
        #expect(failure { _ = try BrokerConfig([("num.partitions", "0")]) }?.message.contains("num.partitions") == true)
        let c = failure { _ = try ConsumerConfig([("auto.offset.reset", "smallest")]) }
        #expect(c?.code == .invalidConfig && c?.message.contains("auto.offset.reset") == true)
        #expect(failure { _ = try ConsumerConfig([("group.idd", "g")]) }?.message.contains("'group.idd'") == true)
        #expect(failure { _ = try Broker("nosuchscheme://x") }?.code == .invalidArg)
        // postgres: is served by libkofka_postgresql.so (built beside the tests): host x cannot be reached
        #expect(failure { _ = try Broker("postgres://x") }.map { $0.code == .storage && $0.message.contains("host x") } == true)
        #expect(failure { _ = try Broker("sqlite:") }?.code == .invalidArg)
        // A password in the storage string never reaches a message.
        let secret = failure { _ = try Broker("postgresql://u:s3cret-pw@127.0.0.1:1/db") }
        #expect(secret?.code == .storage)
        #expect(secret.map { !$0.message.contains("s3cret-pw") } == true, "\(secret?.message ?? "")")
    }

    @Test func storageStringsAreRedactedOnlyWhereAPasswordIs() {
        #expect(Broker.redacted("postgresql://u:pw@h:5432/db?x=1") == "postgresql://u:***@h:5432/db?x=1")
        #expect(Broker.redacted("//u:pw@h/db") == "//u:***@h/db")
        #expect(Broker.redacted("postgresql://u@h/db") == "postgresql://u@h/db")
        #expect(Broker.redacted("postgresql://h:5432/db@x") == "postgresql://h:5432/db@x")
        #expect(Broker.redacted("sqlite:/tmp/a:b@c.db") == "sqlite:/tmp/a:b@c.db")
        #expect(Broker.redacted("memory:") == "memory:")
    }

    @Test(arguments: backends)
    func handlesOnAClosedBrokerFailWithClosed(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("c", partitions: 1)
        let p = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once")]))
        _ = try p.send("c", Record(value: bytes("v0")))
        let c = try f.broker.consumer(ConsumerConfig(groupId: "g"))
        try c.subscribe(["c"])
        f.broker.close()
        f.broker.close()   // idempotent
        #expect(errorCode { _ = try p.send("c", Record(value: bytes("v1"))) } == .closed)
        #expect(errorCode { try p.produce("c", Record(value: bytes("v1"))) } == .closed)
        #expect(errorCode { _ = try c.poll(timeout: .milliseconds(10)) } == .closed)
        #expect(errorCode { try f.broker.createTopic("d", partitions: 1) } == .closed)
        #expect(errorCode { _ = try f.broker.watermarks("c", 0) } == .closed)
        #expect(errorCode { _ = try f.broker.producer() } == .closed)
        try c.close()
        try p.close()
    }
}
