/// Compaction (Kafka's `cleanup.policy=compact`, the `LogCleaner` rules): the latest record per
/// key survives and keeps its offset (gaps appear; readers skip them). Only the cleanable part
/// of a log is touched: below the last stable offset, older than `min.compaction.lag.ms`, and
/// never the last record of the log. Tombstones (a key with no value) disappear once older than
/// `delete.retention.ms`; records of aborted transactions are removed. Idempotence is
/// unaffected: a producer's sequence state lives apart from the log.
///
/// Like Kafka's cleaner, a pass builds a map of the latest offset per key over the *dirty*
/// part (written since the last pass), then removes, from the log start to the end of that
/// part, every record whose key has a later offset in the map. The map holds at most
/// `maxKeys` keys; a larger dirty part is cleaned over several passes.
extension Maintainer {
    static let maxKeys = 1_000_000

    /// Compacts partition `pnum`. Without `force`, only when at least half of the cleanable log
    /// is dirty (`min.cleanable.dirty.ratio` 0.5).
    func compact(_ pnum: Int64, _ eff: EffectiveTopicConfig, force: Bool) throws {
        let lagCutoff = now - eff.minCompactionLagMs
        let tombstoneCutoff = now - eff.deleteRetentionMs
        let (start, firstDirty, limit, aborted) = try storage.read { r -> (Int64, Int64, Int64, Set<Int64>) in
            let start = try r.logStartOffset(pnum)
            let hw = try r.highWatermark(pnum)
            let lso = try Transactions.lastStableOffset(r, pnum, hw: hw)
            let dirty = max(start, try r.getInt64(Keys.cleanedUpTo(pnum)) ?? start)
            var aborted: Set<Int64> = []
            let (lo, hi) = Keys.abortedRange(pnum, from: start)
            for e in try r.scan(from: lo, to: hi) {
                if let t = e.key.split(separator: "/").last, let txn = Int64(t, radix: 16) { aborted.insert(txn) }
            }
            return (start, dirty, min(lso, hw - 1), aborted)
        }
        guard limit > firstDirty else { return }
        if !force && (limit - firstDirty) < (firstDirty - start) { return }

        // The latest offset of every key in the dirty part (up to the lag limit and map size).
        var latest: [[UInt8]: Int64] = [:]
        var end = firstDirty
        var from = firstDirty
        scan: while from < limit {
            var last: Int64 = -1
            var stop = false
            let want = chunk(.truncate)
            let seen = try storage.read { r in
                try r.forEachRecord(pnum, from: from, below: limit, maxCount: want) { rec in
                    guard !stop else { return }
                    if rec.timestampMs > lagCutoff || latest.count >= Self.maxKeys { stop = true; return }
                    if let k = rec.key, !(rec.txn != 0 && aborted.contains(rec.txn)) { latest[Array(k)] = rec.offset }
                    last = rec.offset
                }
            }
            if last >= 0 { end = last + 1; from = last + 1 }
            if stop || seen < want { if !stop { end = limit }; break scan }
        }
        guard end > start else { return }

        // Remove what is superseded, expired or aborted, chunk by chunk, from the log start.
        from = start
        while from < end {
            var doomed: [Int64] = []
            var last: Int64 = -1
            // Read records (no lock held) until a chunk's worth of removals or of records seen.
            let want = chunk(.remove)
            let seen = try storage.read { r in
                try r.forEachRecord(pnum, from: from, below: end, maxCount: want * 8) { rec in
                    guard doomed.count < want else { return }
                    last = rec.offset
                    if rec.txn != 0 && aborted.contains(rec.txn) { doomed.append(rec.offset); return }
                    guard let k = rec.key else { return }
                    let newest = latest[Array(k)]
                    if let n = newest, n > rec.offset { doomed.append(rec.offset); return }
                    if rec.value == nil && rec.timestampMs < tombstoneCutoff { doomed.append(rec.offset) }
                }
            }
            if !doomed.isEmpty {
                try write(.remove) { w in try w.removeRecords(pnum, at: doomed) }
                report.recordsCompacted += doomed.count
            }
            if seen < want * 8 && doomed.count < want || last < 0 { break }
            from = last + 1
        }
        try write(.keys) { w in
            if (try w.getInt64(Keys.cleanedUpTo(pnum)) ?? 0) < end { try w.putInt64(Keys.cleanedUpTo(pnum), end) }
        }
    }
}
