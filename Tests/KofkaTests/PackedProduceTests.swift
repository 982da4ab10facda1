import Testing
@testable import Kofka

/// The packed produce queue: records queued by `produce` live as bytes in one buffer per run;
/// what the writer writes and what the reports show must be exactly what was produced, across
/// topics, partitions, headers and timestamps, after a purge moved some of them, and when the
/// topic `produce` remembers changes under it.
@Suite("PackedProduce")
struct PackedProduceTests {
    /// Records to two topics, interleaved: keys, none, empty values, headers, explicit partitions, timestamps.
    private static func mixed(_ n: Int) -> [(topic: String, record: Record)] {
        (0..<n).map { i in
            let topic = i % 3 == 0 ? "b" : "a"
            var r = Record(partition: i % 5 == 0 ? Int32(i % 2) : nil,
                           key: i % 4 == 0 ? nil : bytes("k\(i % 7)"),
                           value: i % 6 == 0 ? [] : bytes("value-\(i)-" + String(repeating: "x", count: i % 40)),
                           headers: i % 9 == 0 ? [Header("h\(i)", bytes("hv\(i)")), Header("n", nil)] : [],
                           timestampMs: i % 8 == 0 ? 1_700_000_000_000 + Int64(i) : 0)
            if i % 11 == 0 { r.value = nil }
            return (topic, r)
        }
    }

    @Test(arguments: backends)
    func reportsAndStoredRecordsAreTheRecordsAsProducedAcrossTopicsAndPartitions(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("a", partitions: 3)
        try f.broker.createTopic("b", partitions: 2)
        // small runs, so that records cross runs and a run holds several partitions and topics
        let p = try f.broker.producer(try ProducerConfig([("batch.num.messages", "7"), ("linger.ms", "60000")]))
        let sent = Self.mixed(300)
        for (i, s) in sent.enumerated() { try p.produce(s.topic, s.record, opaque: UInt(i)) }
        var reports: [DeliveryReport] = []
        try p.flush { reports.append($0) }
        #expect(reports.count == sent.count)
        var next: [TopicPartition: Int64] = [:]
        for (i, r) in reports.enumerated() {
            #expect(r.opaque == UInt(i))
            #expect(r.topic == sent[i].topic)
            #expect(r.record == sent[i].record)
            guard case .success(let md) = r.result else { Issue.record("record \(i) failed: \(r.result)"); continue }
            if let asked = sent[i].record.partition { #expect(md.partition == asked) }
            let tp = TopicPartition(md.topic, md.partition)
            #expect(md.offset == next[tp, default: 0], "offsets of \(tp) in the order produced")
            next[tp] = md.offset + 1
        }
        // storage holds each record at the offset its report gave
        for topic in ["a", "b"] {
            var c = ConsumerConfig()
            c.isolationLevel = .readUncommitted
            let consumer = try f.broker.consumer(c)
            try consumer.assign(topic, partitions: Array(0..<(topic == "a" ? 3 : 2)))
            var got: [TopicPartition: [Int64: Message]] = [:]
            var n = 0
            let want = sent.filter { $0.topic == topic }.count
            while n < want {
                let msgs = try consumer.pollBatch(max: 500, timeout: .seconds(5))
                if msgs.isEmpty { break }
                for m in msgs { got[TopicPartition(m.topic, m.partition), default: [:]][m.offset] = m }
                n += msgs.count
            }
            #expect(n == want)
            for (i, r) in reports.enumerated() where sent[i].topic == topic {
                guard case .success(let md) = r.result, let m = got[TopicPartition(topic, md.partition)]?[md.offset] else {
                    Issue.record("record \(i) is not stored where its report says")
                    continue
                }
                #expect(m.key == sent[i].record.key && m.value == sent[i].record.value && m.headers == sent[i].record.headers)
                if sent[i].record.timestampMs != 0 { #expect(m.timestampMs == sent[i].record.timestampMs) }
            }
            try consumer.close()
        }
        try p.close()
    }

    @Test
    func aPurgeFailsItsTransactionsRecordsAndKeepsTheOthersQueuedWithTheirBytes() throws {
        let q = ProduceQueue(capacity: 100, clock: SystemClock())
        let meta = TopicMeta(name: "t", partitions: 1, firstPnum: 0)
        func put(_ i: Int, txn: Int64) throws {
            let key = bytes("key-\(i)"), value = bytes(String(repeating: "v", count: i))
            try key.withUnsafeBytes { k in
                try value.withUnsafeBytes { v in
                    try q.enqueue(meta, partition: 0, explicit: false, timestampMs: Int64(i), key: k, value: v, headers: nil,
                                  size: key.count + value.count, opaque: UInt(i), txn: txn, lingerMs: 3_600_000, batch: 100)
                }
            }
        }
        // one run, not due for an hour: the writer takes nothing before the purge
        for i in 0..<10 { try put(i, txn: i < 8 && i % 2 == 0 ? 1 : 2) }
        q.purge(txn: 1, KofkaError(.purged, "purged"))
        var purged: [(UInt, [UInt8]?, ErrorCode?)] = []
        #expect(q.serve(deadline: 0) { purged.append(($0.opaque, $0.report.record.key, $0.error?.code)) } == 4)
        #expect(purged.map(\.0) == [0, 2, 4, 6])
        #expect(purged.allSatisfy { $0.2 == .purged })
        #expect(purged.map(\.1) == [0, 2, 4, 6].map { bytes("key-\($0)") })
        #expect(q.outstanding == 6)
        // the writer (no producer behind it: it fails what it takes with .closed) may take the
        // moved records; whatever it leaves fails now
        q.failAll(KofkaError(.timedOut, "closed"))
        var rest: [DeliveryReport] = []
        #expect(q.drain(deadline: nil) { rest.append($0.report) })
        #expect(rest.map(\.opaque) == [1, 3, 5, 7, 8, 9])
        for r in rest {
            let i = Int(r.opaque)
            #expect(r.record.key == bytes("key-\(i)") && r.record.value == bytes(String(repeating: "v", count: i)))
            #expect(r.record.timestampMs == Int64(i))
            #expect(r.result.failureCode == .timedOut || r.result.failureCode == .closed)
        }
        #expect(q.outstanding == 0)
        q.stopAndWait()
    }

    @Test(arguments: backends)
    func aLoweredMaxMessageBytesRefusesTheVeryNextRecord(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 1)
        let p = try f.broker.producer()
        let r = Record(value: Array(repeating: 7, count: 100))
        try p.produce("t", r)
        try f.broker.setTopicConfig("t", [("max.message.bytes", "50")])
        #expect(errorCode { try p.produce("t", r) } == .msgTooLarge)
        try f.broker.setTopicConfig("t", [("max.message.bytes", "")])
        try p.produce("t", r)
        var ok = 0
        try p.flush { if case .success = $0.result { ok += 1 } }
        #expect(ok == 2)
        try p.close()
    }

    @Test(arguments: backends)
    func aTopicDeletedAndCreatedAgainBetweenTwoRecordsTakesTheSecondOnItsNewPartitions(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 1)
        let p = try f.broker.producer()
        try p.produce("t", Record(value: bytes("old")))
        try p.flush()
        try f.broker.deleteTopic("t")
        try f.broker.createTopic("t", partitions: 3)
        try p.produce("t", Record(partition: 2, value: bytes("new")))
        var got: [DeliveryReport] = []
        try p.flush { got.append($0) }
        #expect(got.count == 1)
        #expect(try got.first?.result.get() == RecordMetadata(topic: "t", partition: 2, offset: 0))
        #expect(try f.broker.watermarks("t", 2) == (0, 1))
        try p.close()
    }
}
