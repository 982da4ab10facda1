/// Records a consumer has read ahead of the application (librdkafka's fetch queue): each fetch
/// copies the records' bytes once, into one buffer, and later polls hand them out from memory
/// without touching storage. Positions never count what is only read ahead.
struct PrefetchQueue: Sendable {
    /// The records of one fetch: copied once into a buffer of the chunk's own, or, where the
    /// backend shows the buffer a record lies in (the memory backend's log), kept as a slice of it.
    struct Chunk: Sendable {
        var records = RecordSet()
        /// The next record to hand out.
        var next = 0

        var count: Int { records.count - next }

        /// Empties the chunk, keeping its storage.
        mutating func clear() {
            records.removeAll()
            next = 0
        }

        /// Key, value and header bytes of the chunk's records.
        var bytes: Int { records.byteCount }
    }

    /// The records held: a fetch happens only when the queue is empty, so one chunk (a drop
    /// keeps what it keeps in one). Kept as a stored property, not in an array, so a poll
    /// reads and changes it in place instead of copying it (and its arrays' references) out.
    private var chunk = Chunk()
    /// Records held.
    var count: Int { chunk.count }
    /// Bytes held (key + value + headers of the chunk, handed out or not).
    var bytes: Int { chunk.bytes }
    /// Records held per partition, by the partition's index in the chunk (`records.partitions`,
    /// one entry per partition): a hand-out counts down without hashing a partition.
    private var held: [Int] = []
    /// How many partitions have records held.
    private(set) var partitionCount = 0
    /// How many records at the front are lent out (`Consumer.lend`): made into results the
    /// caller may hand out, not yet returned. Any change to the front takes them back (0).
    var lent = 0
    /// The last chunk handed out in full, emptied by the next fetch, which writes into it
    /// (memory already mapped) instead of asking malloc for fresh pages on every fetch.
    private var spare = Chunk()

    var isEmpty: Bool { count == 0 }

    /// Records held for `tp`.
    func remaining(_ tp: TopicPartition) -> Int {
        guard let i = chunk.records.partitions.firstIndex(of: tp), i < held.count else { return 0 }
        return held[i]
    }

    /// Counts the records held per partition afresh (after the chunk changed as a whole).
    private mutating func recount() {
        var counts = [Int](repeating: 0, count: chunk.records.partitions.count)
        chunk.records.forEachRunIndex(chunk.next..<chunk.records.count) { counts[Int($0)] += $1.count }
        held = counts
        partitionCount = held.reduce(0) { $0 + ($1 > 0 ? 1 : 0) }
    }

    /// An empty chunk for the next fetch, with the storage of the last one handed out.
    mutating func freshChunk() -> Chunk {
        var c = Chunk()
        swap(&c, &spare)
        c.clear()
        return c
    }

    /// Adds the records of `c` not yet handed out behind those held.
    mutating func append(_ c: Chunk) {
        guard c.count > 0 else {
            if c.records.isEmpty { spare = c }   // a fetch that found nothing: keep its storage
            return
        }
        if isEmpty {
            if chunk.records.count > 0 { spare = chunk }
            chunk = c
        } else {
            chunk.records.append(contentsOf: c.records, c.next..<c.records.count)
        }
        recount()
    }

    /// Visits up to `limit` records from the front, in place, without removing them; returns
    /// how many were visited.
    func peek(_ limit: Int, _ body: (TopicPartition, RecordView) throws -> Void) rethrows -> Int {
        let n = Swift.min(limit, count)
        guard n > 0 else { return 0 }
        try chunk.records.visit(chunk.next..<chunk.next + n, segment: { _, _ in }, body)
        return n
    }

    /// Visits up to `limit` records from the front without removing them: `body` gets the
    /// chunk's records and the range of them (none when nothing is held).
    func peekRuns(_ limit: Int, _ body: (RecordSet, Range<Int>) throws -> Void) rethrows {
        let n = Swift.min(limit, count)
        guard n > 0 else { return }
        try body(chunk.records, chunk.next..<chunk.next + n)
    }

    /// Removes the first `n` records; returns the partitions of which nothing is left now.
    @discardableResult
    mutating func removeFirst(_ n: Int) -> [TopicPartition] {
        lent = 0
        let take = Swift.min(n, count)
        guard take > 0 else { return [] }
        var emptied: [TopicPartition] = []
        let first = chunk.next
        // A run of one partition at a time (a read-ahead holds long runs).
        chunk.records.forEachRunIndex(first..<first + take) { p, run in
            let i = Int(p)
            held[i] -= run.count
            if held[i] == 0 {
                emptied.append(chunk.records.partitions[i])
                partitionCount -= 1
            }
        }
        chunk.next += take
        if chunk.count == 0 {
            // Emptied when the next fetch takes it: a result sharing its buffers
            // (`pollMessages`) has usually been let go by then, and the storage is reused.
            spare = Chunk()
            swap(&spare, &chunk)
            held.removeAll(keepingCapacity: true)
        }
        return emptied
    }

    /// Drops every record of `tps` (a seek, or partitions the group took away).
    mutating func drop(_ tps: Set<TopicPartition>) {
        guard !tps.isEmpty, tps.contains(where: { remaining($0) > 0 }) else { return }
        let old = chunk
        removeAll()
        var kept = Chunk()
        old.records.visit(old.next..<old.records.count, segment: { kept.records.share($0, $1) }) { tp, view in
            if !tps.contains(tp) { kept.records.append(tp, view) }
        }
        append(kept)
    }

    mutating func removeAll() {
        chunk = Chunk()
        held = []
        partitionCount = 0
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

/// A consumer's positions: a dictionary that holds the last partition written aside, so a poll
/// loop moving one partition's position per record compares instead of hashing. A write to
/// another partition puts the held one into the dictionary first.
struct PositionMap: Sendable, ExpressibleByDictionaryLiteral {
    private var map: [TopicPartition: Int64] = [:]
    /// The last partition written and its position (`map` may hold an older one for it).
    private var last: (tp: TopicPartition, value: Int64)?

    init(dictionaryLiteral elements: (TopicPartition, Int64)...) {
        map = Dictionary(elements, uniquingKeysWith: { _, b in b })
    }

    init(_ positions: [TopicPartition: Int64]) { map = positions }

    subscript(tp: TopicPartition) -> Int64? {
        get {
            if let last, last.tp == tp { return last.value }
            return map[tp]
        }
        set {
            if let held = last, held.tp != tp { map[held.tp] = held.value }
            if let value = newValue {
                last = (tp, value)
            } else {
                last = nil
                map[tp] = nil
            }
        }
    }
}

