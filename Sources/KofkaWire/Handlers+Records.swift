import Kofka

/// Produce, Fetch, ListOffsets, OffsetForLeaderEpoch and DeleteRecords: the log.
extension WireService {
    func produce(_ ctx: RequestContext, _ req: ProduceRequest) -> WireOutcome {
        let now = nowMs()
        var resp = ProduceResponse()
        for t in req.topicData {
            var tr = ProduceResponse.TopicProduceResponse()
            tr.name = t.name
            for p in t.partitionData {
                var pr = ProduceResponse.TopicProduceResponse.PartitionProduceResponse()
                pr.index = p.index
                pr.baseOffset = -1
                pr.logAppendTimeMs = -1
                do {
                    let batches = try WireBatch.decodeAll(p.records ?? [], now: now)
                    guard !batches.isEmpty else { throw WireBatch.Refusal.invalid("no record batch") }
                    var first: Int64 = -1
                    for b in batches {
                        if b.isTransactional && req.transactionalId == nil {
                            throw WireBatch.Refusal.invalid("a transactional batch in a request without a transactional id")
                        }
                        let off = try broker.wireAppend(t.name, p.index, b.records, producerId: b.producerId, epoch: b.producerEpoch,
                                                        baseSequence: b.baseSequence, transactional: b.isTransactional)
                        if first < 0 { first = off }
                    }
                    pr.baseOffset = first
                    if ctx.version >= 5 { pr.logStartOffset = (try? broker.watermarks(t.name, p.index).low) ?? -1 }
                } catch let refusal as WireBatch.Refusal {
                    pr.errorCode = refusal.code
                    pr.errorMessage = refusal.message
                } catch {
                    pr.errorCode = KafkaError.code(error)
                    pr.errorMessage = (error as? KofkaError)?.message
                }
                tr.partitionResponses.append(pr)
            }
            resp.responses.append(tr)
        }
        if req.acks == 0 { return .noReply }
        return reply(ctx) { resp.encode(to: &$0, version: ctx.version) }
    }

    func fetch(_ ctx: RequestContext, _ req: FetchRequest) -> WireOutcome {
        broker.wireSweepTransactions()
        let deadline = monoNs() &+ UInt64(max(0, req.maxWaitMs)) * 1_000_000
        let first = fetchOnce(ctx, req)
        if req.maxWaitMs <= 0 || first.bytes >= max(1, Int(req.minBytes)) || first.hasError {
            return reply(ctx) { first.response.encode(to: &$0, version: ctx.version) }
        }
        return .wait(fetchPending(ctx, req, deadline))
    }

    /// A Fetch waiting for `minBytes` until `deadline`.
    private func fetchPending(_ ctx: RequestContext, _ req: FetchRequest, _ deadline: UInt64) -> WirePending {
        WirePending(deadlineNs: deadline) { [self] expired in
            let again = fetchOnce(ctx, req)
            if expired || again.bytes >= max(1, Int(req.minBytes)) || again.hasError {
                return reply(ctx) { again.response.encode(to: &$0, version: ctx.version) }
            }
            return .wait(fetchPending(ctx, req, deadline))
        }
    }

    /// One pass over every partition of a Fetch.
    func fetchOnce(_ ctx: RequestContext, _ req: FetchRequest) -> (response: FetchResponse, bytes: Int, hasError: Bool) {
        var resp = FetchResponse()
        var total = 0
        var hasError = false
        let readCommitted = req.isolationLevel == 1
        let maxBytes = req.maxBytes <= 0 ? Int.max : Int(req.maxBytes)
        for t in req.topics {
            var tr = FetchResponse.FetchableTopicResponse()
            tr.topic = t.topic
            tr.topicId = t.topicId
            for p in t.partitions {
                var pr = FetchResponse.FetchableTopicResponse.PartitionData()
                pr.partitionIndex = p.partition
                pr.highWatermark = -1
                pr.lastStableOffset = -1
                pr.logStartOffset = -1
                pr.preferredReadReplica = -1
                if ctx.version >= 13 {
                    pr.errorCode = KafkaError.unknownTopicId
                    hasError = true
                    tr.partitions.append(pr)
                    continue
                }
                let limit = max(1, min(Int(p.partitionMaxBytes), maxBytes - total))
                var writer = FetchBatchWriter()
                var n = 0
                do {
                    let read = try broker.wireRead(t.topic, p.partition, from: p.fetchOffset,
                                                   maxRecords: total >= maxBytes ? 0 : min(10_000, max(1, limit / 16)),
                                                   readCommitted: readCommitted) { v in
                        // KIP-74: at least one record even past the limit.
                        if n > 0 && writer.size + (v.key?.count ?? 0) + (v.value?.count ?? 0) + 32 > limit { return }
                        let headers = (try? HeaderCodec.decode(v.headers.map { Array($0) })) ?? []
                        writer.add(offset: v.offset, txn: v.txn, timestampMs: v.timestampMs, key: v.key, value: v.value, headers: headers)
                        n += 1
                    }
                    pr.highWatermark = read.highWatermark
                    pr.lastStableOffset = read.lastStableOffset
                    pr.logStartOffset = read.logStartOffset
                    if readCommitted {
                        pr.abortedTransactions = read.aborted.map {
                            var a = FetchResponse.FetchableTopicResponse.PartitionData.AbortedTransaction()
                            a.producerId = $0.txn
                            a.firstOffset = $0.firstOffset
                            return a
                        }
                    }
                    let bytes = writer.finish()
                    pr.records = bytes
                    total += bytes.count
                } catch {
                    pr.errorCode = KafkaError.code(error)
                    pr.records = []
                    hasError = true
                }
                tr.partitions.append(pr)
            }
            resp.responses.append(tr)
        }
        return (resp, total, hasError)
    }

    func listOffsets(_ ctx: RequestContext, _ req: ListOffsetsRequest) -> WireOutcome {
        var resp = ListOffsetsResponse()
        for t in req.topics {
            var tr = ListOffsetsResponse.ListOffsetsTopicResponse()
            tr.name = t.name
            for p in t.partitions {
                var pr = ListOffsetsResponse.ListOffsetsTopicResponse.ListOffsetsPartitionResponse()
                pr.partitionIndex = p.partitionIndex
                pr.timestamp = -1
                pr.offset = -1
                pr.leaderEpoch = -1
                do {
                    switch p.timestamp {
                    case -1:   // latest: the high watermark (read_committed: the last stable offset)
                        let read = try broker.wireRead(t.name, p.partitionIndex, from: try broker.watermarks(t.name, p.partitionIndex).low,
                                                       maxRecords: 0, readCommitted: false) { _ in }
                        pr.offset = req.isolationLevel == 1 ? read.lastStableOffset : read.highWatermark
                    case -2:   // earliest: the log start offset
                        pr.offset = try broker.watermarks(t.name, p.partitionIndex).low
                    case let ts where ts >= 0:
                        if let off = try broker.offsetForTimestamp(t.name, p.partitionIndex, ts) {
                            pr.offset = off
                            pr.timestamp = ts
                        }
                    default:
                        pr.errorCode = KafkaError.invalidRequest
                    }
                    if ctx.version == 0 { pr.oldStyleOffsets = pr.offset >= 0 ? [pr.offset] : [] }
                } catch {
                    pr.errorCode = KafkaError.code(error)
                }
                tr.partitions.append(pr)
            }
            resp.topics.append(tr)
        }
        return reply(ctx) { resp.encode(to: &$0, version: ctx.version) }
    }

    func offsetForLeaderEpoch(_ ctx: RequestContext, _ req: OffsetForLeaderEpochRequest) -> WireOutcome {
        // Kofka keeps no leader epochs: the only epoch is -1 and it ends at the high watermark.
        var resp = OffsetForLeaderEpochResponse()
        for t in req.topics {
            var tr = OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult()
            tr.topic = t.topic
            for p in t.partitions {
                var pr = OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult.EpochEndOffset()
                pr.partition = p.partition
                pr.leaderEpoch = -1
                do { pr.endOffset = try broker.watermarks(t.topic, p.partition).high } catch {
                    pr.errorCode = KafkaError.code(error)
                    pr.endOffset = -1
                }
                tr.partitions.append(pr)
            }
            resp.topics.append(tr)
        }
        return reply(ctx) { resp.encode(to: &$0, version: ctx.version) }
    }

    func deleteRecords(_ ctx: RequestContext, _ req: DeleteRecordsRequest) -> WireOutcome {
        var resp = DeleteRecordsResponse()
        for t in req.topics {
            var tr = DeleteRecordsResponse.DeleteRecordsTopicResult()
            tr.name = t.name
            for p in t.partitions {
                var pr = DeleteRecordsResponse.DeleteRecordsTopicResult.DeleteRecordsPartitionResult()
                pr.partitionIndex = p.partitionIndex
                do { pr.lowWatermark = try broker.deleteRecords(t.name, p.partitionIndex, before: p.offset) } catch {
                    pr.errorCode = KafkaError.code(error)
                    pr.lowWatermark = -1
                }
                tr.partitions.append(pr)
            }
            resp.topics.append(tr)
        }
        return reply(ctx) { resp.encode(to: &$0, version: ctx.version) }
    }
}
