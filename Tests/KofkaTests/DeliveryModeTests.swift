import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Kofka

/// The producer's delivery modes hold on a link that loses requests and acknowledgements;
/// idempotence survives restarts, threads and a second broker handle; async produce.
@Suite("DeliveryModes")
struct DeliveryModeTests {
    static let lossy: [(String, String)] = [
        ("fault.request.loss.rate", "0.2"), ("fault.ack.loss.rate", "0.2"), ("fault.seed", "20261130"), ("retry.backoff.ms", "0"),
    ]

    /// Sends `n` unique values one by one in `mode` over the lossy link; returns what is in the log, in order.
    static func sendThroughLossyLink(_ f: BrokerFixture, _ mode: DeliveryMode, n: Int) throws -> (values: [Int], errors: [ErrorCode]) {
        try f.broker.createTopic("t", partitions: 1)
        let p = try f.broker.producer(try pcfg([("delivery.mode", mode.rawValue)] + lossy))
        var errors: [ErrorCode] = []
        for i in 0..<n {
            do { _ = try p.send("t", Record(value: bytes("v\(i)"))) } catch let e as KofkaError { errors.append(e.code) }
        }
        try p.flush()   // acks=0 hands records to the background writer; flush waits for the writes
        let values = try readAll(f.broker, "t").compactMap(intValue)
        return (values, errors)
    }

    @Test(arguments: backends)
    func atMostOnceLosesAboutTheLostRequestsAndNeverDuplicates(kind: String) throws {
        let f = try BrokerFixture(kind)
        let (values, errors) = try Self.sendThroughLossyLink(f, .atMostOnce, n: 1000)
        let t = Tally(sent: 1000, values: values)
        print("[\(kind)] at-most-once, 1000 sent over 20%/20% loss: \(t) reordered=\(reorderings(values)) send errors=\(errors.count)")
        #expect(t.duplicated == 0)
        #expect(t.unexpected == 0)
        #expect((100...300).contains(t.lost), "lost \(t.lost)")
        #expect(reorderings(values) == 0)
        #expect(errors.isEmpty, "acks=0 does not wait for an outcome")
    }

    @Test(arguments: backends)
    func atLeastOnceLosesNothingAndDuplicatesOnLostAcks(kind: String) throws {
        let f = try BrokerFixture(kind)
        let (values, errors) = try Self.sendThroughLossyLink(f, .atLeastOnce, n: 1000)
        let t = Tally(sent: 1000, values: values)
        print("[\(kind)] at-least-once, 1000 sent over 20%/20% loss: \(t) records in log=\(values.count)")
        #expect(errors.isEmpty)
        #expect(t.lost == 0)
        #expect(t.duplicated > 0)
        #expect((100...400).contains(t.duplicated), "duplicated \(t.duplicated)")
        #expect(t.unexpected == 0)
    }

    @Test(arguments: backends)
    func exactlyOnceLosesNothingDuplicatesNothingAndKeepsOrder(kind: String) throws {
        let f = try BrokerFixture(kind)
        let (values, errors) = try Self.sendThroughLossyLink(f, .exactlyOnce, n: 1000)
        let t = Tally(sent: 1000, values: values)
        print("[\(kind)] exactly-once, 1000 sent over 20%/20% loss: \(t) reordered=\(reorderings(values))")
        #expect(errors.isEmpty)
        #expect(t.lost == 0 && t.duplicated == 0 && t.unexpected == 0)
        #expect(values == Array(0..<1000))
        #expect(try f.broker.watermarks("t", 0).high == 1000)
    }

    @Test(arguments: backends)
    func idempotentProducerAcknowledgesRetriesWithOriginalOffsets(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("i", partitions: 1)
        let meta = try f.broker.topicMeta("i")
        let id = ProducerIdentity(pid: try f.broker.allocateProducerId(), epoch: 0, txn: 0)
        let batch = { (tag: Int) in (0..<3).map { RecordData(timestampMs: 1, key: nil, value: bytes("b\(tag)-\($0)"), headers: nil) } }
        #expect(try f.broker.appendRequest(meta, 0, batch(0), identity: id, baseSeq: 0) == 0)
        #expect(try f.broker.appendRequest(meta, 0, batch(1), identity: id, baseSeq: 3) == 3)
        #expect(try f.broker.appendRequest(meta, 0, batch(1), identity: id, baseSeq: 3) == 3)
        #expect(try f.broker.appendRequest(meta, 0, batch(0), identity: id, baseSeq: 0) == 0)
        #expect(try f.broker.watermarks("i", 0).high == 6)
        #expect(errorCode { _ = try f.broker.appendRequest(meta, 0, batch(9), identity: id, baseSeq: 7) } == .outOfOrderSequence)
        #expect(errorCode { _ = try f.broker.appendRequest(meta, 0, batch(9), identity: id, baseSeq: 1) } == .outOfOrderSequence)
        #expect(try f.broker.watermarks("i", 0).high == 6)
    }

    @Test
    func idempotenceSurvivesReopeningTheSQLiteFile() throws {
        let f = try BrokerFixture("sqlite")
        try f.broker.createTopic("i", partitions: 2)
        let pid = try f.broker.allocateProducerId()
        let id = ProducerIdentity(pid: pid, epoch: 0, txn: 0)
        let batch = { (tag: Int) in (0..<2).map { RecordData(timestampMs: 1, key: nil, value: bytes("b\(tag)-\($0)"), headers: nil) } }
        var meta = try f.broker.topicMeta("i")
        // 7 batches of 2 on partition 1: sequences 0, 2, ..., 12 at offsets 0, 2, ..., 12
        for b in 0..<7 {
            #expect(try f.broker.appendRequest(meta, 1, batch(b), identity: id, baseSeq: Int32(2 * b)) == Int64(2 * b))
        }
        _ = try f.broker.appendRequest(meta, 0, batch(100), identity: id, baseSeq: 0)
        #expect(try f.broker.watermarks("i", 1).high == 14)

        let b2 = try f.reopen()
        meta = try b2.topicMeta("i")
        // the last batch again: acknowledged with its original offset, not written again
        #expect(try b2.appendRequest(meta, 1, batch(6), identity: id, baseSeq: 12) == 12)
        #expect(try b2.watermarks("i", 1).high == 14)
        // the oldest batch still in the window of 5 (sequence 4)
        #expect(try b2.appendRequest(meta, 1, batch(2), identity: id, baseSeq: 4) == 4)
        // an older batch, outside the window of the last 5
        #expect(errorCode { _ = try b2.appendRequest(meta, 1, batch(1), identity: id, baseSeq: 2) } == .outOfOrderSequence)
        #expect(errorCode { _ = try b2.appendRequest(meta, 1, batch(0), identity: id, baseSeq: 0) } == .outOfOrderSequence)
        // a gap
        #expect(errorCode { _ = try b2.appendRequest(meta, 1, batch(8), identity: id, baseSeq: 16) } == .outOfOrderSequence)
        #expect(try b2.watermarks("i", 1).high == 14)
        // the next batch in sequence is written
        #expect(try b2.appendRequest(meta, 1, batch(7), identity: id, baseSeq: 14) == 14)
        // partition 0 kept its own sequence state
        #expect(try b2.appendRequest(meta, 0, batch(100), identity: id, baseSeq: 0) == 0)
        #expect(try b2.watermarks("i", 0).high == 2)
        // a newer epoch starts again at 0 and fences the older one
        let newer = ProducerIdentity(pid: pid, epoch: 1, txn: 0)
        #expect(try b2.appendRequest(meta, 1, batch(20), identity: newer, baseSeq: 0) == 16)
        #expect(errorCode { _ = try b2.appendRequest(meta, 1, batch(21), identity: id, baseSeq: 16) } == .producerFenced)
        #expect(errorCode { _ = try b2.appendRequest(meta, 1, batch(7), identity: id, baseSeq: 14) } == .producerFenced)
        let b3 = try f.reopen()
        #expect(errorCode { _ = try b3.appendRequest(meta, 1, batch(21), identity: id, baseSeq: 16) } == .producerFenced)
        #expect(try b3.appendRequest(meta, 1, batch(20), identity: newer, baseSeq: 0) == 16)
        #expect(try b3.watermarks("i", 1).high == 18)
    }

    @Test(arguments: backends)
    func eightThreadsSharingAnExactlyOnceProducerWriteEveryRecordOnce(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("mt", partitions: 3)
        let p = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once")] + Self.lossy))
        let perThread = 150
        let errs = Collector<String>()
        onThreads(8) { t in
            for i in 0..<perThread {
                let v = t * perThread + i
                do {
                    // alternate single sends and small batches
                    if i % 3 == 0 {
                        _ = try p.send("mt", Record(value: bytes("v\(v)")))
                    } else {
                        _ = try p.send("mt", Record(key: bytes("k\(t)"), value: bytes("v\(v)")))
                    }
                } catch { errs.fail("thread \(t) record \(v): \(error)") }
            }
        }
        #expect(errs.errors.isEmpty, "\(errs.errors.prefix(3))")
        let msgs = try readAll(f.broker, "mt")
        let t = Tally(sent: 8 * perThread, values: msgs.compactMap(intValue))
        print("[\(kind)] 8 threads x \(perThread) on one exactly-once lossy producer: \(t)")
        #expect(t.lost == 0 && t.duplicated == 0 && t.unexpected == 0)
        // a thread's keyed records are in send order on their partition
        for th in 0..<8 {
            let mine = msgs.filter { $0.key == bytes("k\(th)") }.compactMap(intValue)
            #expect(reorderings(mine) == 0)
        }
    }

    @Test
    func twoBrokerHandlesOnOneSQLiteFileWriteEveryRecordOnce() throws {
        let f = try BrokerFixture("sqlite")
        try f.broker.createTopic("shared", partitions: 2)
        let other = try f.secondHandle()
        let producers = [try f.broker.producer(try pcfg([("delivery.mode", "exactly-once")] + Self.lossy)),
                         try other.producer(try pcfg([("delivery.mode", "exactly-once"), ("fault.request.loss.rate", "0.2"),
                                                      ("fault.ack.loss.rate", "0.2"), ("fault.seed", "7"), ("retry.backoff.ms", "0")]))]
        let per = 300
        let errs = Collector<String>()
        onThreads(2) { h in
            for i in 0..<per {
                let v = h * per + i
                do { _ = try producers[h].send("shared", Record(value: bytes("v\(v)"))) } catch { errs.fail("handle \(h) record \(v): \(error)") }
            }
        }
        #expect(errs.errors.isEmpty, "\(errs.errors.prefix(3))")
        for b in [f.broker, other] {
            let t = Tally(sent: 2 * per, values: try readAll(b, "shared").compactMap(intValue))
            print("[sqlite] two broker handles, exactly-once lossy producers: \(t)")
            #expect(t.lost == 0 && t.duplicated == 0 && t.unexpected == 0)
        }
    }

    @Test(arguments: backends)
    func asyncProduceReportsEveryRecordOnTheCallingThread(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("async", partitions: 2)
        let p = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once"), ("linger.ms", "2")]))
        let n = 5000
        for i in 0..<n { try p.produce("async", Record(value: bytes("v\(i)")), opaque: UInt(i)) }
        let me = pthread_self()
        var reports: [DeliveryReport] = []
        var offThread = 0
        try p.flush(timeout: .seconds(20)) { r in
            if pthread_equal(pthread_self(), me) == 0 { offThread += 1 }
            reports.append(r)
        }
        let ok = reports.compactMap { try? $0.result.get() }
        let where_ = Set(ok.map { "\($0.partition)@\($0.offset)" })
        print("[\(kind)] async: \(n) produced, \(reports.count) reports, \(ok.count) ok, \(where_.count) distinct offsets, \(offThread) off-thread")
        #expect(reports.count == n)
        #expect(ok.count == n)
        #expect(where_.count == n)
        #expect(Set(reports.map(\.opaque)) == Set((0..<n).map(UInt.init)))
        #expect(offThread == 0)
        #expect(p.poll(timeout: .zero) { _ in } == 0)
        let t = Tally(sent: n, values: try readAll(f.broker, "async").compactMap(intValue))
        #expect(t.lost == 0 && t.duplicated == 0)
        // each report's offset holds that report's record
        let log = Dictionary(uniqueKeysWithValues: try readAll(f.broker, "async").map { ("\($0.partition)@\($0.offset)", $0.value) })
        #expect(reports.allSatisfy { r in (try? r.result.get()).map { log["\($0.partition)@\($0.offset)"] == r.record.value } ?? false })
    }

    @Test(arguments: backends)
    func asyncProduceFailsWithQueueFullWhenReportsAreNotServed(kind: String) throws {
        let f = try BrokerFixture(kind)
        let p = try f.broker.producer(try pcfg([("queue.buffering.max.messages", "10"), ("linger.ms", "0")]))
        for i in 0..<10 { try p.produce("q", Record(value: bytes("v\(i)"))) }
        sleepMs(50)   // delivered, but the reports are not served
        #expect(errorCode { try p.produce("q", Record(value: bytes("v10"))) } == .queueFull)
        var served = 0
        try p.flush(timeout: .seconds(5)) { r in if case .success = r.result { served += 1 } }
        #expect(served == 10)
        try p.produce("q", Record(value: bytes("v10")))
        try p.flush(timeout: .seconds(5))
        #expect(try f.broker.watermarks("q", 0).high == 11)
    }

    @Test(arguments: backends)
    func idempotentProducerThatGivesUpKeepsWorkingWithoutSequenceErrors(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("g", partitions: 1)
        let p = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once"), ("retries", "0")] + Self.lossy))
        var ok: [Int] = [], timedOut: [Int] = [], other: [ErrorCode] = []
        for i in 0..<300 {
            do { _ = try p.send("g", Record(value: bytes("v\(i)"))); ok.append(i) }
            catch let e as KofkaError { if e.code == .timedOut { timedOut.append(i) } else { other.append(e.code) } }
        }
        let values = try readAll(f.broker, "g").compactMap(intValue)
        let t = Tally(sent: 300, values: values)
        print("[\(kind)] exactly-once with retries=0 over 20%/20% loss: \(ok.count) ok, \(timedOut.count) timed out, other=\(other), log: \(t)")
        #expect(other.isEmpty)
        #expect(!timedOut.isEmpty)
        #expect(t.duplicated == 0)
        #expect(Set(ok).isSubset(of: Set(values)), "every acknowledged record is in the log")
        #expect(reorderings(values) == 0)
    }
}
