import Testing
import Synchronization
import Dispatch
@testable import Kofka

/// Handles shared between threads: no call waits for a poll blocked on another thread, a
/// close ends blocked polls and retry backoffs at once, and many threads hammering one producer
/// and several consumers lose and duplicate nothing. The ThreadSanitizer run of
/// `scripts/test.sh` runs this suite.
@Suite("ConcurrencyTests")
struct ConcurrencyTests {
    /// Runs `body` on another thread; returns a function that waits up to `seconds` for it to
    /// finish and says whether it did.
    static func background(_ body: @escaping @Sendable () -> Void) -> (Double) -> Bool {
        let done = DispatchSemaphore(value: 0)
        startThread {
            body()
            done.signal()
        }
        return { seconds in done.wait(timeout: .now() + seconds) == .success }
    }

    /// Milliseconds `body` took.
    static func ms(_ body: () throws -> Void) rethrows -> Int {
        let t0 = nowMonoMs()
        try body()
        return nowMonoMs() - t0
    }

    @Test(arguments: backends)
    func commitPositionAndCloseDoNotWaitForAPollBlockedOnAnotherThread(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 1)
        _ = try f.broker.producer().send("t", Record(value: bytes("v0")))
        let c = try f.broker.consumer(try ccfg([("group.id", "g")]))
        try c.subscribe(["t"])
        #expect(try c.pollBatch(max: 10, timeout: .seconds(2)).count == 1)
        let polled = Mutex<Int?>(nil)
        let finished = Self.background {
            let n = (try? c.pollBatch(max: 10, timeout: nil))?.count ?? -1
            polled.withLock { $0 = n }
        }
        sleepMs(100)   // the poll is now waiting for a record that never comes
        let commitMs = try Self.ms { try c.commit() }
        var position: Int64 = -1
        let positionMs = try Self.ms { position = try c.position("t", 0) }
        #expect(position == 1)
        #expect(try c.committed("t", 0) == 1)
        let closeMs = try Self.ms { try c.close() }
        #expect(commitMs < 1000 && positionMs < 1000 && closeMs < 1000, "commit \(commitMs) ms, position \(positionMs) ms, close \(closeMs) ms")
        #expect(finished(2), "the blocked poll returns once its consumer is closed")
        #expect(polled.withLock { $0 } == 0, "it returns with no message")
        #expect(errorCode { _ = try c.pollBatch(max: 1, timeout: .zero) } == .closed)
    }

    @Test(arguments: backends)
    func destroyWakesAPollBlockedOnAnotherThread(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 2)
        let c = try f.broker.consumer(try ccfg([("group.id", "g")]))
        try c.subscribe(["t"])
        let finished = Self.background { _ = try? c.pollBatch(max: 10, timeout: nil) }
        sleepMs(100)
        c.destroy()
        #expect(finished(2))
    }

    @Test(arguments: backends)
    func closeEndsAnIdempotentRetryBackoffAndProduceIsNotStalledByIt(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 1)
        // Every request is lost; each retry waits 10 s.
        let p = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once"), ("fault.request.loss.rate", "1.0"),
                                                ("retry.backoff.ms", "10000"), ("linger.ms", "0")]))
        let sent = Mutex<ErrorCode?>(nil)
        let finished = Self.background {
            let code = errorCode { _ = try p.send("t", Record(value: bytes("stuck"))) }
            sent.withLock { $0 = code }
        }
        sleepMs(100)   // the send is in its backoff
        let produceMs = try Self.ms { try p.produce("t", Record(value: bytes("queued"))) }
        #expect(produceMs < 500, "produce waited \(produceMs) ms behind another thread's retry backoff")
        let closeMs = Self.ms { _ = try? p.close(timeout: .zero) }
        #expect(closeMs < 2000, "close took \(closeMs) ms")
        #expect(finished(2), "the send in its backoff returns when the producer closes")
        #expect(sent.withLock { $0 } == .timedOut, "its outcome is unknown")
    }

    @Test(arguments: backends)
    func closingAProducerWhileAnotherThreadFlushesEndsTheFlush(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 1)
        let p = try f.broker.producer(try pcfg([("fault.request.loss.rate", "1.0"), ("retry.backoff.ms", "50"), ("linger.ms", "0")]))
        for i in 0..<5 { try p.produce("t", Record(value: bytes("v\(i)"))) }
        let reports = Atomic<Int>(0)
        let finished = Self.background {
            try? p.flush(timeout: nil) { _ in reports.add(1, ordering: .relaxed) }
        }
        sleepMs(100)
        _ = try? p.close(timeout: .zero) { _ in reports.add(1, ordering: .relaxed) }
        #expect(finished(3))
        #expect(reports.load(ordering: .relaxed) == 5, "every record gets exactly one report")
    }

    /// Eight threads share one exactly-once producer (sync sends and async produce) while four
    /// consumers of one group poll, commit, read positions and rejoin; at the end everything
    /// written is read exactly once by a fresh reader, and every acknowledged record is there.
    @Test(arguments: backends)
    func threadsSharingProducersAndConsumersLoseAndDuplicateNothing(kind: String) throws {
        let f = try BrokerFixture(kind)
        try f.broker.createTopic("t", partitions: 4)
        let p = try f.broker.producer(try pcfg([("delivery.mode", "exactly-once"), ("linger.ms", "1")]))
        let acked = Collector<Int>()
        let consumed = Collector<Int>()
        let stop = Atomic<Bool>(false)
        let broker = f.broker
        let consumers = (0..<4).map { i in
            Self.background {
                guard let c = try? broker.consumer(try ccfg([("group.id", "g"), ("client.id", "c\(i)"), ("session.timeout.ms", "3000")])) else { return }
                try? c.subscribe(["t"])
                while !stop.load(ordering: .relaxed) {
                    for m in (try? c.pollBatch(max: 50, timeout: .milliseconds(20))) ?? [] { consumed.add(intValue(m) ?? -1) }
                    _ = try? c.commit()
                    for tp in c.assigned { _ = try? c.position(tp.topic, tp.partition) }
                }
                try? c.close()
            }
        }
        onThreads(8) { t in
            for j in 0..<60 {
                let v = t * 1000 + j
                if j % 2 == 0 {
                    if (try? p.send("t", Record(key: bytes("k\(v % 13)"), value: bytes("v\(v)")))) != nil { acked.add(v) }
                } else {
                    try? p.produce("t", Record(key: bytes("k\(v % 13)"), value: bytes("v\(v)")), opaque: UInt(v))
                    p.poll(timeout: .zero) { r in if case .success = r.result { acked.add(Int(r.opaque)) } }
                }
            }
        }
        try p.flush { r in if case .success = r.result { acked.add(Int(r.opaque)) } }
        sleepMs(300)
        stop.store(true, ordering: .relaxed)
        for done in consumers { #expect(done(10)) }
        let all = try readAll(f.broker, "t").compactMap(intValue)
        #expect(Set(acked.values) == Set((0..<8).flatMap { t in (0..<60).map { t * 1000 + $0 } }))
        #expect(all.count == 480 && Set(all).count == 480, "written \(all.count), distinct \(Set(all).count)")
        #expect(Set(consumed.values).isSubset(of: Set(all)))
        #expect(consumed.errors.isEmpty && acked.errors.isEmpty)
    }
}
