/// The storage layer under a broker.
///
/// A backend stores two things, and nothing else:
///
/// * **Partition logs.** Each partition is identified by a *partition number* (`pnum`, a dense
///   integer the core assigns when a topic is created, `0 ..< 2^23`). A log is an append-only
///   sequence of records with offsets from 0 (`0 ..< 2^40`), dense when written. Retention
///   removes a prefix (the *log start offset* moves up); compaction removes single records
///   (gaps appear). Neither ever moves the high watermark.
/// * **A key/value map** of small metadata blobs (topics, producer sequence state, transactions,
///   groups, committed offsets), with ordered range scans over keys.
///
/// Every rule (dedup, fencing, transactions, groups) lives in the core, written against this
/// protocol; a backend's only duty is to make `write` atomic and isolated — every `put`,
/// `delete` and `append` inside one `write` call becomes visible together or not at all, across
/// threads *and processes* — and `read` a consistent snapshot.
public protocol StorageBackend: AnyObject, Sendable {
    /// Runs `body` in one exclusive, atomic write transaction (SQLite: `BEGIN IMMEDIATE`).
    /// If `body` throws, nothing it wrote persists and the error is rethrown. Not reentrant.
    func write<T>(_ body: (any StorageWriter) throws -> T) throws -> T

    /// Runs `body` on a consistent snapshot. May run concurrently with writers and other readers.
    func read<T>(_ body: (any StorageReader) throws -> T) throws -> T

    /// A number that changes whenever any writer (in this process or, for a shared file,
    /// any process) has committed. Cheap: called by every blocking poll.
    func changeToken() -> UInt64

    /// Blocks until `changeToken()` may differ from `token`, `wakeAll()` is called, or
    /// `timeoutNs` nanoseconds pass. It may return early (spuriously); callers re-check.
    /// In-process commits wake it at once; commits by other processes are noticed within a few
    /// milliseconds.
    func waitForChange(since token: UInt64, timeoutNs: UInt64)

    /// Wakes every `waitForChange` in this process (used when a handle is closed).
    func wakeAll()

    /// Gives back part of the space freed by deletions (SQLite: `incremental_vacuum` of a
    /// bounded number of pages, then a WAL checkpoint), holding the write lock briefly; returns
    /// true when there is more to give back (maintenance calls it again after a pause). May do
    /// nothing and return false.
    func reclaimSpace() throws -> Bool

    /// Releases resources. Later calls throw `KofkaError(.closed, …)`.
    func close()
}

extension StorageBackend {
    /// Nothing to give back (memory frees as it deletes).
    public func reclaimSpace() throws -> Bool { false }
}

/// Reads inside `StorageBackend.read` or `StorageBackend.write`.
public protocol StorageReader {
    /// The value stored under `key`, or `nil`.
    func get(_ key: String) throws -> [UInt8]?
    /// Every entry with `lower <= key < upper`, in ascending key order (byte order of UTF-8).
    func scan(from lower: String, to upper: String) throws -> [(key: String, value: [UInt8])]
    /// The next offset to be written in partition `pnum` (0 for an unknown partition). It never
    /// moves down, not even when every record was deleted.
    func highWatermark(_ pnum: Int64) throws -> Int64
    /// The first offset partition `pnum` may still hold: 0 until `truncateLog` moved it up.
    func logStartOffset(_ pnum: Int64) throws -> Int64
    /// Bytes held by partition `pnum`: the sum of key, value and encoded-header lengths of its
    /// records (what `retention.bytes` limits).
    func logBytes(_ pnum: Int64) throws -> Int64
    /// Records of partition `pnum` with `from <= offset < below`, ascending, at most `maxCount`
    /// (offsets removed by compaction or retention are simply absent).
    func readRecords(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int) throws -> [StoredRecord]
    /// The same records as `readRecords`, visited in place without copying (each view is valid
    /// only during its call). Returns how many were visited.
    func forEachRecord(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int, _ body: (RecordView) throws -> Void) throws -> Int
    /// Records as the backend holds them, when it holds them in Swift arrays that never change
    /// once written (the memory backend): the same records as `forEachRecord`, a run of one
    /// stored batch at a time, so a reader can keep the batch's buffer (a reference) instead
    /// of copying each record. Returns how many records were visited, or nil (having visited
    /// none) when the backend does not keep records so (SQLite, plugins: the default).
    func forEachRun(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int, _ body: (StoredRun) throws -> Void) throws -> Int?
}

extension StorageReader {
    public func forEachRun(_ pnum: Int64, from: Int64, below: Int64, maxCount: Int, _ body: (StoredRun) throws -> Void) throws -> Int? {
        nil
    }
}

/// Consecutive records of one stored batch (`StorageReader.forEachRun`): the batch's buffer,
/// which never changes once stored, and the run's entries in it.
public struct StoredRun {
    /// The stored batch's bytes (its `RecordBatch.buffer`).
    public let buffer: [UInt8]
    /// The run's records, in order: where each one's bytes are in `buffer`.
    public let entries: ArraySlice<RecordBatch.Entry>
    /// The transaction that wrote them (0 = none).
    public let txn: Int64
    /// The offset of `entries.first` when the offsets are dense; else `listed` has them.
    let base: Int64
    /// Each record's offset, in step with `entries`, when they are not dense.
    let listed: ArraySlice<Int64>?

    public init(buffer: [UInt8], entries: ArraySlice<RecordBatch.Entry>, txn: Int64, base: Int64, listed: ArraySlice<Int64>?) {
        self.buffer = buffer
        self.entries = entries
        self.txn = txn
        self.base = base
        self.listed = listed
    }

    /// The offset of the `k`-th record of the run.
    @inline(__always) public func offset(_ k: Int) -> Int64 {
        if let listed { return listed[listed.startIndex + k] }
        return base + Int64(k)
    }
}

/// A stored record seen in place, valid only during the `forEachRecord` call that shows it.
public struct RecordView {
    public var offset: Int64
    /// The transaction that wrote it (0 = none).
    public var txn: Int64
    public var timestampMs: Int64
    /// nil: no key; otherwise its bytes (possibly empty).
    public var key: UnsafeRawBufferPointer?
    /// nil: no value; otherwise its bytes (possibly empty).
    public var value: UnsafeRawBufferPointer?
    /// Encoded headers (`HeaderCodec`), nil when none.
    public var headers: UnsafeRawBufferPointer?

    /// A copy that outlives the view.
    public var stored: StoredRecord {
        StoredRecord(offset: offset, txn: txn, data: RecordData(timestampMs: timestampMs, key: key.map { Array($0) },
                                                              value: value.map { Array($0) }, headers: headers.map { Array($0) }))
    }
}

/// Writes inside `StorageBackend.write`.
public protocol StorageWriter: StorageReader {
    /// Stores `value` under `key`, replacing any earlier value.
    func put(_ key: String, _ value: [UInt8]) throws
    /// Removes `key` (no error if absent).
    func delete(_ key: String) throws
    /// Appends the batch's records to partition `pnum` at its high watermark, tagged with `txn`
    /// (0 = not transactional), and returns the offset of the first one.
    func append(_ pnum: Int64, _ batch: RecordBatch, txn: Int64) throws -> Int64
    /// Deletes every record of `pnum` below `offset` and makes `offset` the log start (clamped
    /// to the high watermark; an offset at or below the current log start changes nothing).
    /// Returns the log start afterwards.
    func truncateLog(_ pnum: Int64, before offset: Int64) throws -> Int64
    /// Removes the records of `pnum` at `offsets` (compaction). Offsets not held are ignored;
    /// the log start and the high watermark do not move.
    func removeRecords(_ pnum: Int64, at offsets: [Int64]) throws
}

extension StorageWriter {
    /// Appends `records` (copied into one batch).
    public func append(_ pnum: Int64, _ records: [RecordData], txn: Int64) throws -> Int64 {
        try append(pnum, RecordBatch(records), txn: txn)
    }
}

/// A record as the storage keeps it, before it has an offset.
public struct RecordData: Sendable, Hashable {
    /// Milliseconds since the epoch (already resolved: never 0-means-now here).
    public var timestampMs: Int64
    /// The key, or nil.
    public var key: [UInt8]?
    /// The value, or nil.
    public var value: [UInt8]?
    /// Headers encoded with `HeaderCodec`, or nil when there are none.
    public var headers: [UInt8]?

    public init(timestampMs: Int64, key: [UInt8]?, value: [UInt8]?, headers: [UInt8]?) {
        self.timestampMs = timestampMs
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// A record read back from a partition log.
public struct StoredRecord: Sendable, Hashable {
    /// Its offset in the partition.
    public var offset: Int64
    /// The transaction that wrote it (0 = none).
    public var txn: Int64
    /// Its contents.
    public var data: RecordData

    public init(offset: Int64, txn: Int64, data: RecordData) {
        self.offset = offset
        self.txn = txn
        self.data = data
    }
}

/// Limits shared by every backend.
public enum StorageLimits {
    /// Offsets per partition: `0 ..< 2^40`.
    public static let offsetBits: Int64 = 40
    /// Partition numbers: `0 ..< 2^23`.
    public static let maxPartitionNumbers: Int64 = 1 << 23
}

/// Compares strings by their UTF-8 bytes, the order `StorageReader.scan` promises
/// (and SQLite's BINARY collation uses).
@inline(__always)
func utf8Less(_ a: String, _ b: String) -> Bool {
    a.utf8.lexicographicallyPrecedes(b.utf8)
}

/// Throws `.invalidArg` unless `pnum` is a valid partition number.
@inline(__always)
func checkPartitionNumber(_ pnum: Int64) throws {
    guard pnum >= 0, pnum < StorageLimits.maxPartitionNumbers else {
        throw KofkaError(.invalidArg, "partition number \(pnum) is outside 0..<\(StorageLimits.maxPartitionNumbers)")
    }
}

/// Throws `.storage` if appending `count` records at `base` would exceed the offset space.
@inline(__always)
func checkOffsetSpace(_ pnum: Int64, base: Int64, count: Int) throws {
    guard Int64(count) <= (Int64(1) << StorageLimits.offsetBits) - base else {
        throw KofkaError(.storage, "partition \(pnum) is full: \(base) + \(count) records exceed 2^\(StorageLimits.offsetBits) offsets")
    }
}
