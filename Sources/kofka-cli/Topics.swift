import ArgumentParser
import Kofka

struct Topics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, describe, create or configure topics.",
        discussion: """
            Without options: one line per topic, then one line per partition with its low watermark \
            (the log start offset: retention and delete-records move it up), its high watermark (the \
            next offset to be written) and the offsets between them. --describe adds each topic's \
            configuration (keys the topic sets itself are marked '*'; the others are broker defaults).
            Topic keys: retention.ms, retention.bytes, cleanup.policy (delete | compact | \
            compact,delete), delete.retention.ms, min.compaction.lag.ms, max.message.bytes. \
            Retention is unlimited unless set.
            Examples:
              kofka topics --storage sqlite:x.db
              kofka topics --storage sqlite:x.db --create orders --partitions 3 --config retention.ms=86400000
              kofka topics --storage sqlite:x.db --alter orders --config cleanup.policy=compact
              kofka topics --storage sqlite:x.db --describe
            """)

    @OptionGroup var options: StorageOptions

    @Option(name: .long, help: ArgumentHelp("Create a topic with this name ([A-Za-z0-9._-], 1 to 249 characters).", valueName: "name"))
    var create: String?

    @Option(name: .long, help: ArgumentHelp("Change the configuration of this topic (with --config).", valueName: "name"))
    var alter: String?

    @Option(name: .long, help: "Partitions of the topic to create.")
    var partitions: Int32 = 1

    @Option(name: .long, parsing: .singleValue, help: ArgumentHelp("A topic config key=value for --create or --alter (repeatable; an empty value returns the key to the broker default).", valueName: "key=value"))
    var config: [String] = []

    @Flag(name: .long, help: "Show each topic's configuration as well.")
    var describe = false

    func validate() throws {
        if create == nil && partitions != 1 { throw ValidationError("--partitions needs --create NAME") }
        if create != nil && alter != nil { throw ValidationError("--create and --alter cannot be combined") }
        if alter != nil && config.isEmpty { throw ValidationError("--alter needs at least one --config key=value") }
        if create == nil && alter == nil && !config.isEmpty { throw ValidationError("--config needs --create NAME or --alter NAME") }
        for c in config where !c.contains("=") { throw ValidationError("--config '\(c)' is not key=value") }
    }

    private var pairs: [(String, String)] {
        config.map { c in
            let parts = c.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
        }
    }

    func run() throws {
        let broker = try options.openBroker()
        defer { broker.close() }
        if let name = create {
            try broker.createTopic(name, partitions: partitions, config: pairs)
            print("created topic \(name) with \(partitions) partition\(partitions == 1 ? "" : "s")")
            return
        }
        if let name = alter {
            try broker.setTopicConfig(name, pairs)
            print("configured topic \(name): " + pairs.map { "\($0.0)=\($0.1.isEmpty ? "(default)" : $0.1)" }.joined(separator: " "))
            return
        }
        let topics = try broker.topics()
        if topics.isEmpty {
            print("no topics in \(Broker.redacted(options.storage))")
            return
        }
        for t in topics {
            var total: Int64 = 0
            var lines: [String] = []
            for p in 0..<t.partitions {
                let w = try broker.watermarks(t.name, p)
                total += w.high - w.low
                lines.append("  partition \(p)  low \(w.low)  high \(w.high)  offsets \(w.high - w.low)")
            }
            print("topic \(t.name)  partitions \(t.partitions)  offsets \(total)")
            if describe {
                let cfg = try broker.topicConfigs(t.name)
                print("  config " + cfg.map { "\($0.key)=\($0.value)\($0.own ? "*" : "")" }.joined(separator: " "))
            }
            for l in lines { print(l) }
        }
    }
}
