import Kofka

/// Delta debugging over a failing history's operations: drop chunks, then single operations,
/// while a sequential run still breaks the same rule. What is left is a minimal history (no one
/// operation can go) that replays exactly.
public enum LabShrinker {
    /// The smallest sub-history of `history` found in `maxSeconds` that still shows `kind`, and
    /// how many runs it took.
    /// `sabotage` is switched on in every run (the explorer's own tests).
    public static func shrink(_ history: LabHistory, kind: LabViolationKind, storage: LabStorage,
                              maxSeconds: Double = 60, sabotage: LabSabotage? = nil) -> (history: LabHistory, runs: Int) {
        let deadline = monoNs() &+ UInt64(maxSeconds * 1e9)
        var runs = 0
        func fails(_ positions: [Int]) -> Bool {
            runs += 1
            return LabRunner.run(history.keeping(positions: positions), storage: storage, sabotage: sabotage).violations.first?.kind == kind
        }
        var current = Array(history.ops.indices)
        var n = 2
        // ddmin: remove one of n chunks at a time; refine when none can go
        while current.count >= 2 && monoNs() < deadline {
            let size = (current.count + n - 1) / n
            var reduced = false
            var start = 0
            while start < current.count && monoNs() < deadline {
                let candidate = Array(current[..<start]) + Array(current[min(current.count, start + size)...])
                if !candidate.isEmpty && fails(candidate) {
                    current = candidate
                    n = max(n - 1, 2)
                    reduced = true
                    break
                }
                start += size
            }
            if !reduced {
                if n >= current.count { break }
                n = min(current.count, n * 2)
            }
        }
        // one operation at a time, until none can go
        var changed = true
        while changed && monoNs() < deadline {
            changed = false
            var i = current.count - 1
            while i >= 0 && monoNs() < deadline {
                var candidate = current
                candidate.remove(at: i)
                if !candidate.isEmpty && fails(candidate) {
                    current = candidate
                    changed = true
                }
                i -= 1
            }
        }
        return (history.keeping(positions: current), runs)
    }
}
