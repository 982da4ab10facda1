import ArgumentParser
import Kofka
import KofkaCommandSupport
#if canImport(Glibc)
import Glibc
#endif

struct Produce: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Produce one record per line of standard input.",
        discussion: """
            Each line (without its newline) is a record's value; with -K SEP the part before the \
            first SEP is the key and the rest the value (a line without SEP has no key). Keyed records \
            go to murmur2(key) % partitions, unkeyed ones are spread, unless --partition is given. \
            Lines are sent synchronously in batches of --batch records (one storage transaction per \
            partition per batch). A missing topic is created with num.partitions (1) partitions. \
            A summary goes to standard error; the exit status is non-zero if any record failed.
            Example:
              printf 'one\\ntwo\\nthree\\n' | kofka produce --storage sqlite:x.db lines
              printf 'k1:v1\\nk2:v2\\n' | kofka produce --storage sqlite:x.db -K : --mode exactly-once orders
            """)

    @OptionGroup var options: StorageOptions

    @Argument(help: "The topic to produce to.")
    var topic: String

    @Option(name: .customShort("K"), help: ArgumentHelp("Key separator: the text before the first SEP is the key.", valueName: "sep"))
    var keySeparator: String?

    @Option(name: .long, help: "Write every record to this partition.")
    var partition: Int32?

    @Option(name: .long, help: "Delivery mode: at-most-once | at-least-once | exactly-once (idempotent).")
    var mode: DeliveryMode = .atLeastOnce

    @Option(name: .long, help: "Records per sendBatch call.")
    var batch: Int = 1000

    func validate() throws {
        if let k = keySeparator, k.isEmpty { throw ValidationError("-K needs a non-empty separator") }
        if batch < 1 { throw ValidationError("--batch must be at least 1") }
        if let p = partition, p < 0 { throw ValidationError("--partition must be >= 0") }
    }

    func run() throws {
        let broker = try options.openBroker()
        defer { broker.close() }
        let producer = try broker.producer(ProducerConfig([("delivery.mode", mode.rawValue)] + options.clientSettings()))
        let sep = keySeparator.map { Array($0.utf8) }
        let reader = LineReader()
        let start = ContinuousClock.now
        var sent = 0, failed = 0, bytes = 0
        var perPartition: [Int32: Int] = [:]
        var firstError: KofkaError?
        var chunk: [Record] = []
        chunk.reserveCapacity(batch)

        func sendChunk() throws {
            guard !chunk.isEmpty else { return }
            let results = try producer.sendBatch(topic, chunk)
            for r in results {
                switch r {
                case .success(let md):
                    sent += 1
                    perPartition[md.partition, default: 0] += 1
                case .failure(let e):
                    failed += 1
                    if firstError == nil { firstError = e }
                }
            }
            chunk.removeAll(keepingCapacity: true)
        }

        while let line = reader.next() {
            var key: [UInt8]? = nil
            var value = line
            if let sep, let r = firstRange(of: sep, in: line) {
                key = Array(line[..<r.lowerBound])
                value = Array(line[r.upperBound...])
            }
            bytes += value.count + (key?.count ?? 0)
            chunk.append(Record(partition: partition, key: key, value: value))
            if chunk.count >= batch { try sendChunk() }
        }
        try sendChunk()
        try producer.close()
        let secs = (ContinuousClock.now - start).seconds
        let parts = perPartition.keys.sorted().map { "\($0):\(perPartition[$0]!)" }.joined(separator: " ")
        stderrLine("kofka: produced \(sent) record\(sent == 1 ? "" : "s") (\(bytes) bytes) to \(topic) [\(parts.isEmpty ? "-" : parts)] in \(fmt(secs, 3)) s, mode \(mode.rawValue)\(failed > 0 ? ", \(failed) failed" : "")")
        if let e = firstError {
            throw KofkaError(e.code, "\(failed) record(s) failed; first: \(e.message)")
        }
    }
}

func firstRange(of needle: [UInt8], in hay: [UInt8]) -> Range<Int>? {
    guard !needle.isEmpty, hay.count >= needle.count else { return nil }
    let first = needle[0]
    var i = 0
    while i <= hay.count - needle.count {
        if hay[i] == first {
            var j = 1
            while j < needle.count && hay[i + j] == needle[j] { j += 1 }
            if j == needle.count { return i..<(i + needle.count) }
        }
        i += 1
    }
    return nil
}
