/// A small, seedable pseudo-random generator (SplitMix64) so fault runs repeat.
package struct SplitMix64: RandomNumberGenerator, Sendable {
    package var state: UInt64
    package init(seed: UInt64) { state = seed }
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// A double in [0, 1).
    package mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// 8 random hex digits.
    package mutating func unitHex() -> String {
        let s = String(next() & 0xffff_ffff, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }
}
