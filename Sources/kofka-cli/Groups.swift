import ArgumentParser
import Kofka
import KofkaCommandSupport
#if canImport(Glibc)
import Glibc
#endif

struct Groups: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List consumer groups, or describe one: members, assignment, committed offsets and lag.",
        discussion: """
            Without GROUP: one line per group (generation, members, total lag). With GROUP: the \
            generation, each member (id, client id, topics, partitions assigned in this generation and \
            partitions it holds now, seconds since its last heartbeat), then for every partition of \
            the group's topics: committed offset, high watermark, lag (high - committed) and owner.
            Example:
              kofka groups --storage sqlite:x.db billing
            """)

    @OptionGroup var options: StorageOptions

    @Argument(help: "The group to describe.")
    var group: String?

    func run() throws {
        let broker = try options.openBroker()
        defer { broker.close() }
        if let group {
            guard let d = try broker.describeGroup(group) else {
                throw CLIError("unknown group '\(group)' in \(Broker.redacted(options.storage))")
            }
            try describe(broker, d)
            return
        }
        let names = try broker.groups()
        if names.isEmpty { print("no groups in \(Broker.redacted(options.storage))"); return }
        for name in names {
            guard let d = try broker.describeGroup(name) else { continue }
            let rows = try partitionRows(broker, d)
            let lag = rows.compactMap(\.lag).reduce(0, +)
            print("group \(name)  generation \(d.generation)  members \(d.members.count)  partitions \(rows.count)  lag \(lag)")
        }
    }

    struct Row { var tp: TopicPartition; var committed: Int64?; var high: Int64; var lag: Int64?; var owner: String? }

    func partitionRows(_ broker: Broker, _ d: GroupDescription) throws -> [Row] {
        var topics = Set(d.committed.keys.map(\.topic))
        for m in d.members { topics.formUnion(m.topics) }
        var owner: [TopicPartition: String] = [:]
        for m in d.members { for tp in m.held { owner[tp] = m.id } }
        var rows: [Row] = []
        for t in topics.sorted() {
            guard let n = try? broker.partitions(of: t) else { continue }
            for p in 0..<n {
                let tp = TopicPartition(t, p)
                let high = try broker.watermarks(t, p).high
                let c = d.committed[tp]
                rows.append(Row(tp: tp, committed: c, high: high, lag: c.map { Swift.max(0, high - $0) }, owner: owner[tp]))
            }
        }
        return rows
    }

    func describe(_ broker: Broker, _ d: GroupDescription) throws {
        print("group \(d.name)  generation \(d.generation)  members \(d.members.count)")
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let now = Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
        for m in d.members {
            let age = Double(now - m.lastHeartbeatMs) / 1000
            print("  member \(m.id)  client \(m.clientId)  topics \(m.topics.joined(separator: ","))  heartbeat \(fmt(age, 1)) s ago")
            print("    assigned \(m.assigned.isEmpty ? "-" : m.assigned.map(\.description).joined(separator: " "))")
            print("    held     \(m.held.isEmpty ? "-" : m.held.map(\.description).joined(separator: " "))")
        }
        let rows = try partitionRows(broker, d)
        let table = [["TOPIC", "PARTITION", "COMMITTED", "HIGH", "LAG", "OWNER"]] + rows.map {
            [$0.tp.topic, String($0.tp.partition), $0.committed.map(String.init) ?? "-", String($0.high),
             $0.lag.map(String.init) ?? "-", $0.owner ?? "-"]
        }
        for line in alignTable(table, rightAligned: [1, 2, 3, 4]) { print("  " + line) }
    }
}
