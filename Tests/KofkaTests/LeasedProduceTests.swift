import Testing
@testable import Kofka

/// `Producer.lease` + `produce(_:leased:opaques:credits:)`: reserved slots count against
/// `queue.buffering.max.messages` exactly, are released on every path, and a record refused at
/// the handover fails in its report with the error `produce` gives.
@Suite("LeasedProduce")
struct LeasedProduceTests {
    private func producer(_ f: BrokerFixture, _ extra: [(String, String)] = []) throws -> Producer {
        try f.broker.producer(try ProducerConfig([("queue.buffering.max.messages", "10"), ("linger.ms", "60000")] + extra))
    }

    /// Calls of `produce` that succeed before `.queueFull`.
    private func fill(_ p: Producer, _ topic: String) throws -> Int {
        for n in 0..<100 {
            if errorCode({ try p.produce(topic, Record(value: bytes("v"))) }) == .queueFull { return n }
        }
        return 100
    }

    @Test(arguments: backends)
    func reservedSlotsCountAgainstTheQueueExactlyAndUnusedOnesComeBack(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 2)
        let p = try producer(f)
        let lease = try p.lease("t", max: 4)
        #expect(lease == Producer.ProduceLease(credits: 4, partitions: 2, maxKeyValueBytes: 1_048_576, holdMs: 60_000, txn: 0))
        #expect(p.leasedSlots == 4)
        #expect(try fill(p, "t") == 6)
        #expect(errorCode { _ = try p.lease("t", max: 1) } == .queueFull)
        try p.produce("t", leased: [Record(value: bytes("a"))], opaques: [7], credits: lease.credits)
        #expect(p.leasedSlots == 0)
        #expect(try fill(p, "t") == 3)
        var served: [UInt] = []
        try p.flush { served.append($0.opaque) }
        #expect(served.filter { $0 == 7 }.count == 1)
        #expect(served.count == 10)
        // a lease asks for more than is free: it gets what is free, and nothing leaks
        let all = try p.lease("t", max: 1_000)
        #expect(all.credits == 10)
        p.releaseLease(all.credits + 5)   // never more than reserved
        #expect(p.leasedSlots == 0)
        #expect(try fill(p, "t") == 10)
        try p.close()
    }

    @Test(arguments: backends)
    func refusedHandoversAndCloseReleaseTheLease(kind: String) throws {
        let f = try BrokerFixture(kind)
        let p = try producer(f)
        let lease = try p.lease("t", max: 5)
        #expect(errorCode { try p.produce("t", leased: [Record(value: nil)], opaques: [], credits: lease.credits) } == .invalidArg)
        #expect(p.leasedSlots == 0)
        _ = try p.lease("t", max: 5)
        #expect(p.leasedSlots == 5)
        try p.close()
        #expect(p.leasedSlots == 0)
        #expect(errorCode { _ = try p.lease("t", max: 5) } == .closed)
    }

    @Test(arguments: backends)
    func theByteBoundIsTheSizeCheckOfProduce(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("small", partitions: 1, config: [("max.message.bytes", "10")])
        let p = try f.broker.producer()
        let lease = try p.lease("small", max: 8)
        #expect(lease.maxKeyValueBytes == 10)
        let fits = Record(key: Array(repeating: 1, count: 4), value: Array(repeating: 2, count: 6))
        let over = Record(key: Array(repeating: 1, count: 4), value: Array(repeating: 2, count: 7))
        #expect(fits.size == lease.maxKeyValueBytes && over.size == lease.maxKeyValueBytes + 1)
        try p.produce("small", leased: [fits, over, Record(partition: 3, value: nil), fits], opaques: [1, 2, 3, 4], credits: lease.credits)
        var results: [(UInt, ErrorCode?)] = []
        try p.flush { r in results.append((r.opaque, r.result.failureCode)) }
        #expect(results.map(\.0) == [1, 2, 3, 4])   // in the order handed over
        #expect(results.map(\.1) == [nil, .msgTooLarge, .unknownPartition, nil])
        #expect(errorCode { try p.produce("small", over) } == .msgTooLarge)
        #expect(errorCode { try p.produce("small", Record(partition: 3, value: nil)) } == .unknownPartition)
        try p.close()
    }

    @Test(arguments: backends)
    func aHandoverOutsideAnOpenTransactionFailsEveryRecordWithProducesError(kind: String) throws {
        let f = try BrokerFixture(kind)
        let p = try f.broker.producer(try ProducerConfig([("delivery.mode", "exactly-once"), ("transactional.id", "lt")]))
        try p.initTransactions()
        #expect(errorCode { _ = try p.lease("t", max: 4) } == .invalidState)
        try p.beginTransaction()
        let lease = try p.lease("t", max: 4)
        try p.abortTransaction()
        #expect(p.leasedSlots == 4)
        try p.produce("t", leased: [Record(value: bytes("a")), Record(value: bytes("b"))], opaques: [1, 0], credits: lease.credits)
        #expect(p.leasedSlots == 0)
        var results: [(UInt, ErrorCode?)] = []
        try p.flush { r in results.append((r.opaque, r.result.failureCode)) }
        #expect(results.count == 1)   // opaque 0: quiet
        #expect(results.first?.0 == 1 && results.first?.1 == .invalidState)
        #expect(try f.broker.watermarks("t", 0).high == 0)
        try p.close()
    }

    /// Records held across the end of their lease's transaction fail; they never join the
    /// transaction open at the handover (a thread producing while another commits).
    @Test(arguments: backends)
    func recordsOfALeaseNeverJoinALaterTransaction(kind: String) throws {
        let f = try BrokerFixture(kind)
        let p = try f.broker.producer(try ProducerConfig([("delivery.mode", "exactly-once"), ("transactional.id", "lt2")]))
        try p.initTransactions()
        try p.beginTransaction()
        let first = try p.lease("t", max: 2)
        #expect(first.txn != 0)
        try p.commitTransaction()
        try p.beginTransaction()   // a later transaction is open at the handover
        try p.produce("t", leased: [Record(value: bytes("late"))], opaques: [7], credits: first.credits, txn: first.txn)
        let second = try p.lease("t", max: 2)
        #expect(second.txn != first.txn)
        try p.produce("t", leased: [Record(value: bytes("ok"))], opaques: [8], credits: second.credits, txn: second.txn)
        var results: [UInt: ErrorCode?] = [:]
        try p.flush { r in results[r.opaque] = r.result.failureCode }
        #expect(results[7] == .some(.invalidState), "held across a commit: refused, in its report")
        #expect(results[8] == .some(nil))
        try p.commitTransaction()
        let c = try f.broker.consumer(try ccfg([("delivery.mode", "exactly-once")]))
        try c.assign("t", partitions: [0])
        #expect(try c.pollBatch(max: 10, timeout: .seconds(1)).map { string($0.value) } == ["ok"])
        c.destroy()
        try p.close()
    }
}

