import Kofka

/// The key/value map: get, put, delete, ordered half-open scans.
extension StorageConformance {
    static let keyValueChecks: [Check] = [
        Check("kvPutGetDeleteAndScanInByteOrderOverHalfOpenRanges",
              "put replaces, delete of a missing key is no error, get sees the transaction's own writes, scans are half-open in UTF-8 byte order (the empty key included).") { c in
            let s = try c.make()
            let keys = ["g/b/2", "g/a/1", "t/x", "g/a/0", "g/", "g/a", "h", "g/\u{e9}", "g/z", ""]
            try s.write { w throws in
                for (i, k) in keys.enumerated() { try w.put(k, [UInt8(i)]) }
                try w.put("g/a/1", [])         // overwrite with an empty value
                try w.put("t/x", [9, 0, 9])    // overwrite
                try w.delete("h")
                try w.delete("no-such-key")
                c.equal(try w.get("h"), nil, "a key deleted in this transaction")
                c.equal(try w.get("t/x"), [9, 0, 9], "a key overwritten in this transaction")
            }
            try s.read { r throws in
                c.equal(try r.get("g/a/1"), [], "an empty value is not a missing one")
                c.equal(try r.get("g/a/0"), [3])
                c.equal(try r.get(""), [9], "the empty key")
                c.equal(try r.get("h"), nil)
                c.equal(try r.get("missing"), nil)
                let g = try r.scan(from: "g/", to: "g0")
                c.equal(g.map(\.key), ["g/", "g/a", "g/a/0", "g/a/1", "g/b/2", "g/z", "g/\u{e9}"])
                c.equal(g.map(\.value), [[4], [5], [3], [], [0], [8], [7]])
                c.equal(try r.scan(from: "g/a/", to: "g/a0").map(\.key), ["g/a/0", "g/a/1"])
                c.equal(try r.scan(from: "g/a/1", to: "g/b/2").map(\.key), ["g/a/1"])
                c.equal(try r.scan(from: "x", to: "y").count, 0)
                c.equal(try r.scan(from: "t", to: "a").count, 0, "an inverted range")
                c.equal(try r.scan(from: "", to: "\u{10FFFF}").count, keys.count - 1, "everything")
            }
        },

        Check("kvKeysAreBytesANulInsideAKeyIsAByteLikeAnyOther",
              "A key with a NUL byte inside is its own key, not the prefix before the NUL: put, get, delete and scan keep every byte.") { c in
            let s = try c.make()
            let keys = ["n/a", "n/a\u{0}", "n/a\u{0}b", "n/a\u{0}\u{0}", "n/ab"]
            try s.write { w throws in
                for (i, k) in keys.enumerated() { try w.put(k, [UInt8(i)]) }
            }
            try s.read { r throws in
                for (i, k) in keys.enumerated() { c.equal(try r.get(k), [UInt8(i)], "key \(Array(k.utf8))") }
                c.equal(try r.scan(from: "n/", to: "n0").map { Array($0.key.utf8) },
                        keys.map { Array($0.utf8) }.sorted { $0.lexicographicallyPrecedes($1) }, "scan order with NULs")
                c.equal(try r.scan(from: "n/a\u{0}", to: "n/a\u{0}c").map(\.value), [[1], [3], [2]], "a range bounded by keys with NULs")
            }
            try s.write { w throws in try w.delete("n/a\u{0}b") }
            try s.read { r throws in
                c.equal(try r.get("n/a\u{0}b"), nil, "the deleted key")
                c.equal(try r.get("n/a"), [0], "the prefix before the NUL survives its longer key's delete")
                c.equal(try r.get("n/a\u{0}"), [1])
            }
        },

        Check("kvKeysOfAnyLengthKeepByteOrderAndLargeValuesRoundTrip",
              "Keys of 0 to 2000 bytes (group and transactional ids have no length limit) sharing long prefixes get, delete and scan in byte order; values up to 1 MiB round-trip.") { c in
            let s = try c.make()
            let long = String(repeating: "x", count: 600)
            var keys: [String] = ["c/" + long, "c/" + long + "a", "c/" + long + "b", "c/" + long + long, "c/" + long + "\u{1}t",
                                  "c/" + String(repeating: "x", count: 599), "c/" + String(repeating: "x", count: 599) + "y",
                                  "c/" + String(repeating: "y", count: 2000), "c/", "c/a", "c/" + String(repeating: "x", count: 509),
                                  "c/" + String(repeating: "x", count: 510), "c/" + String(repeating: "x", count: 511)]
            keys += (0..<20).map { "c/" + String(repeating: "z", count: 480 + $0 * 7) }
            let big = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            try s.write { w throws in
                for (i, k) in keys.enumerated() { try w.put(k, [UInt8(i)] + (i == 3 ? big : [])) }
                try w.put("c/" + long + "a", [77])
                try w.delete("c/" + long + "b")
                c.equal(try w.get("c/" + long + "b"), nil, "a long key deleted in this transaction")
                c.equal(try w.get("c/" + long + "a"), [77], "a long key overwritten in this transaction")
            }
            let expected = keys.filter { $0 != "c/" + long + "b" }.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            try s.read { r throws in
                let all = try r.scan(from: "c/", to: "c0")
                c.equal(all.map(\.key.utf8.count), expected.map(\.utf8.count), "key lengths in scan order")
                c.expect(all.map(\.key) == expected, "scan order of long keys")
                c.equal(try r.get("c/" + long + "a"), [77])
                c.equal(try r.get("c/" + long + "b"), nil)
                c.equal(try r.get("c/" + long + "c"), nil, "a long key never written")
                c.equal(try r.get("c/" + long + long), [3] + big, "a 1 MiB value under a 1202-byte key")
                c.equal(try r.get(keys[7]), [7], "a 2002-byte key")
                // A range whose bounds are long keys, inside a run of keys sharing 600 bytes.
                let mid = try r.scan(from: "c/" + long + "\u{1}", to: "c/" + long + "a\u{1}").map(\.key)
                c.equal(mid.map(\.utf8.count), ["c/" + long + "\u{1}t", "c/" + long + "a"].map(\.utf8.count))
                c.expect(mid == ["c/" + long + "\u{1}t", "c/" + long + "a"], "a scan between two long keys")
                c.equal(try r.scan(from: "c/" + long + "a", to: "c/" + long + "a").count, 0, "an empty range of long keys")
                let fromLong = try r.scan(from: "c/" + String(repeating: "x", count: 599) + "y", to: "c0").map(\.key)
                c.expect(fromLong == expected.filter { !$0.utf8.lexicographicallyPrecedes(("c/" + String(repeating: "x", count: 599) + "y").utf8) },
                         "a scan from a long key to the end")
            }
            try s.write { w throws in for k in keys { try w.delete(k) } }
            c.equal(try s.read { try $0.scan(from: "", to: "\u{10FFFF}").count }, 0, "every key deleted")
        },
    ]
}
