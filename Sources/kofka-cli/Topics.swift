import ArgumentParser
import Kofka

struct Topics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List topics with their partitions and watermarks, or create a topic.",
        discussion: """
            Without --create: one line per topic, then one line per partition with its low and high \
            watermark (high = the next offset to be written) and the record count.
            Examples:
              kofka topics --storage sqlite:x.db
              kofka topics --storage sqlite:x.db --create orders --partitions 3
            """)

    @OptionGroup var options: StorageOptions

    @Option(name: .long, help: ArgumentHelp("Create a topic with this name ([A-Za-z0-9._-], 1 to 249 characters).", valueName: "name"))
    var create: String?

    @Option(name: .long, help: "Partitions of the topic to create.")
    var partitions: Int32 = 1

    func validate() throws {
        if create == nil && partitions != 1 { throw ValidationError("--partitions needs --create NAME") }
    }

    func run() throws {
        let broker = try options.openBroker()
        defer { broker.close() }
        if let name = create {
            try broker.createTopic(name, partitions: partitions)
            print("created topic \(name) with \(partitions) partition\(partitions == 1 ? "" : "s")")
            return
        }
        let topics = try broker.topics()
        if topics.isEmpty {
            print("no topics in \(options.storage)")
            return
        }
        for t in topics {
            var total: Int64 = 0
            var lines: [String] = []
            for p in 0..<t.partitions {
                let w = try broker.watermarks(t.name, p)
                total += w.high - w.low
                lines.append("  partition \(p)  low \(w.low)  high \(w.high)  records \(w.high - w.low)")
            }
            print("topic \(t.name)  partitions \(t.partitions)  records \(total)")
            for l in lines { print(l) }
        }
    }
}
