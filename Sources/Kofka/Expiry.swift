/// State that would otherwise grow with every producer and group ever seen, removed once idle:
///
/// * a producer's idempotence state on a partition, unused for `producer.id.expiration.ms`
///   (kept while its transaction is open). A producer that comes back later is refused once
///   (its sequence is unknown) and starts a new epoch, as with Kafka's UNKNOWN_PRODUCER_ID;
/// * a transactional.id unused for `transactional.id.expiration.ms` (and with no open
///   transaction): its producer id, epoch and sequence state go; reusing the id starts cleanly;
/// * committed offsets of a group that has had no live member for `offsets.retention.minutes`
///   (each offset also at least that long after its commit); the group goes with its last offset.
///
/// State written before these timestamps existed is stamped with the time of the first
/// maintenance that sees it, and expires from there.
extension Maintainer {
    func expireProducerStates() throws {
        let cutoff = now - broker.config.producerIdExpirationMs
        let rows = try storage.read { r in try r.scan(from: Keys.sequencePrefix, to: "s0") }
        var expired: [String] = [], unstamped: [String] = []
        for e in rows {
            let s = try SequenceState.decode(e.value)
            if s.lastWriteMs == 0 { unstamped.append(e.key) } else if s.lastWriteMs < cutoff { expired.append(e.key) }
        }
        for part in unstamped.chunked(chunk(.keys)) {
            try write(.keys) { w in
                for k in part {
                    guard var s = try w.get(k).map(SequenceState.decode), s.lastWriteMs == 0 else { continue }
                    s.lastWriteMs = now
                    try w.put(k, s.encode())
                }
            }
        }
        for part in expired.chunked(chunk(.keys)) {
            report.producerStatesExpired += try write(.keys) { w -> Int in
                var n = 0
                for k in part {
                    // re-check inside the write: the producer may have written since
                    guard let s = try w.get(k).map(SequenceState.decode), s.lastWriteMs != 0, s.lastWriteMs < cutoff else { continue }
                    let pid = Int64(k.split(separator: "/")[1], radix: 16) ?? -1
                    if let ps = try w.get(Keys.producer(pid)).map(ProducerState.decode), ps.openTxn != 0 { continue }
                    try w.delete(k)
                    n += 1
                }
                return n
            }
        }
    }

    func expireTransactionalIds() throws {
        let cutoff = now - broker.config.transactionalIdExpirationMs
        let ids = try storage.read { r in try r.scan(from: Keys.transactionalIdPrefix, to: "tid0") }
        for part in ids.chunked(max(1, chunk(.keys) / 8)) {
            report.transactionalIdsExpired += try write(.keys) { w -> Int in
                var n = 0
                for e in part {
                    guard let pid = try w.getInt64(e.key) else { continue }
                    guard var ps = try w.get(Keys.producer(pid)).map(ProducerState.decode) else {
                        try w.delete(e.key)   // a mapping to nothing
                        continue
                    }
                    guard ps.openTxn == 0 else { continue }
                    if ps.lastUsedMs == 0 {
                        ps.lastUsedMs = now
                        try w.put(Keys.producer(pid), ps.encode())
                        continue
                    }
                    guard ps.lastUsedMs < cutoff else { continue }
                    let (lo, hi) = Keys.sequenceRange(pid)
                    for s in try w.scan(from: lo, to: hi) { try w.delete(s.key) }
                    try w.delete(Keys.producer(pid))
                    try w.delete(Keys.txnDeadline(pid))
                    try w.delete(e.key)
                    n += 1
                }
                return n
            }
        }
    }

    func expireGroupOffsets() throws {
        let cutoff = now - broker.config.offsetsRetentionMinutes * 60_000
        let (groups, offsets) = try storage.read { r in
            (try r.scan(from: Keys.groupPrefix, to: "g0"), try r.scan(from: Keys.offsetPrefix, to: "c0"))
        }
        var byGroup: [String: [(key: String, value: [UInt8])]] = [:]
        for e in offsets {
            guard let g = e.key.dropFirst(2).split(separator: "\u{1}", omittingEmptySubsequences: false).first else { continue }
            byGroup[String(g), default: []].append(e)
        }
        let states = Dictionary(uniqueKeysWithValues: try groups.map { (String($0.key.dropFirst(2)), try GroupState.decode($0.value)) })
        for name in Set(byGroup.keys).union(states.keys) {
            // Since when the group has had no live member (nil: it has one now).
            var emptySince: Int64 = 0
            if let gs = states[name] {
                if gs.members.isEmpty {
                    emptySince = gs.emptySinceMs == 0 ? now : gs.emptySinceMs   // 0: not known yet, stamped below
                } else {
                    let lastAlive = gs.members.map { $0.lastHeartbeatMs + Int64($0.sessionTimeoutMs) }.max() ?? 0
                    if lastAlive >= now { continue }
                    emptySince = lastAlive
                }
            }
            try expireGroup(name, offsets: byGroup[name] ?? [], emptySince: emptySince, cutoff: cutoff)
        }
    }

    private func expireGroup(_ name: String, offsets: [(key: String, value: [UInt8])], emptySince: Int64, cutoff: Int64) throws {
        for part in offsets.chunked(chunk(.keys)) {
            report.offsetsExpired += try write(.keys) { w -> Int in
                var n = 0
                for e in part {
                    guard let b = try w.get(e.key) else { continue }
                    var r = BinaryReader(b)
                    let off = try r.i64()
                    let committedMs = r.atEnd ? 0 : try r.i64()
                    if committedMs == 0 {   // written before commit times were kept
                        try w.putCommittedOffset(e.key, off, now: now)
                        continue
                    }
                    guard max(emptySince, committedMs) < cutoff else { continue }
                    try w.delete(e.key)
                    n += 1
                }
                return n
            }
        }
        report.groupsRemoved += try write(.keys) { w -> Int in
            guard let b = try w.get(Keys.group(name)) else { return 0 }
            var gs = try GroupState.decode(b)
            if gs.members.isEmpty && gs.emptySinceMs == 0 {   // empty since before the time was kept
                gs.emptySinceMs = now
                try w.put(Keys.group(name), gs.encode())
                return 0
            }
            let (lo, hi) = Keys.offsetRange(name)
            guard gs.members.isEmpty, gs.emptySinceMs < cutoff, try w.scan(from: lo, to: hi).isEmpty else { return 0 }
            try w.delete(Keys.group(name))
            return 1
        }
    }
}
