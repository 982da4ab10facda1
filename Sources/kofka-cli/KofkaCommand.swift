import ArgumentParser
import Kofka
import KofkaCommandSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `kofka` command: a kcat-like tool over a Kofka storage file, plus the demo and the benchmark.
@main
struct KofkaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kofka",
        abstract: "Kafka's delivery semantics as an embeddable library: inspect, produce, consume, benchmark.",
        discussion: """
            Storage is chosen with --storage: 'sqlite:PATH' (a file shared by every process that opens it) \
            or 'memory:' (volatile, gone when the command exits). The default for every subcommand \
            is 'sqlite:kofka.db' in the current directory.
            """,
        version: "kofka \(Kofka.version)",
        subcommands: [Demo.self, Topics.self, Produce.self, Consume.self, Groups.self, Serve.self, DeleteRecords.self, Maintain.self, BenchEntry.self, Lab.self, DemoWorker.self])

    static func main() { CommandMain.run(Self.self, name: "kofka") }
}

/// Options every storage-using subcommand takes.
struct StorageOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Storage: 'sqlite:PATH', 'memory:' (emptied when the command exits) or a plugin's 'SCHEME:LOCATION' such as 'lmdb:DIRECTORY'.", valueName: "storage"))
    var storage: String = "sqlite:kofka.db"

    @Option(name: .customShort("X"), help: ArgumentHelp(
        "A config setting KEY=VALUE, repeatable (e.g. -X sqlite.synchronous=normal, -X linger.ms=0). Broker keys go to the broker, the rest to the producer or consumer.",
        valueName: "key=value"))
    var settings: [String] = []

    static let brokerKeys: Set<String> = BrokerConfig.keys

    /// (broker settings, client settings)
    func split() throws -> ([(String, String)], [(String, String)]) {
        var broker: [(String, String)] = [], client: [(String, String)] = []
        for s in settings {
            guard let eq = s.firstIndex(of: "="), eq != s.startIndex else {
                throw CLIError("invalid setting '\(s)': expected KEY=VALUE")
            }
            let kv = (String(s[..<eq]), String(s[s.index(after: eq)...]))
            // The storage plugin's own keys (lmdb.map.size for lmdb:PATH, postgresql.lock.timeout.ms for postgresql://…) go to the broker too.
            let scheme = storage.split(separator: ":", maxSplits: 1).first.map { $0 + "." } ?? "\u{0}"
            if Self.brokerKeys.contains(kv.0) || kv.0.hasPrefix(scheme) { broker.append(kv) } else { client.append(kv) }
        }
        return (broker, client)
    }

    func openBroker() throws -> Broker {
        try Broker(storage, config: try split().0)
    }

    func clientSettings() throws -> [(String, String)] { try split().1 }
}

extension DeliveryMode: ExpressibleByArgument {}

/// Reads stdin as raw lines (bytes, without the trailing newline).
final class LineReader {
    private var line: UnsafeMutablePointer<CChar>? = nil
    private var cap = 0
    func next() -> [UInt8]? {
        let n = getline(&line, &cap, stdin)
        guard n >= 0, let line else { return nil }
        var count = n
        if count > 0 && line[count - 1] == 0x0a { count -= 1 }
        if count > 0 && line[count - 1] == 0x0d { count -= 1 }
        return line.withMemoryRebound(to: UInt8.self, capacity: max(count, 1)) { Array(UnsafeBufferPointer(start: $0, count: count)) }
    }
    deinit { free(line) }
}
