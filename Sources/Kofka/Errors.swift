/// The error codes of Kofka. Raw values equal the C enum `kofka_err` in `include/kofka.h`.
public enum ErrorCode: Int32, Sendable, CaseIterable {
    case ok = 0
    case invalidArg = 1
    case invalidConfig = 2
    case invalidState = 3
    case unknownTopic = 4
    case unknownPartition = 5
    case topicExists = 6
    case msgTooLarge = 7
    case offsetOutOfRange = 8
    case noOffset = 9
    case timedOut = 10
    case storage = 11
    case outOfOrderSequence = 12
    case producerFenced = 13
    case txnTimedOut = 14
    case rebalanced = 15
    case closed = 16
    case unsupported = 17
    case queueFull = 18
    case busy = 19
    case purged = 20

    /// The C name, e.g. `KOFKA_ERR_PRODUCER_FENCED`.
    public var name: String {
        switch self {
        case .ok: "KOFKA_OK"
        case .invalidArg: "KOFKA_ERR_INVALID_ARG"
        case .invalidConfig: "KOFKA_ERR_INVALID_CONFIG"
        case .invalidState: "KOFKA_ERR_INVALID_STATE"
        case .unknownTopic: "KOFKA_ERR_UNKNOWN_TOPIC"
        case .unknownPartition: "KOFKA_ERR_UNKNOWN_PARTITION"
        case .topicExists: "KOFKA_ERR_TOPIC_EXISTS"
        case .msgTooLarge: "KOFKA_ERR_MSG_TOO_LARGE"
        case .offsetOutOfRange: "KOFKA_ERR_OFFSET_OUT_OF_RANGE"
        case .noOffset: "KOFKA_ERR_NO_OFFSET"
        case .timedOut: "KOFKA_ERR_TIMED_OUT"
        case .storage: "KOFKA_ERR_STORAGE"
        case .outOfOrderSequence: "KOFKA_ERR_OUT_OF_ORDER_SEQUENCE"
        case .producerFenced: "KOFKA_ERR_PRODUCER_FENCED"
        case .txnTimedOut: "KOFKA_ERR_TXN_TIMED_OUT"
        case .rebalanced: "KOFKA_ERR_REBALANCED"
        case .closed: "KOFKA_ERR_CLOSED"
        case .unsupported: "KOFKA_ERR_UNSUPPORTED"
        case .queueFull: "KOFKA_ERR_QUEUE_FULL"
        case .busy: "KOFKA_ERR_BUSY"
        case .purged: "KOFKA_ERR_PURGED"
        }
    }

    /// One sentence describing the code.
    public var description: String {
        switch self {
        case .ok: "Success."
        case .invalidArg: "An argument is invalid: a NULL pointer, a negative size, a bad name or an unknown storage scheme."
        case .invalidConfig: "A configuration key is unknown, a value is invalid, or two settings contradict each other."
        case .invalidState: "The call is not allowed in the handle's current state."
        case .unknownTopic: "The topic does not exist."
        case .unknownPartition: "The topic has no such partition."
        case .topicExists: "The topic already exists."
        case .msgTooLarge: "The record is larger than message.max.bytes."
        case .offsetOutOfRange: "The offset is outside the partition's watermarks."
        case .noOffset: "There is no committed offset and auto.offset.reset is none."
        case .timedOut: "The operation timed out; for a send the outcome is unknown (request or acknowledgement lost)."
        case .storage: "The storage backend failed (I/O error, corruption, full disk, or a lock held too long)."
        case .outOfOrderSequence: "The idempotent producer's sequence number leaves a gap."
        case .producerFenced: "A newer producer with the same transactional.id or producer id has fenced this one."
        case .txnTimedOut: "The transaction was aborted because it stayed open longer than transaction.timeout.ms."
        case .rebalanced: "The consumer is not the owner of the partition in the group's current generation."
        case .closed: "The broker or handle was closed."
        case .unsupported: "The operation is not supported."
        case .queueFull: "The producer queue is full (queue.buffering.max.messages); serve delivery reports and retry."
        case .busy: "The storage stayed locked by another writer past its busy timeout; nothing was written, and the call may be repeated."
        case .purged: "The record was removed from the producer's queue before it was written, because its transaction was aborted."
        }
    }
}

/// An error thrown by Kofka: a code from `include/kofka.h` and a message that names the offending value.
///
/// ```swift
/// do { try broker.createTopic("orders", partitions: 3) }
/// catch let e as KofkaError where e.code == .topicExists { print(e.message) }
/// ```
public struct KofkaError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The error code.
    public let code: ErrorCode
    /// A human message naming the problem.
    public let message: String
    /// True when trying the same request again may succeed (a lock held by another writer, a
    /// lost request or acknowledgement); the producer's retry loop uses it.
    public let retriable: Bool

    public init(_ code: ErrorCode, _ message: String, retriable: Bool = false) {
        self.code = code
        self.message = message
        self.retriable = retriable
    }

    public var description: String { "\(code.name): \(message)" }
}

extension ErrorCode {
    /// True when the same call may succeed if repeated: the storage was busy (nothing was
    /// written), a request or acknowledgement was lost (outcome unknown: an idempotent producer
    /// retries safely, an at-least-once one may duplicate), or the producer queue was full.
    public var isRetriable: Bool {
        switch self {
        case .busy, .timedOut, .queueFull: true
        default: false
        }
    }
}
