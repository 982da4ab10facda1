// swift-tools-version:6.2
import PackageDescription
import Foundation

/// LMDB's headers (Debian: liblmdb-dev). Without them the LMDB plugin builds as a stub whose
/// kofka_plugin_init says so, and the raw LMDB reference of the storage benchmark is left out.
let haveLMDB = FileManager.default.fileExists(atPath: "/usr/include/lmdb.h")
let linkLMDB: [LinkerSetting] = haveLMDB ? [.linkedLibrary("lmdb")] : []

/// Programs of this package that load C plugins (the kofka command, the tests) carry the C ABI
/// (KofkaCABI) and export it, so that a plugin's kofka_* calls reach the copy of Kofka that
/// loaded it, as they reach libkofka.so in a C or Python program.
let exportPluginAPI: [LinkerSetting] = [.unsafeFlags(["-Xlinker", "--export-dynamic"], .when(platforms: [.linux]))]

/// A C plugin is linked as plain C: swiftc links every product and adds the Swift runtime to it
/// (swiftrt.o and libswiftCore.so): -nostartfiles drops the first, -static-stdlib turns the second
/// into an archive nothing is taken from, and no toolchain rpath is written.
let pluginLinkFlags = ["-nostartfiles", "-no-toolchain-stdlib-rpath", "-static-stdlib"]

let package = Package(
    name: "Kofka",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Kofka", targets: ["Kofka"]),
        .library(name: "kofka", type: .dynamic, targets: ["KofkaCABI"]),
        // Plugins shipped with Kofka, built beside libkofka.so and loaded at run time (include/kofka.h, "Plugins").
        .library(name: "kofka_metrics", type: .dynamic, targets: ["KofkaMetrics"]),
        .library(name: "kofka_postgresql", type: .dynamic, targets: ["KofkaPostgres"]),
        .executable(name: "kofka-cli", targets: ["kofka-cli"]),
        // The benchmarks (bench/swift): Kofka beside raw SQLite, a C log, raw LMDB and raw libpq.
        .executable(name: "kofka-bench", targets: ["kofka-bench"]),
        // The storage conformance suite, for backends outside Kofka (Swift, or C through `kofka lab conformance`).
        .library(name: "KofkaStorageTesting", targets: ["KofkaStorageTesting"]),
        // libkofka_lmdb.so: the LMDB storage plugin (scheme lmdb:), built beside libkofka.so, not linked to it.
        .library(name: "kofka_lmdb", type: .dynamic, targets: ["KofkaLMDB"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // `kofka serve`: only NIOCore and NIOPosix are used (a lean build on 2 cores).
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
    ],
    targets: [
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite"),
        .systemLibrary(name: "CKofka", path: "Sources/CKofka"),
        .target(name: "CKofkaShims", path: "Sources/CKofkaShims"),
        .target(name: "Kofka", dependencies: ["CSQLite", "CKofka", "CKofkaShims"]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        // The Kafka wire protocol: codecs, RecordBatch v2, request handlers calling the core. No I/O.
        .target(name: "KofkaWire", dependencies: ["Kofka", "CZlib"]),
        // `kofka serve`: the SwiftNIO server that frames requests for KofkaWire.
        .target(name: "KofkaServer", dependencies: [
            "KofkaWire", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .target(name: "KofkaCABI", dependencies: ["Kofka", "CKofka", "KofkaServer", "KofkaStorageTesting"]),
        // The delivery lab, its checker and the schedule explorer: test machinery, not shipped in Kofka.
        .target(name: "KofkaLab", dependencies: ["Kofka"]),
        .target(name: "CRefLog", path: "Sources/CRefLog"),
        // The metrics interceptor plugin: C against include/kofka.h only, not linked with libkofka.so
        // (its kofka_* calls resolve to the Kofka that loads it).
        .target(name: "KofkaMetrics", path: "Sources/KofkaMetrics",
                cSettings: [.headerSearchPath("../../include")],
                linkerSettings: [.linkedLibrary("pthread"), .unsafeFlags(pluginLinkFlags)]),
        .target(name: "KofkaStorageTesting", dependencies: ["Kofka"]),
        // C against include/kofka.h and <lmdb.h> only: no Swift, no -lkofka.
        .target(name: "KofkaLMDB", path: "Sources/KofkaLMDB", cSettings: [.headerSearchPath("../../include")], linkerSettings: linkLMDB + [.unsafeFlags(pluginLinkFlags, .when(platforms: [.linux]))]),
        // The raw LMDB reference `kofka-bench storage` times beside the plugin.
        .target(name: "CRefLMDB", path: "Sources/CRefLMDB", linkerSettings: linkLMDB),
        // libpq, PostgreSQL's client library (Debian: libpq-dev), for the PostgreSQL storage plugin.
        .systemLibrary(name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq",
                       providers: [.apt(["libpq-dev"])]),
        // The PostgreSQL storage plugin (schemes postgresql: and postgres:): C against include/kofka.h
        // and libpq only, not linked with libkofka.so.
        .target(name: "KofkaPostgres", dependencies: ["CLibPQ"], path: "Sources/KofkaPostgres",
                cSettings: [.headerSearchPath("../../include")],
                linkerSettings: [.linkedLibrary("pthread"), .unsafeFlags(pluginLinkFlags)]),
        // The raw libpq reference `kofka-bench postgres` times beside the PostgreSQL plugin.
        .target(name: "CRefPG", dependencies: ["CLibPQ"], path: "Sources/CRefPG"),
        // What the kofka command and kofka-bench share: running a command, failing in one line, formatting.
        .target(name: "KofkaCommandSupport", dependencies: [
            "Kofka", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: [.swiftLanguageMode(.v5)]),
        .executableTarget(name: "kofka-cli", dependencies: [
            "Kofka", "KofkaLab", "KofkaCABI", "KofkaStorageTesting", "KofkaServer", "KofkaCommandSupport", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: [.swiftLanguageMode(.v5)], linkerSettings: exportPluginAPI),
        // kofka-bench: the benchmarks and their references, out of the shipped command. It loads the
        // LMDB and PostgreSQL plugins, so it carries the C ABI and exports it as kofka-cli does.
        .executableTarget(name: "kofka-bench", dependencies: [
            "Kofka", "KofkaLab", "KofkaCABI", "KofkaStorageTesting", "KofkaCommandSupport", "CSQLite", "CRefLog", "CRefLMDB", "CRefPG", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "bench/swift", swiftSettings: [.swiftLanguageMode(.v5)], linkerSettings: exportPluginAPI),
        .testTarget(name: "KofkaTests", dependencies: ["Kofka", "KofkaLab", "KofkaCABI", "KofkaStorageTesting", "KofkaWire", "KofkaServer"], linkerSettings: exportPluginAPI),
    ]
)
