import ArgumentParser
import Kofka

struct KofkaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kofka",
        abstract: "Kafka's delivery semantics as an embeddable library.",
        version: Kofka.version,
        subcommands: [Demo.self, DemoWorker.self])
}

KofkaCommand.main()
