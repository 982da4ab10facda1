import Kofka

/// A delivery checker in the spirit of Jepsen's queue checker.
///
/// A workload writes records with unique ids and tells the checker what happened to each send
/// (acknowledged, failed, or unknown — a timeout with the outcome unknown); it also tells the
/// checker which ids were written inside aborted transactions. Then it feeds the checker every
/// record it read (or processed). The report names:
///
/// * **lost** — acknowledged ids never read;
/// * **duplicated** — ids read more than once (counting the extra reads);
/// * **unexpected** — ids read that were never sent, or whose send definitely failed;
/// * **aborted reads** — ids read that were written only by aborted transactions;
/// * **reordered** — reads, within one partition, of an id sent before one already read there.
///
/// Unknown-outcome ids that were read count as *recovered*; unknown ones never read are neither
/// lost nor an error (that is what "outcome unknown" means).
///
/// ```swift
/// var c = DeliveryChecker()
/// c.sent(1, .acknowledged); c.sent(2, .unknown)
/// c.read(1, partition: 0)
/// let r = c.report()   // r.lost == [], r.recovered == 0
/// ```
public struct DeliveryChecker: Sendable {
    /// What a producer learned about one send.
    public enum Outcome: Sendable {
        case acknowledged, failed, unknown
    }

    private var outcomes: [UInt64: Outcome] = [:]
    /// Send order, for the order check.
    private var sendIndex: [UInt64: Int] = [:]
    private var abortedIds: Set<UInt64> = []
    private var readCounts: [UInt64: Int] = [:]
    private var lastIndexByPartition: [String: Int] = [:]
    private var reorderedReads = 0
    private var totalReads = 0

    public init() {}

    /// Records the outcome of sending `id`. A later call for the same id upgrades `unknown`/`failed`
    /// to `acknowledged` (a retry that succeeded).
    public mutating func sent(_ id: UInt64, _ outcome: Outcome) {
        if sendIndex[id] == nil { sendIndex[id] = sendIndex.count }
        if outcomes[id] != .acknowledged { outcomes[id] = outcome }
    }

    /// Records that `id` was written in a transaction that aborted.
    public mutating func abortedWrite(_ id: UInt64) { abortedIds.insert(id) }

    /// Records one read (or processing) of `id` from `partition` (any label; order is checked per label).
    public mutating func read(_ id: UInt64, partition: String = "") {
        totalReads += 1
        let first = readCounts[id] == nil
        readCounts[id, default: 0] += 1
        guard first, let idx = sendIndex[id] else { return }
        if let last = lastIndexByPartition[partition], idx < last {
            reorderedReads += 1
        } else {
            lastIndexByPartition[partition] = idx
        }
    }

    /// The findings.
    public func report() -> Report {
        var r = Report()
        r.sent = outcomes.count
        for (id, o) in outcomes {
            switch o {
            case .acknowledged:
                r.acknowledged += 1
                if readCounts[id] == nil { r.lost.append(id) }
            case .failed:
                r.failed += 1
            case .unknown:
                r.unknown += 1
                if readCounts[id] != nil { r.recovered += 1 } else { r.unknownNeverRead += 1 }
            }
        }
        r.reads = totalReads
        r.uniqueReads = readCounts.count
        for (id, n) in readCounts {
            if n > 1 { r.duplicates[id] = n - 1 }
            if let o = outcomes[id] {
                if o == .failed { r.unexpected.append(id) }
                if abortedIds.contains(id) && o != .acknowledged { r.abortedReads.append(id) }
            } else if abortedIds.contains(id) {
                r.abortedReads.append(id)
            } else {
                r.unexpected.append(id)
            }
        }
        r.reordered = reorderedReads
        r.lost.sort(); r.unexpected.sort(); r.abortedReads.sort()
        return r
    }

    /// What the checker found.
    public struct Report: Sendable, CustomStringConvertible {
        /// Distinct ids sent.
        public var sent = 0
        public var acknowledged = 0
        public var failed = 0
        public var unknown = 0
        /// Unknown-outcome ids that were read after all.
        public var recovered = 0
        /// Unknown-outcome ids never read (lost by the link, as the mode allows).
        public var unknownNeverRead = 0
        /// All reads, including duplicates.
        public var reads = 0
        public var uniqueReads = 0
        /// Acknowledged ids never read.
        public var lost: [UInt64] = []
        /// id → extra reads.
        public var duplicates: [UInt64: Int] = [:]
        /// Ids read that were never sent or whose send failed.
        public var unexpected: [UInt64] = []
        /// Ids read that only aborted transactions wrote.
        public var abortedReads: [UInt64] = []
        /// First reads out of send order within a partition.
        public var reordered = 0

        /// Extra reads in all.
        public var duplicateCount: Int { duplicates.values.reduce(0, +) }

        public var description: String {
            "sent \(sent) (ack \(acknowledged), failed \(failed), unknown \(unknown)), read \(reads) (\(uniqueReads) unique): "
                + "lost \(lost.count), duplicated \(duplicateCount), unexpected \(unexpected.count), aborted reads \(abortedReads.count), reordered \(reordered)"
        }
    }
}

/// Unique-id record values for workloads: `"id:<n>"`.
public enum LabValue {
    public static func encode(_ id: UInt64) -> [UInt8] { Array("id:\(id)".utf8) }
    public static func decode(_ bytes: [UInt8]?) -> UInt64? {
        guard let b = bytes, b.count > 3, b[0] == 0x69, b[1] == 0x64, b[2] == 0x3a else { return nil }
        return UInt64(String(decoding: b[3...], as: UTF8.self))
    }
}
