import Kofka
import KofkaCommandSupport

/// The timed loops the storage benchmarks (`kofka-bench storage`, `kofka-bench postgres`) share:
/// what a Kofka row measures, whatever backend is under it.
enum BenchLoops {
    /// Creates topic "bench" (one partition) on `b` and sends `count` records with `value`,
    /// `batch` per sync `send` of a RecordBatch (at-least-once). Returns the seconds the sends took.
    ///
    /// ```swift
    /// let seconds = try BenchLoops.sendBatches(broker, count: 200_000, batch: 1_000, value: value)
    /// ```
    static func sendBatches(_ b: Broker, count: Int, batch: Int, value: [UInt8]) throws -> Double {
        try b.createTopic("bench", partitions: 1)
        let p = try b.producer(ProducerConfig([("delivery.mode", "at-least-once")]))
        defer { try? p.close() }
        let t0 = monoSeconds()
        try value.withUnsafeBytes { src in
            var left = count
            while left > 0 {
                let k = min(batch, left)
                var rb = RecordBatch(reservingRecords: k, bytes: k * value.count)
                for _ in 0..<k { rb.append(timestampMs: 0, key: nil, value: src, headers: nil) }
                let o = try p.send("bench", rb, partitions: [Int32](repeating: 0, count: k))
                if let (_, e) = o.firstError { throw e }
                left -= k
            }
        }
        return monoSeconds() - t0
    }

    /// Reads `count` records of topic "bench" partition 0 from offset 0 with `pollBatch(max: poll)`
    /// (consumer config `max.poll.records` = poll, plus `config`), and checks that the values
    /// hold `valueBytes` bytes in all. Returns the seconds the polls took; `who` names the
    /// command in errors.
    static func pollBatches(_ b: Broker, count: Int, poll: Int, config: [(String, String)] = [], valueBytes: Int? = nil,
                            who: String) throws -> Double {
        let c = try b.consumer(ConsumerConfig([("max.poll.records", "\(poll)")] + config))
        defer { c.destroy() }
        try c.assign("bench", partitions: [0])
        try c.seek("bench", 0, 0)
        var got = 0, bytes = 0
        let t0 = monoSeconds()
        while got < count {
            let ms = try c.pollBatch(max: min(poll, count - got), timeout: .seconds(5))
            if ms.isEmpty { throw CLIError("\(who): consumer stalled at \(got) of \(count)") }
            for m in ms { bytes &+= m.value?.count ?? 0 }
            got += ms.count
        }
        let seconds = monoSeconds() - t0
        if let valueBytes, bytes != valueBytes { throw CLIError("\(who): consumed \(bytes) value bytes, expected \(valueBytes)") }
        return seconds
    }
}
