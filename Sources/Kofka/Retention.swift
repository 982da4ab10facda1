/// Retention (Kafka's `cleanup.policy=delete`): by time (`retention.ms`, judged by record
/// timestamps as Kafka judges a segment by its largest: the log start moves up to the first
/// record not older than the limit) and by size (`retention.bytes` per partition: the oldest
/// records go until the partition holds no more), and DeleteRecords. Each moves the persisted
/// log start offset; records below it are deleted by the backend. Retention never passes the
/// last stable offset, so an open transaction keeps its records.
extension Maintainer {
    /// Applies `retention.ms` and `retention.bytes` to partition `pnum`.
    func retain(_ pnum: Int64, _ eff: EffectiveTopicConfig) throws {
        if eff.retentionMs >= 0 {
            let cutoff = now - eff.retentionMs
            try deletePrefix(pnum) { r in r.timestampMs >= cutoff }
        }
        if eff.retentionBytes >= 0 {
            var excess = try storage.read { try $0.logBytes(pnum) } - eff.retentionBytes
            guard excess > 0 else { return }
            try deletePrefix(pnum) { r in
                if excess <= 0 { return true }
                excess -= Int64((r.key?.count ?? 0) + (r.value?.count ?? 0) + (r.headers?.count ?? 0))
                return false
            }
        }
    }

    /// Deletes records from the log start, in chunks, up to the first record `keep` says to
    /// keep, or up to the last stable offset. `keep` sees records in order, once each.
    private func deletePrefix(_ pnum: Int64, keep: (RecordView) -> Bool) throws {
        while true {
            // Read a chunk (no write lock held), then delete what it allows in one short write.
            let want = chunk(.truncate)
            let (start, target, done) = try storage.read { r -> (Int64, Int64, Bool) in
                let start = try r.logStartOffset(pnum)
                let lso = try Transactions.lastStableOffset(r, pnum, hw: try r.highWatermark(pnum))
                var target = start
                var kept = false
                let seen = try r.forEachRecord(pnum, from: start, below: lso, maxCount: want) { rec in
                    guard !kept else { return }
                    if keep(rec) { kept = true; target = rec.offset } else { target = rec.offset + 1 }
                }
                if kept { return (start, target, true) }
                if seen < want { return (start, lso, true) }   // everything below the last stable offset goes
                return (start, target, false)
            }
            if target > start {
                report.recordsDeleted += Int(try write(.truncate) { w -> Int64 in
                    let before = try w.logStartOffset(pnum)
                    return try w.truncateLog(pnum, before: target) - before
                })
            }
            if done || target <= start { return }
        }
    }

    /// Removes aborted-transaction index entries that end below the log start.
    func dropAbortedIndexBelowLogStart(_ pnum: Int64) throws {
        let keys = try storage.read { r -> [String] in
            let start = try r.logStartOffset(pnum)
            let (lo, hi) = Keys.abortedBelow(pnum, start)
            return try r.scan(from: lo, to: hi).map(\.key)
        }
        for part in keys.chunked(chunk(.keys)) {
            try write(.keys) { w in for k in part { try w.delete(k) } }
            report.abortedIndexEntriesRemoved += part.count
        }
    }
}

extension Broker {
    /// Kafka's DeleteRecords: every record of the partition below `offset` goes (`-1` = the
    /// high watermark); returns the new log start offset (low watermark). An offset at or below
    /// the log start changes nothing; one above the high watermark is `.offsetOutOfRange`.
    /// Deletes in chunks of short write transactions.
    @discardableResult
    public func deleteRecords(_ topic: String, _ partition: Int32, before offset: Int64) throws -> Int64 {
        try checkOpen()
        let meta = try topicMeta(topic)
        let pnum = try pnum(meta, partition)
        let hw = try storage.read { try $0.highWatermark(pnum) }
        let target = offset == -1 ? hw : offset
        guard target >= 0 && target <= hw else {
            throw KofkaError(.offsetOutOfRange, "cannot delete records of \(topic)[\(partition)] below offset \(offset): valid offsets are 0...\(hw) (or -1 for the high watermark)")
        }
        let m = Maintainer(self)
        while true {
            let step = Int64(m.chunk(.truncate))
            let start = try m.write(.truncate) { w -> Int64 in
                let start = try w.logStartOffset(pnum)
                guard start < target else { return start }
                return try w.truncateLog(pnum, before: min(target, start + step))
            }
            if start >= target { return start }
        }
    }
}

extension Array {
    /// The array in consecutive slices of at most `n` elements.
    func chunked(_ n: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: Swift.max(1, n)).map { self[$0 ..< Swift.min(count, $0 + Swift.max(1, n))] }
    }
}
