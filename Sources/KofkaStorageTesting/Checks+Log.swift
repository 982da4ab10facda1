import Kofka
import Dispatch

/// Partition logs: offsets, what a record keeps, reading ranges, writers on many threads.
extension StorageConformance {
    static let logChecks: [Check] = [
        Check("offsetsAreDenseFromZeroAcrossBatchesAndPartitions",
              "Appends get dense offsets from 0 per partition, across batches, writes and the whole partition-number range; bad partition numbers are refused.") { c in
            let s = try c.make()
            c.equal(try s.read { try $0.highWatermark(0) }, 0)
            c.equal(try s.read { try $0.highWatermark(12345) }, 0)
            let a0 = try s.write { try $0.append(0, Fixtures.batch(3), txn: 0) }
            let b0 = try s.write { try $0.append(1, Fixtures.batch(2), txn: 0) }
            let (a1, a2, b1) = try s.write { w throws in
                (try w.append(0, Fixtures.batch(4), txn: 0), try w.append(0, Fixtures.batch(1), txn: 0), try w.append(1, Fixtures.batch(5), txn: 0))
            }
            let empty = try s.write { try $0.append(0, [], txn: 0) }
            c.equal([a0, a1, a2, empty], [0, 3, 7, 8], "bases of appends to partition 0 (the last one empty)")
            c.equal([b0, b1], [0, 2], "bases of appends to partition 1")
            let big = StorageLimits.maxPartitionNumbers - 1
            c.equal(try s.write { try $0.append(big, Fixtures.batch(2), txn: 0) }, 0, "the largest partition number")
            try s.read { r throws in
                c.equal(try r.highWatermark(0), 8)
                c.equal(try r.highWatermark(1), 7)
                c.equal(try r.highWatermark(2), 0)
                c.equal(try r.highWatermark(big), 2)
                c.equal(try r.readRecords(0, from: 0, below: 100, maxCount: 100).map(\.offset), Array(0..<8))
                c.equal(try r.readRecords(1, from: 0, below: 100, maxCount: 100).map(\.offset), Array(0..<7))
                c.equal(try r.readRecords(big, from: 0, below: 100, maxCount: 100).map(\.offset), [0, 1])
            }
            c.throwsKofkaError(nil, "partition number -1") { try s.write { _ = try $0.append(-1, Fixtures.batch(1), txn: 0) } }
            c.throwsKofkaError(nil, "partition number 2^23") { try s.write { _ = try $0.append(big + 1, Fixtures.batch(1), txn: 0) } }
        },

        Check("recordsRoundTripExactlyNullVsEmptyBinaryTimestampsAndTxn",
              "A record reads back byte for byte: no key/value/headers stays distinct from empty, binary and large bytes, extreme timestamps, the writing transaction.") { c in
            let s = try c.make()
            let binary: [UInt8] = [0, 1, 0, 255, 0, 0x80, 0]
            let input = [
                Fixtures.rec(0, nil, nil, nil),
                Fixtures.rec(1, [], [], []),
                Fixtures.rec(-5, nil, [], nil),
                Fixtures.rec(Int64.max, [], nil, []),
                Fixtures.rec(1_700_000_000_123, binary, binary + binary, [0]),
                Fixtures.rec(Int64.min, Array(repeating: 7, count: 100_000), [0], nil),
            ]
            _ = try s.write { try $0.append(3, Array(input[0..<2]), txn: 0) }
            _ = try s.write { try $0.append(3, Array(input[2...]), txn: 42) }
            let out = try s.read { try $0.readRecords(3, from: 0, below: 10, maxCount: 10) }
            c.equal(out.count, input.count, "records read")
            c.equal(out.map(\.data), input)
            c.equal(out.map(\.txn), [0, 0, 42, 42, 42, 42])
            c.equal(out.map(\.offset), Array(0..<6))
            if out.count >= 2 {
                c.expect(out[0].data.key == nil && out[1].data.key == [], "no key vs empty key")
                c.expect(out[0].data.value == nil && out[1].data.value == [], "no value vs empty value")
                c.expect(out[0].data.headers == nil && out[1].data.headers == [], "no headers vs empty headers")
            }
        },

        Check("readRecordsHonoursFromBelowAndMaxCount",
              "A read returns exactly the records with from <= offset < below, at most maxCount, for empty, inverted, negative and out-of-range bounds.") { c in
            let s = try c.make()
            _ = try s.write { try $0.append(5, Fixtures.batch(10), txn: 0) }
            _ = try s.write { try $0.append(6, Fixtures.batch(3), txn: 0) }
            try s.read { r throws in
                func offs(_ from: Int64, _ below: Int64, _ max: Int) throws -> [Int64] {
                    try r.readRecords(5, from: from, below: below, maxCount: max).map(\.offset)
                }
                c.equal(try offs(0, 10, 100), Array(0..<10))
                c.equal(try offs(3, 7, 100), [3, 4, 5, 6])
                c.equal(try offs(3, 7, 2), [3, 4])
                c.equal(try offs(8, 1000, 100), [8, 9])
                c.equal(try offs(10, 20, 100), [])
                c.equal(try offs(5, 5, 100), [])
                c.equal(try offs(7, 3, 100), [])
                c.equal(try offs(0, 10, 0), [])
                c.equal(try offs(-3, 2, 100), [0, 1])
                let rs = try r.readRecords(5, from: 4, below: 6, maxCount: 10)
                c.equal(rs.map(\.data.value), [Array("v0-4".utf8), Array("v0-5".utf8)])
                // forEachRecord shows the same records in place and counts them.
                var seen: [Int64] = []
                let n = try r.forEachRecord(5, from: 2, below: 9, maxCount: 4) { seen.append($0.offset) }
                c.equal(seen, [2, 3, 4, 5], "forEachRecord")
                c.equal(n, 4, "forEachRecord's count")
            }
        },

        Check("concurrentWritersFromEightThreadsGetDenseDistinctOffsets",
              "Eight threads writing at once each get an exclusive transaction: batches land whole and contiguous, offsets dense and distinct.") { c in
            let storage = try c.make()
            let threads = 8, rounds = 25, perBatch = 4
            let results = ThreadResults()
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                for r in 0..<rounds {
                    do {
                        let base = try storage.write { w throws in
                            let base = try w.append(9, Fixtures.batch(perBatch, tag: t * 1000 + r), txn: Int64(t))
                            try w.put("last/\(t)", [UInt8(r)])
                            return base
                        }
                        results.add(base)
                    } catch {
                        results.fail("\(error)")
                    }
                }
            }
            c.equal(results.errors.count, 0, "errors: \(results.errors.prefix(3))")
            c.equal(results.bases.sorted(), (0..<(threads * rounds)).map { Int64($0 * perBatch) }, "batch bases")
            let all = try storage.read { try $0.readRecords(9, from: 0, below: 1 << 40, maxCount: 1 << 20) }
            c.equal(all.map(\.offset), (0..<Int64(threads * rounds * perBatch)).map { $0 }, "offsets")
            c.equal(Set(all.map(\.data.value)).count, all.count, "distinct values")
            // Each batch stayed contiguous and carries its writer's tag.
            var torn = 0
            for b in stride(from: 0, to: all.count - perBatch + 1, by: perBatch) where Set(all[b..<b + perBatch].map(\.txn)).count != 1 { torn += 1 }
            c.equal(torn, 0, "batches interleaved with another writer's")
            for t in 0..<threads {
                c.equal(try storage.read { try $0.get("last/\(t)") }, [UInt8(rounds - 1)], "thread \(t)'s last put")
            }
        },
    ]
}
