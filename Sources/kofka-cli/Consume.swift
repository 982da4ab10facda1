import ArgumentParser
import Kofka
import KofkaCommandSupport
#if canImport(Glibc)
import Glibc
#endif

/// Set by SIGINT / SIGTERM.
nonisolated(unsafe) var consumeStopRequested: sig_atomic_t = 0

struct Consume: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Consume a topic, printing each record's value (or --format / --json).",
        discussion: """
            Without --group the consumer assigns itself every partition of the topic (no group, no \
            commits) and starts at the end, or at the log start (the low watermark) with --from-beginning, \
            or at --offset N on every partition (--offset=-N counts back N from the end, not below \
            the log start). With --group it joins the group, \
            reads from the group's committed offsets (a group with none starts at the beginning with \
            --from-beginning, else at the end) and commits as its mode says: at-most-once before \
            printing, at-least-once after, exactly-once after each printed batch.
            --exit stops once every partition (every one this member holds, with --group) has been \
            read up to the high watermark it had when the command started; read_committed stops at \
            an open transaction until it ends.
            --format fields (kcat style): %t topic, %p partition, %o offset, %k key, %s value, \
            %T timestamp (ms), %K key length, %S value length, %h headers, %% a percent sign; \
            escapes \\n \\t \\r \\\\. No newline is added: end the format with \\n.
            --json prints one object per record: topic, partition, offset, timestamp, key, value, \
            headers; a key or value that is not UTF-8 is given as key_base64 / value_base64.
            Example:
              kofka consume --storage sqlite:x.db lines --from-beginning --exit
              kofka consume --storage sqlite:x.db orders --group billing --format '%p@%o %k=%s\\n'
            """)

    @OptionGroup var options: StorageOptions

    @Argument(help: "The topic to consume.")
    var topic: String

    @Option(name: .long, help: "Consumer group id: join the group and commit offsets.")
    var group: String?

    @Flag(name: .long, help: "Start at the beginning (no --group), or at the beginning when the group has no committed offset.")
    var fromBeginning = false

    @Option(name: .long, help: ArgumentHelp("Start every partition at this offset; negative counts back from the high watermark: write --offset=-N (no --group).", valueName: "n"))
    var offset: Int64?

    @Flag(name: .long, help: "Exit at the end of every partition (the high watermarks seen at start).")
    var exit = false

    @Option(name: [.customShort("c"), .long], help: "Exit after this many records.")
    var count: Int?

    @Option(name: .long, help: ArgumentHelp("Output format with %t %p %o %k %s %T %K %S %h (kcat style).", valueName: "fmt"))
    var format: String?

    @Flag(name: .long, help: "Print one JSON object per record.")
    var json = false

    @Option(name: .long, help: "Delivery mode: at-most-once | at-least-once | exactly-once (read_committed).")
    var mode: DeliveryMode = .atLeastOnce

    func validate() throws {
        if group != nil && offset != nil { throw ValidationError("--offset works without --group only (a group starts at its committed offsets)") }
        if fromBeginning && offset != nil { throw ValidationError("give --from-beginning or --offset, not both") }
        if json && format != nil { throw ValidationError("give --format or --json, not both") }
        if let c = count, c < 1 { throw ValidationError("--count must be at least 1") }
    }

    func run() throws {
        let broker = try options.openBroker()
        defer { broker.close() }
        var pairs: [(String, String)] = [("delivery.mode", mode.rawValue)]
        if let group {
            pairs += [("group.id", group), ("auto.offset.reset", fromBeginning ? "earliest" : "latest")]
        }
        let consumer = try broker.consumer(ConsumerConfig(pairs + options.clientSettings()))
        let partitions = try broker.partitions(of: topic)
        var highs: [Int32: Int64] = [:]
        for p in 0..<partitions { highs[p] = try broker.watermarks(topic, p).high }

        if group != nil {
            try consumer.subscribe([topic])
        } else {
            try consumer.assign(topic, partitions: Array(0..<partitions))
            for p in 0..<partitions {
                let high = highs[p]!
                // Records below the low watermark were deleted (retention, delete-records).
                let low = try broker.watermarks(topic, p).low
                let start: Int64
                if let offset { start = offset < 0 ? Swift.max(low, high + offset) : offset }
                else { start = fromBeginning ? low : high }
                try consumer.seek(topic, p, start)
            }
        }

        let printer = try Printer(format: json ? nil : (format ?? "%s\\n"))
        var out = Out()
        var printed = 0
        func atEnd() -> Bool {
            let mine = group == nil ? Array(0..<partitions) : consumer.assigned.filter { $0.topic == topic }.map(\.partition)
            if mine.isEmpty { return false }
            for p in mine {
                guard let pos = try? consumer.position(topic, p) else { return false }
                if pos < highs[p]! { return false }
            }
            return true
        }
        // SIGINT / SIGTERM: stop after the current batch and close gracefully (final commit, leave the group).
        signal(SIGINT) { _ in consumeStopRequested = 1 }
        signal(SIGTERM) { _ in consumeStopRequested = 1 }
        while consumeStopRequested == 0 {
            if exit && atEnd() { break }
            let want = count.map { Swift.min(500, $0 - printed) } ?? 500
            let batch = try consumer.pollBatch(max: want, timeout: .milliseconds(exit ? 100 : 500))
            for m in batch {
                printer.print(m, json: json, &out)
            }
            printed += batch.count
            if consumeStopRequested != 0 { break }
            out.flush()
            if group != nil && mode == .exactlyOnce && !batch.isEmpty { try consumer.commit() }
            if let count, printed >= count { break }
        }
        out.flush()
        try consumer.close()
    }
}

/// Renders messages with a kcat-style format, or as JSON.
struct Printer {
    enum Piece { case text([UInt8]), topic, partition, offset, key, value, timestamp, keyLen, valueLen, headers }
    let pieces: [Piece]

    init(format: String?) throws {
        guard let format else { pieces = []; return }
        var out: [Piece] = []
        var text: [UInt8] = []
        let b = Array(format.utf8)
        var i = 0
        func flushText() { if !text.isEmpty { out.append(.text(text)); text = [] } }
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "%"), i + 1 < b.count {
                let f = b[i + 1]
                let piece: Piece?
                switch f {
                case UInt8(ascii: "t"): piece = .topic
                case UInt8(ascii: "p"): piece = .partition
                case UInt8(ascii: "o"): piece = .offset
                case UInt8(ascii: "k"): piece = .key
                case UInt8(ascii: "s"): piece = .value
                case UInt8(ascii: "T"): piece = .timestamp
                case UInt8(ascii: "K"): piece = .keyLen
                case UInt8(ascii: "S"): piece = .valueLen
                case UInt8(ascii: "h"): piece = .headers
                case UInt8(ascii: "%"): piece = nil; text.append(f)
                default: throw CLIError("unknown --format field '%\(Character(UnicodeScalar(f)))': known are %t %p %o %k %s %T %K %S %h %%")
                }
                if let piece { flushText(); out.append(piece) }
                i += 2
            } else if c == UInt8(ascii: "\\"), i + 1 < b.count {
                switch b[i + 1] {
                case UInt8(ascii: "n"): text.append(0x0a)
                case UInt8(ascii: "t"): text.append(0x09)
                case UInt8(ascii: "r"): text.append(0x0d)
                case UInt8(ascii: "0"): text.append(0)
                case UInt8(ascii: "\\"): text.append(UInt8(ascii: "\\"))
                default: text.append(c); text.append(b[i + 1])
                }
                i += 2
            } else {
                text.append(c)
                i += 1
            }
        }
        flushText()
        pieces = out
    }

    func print(_ m: Message, json: Bool, _ out: inout Out) {
        if json { printJSON(m, &out); return }
        for p in pieces {
            switch p {
            case .text(let t): out.put(t)
            case .topic: out.put(m.topic)
            case .partition: out.put(String(m.partition))
            case .offset: out.put(String(m.offset))
            case .key: if let k = m.key { out.put(k) }
            case .value: if let v = m.value { out.put(v) }
            case .timestamp: out.put(String(m.timestampMs))
            case .keyLen: out.put(String(m.key.map { $0.count } ?? -1))
            case .valueLen: out.put(String(m.value.map { $0.count } ?? -1))
            case .headers:
                for (i, h) in m.headers.enumerated() {
                    if i > 0 { out.put(UInt8(ascii: ",")) }
                    out.put(h.name)
                    out.put(UInt8(ascii: "="))
                    if let v = h.value { out.put(v) }
                }
            }
        }
    }

    private func printJSON(_ m: Message, _ out: inout Out) {
        out.put("{\"topic\":")
        jsonString(m.topic, &out)
        out.put(",\"partition\":\(m.partition),\"offset\":\(m.offset),\"timestamp\":\(m.timestampMs),")
        jsonBytes("key", m.key, &out)
        out.put(",")
        jsonBytes("value", m.value, &out)
        if !m.headers.isEmpty {
            out.put(",\"headers\":[")
            for (i, h) in m.headers.enumerated() {
                if i > 0 { out.put(",") }
                out.put("{\"name\":")
                jsonString(h.name, &out)
                out.put(",")
                jsonBytes("value", h.value, &out)
                out.put("}")
            }
            out.put("]")
        }
        out.put("}\n")
    }
}

func jsonBytes(_ name: String, _ bytes: [UInt8]?, _ out: inout Out) {
    guard let bytes else { out.put("\"\(name)\":null"); return }
    if let s = String(validating: bytes, as: UTF8.self) {
        out.put("\"\(name)\":")
        jsonString(s, &out)
    } else {
        out.put("\"\(name)_base64\":\"\(base64(bytes))\"")
    }
}

func base64(_ b: [UInt8]) -> String {
    let t = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var o: [UInt8] = []
    var i = 0
    while i + 2 < b.count {
        let n = UInt32(b[i]) << 16 | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2])
        o += [t[Int(n >> 18 & 63)], t[Int(n >> 12 & 63)], t[Int(n >> 6 & 63)], t[Int(n & 63)]]
        i += 3
    }
    let rest = b.count - i
    if rest == 1 {
        let n = UInt32(b[i]) << 16
        o += [t[Int(n >> 18 & 63)], t[Int(n >> 12 & 63)], UInt8(ascii: "="), UInt8(ascii: "=")]
    } else if rest == 2 {
        let n = UInt32(b[i]) << 16 | UInt32(b[i + 1]) << 8
        o += [t[Int(n >> 18 & 63)], t[Int(n >> 12 & 63)], t[Int(n >> 6 & 63)], UInt8(ascii: "=")]
    }
    return String(decoding: o, as: UTF8.self)
}
