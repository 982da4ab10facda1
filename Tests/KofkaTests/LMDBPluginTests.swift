import Testing
import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import Kofka
import KofkaStorageTesting

/// The LMDB storage plugin (libkofka_lmdb.so, built beside these tests by `swift build`), loaded
/// the way a user's program loads it: by its scheme, with no configuration. Skipped, saying
/// why, when the plugin cannot be loaded (built without liblmdb-dev).
enum LMDBPlugin {
    /// Why the plugin cannot be used here, or nil when it can.
    static let unavailable: String? = {
        let dir = freshDirectory()
        defer { StorageConformance.removeStore(at: dir) }
        do {
            try Broker("lmdb:" + dir, config: [("log.retention.check.interval.ms", "0")]).close()
            return nil
        } catch {
            return "the LMDB plugin cannot be loaded (install liblmdb-dev and rebuild): \(error)"
        }
    }()

    static var available: Bool { unavailable == nil }
    static var why: Comment { Comment(rawValue: unavailable ?? "") }

    static let counter = Locked(0)

    /// A directory path under /tmp where nothing is yet.
    static func freshDirectory() -> String {
        let n = counter.withLock { n -> Int in n += 1; return n }
        return "/tmp/kofka-lmdb-test-\(getpid())-\(n)-\(UInt32.random(in: 0 ... .max))"
    }

    static let factory = StorageConformance.Factory.storageString("lmdb:/tmp/kofka-lmdb-conformance")
}

@Suite("LMDB plugin")
struct LMDBPluginTests {
    @Test(.enabled(if: LMDBPlugin.available, LMDBPlugin.why), arguments: StorageConformance.checks.map(\.name))
    func conformance(check name: String) throws {
        let check = try #require(StorageConformance.check(named: name))
        recordConformance(check, factory: LMDBPlugin.factory)
    }

    @Test(.enabled(if: LMDBPlugin.available, LMDBPlugin.why))
    func aBrokerOnLMDBProducesConsumesAndKeepsItAcrossReopen() throws {
        let dir = LMDBPlugin.freshDirectory()
        defer { StorageConformance.removeStore(at: dir) }
        do {
            let b = try Broker("lmdb:" + dir)
            defer { b.close() }
            try b.createTopic("t", partitions: 2)
            let p = try b.producer(try ProducerConfig([("delivery.mode", "exactly-once")]))
            for r in try p.sendBatch("t", (0..<100).map { Record(key: Array("k\($0 % 7)".utf8), value: Array("v\($0)".utf8)) }) { _ = try r.get() }
            try p.close()
        }
        let b = try Broker("lmdb:" + dir)
        defer { b.close() }
        let c = try b.consumer(try ConsumerConfig([("group.id", "g"), ("auto.offset.reset", "earliest")]))
        try c.subscribe(["t"])
        var got: [String] = []
        while got.count < 100 {
            let batch = try c.pollBatch(max: 1000, timeout: .seconds(2))
            if batch.isEmpty { break }
            got += batch.map { String(decoding: $0.value ?? [], as: UTF8.self) }
        }
        try c.commit()
        #expect(Set(got) == Set((0..<100).map { "v\($0)" }))
        #expect(try b.watermarks("t", 0).high + b.watermarks("t", 1).high == 100)
    }

    @Test(.enabled(if: LMDBPlugin.available, LMDBPlugin.why))
    func retentionAndDeleteRecordsRunOnLMDB() throws {
        let dir = LMDBPlugin.freshDirectory()
        defer { StorageConformance.removeStore(at: dir) }
        let b = try Broker("lmdb:" + dir, config: [("log.retention.check.interval.ms", "0")])
        defer { b.close() }
        try b.createTopic("r", partitions: 1, config: [("retention.bytes", "1000")])
        let p = try b.producer()
        for _ in 0..<10 {
            for r in try p.sendBatch("r", (0..<50).map { _ in Record(partition: 0, value: Array(repeating: 7, count: 100)) }) { _ = try r.get() }
        }
        #expect(try b.watermarks("r", 0) == (0, 500))
        let report = try b.maintain()
        let (low, high) = try b.watermarks("r", 0)
        #expect(high == 500)
        #expect(low > 0 && low <= 490, "retention.bytes=1000 keeps about 10 records of 100 bytes; low watermark \(low) (\(report))")
        let bytes = try b.storage.read { r in try r.logBytes(0) }
        #expect(bytes <= 1000 + 100 * 50, "bytes held after retention: \(bytes)")
        #expect(try b.deleteRecords("r", 0, before: 499) == 499)
        #expect(try b.watermarks("r", 0) == (499, 500))
    }

    @Test(.enabled(if: LMDBPlugin.available, LMDBPlugin.why))
    func aWriterHeldPastTheBusyTimeoutFailsWithBusyNamingThePath() throws {
        let dir = LMDBPlugin.freshDirectory()
        defer { StorageConformance.removeStore(at: dir) }
        let holder = try Broker("lmdb:" + dir, config: [("log.retention.check.interval.ms", "0")])
        // The plugin is loaded now, so its config keys are accepted (see the known issue below).
        let waiter = try Broker("lmdb:" + dir, config: [("log.retention.check.interval.ms", "0"), ("lmdb.busy.timeout.ms", "100")])
        defer { holder.close(); waiter.close() }
        let entered = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            _ = try? holder.storage.write { w in
                try w.put("held", [1])
                entered.signal()
                release.wait()
            }
        }
        entered.wait()
        let start = ContinuousClock.now
        #expect { try waiter.storage.write { try $0.put("other", [2]) } } throws: {
            guard let e = $0 as? KofkaError else { return false }
            return e.code == .busy && e.code.isRetriable && e.message.contains(dir) && e.message.contains("100 ms")
        }
        let waited = ContinuousClock.now - start
        #expect(waited >= .milliseconds(90) && waited < .seconds(2), "waited \(waited)")
        // Readers are not blocked by the writer.
        #expect(try waiter.storage.read { try $0.get("held") } == nil)
        release.signal()
        group.wait()
        #expect(try waiter.storage.read { try $0.get("held") } == [1])
        #expect(try waiter.storage.read { try $0.get("other") } == nil)
    }

    @Test(.enabled(if: LMDBPlugin.available, LMDBPlugin.why))
    func aFullMapFailsWithStorageNamingTheConfigKeyAndWritesNothing() throws {
        let dir = LMDBPlugin.freshDirectory()
        defer { StorageConformance.removeStore(at: dir) }
        _ = LMDBPlugin.unavailable   // loaded, so lmdb.* keys are accepted
        let b = try Broker("lmdb:" + dir, config: [("log.retention.check.interval.ms", "0"), ("lmdb.map.size", "1048576")])
        defer { b.close() }
        try b.createTopic("t", partitions: 1)
        _ = try b.storage.write { try $0.append(0, [RecordData(timestampMs: 1, key: nil, value: [1], headers: nil)], txn: 0) }
        #expect { try b.storage.write { try $0.append(0, (0..<40).map { _ in RecordData(timestampMs: 1, key: nil, value: Array(repeating: 1, count: 50_000), headers: nil) }, txn: 0) } } throws: {
            guard let e = $0 as? KofkaError else { return false }
            return e.code == .storage && e.message.contains(dir) && e.message.contains("lmdb.map.size") && e.message.contains("MDB_MAP_FULL")
        }
        #expect(try b.storage.read { try $0.highWatermark(0) } == 1)
        #expect(try b.storage.write { try $0.append(0, [RecordData(timestampMs: 1, key: nil, value: [2], headers: nil)], txn: 0) } == 1)
    }

    @Test(.enabled(if: LMDBPlugin.available, LMDBPlugin.why))
    func badLocationsAndKeysAreRefusedNamingThem() throws {
        _ = LMDBPlugin.unavailable
        let file = LMDBPlugin.freshDirectory()
        defer { unlink(file) }
        close(open(file, O_CREAT | O_WRONLY, 0o644))
        #expect { try Broker("lmdb:" + file) } throws: {
            guard let e = $0 as? KofkaError else { return false }
            return e.code == .storage && e.message.contains(file) && e.message.contains("not a directory")
        }
        #expect { try Broker("lmdb:") } throws: { ($0 as? KofkaError)?.code == .invalidArg }
        let dir = LMDBPlugin.freshDirectory()
        defer { StorageConformance.removeStore(at: dir) }
        #expect { try Broker("lmdb:" + dir, config: [("lmdb.mapsize", "1")]) } throws: {
            guard let e = $0 as? KofkaError else { return false }
            return e.code == .invalidConfig && e.message.contains("lmdb.mapsize")
        }
        #expect { try Broker("lmdb:" + dir, config: [("lmdb.sync", "sometimes")]) } throws: {
            guard let e = $0 as? KofkaError else { return false }
            return e.code == .invalidConfig && e.message.contains("sometimes") && e.message.contains("full, normal or off")
        }
        // An LMDB environment that is not Kofka's (here: a file the plugin did not write).
        mkdir(dir, 0o755)
        let data = dir + "/data.mdb"
        let f = fopen(data, "w")
        fputs(String(repeating: "this is not an LMDB file\n", count: 400), f)
        fclose(f)
        #expect { try Broker("lmdb:" + dir) } throws: {
            guard let e = $0 as? KofkaError else { return false }
            return e.code == .storage && e.message.contains(dir) && e.message.contains("MDB_INVALID")
        }
    }

    /// Closing a broker while other threads are inside the plugin (polls waiting in
    /// wait_for_change, sends inside write transactions) waits for those calls to return and
    /// calls nothing on the plugin after its close: every thread ends with CLOSED, none crashes.
    @Test(.enabled(if: LMDBPlugin.available, LMDBPlugin.why))
    func closingABrokerWithCallsInFlightInThePluginEndsThemAndNeverCallsItAfterClose() throws {
        for round in 0..<5 {
            let dir = LMDBPlugin.freshDirectory()
            defer { StorageConformance.removeStore(at: dir) }
            let broker = try Broker("lmdb:" + dir, config: [("log.retention.check.interval.ms", "0")])
            try broker.createTopic("t", partitions: 2)
            let outcomes = Locked<[String]>([])
            var finished: [(Double) -> Bool] = []
            for i in 0..<2 {
                let c = try broker.consumer(try ccfg([("group.id", "g\(i)")]))
                try c.subscribe(["t"])
                finished.append(ConcurrencyTests.background {
                    while true {
                        do { _ = try c.pollBatch(max: 100, timeout: nil) } catch {
                            outcomes.withLock { $0.append("poll: \(error)") }
                            return
                        }
                    }
                })
                let p = try broker.producer(try pcfg([("linger.ms", "0")]))
                finished.append(ConcurrencyTests.background {
                    var n = 0
                    while true {
                        do { _ = try p.send("t", Record(value: bytes("v\(n)"))); n += 1 } catch {
                            outcomes.withLock { $0.append("send: \(error)") }
                            return
                        }
                    }
                })
            }
            sleepMs(50 + round * 20)
            broker.close()
            for (i, done) in finished.enumerated() { #expect(done(5), "thread \(i) ends after the close") }
            let seen = outcomes.withLock { $0 }
            #expect(seen.count == 4)
            #expect(seen.allSatisfy { $0.contains("closed") || $0.contains("CLOSED") }, "\(seen)")
        }
    }

    /// The broker loads the plugin a storage string names before it checks its config, so the
    /// plugin's own keys are accepted on the first open in a process (they once were refused).
    @Test(.enabled(if: LMDBPlugin.available, LMDBPlugin.why))
    func pluginKeysAreAcceptedOnTheFirstOpenOfAProcess() throws {
        // Only a fresh process shows it (this one has loaded the plugin already): the same open
        // through the kofka command, which runs it as its first open.
        let cli = selfDirectory() + "/kofka-cli"
        guard access(cli, X_OK) == 0 else { return }
        let dir = LMDBPlugin.freshDirectory()
        defer { StorageConformance.removeStore(at: dir) }
        let status = runProcess([cli, "topics", "--storage", "lmdb:" + dir, "-X", "lmdb.map.size=67108864"])
        #expect(status == 0)
    }
}

/// The folder of the running test binary.
func selfDirectory() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    guard n > 0 else { return "." }
    let path = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
}

/// Runs a program with its output discarded; its exit status.
func runProcess(_ args: [String]) -> Int32 {
    var pid: pid_t = 0
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    var cargs = args.map { strdup($0) }
    cargs.append(nil)
    defer { for a in cargs { free(a) } }
    guard posix_spawn(&pid, args[0], &actions, nil, cargs, environ) == 0 else { return -1 }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return (status >> 8) & 0xff
}
