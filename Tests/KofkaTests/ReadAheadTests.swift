import Testing
@testable import Kofka

/// The consumer's read-ahead queue (issue 14): what is only read ahead is never committed, never
/// counted in a position, and is dropped by seeks and rebalances; and `pollMessages`, which
/// hands a batch out in one shared buffer.
@Suite("ReadAhead")
struct ReadAheadTests {
    static func filled(_ f: BrokerFixture, partitions: Int32 = 1, n: Int = 100) throws {
        try f.broker.createTopic("t", partitions: partitions)
        var batch = RecordBatch()
        for i in 0..<n { batch.append(RecordData(timestampMs: 1, key: nil, value: bytes("v\(i)"), headers: nil)) }
        for p in 0..<partitions { _ = try f.broker.producer().send("t", batch, partitions: [Int32](repeating: p, count: n)) }
    }

    @Test(arguments: backends)
    func whatIsOnlyReadAheadIsNeitherPositionedNorCommitted(kind: String) throws {
        let f = try BrokerFixture(kind)
        try Self.filled(f)
        let c = try f.broker.consumer(try ccfg([("group.id", "g"), ("delivery.mode", "at-most-once"), ("queued.min.messages", "100")]))
        try c.assign("t", partitions: [0])
        #expect(try c.pollBatch(max: 1, timeout: .seconds(1)).map(\.offset) == [0])
        #expect(try c.position("t", 0) == 1, "100 records were read ahead, 1 was returned")
        #expect(try c.committed("t", 0) == 1, "at-most-once commits what was returned, not what was read ahead")
        #expect(try c.pollBatch(max: 3, timeout: .zero).map(\.offset) == [1, 2, 3])
        #expect(try c.committed("t", 0) == 4)
    }

    @Test(arguments: backends)
    func aSeekDropsTheReadAheadOfItsPartition(kind: String) throws {
        let f = try BrokerFixture(kind)
        try Self.filled(f)
        let c = try f.broker.consumer(try ccfg([("queued.min.messages", "100")]))
        try c.assign("t", partitions: [0])
        #expect(try c.poll(timeout: .seconds(1))?.offset == 0)
        try c.seek("t", 0, 50)
        #expect(try c.poll(timeout: .seconds(1))?.offset == 50)
        try c.seek("t", 0, 10)
        #expect(try c.pollBatch(max: 2, timeout: .seconds(1)).map(\.offset) == [10, 11])
    }

    @Test(arguments: backends)
    func aPartitionTheGroupTakesAwayIsNotReturnedFromTheReadAhead(kind: String) throws {
        let clock = SteppedClock()
        let f = try BrokerFixture(kind, clock: clock)
        try Self.filled(f, partitions: 2)
        let cfg: [(String, String)] = [("group.id", "g"), ("queued.min.messages", "1000"), ("session.timeout.ms", "30000")]
        let c1 = try f.broker.consumer(try ccfg(cfg + [("client.id", "a")]))
        try c1.subscribe(["t"])
        var seen = try c1.pollBatch(max: 1, timeout: .seconds(1))   // reads ahead both partitions
        let c2 = try f.broker.consumer(try ccfg(cfg + [("client.id", "b")]))
        try c2.subscribe(["t"])
        clock.advance(ms: 1_001)   // c1's heartbeat is due: its next poll follows the rebalance
        while true {
            let got = try c1.pollBatch(max: 50, timeout: .zero)
            if got.isEmpty { break }
            seen += got
        }
        #expect(c1.assigned == [TopicPartition("t", 0)])
        let fromP1 = seen.filter { $0.partition == 1 }
        #expect(fromP1.count <= 1, "after the rebalance nothing of partition 1 came from the read-ahead")
        #expect(seen.filter { $0.partition == 0 }.map(\.offset) == Array(0..<100))
        let p1 = try c2.pollBatch(max: 500, timeout: .seconds(1))
        #expect(p1.first?.offset ?? -1 <= 1 && p1.allSatisfy { $0.partition == 1 })
    }

    @Test(arguments: backends)
    func pollMessagesReturnsWhatPollBatchReturnsInOneSharedBuffer(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 1)
        let p = try f.broker.producer()
        let records = [Record(key: nil, value: nil), Record(key: [], value: []), Record(key: bytes("k"), value: bytes("value")),
                       Record(key: bytes("h"), value: bytes("x"), headers: [Header("a", bytes("1")), Header("b", nil)])]
        for r in records { _ = try p.send("t", r) }
        let c1 = try f.broker.consumer(ConsumerConfig())
        try c1.assign("t", partitions: [0])
        let c2 = try f.broker.consumer(ConsumerConfig())
        try c2.assign("t", partitions: [0])
        let expected = try c1.pollBatch(max: 10, timeout: .seconds(1))
        let batch = try c2.pollMessages(max: 10, timeout: .seconds(1))
        #expect(batch.count == 4)
        #expect(batch.messages == expected)
        #expect(batch[0].key == nil && batch[0].value == nil)
        #expect(batch[1].key.map { Array($0) } == [] && batch[1].value.map { Array($0) } == [])
        #expect(batch[2].value.map { Array($0) } == bytes("value"))
        #expect(batch[3].headers == [Header("a", bytes("1")), Header("b", nil)])
        #expect(batch.map(\.offset) == [0, 1, 2, 3])
    }

    /// At-least-once commits what earlier polls returned once per `auto.commit.interval.ms`
    /// (Kafka's 5000 by default), not on every poll: a consumer polling one record at a time pays
    /// one storage commit per interval. `close` commits what was returned.
    @Test(arguments: backends)
    func atLeastOnceCommitsWhatWasReturnedOncePerAutoCommitIntervalAndOnClose(kind: String) throws {
        #expect(ConsumerConfig().autoCommitIntervalMs == 5_000, "Kafka's default")
        let clock = SteppedClock()
        let f = try BrokerFixture(kind, clock: clock)
        try Self.filled(f)
        let cfg: [(String, String)] = [("group.id", "ac"), ("session.timeout.ms", "3600000"), ("auto.commit.interval.ms", "60000")]
        let c = try f.broker.consumer(try ccfg(cfg))
        try c.subscribe(["t"])
        for want in 0..<3 { #expect(try c.poll(timeout: .seconds(5))?.offset == Int64(want)) }
        #expect(try c.committed("t", 0) == 1, "the first commit is due at once: the second poll commits what the first returned")
        for want in 3..<10 { #expect(try c.poll(timeout: .seconds(5))?.offset == Int64(want)) }
        #expect(try c.committed("t", 0) == 1, "within the interval no poll commits")
        clock.advance(ms: 60_000)
        #expect(try c.poll(timeout: .seconds(5))?.offset == 10)
        #expect(try c.committed("t", 0) == 10, "the interval passed: the next poll commits what the earlier ones returned")
        try c.close()
        #expect(try f.broker.committedOffset(group: "ac", TopicPartition("t", 0)) == 11, "close commits what was returned")
    }

    /// A batch from `pollMessages` shares the read-ahead's buffers (on memory, the log's own):
    /// what later happens to the log, the read-ahead or the consumer never changes it.
    @Test(arguments: backends)
    func aBatchKeptAfterLaterPollsDeletionsAndCloseKeepsItsBytes(kind: String) throws {
        let f = try BrokerFixture(kind)
        try Self.filled(f, n: 300)
        let c = try f.broker.consumer(try ccfg([("queued.min.messages", "200"), ("max.poll.records", "50")]))
        try c.assign("t", partitions: [0])
        let kept = try c.pollMessages(max: 50, timeout: .seconds(1))
        let copy = kept.messages
        #expect(copy.map(\.offset) == Array(0..<50))
        var rest: [Int64] = []
        while true {
            let b = try c.pollMessages(max: 50, timeout: .zero)
            if b.isEmpty { break }
            rest += b.map(\.offset)
        }
        #expect(rest == Array(50..<300), "every later record exactly once, in order")
        _ = try f.broker.deleteRecords("t", 0, before: 300)
        _ = try f.broker.producer().send("t", Record(value: bytes("after")))
        try c.close()
        #expect(kept.messages == copy)
        #expect(kept.map { $0.value.map { String(decoding: $0, as: UTF8.self) } } == (0..<50).map { "v\($0)" })
    }

    /// An element of a `pollMessages` batch is a view of the batch's storage that keeps it
    /// alive: kept after its batch is let go, after later polls reuse the read-ahead, after the
    /// log is deleted and the consumer closed, it still reads its own topic, partition, offset,
    /// timestamp, key, value and headers.
    @Test(arguments: backends)
    func elementsKeptAfterTheirBatchIsLetGoStillHoldTheirRecords(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("a", partitions: 2)
        try f.broker.createTopic("b", partitions: 1)
        let p = try f.broker.producer()
        for i in 0..<30 {
            let topic = i % 3 == 0 ? "b" : "a"
            _ = try p.send(topic, Record(partition: topic == "b" ? 0 : Int32(i % 2), key: i % 4 == 0 ? nil : bytes("k\(i)"),
                                        value: i % 5 == 0 ? nil : bytes("v\(i)"), headers: i % 2 == 0 ? [Header("h", bytes("\(i)"))] : []))
        }
        func order(_ m: Message) -> String { "\(m.topic)/\(m.partition)/\(m.offset)" }
        let c1 = try f.broker.consumer(try ccfg([("queued.min.messages", "1000")]))
        try c1.assign("a", partitions: [0, 1])
        try c1.assign("b", partitions: [0])
        var expected: [Message] = []
        while true {
            let b = try c1.pollBatch(max: 500, timeout: .zero)
            if b.isEmpty { break }
            expected += b
        }
        #expect(expected.count == 30)
        let c2 = try f.broker.consumer(try ccfg([("queued.min.messages", "1000"), ("max.poll.records", "4")]))
        try c2.assign("a", partitions: [0, 1])
        try c2.assign("b", partitions: [0])
        var kept: [MessageBatch.Element] = []
        while true {
            let b = try c2.pollMessages(max: 4, timeout: .zero)
            if b.isEmpty { break }
            #expect(b.count <= 4)
            kept.append(contentsOf: b)
        }
        _ = try f.broker.deleteRecords("a", 0, before: try f.broker.watermarks("a", 0).high)
        _ = try f.broker.deleteRecords("b", 0, before: try f.broker.watermarks("b", 0).high)
        try c2.close()
        let got = kept.map { m in
            Message(topic: m.topic, partition: m.partition, offset: m.offset, timestampMs: m.timestampMs,
                    key: m.key.map { Array($0) }, value: m.value.map { Array($0) }, headers: m.headers)
        }
        #expect(got.sorted { order($0) < order($1) } == expected.sorted { order($0) < order($1) })
        #expect(kept.map(\.message) == got)
        #expect(MessageBatch().isEmpty && MessageBatch().messages.isEmpty)
    }

    /// `pollMessages` under read_committed skips aborted transactions' records, batch by batch
    /// as the memory backend stores them, exactly as `pollBatch` does.
    @Test(arguments: backends)
    func pollMessagesSkipsAbortedTransactionsAsPollBatchDoes(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 2)
        let p = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once"), ("transactional.id", "x"), ("retry.backoff.ms", "0")]))
        try p.initTransactions()
        let plain = try f.broker.producer()
        var next = 0
        func batch(_ n: Int, _ part: Int32) -> [Record] {
            defer { next += n }
            return (next..<next + n).map { Record(partition: part, key: bytes("k\($0)"), value: bytes("v\($0)")) }
        }
        for round in 0..<6 {
            let part = Int32(round % 2)
            try p.beginTransaction()
            _ = try p.sendBatch("t", batch(7, part))
            if round % 3 == 1 { try p.abortTransaction() } else { try p.commitTransaction() }
            _ = try plain.sendBatch("t", batch(3, 1 - part))
        }
        func drain(_ shared: Bool) throws -> [Message] {
            let c = try f.broker.consumer(try ccfg([("isolation.level", "read_committed"), ("queued.min.messages", "4"),
                                                    ("max.poll.records", "5")]))
            try c.assign("t", partitions: [0, 1])
            var out: [Message] = []
            while true {
                let got = try shared ? c.pollMessages(max: 5, timeout: .zero).messages : c.pollBatch(max: 5, timeout: .zero)
                if got.isEmpty { break }
                out += got
            }
            return out
        }
        let expected = try drain(false)
        #expect(expected.count == 6 * 3 + 4 * 7, "the two aborted transactions' 14 records are skipped")
        #expect(try drain(true) == expected)
        let aborted = Set((10..<17).map { "v\($0)" } + (40..<47).map { "v\($0)" })
        #expect(!expected.contains { aborted.contains(string($0.value)) })
        #expect(Set(expected.map { string($0.value) }) == Set((0..<60).map { "v\($0)" }).subtracting(aborted))
    }

    /// With `queued.max.messages.kbytes` small, a fetch stops at the byte bound inside a stored
    /// batch; the rest is read by later fetches: every record once, in order, on every backend.
    @Test(arguments: backends)
    func aFetchStopsAtTheByteBoundInsideAStoredBatch(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 1)
        let big = [UInt8](repeating: 7, count: 300)
        _ = try f.broker.producer().sendBatch("t", (0..<40).map { Record(partition: 0, key: bytes("\($0)"), value: big) })
        let c = try f.broker.consumer(try ccfg([("queued.max.messages.kbytes", "1"), ("queued.min.messages", "1000")]))
        try c.assign("t", partitions: [0])
        var got: [Int64] = []
        var polls = 0
        while true {
            let b = try c.pollMessages(max: 500, timeout: .zero)
            if b.isEmpty { break }
            polls += 1
            #expect(b.count <= 4, "a 1 KiB read-ahead holds at most 4 records of 300 B (a fetch stops once 1 KiB is held)")
            #expect(b.allSatisfy { $0.value.map { Array($0) } == big })
            got += b.map(\.offset)
        }
        #expect(got == Array(0..<40))
        #expect(polls >= 10)
    }

    /// Storage keys keep their format (sixteen zero-padded lower-case hex digits): a database
    /// written before keeps working.
    @Test
    func storageKeyNumbersKeepTheirFormat() {
        for v: Int64 in [0, 1, 15, 16, 0x1234_abcd, -1, .max, .min, 42_000_000_000] {
            let s = String(UInt64(bitPattern: v), radix: 16)
            #expect(v.hex16 == String(repeating: "0", count: 16 - s.count) + s)
        }
    }

    /// The consumer's positions hold the last partition written aside: every read sees every
    /// write, whatever the order of partitions written, read and removed.
    @Test
    func positionsReadEveryWriteWhateverThePartitionOrder() {
        var rng = SystemRandomNumberGenerator()
        var map: PositionMap = [:]
        var model: [TopicPartition: Int64] = [:]
        let tps = (0..<4).map { TopicPartition(["a", "a-topic-with-a-long-name"][$0 % 2], Int32($0 / 2)) }
        for step in 0..<5_000 {
            let tp = tps[Int.random(in: 0..<tps.count, using: &rng)]
            if Int.random(in: 0..<5, using: &rng) == 0 {
                map[tp] = nil
                model[tp] = nil
            } else {
                map[tp] = Int64(step)
                model[tp] = Int64(step)
            }
            for t in tps { #expect(map[t] == model[t]) }
        }
        #expect(PositionMap(model)[tps[0]] == model[tps[0]])
    }
}

