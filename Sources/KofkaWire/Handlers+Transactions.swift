import Kofka

/// InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit: a Kafka
/// producer's idempotence and transactions on Kofka's (`Transactions.swift`).
extension WireService {
    func initProducerId(_ ctx: RequestContext, _ req: InitProducerIdRequest) -> WireOutcome {
        var r = InitProducerIdResponse()
        r.producerId = -1
        r.producerEpoch = -1
        do {
            if let tid = req.transactionalId {
                guard req.transactionTimeoutMs > 0 else { throw KofkaError(.invalidArg, "transaction timeout must be positive") }
                let current = req.producerId >= 0 ? (req.producerId, Int32(req.producerEpoch)) : nil
                let (pid, epoch) = try broker.wireInitTransactions(tid, current: current)
                guard epoch <= Int32(Int16.max) else { throw KofkaError(.producerFenced, "epoch \(epoch) does not fit Kafka's int16 epoch") }
                txnTimeouts.withLock { $0[pid] = req.transactionTimeoutMs }
                r.producerId = pid
                r.producerEpoch = Int16(epoch)
            } else if req.producerId >= 0 {
                // KIP-360: an idempotent producer bumps its own epoch (its sequences restart at 0).
                guard req.producerEpoch < Int16.max else {
                    r.producerId = try broker.wireAllocateProducerId()
                    r.producerEpoch = 0
                    return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
                }
                r.producerId = req.producerId
                r.producerEpoch = req.producerEpoch + 1
            } else {
                r.producerId = try broker.wireAllocateProducerId()
                r.producerEpoch = 0
            }
        } catch let e as KofkaError where e.code == .invalidArg {
            r.errorCode = 50   // INVALID_TRANSACTION_TIMEOUT
        } catch {
            r.errorCode = KafkaError.code(error, txnCoordinator: true)
        }
        return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
    }

    private func timeoutMs(_ pid: Int64) -> Int { Int(txnTimeouts.withLock { $0[pid] } ?? 60_000) }

    func addPartitionsToTxn(_ ctx: RequestContext, _ req: AddPartitionsToTxnRequest) -> WireOutcome {
        var code = KafkaError.none
        do {
            _ = try broker.wireEnsureTransaction(pid: req.v3AndBelowProducerId, epoch: Int32(req.v3AndBelowProducerEpoch),
                                                 timeoutMs: timeoutMs(req.v3AndBelowProducerId))
        } catch { code = KafkaError.code(error, txnCoordinator: true) }
        var r = AddPartitionsToTxnResponse()
        r.resultsByTopicV3AndBelow = req.v3AndBelowTopics.map { t in
            var tr = AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult()
            tr.name = t.name
            let known = (try? broker.partitions(of: t.name)) != nil
            tr.resultsByPartition = t.partitions.map { p in
                var pr = AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult.AddPartitionsToTxnPartitionResult()
                pr.partitionIndex = p
                pr.partitionErrorCode = known ? code : KafkaError.unknownTopicOrPartition
                return pr
            }
            return tr
        }
        return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
    }

    func addOffsetsToTxn(_ ctx: RequestContext, _ req: AddOffsetsToTxnRequest) -> WireOutcome {
        var r = AddOffsetsToTxnResponse()
        do {
            _ = try broker.wireEnsureTransaction(pid: req.producerId, epoch: Int32(req.producerEpoch), timeoutMs: timeoutMs(req.producerId))
        } catch { r.errorCode = KafkaError.code(error, txnCoordinator: true) }
        return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
    }

    func endTxn(_ ctx: RequestContext, _ req: EndTxnRequest) -> WireOutcome {
        var r = EndTxnResponse()
        do {
            try broker.wireEndTransaction(pid: req.producerId, epoch: Int32(req.producerEpoch), commit: req.committed)
        } catch { r.errorCode = KafkaError.code(error, txnCoordinator: true) }
        return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
    }

    func txnOffsetCommit(_ ctx: RequestContext, _ req: TxnOffsetCommitRequest) -> WireOutcome {
        var offsets: [(TopicPartition, Int64)] = []
        for t in req.topics { for p in t.partitions { offsets.append((TopicPartition(t.name, p.partitionIndex), p.committedOffset)) } }
        let member = ctx.version >= 3 && req.generationId >= 0 && !req.memberId.isEmpty ? req.memberId : nil
        var code = KafkaError.none
        if let member, let c = groups.checkCommit(req.groupId, memberId: member, generation: req.generationId) {
            code = c
        } else {
            do {
                try broker.wireTxnOffsetCommit(pid: req.producerId, epoch: Int32(req.producerEpoch), group: req.groupId,
                                               memberId: member, generation: req.generationId, offsets: offsets)
            } catch { code = KafkaError.code(error, txnCoordinator: true) }
        }
        var r = TxnOffsetCommitResponse()
        r.topics = req.topics.map { t in
            var tr = TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic()
            tr.name = t.name
            tr.partitions = t.partitions.map { p in
                var pr = TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic.TxnOffsetCommitResponsePartition()
                pr.partitionIndex = p.partitionIndex
                pr.errorCode = code
                return pr
            }
            return tr
        }
        return reply(ctx) { r.encode(to: &$0, version: ctx.version) }
    }
}
