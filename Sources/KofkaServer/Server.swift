#if canImport(Glibc)
import Glibc
#endif
import Kofka
import KofkaWire
import NIOCore
import NIOPosix

/// `kofka serve`: a Kafka broker over TCP whose log, groups and transactions are a Kofka
/// storage. SwiftNIO does the I/O (accepting, framing, writing); every request is handled by
/// `WireService` on a thread pool, because the core's storage calls block.
///
/// * One request per connection at a time, answered in order; pipelined requests wait in
///   their connection's queue (as a Kafka broker mutes a connection while it works).
/// * A request that must wait (a Fetch below min bytes, a JoinGroup or SyncGroup waiting for
///   its group) holds no thread: it is parked, tried again when storage changes (one watcher
///   thread waits on `StorageBackend.waitForChange`) or every 50 ms for deadlines.
/// * A frame whose size prefix is negative or above `WireService.maxFrameBytes` closes that
///   connection; nothing else is affected.
/// * `stop()` stops accepting, lets requests being handled finish (up to 5 s), closes every
///   connection and joins its threads.
///
/// ```swift
/// let server = try KofkaServer.start(broker: broker, host: "127.0.0.1", port: 0)
/// print(server.port)
/// server.stop()
/// ```
public final class KofkaServer: Sendable {
    public let broker: Broker
    public let service: WireService
    /// The port it listens on (the one chosen when started with port 0).
    public let port: Int
    public let host: String
    let group: MultiThreadedEventLoopGroup
    let pool: NIOThreadPool
    let serverChannel: Channel
    let state: Locked<State>
    let parked = Parked()

    struct State {
        var stopped = false
        var connections: [ObjectIdentifier: Channel] = [:]
        /// Requests being handled on the pool.
        var inFlight = 0
    }

    /// Requests waiting for a change of storage or a deadline.
    final class Parked: Sendable {
        struct Entry: Sendable {
            var pending: WirePending
            var connection: Connection
            var lastTryNs: UInt64
        }
        let entries = Locked<[Entry]>([])
        let stopping = Locked<Bool>(false)
    }

    private init(broker: Broker, service: WireService, port: Int, host: String, group: MultiThreadedEventLoopGroup,
                 pool: NIOThreadPool, serverChannel: Channel, state: Locked<State>) {
        self.broker = broker; self.service = service; self.port = port; self.host = host
        self.group = group; self.pool = pool; self.serverChannel = serverChannel; self.state = state
    }

    /// Starts serving `broker` on `host:port` (port 0: any free port, see `port`).
    /// Throws `KofkaError(.invalidArg)` when the address cannot be bound.
    public static func start(broker: Broker, host: String = "127.0.0.1", port: Int = 9092, advertisedHost: String? = nil,
                             workerThreads: Int = 8) throws -> KofkaServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = NIOThreadPool(numberOfThreads: max(2, workerThreads))
        pool.start()
        let state = Locked(State())
        let box = Locked<KofkaServer?>(nil)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                guard let server = box.withLock({ $0 }) else { return channel.close() }
                return channel.eventLoop.makeCompletedFuture {
                    let conn = Connection(server: server, channel: channel)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(conn)
                }
            }
        let channel: Channel
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            try? pool.syncShutdownGracefully()
            throw KofkaError(.invalidArg, "cannot listen on \(host):\(port): \(error)")
        }
        let bound = channel.localAddress?.port ?? port
        let advertised = advertisedHost ?? (host == "0.0.0.0" || host == "::" ? "127.0.0.1" : host)
        let service = WireService(broker: broker, host: advertised, port: Int32(bound))
        let server = KofkaServer(broker: broker, service: service, port: bound, host: host, group: group, pool: pool,
                                 serverChannel: channel, state: state)
        box.withLock { $0 = server }
        server.startWatcher()
        return server
    }

    /// Stops: no new connections, requests being handled finish (up to 5 s), every connection
    /// closes, threads end. Idempotent.
    public func stop() {
        let first = state.withLock { s -> Bool in defer { s.stopped = true }; return !s.stopped }
        guard first else { return }
        try? serverChannel.close().wait()
        let until = monoNs() &+ 5_000_000_000
        while state.withLock({ $0.inFlight }) > 0 && monoNs() < until { usleep(1000) }
        parked.stopping.withLock { $0 = true }
        broker.storage.wakeAll()
        let conns = state.withLock { Array($0.connections.values) }
        for c in conns { try? c.close().wait() }
        parked.entries.withLock { $0.removeAll() }
        try? pool.syncShutdownGracefully()
        try? group.syncShutdownGracefully()
    }

    /// Whether `stop()` was called.
    public var stopped: Bool { state.withLock { $0.stopped } }

    /// Connections open now.
    public var connectionCount: Int { state.withLock { $0.connections.count } }

    // MARK: Handling

    /// Handles `frame` for `conn` on the pool and hands the outcome back to its event loop.
    func submit(_ conn: Connection, _ work: @escaping @Sendable () -> WireOutcome) {
        state.withLock { $0.inFlight += 1 }
        pool.submit { [self] st in
            let outcome: WireOutcome = st == .active ? work() : .close("the server is stopping")
            state.withLock { $0.inFlight -= 1 }
            conn.channel.eventLoop.execute { conn.finished(outcome) }
        }
    }

    func park(_ pending: WirePending, _ conn: Connection) {
        parked.entries.withLock { $0.append(.init(pending: pending, connection: conn, lastTryNs: monoNs())) }
    }

    /// The watcher: wakes parked requests when storage changes, and every 50 ms for deadlines.
    private func startWatcher() {
        let storage = broker.storage
        let parked = self.parked
        let this = Unmanaged.passUnretained(self)
        _ = this
        spawnThread { [weak self] in
            var token = storage.changeToken()
            while !parked.stopping.withLock({ $0 }) {
                storage.waitForChange(since: token, timeoutNs: 10_000_000)
                let now = monoNs()
                let newToken = storage.changeToken()
                let changed = newToken != token
                token = newToken
                let due = parked.entries.withLock { list -> [Parked.Entry] in
                    var out: [Parked.Entry] = []
                    list.removeAll { e in
                        let take = changed || now >= e.pending.deadlineNs || now &- e.lastTryNs >= 50_000_000
                        if take { out.append(e) }
                        return take
                    }
                    return out
                }
                guard let self else { return }
                for e in due {
                    guard e.connection.channel.isActive else { continue }
                    let expired = now >= e.pending.deadlineNs
                    submit(e.connection) { e.pending.retry(expired: expired) }
                }
            }
        }
    }

    func register(_ c: Channel) -> Bool {
        state.withLock { s in
            if s.stopped { return false }
            s.connections[ObjectIdentifier(c)] = c
            return true
        }
    }

    func unregister(_ c: Channel) { _ = state.withLock { $0.connections.removeValue(forKey: ObjectIdentifier(c)) } }
}

/// Cuts the byte stream into request frames: a 4-byte big-endian size, then that many bytes.
/// A size that is negative or above `WireService.maxFrameBytes` is an error (the connection closes).
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    struct FrameTooLarge: Error, CustomStringConvertible {
        var size: Int32
        var description: String { "request frame size \(size) outside 8...\(WireService.maxFrameBytes)" }
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let size = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return .needMoreData }
        guard size >= 0 && Int(size) <= WireService.maxFrameBytes else { throw FrameTooLarge(size: size) }
        guard buffer.readableBytes >= 4 + Int(size) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        let frame = buffer.readSlice(length: Int(size))!
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// One client connection: its queue of frames, handled one at a time, answered in order.
final class Connection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    unowned let server: KofkaServer
    let channel: Channel
    // Touched only on the channel's event loop:
    private var queue: [[UInt8]] = []
    private var busy = false
    private var closing = false

    init(server: KofkaServer, channel: Channel) {
        self.server = server
        self.channel = channel
    }

    func channelActive(context: ChannelHandlerContext) {
        if !server.register(channel) { context.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        server.unregister(channel)
        closing = true
        queue.removeAll()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buf = unwrapInboundIn(data)
        queue.append(buf.readBytes(length: buf.readableBytes) ?? [])
        next()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A frame that cannot be a request (FrameTooLarge) or a broken socket: this connection only.
        closing = true
        context.close(promise: nil)
    }

    private func next() {
        guard !busy, !closing, !queue.isEmpty else { return }
        busy = true
        let frame = queue.removeFirst()
        let service = server.service
        server.submit(self) { service.handle(frame) }
    }

    /// The outcome of the request being handled (on the event loop).
    func finished(_ outcome: WireOutcome) {
        switch outcome {
        case .reply(let bytes):
            var buf = channel.allocator.buffer(capacity: bytes.count)
            buf.writeBytes(bytes)
            channel.writeAndFlush(buf, promise: nil)
            busy = false
            next()
        case .noReply:
            busy = false
            next()
        case .close:
            closing = true
            busy = false
            channel.close(promise: nil)
        case .wait(let pending):
            if closing { busy = false; return }
            server.park(pending, self)
        }
    }
}

/// Starts a detached thread.
func spawnThread(_ body: @escaping @Sendable () -> Void) {
    final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var tid = pthread_t()
    let rc = pthread_create(&tid, nil, { arg in
        guard let arg else { return nil }
        Unmanaged<Box>.fromOpaque(arg).takeRetainedValue().body()
        return nil
    }, box)
    if rc == 0 { pthread_detach(tid) } else { Unmanaged<Box>.fromOpaque(box).takeRetainedValue().body() }
}

extension KofkaServer {
    /// Splits a listen address `HOST:PORT` (`[::1]:9092` for IPv6; a bare `HOST` means port
    /// 9092). Throws `KofkaError(.invalidArg)` naming the address when it is malformed.
    public static func parseListen(_ s: String) throws -> (host: String, port: Int) {
        var host = s, portText = "9092"
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { throw KofkaError(.invalidArg, "invalid listen address '\(s)': expected [IPV6]:PORT") }
            host = String(s[s.index(after: s.startIndex)..<close])
            let rest = s[s.index(after: close)...]
            if rest.hasPrefix(":") { portText = String(rest.dropFirst()) } else if !rest.isEmpty {
                throw KofkaError(.invalidArg, "invalid listen address '\(s)': expected [IPV6]:PORT")
            }
        } else if let colon = s.lastIndex(of: ":") {
            host = String(s[..<colon])
            portText = String(s[s.index(after: colon)...])
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else {
            throw KofkaError(.invalidArg, "invalid listen address '\(s)': expected HOST:PORT with a port in 0...65535, e.g. 127.0.0.1:9092")
        }
        return (host, port)
    }
}
