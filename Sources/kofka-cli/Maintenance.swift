import ArgumentParser
import Kofka

/// `kofka delete-records`: Kafka's DeleteRecords.
struct DeleteRecords: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete-records",
        abstract: "Delete every record of a partition below an offset (moves its low watermark).",
        discussion: """
            Like Kafka's kafka-delete-records: records below --before are deleted and the \
            partition's log start offset becomes --before (default: the high watermark, i.e. \
            everything). Consumers positioned below it follow their auto.offset.reset. Prints the \
            new low watermark.
            Example:
              kofka delete-records --storage sqlite:x.db orders --partition 0 --before 1000
            """)

    @OptionGroup var options: StorageOptions
    @Argument(help: "The topic.") var topic: String
    @Option(help: "The partition.") var partition: Int32 = 0
    @Option(help: "Delete records below this offset (-1 = the high watermark).") var before: Int64 = -1

    func run() throws {
        let broker = try options.openBroker()
        defer { broker.close() }
        let low = try broker.deleteRecords(topic, partition, before: before)
        print("\(topic)[\(partition)] low watermark \(low)")
    }
}

/// `kofka maintain`: retention, compaction and state expiry, now.
struct Maintain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run retention, compaction and state expiry now and print what was done.",
        discussion: """
            The same work every broker handle's background cleaner does every \
            log.retention.check.interval.ms: applies each topic's retention.ms, retention.bytes and \
            cleanup.policy, expires idle producer state, transactional ids and empty groups' offsets, \
            and gives freed space back. Writes in short chunks: safe while other processes produce \
            and consume. A process killed in the middle loses nothing that must survive.
            """)

    @OptionGroup var options: StorageOptions

    func run() throws {
        let broker = try options.openBroker()
        defer { broker.close() }
        print(try broker.maintain())
    }
}
