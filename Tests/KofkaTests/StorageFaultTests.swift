import Testing
@testable import Kofka
import KofkaLab

/// `fault.storage.failure.rate`: writes that fail inside storage, half of them *after* the commit
/// (the caller sees an error for a write that happened). Idempotence must make retrying safe.
@Suite struct StorageFaultTests {
    static func broker(_ backend: String, rate: Double) throws -> Broker {
        let cfg = [("fault.storage.failure.rate", "\(rate)"), ("fault.storage.seed", "7")]
        if backend == "memory" { return try Broker("memory:", config: cfg) }
        return try Broker("sqlite:/tmp/kofka-sfault-\(nowMs())-\(Int.random(in: 0..<1_000_000)).db",
                          config: cfg + [("sqlite.synchronous", "normal")])
    }

    static func sendAndCount(_ b: Broker, _ mode: DeliveryMode, topic: String, n: Int) throws -> (lost: Int, dups: Int, reordered: Int) {
        try b.createTopic(topic, partitions: 1)
        let p = try b.producer(try ProducerConfig([("delivery.mode", mode.rawValue), ("retry.backoff.ms", "0")]))
        var checker = DeliveryChecker()
        DeliveryLab.send(p, topic: topic, ids: 1...UInt64(n), into: &checker)
        try p.close()
        try DeliveryLab.readAll(broker: b, topic: topic) { id, part in checker.read(id, partition: "\(part)") }
        let r = checker.report()
        return (r.lost.count + r.unknown, r.duplicateCount, r.reordered)
    }

    @Test(arguments: ["memory", "sqlite"])
    func exactlyOnceAbsorbsAmbiguousStorageFailures(_ backend: String) throws {
        let b = try Self.broker(backend, rate: 0.3)
        defer { b.close() }
        let eos = try Self.sendAndCount(b, .exactlyOnce, topic: "eos", n: 300)
        print("\(backend) exactly-once under storage faults: lost \(eos.lost), duplicated \(eos.dups)")
        #expect(eos.lost == 0 && eos.dups == 0 && eos.reordered == 0)
        let alo = try Self.sendAndCount(b, .atLeastOnce, topic: "alo", n: 300)
        print("\(backend) at-least-once under storage faults: lost \(alo.lost), duplicated \(alo.dups)")
        #expect(alo.lost == 0 && alo.dups > 0)
    }

    @Test func storageFaultRateIsValidated() {
        #expect(throws: KofkaError.self) { try BrokerConfig([("fault.storage.failure.rate", "1.5")]) }
    }
}
