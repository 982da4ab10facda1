import Kofka

// The explorer's applications, as LabWorld runs them: plain producers, the transactional input
// producer T, and the consume-transform-produce pipelines (exactly-once, at-least-once,
// at-most-once, and at-least-once from `latest`). Each reacts to errors as a careful real
// application would (abort and redo or rewind, never commit what it did not write), so that a
// broken rule is Kofka's, not the application's.

extension LabWorld {
    // MARK: Plain producers

    func plainProducer(_ c: LabPlainClient) -> Producer? {
        if let p = c.producer { return p }
        c.incarnation += 1
        var cfg: [(String, String)] = [("delivery.mode", c.spec.mode.rawValue), ("retry.backoff.ms", "0"),
                                       ("fault.request.loss.rate", "\(c.spec.requestLoss)"), ("fault.ack.loss.rate", "\(c.spec.ackLoss)"),
                                       ("fault.seed", "\(c.spec.faultSeed &+ UInt64(c.incarnation) &* 1000)"),
                                       ("linger.ms", "900000"), ("batch.num.messages", "100000"), ("client.id", "p\(c.index)")]
        if let r = c.spec.retries { cfg.append(("retries", "\(r)")) }
        do {
            c.producer = try broker.producer(try ProducerConfig(cfg))
        } catch {
            note("   p\(c.index) cannot start: \(errText(error))")
        }
        return c.producer
    }

    func plainSend(_ c: LabPlainClient, _ ids: [UInt64], _ style: SendStyle) {
        guard let p = plainProducer(c) else { return }
        let label = "p\(c.index).\(c.opNumber)"
        for id in ids { model.plainSent(id, mode: c.spec.mode) }
        let (_, e) = write(p, Self.input, ids.map { LabRecord.make(id: $0, label: label) }, style, plain: true)
        if let e { checkSequence(e, "producer p\(c.index)") }
        // fire-and-forget writes happen in the background: wait for them so the history stays deterministic
        if c.spec.mode == .atMostOnce { plainFlush(c) }
    }

    func plainFlush(_ c: LabPlainClient) {
        guard let p = c.producer else { return }
        do { try p.flush(timeout: nil) { self.report($0, plain: true) } } catch { note("   flush: \(errText(error))") }
    }

    func plainRestart(_ c: LabPlainClient) {
        guard let p = c.producer else { return }
        do { try p.close(timeout: nil) { self.report($0, plain: true) } } catch { note("   close: \(errText(error))") }
        c.producer = nil
    }

    // MARK: The transactional input producer

    func txConfig(_ tid: String, _ s: LabTxnSpec, incarnation: Int) throws -> ProducerConfig {
        try ProducerConfig([("delivery.mode", "exactly-once"), ("transactional.id", tid), ("retries", "\(s.retries)"),
                            ("retry.backoff.ms", "0"), ("fault.request.loss.rate", "\(s.requestLoss)"),
                            ("fault.ack.loss.rate", "\(s.ackLoss)"), ("fault.seed", "\(s.faultSeed &+ UInt64(incarnation) &* 1000)"),
                            ("linger.ms", "900000"), ("batch.num.messages", "100000"),
                            ("transaction.timeout.ms", "\(s.shortTxnTimeout ? timing.shortTxnMs : timing.longTxnMs)")])
    }

    /// Starts a transactional producer for `tid`: init_transactions fences earlier incarnations,
    /// whose abandoned transactions the model then counts as ended.
    func startTransactional(_ tid: String, _ spec: LabTxnSpec, incarnation: Int, labelPrefix: String, topic: String) -> Producer? {
        do {
            let p = try broker.producer(try txConfig(tid, spec, incarnation: incarnation))
            try busy { try p.initTransactions() }
            let hws = hw(topic)
            for l in model.abandonedLabels(prefix: labelPrefix) { model.ended(l, .fenced, hw: hws) }
            return p
        } catch {
            note("   \(tid) cannot start: \(errText(error))")
            return nil
        }
    }

    func txBeginNew(_ t: LabTxClient) -> Bool {
        guard let p = t.producer else { return false }
        let label = "t\(t.incarnation).\(t.seq + 1)"
        if let e = beginTransaction(p, label, topic: Self.input, shortTimeout: t.spec.shortTxnTimeout, who: "T") {
            if e.code == .producerFenced { t.producer = nil }
            return false
        }
        t.seq += 1
        t.label = label
        t.work = []
        return true
    }

    /// Begins a transaction the model will know as `label`; nil when it began, else the error.
    func beginTransaction(_ producer: Producer, _ label: String, topic: String, shortTimeout: Bool, who: String) -> KofkaError? {
        do {
            try busy { try producer.beginTransaction() }
        } catch {
            note("   \(who) begin: \(errText(error))")
            return error as? KofkaError ?? KofkaError(.storage, "\(error)")
        }
        model.began(label, topic: topic, skewMs: clock.skewMs, timeoutMs: Int64(shortTimeout ? timing.shortTxnMs : timing.longTxnMs))
        note("   \(who) began \(label)")
        return nil
    }

    @discardableResult
    func txEnsureOpen(_ t: LabTxClient) -> Bool {
        if t.producer == nil {
            t.incarnation += 1
            t.label = nil
            t.needsAbort = false
            t.producer = startTransactional("tin", t.spec, incarnation: t.incarnation, labelPrefix: "t", topic: Self.input)
            if t.producer == nil { return false }
        }
        if t.needsAbort { txAbortAndRedo(t) }
        if t.label != nil { return true }
        return txBeginNew(t)
    }

    func txSend(_ t: LabTxClient, _ ids: [UInt64], _ style: SendStyle, deferReaction: Bool) {
        guard txEnsureOpen(t), let p = t.producer, let label = t.label else { return }
        t.work += ids
        for id in ids { model.txnWrote(id, label: label) }
        let (_, e) = write(p, Self.input, ids.map { LabRecord.make(id: $0, label: label) }, style, plain: false)
        if let e { txFailed(t, e, deferReaction: deferReaction) }
    }

    /// The application's reaction to a failed transactional send or commit.
    func txFailed(_ t: LabTxClient, _ e: Error, deferReaction: Bool) {
        checkSequence(e, "transactional producer T")
        if (e as? KofkaError)?.code == .producerFenced {
            t.producer = nil
            return
        }
        if deferReaction { t.needsAbort = true } else { txAbortAndRedo(t) }
    }

    /// Aborts the open transaction and sends the same ids again in a new one, as an application
    /// that must not lose them would (twice at most, then it gives up on them).
    func txAbortAndRedo(_ t: LabTxClient, attempts: Int = 2) {
        let ids = t.work, ended = t.label
        guard txAbortOnly(t, timeout: nil) else { return }
        if let ended, model.txn(ended)?.end == .committed { return }   // it had committed: nothing to redo
        guard attempts > 0, !ids.isEmpty, txBeginNew(t), let p = t.producer, let label = t.label else { return }
        note("   T redoes ids \(ids.map(String.init).joined(separator: ",")) in \(label)")
        t.work = ids
        for id in ids { model.txnWrote(id, label: label) }
        let (_, e) = write(p, Self.input, ids.map { LabRecord.make(id: $0, label: label) }, .batch, plain: false)
        if let e {
            checkSequence(e, "transactional producer T")
            txAbortAndRedo(t, attempts: attempts - 1)
        }
    }

    /// Aborts T's open transaction; true when it ended.
    @discardableResult
    func txAbortOnly(_ t: LabTxClient, timeout: Duration?) -> Bool {
        guard let p = t.producer, let label = t.label else { t.needsAbort = false; return true }
        if let e = abortTransaction(p, label, topic: Self.input, who: "T", timeout: timeout) {
            if e.code == .producerFenced { t.producer = nil; t.label = nil }
            return false
        }
        t.label = nil
        t.work = []
        t.needsAbort = false
        return true
    }

    /// Aborts `label` on `producer`; nil when the application saw it end, else the error.
    func abortTransaction(_ producer: Producer, _ label: String, topic: String, who: String, timeout: Duration?) -> KofkaError? {
        do {
            try busy { try producer.abortTransaction(timeout: timeout) { self.report($0, plain: false) } }
        } catch let e as KofkaError where e.code == .invalidState && e.message.contains("had committed") {
            // a commit that reported a storage failure had taken effect: it stands
            model.ended(label, .committed, hw: hw(topic))
            note("   \(who) \(label) had committed")
            return nil
        } catch {
            note("   \(who) abort: \(errText(error))")
            return error as? KofkaError ?? KofkaError(.storage, "\(error)")
        }
        model.ended(label, .aborted, hw: hw(topic))
        note("   \(who) aborted \(label)")
        return nil
    }

    func txCommit(_ t: LabTxClient) {
        guard t.producer != nil, t.label != nil else { return }
        if t.needsAbort { txAbortAndRedo(t) }
        guard let p = t.producer, let label = t.label else { return }
        do {
            try p.commitTransaction(timeout: nil) { self.report($0, plain: false) }
        } catch {
            note("   T commit \(label): \(errText(error))")
            checkSequence(error, "transactional producer T")
            if let k = error as? KofkaError, k.code.isRetriable { return }
            if (error as? KofkaError)?.code == .producerFenced { model.ended(label, .commitUnknown, hw: hw(Self.input)); t.producer = nil; t.label = nil; return }
            txAbortAndRedo(t)
            return
        }
        model.ended(label, .committed, hw: hw(Self.input))
        note("   T committed \(label)")
        t.label = nil
        t.work = []
    }

    func txAbort(_ t: LabTxClient, zeroTimeout: Bool) {
        guard t.label != nil else { return }
        txAbortOnly(t, timeout: zeroTimeout ? .zero : nil)
    }

    func txCrash(_ t: LabTxClient) {
        guard t.producer != nil else { return }
        if let l = t.label { model.abandoned(l) }
        t.producer = nil   // abandoned without close: its open transaction stays open
        t.label = nil
        t.needsAbort = false
    }

    func txClose(_ t: LabTxClient) {
        guard let p = t.producer else { return }
        do { try p.close(timeout: nil) { self.report($0, plain: false) } } catch { note("   T close: \(errText(error))") }
        if let l = t.label { model.ended(l, .closed, hw: hw(Self.input)) }
        t.producer = nil
        t.label = nil
        t.needsAbort = false
    }

    // MARK: Pipelines

    func consumerConfig(_ p: LabPipe, shortSession: Bool) throws -> ConsumerConfig {
        let mode: DeliveryMode = switch p.kind { case .eo: .exactlyOnce; case .alo, .late: .atLeastOnce; case .amo: .atMostOnce }
        var cfg: [(String, String)] = [("group.id", p.kind.group), ("delivery.mode", mode.rawValue), ("client.id", p.clientId),
                                       ("session.timeout.ms", "\(shortSession ? timing.shortSessionMs : timing.longSessionMs)"),
                                       ("max.poll.records", "500")]
        if p.kind == .late { cfg.append(("auto.offset.reset", "latest")) }
        return try ConsumerConfig(cfg)
    }

    func start(_ p: LabPipe, shortSession: Bool) {
        guard !p.running else { return }
        p.incarnation += 1
        let inc = String(p.incarnation)
        p.clientId = "\(p.name)-i" + String(repeating: "0", count: max(0, 3 - inc.count)) + inc
        p.label = nil
        p.buffer = []
        p.processed = []
        p.polledMax = [:]
        p.needsAbort = false
        p.lastHeld = []
        p.lastMember = nil
        let producer: Producer?
        if p.kind == .eo, let spec = p.spec {
            producer = startTransactional("eo-\(p.slot)", spec, incarnation: p.incarnation, labelPrefix: "e\(p.slot).", topic: p.kind.output)
        } else {
            let mode: DeliveryMode = p.kind == .amo ? .atMostOnce : .atLeastOnce
            producer = try? broker.producer(try ProducerConfig([("delivery.mode", mode.rawValue), ("retry.backoff.ms", "0"),
                                                                ("fault.ack.loss.rate", mode == .atLeastOnce ? "0.1" : "0"),
                                                                ("fault.seed", "\(history.seed &+ UInt64(p.slot * 7 + p.incarnation))"),
                                                                ("linger.ms", "900000"), ("batch.num.messages", "100000")]))
        }
        guard let producer else { return }
        do {
            let c = try broker.consumer(try consumerConfig(p, shortSession: shortSession))
            try busy { try c.subscribe([Self.input]) }
            p.consumer = c
            p.producer = producer
            lock.with { _ = kindsRun.insert(p.kind) }
            note("   \(p.clientId) joined \(p.kind.group)")
        } catch {
            note("   \(p.name) cannot join: \(errText(error))")
            try? producer.close(timeout: .zero)
        }
    }

    /// A poll as a binding does it (`Consumer.lend`, as Python's poll): alo and eo hand records
    /// out from the last lend and cross into the library only when it is used up, settling
    /// what they handed out; amo (one record per lend) polls plainly.
    private func take(_ p: LabPipe, _ c: Consumer, max: Int) throws -> [Message] {
        guard p.kind == .alo || p.kind == .eo else { return try c.pollBatch(max: max, timeout: .zero) }
        if p.handed == p.lent.count || broker.clock.monotonicNs() >= p.lentUntil {
            let k = p.handed
            p.lent = []
            p.handed = 0
            p.lent = try c.lendBatch(settling: k, max: 500, timeout: .zero)
            let window = c.lendWindowNs()
            p.lentUntil = broker.clock.monotonicNs() &+ Swift.min(window, UInt64.max / 2)
        }
        let out = Array(p.lent[p.handed ..< Swift.min(p.lent.count, p.handed + max)])
        p.handed += out.count
        return out
    }

    /// What polls handed out of the last lend counts as returned; the rest is taken back. Every
    /// call on the consumer but a poll (and a crash) comes after it, as in the Python binding.
    func settle(_ p: LabPipe) {
        guard let c = p.consumer, !p.lent.isEmpty else { return }
        let k = p.handed
        p.lent = []
        p.handed = 0
        do { _ = try c.lendBatch(settling: k, max: 0, timeout: .zero) } catch { note("   \(p.name) settle: \(errText(error))") }
    }

    /// A poll as the kind's application does it; returns how many records it got.
    @discardableResult
    func poll(_ p: LabPipe, max: Int) -> Int {
        guard p.running, let c = p.consumer else { return 0 }
        if p.kind == .eo && p.needsAbort { eoAbortAndRecover(p) }
        var lateCandidates: [Int32: Int64] = [:]
        var committedBefore: Set<Int32> = []
        if p.kind == .late && !concurrent {
            for part in 0..<partitions {
                let tp = TopicPartition(Self.input, part)
                if (try? broker.committedOffset(group: p.kind.group, tp)) != nil { committedBefore.insert(part) }
                lateCandidates[part] = model.modelLSO(tp, skewMs: clock.skewMs)
            }
        }
        // sabotage commitBackwards: armed once the group has committed something
        let backwards = sabotage == .commitBackwards && !sabotageFired
            && c.assigned.contains { ((try? broker.committedOffset(group: p.kind.group, $0)) ?? 0) > 0 }
        let msgs: [Message]
        do {
            msgs = try busy { try take(p, c, max: max) }
        } catch {
            note("   \(p.name) poll: \(errText(error))")
            // a rebalance inside a transaction: the transaction cannot commit these records
            if p.kind == .eo && p.label != nil && ((error as? KofkaError)?.code == .rebalanced || p.producer?.transactionRequiresAbort == true) {
                eoAbortAndRecover(p, rewind: true)
            }
            return 0
        }
        note("   \(p.name) polled " + (msgs.isEmpty ? "nothing" : msgs.map { "\($0.partition)@\($0.offset)" }.joined(separator: " ")))
        checkOwner(p, msgs)
        if p.kind == .late && !concurrent { trackLate(p, candidates: lateCandidates, committedBefore: committedBefore) }
        guard !msgs.isEmpty else { return 0 }
        switch p.kind {
        case .eo:
            if p.label == nil && !eoBegin(p) {
                if p.running { eoRewind(p) }   // not processed: read them again
                return msgs.count
            }
            p.buffer += msgs
            for m in msgs {
                let tp = TopicPartition(m.topic, m.partition)
                p.polledMax[tp] = Swift.max(p.polledMax[tp] ?? -1, m.offset)
            }
        case .amo:
            model.amoPolled(msgs)
            p.buffer += msgs
            if let m = msgs.last, sabotage == .skipRecord,
               ((try? broker.watermarks(m.topic, m.partition).high) ?? 0) > m.offset + 2, sabotaging(.skipRecord) {
                settle(p)
                try? c.seek(m.topic, m.partition, m.offset + 2)
            }
        case .alo, .late:
            guard let prod = p.producer else { return msgs.count }
            let label = "\(p.name).\(p.incarnation).\(p.opNumber)"
            let (_, e) = write(prod, p.kind.output, msgs.map { outRecord($0, label) }, .batch, plain: false)
            if let e {
                // not written: must not be committed by the next poll
                note("   \(p.name) rewinds after \(errText(e))")
                settle(p)
                try? c.seekToCommitted()
            } else if backwards, sabotaging(.commitBackwards) {
                settle(p)
                for tp in c.assigned { try? c.seek(tp.topic, tp.partition, 0) }
                try? c.commit()
            }
        }
        return msgs.count
    }

    func outRecord(_ m: Message, _ label: String) -> Record {
        LabRecord.make(id: LabValue.decode(m.value) ?? 0, label: label, src: LabSource(m.partition, m.offset), key: m.key)
    }

    /// A poll may return records only of partitions its member holds in the group.
    func checkOwner(_ p: LabPipe, _ msgs: [Message]) {
        guard !msgs.isEmpty, !concurrent else { return }
        guard let d = try? broker.describeGroup(p.kind.group) else { return }
        let me = d.members.first { $0.clientId == p.clientId }
        for tp in Set(msgs.map { TopicPartition($0.topic, $0.partition) }).sorted() where !(me?.held.contains(tp) ?? false) {
            let holder = d.members.first { $0.held.contains(tp) }?.clientId ?? "nobody"
            model.violation(.foreignPoll, "\(p.clientId) polled records of \(tp), which \(holder) holds in \(p.kind.group) generation \(d.generation)\(me == nil ? " (\(p.clientId) is not a member)" : "")")
        }
    }

    /// The `latest` group resolves a partition's start when a member first holds it without a
    /// committed offset: it must start no later than the last stable offset of that moment.
    func trackLate(_ p: LabPipe, candidates: [Int32: Int64], committedBefore: Set<Int32>) {
        guard let d = try? broker.describeGroup(p.kind.group), let me = d.members.first(where: { $0.clientId == p.clientId }) else {
            p.lastHeld = []
            p.lastMember = nil
            return
        }
        let held = Set(me.held)
        let fresh = me.id != p.lastMember ? held : held.subtracting(p.lastHeld)
        for tp in fresh where !committedBefore.contains(tp.partition) {
            if let c = candidates[tp.partition] { model.raiseLateBound(tp.partition, c) }
        }
        p.lastHeld = held
        p.lastMember = me.id
    }

    func process(_ p: LabPipe, _ style: SendStyle, deferReaction: Bool) {
        guard p.running, let prod = p.producer, !p.buffer.isEmpty else { return }
        switch p.kind {
        case .eo:
            if p.needsAbort { eoAbortAndRecover(p); return }
            guard let label = p.label else { return }
            let batch = p.buffer
            var records = batch.map { outRecord($0, label) }
            let dropped = sabotaging(.dropRecord), doubled = sabotaging(.duplicateRecord)
            if dropped { records.removeFirst() }
            if doubled { records.append(records[0]) }
            var (n, e) = write(prod, p.kind.output, records, style, plain: false)
            if dropped || doubled { n = e == nil ? batch.count : 0 }
            p.processed += batch.prefix(n)
            p.buffer.removeFirst(n)
            if let e { eoFailed(p, e, deferReaction: deferReaction) }
        case .amo:
            let label = "\(p.name).\(p.incarnation).\(p.opNumber)"
            _ = write(prod, p.kind.output, p.buffer.map { outRecord($0, label) }, style, plain: false)
            p.buffer = []
            try? prod.flush(timeout: nil)   // fire-and-forget writes: wait, for determinism
        case .alo, .late:
            break
        }
    }

    // MARK: Exactly-once pipelines

    func eoBegin(_ p: LabPipe) -> Bool {
        guard let prod = p.producer else { return false }
        let label = "e\(p.slot).\(p.incarnation).\(p.txnSeq + 1)"
        if let e = beginTransaction(prod, label, topic: p.kind.output, shortTimeout: p.spec?.shortTxnTimeout == true, who: p.name) {
            if e.code == .producerFenced { die(p) }
            return false
        }
        p.txnSeq += 1
        p.label = label
        if let z = p.zombie {
            p.zombie = nil
            _ = try? prod.send(p.kind.output, outRecord(z.message, z.label))
        }
        return true
    }

    func eoFailed(_ p: LabPipe, _ e: Error, deferReaction: Bool) {
        checkSequence(e, "\(p.clientId)")
        let code = (e as? KofkaError)?.code
        if code == .producerFenced { die(p); return }
        if deferReaction { p.needsAbort = true; note("   \(p.name) will abort later"); return }
        eoAbortAndRecover(p, rewind: code == .rebalanced)
    }

    /// Aborts the open transaction, then either sends the processed records again in a new
    /// transaction (the slot's `redo` setting) or rewinds the consumer to its committed offsets.
    func eoAbortAndRecover(_ p: LabPipe, rewind forceRewind: Bool = false, attempts: Int = 2) {
        let ended = p.label
        guard eoAbortOnly(p, timeout: nil) else { return }
        // it had committed (offsets included): go on from the committed offsets, redo nothing
        if let ended, model.txn(ended)?.end == .committed { eoRewind(p); return }
        // a redo only while the consumer still holds every partition it read from (else the
        // partitions' new owners process them: rewind)
        let held = Set(p.consumer?.assigned ?? [])
        let stillHeld = (p.processed + p.buffer).allSatisfy { held.contains(TopicPartition($0.topic, $0.partition)) }
        if !forceRewind, stillHeld, p.spec?.redo == true, attempts > 0, !p.processed.isEmpty, eoBegin(p), let prod = p.producer, let label = p.label {
            let redo = p.processed
            note("   \(p.name) redoes \(redo.count) record(s) in \(label)")
            let (_, e) = write(prod, p.kind.output, redo.map { outRecord($0, label) }, .batch, plain: false)
            if let e {
                p.processed = redo
                checkSequence(e, p.clientId)
                if (e as? KofkaError)?.code == .producerFenced { die(p); return }
                eoAbortAndRecover(p, rewind: (e as? KofkaError)?.code == .rebalanced, attempts: attempts - 1)
            }
            return
        }
        eoRewind(p)
    }

    func eoRewind(_ p: LabPipe) {
        p.buffer = []
        p.processed = []
        p.polledMax = [:]
        guard let c = p.consumer else { return }
        settle(p)
        do { try busy { try c.seekToCommitted() } } catch { note("   \(p.name) seek_to_committed: \(errText(error))") }
        note("   \(p.name) rewound to its committed offsets")
    }

    /// Aborts the slot's open transaction; true when it ended.
    @discardableResult
    func eoAbortOnly(_ p: LabPipe, timeout: Duration?) -> Bool {
        guard let prod = p.producer, let label = p.label else { p.needsAbort = false; return true }
        let victim = p.processed.first
        if let e = abortTransaction(prod, label, topic: p.kind.output, who: p.name, timeout: timeout) {
            if e.code == .producerFenced { die(p) }
            return false
        }
        if let victim, sabotaging(.writeAfterAbort) { p.zombie = (label, victim) }
        p.label = nil
        p.needsAbort = false
        return true
    }

    func eoCommit(_ p: LabPipe, commitAnyway: Bool) {
        guard p.running, let prod = p.producer, let c = p.consumer, p.label != nil else { return }
        if p.needsAbort { eoAbortAndRecover(p); return }
        if !p.buffer.isEmpty {
            let before = p.label
            process(p, .batch, deferReaction: false)
            // a failure was handled (aborted, maybe redone): commit at the next chance, not now
            guard p.label == before, p.buffer.isEmpty, !p.needsAbort, p.running else { return }
        }
        guard let label = p.label else { return }
        do {
            settle(p)
            try busy { try prod.sendOffsetsToTransaction(c) }
        } catch {
            note("   \(p.name) send_offsets: \(errText(error))")
            if commitAnyway {
                if (try? prod.commitTransaction(timeout: nil)) != nil {
                    model.violation(.commitAfterFailedOffsets, "\(p.clientId): send_offsets_to_transaction failed (\(errText(error))) in \(label), yet commit_transaction succeeded")
                    model.ended(label, .committed, hw: hw(p.kind.output))
                    p.label = nil
                    eoRewind(p)
                    return
                }
            }
            eoFailed(p, error, deferReaction: false)
            return
        }
        do {
            try busy { try prod.commitTransaction(timeout: nil) { self.report($0, plain: false) } }
        } catch {
            note("   \(p.name) commit \(label): \(errText(error))")
            checkSequence(error, p.clientId)
            let code = (error as? KofkaError)?.code
            if code == .producerFenced { model.ended(label, .commitUnknown, hw: hw(p.kind.output)); die(p); return }
            if code?.isRetriable == true { return }
            eoAbortAndRecover(p, rewind: true)
            return
        }
        model.ended(label, .committed, hw: hw(p.kind.output))
        note("   \(p.name) committed \(label)")
        p.commits += 1
        for (tp, last) in p.polledMax.sorted(by: { $0.key < $1.key }) {
            let got = try? broker.committedOffset(group: p.kind.group, tp)
            if (got ?? -1) < last + 1 {
                model.violation(.offsetsNotCommitted, "\(p.clientId) committed \(label), which holds the output of \(tp) up to offset \(last), but group \(p.kind.group) has committed offset \(got.map(String.init) ?? "none") for \(tp)")
            }
        }
        p.label = nil
        p.processed = []
        p.polledMax = [:]
    }

    /// Ends the open transaction for good: commit (a few tries), else abort and rewind.
    func eoFinish(_ p: LabPipe) {
        for _ in 0..<3 where p.running && p.label != nil { eoCommit(p, commitAnyway: false) }
        if p.running && p.label != nil && eoAbortOnly(p, timeout: nil) { eoRewind(p) }
    }

    func eoAbort(_ p: LabPipe, zeroTimeout: Bool) {
        guard p.running, p.label != nil else { return }
        if eoAbortOnly(p, timeout: zeroTimeout ? .zero : nil) { eoRewind(p) }
    }

    // MARK: Leaving, closing, crashing

    func leave(_ p: LabPipe) {
        guard p.running else { return }
        switch p.kind {
        case .eo:
            eoFinish(p)
        case .amo:
            process(p, .batch, deferReaction: false)
        case .alo, .late:
            break
        }
        closeNow(p)
    }

    /// Closes consumer and producer as they are (an open transaction included).
    func closeNow(_ p: LabPipe) {
        guard let c = p.consumer else { return }
        settle(p)
        do { try busy { try c.close() } } catch { note("   \(p.name) consumer close: \(errText(error))") }
        if let prod = p.producer {
            do { try prod.close(timeout: nil) { self.report($0, plain: false) } } catch { note("   \(p.name) producer close: \(errText(error))") }
        }
        if let l = p.label { model.ended(l, .closed, hw: hw(p.kind.output)) }
        note("   \(p.clientId) closed")
        clear(p)
    }

    /// The instance's process dies.
    func crash(_ p: LabPipe, afterOffsets: Bool) {
        guard let c = p.consumer else { return }
        if afterOffsets, p.kind == .eo, p.label != nil, let prod = p.producer {
            settle(p)
            do { try prod.sendOffsetsToTransaction(c); note("   \(p.name) sent offsets") } catch { note("   \(p.name) send_offsets: \(errText(error))") }
        }
        c.destroy()
        if let l = p.label { model.abandoned(l) }
        note("   \(p.clientId) crashed")
        clear(p)   // the producer is dropped without close: its transaction stays open
    }

    /// A fenced instance exits (it is a zombie).
    func die(_ p: LabPipe) {
        note("   \(p.clientId) is fenced and exits")
        settle(p)
        try? p.consumer?.close()
        if let l = p.label { model.abandoned(l) }
        clear(p)
    }

    func clear(_ p: LabPipe) {
        p.consumer = nil
        p.lent = []
        p.handed = 0
        p.producer = nil
        p.label = nil
        p.buffer = []
        p.processed = []
        p.polledMax = [:]
        p.needsAbort = false
    }

    /// One instance stalls: the clock moves in steps; every other running instance polls between steps.
    func stallOne(_ target: LabPipe?, ms: Int64) {
        var left = ms
        while left > 0 {
            let step = min(left, timing.stallStepMs)
            clock.advance(ms: step)
            left -= step
            for k in PipeKind.allCases {
                for p in pipes[k] ?? [] where p !== target && p.running { poll(p, max: 5) }
            }
        }
    }
}
