/// Records a consumer has read ahead of the application (librdkafka's fetch queue): each fetch
/// copies the records' bytes once, into one buffer, and later polls hand them out from memory
/// without touching storage. Positions never count what is only read ahead.
struct PrefetchQueue: Sendable {
    /// The records of one fetch: copied once into a buffer of the chunk's own, or, where the
    /// backend shows the buffer a record lies in (the memory backend's log), kept as a slice of it.
    struct Chunk: Sendable {
        var records = MessageBatch()
        /// The next record to hand out.
        var next = 0

        var count: Int { records.count - next }

        /// Empties the chunk, keeping its storage.
        mutating func clear() {
            records.removeAll()
            next = 0
        }

        /// Calls `body` once per run of consecutive records of one partition among records
        /// `range` (a dictionary update per run, not per record).
        func forEachRun(_ range: Range<Int>, _ body: (TopicPartition, Int) -> Void) {
            records.forEachRun(range) { tp, run in body(tp, run.count) }
        }

        /// Key, value and header bytes of the chunk's records.
        var bytes: Int { records.byteCount }
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
    /// The last chunk handed out in full, emptied by the next fetch, which writes into it
    /// (memory already mapped) instead of asking malloc for fresh pages on every fetch. The queue
    /// fetches only when empty, so this never holds more than one chunk's worth besides it.
    private var spare = Chunk()

    var isEmpty: Bool { count == 0 }

    /// Records held for `tp`.
    func remaining(_ tp: TopicPartition) -> Int { perPartition[tp] ?? 0 }

    /// How many partitions have records held.
    var partitionCount: Int { perPartition.count }

    /// An empty chunk for the next fetch, with the storage of the last one handed out.
    mutating func freshChunk() -> Chunk {
        var c = Chunk()
        swap(&c, &spare)
        c.clear()
        return c
    }

    mutating func append(_ c: Chunk) {
        guard c.count > 0 else {
            if c.records.isEmpty { spare = c }   // a fetch that found nothing: keep its storage
            return
        }
        chunks.append(c)
        count += c.count
        bytes += c.bytes
        c.forEachRun(c.next..<c.records.count) { tp, n in perPartition[tp, default: 0] += n }
    }

    /// Visits up to `limit` records from the front, in place, without removing them; returns
    /// how many were visited.
    func peek(_ limit: Int, _ body: (TopicPartition, RecordView) throws -> Void) rethrows -> Int {
        var seen = 0
        try peekRuns(limit) { records, range in
            try records.visit(range, segment: { _, _ in }, body)
            seen += range.count
        }
        return seen
    }

    /// Visits up to `limit` records from the front without removing them, a chunk's run at a
    /// time: `body` gets the chunk's records and the run's range in them.
    func peekRuns(_ limit: Int, _ body: (MessageBatch, Range<Int>) throws -> Void) rethrows {
        var seen = 0
        var ci = head
        // The chunk is read in place (`chunks[ci]…`, not a copy of it: a copy retains and
        // releases its arrays on every poll).
        while seen < limit && ci < chunks.count {
            let first = chunks[ci].next
            let n = Swift.min(limit - seen, chunks[ci].count)
            try body(chunks[ci].records, first..<first + n)
            seen += n
            ci += 1
        }
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
            chunks[head].forEachRun(first..<first + take) { tp, k in
                // One lookup per run; a partition's entry goes when its last record does.
                if let at = perPartition.index(forKey: tp) {
                    if perPartition.values[at] <= k {
                        emptied.append(perPartition.remove(at: at).key)
                    } else {
                        perPartition.values[at] -= k
                    }
                }
            }
            chunks[head].next += take
            count -= take
            left -= take
            if chunks[head].count == 0 {
                bytes -= chunks[head].bytes
                // Emptied when the next fetch takes it: a result sharing its buffer
                // (`pollMessages`) has usually been let go by then, and the storage is reused.
                spare = Chunk()
                swap(&spare, &chunks[head])
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
            c.records.visit(c.next..<c.records.count, segment: { kept.records.share($0, $1) }) { tp, view in
                if !tps.contains(tp) { kept.records.append(tp, view) }
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
