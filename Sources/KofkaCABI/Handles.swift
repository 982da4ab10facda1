import CKofka
import Kofka
import KofkaServer
import Synchronization

// The registry of live handles: what a `kofka_broker *`, `kofka_producer *` or
// `kofka_consumer *` really is.
//
// C never receives an object address. It receives a *token*: a 64-bit value
//
//     bits 63..48  0x4B46 ("KF")  — a non-canonical address on x86-64 and arm64, so a token is
//                                   never NULL and never the address of real memory
//     bits 47..40  the kind        — 1 broker, 2 producer, 3 consumer, 4 server
//     bits 39..0   a serial number — per kind, from 1, never reused
//
// Every export looks its token up here and holds a strong reference to the object for the
// duration of the call, so a close on another thread never frees an object in use. Close
// removes the entry; the object is freed when the last call using it returns. Because serial
// numbers are never reused, a token of the right kind whose serial is below the kind's next
// serial but that is not in the table was issued and since closed (`KOFKA_ERR_CLOSED`); any
// other value was never a handle of that kind (`KOFKA_ERR_INVALID_ARG`). Closed handles cost
// no memory.
//
// The table is sharded by serial number (16 shards, each its own `Mutex` over a `WordTable`),
// so threads using different handles rarely meet on a lock; a lock is held only for the table
// operation, never across a call into the core.

/// What a handle stands for.
enum HandleKind: UInt64, CaseIterable {
    case broker = 1, producer = 2, consumer = 3, server = 4

    var name: String {
        switch self {
        case .broker: "broker"
        case .producer: "producer"
        case .consumer: "consumer"
        case .server: "server"
        }
    }
}

/// A live handle's object.
enum LiveHandle: Sendable {
    case broker(Broker)
    case producer(ProducerBox)
    case consumer(Consumer)
    case server(KofkaServer)

    var kind: HandleKind {
        switch self {
        case .broker: .broker
        case .producer: .producer
        case .consumer: .consumer
        case .server: .server
        }
    }
}

/// What a `kofka_producer *` stands for: the core producer plus the C delivery callback.
final class ProducerBox: Sendable {
    /// The callback and its opaque pointer, read once per batch of reports.
    struct Callback: @unchecked Sendable {   // the opaque pointer is the caller's, passed back verbatim
        var cb: kofka_delivery_cb?
        var opaque: UnsafeMutableRawPointer?
    }
    let producer: Producer
    let callback = Locked(Callback())
    /// The broker's `message.max.bytes`, the bound of every record's lengths (read here once:
    /// not through the broker on every `kofka_produce`).
    let messageMaxBytes: Int
    /// The topic name of the last `kofka_produce`, as the caller's bytes and as a String, so
    /// that a run of records to one topic converts its name once.
    let lastTopic = Locked<(bytes: [CChar], name: String)>(([], ""))
    init(_ p: Producer) {
        producer = p
        messageMaxBytes = p.broker.config.messageMaxBytes
    }
}

final class HandleRegistry: Sendable {
    static let magic: UInt64 = 0x4B46 << 48
    static let serialBits: UInt64 = 40
    static let serialMask: UInt64 = (1 << serialBits) - 1
    static let shardCount = 16

    final class Shard: Sendable {
        let live = Locked(WordTable<LiveHandle>())
    }

    private let shards: [Shard] = (0..<HandleRegistry.shardCount).map { _ in Shard() }
    /// Next serial number per kind (index = kind raw value).
    private let next: [Counter] = (0...4).map { _ in Counter() }

    final class Counter: Sendable {
        let value = Atomic<UInt64>(1)
    }

    /// Registers `object` and returns its token.
    func issue(_ kind: HandleKind, _ object: LiveHandle) throws -> OpaquePointer {
        let serial = next[Int(kind.rawValue)].value.wrappingAdd(1, ordering: .relaxed).oldValue
        guard serial <= Self.serialMask else {
            throw KofkaError(.invalidState, "this process has opened 2^40 \(kind.name) handles; no new ones can be issued")
        }
        let token = Self.magic | (kind.rawValue << Self.serialBits) | serial
        shards[Int(serial % UInt64(Self.shardCount))].live.withLock { $0.insert(token, object) }
        return OpaquePointer(bitPattern: UInt(token))!
    }

    /// The live object behind `p`, or the error a call with it must return.
    @inline(__always)
    func lookup(_ p: OpaquePointer?, _ kind: HandleKind, _ fn: StaticString) throws -> LiveHandle {
        guard let p else { throw invalidArg("\(fn): \(kind.name) is NULL") }
        let token = UInt64(UInt(bitPattern: p))
        if let found = shards[Int((token & Self.serialMask) % UInt64(Self.shardCount))].live.withLock({ $0[token] }),
           found.kind == kind {
            return found
        }
        throw explain(token, kind, fn)
    }

    /// Removes `p`'s entry and returns its object (the caller's reference keeps it alive while
    /// it closes it), or throws as `lookup` does. Of two closes of one handle only one gets it.
    func remove(_ p: OpaquePointer, _ kind: HandleKind, _ fn: StaticString) throws -> LiveHandle {
        let token = UInt64(UInt(bitPattern: p))
        let removed = shards[Int((token & Self.serialMask) % UInt64(Self.shardCount))].live.withLock { live -> LiveHandle? in
            guard let found = live[token], found.kind == kind else { return nil }
            live.removeValue(for: token)
            return found
        }
        if let removed { return removed }
        throw explain(token, kind, fn)
    }

    /// Why `token` is not a live handle of `kind`: closed, another kind, or never a handle.
    private func explain(_ token: UInt64, _ kind: HandleKind, _ fn: StaticString) -> KofkaError {
        let hex = "0x" + String(token, radix: 16)
        guard token & 0xFFFF_0000_0000_0000 == Self.magic,
              let actual = HandleKind(rawValue: (token >> Self.serialBits) & 0xFF) else {
            return invalidArg("\(fn): \(hex) is not a \(kind.name) handle (the library never returned it)")
        }
        let serial = token & Self.serialMask
        guard serial >= 1 && serial < next[Int(actual.rawValue)].value.load(ordering: .relaxed) else {
            return invalidArg("\(fn): \(hex) is not a \(kind.name) handle (the library never returned it)")
        }
        guard actual == kind else {
            return invalidArg("\(fn): \(hex) is a \(actual.name) handle, not a \(kind.name) handle")
        }
        return KofkaError(.closed, "\(fn): the \(kind.name) handle \(hex) was already closed")
    }
}

let handles = HandleRegistry()

// MARK: - Typed lookups

@inline(__always)
func brokerHandle(_ p: OpaquePointer?, _ fn: StaticString) throws -> Broker {
    if case .broker(let b) = try handles.lookup(p, .broker, fn) { return b }
    throw invalidArg("\(fn): not a broker handle")   // not reached: lookup checked the kind
}

@inline(__always)
func producerHandle(_ p: OpaquePointer?, _ fn: StaticString) throws -> ProducerBox {
    if case .producer(let b) = try handles.lookup(p, .producer, fn) { return b }
    throw invalidArg("\(fn): not a producer handle")   // not reached: lookup checked the kind
}

@inline(__always)
func consumerHandle(_ p: OpaquePointer?, _ fn: StaticString) throws -> Consumer {
    if case .consumer(let c) = try handles.lookup(p, .consumer, fn) { return c }
    throw invalidArg("\(fn): not a consumer handle")   // not reached: lookup checked the kind
}

@inline(__always)
func serverHandle(_ p: OpaquePointer?, _ fn: StaticString) throws -> KofkaServer {
    if case .server(let s) = try handles.lookup(p, .server, fn) { return s }
    throw invalidArg("\(fn): not a server handle")   // not reached: lookup checked the kind
}
