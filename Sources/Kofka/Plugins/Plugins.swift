#if canImport(Glibc)
import Glibc
#endif

/// Makes a storage backend for a storage string's location (what follows `SCHEME:`), given
/// the broker's config pairs (keys `SCHEME.*` are the backend's).
public typealias StorageFactory = @Sendable (_ location: String, _ config: [(String, String)]) throws -> any StorageBackend

/// What plugins provide, process-wide (like SQLite's VFS list): storage schemes beyond
/// `memory:` and `sqlite:` — registered by plugin libraries (`kofka_storage_register`), by
/// Python (`kofka.register_storage`) or by Swift — and interceptors registered by name
/// (`kofka_interceptors_register`), with the library that registered each.
///
/// ```swift
/// try Plugins.registerStorage("mystore") { location, _ in try MyStore(path: location) }
/// let broker = try Broker("mystore:/data/x")
/// ```
public enum Plugins {
    struct Registry {
        var factories: [String: StorageFactory] = [:]
        /// Interceptors registered process-wide, by name, with the library that registered them.
        var interceptors: [(name: String, library: String?, interceptor: any Interceptor)] = []
        /// Plugin libraries loaded, by path, and what registering them answered.
        var loaded: [String: Result<Void, KofkaError>] = [:]
        /// The `kofka_plugin_config` entry points of loaded libraries that have one, by path.
        var configure: [String: PluginLoader.InitFn] = [:]
        /// The library whose `kofka_plugin_init` is running (what it registers is its own).
        var loading: String?
        /// Names that plugins registered (schemes and interceptors): config keys under them belong to them.
        var pluginNames: Set<String> = []
    }
    static let registry = Locked(Registry())

    static let builtIn: Set<String> = ["memory", "sqlite"]

    /// Checks a scheme name: `[a-z0-9.+-]{1,32}`.
    static func validate(_ scheme: String) throws {
        let ok = (1...32).contains(scheme.utf8.count) && scheme.utf8.allSatisfy { c in
            (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2e || c == 0x2b || c == 0x2d
        }
        guard ok else { throw KofkaError(.invalidArg, "invalid storage scheme '\(scheme)': expected 1 to 32 characters of [a-z0-9.+-]") }
    }

    /// Registers `factory` for `scheme`; `kofka_broker_open("SCHEME:…")` and `Broker("SCHEME:…")`
    /// use it from then on. Throws `.invalidArg` for a bad or already registered scheme.
    public static func registerStorage(_ scheme: String, _ factory: @escaping StorageFactory) throws {
        try validate(scheme)
        guard !builtIn.contains(scheme) else { throw KofkaError(.invalidArg, "storage scheme '\(scheme)' is built in and cannot be registered") }
        try registry.withLock { r in
            guard r.factories[scheme] == nil else { throw KofkaError(.invalidArg, "storage scheme '\(scheme)' is already registered") }
            r.factories[scheme] = factory
            r.pluginNames.insert(scheme)   // SCHEME.* config keys belong to the backend
        }
    }

    /// The factory for `scheme`, if registered.
    static func factory(_ scheme: String) -> StorageFactory? { registry.withLock { $0.factories[scheme] } }

    /// Every registered scheme, sorted.
    public static var registered: [String] { registry.withLock { $0.factories.keys.sorted() } }

    /// Registers `interceptor` under `name`, process-wide: brokers whose config key
    /// `interceptors` names it use it (by default, a broker uses those registered by the
    /// libraries of its own `plugin.library.paths`). Throws `.invalidArg` for an empty or
    /// already registered name.
    public static func registerInterceptor(_ interceptor: any Interceptor, name: String) throws {
        guard !name.isEmpty else { throw KofkaError(.invalidArg, "an interceptor needs a name") }
        try registry.withLock { r in
            guard !r.interceptors.contains(where: { $0.name == name }) else {
                throw KofkaError(.invalidArg, "interceptors named '\(name)' are already registered")
            }
            r.interceptors.append((name, r.loading, interceptor))
            r.pluginNames.insert(name)   // NAME.* config keys belong to the interceptors
        }
    }

    /// The registered interceptors a broker with `config` uses: those its `interceptors` key
    /// names, else those registered by the libraries of its `plugin.library.paths`.
    static func selectedInterceptors(_ config: BrokerConfig) -> [(name: String, interceptor: any Interceptor)] {
        registry.withLock { r in
            if let names = config.interceptorNames {
                return names.compactMap { n in r.interceptors.first { $0.name == n }.map { ($0.name, $0.interceptor) } }
            }
            let libs = Set(config.pluginLibraryPaths)
            return r.interceptors.filter { $0.library.map(libs.contains) ?? false }.map { ($0.name, $0.interceptor) }
        }
    }

    /// Names in `names` that no one registered.
    static func unknownInterceptors(_ names: [String]) -> [String] {
        registry.withLock { r in names.filter { n in !r.interceptors.contains { $0.name == n } } }
    }
}
