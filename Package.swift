// swift-tools-version:6.2
import PackageDescription
import Foundation

/// LMDB's headers (Debian: liblmdb-dev). Without them the LMDB plugin builds as a stub whose
/// kofka_plugin_init says so, and the raw LMDB reference of the storage benchmark is left out.
let haveLMDB = FileManager.default.fileExists(atPath: "/usr/include/lmdb.h")
let linkLMDB: [LinkerSetting] = haveLMDB ? [.linkedLibrary("lmdb")] : []
/// The plugin is C, but swiftc links every product and adds the Swift runtime to it (swiftrt.o and
/// libswiftCore.so): -nostartfiles drops the first, -static-stdlib turns the second into an
/// archive nothing is taken from, so the plugin needs only liblmdb and the C libraries.
let cOnly: [LinkerSetting] = [.unsafeFlags(["-nostartfiles", "-static-stdlib"], .when(platforms: [.linux]))]

/// Programs of this package that load C plugins (the kofka command, the tests) carry the C ABI
/// (KofkaCABI) and export it, so that a plugin's kofka_* calls reach the copy of Kofka that
/// loaded it, as they reach libkofka.so in a C or Python program.
let exportPluginAPI: [LinkerSetting] = [.unsafeFlags(["-Xlinker", "--export-dynamic"], .when(platforms: [.linux]))]

let package = Package(
    name: "Kofka",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Kofka", targets: ["Kofka"]),
        .library(name: "kofka", type: .dynamic, targets: ["KofkaCABI"]),
        .executable(name: "kofka-cli", targets: ["kofka-cli"]),
        // The storage conformance suite, for backends outside Kofka (Swift, or C through `kofka lab conformance`).
        .library(name: "KofkaStorageTesting", targets: ["KofkaStorageTesting"]),
        // libkofka_lmdb.so: the LMDB storage plugin (scheme lmdb:), built beside libkofka.so, not linked to it.
        .library(name: "kofka_lmdb", type: .dynamic, targets: ["KofkaLMDB"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite"),
        .systemLibrary(name: "CKofka", path: "Sources/CKofka"),
        .target(name: "Kofka", dependencies: ["CSQLite", "CKofka"]),
        .target(name: "KofkaCABI", dependencies: ["Kofka", "CKofka"]),
        // The delivery lab, its checker and the schedule explorer: test machinery, not shipped in Kofka.
        .target(name: "KofkaLab", dependencies: ["Kofka"]),
        .target(name: "CRefLog", path: "Sources/CRefLog"),
        .target(name: "KofkaStorageTesting", dependencies: ["Kofka"]),
        // C against include/kofka.h and <lmdb.h> only: no Swift, no -lkofka.
        .target(name: "KofkaLMDB", path: "Sources/KofkaLMDB", cSettings: [.headerSearchPath("../../include")], linkerSettings: linkLMDB + cOnly),
        // The raw LMDB reference `kofka bench-storage` times beside the plugin.
        .target(name: "CRefLMDB", path: "Sources/CRefLMDB", linkerSettings: linkLMDB),
        .executableTarget(name: "kofka-cli", dependencies: [
            "Kofka", "KofkaLab", "KofkaCABI", "KofkaStorageTesting", "CSQLite", "CRefLog", "CRefLMDB", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: [.swiftLanguageMode(.v5)], linkerSettings: exportPluginAPI),
        .testTarget(name: "KofkaTests", dependencies: ["Kofka", "KofkaLab", "KofkaCABI", "KofkaStorageTesting"], linkerSettings: exportPluginAPI),
    ]
)
