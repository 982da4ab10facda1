import Testing
import Dispatch
@testable import Kofka

/// Regression tests for what an outside, Jepsen-style review broke (issue 11): each reproduces
/// the reviewer's scenario and proves Kafka's behaviour, on both backends.
@Suite("GuaranteesUnderFaults")
struct GuaranteesUnderFaultsTests {
    static func txProducer(_ b: Broker, _ tid: String, _ extra: [(String, String)] = []) throws -> Producer {
        try b.producer(try pcfg([("delivery.mode", "exactly-once"), ("transactional.id", tid), ("retry.backoff.ms", "0")] + extra))
    }

    /// A `fault.seed` whose ack-loss draws at `rate` come out as `lost` (true = that ack is lost).
    static func seed(ackLost lost: [Bool], rate: Double) -> UInt64 {
        var seed: UInt64 = 1
        while true {
            var r = SplitMix64(seed: seed)
            if lost.allSatisfy({ (r.unit() < rate) == $0 }) { return seed }
            seed += 1
        }
    }

    /// Another process's handle takes the SQLite write lock at `path` and holds it until the
    /// returned function is called.
    static func holdWriteLock(_ path: String) throws -> () -> Void {
        let holder = try SQLiteStorage(path: path)
        let entered = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = try? holder.write { w in
                try w.put("held", [1])
                entered.signal()
                release.wait()
            }
            done.signal()
        }
        entered.wait()
        return {
            release.signal()
            done.wait()
            holder.close()
        }
    }

    static func committedValues(_ b: Broker, _ topic: String) throws -> [String] {
        try readAll(b, topic, isolation: .readCommitted).map { string($0.value) }
    }

    // MARK: 1. Abort after an unknown outcome

    @Test(arguments: backends)
    func abortAfterAnUnknownOutcomeNeverAcknowledgesTheRetryWithTheAbortedOffset(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("out", partitions: 1)
        let s = Self.seed(ackLost: [true, false], rate: 0.5)
        let p = try Self.txProducer(f.broker, "tx", [("fault.ack.loss.rate", "0.5"), ("fault.seed", "\(s)"), ("retries", "0")])
        try p.initTransactions()
        try p.beginTransaction()
        #expect(errorCode { _ = try p.send("out", Record(value: bytes("v0"))) } == .timedOut)
        #expect(try f.broker.watermarks("out", 0).high == 1, "the write happened; only its acknowledgement was lost")
        #expect(p.transactionRequiresAbort)
        #expect(errorCode { try p.commitTransaction() } == .timedOut, "an abort-only transaction cannot commit")
        try p.abortTransaction()
        #expect(!p.transactionRequiresAbort)
        // The application retries the record in a new transaction: it must be written anew.
        try p.beginTransaction()
        let md = try p.send("out", Record(value: bytes("v0")))
        #expect(md.offset == 1, "acknowledged with offset \(md.offset); 0 belongs to the aborted transaction")
        try p.commitTransaction()
        #expect(try Self.committedValues(f.broker, "out") == ["v0"])
    }

    @Test(arguments: backends)
    func recordsRetriedAfterAbortsOverALossyLinkAreCommittedExactlyOnce(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("out", partitions: 2)
        let p = try Self.txProducer(f.broker, "tx", [("fault.ack.loss.rate", "0.3"), ("fault.request.loss.rate", "0.1"),
                                                      ("fault.seed", "7"), ("retries", "0")])
        try p.initTransactions()
        var aborts = 0
        var id = 0
        var rng = SplitMix64(seed: 3)
        while id < 150 {
            // batches of 1 to 3 records, so a retried batch may differ in size from the aborted one
            let n = Int(rng.next() % 3) + 1
            let recs = (id..<min(150, id + n)).map { Record(key: bytes("k\($0 % 7)"), value: bytes("v\($0)")) }
            try p.beginTransaction()
            let ok = try p.sendBatch("out", recs).allSatisfy { if case .success = $0 { true } else { false } }
            if ok && (try? p.commitTransaction()) != nil {
                id += recs.count
            } else {
                try p.abortTransaction()
                aborts += 1
            }
        }
        let values = try Self.committedValues(f.broker, "out").compactMap { Int($0.dropFirst()) }
        let t = Tally(sent: 150, values: values)
        print("[\(kind)] 150 records through 30% ack loss, 10% request loss, retries=0: \(aborts) aborts, \(t)")
        #expect(aborts > 10)
        #expect(t.lost == 0 && t.duplicated == 0 && t.unexpected == 0)
    }

    // MARK: 2. Abort with records still queued

    @Test(arguments: backends)
    func abortPurgesRecordsStillQueuedAndNeverWritesThem(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("out", partitions: 1)
        let p = try Self.txProducer(f.broker, "tx", [("linger.ms", "10000")])
        try p.initTransactions()
        try p.beginTransaction()
        for i in 0..<20 { try p.produce("out", Record(value: bytes("a\(i)")), opaque: UInt(i)) }
        var reports: [DeliveryReport] = []
        try p.abortTransaction(timeout: .zero) { reports.append($0) }
        #expect(reports.count == 20)
        #expect(reports.allSatisfy { if case .failure(let e) = $0.result { e.code == .purged } else { false } })
        #expect(Set(reports.map(\.opaque)) == Set(0..<20))
        try p.beginTransaction()
        try p.produce("out", Record(value: bytes("b0")))
        var later: [DeliveryReport] = []
        try p.commitTransaction { later.append($0) }
        #expect(later.count == 1)
        #expect(try f.broker.watermarks("out", 0).high == 1, "only the second transaction's record was written")
        #expect(try Self.committedValues(f.broker, "out") == ["b0"])
        try p.close()
    }

    // MARK: 3. Rebalance inside an open transaction

    /// One read-process-write transaction of `polls` polls; aborts and rewinds on any error.
    /// Returns the number of input records whose outputs committed.
    @discardableResult
    static func processOnce(_ c: Consumer, _ p: Producer, polls: Int) -> Int {
        do {
            try p.beginTransaction()
            var n = 0
            for _ in 0..<polls {
                let msgs = try c.pollBatch(max: 2, timeout: .zero)
                for m in msgs { _ = try p.send("out", Record(value: m.value)) }
                n += msgs.count
            }
            try p.sendOffsetsToTransaction(c)
            try p.commitTransaction()
            return n
        } catch {
            try? p.abortTransaction()
            try? c.seekToCommitted()
            return 0
        }
    }

    /// A consumer in group "g" (client a, alone) polls twice — records of both partitions —
    /// and `p` sends their outputs in its open transaction; `inTransaction` runs; then member b
    /// joins and a third poll of a, inside the transaction, releases partition 1 to it (range
    /// assignment: "a-…" < "b-…"). Returns a and b.
    static func processBothPartitionsThenLoseOne(_ f: BrokerFixture, _ p: Producer,
                                                 inTransaction: (Consumer) throws -> Void = { _ in }) throws -> (Consumer, Consumer) {
        try f.broker.createTopic("in", partitions: 2)
        try f.broker.createTopic("out", partitions: 1)
        let plain = try f.broker.producer()
        for i in 0..<20 { _ = try plain.send("in", Record(partition: Int32(i % 2), value: bytes("v\(i)"))) }
        // Read ahead no more than a poll returns, so the records of one poll come from one
        // partition and the next poll (with nothing read ahead) follows the rebalance.
        let cfg: [(String, String)] = [("group.id", "g"), ("delivery.mode", "exactly-once"), ("max.poll.records", "2"),
                                       ("queued.min.messages", "1")]
        let c1 = try f.broker.consumer(try ccfg(cfg + [("client.id", "a")]))
        try c1.subscribe(["in"])
        try p.initTransactions()
        try p.beginTransaction()
        var fromPartitions = Set<Int32>()
        for _ in 0..<2 {
            for m in try c1.pollBatch(max: 2, timeout: .seconds(1)) {
                fromPartitions.insert(m.partition)
                _ = try p.send("out", Record(value: m.value))
            }
        }
        #expect(fromPartitions == [0, 1])
        try inTransaction(c1)
        let c2 = try f.broker.consumer(try ccfg(cfg + [("client.id", "b")]))
        try c2.subscribe(["in"])
        _ = try c1.pollBatch(max: 2, timeout: .zero)
        #expect(c1.assigned == [TopicPartition("in", 0)])
        return (c1, c2)
    }

    @Test(arguments: backends)
    func aPartitionLostInsideATransactionMakesItAbortOnlyAndNothingIsDuplicated(kind: String) throws {
        let f = try BrokerFixture(kind)
        let p1 = try Self.txProducer(f.broker, "tx1")
        let (c1, c2) = try Self.processBothPartitionsThenLoseOne(f, p1)
        #expect(errorCode { try p1.sendOffsetsToTransaction(c1) } == .rebalanced)
        #expect(p1.transactionRequiresAbort)
        #expect(errorCode { try p1.commitTransaction() } == .rebalanced, "after send_offsets failed, commit must fail")
        try p1.abortTransaction()
        try c1.seekToCommitted()
        // Both members now process everything, transactionally.
        let p2 = try Self.txProducer(f.broker, "tx2")
        try p2.initTransactions()
        for _ in 0..<40 {
            Self.processOnce(c1, p1, polls: 3)
            Self.processOnce(c2, p2, polls: 3)
        }
        let values = try Self.committedValues(f.broker, "out").compactMap { Int($0.dropFirst()) }
        let t = Tally(sent: 20, values: values)
        print("[\(kind)] rebalance inside a transaction: \(t)")
        #expect(t.lost == 0 && t.duplicated == 0 && t.unexpected == 0)
    }

    @Test(arguments: backends)
    func offsetsSentToATransactionThatAbortedStillFenceAPartitionLostBeforeTheRedoCommits(kind: String) throws {
        let f = try BrokerFixture(kind)
        let p = try Self.txProducer(f.broker, "tx")
        // The offsets go into the transaction, which then aborts; the application redoes its
        // outputs in a new transaction without rewinding (librdkafka's "retry the transaction").
        let (c1, _) = try Self.processBothPartitionsThenLoseOne(f, p) { c in
            try p.sendOffsetsToTransaction(c)
            try p.abortTransaction()
            try p.beginTransaction()
            _ = try p.send("out", Record(value: bytes("redo")))
        }
        #expect(errorCode { try p.sendOffsetsToTransaction(c1) } == .rebalanced,
                "the records of partition 1 were never committed: the redo must not commit their outputs")
        #expect(errorCode { try p.commitTransaction() } == .rebalanced)
        try p.abortTransaction()
        #expect(try Self.committedValues(f.broker, "out") == [])
    }

    @Test(arguments: backends)
    func aPartitionLostAfterItsTransactionCommittedDoesNotFenceTheNextTransaction(kind: String) throws {
        let f = try BrokerFixture(kind)
        let p = try Self.txProducer(f.broker, "tx")
        let (c1, _) = try Self.processBothPartitionsThenLoseOne(f, p) { c in
            try p.sendOffsetsToTransaction(c)
            try p.commitTransaction()
        }
        try p.beginTransaction()
        try p.sendOffsetsToTransaction(c1)
        try p.commitTransaction()
        #expect(try Self.committedValues(f.broker, "out").count == 4)
    }

    // MARK: 4. A dead instance's pending offsets

    @Test(arguments: backends)
    func offsetsPendingInADeadInstancesTransactionAreReleasedWhenItExpires(kind: String) throws {
        let clock = SteppedClock()
        let f = try BrokerFixture(kind, clock: clock)
        try f.broker.createTopic("in", partitions: 1)
        try f.broker.createTopic("out", partitions: 1)
        let plain = try f.broker.producer()
        for i in 0..<10 { _ = try plain.send("in", Record(value: bytes("v\(i)"))) }
        let cfg: [(String, String)] = [("group.id", "g"), ("delivery.mode", "exactly-once"), ("session.timeout.ms", "10000")]
        let timeout: [(String, String)] = [("transaction.timeout.ms", "20000")]
        // Instance A processes the records and dies after sending its offsets, before committing.
        let a = try f.broker.consumer(try ccfg(cfg + [("client.id", "a")]))
        try a.subscribe(["in"])
        let pa = try Self.txProducer(f.broker, "tx-a", timeout)
        try pa.initTransactions()
        try pa.beginTransaction()
        let got = try a.pollBatch(max: 100, timeout: .seconds(1))
        #expect(got.count == 10)
        for m in got { _ = try pa.send("out", Record(value: m.value)) }
        try pa.sendOffsetsToTransaction(a)
        a.destroy()   // SIGKILL: no commit, no leave; pa is abandoned with its transaction open
        // Instance B (another transactional.id) waits for the partition.
        let b = try f.broker.consumer(try ccfg(cfg + [("client.id", "b")]))
        try b.subscribe(["in"])
        #expect(try b.pollBatch(max: 100, timeout: .zero).isEmpty, "A is still a member")
        clock.advance(ms: 11_000)   // A's session expires
        #expect(try b.pollBatch(max: 100, timeout: .zero).isEmpty, "A's transaction still holds offsets for the partition")
        #expect(b.assigned.isEmpty)
        clock.advance(ms: 10_000)   // A's transaction outlives transaction.timeout.ms
        let pb = try Self.txProducer(f.broker, "tx-b", timeout)
        try pb.initTransactions()
        try pb.beginTransaction()
        let again = try b.pollBatch(max: 100, timeout: .zero)
        #expect(again.count == 10, "B waited on an expired transaction: it must abort it and take the partition")
        for m in again { _ = try pb.send("out", Record(value: m.value)) }
        try pb.sendOffsetsToTransaction(b)
        try pb.commitTransaction()
        #expect(try Self.committedValues(f.broker, "out") == (0..<10).map { "v\($0)" })
        #expect(errorCode { try pa.commitTransaction() } == .txnTimedOut, "the dead instance's transaction was aborted")
        _ = pa
    }

    // MARK: 5. Close with an abort-only transaction

    @Test(arguments: backends)
    func closeAbortsAnAbortOnlyTransactionSoReadersAreNotHeldBack(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("out", partitions: 1)
        let p = try Self.txProducer(f.broker, "tx", [("fault.ack.loss.rate", "1.0"), ("retries", "0")])
        try p.initTransactions()
        try p.beginTransaction()
        #expect(errorCode { _ = try p.send("out", Record(value: bytes("lost-ack"))) } == .timedOut)
        #expect(p.transactionRequiresAbort)
        try p.close()
        _ = try f.broker.producer().send("out", Record(value: bytes("after")))
        #expect(try Self.committedValues(f.broker, "out") == ["after"],
                "the abort-only transaction was aborted at close, not left open for transaction.timeout.ms")
    }

    // MARK: 6. At-most-once commit failure

    @Test func anAtMostOncePollWhoseCommitFailsReturnsNothingAndSkipsNothing() throws {
        let f = try BrokerFixture("sqlite", config: [("sqlite.busy.timeout.ms", "50")])
        try f.broker.createTopic("t", partitions: 1)
        let plain = try f.broker.producer()
        for i in 0..<5 { _ = try plain.send("t", Record(value: bytes("v\(i)"))) }
        let c = try f.broker.consumer(try ccfg([("group.id", "g"), ("delivery.mode", "at-most-once")]))
        try c.assign("t", partitions: [0])
        // Another process holds the write lock past the busy timeout.
        let release = try Self.holdWriteLock(f.path)
        #expect(errorCode { _ = try c.pollBatch(max: 10, timeout: .zero) } == .busy)
        #expect(try c.position("t", 0) == 0, "no position moved past a record that was not returned")
        release()
        #expect(try c.pollBatch(max: 10, timeout: .seconds(1)).map { string($0.value) } == (0..<5).map { "v\($0)" })
        #expect(try c.committed("t", 0) == 5)
    }

    // MARK: 6b. An abort that meets a held lock after purging

    @Test func anAbortThatFailsAfterPurgingLeavesTheTransactionAbortOnlySoItsOffsetsNeverCommit() throws {
        let f = try BrokerFixture("sqlite", config: [("sqlite.busy.timeout.ms", "50")])
        try f.broker.createTopic("in", partitions: 1)
        try f.broker.createTopic("out", partitions: 1)
        let plain = try f.broker.producer()
        for i in 0..<2 { _ = try plain.send("in", Record(value: bytes("v\(i)"))) }
        let c = try f.broker.consumer(try ccfg([("group.id", "g"), ("delivery.mode", "exactly-once")]))
        try c.assign("in", partitions: [0])
        let p = try Self.txProducer(f.broker, "tx", [("linger.ms", "60000")])
        try p.initTransactions()
        try p.beginTransaction()
        let polled = try c.pollBatch(max: 10, timeout: .seconds(1))
        #expect(polled.count == 2)
        for r in polled { try p.produce("out", Record(value: r.value)) }
        try p.sendOffsetsToTransaction(c)
        // Another process holds the write lock past the busy timeout: the abort purges the
        // queued outputs, then cannot write its abort.
        let release = try Self.holdWriteLock(f.path)
        var reports: [ErrorCode?] = []
        #expect(errorCode { try p.abortTransaction { r in
            if case .failure(let e) = r.result { reports.append(e.code) } else { reports.append(nil) }
        } } == .busy)
        #expect(reports == [.purged, .purged], "the queued outputs were purged, never written")
        #expect(p.transactionRequiresAbort)
        #expect(errorCode { try p.commitTransaction() } == .invalidState,
                "a transaction whose outputs were purged must not commit its input offsets")
        release()
        #expect(errorCode { try p.commitTransaction() } == .invalidState)
        try p.abortTransaction()
        #expect(!p.transactionRequiresAbort)
        #expect(try c.committed("in", 0) != 2, "the aborted transaction's offsets were discarded")
        #expect(try Self.committedValues(f.broker, "out") == [])
    }

    // MARK: 6c. A commit that took effect and reported a storage failure

    /// A memory backend whose next write, once armed, commits and then reports a storage
    /// failure: the caller cannot know the write happened (a connection lost at COMMIT).
    final class LosesTheNextWriteAcknowledgement: StorageBackend, @unchecked Sendable {
        let inner = MemoryStorage()
        let armed = Locked(false)
        func loseNext() { armed.withLock { $0 = true } }
        func write<T>(_ body: (any StorageWriter) throws -> T) throws -> T {
            let result = try inner.write(body)
            if armed.withLock({ a in defer { a = false }; return a }) {
                throw KofkaError(.storage, "injected: the write committed, its acknowledgement was lost")
            }
            return result
        }
        func read<T>(_ body: (any StorageReader) throws -> T) throws -> T { try inner.read(body) }
        func changeToken() -> UInt64 { inner.changeToken() }
        func waitForChange(since token: UInt64, timeoutNs: UInt64) { inner.waitForChange(since: token, timeoutNs: timeoutNs) }
        func wakeAll() { inner.wakeAll() }
        func close() { inner.close() }
    }

    /// A transaction that consumed "v0" from `in` and wrote it to `out`, whose commit took
    /// effect but failed with `.storage`.
    static func commitWithALostAcknowledgement() throws -> (Broker, Producer, Consumer) {
        let storage = LosesTheNextWriteAcknowledgement()
        let b = Broker(storage: storage)
        try b.createTopic("in", partitions: 1)
        try b.createTopic("out", partitions: 1)
        _ = try b.producer().send("in", Record(value: bytes("v0")))
        let c = try b.consumer(try ccfg([("group.id", "g"), ("delivery.mode", "exactly-once")]))
        try c.subscribe(["in"])
        let p = try txProducer(b, "tx")
        try p.initTransactions()
        try p.beginTransaction()
        for m in try c.pollBatch(max: 10, timeout: .seconds(1)) { _ = try p.send("out", Record(value: m.value)) }
        try p.sendOffsetsToTransaction(c)
        storage.loseNext()
        #expect(errorCode { try p.commitTransaction() } == .storage)
        return (b, p, c)
    }

    @Test func aCommitRetriedAfterAnUnknownOutcomeThatTookEffectSucceedsOnce() throws {
        let (b, p, c) = try Self.commitWithALostAcknowledgement()
        defer { b.close() }
        try p.commitTransaction()
        #expect(try Self.committedValues(b, "out") == ["v0"])
        #expect(try c.committed("in", 0) == 1)
        #expect(errorCode { try p.commitTransaction() } == .invalidState, "nothing is open any more")
    }

    @Test func anAbortAfterACommitThatTookEffectFailsAndTheTransactionStandsCommitted() throws {
        let (b, p, c) = try Self.commitWithALostAcknowledgement()
        defer { b.close() }
        #expect(errorCode { try p.abortTransaction() } == .invalidState,
                "an abort must not report success for a transaction that committed: the application would redo it")
        #expect(!p.transactionRequiresAbort)
        #expect(try Self.committedValues(b, "out") == ["v0"])
        #expect(try c.committed("in", 0) == 1)
        // the producer goes on with its next transaction
        try p.beginTransaction()
        _ = try p.send("out", Record(value: bytes("v1")))
        try p.commitTransaction()
        #expect(try Self.committedValues(b, "out") == ["v0", "v1"])
    }

    // MARK: 7. read_committed + latest

    @Test(arguments: backends)
    func readCommittedWithLatestStartsAtTheLastStableOffset(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 1)
        let p = try Self.txProducer(f.broker, "tx")
        try p.initTransactions()
        try p.beginTransaction()
        for i in 0..<3 { _ = try p.send("t", Record(value: bytes("v\(i)"))) }
        let c = try f.broker.consumer(try ccfg([("group.id", "g"), ("delivery.mode", "exactly-once"), ("auto.offset.reset", "latest")]))
        try c.subscribe(["t"])
        #expect(try c.pollBatch(max: 10, timeout: .milliseconds(50)).isEmpty)
        #expect(try c.position("t", 0) == 0, "latest for a read_committed reader is the last stable offset")
        try p.commitTransaction()
        #expect(try c.pollBatch(max: 10, timeout: .seconds(2)).map { string($0.value) } == ["v0", "v1", "v2"])
    }
}
