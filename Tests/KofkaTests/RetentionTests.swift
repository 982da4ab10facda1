import Testing
import Dispatch
#if canImport(Glibc)
import Glibc
#endif
@testable import Kofka

/// Retention, DeleteRecords, compaction and state expiry (issue 12): each test reads back
/// exactly what must survive, on both backends.
@Suite("Retention")
struct RetentionTests {
    static func values(_ b: Broker, _ topic: String, isolation: IsolationLevel = .readUncommitted) throws -> [String] {
        try readAll(b, topic, isolation: isolation).map { string($0.value) }
    }

    static func offsets(_ b: Broker, _ topic: String) throws -> [Int64] {
        try readAll(b, topic).map(\.offset)
    }

    /// A broker whose background cleaner is off (tests run maintenance themselves).
    static func fixture(_ kind: String, _ config: [(String, String)] = [], clock: any TimeSource = SystemClock()) throws -> BrokerFixture {
        try BrokerFixture(kind, config: [("log.retention.check.interval.ms", "0")] + config, clock: clock)
    }

    // MARK: Topic configuration

    @Test(arguments: backends)
    func topicConfigIsStoredWithTheTopicAndFallsBackToBrokerDefaults(kind: String) throws {
        let f = try Self.fixture(kind, [("log.retention.bytes", "5000")])
        try f.broker.createTopic("t", partitions: 1, config: [("retention.ms", "60000"), ("cleanup.policy", "delete,compact")])
        #expect(try f.broker.topicConfig("t", "retention.ms") == "60000")
        #expect(try f.broker.topicConfig("t", "cleanup.policy") == "compact,delete")
        #expect(try f.broker.topicConfig("t", "retention.bytes") == "5000", "the broker default")
        #expect(try f.broker.topicConfig("t", "max.message.bytes") == "1048576")
        try f.broker.setTopicConfig("t", [("retention.bytes", "100"), ("retention.ms", "")])
        #expect(try f.broker.topicConfig("t", "retention.bytes") == "100")
        #expect(try f.broker.topicConfig("t", "retention.ms") == "-1", "an empty value returns to the default: unlimited")
        #expect(errorCode { try f.broker.setTopicConfig("t", [("retention.msx", "1")]) } == .invalidConfig)
        #expect(errorCode { try f.broker.setTopicConfig("t", [("cleanup.policy", "shred")]) } == .invalidConfig)
        #expect(errorCode { try f.broker.createTopic("u", partitions: 1, config: [("retention.bytes", "-2")]) } == .invalidConfig)
        #expect(errorCode { _ = try f.broker.topicConfig("t", "nope") } == .invalidConfig)
        #expect(errorCode { _ = try f.broker.topicConfig("missing", "retention.ms") } == .unknownTopic)
        if kind != "memory" {
            let b = try f.reopen()
            #expect(try b.topicConfig("t", "retention.bytes") == "100", "stored with the topic")
        }
        // max.message.bytes applies per topic
        try f.broker.createTopic("small", partitions: 1, config: [("max.message.bytes", "10")])
        let p = try f.broker.producer()
        #expect(errorCode { _ = try p.send("small", Record(value: Array(repeating: 1, count: 11))) } == .msgTooLarge)
        _ = try p.send("small", Record(value: Array(repeating: 1, count: 10)))
    }

    // MARK: Retention by time and size

    @Test(arguments: backends)
    func retentionByTimeDeletesUpToTheFirstRecordYoungerThanRetentionMs(kind: String) throws {
        let clock = SteppedClock()
        let f = try Self.fixture(kind, clock: clock)
        try f.broker.createTopic("t", partitions: 1, config: [("retention.ms", "60000")])
        let p = try f.broker.producer()
        for i in 0..<10 { _ = try p.send("t", Record(value: bytes("old\(i)"))) }
        clock.advance(ms: 30_000)
        _ = try p.send("t", Record(value: bytes("middle")))          // 10: 90 s old after the next step
        for i in 0..<3 { _ = try p.send("t", Record(value: bytes("old-stamp\(i)"), timestampMs: 1)) }   // 11-13: ancient timestamps
        clock.advance(ms: 60_001)
        _ = try p.send("t", Record(value: bytes("new")))             // 14
        // 0-9 are 90 s old, 10 is 60.001 s old, 11-13 carry timestamp 1: everything before
        // "new" is older than 60 s, so the log starts at 14.
        var r = try f.broker.maintain()
        #expect(try f.broker.watermarks("t", 0) == (14, 15))
        #expect(r.recordsDeleted == 14)
        #expect(try Self.values(f.broker, "t") == ["new"])
        // A young record stops the deletion even if older ones follow it (Kafka judges a
        // segment by its largest timestamp).
        _ = try p.send("t", Record(value: bytes("ancient"), timestampMs: 1))   // 15
        _ = try p.send("t", Record(value: bytes("young")))                      // 16
        clock.advance(ms: 30_000)
        r = try f.broker.maintain()
        #expect(r.recordsDeleted == 0)
        #expect(try f.broker.watermarks("t", 0).low == 14)
    }

    @Test(arguments: backends)
    func retentionBySizeKeepsTheNewestRecordsWithinRetentionBytes(kind: String) throws {
        let f = try Self.fixture(kind)
        try f.broker.createTopic("t", partitions: 2, config: [("retention.bytes", "1000")])
        let p = try f.broker.producer()
        for i in 0..<50 { _ = try p.send("t", Record(partition: 0, value: Array(repeating: UInt8(i), count: 100))) }
        for i in 0..<5 { _ = try p.send("t", Record(partition: 1, value: Array(repeating: UInt8(i), count: 100))) }
        let r = try f.broker.maintain()
        #expect(r.recordsDeleted == 40)
        #expect(try f.broker.watermarks("t", 0) == (40, 50))
        #expect(try f.broker.watermarks("t", 1) == (0, 5), "a partition within its limit keeps everything")
        let kept = try readAll(f.broker, "t").filter { $0.partition == 0 }
        #expect(kept.map(\.offset) == Array(40..<50))
        #expect(kept.map { $0.value?.first ?? 255 } == (40..<50).map { UInt8($0) })
        #expect(try f.broker.storage.read { try $0.logBytes(f.broker.topicMeta("t").firstPnum) } == 1000)
    }

    @Test(arguments: backends)
    func retentionNeverDeletesRecordsOfAnOpenTransaction(kind: String) throws {
        let f = try Self.fixture(kind)
        try f.broker.createTopic("t", partitions: 1, config: [("retention.bytes", "0")])
        let plain = try f.broker.producer()
        for i in 0..<3 { _ = try plain.send("t", Record(value: bytes("p\(i)"))) }
        let tx = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once"), ("transactional.id", "tx")]))
        try tx.initTransactions()
        try tx.beginTransaction()
        _ = try tx.send("t", Record(value: bytes("t0")))   // 3, open
        _ = try plain.send("t", Record(value: bytes("p3")))  // 4
        try f.broker.maintain()
        #expect(try f.broker.watermarks("t", 0).low == 3, "stops at the last stable offset")
        try tx.commitTransaction()
        try f.broker.maintain()
        #expect(try f.broker.watermarks("t", 0) == (5, 5))
    }

    // MARK: DeleteRecords and the consumer rule

    @Test(arguments: backends)
    func deleteRecordsMovesTheLowWatermarkAndConsumersBelowItFollowAutoOffsetReset(kind: String) throws {
        let f = try Self.fixture(kind)
        try f.broker.createTopic("t", partitions: 1)
        let p = try f.broker.producer()
        for i in 0..<10 { _ = try p.send("t", Record(value: bytes("v\(i)"))) }
        // groups at offset 2 before the deletion
        for g in ["early", "late", "strict"] {
            let c = try f.broker.consumer(try ccfg([("group.id", g)]))
            try c.assign("t", partitions: [0])
            try c.seek("t", 0, 2)
            try c.commit()
            c.destroy()
        }
        #expect(try f.broker.deleteRecords("t", 0, before: 4) == 4)
        #expect(try f.broker.deleteRecords("t", 0, before: 3) == 4, "below the log start: nothing changes")
        #expect(try f.broker.watermarks("t", 0) == (4, 10))
        #expect(errorCode { try f.broker.deleteRecords("t", 0, before: 11) } == .offsetOutOfRange)
        #expect(try Self.offsets(f.broker, "t") == Array(4..<10))

        func consumer(_ g: String, _ reset: String) throws -> Consumer {
            let c = try f.broker.consumer(try ccfg([("group.id", g), ("auto.offset.reset", reset)]))
            try c.assign("t", partitions: [0])
            return c
        }
        let early = try consumer("early", "earliest")
        #expect(try early.pollBatch(max: 100, timeout: .zero).map(\.offset) == Array(4..<10))
        let late = try consumer("late", "latest")
        #expect(try late.pollBatch(max: 100, timeout: .zero).isEmpty)
        #expect(try late.position("t", 0) == 10)
        let strict = try consumer("strict", "none")
        #expect(errorCode { _ = try strict.pollBatch(max: 100, timeout: .zero) } == .offsetOutOfRange)
        #expect(errorCode { try early.seek("t", 0, 3) } == .offsetOutOfRange)

        // Deleting everything keeps the high watermark: the next record is offset 10.
        #expect(try f.broker.deleteRecords("t", 0, before: -1) == 10)
        #expect(try f.broker.watermarks("t", 0) == (10, 10))
        #expect(try p.send("t", Record(value: bytes("v10"))).offset == 10)
        #expect(try early.pollBatch(max: 100, timeout: .seconds(1)).map(\.offset) == [10])
        if kind != "memory" {
            let b = try f.reopen()
            #expect(try b.watermarks("t", 0) == (10, 11), "the log start is persisted")
        }
    }

    // MARK: Compaction

    @Test(arguments: backends)
    func compactionKeepsTheLatestRecordPerKeyAtItsOffset(kind: String) throws {
        let f = try Self.fixture(kind)
        try f.broker.createTopic("t", partitions: 1, config: [("cleanup.policy", "compact")])
        let p = try f.broker.producer()
        for (k, v) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("c", "c1"), ("b", "b2"), ("a", "a3"), ("z", "z1")] {
            _ = try p.send("t", Record(key: bytes(k), value: bytes(v)))
        }
        let r = try f.broker.maintain()
        #expect(r.recordsCompacted == 3)
        let kept = try readAll(f.broker, "t")
        #expect(kept.map(\.offset) == [3, 4, 5, 6])
        #expect(kept.map { string($0.value) } == ["c1", "b2", "a3", "z1"])
        #expect(try f.broker.watermarks("t", 0) == (0, 7), "compaction moves neither watermark")
        // a consumer reading through the gaps, one record at a time
        let c = try f.broker.consumer(try ccfg([("group.id", "g")]))
        try c.subscribe(["t"])
        var seen: [Int64] = []
        while let m = try c.poll(timeout: .milliseconds(200)) { seen.append(m.offset) }
        #expect(seen == [3, 4, 5, 6])
        try c.close()
        #expect(try c.broker.committedOffset(group: "g", TopicPartition("t", 0)) == 7)
        // idempotence still works after compaction
        let idem = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once")]))
        for i in 0..<3 { _ = try idem.send("t", Record(key: bytes("a"), value: bytes("a\(4 + i)"))) }   // 7, 8, 9
        try f.broker.maintain()
        // the log's last record (a6) is never cleaned, so a5 stays until a later record follows
        #expect(try readAll(f.broker, "t").map { string($0.value) } == ["c1", "b2", "z1", "a5", "a6"])
    }

    @Test(arguments: backends)
    func compactionRemovesOldTombstonesAndAbortedRecordsButNotYoungOrOpenOnes(kind: String) throws {
        let clock = SteppedClock()
        let f = try Self.fixture(kind, clock: clock)
        try f.broker.createTopic("t", partitions: 1, config: [("cleanup.policy", "compact"), ("delete.retention.ms", "10000"),
                                                               ("min.compaction.lag.ms", "5000")])
        let p = try f.broker.producer()
        _ = try p.send("t", Record(key: bytes("a"), value: bytes("a1")))   // 0
        _ = try p.send("t", Record(key: bytes("a"), value: nil))           // 1: tombstone
        let tx = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once"), ("transactional.id", "tx")]))
        try tx.initTransactions()
        try tx.beginTransaction()
        _ = try tx.send("t", Record(key: bytes("x"), value: bytes("x-aborted")))   // 2
        try tx.abortTransaction()
        _ = try p.send("t", Record(key: bytes("b"), value: bytes("b1")))   // 3
        clock.advance(ms: 6_000)
        _ = try p.send("t", Record(key: bytes("b"), value: bytes("b2")))   // 4: younger than the lag
        _ = try p.send("t", Record(key: bytes("b"), value: bytes("b3")))   // 5: the last record
        try f.broker.maintain()
        // a1 superseded by its tombstone; the aborted record gone; the tombstone is younger than
        // delete.retention.ms; b1 stays: b2 is too young to be in the cleaner's map.
        #expect(try Self.offsets(f.broker, "t") == [1, 3, 4, 5])
        clock.advance(ms: 10_000)
        try tx.beginTransaction()
        _ = try tx.send("t", Record(key: bytes("b"), value: bytes("b-open")))   // 6: open, above the LSO
        _ = try p.send("t", Record(key: bytes("b"), value: bytes("b4")))         // 7
        try f.broker.maintain()
        // the tombstone is now old enough; b1, b2 superseded by b3 (in the cleanable part); the
        // open transaction and what follows it are not touched.
        #expect(try Self.offsets(f.broker, "t") == [5, 6, 7])
        try tx.commitTransaction()
        try f.broker.maintain()
        #expect(try Self.offsets(f.broker, "t") == [5, 6, 7], "b-open is younger than min.compaction.lag.ms")
        clock.advance(ms: 6_000)
        try f.broker.maintain()
        // b3 superseded by the committed b-open; b4, the last record, stays
        #expect(try Self.offsets(f.broker, "t") == [6, 7])
        #expect(try Self.values(f.broker, "t", isolation: .readCommitted) == ["b-open", "b4"])
    }

    // MARK: State expiry

    @Test(arguments: backends)
    func idleProducerStatesTransactionalIdsAndEmptyGroupsOffsetsExpire(kind: String) throws {
        let clock = SteppedClock()
        let f = try Self.fixture(kind, [("producer.id.expiration.ms", "60000"), ("transactional.id.expiration.ms", "120000"),
                                        ("offsets.retention.minutes", "3")], clock: clock)
        try f.broker.createTopic("t", partitions: 4)
        for i in 0..<30 {   // closed idempotent producers: 30 × up to 4 sequence rows
            let p = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once")]))
            for j in 0..<4 { _ = try p.send("t", Record(partition: Int32(j), value: bytes("i\(i)"))) }
            try p.close()
        }
        for i in 0..<20 {   // transactional ids that aborted once: producer state, sequences, aborted index
            let p = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once"), ("transactional.id", "tx\(i)")]))
            try p.initTransactions()
            try p.beginTransaction()
            _ = try p.send("t", Record(partition: Int32(i % 4), value: bytes("aborted")))
            try p.abortTransaction()
            try p.close()
        }
        let c = try f.broker.consumer(try ccfg([("group.id", "g")]))
        try c.subscribe(["t"])
        _ = try c.pollBatch(max: 1000, timeout: .milliseconds(100))
        try c.close()
        let live = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once")]))
        _ = try live.send("t", Record(partition: 0, value: bytes("live")))

        func count(_ prefix: String, _ end: String) throws -> Int { try f.broker.storage.read { try $0.scan(from: prefix, to: end).count } }
        #expect(try count("s/", "s0") > 120)
        #expect(try count("tid/", "tid0") == 20)
        #expect(try count("c/", "c0") == 4)
        clock.advance(ms: 61_000)
        var r = try f.broker.maintain()
        #expect(try count("s/", "s0") == 0, "every producer has been idle for producer.id.expiration.ms")
        #expect(try count("tid/", "tid0") == 20)
        #expect(r.producerStatesExpired > 100)
        // a producer whose state expired keeps working (it starts a new epoch once)
        #expect(try live.send("t", Record(partition: 0, value: bytes("live again"))).offset >= 0)
        clock.advance(ms: 120_000)
        r = try f.broker.maintain()
        #expect(try count("tid/", "tid0") == 0)
        #expect(try count("p/", "p0") == 0)
        #expect(r.transactionalIdsExpired == 20)
        #expect(try count("c/", "c0") == 0, "the group has been empty for offsets.retention.minutes")
        #expect(try count("g/", "g0") == 0)
        // the aborted-transaction index goes once the log start passes it
        #expect(try count("a/", "a0") == 20)
        for p in Int32(0)..<4 { try f.broker.deleteRecords("t", p, before: -1) }
        r = try f.broker.maintain()
        #expect(try count("a/", "a0") == 0)
        #expect(r.abortedIndexEntriesRemoved == 20)
        // a transactional id reused after its expiry starts cleanly
        let again = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once"), ("transactional.id", "tx3")]))
        try again.initTransactions()
        try again.transaction { _ = try again.send("t", Record(value: bytes("again"))) }
        #expect(try Self.values(f.broker, "t", isolation: .readCommitted).contains("again"))
    }

    // MARK: How maintenance runs

    @Test(arguments: backends)
    func maintenanceDeletesInShortChunksWhileProducersKeepWriting(kind: String) throws {
        let f = try Self.fixture(kind)
        try f.broker.createTopic("t", partitions: 1)
        let p = try f.broker.producer()
        var batch = RecordBatch()
        for i in 0..<20_000 { batch.append(RecordData(timestampMs: 1, key: nil, value: bytes("v\(i)"), headers: nil)) }
        _ = try p.send("t", batch, partitions: nil)
        try f.broker.setTopicConfig("t", [("retention.ms", "1000")])
        let r = try f.broker.maintain()
        print("[\(kind)] maintenance of 20000 expired records: \(r)")
        #expect(r.recordsDeleted == 20_000)
        #expect(r.writes > 1, "deleted in chunks, not one write")
        #expect(r.longestWriteMs < 500)
        #expect(try f.broker.watermarks("t", 0) == (20_000, 20_000))
    }

    @Test(arguments: backends)
    func theBackgroundCleanerAppliesRetentionByItself(kind: String) throws {
        let f = try BrokerFixture(kind, config: [("log.retention.check.interval.ms", "50")])
        try f.broker.createTopic("t", partitions: 1, config: [("retention.bytes", "10")])
        let p = try f.broker.producer()
        for i in 0..<10 { _ = try p.send("t", Record(value: bytes("value-\(i)"))) }
        let t0 = nowMonoMs()
        while try f.broker.watermarks("t", 0).low < 9 && nowMonoMs() - t0 < 5_000 { sleepMs(20) }
        #expect(try f.broker.watermarks("t", 0).low == 9)
    }

    @Test func oneCleanerLeaseAtATimeAcrossHandlesOnOneFile() throws {
        let f = try Self.fixture("sqlite")
        let other = try f.secondHandle()
        let now = f.broker.clock.wallMs()
        #expect(try f.broker.takeCleanerLease("a", untilMs: now + 60_000))
        #expect(try !other.takeCleanerLease("b", untilMs: now + 60_000))
        #expect(try f.broker.takeCleanerLease("a", untilMs: now + 60_000), "the holder renews")
        #expect(try f.broker.takeCleanerLease("a", untilMs: now - 1))   // give it up
        #expect(try other.takeCleanerLease("b", untilMs: now + 60_000))
    }

    @Test func aVersion1SQLiteFileIsMigratedKeepingItsWatermarks() throws {
        let f = try Self.fixture("sqlite")
        try f.broker.createTopic("t", partitions: 2)
        let p = try f.broker.producer()
        for i in 0..<7 { _ = try p.send("t", Record(partition: Int32(i % 2), value: bytes("v\(i)"))) }
        f.broker.close()
        // Turn the file into what version 1 wrote: no logs table.
        let conn = try SQLiteConnection(path: f.path, busyTimeoutMs: 1000, synchronous: "NORMAL")
        try conn.execOnce("DROP TABLE logs; PRAGMA user_version=1")
        conn.close()
        let b = try f.reopen()
        #expect(try b.watermarks("t", 0) == (0, 4))
        #expect(try b.watermarks("t", 1) == (0, 3))
        #expect(try b.producer().send("t", Record(partition: 0, value: bytes("v7"))).offset == 4)
    }
}
