import Testing
@testable import Kofka
import KofkaLab

/// The checker's own tests: hand-made histories, each with one known fault.
@Suite struct CheckerTests {
    @Test func cleanHistoryReportsNothing() {
        var c = DeliveryChecker()
        for i in 1...5 as ClosedRange<UInt64> { c.sent(i, .acknowledged) }
        for i in 1...5 as ClosedRange<UInt64> { c.read(i, partition: "0") }
        let r = c.report()
        #expect(r.lost.isEmpty && r.duplicates.isEmpty && r.unexpected.isEmpty && r.abortedReads.isEmpty && r.reordered == 0)
        #expect(r.sent == 5 && r.acknowledged == 5 && r.uniqueReads == 5)
    }

    @Test func acknowledgedRecordNeverReadIsLost() {
        var c = DeliveryChecker()
        c.sent(1, .acknowledged); c.sent(2, .acknowledged); c.sent(3, .acknowledged)
        c.read(1); c.read(3)
        #expect(c.report().lost == [2])
    }

    @Test func unknownOutcomeNeverReadIsNotLostButReadIsRecovered() {
        var c = DeliveryChecker()
        c.sent(1, .unknown); c.sent(2, .unknown)
        c.read(2)
        let r = c.report()
        #expect(r.lost.isEmpty)
        #expect(r.recovered == 1 && r.unknownNeverRead == 1)
    }

    @Test func recordReadTwiceIsADuplicate() {
        var c = DeliveryChecker()
        c.sent(1, .acknowledged); c.sent(2, .acknowledged)
        c.read(1); c.read(2); c.read(2); c.read(2)
        let r = c.report()
        #expect(r.duplicates == [2: 2])
        #expect(r.duplicateCount == 2)
    }

    @Test func readOfAFailedOrUnsentRecordIsUnexpected() {
        var c = DeliveryChecker()
        c.sent(1, .failed); c.sent(2, .acknowledged)
        c.read(1); c.read(2); c.read(99)
        #expect(c.report().unexpected == [1, 99])
    }

    @Test func readOfARecordOnlyAnAbortedTransactionWroteIsReported() {
        var c = DeliveryChecker()
        c.sent(1, .acknowledged)
        c.abortedWrite(7)
        c.read(1); c.read(7)
        let r = c.report()
        #expect(r.abortedReads == [7])
        #expect(r.unexpected.isEmpty)
    }

    @Test func readsOutOfSendOrderWithinAPartitionAreReordered() {
        var c = DeliveryChecker()
        for i in 1...4 as ClosedRange<UInt64> { c.sent(i, .acknowledged) }
        c.read(1, partition: "0"); c.read(3, partition: "0"); c.read(2, partition: "0"); c.read(4, partition: "0")
        #expect(c.report().reordered == 1)
        // different partitions are independent
        var d = DeliveryChecker()
        for i in 1...4 as ClosedRange<UInt64> { d.sent(i, .acknowledged) }
        d.read(2, partition: "a"); d.read(1, partition: "b"); d.read(4, partition: "a"); d.read(3, partition: "b")
        #expect(d.report().reordered == 0)
    }

    @Test func retryThatSucceededUpgradesAnUnknownOutcome() {
        var c = DeliveryChecker()
        c.sent(1, .unknown); c.sent(1, .acknowledged); c.sent(1, .unknown)
        let r = c.report()
        #expect(r.acknowledged == 1 && r.unknown == 0)
        #expect(r.lost == [1])
    }

    @Test func promisesAreJudgedPerMode() {
        var lossy = DeliveryChecker()
        lossy.sent(1, .acknowledged); lossy.sent(2, .acknowledged); lossy.read(1)
        #expect(DeliveryLab.holds(.atMostOnce, lossy.report()))
        #expect(!DeliveryLab.holds(.atLeastOnce, lossy.report()))
        var dup = DeliveryChecker()
        dup.sent(1, .acknowledged); dup.read(1); dup.read(1)
        #expect(!DeliveryLab.holds(.atMostOnce, dup.report()))
        #expect(DeliveryLab.holds(.atLeastOnce, dup.report()))
        #expect(!DeliveryLab.holds(.exactlyOnce, dup.report()))
    }
}

/// The delivery lab end to end, on both backends: each mode keeps its promise under lost
/// requests, lost acks and consumer crashes.
@Suite struct DeliveryLabTests {
    static func broker(_ backend: String) throws -> Broker {
        if backend == "memory" { return try Broker("memory:") }
        let path = "/tmp/kofka-lab-\(nowMs())-\(Int.random(in: 0..<1_000_000)).db"
        return try Broker("sqlite:" + path, config: [("sqlite.synchronous", "normal")])
    }

    @Test(arguments: ["memory", "sqlite"])
    func everyModeKeepsItsPromiseUnderFaultsAndCrashes(_ backend: String) throws {
        let b = try Self.broker(backend)
        defer { b.close() }
        var o = DeliveryLab.Options()
        o.records = 400
        o.crashEvery = 70
        o.requestLoss = 0.15
        o.ackLoss = 0.15
        let amo = try DeliveryLab.run(.atMostOnce, broker: b, options: o, runId: "t")
        let alo = try DeliveryLab.run(.atLeastOnce, broker: b, options: o, runId: "t")
        let eos = try DeliveryLab.run(.exactlyOnce, broker: b, options: o, runId: "t")
        for r in [amo, alo, eos] {
            print("\(backend) \(r.mode.rawValue): sent \(r.sent) stored \(r.stored) processed \(r.processed) lost \(r.lost) duplicated \(r.duplicated) crashes \(r.crashes)")
            #expect(r.held, "\(r.mode.rawValue): \(r.endToEnd)")
            #expect(r.crashes > 0)
        }
        #expect(amo.lost > 0 && amo.duplicated == 0)
        #expect(alo.lost == 0 && alo.duplicated > 0)
        #expect(eos.lost == 0 && eos.duplicated == 0 && eos.processed == eos.sent && eos.endToEnd.reordered == 0)
    }
}
