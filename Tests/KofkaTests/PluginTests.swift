import Testing
@testable import Kofka

/// The Swift side of the plugin surface: interceptors on a broker, a storage backend given to
/// a broker or registered under a scheme, and the errors of loading plugins.
@Suite("Plugins")
struct PluginTests {
    /// Counts every hook; tags each record with a header when `tag` is set.
    final class Counting: Interceptor, @unchecked Sendable {
        let tag: Bool
        let counts = Locked([String: Int]())
        let commits = Locked([String]())
        init(tag: Bool = false) { self.tag = tag }
        func bump(_ k: String) { counts.withLock { $0[k, default: 0] += 1 } }
        subscript(_ k: String) -> Int { counts.withLock { $0[k] ?? 0 } }

        func onSend(topic: String, record: OutgoingRecord) -> Record? {
            bump("send")
            guard tag else { return nil }
            var r = record.record
            r.headers.append(Header("traced", Array("yes".utf8)))
            return r
        }
        func onAcknowledgement(topic: String, record: OutgoingRecord, result: Result<RecordMetadata, KofkaError>) {
            switch result {
            case .success: bump("ack")
            case .failure(let e): bump("fail:\(e.code.name)")
            }
        }
        func onConsume(topic: String, partition: Int32, record: RecordView) { bump("consume") }
        func onCommit(group: String, partition: TopicPartition, offset: Int64, error: KofkaError?) {
            commits.withLock { $0.append("\(group) \(partition)@\(offset)\(error.map { " \($0.code.name)" } ?? "")") }
        }
        func onClose() { bump("close") }
    }

    @Test(arguments: backends)
    func interceptorsSeeEverySendAcknowledgementConsumeCommitAndClose(kind: String) throws {
        let f = try BrokerFixture(kind)
        let counter = Counting()
        try f.broker.add(counter, name: "counter")
        #expect(errorCode { try f.broker.add(Counting(), name: "counter") } == .invalidArg)
        try f.broker.createTopic("t", partitions: 2)
        let p = try f.broker.producer()
        for r in try p.sendBatch("t", (0..<10).map { Record(partition: Int32($0 % 2), value: bytes("v\($0)")) }) { _ = try r.get() }
        for i in 0..<5 { try p.produce("t", Record(partition: 0, value: bytes("a\(i)"))) }
        try p.flush()
        #expect(errorCode { _ = try p.send("t", Record(partition: 7, value: bytes("nowhere"))) } == .unknownPartition)
        #expect(counter["send"] == 16)
        #expect(counter["ack"] == 15)
        #expect(counter["fail:KOFKA_ERR_UNKNOWN_PARTITION"] == 1)
        let c = try f.broker.consumer(try ccfg([("group.id", "g")]))
        try c.subscribe(["t"])
        var n = 0
        while n < 15, !(try c.pollBatch(max: 100, timeout: .seconds(1))).isEmpty { n = counter["consume"] }
        #expect(counter["consume"] == 15)
        try c.commit()
        #expect(Set(counter.commits.withLock { $0 }) == ["g t[0]@10", "g t[1]@5"])
        try c.close()
        f.broker.close()
        #expect(counter["close"] == 1)
    }

    @Test(arguments: backends)
    func anInterceptorCanTagRecordsAndItsTagIsStored(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.add(Counting(tag: true), name: "tracer")
        try f.broker.createTopic("t", partitions: 1)
        let p = try f.broker.producer()
        _ = try p.send("t", Record(value: bytes("sync")))
        try p.produce("t", Record(value: bytes("async")))
        try p.flush()
        let got = try readAll(f.broker, "t")
        #expect(got.map { string($0.value) } == ["sync", "async"])
        #expect(got.allSatisfy { $0.headers == [Header("traced", Array("yes".utf8))] })
    }

    @Test(arguments: backends)
    func aTransactionsCommitReportsItsOffsetsToOnCommit(kind: String) throws {
        let f = try BrokerFixture(kind)
        let counter = Counting()
        try f.broker.add(counter, name: "counter")
        try f.broker.createTopic("in", partitions: 1)
        _ = try f.broker.producer().send("in", Record(value: bytes("x")))
        let c = try f.broker.consumer(try ccfg([("group.id", "g"), ("delivery.mode", "exactly-once")]))
        try c.subscribe(["in"])
        let tx = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once"), ("transactional.id", "tx")]))
        try tx.initTransactions()
        try tx.beginTransaction()
        #expect(try c.pollBatch(max: 10, timeout: .seconds(1)).count == 1)
        try tx.sendOffsetsToTransaction(c)
        #expect(counter.commits.withLock { $0 }.isEmpty, "not committed before the transaction commits")
        try tx.commitTransaction()
        #expect(counter.commits.withLock { $0 } == ["g in[0]@1"])
    }

    @Test func aBrokerOnAStorageBackendItIsGiven() throws {
        let b = Broker(storage: MemoryStorage(), config: BrokerConfig())
        defer { b.close() }
        try b.createTopic("t", partitions: 1)
        #expect(try b.producer().send("t", Record(value: bytes("v"))).offset == 0)
        #expect(try readAll(b, "t").count == 1)
    }

    @Test func aStorageSchemeRegisteredInSwiftIsUsedByItsStorageString() throws {
        let scheme = "swiftmem\(nowMonoMs() % 100_000)"
        let opened = Locked([String]())
        try Plugins.registerStorage(scheme) { location, _ in
            opened.withLock { $0.append(location) }
            return MemoryStorage()
        }
        #expect(errorCode { try Plugins.registerStorage(scheme) { _, _ in MemoryStorage() } } == .invalidArg)
        #expect(errorCode { try Plugins.registerStorage("sqlite") { _, _ in MemoryStorage() } } == .invalidArg)
        #expect(errorCode { try Plugins.registerStorage("Bad Scheme") { _, _ in MemoryStorage() } } == .invalidArg)
        let b = try Broker("\(scheme):somewhere")
        defer { b.close() }
        #expect(opened.withLock { $0 } == ["somewhere"])
        try b.createTopic("t", partitions: 1)
        #expect(try b.producer().send("t", Record(value: bytes("v"))).offset == 0)
        #expect(Broker.schemes.contains("\(scheme):…"))
    }

    @Test func pluginErrorsNameTheLibraryTheSchemeOrTheKey() throws {
        do {
            _ = try Broker("nosuchscheme:/x")
            Issue.record("an unknown scheme must fail")
        } catch let e as KofkaError {
            #expect(e.code == .invalidArg)
            #expect(e.message.contains("nosuchscheme") && e.message.contains("libkofka_nosuchscheme.so"))
        }
        do {
            _ = try Broker("memory:", config: [("plugin.library.paths", "/nonexistent/libkofka_x.so")])
            Issue.record("a missing plugin library must fail")
        } catch let e as KofkaError {
            #expect(e.code == .invalidArg)
            #expect(e.message.contains("/nonexistent/libkofka_x.so"))
        }
        #expect(errorCode { _ = try Broker("memory:", config: [("interceptors", "nobody")]) } == .invalidConfig)
        #expect(errorCode { _ = try Broker("memory:", config: [("metrics.path", "/tmp/x")]) } == .invalidConfig,
                "a key under a name no plugin registered is unknown")
    }
}
