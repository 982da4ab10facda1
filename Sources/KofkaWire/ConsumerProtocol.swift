import Kofka

/// The "consumer" protocol type's metadata and assignments (Kafka's ConsumerProtocol): what a
/// classic group's members put in JoinGroup and the leader in SyncGroup. The broker reads them
/// only to learn subscriptions and the partitions the leader gave each member, and writes them
/// for library members (so the leader can assign them partitions too).
enum ConsumerProtocol {
    /// Subscription: version int16, topics [string], user data bytes (later versions append
    /// owned partitions, generation and rack, which the broker does not need).
    static func topics(ofSubscription b: [UInt8]) -> [String] {
        var r = WireReader(b)
        guard (try? r.int16()) != nil, let n = try? r.arrayCount(compact: false, nullable: false) else { return [] }
        var out: [String] = []
        for _ in 0..<n { guard let t = try? r.string(compact: false) else { return out }; out.append(t) }
        return out
    }

    /// A version-0 subscription to `topics`.
    static func subscription(_ topics: [String]) -> [UInt8] {
        var w = WireWriter()
        w.int16(0)
        w.arrayCount(topics.count, compact: false)
        for t in topics { w.string(t, compact: false) }
        w.nullableBytes(nil, compact: false)
        return w.bytes
    }

    /// Assignment: version int16, [topic string, partitions [int32]], user data bytes.
    static func partitions(ofAssignment b: [UInt8]) -> [TopicPartition] {
        var r = WireReader(b)
        guard !b.isEmpty, (try? r.int16()) != nil, let n = try? r.arrayCount(compact: false, nullable: false) else { return [] }
        var out: [TopicPartition] = []
        for _ in 0..<n {
            guard let t = try? r.string(compact: false), let m = try? r.arrayCount(compact: false, nullable: false) else { return out }
            for _ in 0..<m { guard let p = try? r.int32() else { return out }; out.append(TopicPartition(t, p)) }
        }
        return out
    }

    /// A version-0 assignment of `partitions`.
    static func assignment(_ partitions: [TopicPartition]) -> [UInt8] {
        var w = WireWriter()
        w.int16(0)
        let byTopic = Dictionary(grouping: partitions, by: \.topic).sorted { $0.key < $1.key }
        w.arrayCount(byTopic.count, compact: false)
        for (t, ps) in byTopic {
            w.string(t, compact: false)
            w.arrayCount(ps.count, compact: false)
            for p in ps.map(\.partition).sorted() { w.int32(p) }
        }
        w.nullableBytes(nil, compact: false)
        return w.bytes
    }
}
