/// Records a consumer has read ahead of the application (librdkafka's fetch queue): each fetch
/// copies the records' bytes once, into one buffer, and later polls hand them out from memory
/// without touching storage. Positions never count what is only read ahead.
struct PrefetchQueue: Sendable {
    /// The records of one fetch.
    struct Chunk: Sendable {
        var batch = RecordBatch()
        /// The partitions its records come from.
        var partitions: [TopicPartition] = []
        /// Per record: the index of its partition in `partitions`, and its offset.
        var owner: [Int32] = []
        var offsets: [Int64] = []
        /// The next record to hand out.
        var next = 0

        var count: Int { owner.count - next }

        /// Adds a record seen in storage (copied).
        mutating func append(_ partitionIndex: Int, _ r: RecordView) {
            batch.append(timestampMs: r.timestampMs, key: r.key, value: r.value, headers: r.headers.map { Array($0) })
            owner.append(Int32(partitionIndex))
            offsets.append(r.offset)
        }
    }

    private var chunks: [Chunk] = []
    private var head = 0
    /// Records held.
    private(set) var count = 0
    /// Bytes held (key + value + headers).
    private(set) var bytes = 0
    /// Records held per partition.
    private var perPartition: [TopicPartition: Int] = [:]
    /// How many records at the front are lent out (`Consumer.lend`): made into results the
    /// caller may hand out, not yet returned. Any change to the front takes them back (0).
    var lent = 0

    var isEmpty: Bool { count == 0 }

    /// Records held for `tp`.
    func remaining(_ tp: TopicPartition) -> Int { perPartition[tp] ?? 0 }

    /// How many partitions have records held.
    var partitionCount: Int { perPartition.count }

    mutating func append(_ c: Chunk) {
        guard c.count > 0 else { return }
        chunks.append(c)
        count += c.count
        bytes += c.batch.buffer.count
        for i in c.next..<c.owner.count { perPartition[c.partitions[Int(c.owner[i])], default: 0] += 1 }
    }

    /// Visits up to `limit` records from the front, in place, without removing them; returns
    /// how many were visited.
    func peek(_ limit: Int, _ body: (TopicPartition, RecordView) throws -> Void) rethrows -> Int {
        var seen = 0
        var ci = head
        // The chunk is read in place (`chunks[ci]…`, not a copy of it: a copy retains and
        // releases its four arrays on every poll).
        while seen < limit && ci < chunks.count {
            try chunks[ci].batch.buffer.withUnsafeBytes { buf in
                var i = chunks[ci].next
                while i < chunks[ci].owner.count && seen < limit {
                    try body(chunks[ci].partitions[Int(chunks[ci].owner[i])], chunks[ci].batch.view(i, buf, offset: chunks[ci].offsets[i]))
                    seen += 1
                    i += 1
                }
            }
            ci += 1
        }
        return seen
    }

    /// Removes the first `n` records; returns the partitions of which nothing is left now.
    @discardableResult
    mutating func removeFirst(_ n: Int) -> [TopicPartition] {
        lent = 0
        var emptied: [TopicPartition] = []
        var left = n
        while left > 0 && head < chunks.count {
            let take = min(left, chunks[head].count)
            let first = chunks[head].next
            for i in first..<first + take {
                // One lookup per record; a partition's entry goes when its last record does.
                if let at = perPartition.index(forKey: chunks[head].partitions[Int(chunks[head].owner[i])]) {
                    if perPartition.values[at] <= 1 {
                        emptied.append(perPartition.remove(at: at).key)
                    } else {
                        perPartition.values[at] -= 1
                    }
                }
            }
            chunks[head].next += take
            count -= take
            left -= take
            if chunks[head].count == 0 {
                bytes -= chunks[head].batch.buffer.count
                chunks[head] = Chunk()
                head += 1
            }
        }
        if head == chunks.count { chunks.removeAll(keepingCapacity: true); head = 0 }
        return emptied
    }

    /// Drops every record of `tps` (a seek, or partitions the group took away).
    mutating func drop(_ tps: Set<TopicPartition>) {
        guard !tps.isEmpty, tps.contains(where: { remaining($0) > 0 }) else { return }
        let old = chunks[head...]
        removeAll()
        for c in old {
            var kept = Chunk()
            kept.partitions = c.partitions
            for i in c.next..<c.owner.count where !tps.contains(c.partitions[Int(c.owner[i])]) {
                kept.batch.append(copyOf: i, from: c.batch)
                kept.owner.append(c.owner[i])
                kept.offsets.append(c.offsets[i])
            }
            append(kept)
        }
    }

    mutating func removeAll() {
        chunks = []
        head = 0
        count = 0
        bytes = 0
        perPartition = [:]
        lent = 0
    }
}

extension RecordBatch {
    /// Record `i` seen in place at `offset` (`buf` is this batch's buffer, valid during the call).
    func view(_ i: Int, _ buf: UnsafeRawBufferPointer, offset: Int64) -> RecordView {
        let e = entries[i]
        func part(_ start: Int, _ len: Int32) -> UnsafeRawBufferPointer? {
            len < 0 ? nil : UnsafeRawBufferPointer(rebasing: buf[start ..< start + Int(len)])
        }
        return RecordView(offset: offset, txn: 0, timestampMs: e.timestampMs, key: part(e.start, e.keyLen),
                          value: part(e.valueStart, e.valueLen), headers: part(e.headersStart, e.headersLen))
    }
}

/// A set of partitions that remembers the last one inserted: a consumer's every poll marks the
/// partitions it returned from, and for a consumer reading one partition inserting it again
/// then costs a comparison instead of a hash. Every change but an insertion forgets it.
struct PartitionSet: Sendable, Sequence, ExpressibleByArrayLiteral {
    private(set) var members: Set<TopicPartition> = []
    private var last: TopicPartition?

    init(arrayLiteral elements: TopicPartition...) { members = Set(elements) }

    var isEmpty: Bool { members.isEmpty }
    func contains(_ tp: TopicPartition) -> Bool { members.contains(tp) }
    func makeIterator() -> Set<TopicPartition>.Iterator { members.makeIterator() }

    mutating func insert(_ tp: TopicPartition) {
        if last == tp { return }
        members.insert(tp)
        last = tp
    }

    mutating func formUnion(_ other: some Sequence<TopicPartition>) { members.formUnion(other) }

    @discardableResult
    mutating func remove(_ tp: TopicPartition) -> TopicPartition? {
        last = nil
        return members.remove(tp)
    }
}
