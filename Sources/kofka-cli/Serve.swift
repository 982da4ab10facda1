import ArgumentParser
import Kofka
import KofkaServer
#if canImport(Glibc)
import Glibc
#endif

/// `kofka serve`: a Kafka broker over a Kofka storage.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a storage over the Kafka wire protocol (kcat, librdkafka, kafka-python, any Kafka client).",
        discussion: """
            Kafka clients connect with bootstrap.servers=HOST:PORT. This one node is the controller, the \
            leader of every partition and the coordinator of every group and transactional id. Library \
            handles (C, Python, Swift) may use the same storage at the same time: one log, one set of \
            groups and transactions. Stops gracefully on SIGINT or SIGTERM.

            Examples:
              kofka serve --storage sqlite:events.db
              kofka serve --storage sqlite:events.db --listen 127.0.0.1:0 -X sqlite.synchronous=normal
              kcat -b 127.0.0.1:9092 -L
            """)

    @OptionGroup var options: StorageOptions

    @Option(name: .long, help: ArgumentHelp("Address to listen on, HOST:PORT (port 0: any free port, printed at start).", valueName: "host:port"))
    var listen: String = "127.0.0.1:9092"

    @Option(name: .long, help: ArgumentHelp("Host name given to clients in Metadata (default: the listen host).", valueName: "host"))
    var advertisedHost: String?

    func run() throws {
        let (host, port) = try KofkaServer.parseListen(listen)
        let broker = try options.openBroker()
        // SIGINT and SIGTERM are waited for, not delivered.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let server = try KofkaServer.start(broker: broker, host: host, port: port, advertisedHost: advertisedHost)
        print("kofka serve: listening on \(host):\(server.port) (storage \(Broker.redacted(options.storage)))")
        fflush(stdout)
        var sig: Int32 = 0
        sigwait(&set, &sig)
        server.stop()
        broker.close()
        print("kofka serve: stopped")
    }
}
