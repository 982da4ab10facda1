/// What one round of maintenance did (`Broker.maintain`).
public struct MaintenanceReport: Sendable, CustomStringConvertible {
    /// Records deleted below a new log start (retention by time or size, DeleteRecords).
    public var recordsDeleted = 0
    /// Records removed by compaction (superseded, expired tombstones, aborted transactions).
    public var recordsCompacted = 0
    /// Idempotence states (producer id × partition) removed after `producer.id.expiration.ms`.
    public var producerStatesExpired = 0
    /// Transactional ids forgotten after `transactional.id.expiration.ms`.
    public var transactionalIdsExpired = 0
    /// Committed offsets of empty groups removed after `offsets.retention.minutes`.
    public var offsetsExpired = 0
    /// Empty groups removed with their last offsets.
    public var groupsRemoved = 0
    /// Aborted-transaction index entries below a log start removed.
    public var abortedIndexEntriesRemoved = 0
    /// Storage write transactions maintenance made.
    public var writes = 0
    /// The longest of them, in milliseconds (how long maintenance held the write lock at once).
    public var longestWriteMs = 0.0
    /// Wall time of the whole round, in milliseconds.
    public var durationMs = 0.0

    public init() {}

    public var description: String {
        "deleted \(recordsDeleted), compacted \(recordsCompacted), producer states expired \(producerStatesExpired), "
            + "transactional ids expired \(transactionalIdsExpired), offsets expired \(offsetsExpired), groups removed \(groupsRemoved), "
            + "aborted index entries removed \(abortedIndexEntriesRemoved); \(writes) writes, longest \(String(format2(longestWriteMs))) ms, "
            + "\(String(format2(durationMs))) ms in all"
    }
}

func format2(_ d: Double) -> String { "\((d * 100).rounded() / 100)" }

/// One round of maintenance: every storage change it makes is a short write transaction of its
/// own (a chunk), sized so that none holds the write lock much longer than `targetWriteMs`,
/// and each chunk re-reads what it changes — so a crash between chunks loses nothing that must
/// survive, producers keep their speed, and two cleaners at once (another process, an explicit
/// `maintain`) only repeat each other's work. Between chunks it pauses (a quarter of the
/// chunk's time, at least a millisecond), so producers waiting for the write lock get it.
final class Maintainer {
    let broker: Broker
    /// The wall clock reading rules compare against (retention, expiry).
    let now: Int64
    var report = MaintenanceReport()

    /// Kinds of chunk, each sized on its own: cutting a log prefix deletes a range at once,
    /// compaction removes records one by one, expiry rewrites metadata entries.
    enum Work { case truncate, remove, keys }
    /// Records (or entries) per chunk of each kind, adapted to the measured write time.
    private var sizes: [Work: Int] = [.truncate: 2_000, .remove: 500, .keys: 500]
    static let targetWriteMs = 25.0

    /// How many records (or entries) the next chunk of `kind` should cover.
    func chunk(_ kind: Work) -> Int { sizes[kind] ?? 500 }

    init(_ broker: Broker) {
        self.broker = broker
        now = broker.clock.wallMs()
    }

    var storage: any StorageBackend { broker.storage }

    /// One chunk of `kind`: a write transaction, timed; that kind's chunk size follows the
    /// time it took; then a pause that lets waiting writers in.
    func write<T>(_ kind: Work, _ body: (any StorageWriter) throws -> T) throws -> T {
        try timed(kind) { try storage.write(body) }
    }

    /// Runs `body` (one storage step that holds the write lock), timed and followed by a pause.
    func timed<T>(_ kind: Work, _ body: () throws -> T) throws -> T {
        try broker.checkOpen()
        let t0 = monoNs()
        let out = try body()
        let ns = monoNs() &- t0
        let ms = Double(ns) / 1e6
        report.writes += 1
        report.longestWriteMs = max(report.longestWriteMs, ms)
        let size = chunk(kind)
        if ms > Self.targetWriteMs { sizes[kind] = max(16, size / 2) } else if ms < Self.targetWriteMs / 4 { sizes[kind] = min(50_000, size * 2) }
        sleepNs(max(1_000_000, ns / 4))
        return out
    }

    /// Runs everything: per partition retention and compaction, then state expiry, then the
    /// storage gives freed space back.
    func run() throws -> MaintenanceReport {
        let t0 = monoNs()
        let topics = try storage.read { r in
            try r.scan(from: Keys.topicPrefix, to: "t0").map { e in
                try TopicMeta.decode(String(e.key.dropFirst(Keys.topicPrefix.count)), e.value)
            }
        }
        for meta in topics {
            let eff = broker.effectiveConfig(meta)
            for p in 0..<meta.partitions {
                let pnum = meta.firstPnum + Int64(p)
                if eff.delete { try retain(pnum, eff) }
                if eff.compact { try compact(pnum, eff, force: true) }
                try dropAbortedIndexBelowLogStart(pnum)
            }
        }
        try expireProducerStates()
        try expireTransactionalIds()
        try expireGroupOffsets()
        while try timed(.keys, { try storage.reclaimSpace() }) {}
        report.durationMs = Double(monoNs() &- t0) / 1e6
        return report
    }
}

extension Broker {
    /// Runs retention, compaction and state expiry now, for every topic, and returns what was
    /// done. The same work runs by itself in the background every
    /// `log.retention.check.interval.ms`. Safe while producers and consumers work: it writes in
    /// short chunks.
    @discardableResult
    public func maintain() throws -> MaintenanceReport {
        try checkOpen()
        return try Maintainer(self).run()
    }

    /// Takes (or renews) the cleaner lease for `holder` until `untilMs`; false when another
    /// holder's lease is still valid. One background cleaner runs at a time across every
    /// process that shares the storage.
    func takeCleanerLease(_ holder: String, untilMs: Int64) throws -> Bool {
        let now = clock.wallMs()
        return try storage.write { w in
            if let b = try w.get(Keys.cleanerLease) {
                var r = BinaryReader(b)
                let who = try r.string(), until = try r.i64()
                if who != holder && until > now { return false }
            }
            var out = BinaryWriter()
            out.string(holder); out.i64(untilMs)
            try w.put(Keys.cleanerLease, out.bytes)
            return true
        }
    }
}

/// A broker handle's background cleaner: a thread that wakes every
/// `log.retention.check.interval.ms` and, holding the cleaner lease, runs maintenance. It holds
/// its broker weakly and ends when the broker closes (`interrupt`).
final class Cleaner: Interruptible, @unchecked Sendable {
    let holder: String

    init(holder: String) { self.holder = holder }

    func start(_ broker: Broker, intervalMs: Int64) {
        weak let weakBroker = broker
        startThread { [self] in
            while pause(ms: Int(clamping: intervalMs)) {
                guard let b = weakBroker, !b.closed else { return }
                let lease = b.clock.wallMs() + max(intervalMs, 60_000)
                if (try? b.takeCleanerLease(holder, untilMs: lease)) == true {
                    _ = try? b.maintain()
                }
            }
        }
    }
}
