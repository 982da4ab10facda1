import Testing
@testable import Kofka

/// Transactions: visibility, fencing, state errors, offsets in transactions, crash recovery, timeouts.
@Suite("Transactions")
struct TransactionTests {
    static func txProducer(_ b: Broker, _ tid: String, _ extra: [(String, String)] = []) throws -> Producer {
        try b.producer(try pcfg([("delivery.mode", "exactly-once"), ("transactional.id", tid), ("retry.backoff.ms", "0")] + extra))
    }

    @Test(arguments: backends)
    func readCommittedSeesCommittedOnlyAndStopsAtAnOpenTransaction(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 1)
        let p = try Self.txProducer(f.broker, "a")
        try p.initTransactions()
        try p.transaction { for i in 0..<3 { _ = try p.send("t", Record(value: bytes("v\(i)"))) } }   // 0,1,2
        try p.beginTransaction()
        for i in 3..<5 { _ = try p.send("t", Record(value: bytes("v\(i)"))) }                    // 3,4 aborted
        try p.abortTransaction()
        let plain = try f.broker.producer()
        _ = try plain.send("t", Record(value: bytes("v5")))                                       // 5
        try p.transaction { for i in 6..<8 { _ = try p.send("t", Record(value: bytes("v\(i)"))) } }   // 6,7
        let open = try Self.txProducer(f.broker, "b")
        try open.initTransactions()
        try open.beginTransaction()
        _ = try open.send("t", Record(value: bytes("v8")))                                        // 8, open
        _ = try plain.send("t", Record(value: bytes("v9")))                                       // 9, behind it
        _ = try p.transaction { try p.send("t", Record(value: bytes("v10"))) }                    // 10, committed but behind it

        let rc = try readAll(f.broker, "t", isolation: .readCommitted).map(\.offset)
        let ru = try readAll(f.broker, "t", isolation: .readUncommitted).map(\.offset)
        print("[\(kind)] read_committed sees \(rc), read_uncommitted sees \(ru.count)")
        #expect(rc == [0, 1, 2, 5, 6, 7])
        #expect(ru == Array(0..<11))
        try open.commitTransaction()
        #expect(try readAll(f.broker, "t", isolation: .readCommitted).map(\.offset) == [0, 1, 2, 5, 6, 7, 8, 9, 10])

        // a read_committed consumer waiting at the last stable offset gets the records once it moves
        try open.beginTransaction()
        _ = try open.send("t", Record(value: bytes("v11")))
        var cfg = ConsumerConfig(); cfg.isolationLevel = .readCommitted
        let c = try f.broker.consumer(cfg)
        try c.assign("t", partitions: [0])
        try c.seek("t", 0, 10)
        #expect(try c.pollBatch(max: 10, timeout: .milliseconds(100)).map(\.offset) == [10])
        #expect(try c.pollBatch(max: 10, timeout: .milliseconds(100)).isEmpty)
        try open.commitTransaction()
        #expect(try c.pollBatch(max: 10, timeout: .seconds(2)).map(\.offset) == [11])
        c.destroy()
    }

    @Test(arguments: backends)
    func aTransactionIsAtomicAcrossPartitionsAndTopics(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("x", partitions: 3)
        try f.broker.createTopic("y", partitions: 2)
        let p = try Self.txProducer(f.broker, "atomic")
        try p.initTransactions()
        try p.beginTransaction()
        for i in 0..<6 { _ = try p.send("x", Record(partition: Int32(i % 3), value: bytes("v\(i)"))) }
        for i in 6..<10 { _ = try p.send("y", Record(partition: Int32(i % 2), value: bytes("v\(i)"))) }
        #expect(try readAll(f.broker, "x", isolation: .readCommitted).isEmpty)
        #expect(try readAll(f.broker, "y", isolation: .readCommitted).isEmpty)
        try p.commitTransaction()
        let all = try readAll(f.broker, "x", isolation: .readCommitted) + readAll(f.broker, "y", isolation: .readCommitted)
        #expect(all.compactMap(intValue).sorted() == Array(0..<10))
        try p.beginTransaction()
        for i in 10..<16 { _ = try p.send(i % 2 == 0 ? "x" : "y", Record(value: bytes("v\(i)"))) }
        try p.abortTransaction()
        let after = try readAll(f.broker, "x", isolation: .readCommitted) + readAll(f.broker, "y", isolation: .readCommitted)
        #expect(after.compactMap(intValue).sorted() == Array(0..<10))
    }

    @Test(arguments: backends)
    func aSecondProducerWithTheSameTransactionalIdFencesTheFirst(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 2)
        let zombie = try Self.txProducer(f.broker, "same")
        try zombie.initTransactions()
        try zombie.beginTransaction()
        _ = try zombie.send("t", Record(partition: 0, value: bytes("zombie-0")))
        _ = try zombie.send("t", Record(partition: 1, value: bytes("zombie-1")))
        let fresh = try Self.txProducer(f.broker, "same")
        try fresh.initTransactions()
        // the zombie's open transaction is aborted: nothing of it is visible, and nothing blocks readers
        #expect(try readAll(f.broker, "t", isolation: .readCommitted).isEmpty)
        let zs = errorCode { _ = try zombie.send("t", Record(partition: 0, value: bytes("zombie-2"))) }
        let zc = errorCode { try zombie.commitTransaction() }
        print("[\(kind)] fenced zombie: send → \(zs?.name ?? "ok"), commit → \(zc?.name ?? "ok")")
        #expect(zs == .producerFenced)
        #expect(zc == .producerFenced)
        #expect(errorCode { try zombie.beginTransaction() } == .producerFenced)
        _ = try fresh.transaction { try fresh.send("t", Record(partition: 0, value: bytes("fresh"))) }
        let rc = try readAll(f.broker, "t", isolation: .readCommitted)
        #expect(rc.map { string($0.value) } == ["fresh"])
        #expect(try readAll(f.broker, "t", isolation: .readUncommitted).filter { string($0.value) == "zombie-2" }.isEmpty)
        #expect(errorCode { try zombie.commitTransaction() } == .producerFenced)
        #expect(try readAll(f.broker, "t", isolation: .readCommitted).map { string($0.value) } == ["fresh"])
    }

    @Test(arguments: backends)
    func transactionStateErrorsAreInvalidState(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 1)
        let p = try Self.txProducer(f.broker, "st")
        #expect(errorCode { try p.beginTransaction() } == .invalidState)             // before init
        #expect(errorCode { _ = try p.send("t", Record(value: bytes("x"))) } == .invalidState)
        try p.initTransactions()
        #expect(errorCode { _ = try p.send("t", Record(value: bytes("x"))) } == .invalidState)   // outside a txn
        #expect(errorCode { try p.produce("t", Record(value: bytes("x"))) } == .invalidState)
        #expect(errorCode { try p.commitTransaction() } == .invalidState)            // without begin
        #expect(errorCode { try p.abortTransaction() } == .invalidState)
        try p.beginTransaction()
        #expect(errorCode { try p.beginTransaction() } == .invalidState)             // twice
        _ = try p.send("t", Record(value: bytes("ok")))
        try p.commitTransaction()
        #expect(errorCode { try p.commitTransaction() } == .invalidState)
        let plain = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once")]))
        #expect(errorCode { try plain.beginTransaction() } == .invalidState)
        #expect(errorCode { try plain.initTransactions() } == .invalidState)
        #expect(try f.broker.watermarks("t", 0).high == 1)
    }

    @Test(arguments: backends)
    func offsetsSentToATransactionCommitIfAndOnlyIfItCommits(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("in", partitions: 1)
        _ = try f.broker.producer().sendBatch("in", (0..<10).map { Record(value: bytes("v\($0)")) })
        let c = try f.broker.consumer(try ccfg([("group.id", "eos"), ("delivery.mode", "exactly-once")]))
        try c.subscribe(["in"])
        #expect(try c.pollBatch(max: 5, timeout: .seconds(2)).map(\.offset) == [0, 1, 2, 3, 4])
        let p = try Self.txProducer(f.broker, "offs")
        try p.initTransactions()
        try p.beginTransaction()
        _ = try p.send("out", Record(value: bytes("x")))
        try p.sendOffsetsToTransaction(c)
        #expect(try c.committed("in", 0) == -1)
        try p.abortTransaction()
        #expect(try c.committed("in", 0) == -1)
        // aborting does not rewind the consumer; seekToCommitted does
        #expect(try c.position("in", 0) == 5)
        try c.seekToCommitted()
        #expect(try c.pollBatch(max: 5, timeout: .seconds(2)).map(\.offset) == [0, 1, 2, 3, 4])
        try p.beginTransaction()
        try p.sendOffsetsToTransaction(c)
        try p.commitTransaction()
        #expect(try c.committed("in", 0) == 5)
        c.destroy()
    }

    @Test(arguments: backends)
    func aConsumerThatLostItsPartitionsCannotSendOffsets(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("in", partitions: 2)
        _ = try f.broker.producer().sendBatch("in", (0..<10).map { Record(partition: Int32($0 % 2), value: bytes("v\($0)")) })
        let cfg: [(String, String)] = [("group.id", "kip447"), ("delivery.mode", "exactly-once"), ("session.timeout.ms", "300")]
        let old = try f.broker.consumer(try ccfg(cfg))
        try old.subscribe(["in"])
        #expect(try old.pollBatch(max: 10, timeout: .seconds(2)).count == 10)
        let p = try Self.txProducer(f.broker, "kip447")
        try p.initTransactions()
        // a new member joins: a new generation; `old` has not caught up
        let other = try f.broker.consumer(try ccfg(cfg))
        try other.subscribe(["in"])
        try p.beginTransaction()
        #expect(errorCode { try p.sendOffsetsToTransaction(old) } == .rebalanced)
        // and once its session expired it is out of the group altogether
        _ = try other.pollBatch(max: 10, timeout: .milliseconds(800))
        #expect(errorCode { try p.sendOffsetsToTransaction(old) } == .rebalanced)
        try p.abortTransaction()
        #expect(try other.committed("in", 0) == -1 && other.committed("in", 1) == -1)
        other.destroy(); old.destroy()
    }

    /// One worker pass: poll, write transformed records and the offsets in one transaction.
    /// `crashAt` abandons the handles mid-transaction after that many batches.
    static func runWorker(_ b: Broker, crashAt: Int?, crashBeforeOffsets: Bool, expected: Int, done: () throws -> Bool) throws {
        let c = try b.consumer(try ccfg([("group.id", "ctp"), ("delivery.mode", "exactly-once"), ("session.timeout.ms", "300"), ("max.poll.records", "7")]))
        try c.subscribe(["in"])
        let p = try txProducer(b, "ctp-tx", [("fault.ack.loss.rate", "0.1"), ("fault.seed", "3")])
        try p.initTransactions()
        var batches = 0
        let end = nowMonoMs() + 10_000
        while nowMonoMs() < end {
            if try done() { break }
            let msgs = try c.pollBatch(max: 7, timeout: .milliseconds(50))
            if msgs.isEmpty { continue }
            try p.beginTransaction()
            for m in msgs { _ = try p.send("out", Record(key: m.key, value: bytes("v\(intValue(m)! )"))) }
            if let crashAt, batches == crashAt {
                if !crashBeforeOffsets { try p.sendOffsetsToTransaction(c) }
                c.destroy()   // the process dies: no commit, no abort, no leave
                return
            }
            try p.sendOffsetsToTransaction(c)
            try p.commitTransaction()
            batches += 1
        }
        try c.close()
        try p.close()
    }

    @Test(arguments: backends)
    func consumeTransformProduceSurvivesCrashesExactlyOnce(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("in", partitions: 2)
        try f.broker.createTopic("out", partitions: 2)
        let n = 60
        _ = try f.broker.producer().sendBatch("in", (0..<n).map { Record(key: bytes("k\($0 % 5)"), value: bytes("v\($0)")) })
        let committedOut = { try readAll(f.broker, "out", isolation: .readCommitted).compactMap(intValue) }
        try Self.runWorker(f.broker, crashAt: 2, crashBeforeOffsets: false, expected: n) { false }
        try Self.runWorker(f.broker, crashAt: 1, crashBeforeOffsets: true, expected: n) { false }
        try Self.runWorker(f.broker, crashAt: nil, crashBeforeOffsets: false, expected: n) { try committedOut().count >= n }
        let values = try committedOut()
        let t = Tally(sent: n, values: values)
        let uncommitted = try readAll(f.broker, "out", isolation: .readUncommitted).count
        print("[\(kind)] consume-transform-produce with 2 crashes: out has \(values.count) committed (\(uncommitted) written): \(t)")
        #expect(t.lost == 0 && t.duplicated == 0 && t.unexpected == 0)
        #expect(uncommitted > n, "the crashed transactions did write records that stay invisible")
    }

    @Test(arguments: backends)
    func aHangingTransactionIsAbortedAfterItsTimeout(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 1)
        let p = try Self.txProducer(f.broker, "slow", [("transaction.timeout.ms", "500")])
        try p.initTransactions()
        try p.beginTransaction()
        let started = nowMonoMs()
        _ = try p.send("t", Record(value: bytes("hanging")))
        _ = try f.broker.producer().sendBatch("t", (0..<3).map { Record(value: bytes("v\($0)")) })
        var cfg = ConsumerConfig(); cfg.isolationLevel = .readCommitted
        let c = try f.broker.consumer(cfg)
        try c.assign("t", partitions: [0])
        var got: [Message] = []
        while got.count < 3 && nowMonoMs() - started < 5000 { got += try c.pollBatch(max: 10, timeout: .milliseconds(100)) }
        let elapsed = nowMonoMs() - started
        print("[\(kind)] hanging transaction aborted; records behind it visible after \(elapsed) ms")
        #expect(got.map(\.offset) == [1, 2, 3])
        #expect(elapsed >= 450 && elapsed <= 2000)
        let e = errorCode { try p.commitTransaction() }
        #expect(e == .txnTimedOut || e == .producerFenced, "commit after timeout: \(String(describing: e))")
        // the producer can carry on with a new transaction
        try? p.abortTransaction()
        _ = try p.transaction { try p.send("t", Record(value: bytes("later"))) }
        #expect(try readAll(f.broker, "t", isolation: .readCommitted).map { string($0.value) } == ["v0", "v1", "v2", "later"])
        c.destroy()
    }

    @Test(arguments: backends)
    func aTransactionPastItsTimeoutCannotCommitEvenWithNoReaderWatching(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("late", partitions: 1)
        let p = try Self.txProducer(f.broker, "late-tx", [("transaction.timeout.ms", "200")])
        try p.initTransactions()
        try p.beginTransaction()
        _ = try p.send("late", Record(value: bytes("never")))
        sleepMs(400)
        #expect(errorCode { try p.commitTransaction() } == .txnTimedOut)
        #expect(try readAll(f.broker, "late", isolation: .readCommitted).isEmpty)
        // the producer can abort and carry on
        try p.abortTransaction()
        try p.transaction { _ = try p.send("late", Record(value: bytes("kept"))) }
        #expect(try readAll(f.broker, "late", isolation: .readCommitted).map { string($0.value) } == ["kept"])
    }
}
