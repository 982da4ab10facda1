import Testing
@testable import Kofka

/// `Consumer.lend` (issue 14): a binding makes a batch in one call and hands it out one record
/// at a time. Lent records count as returned only once settled — for positions, commits, a
/// close's final commit and a transaction's offsets — and what is not settled comes again, so
/// nothing is lost or duplicated across lends, polls, seeks and consumers of one group.
@Suite("Lend")
struct LendTests {
    static func offsets(_ c: Consumer, settling k: Int, max: Int = 10) throws -> [Int64] {
        try c.lend(settling: k, max: max, timeout: .seconds(1), discard: { _ in }) { _, _, r in r.offset }
    }

    @Test(arguments: backends)
    func lentRecordsAreReturnedOnlyWhenSettledAndTheRestComeAgain(kind: String) throws {
        let f = try BrokerFixture(kind)
        try ReadAheadTests.filled(f, n: 30)
        let c = try f.broker.consumer(try ccfg([("group.id", "g"), ("auto.commit.interval.ms", "60000")]))
        try c.assign("t", partitions: [0])
        #expect(try Self.offsets(c, settling: 0) == Array(0..<10))
        #expect(try c.position("t", 0) == 0, "nothing of the lend is returned before it is settled")
        try c.commit()
        #expect(try c.committed("t", 0) == 0, "a commit does not cover lent records")
        // 4 were handed out: they count now; 4..9 are taken back and lent again.
        #expect(try Self.offsets(c, settling: 4) == Array(4..<14))
        #expect(try c.position("t", 0) == 4)
        try c.commit()
        #expect(try c.committed("t", 0) == 4)
        // the whole lend settled, then a plain poll continues in order
        #expect(try Self.offsets(c, settling: 10, max: 0) == [])
        #expect(try c.position("t", 0) == 14)
        #expect(try c.pollBatch(max: 3, timeout: .seconds(1)).map(\.offset) == [14, 15, 16])
        c.destroy()
    }

    @Test(arguments: backends)
    func aCloseCommitsExactlyWhatWasSettledAndTheNextMemberStartsThere(kind: String) throws {
        let f = try BrokerFixture(kind)
        try ReadAheadTests.filled(f, n: 50)
        let c = try f.broker.consumer(try ccfg([("group.id", "g")]))
        try c.subscribe(["t"])
        #expect(try Self.offsets(c, settling: 0) == Array(0..<10))
        #expect(try Self.offsets(c, settling: 7, max: 0) == [])
        try c.close()
        #expect(try f.broker.committedOffset(group: "g", TopicPartition("t", 0)) == 7,
                "3 lent records were never handed out: committing them would lose them")
        let next = try f.broker.consumer(try ccfg([("group.id", "g")]))
        try next.subscribe(["t"])
        #expect(try next.pollBatch(max: 50, timeout: .seconds(2)).map(\.offset) == Array(7..<50))
        try next.close()
    }

    @Test(arguments: backends)
    func aTransactionsOffsetsCountOnlySettledRecords(kind: String) throws {
        let f = try BrokerFixture(kind)
        try ReadAheadTests.filled(f, n: 20)
        let c = try f.broker.consumer(try ccfg([("group.id", "eos"), ("delivery.mode", "exactly-once")]))
        try c.subscribe(["t"])
        #expect(try Self.offsets(c, settling: 0) == Array(0..<10))
        #expect(try Self.offsets(c, settling: 6, max: 0) == [])
        let p = try TransactionTests.txProducer(f.broker, "lend")
        try p.initTransactions()
        try p.beginTransaction()
        try p.sendOffsetsToTransaction(c)
        try p.commitTransaction()
        #expect(try c.committed("t", 0) == 6)
        c.destroy()
    }

    @Test(arguments: backends)
    func anyCallThatMovesTheReadAheadTakesLentRecordsBack(kind: String) throws {
        let f = try BrokerFixture(kind)
        try ReadAheadTests.filled(f, n: 40)
        let c = try f.broker.consumer(try ccfg([("queued.min.messages", "100")]))
        try c.assign("t", partitions: [0])
        #expect(try Self.offsets(c, settling: 0) == Array(0..<10))
        #expect(errorCode { _ = try Self.offsets(c, settling: 11) } == .invalidArg, "only 10 are lent")
        #expect(errorCode { _ = try Self.offsets(c, settling: -1) } == .invalidArg)
        // a failed settle changed nothing: the same 10 are still lent
        #expect(try Self.offsets(c, settling: 2, max: 3) == [2, 3, 4])
        #expect(try c.poll(timeout: .seconds(1))?.offset == 2, "a poll hands out the front: 2 were settled")
        #expect(errorCode { _ = try Self.offsets(c, settling: 1) } == .invalidArg, "the poll took the lend back")
        #expect(try Self.offsets(c, settling: 0, max: 2) == [3, 4])
        try c.seek("t", 0, 30)
        #expect(errorCode { _ = try Self.offsets(c, settling: 1) } == .invalidArg, "the seek took the lend back")
        #expect(try Self.offsets(c, settling: 0, max: 2) == [30, 31])
        #expect(try c.position("t", 0) == 30)
        c.destroy()
    }

    @Test(arguments: backends)
    func atMostOnceLendsOneRecordCommittedBeforeItIsReturned(kind: String) throws {
        let f = try BrokerFixture(kind)
        try ReadAheadTests.filled(f, n: 5)
        let c = try f.broker.consumer(try ccfg([("group.id", "g"), ("delivery.mode", "at-most-once")]))
        try c.assign("t", partitions: [0])
        #expect(try Self.offsets(c, settling: 0) == [0])
        #expect(try c.committed("t", 0) == 1, "at-most-once commits before it returns")
        #expect(try Self.offsets(c, settling: 1) == [1], "settling a record returned at once changes nothing")
        #expect(try c.position("t", 0) == 2)
        #expect(errorCode { _ = try Self.offsets(c, settling: 2) } == .invalidArg)
        c.destroy()
    }

    /// Lent records are handed out only until the consumer's next heartbeat or automatic commit
    /// is due (only a call runs them); committing at every poll lends one record at a time.
    @Test(arguments: backends)
    func theLendWindowEndsWhenAHeartbeatOrAnAutomaticCommitIsDue(kind: String) throws {
        let clock = SteppedClock()
        let f = try BrokerFixture(kind, clock: clock)
        try ReadAheadTests.filled(f, n: 20)
        let manual = try f.broker.consumer(try ccfg([]))
        try manual.assign("t", partitions: [0])
        _ = try Self.offsets(manual, settling: 0)
        #expect(manual.lendWindowNs() == .max, "a manual assignment without automatic commits has nothing due")
        manual.destroy()

        let member = try f.broker.consumer(try ccfg([("group.id", "g"), ("session.timeout.ms", "30000"),
                                                     ("enable.auto.commit", "false")]))
        try member.subscribe(["t"])
        #expect(try Self.offsets(member, settling: 0).count == 10)
        let w0 = member.lendWindowNs()
        #expect(w0 > 900_000_000 && w0 <= 1_000_000_000, "the heartbeat (min(session/3, 1 s)) is due in \(w0) ns")
        clock.advance(ms: 400)
        #expect(member.lendWindowNs() <= 600_000_000)
        clock.advance(ms: 600)
        #expect(member.lendWindowNs() == 0)
        member.destroy()

        let committing = try f.broker.consumer(try ccfg([("group.id", "c"), ("auto.commit.interval.ms", "60000")]))
        try committing.assign("t", partitions: [0])
        _ = try Self.offsets(committing, settling: 0)
        #expect(committing.lendWindowNs() == 0, "nothing committed automatically yet: the first commit is due")
        _ = try Self.offsets(committing, settling: 3)
        #expect(try committing.committed("t", 0) == 3)
        let w1 = committing.lendWindowNs()
        #expect(w1 > 59_000_000_000 && w1 <= 60_000_000_000, "the next automatic commit is due in \(w1) ns")
        committing.destroy()

        let everyPoll = try f.broker.consumer(try ccfg([("group.id", "h"), ("auto.commit.interval.ms", "0")]))
        try everyPoll.assign("t", partitions: [0])
        #expect(try Self.offsets(everyPoll, settling: 0) == [0], "a commit at every poll: one record per lend")
        #expect(try Self.offsets(everyPoll, settling: 1) == [1])
        #expect(try everyPoll.committed("t", 0) == 1, "the settled record was committed by the next call")
        everyPoll.destroy()
    }

    /// Lends settled by random amounts, mixed with polls and seeks back to the position: every
    /// record is handed out exactly once and in order, whatever the interleaving.
    @Test(arguments: backends)
    func lendsSettledByAnyAmountHandOutEveryRecordOnceInOrder(kind: String) throws {
        let f = try BrokerFixture(kind)
        try ReadAheadTests.filled(f, n: 500)
        let c = try f.broker.consumer(try ccfg([("group.id", "g"), ("queued.min.messages", "37")]))
        try c.assign("t", partitions: [0])
        var rng = SplitMix64(seed: 7)
        var handed: [Int64] = []
        var lent: [Int64] = []
        var step = 0
        while handed.count < 500 && step < 10_000 {
            step += 1
            switch rng.next() % 5 {
            case 0:   // a poll, after a settle that hands out none of the lend
                _ = try Self.offsets(c, settling: 0, max: 0)
                lent = []
                handed += try c.pollBatch(max: Int(rng.next() % 4) + 1, timeout: .zero).map(\.offset)
            case 1:   // re-seek to the position: lent records are taken back, nothing skipped
                _ = try Self.offsets(c, settling: 0, max: 0)
                lent = []
                try c.seek("t", 0, try c.position("t", 0) == -1 ? 0 : try c.position("t", 0))
            default:
                let k = lent.isEmpty ? 0 : Int(rng.next() % UInt64(lent.count + 1))
                handed += lent.prefix(k)
                lent = try Self.offsets(c, settling: k, max: Int(rng.next() % 20) + 1)
            }
        }
        #expect(handed == Array(0..<500), "every record handed out once, in order")
        c.destroy()
    }
}
