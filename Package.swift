// swift-tools-version:6.2
import PackageDescription

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
        .executableTarget(name: "kofka-cli", dependencies: [
            "Kofka", "KofkaLab", "KofkaCABI", "CSQLite", "CRefLog", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: [.swiftLanguageMode(.v5)], linkerSettings: exportPluginAPI),
        .testTarget(name: "KofkaTests", dependencies: ["Kofka", "KofkaLab", "KofkaCABI", "KofkaStorageTesting"], linkerSettings: exportPluginAPI),
    ]
)
