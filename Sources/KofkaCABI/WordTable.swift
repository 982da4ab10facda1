/// A hash table keyed by machine words (handle tokens, message addresses), on every call of the
/// C face: open addressing with linear probing and Fibonacci hashing. `Dictionary` and `Set`
/// hash with SipHash, which cost more than the rest of a handle lookup; these keys are already
/// unique, well-spread words. Keys 0 and 1 mark empty and removed slots and are never used:
/// tokens carry a tag in their top bits and heap addresses are aligned.
///
/// ```swift
/// var t = WordTable<String>()
/// t.insert(0x4B46_0100_0000_0001, "broker")
/// t[0x4B46_0100_0000_0001]                       // "broker"
/// t.removeValue(for: 0x4B46_0100_0000_0001)      // "broker"
/// ```
struct WordTable<Value> {
    private var keys = [UInt64](repeating: 0, count: 64)
    private var values = [Value?](repeating: nil, count: 64)
    private var count = 0      // live entries
    private var used = 0       // live entries and removed markers

    private static var empty: UInt64 { 0 }
    private static var removed: UInt64 { 1 }

    @inline(__always)
    private func home(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: ((key >> 4) &* 0x9E37_79B9_7F4A_7C15) >> UInt64(64 - keys.count.trailingZeroBitCount))
    }

    /// The slot holding `key`, or nil.
    @inline(__always)
    private func find(_ key: UInt64) -> Int? {
        let mask = keys.count - 1
        var i = home(key)
        while keys[i] != Self.empty {
            if keys[i] == key { return i }
            i = (i + 1) & mask
        }
        return nil
    }

    /// The value for `key`, or nil.
    subscript(key: UInt64) -> Value? {
        find(key).flatMap { values[$0] }
    }

    /// Adds `key`, which must not be in the table: both users insert keys that are unique by
    /// construction (tokens are never reused; a live malloc block is never handed out twice).
    mutating func insert(_ key: UInt64, _ value: Value) {
        if (used + 1) * 2 > keys.count { rehash() }
        let mask = keys.count - 1
        var i = home(key)
        while keys[i] != Self.empty && keys[i] != Self.removed { i = (i + 1) & mask }
        if keys[i] == Self.empty { used += 1 }
        keys[i] = key
        values[i] = value
        count += 1
    }

    /// Removes `key` and returns its value, or nil when it was not there.
    @discardableResult
    mutating func removeValue(for key: UInt64) -> Value? {
        guard let i = find(key) else { return nil }
        let v = values[i]
        keys[i] = Self.removed
        values[i] = nil
        count -= 1
        return v
    }

    /// Clears removed markers, growing when live entries fill a quarter of the slots and
    /// shrinking only when they fill less than 1/16 of a large table (a poll's batch of
    /// messages comes and goes without the table changing size).
    private mutating func rehash() {
        var capacity = keys.count
        if count * 4 > capacity {
            capacity *= 2
        } else if capacity > 4096 && count * 16 < capacity {
            capacity /= 2
        }
        let oldKeys = keys, oldValues = values
        keys = [UInt64](repeating: 0, count: capacity)
        values = [Value?](repeating: nil, count: capacity)
        count = 0
        used = 0
        for (i, k) in oldKeys.enumerated() where k != Self.empty && k != Self.removed {
            if let v = oldValues[i] { insert(k, v) }
        }
    }
}
