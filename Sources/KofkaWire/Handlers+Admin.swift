import Kofka

/// ApiVersions, Metadata, FindCoordinator, CreateTopics, DeleteTopics, DescribeConfigs.
extension WireService {
    func apiVersions(_ ctx: RequestContext, _ req: ApiVersionsRequest) -> WireOutcome {
        var resp = ApiVersionsResponse()
        resp.apiKeys = Self.supported.map {
            var v = ApiVersionsResponse.ApiVersion()
            v.apiKey = $0.key; v.minVersion = $0.versions.lowerBound; v.maxVersion = $0.versions.upperBound
            return v
        }
        return reply(ctx) { resp.encode(to: &$0, version: ctx.version) }
    }

    func broker0() -> MetadataResponse.MetadataResponseBroker {
        var b = MetadataResponse.MetadataResponseBroker()
        b.nodeId = nodeId; b.host = host; b.port = port; b.rack = nil
        return b
    }

    func metadata(_ ctx: RequestContext, _ req: MetadataRequest) -> WireOutcome {
        var resp = MetadataResponse()
        resp.brokers = [broker0()]
        resp.clusterId = "kofka"
        resp.controllerId = nodeId
        resp.clusterAuthorizedOperations = Int32.min
        // Metadata v0 asks for every topic with an empty list; later versions with null.
        let all = req.topics == nil || (ctx.version == 0 && req.topics?.isEmpty == true)
        var wanted: [(String?, WireUUID)] = []
        if all {
            wanted = ((try? broker.topics()) ?? []).map { ($0.name, WireUUID.zero) }
        } else {
            wanted = (req.topics ?? []).map { ($0.name, $0.topicId) }
        }
        let autoCreate = ctx.version < 4 || req.allowAutoTopicCreation
        for (name, id) in wanted {
            var t = MetadataResponse.MetadataResponseTopic()
            t.name = name
            t.topicId = id
            t.topicAuthorizedOperations = Int32.min
            guard let name else {
                t.errorCode = KafkaError.unknownTopicId
                resp.topics.append(t)
                continue
            }
            do {
                let n = autoCreate && !all ? try broker.partitionsCreatingIfAllowed(name) : try broker.partitions(of: name)
                t.partitions = (0..<n).map { i in
                    var p = MetadataResponse.MetadataResponseTopic.MetadataResponsePartition()
                    p.partitionIndex = i; p.leaderId = nodeId; p.leaderEpoch = -1
                    p.replicaNodes = [nodeId]; p.isrNodes = [nodeId]
                    return p
                }
            } catch let e as KofkaError where e.code == .invalidArg {
                t.errorCode = KafkaError.invalidTopic
            } catch {
                t.errorCode = KafkaError.code(error)
            }
            resp.topics.append(t)
        }
        return reply(ctx) { resp.encode(to: &$0, version: ctx.version) }
    }

    func findCoordinator(_ ctx: RequestContext, _ req: FindCoordinatorRequest) -> WireOutcome {
        var resp = FindCoordinatorResponse()
        // Every group and transactional id (key types 0 and 1) is coordinated here.
        if ctx.version >= 4 {
            resp.coordinators = req.coordinatorKeys.map { k in
                var c = FindCoordinatorResponse.Coordinator()
                c.key = k
                if req.keyType > 1 { c.errorCode = KafkaError.invalidRequest; c.nodeId = -1; c.host = ""; c.port = -1 } else {
                    c.nodeId = nodeId; c.host = host; c.port = port
                }
                return c
            }
        } else if req.keyType > 1 {
            resp.errorCode = KafkaError.invalidRequest
            resp.nodeId = -1; resp.host = ""; resp.port = -1
        } else {
            resp.nodeId = nodeId; resp.host = host; resp.port = port
        }
        return reply(ctx) { resp.encode(to: &$0, version: ctx.version) }
    }

    func createTopics(_ ctx: RequestContext, _ req: CreateTopicsRequest) -> WireOutcome {
        var resp = CreateTopicsResponse()
        for t in req.topics {
            var tr = CreateTopicsResponse.CreatableTopicResult()
            tr.name = t.name
            tr.numPartitions = -1
            tr.replicationFactor = -1
            let partitions = t.numPartitions == -1 ? broker.config.numPartitions : t.numPartitions
            do {
                guard t.assignments.isEmpty else {
                    throw KofkaError(.invalidArg, "manual replica assignments are not supported: this is a one-node cluster")
                }
                guard t.replicationFactor == -1 || t.replicationFactor == 1 else {
                    tr.errorCode = KafkaError.invalidReplicationFactor
                    tr.errorMessage = "replication factor \(t.replicationFactor) is larger than the 1 broker available"
                    resp.topics.append(tr)
                    continue
                }
                guard partitions >= 1 else {
                    tr.errorCode = KafkaError.invalidPartitions
                    tr.errorMessage = "the number of partitions must be at least 1, got \(t.numPartitions)"
                    resp.topics.append(tr)
                    continue
                }
                let config = t.configs.compactMap { c in c.value.map { (c.name, $0) } }
                if req.validateOnly {
                    try Broker.validateTopicName(t.name)
                    if (try? broker.partitions(of: t.name)) != nil { throw KofkaError(.topicExists, "topic '\(t.name)' already exists") }
                } else {
                    try broker.createTopic(t.name, partitions: partitions, config: config)
                }
                tr.numPartitions = partitions
                tr.replicationFactor = 1
                if ctx.version >= 5, !req.validateOnly {
                    tr.configs = ((try? broker.topicConfigs(t.name)) ?? []).map { c in
                        var x = CreateTopicsResponse.CreatableTopicResult.CreatableTopicConfigs()
                        x.name = c.key; x.value = c.value; x.configSource = c.own ? 1 : 5
                        return x
                    }
                }
            } catch let e as KofkaError {
                switch e.code {
                case .invalidArg where e.message.contains("topic name"): tr.errorCode = KafkaError.invalidTopic
                case .invalidArg: tr.errorCode = KafkaError.invalidPartitions
                case .invalidConfig: tr.errorCode = KafkaError.invalidConfig
                default: tr.errorCode = KafkaError.code(e)
                }
                tr.errorMessage = e.message
            } catch {
                tr.errorCode = KafkaError.code(error)
            }
            resp.topics.append(tr)
        }
        return reply(ctx) { resp.encode(to: &$0, version: ctx.version) }
    }

    func deleteTopics(_ ctx: RequestContext, _ req: DeleteTopicsRequest) -> WireOutcome {
        var resp = DeleteTopicsResponse()
        let names: [(String?, WireUUID)] = ctx.version >= 6 ? req.topics.map { ($0.name, $0.topicId) } : req.topicNames.map { ($0, .zero) }
        for (name, id) in names {
            var r = DeleteTopicsResponse.DeletableTopicResult()
            r.name = name
            r.topicId = id
            if let name {
                do { try broker.deleteTopic(name) } catch {
                    r.errorCode = KafkaError.code(error)
                    r.errorMessage = (error as? KofkaError)?.message
                }
            } else {
                r.errorCode = KafkaError.unknownTopicId
            }
            resp.responses.append(r)
        }
        return reply(ctx) { resp.encode(to: &$0, version: ctx.version) }
    }

    func describeConfigs(_ ctx: RequestContext, _ req: DescribeConfigsRequest) -> WireOutcome {
        var resp = DescribeConfigsResponse()
        for res in req.resources {
            var rr = DescribeConfigsResponse.DescribeConfigsResult()
            rr.resourceType = res.resourceType
            rr.resourceName = res.resourceName
            var entries: [(String, String, Bool)] = []
            switch res.resourceType {
            case 2:   // topic
                do { entries = try broker.topicConfigs(res.resourceName).map { ($0.key, $0.value, $0.own) } } catch {
                    rr.errorCode = KafkaError.code(error)
                    rr.errorMessage = (error as? KofkaError)?.message
                }
            case 4:   // broker
                entries = broker.config.pairs.map { ($0.0, $0.1, true) }
            default:
                rr.errorCode = KafkaError.invalidRequest
                rr.errorMessage = "resource type \(res.resourceType) is not described (2 topic, 4 broker are)"
            }
            if let keys = res.configurationKeys { entries = entries.filter { keys.contains($0.0) } }
            rr.configs = entries.map { e in
                var c = DescribeConfigsResponse.DescribeConfigsResult.DescribeConfigsResourceResult()
                c.name = e.0; c.value = e.1
                c.isDefault = !e.2
                c.configSource = res.resourceType == 4 ? 4 : (e.2 ? 1 : 5)
                c.configType = 2   // STRING
                return c
            }
            resp.results.append(rr)
        }
        return reply(ctx) { resp.encode(to: &$0, version: ctx.version) }
    }
}
