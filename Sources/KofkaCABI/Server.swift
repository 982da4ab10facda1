import CKofka
import Kofka
import KofkaServer

// kofka_server_*: the Kafka wire-protocol server (include/kofka.h, "The Kafka wire protocol").

/// The keys kofka_server_start's config understands.
private let serverKeys = ["advertised.host", "server.worker.threads"]

@c @implementation
public func kofka_server_start(_ b: OpaquePointer?, _ listen: UnsafePointer<CChar>?, _ config: UnsafePointer<UnsafePointer<CChar>?>?,
                               _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kofka_err {
    run {
        let broker = try brokerHandle(b, "kofka_server_start")
        let out = try need(out, "out", "kofka_server_start")
        let address = listen.map { String(cString: $0) } ?? "127.0.0.1:9092"
        var advertised: String?
        var workers = 8
        for (k, v) in try configPairs(config) {
            switch k {
            case "advertised.host":
                guard !v.isEmpty else { throw KofkaError(.invalidConfig, "kofka_server_start: advertised.host must not be empty") }
                advertised = v
            case "server.worker.threads":
                guard let n = Int(v), (2...256).contains(n) else {
                    throw KofkaError(.invalidConfig, "kofka_server_start: server.worker.threads '\(v)' is not an integer in 2...256")
                }
                workers = n
            default:
                throw KofkaError(.invalidConfig, "kofka_server_start: unknown config key '\(k)' (known keys: \(serverKeys.joined(separator: ", ")))")
            }
        }
        try broker.checkOpenForServing()
        let (host, port) = try KofkaServer.parseListen(address)
        let server = try KofkaServer.start(broker: broker, host: host, port: port, advertisedHost: advertised, workerThreads: workers)
        do {
            out.pointee = try handles.issue(.server, .server(server))
        } catch {
            server.stop()
            throw error
        }
    }
}

@c @implementation
public func kofka_server_port(_ s: OpaquePointer?, _ port: UnsafeMutablePointer<Int32>?) -> kofka_err {
    run {
        let server = try serverHandle(s, "kofka_server_port")
        let out = try need(port, "port", "kofka_server_port")
        out.pointee = Int32(server.port)
    }
}

@c @implementation
public func kofka_server_stop(_ s: OpaquePointer?) -> kofka_err {
    run {
        guard let s else { return }
        if case .server(let server) = try handles.remove(s, .server, "kofka_server_stop") { server.stop() }
    }
}

extension Broker {
    /// Throws `.closed` when the broker was closed.
    func checkOpenForServing() throws {
        if closed { throw KofkaError(.closed, "kofka_server_start: the broker on '\(storageString)' is closed") }
    }
}
