// fuzz_wire.swift — a libFuzzer target over KofkaWire's request decoder: what a Kafka
// client's bytes go through before any handler or storage call.
//
// Each input is one request frame (without its size prefix), as `kofka serve` hands it to
// `WireService.handle`: `WireService.decode` reads the header and the body; the records of
// every partition of a decoded Produce go through `WireBatch.decodeAll` (RecordBatch v2 with
// its CRC-32C, message sets of magic 0/1 with CRC-32, gzip). The input is also decoded as a
// bare records field, so the batch parser is reached without the fuzzer first having to
// learn a Produce request around it.
//
// A finding is a trap (an overflow, an out-of-range index, a force unwrap), an ASan report,
// or a hang: on any input the decoder must return `.refused` or throw `WireError`/`Refusal`.
//
// Built by Tests/fuzz/run.sh against the instrumented libkofka.so of .build-fuzz (which links
// KofkaWire in), so it adds a single swiftc call, not a second build.
import KofkaWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWireDecoder(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if case .request(let request) = WireService.decode(bytes), case .produce(let produce) = request.body {
        for topic in produce.topicData {
            for partition in topic.partitionData {
                _ = try? WireBatch.decodeAll(partition.records ?? [], now: 0)
            }
        }
    }
    _ = try? WireBatch.decodeAll(bytes, now: 0)
    return 0
}
