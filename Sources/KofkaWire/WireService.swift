import Kofka

/// What the protocol layer makes of one request frame.
public enum WireOutcome: Sendable {
    /// Send these bytes (a whole response frame, size prefix included).
    case reply([UInt8])
    /// Send nothing (a Produce with acks=0).
    case noReply
    /// Close the connection (Kafka's answer to a request it cannot parse: an unknown API key,
    /// an unsupported version of an API other than ApiVersions, a malformed header).
    case close(String)
    /// The answer must wait (a Fetch below its min bytes, a JoinGroup or SyncGroup waiting for
    /// the rest of its group): call `pending.retry` again when storage changes or soon after,
    /// and with `expired` true once `pending.deadlineNs` (monotonic) has passed.
    case wait(WirePending)
}

/// A request whose answer waits for something (data, the rest of a group, a deadline).
public final class WirePending: Sendable {
    /// When the request must be answered whatever happens (monotonic ns).
    public let deadlineNs: UInt64
    private let body: @Sendable (_ expired: Bool) -> WireOutcome
    init(deadlineNs: UInt64, _ body: @escaping @Sendable (_ expired: Bool) -> WireOutcome) {
        self.deadlineNs = deadlineNs
        self.body = body
    }
    /// Tries again; `expired` asks for the final answer.
    public func retry(expired: Bool) -> WireOutcome { body(expired) }
}

/// The Kafka protocol served on a Kofka broker: decode a request, call the core, encode the
/// response. No I/O here: a transport (KofkaServer) hands whole frames in and writes what comes
/// out, in order per connection. One node (this one, id 0) is the controller, the leader of
/// every partition and the coordinator of every group and transactional id.
///
/// ```swift
/// let service = WireService(broker: broker, host: "127.0.0.1", port: 9092)
/// switch service.handle(frame) { case .reply(let bytes): send(bytes) default: … }
/// ```
public final class WireService: Sendable {
    public let broker: Broker
    /// The address clients are told to connect to (Metadata, FindCoordinator).
    public let host: String
    public let port: Int32
    public let nodeId: Int32 = 0
    /// The classic group coordinator (memberships and join rounds; generations live in storage).
    let groups: ClassicCoordinator
    /// transaction.timeout.ms per producer id, from InitProducerId (default 60 s).
    let txnTimeouts = Locked<[Int64: Int32]>([:])
    /// Largest request frame accepted (bigger ones close the connection).
    public static let maxFrameBytes = 100 << 20

    public init(broker: Broker, host: String, port: Int32) {
        self.broker = broker
        self.host = host
        self.port = port
        self.groups = ClassicCoordinator(broker: broker)
    }

    /// The APIs served and the versions advertised in ApiVersions: each one implemented and
    /// exercised by the tests with real clients (`Tests/wire`).
    public static let supported: [(key: Int16, name: String, versions: ClosedRange<Int16>)] = [
        (0, "Produce", 0...9),
        (1, "Fetch", 4...12),
        (2, "ListOffsets", 1...7),
        (3, "Metadata", 0...12),
        (8, "OffsetCommit", 0...8),
        (9, "OffsetFetch", 0...7),
        (10, "FindCoordinator", 0...4),
        (11, "JoinGroup", 0...7),
        (12, "Heartbeat", 0...4),
        (13, "LeaveGroup", 0...4),
        (14, "SyncGroup", 0...5),
        (15, "DescribeGroups", 0...5),
        (16, "ListGroups", 0...4),
        (18, "ApiVersions", 0...3),
        (19, "CreateTopics", 0...7),
        (20, "DeleteTopics", 0...6),
        (21, "DeleteRecords", 0...2),
        (22, "InitProducerId", 0...4),
        (23, "OffsetForLeaderEpoch", 0...4),
        (24, "AddPartitionsToTxn", 0...3),
        (25, "AddOffsetsToTxn", 0...3),
        (26, "EndTxn", 0...3),
        (28, "TxnOffsetCommit", 0...3),
        (32, "DescribeConfigs", 0...4),
    ]
    static let versionsByKey: [Int16: ClosedRange<Int16>] = Dictionary(uniqueKeysWithValues: supported.map { ($0.key, $0.versions) })

    /// The request header version for `api` at `version` (2 when the request is flexible).
    static func requestHeaderVersion(_ api: Int16, _ version: Int16) -> Int16 {
        firstFlexible(api).map { version >= $0 ? 2 : 1 } ?? 1
    }

    /// The first flexible version of a request.
    static func firstFlexible(_ api: Int16) -> Int16? {
        switch api {
        case 0: ProduceRequest.firstFlexible
        case 1: FetchRequest.firstFlexible
        case 2: ListOffsetsRequest.firstFlexible
        case 3: MetadataRequest.firstFlexible
        case 8: OffsetCommitRequest.firstFlexible
        case 9: OffsetFetchRequest.firstFlexible
        case 10: FindCoordinatorRequest.firstFlexible
        case 11: JoinGroupRequest.firstFlexible
        case 12: HeartbeatRequest.firstFlexible
        case 13: LeaveGroupRequest.firstFlexible
        case 14: SyncGroupRequest.firstFlexible
        case 15: DescribeGroupsRequest.firstFlexible
        case 16: ListGroupsRequest.firstFlexible
        case 18: ApiVersionsRequest.firstFlexible
        case 19: CreateTopicsRequest.firstFlexible
        case 20: DeleteTopicsRequest.firstFlexible
        case 21: DeleteRecordsRequest.firstFlexible
        case 22: InitProducerIdRequest.firstFlexible
        case 23: OffsetForLeaderEpochRequest.firstFlexible
        case 24: AddPartitionsToTxnRequest.firstFlexible
        case 25: AddOffsetsToTxnRequest.firstFlexible
        case 26: EndTxnRequest.firstFlexible
        case 28: TxnOffsetCommitRequest.firstFlexible
        case 32: DescribeConfigsRequest.firstFlexible
        default: nil
        }
    }

    /// Handles one request frame (without its 4-byte size prefix): decode, call the core, encode.
    public func handle(_ frame: [UInt8]) -> WireOutcome {
        let request: WireRequest
        switch Self.decode(frame) {
        case .refused(let why):
            return .close(why)
        case .unsupportedApiVersions(let correlation):
            // Kafka's answer to an ApiVersions it cannot read: error 35 in a v0 response listing
            // the versions it does support, so the client downgrades.
            var resp = ApiVersionsResponse()
            resp.errorCode = KafkaError.unsupportedVersion
            resp.apiKeys = Self.supported.map { var v = ApiVersionsResponse.ApiVersion(); v.apiKey = $0.key; v.minVersion = $0.versions.lowerBound; v.maxVersion = $0.versions.upperBound; return v }
            return .reply(Self.frame(correlation: correlation, headerVersion: 0) { resp.encode(to: &$0, version: 0) })
        case .request(let r):
            request = r
        }
        let ctx = RequestContext(api: request.header.requestApiKey, version: request.header.requestApiVersion,
                                 correlation: request.header.correlationId, clientId: request.header.clientId ?? "")
        return dispatch(ctx, request.body)
    }

    static func name(_ api: Int16) -> String { supported.first { $0.key == api }?.name ?? "API \(api)" }

    /// A response frame: size, header (v1 adds tagged fields), body.
    static func frame(correlation: Int32, headerVersion: Int16, _ body: (inout WireWriter) -> Void) -> [UInt8] {
        var w = WireWriter(capacity: 512)
        w.int32(0)
        w.int32(correlation)
        if headerVersion >= 1 { w.uvarint(0) }
        body(&w)
        w.patchInt32(Int32(w.bytes.count - 4), at: 0)
        return w.bytes
    }

    /// Encodes a response for `ctx` (the response header is v1 when the request is flexible,
    /// except ApiVersions, always v0).
    func reply(_ ctx: RequestContext, _ body: (inout WireWriter) -> Void) -> WireOutcome {
        let flexible = ctx.api != 18 && Self.firstFlexible(ctx.api).map { ctx.version >= $0 } ?? false
        return .reply(Self.frame(correlation: ctx.correlation, headerVersion: flexible ? 1 : 0, body))
    }

    private func dispatch(_ ctx: RequestContext, _ body: WireRequest.Body) -> WireOutcome {
        switch body {
        case .produce(let req): return produce(ctx, req)
        case .fetch(let req): return fetch(ctx, req)
        case .listOffsets(let req): return listOffsets(ctx, req)
        case .metadata(let req): return metadata(ctx, req)
        case .offsetCommit(let req): return offsetCommit(ctx, req)
        case .offsetFetch(let req): return offsetFetch(ctx, req)
        case .findCoordinator(let req): return findCoordinator(ctx, req)
        case .joinGroup(let req): return joinGroup(ctx, req)
        case .heartbeat(let req): return heartbeat(ctx, req)
        case .leaveGroup(let req): return leaveGroup(ctx, req)
        case .syncGroup(let req): return syncGroup(ctx, req)
        case .describeGroups(let req): return describeGroups(ctx, req)
        case .listGroups(let req): return listGroups(ctx, req)
        case .apiVersions(let req): return apiVersions(ctx, req)
        case .createTopics(let req): return createTopics(ctx, req)
        case .deleteTopics(let req): return deleteTopics(ctx, req)
        case .deleteRecords(let req): return deleteRecords(ctx, req)
        case .initProducerId(let req): return initProducerId(ctx, req)
        case .offsetForLeaderEpoch(let req): return offsetForLeaderEpoch(ctx, req)
        case .addPartitionsToTxn(let req): return addPartitionsToTxn(ctx, req)
        case .addOffsetsToTxn(let req): return addOffsetsToTxn(ctx, req)
        case .endTxn(let req): return endTxn(ctx, req)
        case .txnOffsetCommit(let req): return txnOffsetCommit(ctx, req)
        case .describeConfigs(let req): return describeConfigs(ctx, req)
        }
    }
}

/// What a handler knows of its request besides the body.
struct RequestContext: Sendable {
    var api: Int16
    var version: Int16
    var correlation: Int32
    var clientId: String
}

/// Kafka's error codes the protocol layer answers with.
enum KafkaError {
    static let none: Int16 = 0
    static let offsetOutOfRange: Int16 = 1
    static let corruptMessage: Int16 = 2
    static let unknownTopicOrPartition: Int16 = 3
    static let notLeaderOrFollower: Int16 = 6
    static let requestTimedOut: Int16 = 7
    static let messageTooLarge: Int16 = 10
    static let coordinatorNotAvailable: Int16 = 15
    static let invalidTopic: Int16 = 17
    static let illegalGeneration: Int16 = 22
    static let inconsistentGroupProtocol: Int16 = 23
    static let unknownMemberId: Int16 = 25
    static let invalidSessionTimeout: Int16 = 26
    static let rebalanceInProgress: Int16 = 27
    static let unsupportedVersion: Int16 = 35
    static let topicAlreadyExists: Int16 = 36
    static let invalidPartitions: Int16 = 37
    static let invalidReplicationFactor: Int16 = 38
    static let invalidConfig: Int16 = 40
    static let invalidRequest: Int16 = 42
    static let unsupportedForMessageFormat: Int16 = 43
    static let outOfOrderSequence: Int16 = 45
    static let invalidProducerEpoch: Int16 = 47
    static let invalidTxnState: Int16 = 48
    static let kafkaStorageError: Int16 = 56
    static let unknownProducerId: Int16 = 59
    static let groupIdNotFound: Int16 = 69
    static let nonEmptyGroup: Int16 = 68
    static let unsupportedCompressionType: Int16 = 76
    static let memberIdRequired: Int16 = 79
    static let invalidRecord: Int16 = 87
    static let producerFenced: Int16 = 90
    static let unknownTopicId: Int16 = 100

    /// The Kafka error for a core error. `txnCoordinator` picks PRODUCER_FENCED (the
    /// transaction coordinator's answer) over INVALID_PRODUCER_EPOCH (a partition leader's).
    static func code(_ error: Error, txnCoordinator: Bool = false) -> Int16 {
        guard let e = error as? KofkaError else { return kafkaStorageError }
        switch e.code {
        case .ok: return none
        case .unknownTopic, .unknownPartition: return unknownTopicOrPartition
        case .topicExists: return topicAlreadyExists
        case .msgTooLarge: return messageTooLarge
        case .offsetOutOfRange: return offsetOutOfRange
        case .outOfOrderSequence: return outOfOrderSequence
        case .producerFenced: return txnCoordinator ? producerFenced : invalidProducerEpoch
        case .txnTimedOut: return invalidProducerEpoch
        case .rebalanced: return illegalGeneration
        case .invalidState: return invalidTxnState
        case .invalidArg: return invalidRequest
        case .invalidConfig: return invalidConfig
        case .busy, .timedOut: return requestTimedOut
        case .unsupported: return unsupportedVersion
        case .closed: return notLeaderOrFollower
        default: return kafkaStorageError
        }
    }
}
