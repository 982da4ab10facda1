import CKofka
#if canImport(Glibc)
import Glibc
#endif

/// Loads plugin libraries (`plugin.library.paths`, and `libkofka_SCHEME.so` for a scheme nobody
/// registered) and runs their `kofka_plugin_init`, each library once per process.
enum PluginLoader {
    typealias InitFn = @convention(c) (UnsafePointer<UnsafePointer<CChar>?>?, UnsafeMutablePointer<CChar>?, Int) -> kofka_err

    /// Loads every library of `paths` not loaded yet; throws what the first failing one answered.
    static func load(_ paths: [String], config: [(String, String)]) throws {
        for p in paths { try load(p, config: config) }
    }

    /// Gives this broker's config to every library of `paths` that exports
    /// `kofka_plugin_config` (a plugin is initialised once per process; this is called for
    /// every broker that names it). Throws what a library answered.
    static func configure(_ paths: [String], config: [(String, String)]) throws {
        for path in paths {
            guard let fn = Plugins.registry.withLock({ $0.configure[path] }) else { continue }
            try call(fn, path: path, entry: "kofka_plugin_config", config: config)
        }
    }

    /// Calls a plugin entry point with `config`; throws what it answered.
    private static func call(_ fn: InitFn, path: String, entry: String, config: [(String, String)]) throws {
        var errstr = [CChar](repeating: 0, count: 512)
        let rc = withCConfig(config) { cfg in errstr.withUnsafeMutableBufferPointer { fn(cfg, $0.baseAddress, $0.count) } }
        guard rc == KOFKA_OK else {
            let message = cString(errstr)
            let code = ErrorCode(rawValue: Int32(bitPattern: rc.rawValue)) ?? .invalidArg
            throw KofkaError(code, "plugin library '\(path)': \(entry) failed: \(message.isEmpty ? code.name : message)")
        }
    }

    /// Loads one library and registers what it provides (once per process; a failed load is
    /// answered the same way again).
    static func load(_ path: String, config: [(String, String)]) throws {
        if let done = Plugins.registry.withLock({ $0.loaded[path] }) { return try done.get() }
        let result: Result<Void, KofkaError>
        do {
            try initialise(path, config: config)
            result = .success(())
        } catch let e as KofkaError {
            result = .failure(e)
        } catch {
            result = .failure(KofkaError(.invalidArg, "plugin library \(path): \(error)"))
        }
        Plugins.registry.withLock { $0.loaded[path] = result }
        try result.get()
    }

    private static func initialise(_ path: String, config: [(String, String)]) throws {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "unknown error"
            throw KofkaError(.invalidArg, "cannot load plugin library '\(path)': \(why)")
        }
        guard let sym = dlsym(handle, "kofka_plugin_init") else {
            throw KofkaError(.invalidArg, "plugin library '\(path)' has no kofka_plugin_init")
        }
        let fn = unsafeBitCast(sym, to: InitFn.self)
        Plugins.registry.withLock { $0.loading = path }
        defer { Plugins.registry.withLock { $0.loading = nil } }
        try call(fn, path: path, entry: "kofka_plugin_init", config: config)
        if let c = dlsym(handle, "kofka_plugin_config") {
            let configure = unsafeBitCast(c, to: InitFn.self)
            Plugins.registry.withLock { $0.configure[path] = configure }
        }
    }

    /// The factory for `scheme`: registered already, or registered by `libkofka_SCHEME.so`
    /// found beside the image that holds Kofka (libkofka.so, or the program), then on the
    /// library path. Throws `.invalidArg` naming where it looked.
    static func factory(scheme: String, config: [(String, String)]) throws -> StorageFactory {
        if let f = Plugins.factory(scheme) { return f }
        try Plugins.validate(scheme)
        let name = "libkofka_\(libraryName[scheme] ?? scheme).so"
        var tried: [String] = []
        if let dir = imageDirectory() {
            let beside = dir + "/" + name
            tried.append(beside)
            if access(beside, F_OK) == 0 {
                try load(beside, config: config)
                if let f = Plugins.factory(scheme) { return f }
                throw KofkaError(.invalidArg, "plugin library '\(beside)' did not register the storage scheme '\(scheme)'")
            }
        }
        tried.append("\(name) on the library path")
        if let probe = dlopen(name, RTLD_NOW | RTLD_LOCAL) {
            // Found on the library path: load it through the common path (once, by name).
            _ = probe
            try load(name, config: config)
            if let f = Plugins.factory(scheme) { return f }
            throw KofkaError(.invalidArg, "plugin library '\(name)' did not register the storage scheme '\(scheme)'")
        }
        let known = (["memory:", "sqlite:PATH"] + Plugins.registered.map { "\($0):…" }).joined(separator: ", ")
        throw KofkaError(.invalidArg, "unknown storage scheme '\(scheme):': known schemes are \(known), and no plugin library was found (looked for \(tried.joined(separator: ", ")))")
    }

    /// Schemes served by a plugin named after another scheme (`postgres:` is `postgresql:`).
    static let libraryName = ["postgres": "postgresql"]

    /// The folder of the image (shared library or program) that holds this code: the mapping
    /// of `/proc/self/maps` that contains one of its functions.
    static func imageDirectory() -> String? {
        let anchor = UInt(bitPattern: unsafeBitCast(imageAnchor, to: UnsafeRawPointer.self))
        guard let f = fopen("/proc/self/maps", "r") else { return nil }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, Int32(line.count), f) != nil {
            let text = cString(line)
            let fields = text.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, let dash = fields[0].firstIndex(of: "-"),
                  let lo = UInt(fields[0][..<dash], radix: 16), let hi = UInt(fields[0][fields[0].index(after: dash)...], radix: 16),
                  lo <= anchor && anchor < hi else { continue }
            let path = String(fields[5...].joined(separator: " ").filter { $0 != "\n" })
            guard let slash = path.lastIndex(of: "/") else { return nil }
            return String(path[..<slash])
        }
        return nil
    }
}

/// A C function of this image: the mapping that holds its address is the image's file.
private let imageAnchor: @convention(c) () -> Void = { }

/// The NUL-terminated string at the start of `chars` (all of it when there is no NUL).
func cString(_ chars: [CChar]) -> String {
    let end = chars.firstIndex(of: 0) ?? chars.count
    return String(decoding: chars[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Runs `body` with `pairs` as a NULL-terminated C key/value array (valid during the call).
func withCConfig<T>(_ pairs: [(String, String)], _ body: (UnsafePointer<UnsafePointer<CChar>?>) throws -> T) rethrows -> T {
    var strings: [UnsafeMutablePointer<CChar>?] = []
    for (k, v) in pairs { strings.append(strdup(k)); strings.append(strdup(v)) }
    strings.append(nil)
    defer { for s in strings { free(s) } }
    return try strings.withUnsafeBufferPointer { buf in
        try buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buf.count) { try body($0) }
    }
}
