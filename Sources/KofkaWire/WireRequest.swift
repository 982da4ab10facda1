/// One request frame decoded: its header and its body, before anything calls the core.
/// `WireService.decode` is the whole of what a client's bytes go through before a handler
/// runs, so it is what `Tests/fuzz/fuzz_wire.swift` feeds arbitrary bytes to.
///
/// ```swift
/// if case .request(let r) = WireService.decode(frame), case .produce(let p) = r.body {
///     for t in p.topicData { for part in t.partitionData { _ = try WireBatch.decodeAll(part.records ?? [], now: 0) } }
/// }
/// ```
public struct WireRequest: Sendable {
    /// The request header (API key, version, correlation id, client id).
    public var header: RequestHeader
    /// The body, by API.
    public var body: Body

    /// A request body of each API served (`WireService.supported`).
    public enum Body: Sendable {
        case produce(ProduceRequest)
        case fetch(FetchRequest)
        case listOffsets(ListOffsetsRequest)
        case metadata(MetadataRequest)
        case offsetCommit(OffsetCommitRequest)
        case offsetFetch(OffsetFetchRequest)
        case findCoordinator(FindCoordinatorRequest)
        case joinGroup(JoinGroupRequest)
        case heartbeat(HeartbeatRequest)
        case leaveGroup(LeaveGroupRequest)
        case syncGroup(SyncGroupRequest)
        case describeGroups(DescribeGroupsRequest)
        case listGroups(ListGroupsRequest)
        case apiVersions(ApiVersionsRequest)
        case createTopics(CreateTopicsRequest)
        case deleteTopics(DeleteTopicsRequest)
        case deleteRecords(DeleteRecordsRequest)
        case initProducerId(InitProducerIdRequest)
        case offsetForLeaderEpoch(OffsetForLeaderEpochRequest)
        case addPartitionsToTxn(AddPartitionsToTxnRequest)
        case addOffsetsToTxn(AddOffsetsToTxnRequest)
        case endTxn(EndTxnRequest)
        case txnOffsetCommit(TxnOffsetCommitRequest)
        case describeConfigs(DescribeConfigsRequest)
    }
}

/// What `WireService.decode` makes of a frame.
public enum WireDecoded: Sendable {
    /// A request of a supported API and version.
    case request(WireRequest)
    /// An ApiVersions of a version not served: answered with error 35 in a v0 response.
    case unsupportedApiVersions(correlation: Int32)
    /// Not a request this server can read (the connection is closed): why.
    case refused(String)
}

extension WireService {
    /// Decodes one request frame (without its 4-byte size prefix): the header at the version
    /// its API and version call for, then the body. Never traps on any input: a short or
    /// malformed frame, an unknown API key or an unsupported version comes back as `.refused`.
    /// Record batches inside a Produce are decoded later, by `WireBatch.decodeAll`.
    public static func decode(_ frame: [UInt8]) -> WireDecoded {
        guard frame.count >= 8 else { return .refused("a request frame of \(frame.count) bytes is shorter than a header") }
        var r = WireReader(frame)
        let api = (try? r.int16()) ?? -1
        let version = (try? r.int16()) ?? -1
        guard let range = versionsByKey[api] else { return .refused("unknown API key \(api)") }
        if api == ApiVersionsRequest.apiKey && !range.contains(version) {
            guard let correlation = try? r.int32() else { return .refused("truncated header") }
            return .unsupportedApiVersions(correlation: correlation)
        }
        guard range.contains(version) else { return .refused("API \(api) version \(version) is not supported (\(range))") }
        r = WireReader(frame)
        let header: RequestHeader
        do { header = try RequestHeader(from: &r, version: requestHeaderVersion(api, version)) } catch {
            return .refused("malformed request header: \(error)")
        }
        do {
            return .request(WireRequest(header: header, body: try decodeBody(api, version, &r)))
        } catch {
            return .refused("malformed \(name(api)) v\(version) request: \(error)")
        }
    }

    private static func decodeBody(_ api: Int16, _ v: Int16, _ r: inout WireReader) throws -> WireRequest.Body {
        switch api {
        case 0: .produce(try ProduceRequest(from: &r, version: v))
        case 1: .fetch(try FetchRequest(from: &r, version: v))
        case 2: .listOffsets(try ListOffsetsRequest(from: &r, version: v))
        case 3: .metadata(try MetadataRequest(from: &r, version: v))
        case 8: .offsetCommit(try OffsetCommitRequest(from: &r, version: v))
        case 9: .offsetFetch(try OffsetFetchRequest(from: &r, version: v))
        case 10: .findCoordinator(try FindCoordinatorRequest(from: &r, version: v))
        case 11: .joinGroup(try JoinGroupRequest(from: &r, version: v))
        case 12: .heartbeat(try HeartbeatRequest(from: &r, version: v))
        case 13: .leaveGroup(try LeaveGroupRequest(from: &r, version: v))
        case 14: .syncGroup(try SyncGroupRequest(from: &r, version: v))
        case 15: .describeGroups(try DescribeGroupsRequest(from: &r, version: v))
        case 16: .listGroups(try ListGroupsRequest(from: &r, version: v))
        case 18: .apiVersions(try ApiVersionsRequest(from: &r, version: v))
        case 19: .createTopics(try CreateTopicsRequest(from: &r, version: v))
        case 20: .deleteTopics(try DeleteTopicsRequest(from: &r, version: v))
        case 21: .deleteRecords(try DeleteRecordsRequest(from: &r, version: v))
        case 22: .initProducerId(try InitProducerIdRequest(from: &r, version: v))
        case 23: .offsetForLeaderEpoch(try OffsetForLeaderEpochRequest(from: &r, version: v))
        case 24: .addPartitionsToTxn(try AddPartitionsToTxnRequest(from: &r, version: v))
        case 25: .addOffsetsToTxn(try AddOffsetsToTxnRequest(from: &r, version: v))
        case 26: .endTxn(try EndTxnRequest(from: &r, version: v))
        case 28: .txnOffsetCommit(try TxnOffsetCommitRequest(from: &r, version: v))
        case 32: .describeConfigs(try DescribeConfigsRequest(from: &r, version: v))
        default: throw WireError("unknown API key \(api)")
        }
    }
}
