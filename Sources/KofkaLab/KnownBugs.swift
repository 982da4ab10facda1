import Kofka

/// The bugs an outside (Jepsen-style) review found in exactly-once, each as the minimal history
/// the explorer shrank it to, kept in the history file format so they replay without the
/// generator. On the core the review broke, each shows its violation; a fix makes it run clean.
/// (They are not in the test suite, which must pass once the core is fixed: `kofka lab bugs`
/// runs them.)
public struct LabKnownBug: Sendable {
    /// The review's number, and a letter when one bug has several faces.
    public var number: String
    public var title: String
    /// The violations that show it.
    public var kinds: [LabViolationKind]
    /// It needs a busy SQLite writer.
    public var needsSQLite: Bool
    /// The history, in the file format.
    public var text: String

    public func history() throws -> LabHistory { try LabHistory(decoding: text) }
}

public enum LabKnownBugs {
    public static let all: [LabKnownBug] = [
        LabKnownBug(number: "1a", title: "abort after an unknown outcome reuses sequence numbers: the transactional producer's redo is acknowledged with the aborted offset",
                    kinds: [.ackMismatch, .lostInput], needsSQLite: false, text: """
            kofka-lab-history 1
            seed 1011
            partitions 3
            storage-faults 0.03 1018
            producer at-most-once 0.0 0.0 - 1111
            producer at-least-once 0.3 0.3 - 1112
            producer exactly-once 0.3 0.1 2 1113
            txn-input 0.1 0.3 0 short redo 1211
            eo 0.3 0.0 0 long redo 1311
            eo 0.1 0.3 0 long rewind 1312
            slots alo=2 amo=0 late=0
            20 tx-batch 201,202
            28 tx-batch 281 later
            """),
        LabKnownBug(number: "1b", title: "the same, in an exactly-once pipeline that rewinds and re-polls: the re-sent batch is acknowledged with the aborted offset",
                    kinds: [.ackMismatch, .lostOutput], needsSQLite: false, text: """
            kofka-lab-history 1
            seed 3
            partitions 3
            producer at-most-once 0.3 0.0 - 103
            producer at-least-once 0.3 0.3 - 104
            producer exactly-once 0.3 0.3 2 105
            eo 0.3 0.1 0 long rewind 303
            eo 0.0 0.1 3 long rewind 304
            slots alo=1 amo=1 late=0
            93 start eo 0 short
            94 produce p1 941,942,943
            """),
        LabKnownBug(number: "1c", title: "the same with a batch of another size: OUT_OF_ORDER_SEQUENCE",
                    kinds: [.outOfOrderSequence, .liveness], needsSQLite: false, text: """
            kofka-lab-history 1
            seed 1004
            partitions 3
            producer at-most-once 0.3 0.0 - 1104
            producer at-least-once 0.3 0.0 - 1105
            producer exactly-once 0.0 0.1 2 1106
            eo 0.1 0.3 0 short rewind 1304
            eo 0.0 0.3 0 long redo 1305
            slots alo=1 amo=1 late=0
            107 start eo 1 short
            118 batch p0 1181,1182,1183,1184
            121 send p1 1211,1212
            """),
        LabKnownBug(number: "2", title: "abort leaves queued records behind: they are written into the next transaction",
                    kinds: [.lateWrite, .abortedVisible], needsSQLite: false, text: """
            kofka-lab-history 1
            seed 1558
            partitions 3
            storage-faults 0.03 1565
            producer at-most-once 0.0 0.0 - 1658
            producer at-least-once 0.1 0.1 - 1659
            producer exactly-once 0.3 0.0 2 1660
            txn-input 0.0 0.0 3 long redo 1758
            eo 0.0 0.3 1 long rewind 1858
            eo 0.3 0.1 0 short rewind 1859
            slots alo=2 amo=1 late=0
            69 tx-produce 691,692
            77 tx-abort zero
            92 tx-begin
            """),
        LabKnownBug(number: "3a", title: "rebalance inside an open transaction: the commit succeeds without the lost partition's offsets",
                    kinds: [.offsetsNotCommitted, .duplicateOutput], needsSQLite: false, text: """
            kofka-lab-history 1
            seed 1020
            partitions 3
            producer at-most-once 0.1 0.0 - 1120
            producer at-least-once 0.0 0.0 2 1121
            producer exactly-once 0.0 0.0 - 1122
            txn-input 0.0 0.0 0 long rewind 1220
            eo 0.3 0.1 0 long redo 1320
            eo 0.0 0.0 3 short redo 1321
            slots alo=1 amo=0 late=0
            8 start eo 0 short
            21 batch p0 211,212
            23 start eo 1 short
            29 stall-one eo 1 3000
            31 crash eo 1
            32 start eo 1 short
            35 poll eo 0 4
            """),
        LabKnownBug(number: "3b", title: "commit_transaction succeeds after send_offsets_to_transaction failed with REBALANCED",
                    kinds: [.commitAfterFailedOffsets], needsSQLite: false, text: """
            kofka-lab-history 1
            seed 1003
            partitions 2
            producer at-most-once 0.3 0.0 - 1103
            producer at-least-once 0.1 0.0 - 1104
            producer exactly-once 0.0 0.3 2 1105
            txn-input 0.0 0.0 2147483647 short redo 1203
            eo 0.0 0.0 2147483647 long rewind 1303
            eo 0.0 0.1 2147483647 short redo 1304
            eo 0.0 0.0 2147483647 long rewind 1305
            slots alo=1 amo=1 late=0
            2 start eo 1 short
            4 start eo 0 short
            6 start eo 2 short
            8 batch p0 81,82
            52 stall 25000
            56 stall-one amo 0 25000
            57 commit eo 0 anyway
            """),
        LabKnownBug(number: "3c", title: "a member expired inside its transaction rejoins within a poll and reads the same records again: duplicates",
                    kinds: [.duplicateOutput, .offsetsNotCommitted], needsSQLite: false, text: """
            kofka-lab-history 1
            seed 1157
            partitions 3
            producer at-most-once 0.3 0.0 - 1257
            producer at-least-once 0.1 0.0 - 1258
            producer exactly-once 0.0 0.0 - 1259
            txn-input 0.0 0.0 0 short rewind 1357
            eo 0.3 0.1 3 short rewind 1457
            eo 0.1 0.3 3 short redo 1458
            slots alo=1 amo=1 late=1
            4 start eo 1 short
            6 send p0 61,62,63
            9 poll eo 1 1
            10 start eo 0 long
            12 stall 25000
            19 close eo 0
            26 process eo 1 produce
            61 poll eo 1 2
            """),
        LabKnownBug(number: "4", title: "a dead instance's pending offsets block its partitions for good",
                    kinds: [.liveness], needsSQLite: false, text: """
            kofka-lab-history 1
            seed 1190
            partitions 3
            producer at-most-once 0.0 0.0 - 1290
            producer at-least-once 0.3 0.0 - 1291
            producer exactly-once 0.1 0.0 - 1292
            eo 0.0 0.3 1 long rewind 1490
            eo 0.0 0.1 0 short redo 1491
            slots alo=2 amo=0 late=0
            44 start eo 1 short
            52 batch p1 521,522,523
            64 poll eo 1 3
            66 crash eo 1 after-offsets
            """),
        LabKnownBug(number: "5", title: "Producer.close leaves an abortable transaction open: read_committed readers stall",
                    kinds: [.lsoStuck], needsSQLite: false, text: """
            kofka-lab-history 1
            seed 1814
            partitions 4
            storage-faults 0.03 1821
            producer at-most-once 0.1 0.0 - 1914
            producer at-least-once 0.0 0.1 - 1915
            producer exactly-once 0.1 0.1 - 1916
            eo 0.3 0.3 1 long redo 2114
            eo 0.0 0.3 0 long rewind 2115
            eo 0.3 0.3 3 long redo 2116
            slots alo=1 amo=0 late=0
            23 start eo 1 long
            24 send p2 241,242
            34 stall-one eo 0 15000
            51 process eo 1 produce
            64 close eo 1
            """),
        LabKnownBug(number: "6", title: "an at-most-once poll whose pre-return commit fails (busy) skips its records",
                    kinds: [.amoSkipped], needsSQLite: true, text: """
            kofka-lab-history 1
            seed 1
            partitions 3
            storage-faults 0.03 8
            producer at-most-once 0.0 0.0 - 101
            producer at-least-once 0.0 0.1 - 102
            producer exactly-once 0.0 0.0 - 103
            eo 0.0 0.0 0 short redo 301
            eo 0.0 0.1 0 short rewind 302
            slots alo=2 amo=1 late=0
            93 start amo 0 short
            98 busy
            101 batch p2 1011,1012,1013,1014
            102 poll amo 0 1
            """),
        LabKnownBug(number: "7", title: "read_committed with auto.offset.reset=latest starts at the high watermark, not the last stable offset",
                    kinds: [.lateMissed], needsSQLite: false, text: """
            kofka-lab-history 1
            seed 1002
            partitions 2
            producer at-most-once 0.3 0.0 - 1102
            producer at-least-once 0.0 0.1 2 1103
            producer exactly-once 0.3 0.3 - 1104
            txn-input 0.0 0.1 1 short rewind 1202
            eo 0.0 0.0 1 long redo 1302
            eo 0.3 0.0 1 short rewind 1303
            slots alo=1 amo=1 late=1
            19 tx-batch 191,192,193,194 later
            20 start late 0 long
            25 stall-one eo 1 15000
            """),
    ]
}
