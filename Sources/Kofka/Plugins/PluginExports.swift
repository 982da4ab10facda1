import CKofka
#if canImport(Glibc)
import Glibc
#endif

// The functions a plugin calls from its kofka_plugin_init (include/kofka.h, "Plugins"). They
// live in the core, so that they are there in every program that embeds Kofka — libkofka.so,
// or a Swift program — and a plugin's kofka_* calls reach the copy that loaded it.

@c @implementation
public func kofka_storage_register(_ scheme: UnsafePointer<CChar>?, _ ops: UnsafePointer<kofka_storage_ops>?,
                                   _ opaque: UnsafeMutableRawPointer?) -> kofka_err {
    pluginCall {
        guard let scheme else { throw KofkaError(.invalidArg, "kofka_storage_register: scheme is NULL") }
        guard let ops else { throw KofkaError(.invalidArg, "kofka_storage_register: ops is NULL") }
        let name = String(cString: scheme)
        let table = try copyStorageOps(ops, scheme: name)
        let context = UInt(bitPattern: opaque)
        try Plugins.registerStorage(name) { location, config in
            try withCConfig(config) { cfg in
                var instance: UnsafeMutableRawPointer?
                var errstr = [CChar](repeating: 0, count: 512)
                StorageErrorMessage.clear()
                let rc = location.withCString { loc in
                    errstr.withUnsafeMutableBufferPointer { table.open(UnsafeMutableRawPointer(bitPattern: context), loc, cfg, &instance, $0.baseAddress, $0.count) }
                }
                guard rc == KOFKA_OK, let instance else {
                    let code = ErrorCode(rawValue: Int32(bitPattern: rc.rawValue)) ?? .storage
                    let said = cString(errstr)
                    throw KofkaError(code == .ok ? .storage : code, "cannot open \(name) storage '\(Broker.redacted(location))': \(said.isEmpty ? (StorageErrorMessage.take() ?? code.name) : said)")
                }
                return CStorageBackend(ops: table, instance: instance, scheme: name)
            }
        }
    }
}

/// Copies a `kofka_storage_ops` (at most `struct_size` bytes) after checking its required slots.
private func copyStorageOps(_ p: UnsafePointer<kofka_storage_ops>, scheme: String) throws -> kofka_storage_ops {
    let raw = UnsafeRawPointer(p)
    let size = raw.load(as: Int.self)
    let required = (MemoryLayout<kofka_storage_ops>.offset(of: \kofka_storage_ops.remove) ?? 0) + MemoryLayout<UnsafeRawPointer>.size
    guard size >= required else {
        throw KofkaError(.invalidArg, "kofka_storage_register('\(scheme)'): struct_size \(size) is too small: the required slots need \(required) bytes")
    }
    var ops = kofka_storage_ops()
    withUnsafeMutableBytes(of: &ops) { dst in
        dst.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: min(size, MemoryLayout<kofka_storage_ops>.size)))
    }
    let missing = [("open", ops.open == nil), ("close", ops.close == nil), ("begin", ops.begin == nil), ("commit", ops.commit == nil),
                   ("rollback", ops.rollback == nil), ("get", ops.get == nil), ("put", ops.put == nil), ("del", ops.del == nil),
                   ("scan", ops.scan == nil), ("log_state", ops.log_state == nil), ("append", ops.append == nil),
                   ("read", ops.read == nil), ("truncate", ops.truncate == nil), ("remove", ops.remove == nil)].filter(\.1).map(\.0)
    guard missing.isEmpty else {
        throw KofkaError(.invalidArg, "kofka_storage_register('\(scheme)'): required slots are NULL: \(missing.joined(separator: ", "))")
    }
    return ops
}

@c @implementation
public func kofka_interceptors_register(_ name: UnsafePointer<CChar>?, _ ic: UnsafePointer<kofka_interceptors>?) -> kofka_err {
    pluginCall {
        guard let name else { throw KofkaError(.invalidArg, "kofka_interceptors_register: name is NULL") }
        guard let ic else { throw KofkaError(.invalidArg, "kofka_interceptors_register: ic is NULL") }
        try Plugins.registerInterceptor(try CInterceptor(ic), name: String(cString: name))
    }
}

@c @implementation
public func kofka_storage_set_error(_ message: UnsafePointer<CChar>?) {
    StorageErrorMessage.set(message)
}

/// Runs a plugin-facing call: its error becomes a code and the calling thread's message for
/// `kofka_last_error()`.
func pluginCall(_ body: () throws -> Void) -> kofka_err {
    do {
        try body()
        LastError.clear()
        return KOFKA_OK
    } catch let e as KofkaError {
        LastError.set(e.message)
        return kofka_err(rawValue: UInt32(bitPattern: e.code.rawValue))
    } catch {
        LastError.set("\(error)")
        return KOFKA_ERR_INVALID_ARG
    }
}
