/// Everything Kofka keeps in storage besides the records themselves, in one place.
///
/// Each value lives under a key of the storage's key/value map (`Keys` below) and is encoded
/// with `BinaryWriter`. All of it is written only inside `StorageBackend.write`, so every rule
/// that spans several values (an append and its sequence state; a commit and its offsets) is atomic.

/// Keys of the key/value map. Numbers are fixed-width hex so that keys sort numerically.
enum Keys {
    /// Next partition number to hand out (`Int64`).
    static let nextPnum = "m/next_pnum"
    /// Next producer id to hand out (`Int64`).
    static let nextProducerId = "m/next_pid"
    /// Next transaction number to hand out (`Int64`).
    static let nextTxn = "m/next_txn"
    /// A topic → `TopicMeta`.
    static func topic(_ name: String) -> String { "t/" + name }
    static let topicPrefix = "t/"
    /// A transactional.id → its producer id (`Int64`).
    static func transactionalId(_ id: String) -> String { "tid/" + id }
    /// A producer id → `ProducerState`.
    static func producer(_ pid: Int64) -> String { "p/" + pid.hex16 }
    /// (producer id, partition) → `SequenceState`.
    static func sequence(_ pid: Int64, _ pnum: Int64) -> String { "s/" + pid.hex16 + "/" + pnum.hex16 }
    /// (partition, txn) → first offset of an open transaction in that partition (`Int64`).
    static func openTxn(_ pnum: Int64, _ txn: Int64) -> String { "o/" + pnum.hex16 + "/" + txn.hex16 }
    static func openTxnRange(_ pnum: Int64) -> (String, String) { ("o/" + pnum.hex16 + "/", "o/" + pnum.hex16 + "0") }
    /// (partition, last offset, txn) → first offset of an aborted transaction (`Int64`).
    static func abortedTxn(_ pnum: Int64, last: Int64, _ txn: Int64) -> String { "a/" + pnum.hex16 + "/" + last.hex16 + "/" + txn.hex16 }
    /// Aborted transactions of a partition whose last offset is >= `from`.
    static func abortedRange(_ pnum: Int64, from: Int64) -> (String, String) { ("a/" + pnum.hex16 + "/" + from.hex16, "a/" + pnum.hex16 + "0") }
    /// producer id → deadline (ms) of its open transaction (`Int64`).
    static func txnDeadline(_ pid: Int64) -> String { "x/" + pid.hex16 }
    static let txnDeadlineRange = ("x/", "x0")
    /// A group → `GroupState`.
    static func group(_ g: String) -> String { "g/" + g }
    static let groupPrefix = "g/"
    /// (group, topic, partition) → committed offset (`Int64`).
    static func offset(_ g: String, _ tp: TopicPartition) -> String { "c/" + g + "\u{1}" + tp.topic + "\u{1}" + Int64(tp.partition).hex16 }
    static func offsetRange(_ g: String) -> (String, String) { ("c/" + g + "\u{1}", "c/" + g + "\u{2}") }
    static let offsetPrefix = "c/"
    /// Partition → the offset compaction has cleaned up to (its first dirty offset, `Int64`).
    static func cleanedUpTo(_ pnum: Int64) -> String { "k/" + pnum.hex16 }
    /// The background cleaner's lease: (holder, expiry in wall ms), so one cleaner runs at a time.
    static let cleanerLease = "m/cleaner"
    static let sequencePrefix = "s/"
    static func sequenceRange(_ pid: Int64) -> (String, String) { ("s/" + pid.hex16 + "/", "s/" + pid.hex16 + "0") }
    static let transactionalIdPrefix = "tid/"
    /// Aborted transactions of a partition whose last offset is below `below`.
    static func abortedBelow(_ pnum: Int64, _ below: Int64) -> (String, String) { ("a/" + pnum.hex16 + "/", "a/" + pnum.hex16 + "/" + below.hex16) }
    /// (group, topic, partition) → producer id with offsets pending in an open transaction (`Int64`).
    static func pendingOffset(_ g: String, _ tp: TopicPartition) -> String { "w/" + g + "\u{1}" + tp.topic + "\u{1}" + Int64(tp.partition).hex16 }
}

/// A topic: its partitions are numbered `firstPnum ..< firstPnum + partitions` in storage, and
/// its own configuration (keys not set take the broker's defaults).
struct TopicMeta: Sendable, Hashable {
    var name: String
    /// Partition count.
    var partitions: Int32
    /// Storage partition number of partition 0.
    var firstPnum: Int64
    /// Settings made for this topic (appended to the first layout: older blobs have none).
    var config = TopicConfig()

    func encode() -> [UInt8] {
        var w = BinaryWriter()
        w.i32(partitions); w.i64(firstPnum)
        config.encode(into: &w)
        return w.bytes
    }

    static func decode(_ name: String, _ b: [UInt8]) throws -> TopicMeta {
        var r = BinaryReader(b)
        var t = TopicMeta(name: name, partitions: try r.i32(), firstPnum: try r.i64())
        if !r.atEnd { t.config = try TopicConfig.decode(&r) }
        return t
    }
}

/// A producer id's state: its epoch and, for a transactional producer, its open transaction.
struct ProducerState: Sendable {
    /// Bumped by every `init_transactions`; older epochs are fenced.
    var epoch: Int32 = 0
    /// The transactional.id, or "" for a plain idempotent producer.
    var transactionalId = ""
    /// The open transaction's number, 0 when none.
    var openTxn: Int64 = 0
    /// When the open transaction started (ms since the epoch).
    var txnStartMs: Int64 = 0
    /// Partitions written by the open transaction.
    var txnPartitions: [Int64] = []
    /// Offsets sent to the open transaction: (group, topic, partition, offset).
    var txnOffsets: [PendingOffset] = []
    /// The last transaction that ended without its producer asking (timed out / fenced), and why.
    var lastForcedAbortTxn: Int64 = 0
    var lastForcedAbortReason: Int32 = 0   // ErrorCode raw value
    /// When the transactional.id was last used (ms since the epoch; 0 = not known yet, in a
    /// blob written before this field existed). `transactional.id.expiration.ms` counts from it.
    var lastUsedMs: Int64 = 0
    /// The last transaction that committed (0 = none known; blobs written before this field
    /// have none). A commit retried after an unknown outcome, or an abort that comes after a
    /// commit that did take effect, is told from it.
    var lastCommittedTxn: Int64 = 0

    struct PendingOffset: Sendable, Hashable {
        var group: String
        var tp: TopicPartition
        var offset: Int64
    }

    func encode() -> [UInt8] {
        var w = BinaryWriter()
        w.i32(epoch); w.string(transactionalId); w.i64(openTxn); w.i64(txnStartMs)
        w.i32(Int32(txnPartitions.count)); for p in txnPartitions { w.i64(p) }
        w.i32(Int32(txnOffsets.count))
        for o in txnOffsets { w.string(o.group); w.string(o.tp.topic); w.i32(o.tp.partition); w.i64(o.offset) }
        w.i64(lastForcedAbortTxn); w.i32(lastForcedAbortReason)
        w.i64(lastUsedMs)
        w.i64(lastCommittedTxn)
        return w.bytes
    }

    static func decode(_ b: [UInt8]) throws -> ProducerState {
        var r = BinaryReader(b)
        var s = ProducerState()
        s.epoch = try r.i32(); s.transactionalId = try r.string(); s.openTxn = try r.i64(); s.txnStartMs = try r.i64()
        let np = try r.i32()
        s.txnPartitions = try (0..<max(0, np)).map { _ in try r.i64() }
        let no = try r.i32()
        s.txnOffsets = try (0..<max(0, no)).map { _ in
            PendingOffset(group: try r.string(), tp: TopicPartition(try r.string(), try r.i32()), offset: try r.i64())
        }
        s.lastForcedAbortTxn = try r.i64(); s.lastForcedAbortReason = try r.i32()
        if !r.atEnd { s.lastUsedMs = try r.i64() }
        if !r.atEnd { s.lastCommittedTxn = try r.i64() }
        return s
    }
}

/// Idempotence state of one producer on one partition: the epoch, the next expected sequence,
/// and the last five batches written (so a retry of any of them is acknowledged again with its
/// original offsets, as Kafka does). A batch remembers the transaction it was written in: a
/// retry matches it only from that same transaction, so a batch of an aborted transaction can
/// never acknowledge a new one.
struct SequenceState: Sendable {
    var epoch: Int32
    /// The sequence number the next new batch must start with.
    var nextSeq: Int32
    /// The last (at most five) batches: first sequence, record count, first offset, transaction.
    var batches: [Batch]
    /// When this producer last wrote to the partition (ms since the epoch; 0 = not known yet).
    /// `producer.id.expiration.ms` counts from it.
    var lastWriteMs: Int64 = 0

    struct Batch: Sendable, Hashable {
        var baseSeq: Int32
        var count: Int32
        var baseOffset: Int64
        /// The transaction that wrote it (0 = none).
        var txn: Int64 = 0
    }

    static let window = 5

    func encode() -> [UInt8] {
        var w = BinaryWriter()
        w.i32(epoch); w.i32(nextSeq); w.i32(Int32(batches.count))
        for b in batches { w.i32(b.baseSeq); w.i32(b.count); w.i64(b.baseOffset) }
        for b in batches { w.i64(b.txn) }   // appended after the first layout: older blobs end before it
        w.i64(lastWriteMs)
        return w.bytes
    }

    static func decode(_ b: [UInt8]) throws -> SequenceState {
        var r = BinaryReader(b)
        let epoch = try r.i32(), next = try r.i32(), n = try r.i32()
        var batches = try (0..<max(0, n)).map { _ in Batch(baseSeq: try r.i32(), count: try r.i32(), baseOffset: try r.i64()) }
        if !r.atEnd { for i in batches.indices { batches[i].txn = try r.i64() } }
        let last = r.atEnd ? 0 : try r.i64()
        return SequenceState(epoch: epoch, nextSeq: next, batches: batches, lastWriteMs: last)
    }
}

/// A consumer group: its members, its generation, the target assignment, and which member
/// currently holds (is allowed to fetch and commit) each partition.
struct GroupState: Sendable {
    /// Bumped on every change of membership or subscriptions.
    var generation: Int32 = 0
    var members: [Member] = []
    /// Target owner of every subscribed partition in this generation.
    var assignment: [TopicPartition: String] = [:]
    /// The member that currently holds a partition. A partition moves to its new target owner
    /// only once the old holder has released it (after its mode's commit) or expired.
    var held: [TopicPartition: String] = [:]
    /// Since when the group has had no members (ms since the epoch; 0 while it has some, or not
    /// known yet). `offsets.retention.minutes` counts from it.
    var emptySinceMs: Int64 = 0

    struct Member: Sendable, Hashable {
        var id: String
        var clientId: String
        var topics: [String]
        /// Last heartbeat (ms since the epoch).
        var lastHeartbeatMs: Int64
        var sessionTimeoutMs: Int32
        var strategy: String
    }

    func member(_ id: String) -> Member? { members.first { $0.id == id } }

    func encode() -> [UInt8] {
        var w = BinaryWriter()
        w.i32(generation)
        w.i32(Int32(members.count))
        for m in members {
            w.string(m.id); w.string(m.clientId); w.strings(m.topics); w.i64(m.lastHeartbeatMs); w.i32(m.sessionTimeoutMs); w.string(m.strategy)
        }
        for map in [assignment, held] {
            w.i32(Int32(map.count))
            for (tp, m) in map.sorted(by: { $0.key < $1.key }) { w.string(tp.topic); w.i32(tp.partition); w.string(m) }
        }
        w.i64(emptySinceMs)
        return w.bytes
    }

    static func decode(_ b: [UInt8]) throws -> GroupState {
        var r = BinaryReader(b)
        var g = GroupState()
        g.generation = try r.i32()
        let n = try r.i32()
        g.members = try (0..<max(0, n)).map { _ in
            Member(id: try r.string(), clientId: try r.string(), topics: try r.strings(), lastHeartbeatMs: try r.i64(),
                   sessionTimeoutMs: try r.i32(), strategy: try r.string())
        }
        for i in 0..<2 {
            let c = try r.i32()
            var map: [TopicPartition: String] = [:]
            for _ in 0..<max(0, c) { map[TopicPartition(try r.string(), try r.i32())] = try r.string() }
            if i == 0 { g.assignment = map } else { g.held = map }
        }
        if !r.atEnd { g.emptySinceMs = try r.i64() }
        return g
    }
}

extension StorageReader {
    func getInt64(_ key: String) throws -> Int64? {
        guard let b = try get(key) else { return nil }
        var r = BinaryReader(b)
        return try r.i64()
    }
}

extension StorageWriter {
    func putInt64(_ key: String, _ v: Int64) throws {
        var w = BinaryWriter()
        w.i64(v)
        try put(key, w.bytes)
    }

    /// Stores a committed offset with the time it was committed (`offsets.retention.minutes`
    /// counts from it); readers that only want the offset read the first eight bytes.
    func putCommittedOffset(_ key: String, _ offset: Int64, now: Int64) throws {
        var w = BinaryWriter()
        w.i64(offset); w.i64(now)
        try put(key, w.bytes)
    }

    /// Hands out the next value of a counter kept under `key`, starting at `first`.
    func nextCounter(_ key: String, first: Int64 = 1, count: Int64 = 1) throws -> Int64 {
        let v = try getInt64(key) ?? first
        try putInt64(key, v + count)
        return v
    }
}
