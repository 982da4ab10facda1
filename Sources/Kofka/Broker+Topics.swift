/// Topics: names, creation (with their own configuration), lookup, configuration and watermarks.
extension Broker {
    /// Checks Kafka's topic-name rule: `[A-Za-z0-9._-]{1,249}`, not `.` or `..`.
    public static func validateTopicName(_ name: String) throws {
        let ok = !name.isEmpty && name.utf8.count <= 249 && name != "." && name != ".."
            && name.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2e || c == 0x5f || c == 0x2d
            }
        if !ok {
            throw KofkaError(.invalidArg, "invalid topic name '\(name)': names are 1 to 249 characters of [A-Za-z0-9._-], not '.' or '..'")
        }
    }

    /// Creates a topic with `partitions` partitions (1...100000) and its own `config` (topic
    /// keys; see `TopicConfig`). Throws `.topicExists` if it exists, `.invalidConfig` for an
    /// unknown key or invalid value.
    public func createTopic(_ name: String, partitions: Int32, config: [(String, String)] = []) throws {
        try Self.validateTopicName(name)
        guard partitions >= 1 && partitions <= 100_000 else {
            throw KofkaError(.invalidArg, "invalid partition count \(partitions) for topic '\(name)': expected 1...100000")
        }
        let own = try TopicConfig(config)
        try checkOpen()
        let meta = try storage.write { w -> TopicMeta in
            if try w.get(Keys.topic(name)) != nil {
                throw KofkaError(.topicExists, "topic '\(name)' already exists")
            }
            return try Self.insertTopic(w, name, partitions, own)
        }
        cache(meta)
    }

    private static func insertTopic(_ w: any StorageWriter, _ name: String, _ partitions: Int32, _ config: TopicConfig = TopicConfig()) throws -> TopicMeta {
        let first = try w.nextCounter(Keys.nextPnum, first: 0, count: Int64(partitions))
        guard first + Int64(partitions) <= StorageLimits.maxPartitionNumbers else {
            throw KofkaError(.invalidArg, "cannot create topic '\(name)': the storage holds at most \(StorageLimits.maxPartitionNumbers) partitions in all")
        }
        let meta = TopicMeta(name: name, partitions: partitions, firstPnum: first, config: config)
        try w.put(Keys.topic(name), meta.encode())
        return meta
    }

    /// Sets keys of a topic's own configuration (an empty value returns a key to the broker's
    /// default). Other processes sharing the storage see the change at their next maintenance;
    /// `max.message.bytes` applies to producers of this broker handle at once.
    public func setTopicConfig(_ name: String, _ config: [(String, String)]) throws {
        try Self.validateTopicName(name)
        var own = TopicConfig()
        try own.set(config)   // validates before anything is written
        try checkOpen()
        let meta = try storage.write { w -> TopicMeta in
            guard let b = try w.get(Keys.topic(name)) else { throw KofkaError(.unknownTopic, "unknown topic '\(name)'") }
            var m = try TopicMeta.decode(name, b)
            try m.config.set(config)
            try w.put(Keys.topic(name), m.encode())
            return m
        }
        cache(meta)
    }

    /// The value in effect for topic config `key`: the topic's own, else the broker default.
    public func topicConfig(_ name: String, _ key: String) throws -> String {
        guard TopicConfig.keys.contains(key) else {
            throw KofkaError(.invalidConfig, "unknown topic config key '\(key)' (known keys: \(TopicConfig.keys.joined(separator: ", ")))")
        }
        return try effectiveConfig(freshMeta(name)).value(key) ?? ""
    }

    /// Every topic config key and the value in effect, and whether the topic sets it itself.
    public func topicConfigs(_ name: String) throws -> [(key: String, value: String, own: Bool)] {
        let meta = try freshMeta(name)
        let eff = effectiveConfig(meta)
        return TopicConfig.keys.map { ($0, eff.value($0) ?? "", meta.config.values[$0] != nil) }
    }

    /// The settings in effect for a topic.
    func effectiveConfig(_ meta: TopicMeta) -> EffectiveTopicConfig { EffectiveTopicConfig(meta.config, config) }
    /// The largest record `meta` takes (`max.message.bytes`, else `message.max.bytes`).
    func maxMessageBytes(_ meta: TopicMeta) -> Int { EffectiveTopicConfig.maxMessageBytes(meta.config, config) }

    /// The topic as storage holds it now (not the cached copy), cached again.
    func freshMeta(_ name: String) throws -> TopicMeta {
        try Self.validateTopicName(name)
        try checkOpen()
        guard let meta = try storage.read({ r in try r.get(Keys.topic(name)).map { try TopicMeta.decode(name, $0) } }) else {
            throw KofkaError(.unknownTopic, "unknown topic '\(name)'")
        }
        cache(meta)
        return meta
    }

    private func cache(_ meta: TopicMeta) {
        state.withLock { s in
            guard s.topicCache[meta.name] != meta else { return }
            s.topicCache[meta.name] = meta
            topicsVersion.add(1, ordering: .releasing)
        }
    }

    /// The topic's metadata; creates it (with `num.partitions`) when `autoCreate` and
    /// `auto.create.topics.enable` allow, else throws `.unknownTopic`.
    func topicMeta(_ name: String, autoCreate: Bool = false) throws -> TopicMeta {
        if let m = state.withLock({ $0.topicCache[name] }) { return m }
        try Self.validateTopicName(name)
        try checkOpen()
        let found = try storage.read { r in try r.get(Keys.topic(name)).map { try TopicMeta.decode(name, $0) } }
        let meta: TopicMeta
        if let found {
            meta = found
        } else if autoCreate && config.autoCreateTopics {
            let n = config.numPartitions
            meta = try storage.write { w in
                if let b = try w.get(Keys.topic(name)) { return try TopicMeta.decode(name, b) }
                return try Self.insertTopic(w, name, n)
            }
        } else {
            throw KofkaError(.unknownTopic, "unknown topic '\(name)'")
        }
        cache(meta)
        return meta
    }

    /// The storage partition number of `partition`, checking the range.
    func pnum(_ meta: TopicMeta, _ partition: Int32) throws -> Int64 {
        guard partition >= 0 && partition < meta.partitions else {
            throw KofkaError(.unknownPartition, "topic '\(meta.name)' has \(meta.partitions) partition\(meta.partitions == 1 ? "" : "s"), asked for partition \(partition)")
        }
        return meta.firstPnum + Int64(partition)
    }

    /// The number of partitions of `topic`.
    public func partitions(of topic: String) throws -> Int32 {
        try checkOpen()
        return try topicMeta(topic).partitions
    }

    /// Every topic and its partition count, by name.
    public func topics() throws -> [(name: String, partitions: Int32)] {
        try checkOpen()
        return try storage.read { r in
            try r.scan(from: Keys.topicPrefix, to: "t0").map { e in
                let name = String(e.key.dropFirst(Keys.topicPrefix.count))
                return (name, try TopicMeta.decode(name, e.value).partitions)
            }
        }
    }

    /// The partition's low watermark (the log start offset: the first offset it may still hold)
    /// and high watermark (the next offset to be written).
    public func watermarks(_ topic: String, _ partition: Int32) throws -> (low: Int64, high: Int64) {
        try checkOpen()
        let meta = try topicMeta(topic)
        let p = try pnum(meta, partition)
        return try storage.read { r in (try r.logStartOffset(p), try r.highWatermark(p)) }
    }
}

// MARK: What the Kafka wire protocol needs (KofkaWire)

/// A read of one partition for a Kafka Fetch: the watermarks, the last stable offset, and the
/// aborted transactions overlapping what was read (Kofka's transaction number and first offset).
package struct WirePartitionRead: Sendable {
    /// The high watermark (the next offset to be written).
    package var highWatermark: Int64
    /// The last stable offset (the first offset of the oldest open transaction, else the high watermark).
    package var lastStableOffset: Int64
    /// The log start offset (low watermark).
    package var logStartOffset: Int64
    /// Aborted transactions with a record at or after the fetch offset: (transaction, first offset).
    package var aborted: [(txn: Int64, firstOffset: Int64)]
}

extension Broker {
    /// Deletes a topic (Kafka's DeleteTopics): its name goes at once (so it can be created again,
    /// with new partition numbers), then its records are deleted in chunks and its committed
    /// offsets removed. Throws `.unknownTopic` if it does not exist.
    ///
    /// Other broker handles that looked the topic up before keep its old partitions in their
    /// cache until they are reopened: delete a topic only while nothing else writes to it.
    package func deleteTopic(_ name: String) throws {
        try Self.validateTopicName(name)
        try checkOpen()
        let meta = try storage.write { w -> TopicMeta in
            guard let b = try w.get(Keys.topic(name)) else { throw KofkaError(.unknownTopic, "unknown topic '\(name)'") }
            let meta = try TopicMeta.decode(name, b)
            try w.delete(Keys.topic(name))
            for e in try w.scan(from: Keys.offsetPrefix, to: "c0") {
                let parts = e.key.split(separator: "\u{1}", omittingEmptySubsequences: false)
                if parts.count == 3 && parts[1] == name { try w.delete(e.key) }
            }
            return meta
        }
        state.withLock { s in
            s.topicCache.removeValue(forKey: name)
            topicsVersion.add(1, ordering: .releasing)
        }
        let m = Maintainer(self)
        for p in 0..<Int64(meta.partitions) {
            let pnum = meta.firstPnum + p
            let hw = try storage.read { try $0.highWatermark(pnum) }
            while true {
                let step = Int64(m.chunk(.truncate))
                let start = try m.write(.truncate) { w -> Int64 in
                    let start = try w.logStartOffset(pnum)
                    guard start < hw else { return start }
                    return try w.truncateLog(pnum, before: min(hw, start + step))
                }
                if start >= hw { break }
            }
        }
    }

    /// The topic's partition count, creating it with `num.partitions` when the broker's
    /// `auto.create.topics.enable` allows (a Kafka Metadata request with auto-creation).
    package func partitionsCreatingIfAllowed(_ topic: String) throws -> Int32 {
        try topicMeta(topic, autoCreate: true).partitions
    }

    /// Appends a Kafka producer's batch to one partition, on the same rules as a library
    /// producer's request (`appendRequest`): with `producerId` >= 0 the batch is sequenced (a
    /// retry of one of the last five batches is acknowledged with its original first offset; a
    /// gap is `.outOfOrderSequence`; an older epoch is `.producerFenced`); a transactional batch
    /// goes into the producer's open transaction (none open, or another epoch: fenced or
    /// `.invalidState`). Returns the first offset.
    package func wireAppend(_ topic: String, _ partition: Int32, _ batch: RecordBatch, producerId: Int64, epoch: Int16,
                            baseSequence: Int32, transactional: Bool) throws -> Int64 {
        let meta = try topicMeta(topic)
        var identity: ProducerIdentity?
        if producerId >= 0 {
            var txn: Int64 = 0
            if transactional { txn = try openTransaction(pid: producerId, epoch: Int32(epoch)) }
            identity = ProducerIdentity(pid: producerId, epoch: Int32(epoch), txn: txn)
        } else if transactional {
            throw KofkaError(.invalidArg, "a transactional batch needs a producer id")
        }
        return try appendRequest(meta, partition, batch, identity: identity, baseSeq: baseSequence)
    }

    /// Reads partition `partition` of `topic` from `offset` for a Kafka Fetch, handing each
    /// record (at most `maxRecords`) to `body` in place; `readCommitted` stops at the last
    /// stable offset. Throws `.unknownTopic`, `.unknownPartition`, and `.offsetOutOfRange` for
    /// an offset below the log start or above the high watermark.
    package func wireRead(_ topic: String, _ partition: Int32, from offset: Int64, maxRecords: Int, readCommitted: Bool,
                          _ body: (RecordView) throws -> Void) throws -> WirePartitionRead {
        try checkOpen()
        let meta = try topicMeta(topic)
        let pnum = try pnum(meta, partition)
        return try storage.read { r in
            let hw = try r.highWatermark(pnum), start = try r.logStartOffset(pnum)
            let lso = try Transactions.lastStableOffset(r, pnum, hw: hw)
            guard offset >= start && offset <= hw else {
                throw KofkaError(.offsetOutOfRange, "offset \(offset) of \(topic)[\(partition)] is outside \(start)...\(hw)")
            }
            let end = readCommitted ? lso : hw
            var aborted: [(Int64, Int64)] = []
            if offset < end {
                _ = try r.forEachRecord(pnum, from: offset, below: end, maxCount: maxRecords, body)
                if readCommitted {
                    let (lo, hi) = Keys.abortedRange(pnum, from: offset)
                    for e in try r.scan(from: lo, to: hi) {
                        var rd = BinaryReader(e.value)
                        let first = try rd.i64()
                        guard first < end, let t = e.key.split(separator: "/").last, let txn = Int64(t, radix: 16) else { continue }
                        aborted.append((txn, first))
                    }
                }
            }
            return WirePartitionRead(highWatermark: hw, lastStableOffset: lso, logStartOffset: start, aborted: aborted)
        }
    }

    /// The first offset whose record's timestamp is at or after `timestampMs` (Kafka's
    /// ListOffsets by time), or nil when there is none. Scans the partition in chunks.
    package func offsetForTimestamp(_ topic: String, _ partition: Int32, _ timestampMs: Int64) throws -> Int64? {
        try checkOpen()
        let meta = try topicMeta(topic)
        let pnum = try pnum(meta, partition)
        var from = try storage.read { try $0.logStartOffset(pnum) }
        while true {
            var found: Int64?, last: Int64 = -1
            let n = try storage.read { r in
                try r.forEachRecord(pnum, from: from, below: Int64.max, maxCount: 2000) { v in
                    last = v.offset
                    if found == nil && v.timestampMs >= timestampMs { found = v.offset }
                }
            }
            if let found { return found }
            if n == 0 { return nil }
            from = last + 1
        }
    }
}
