// swift-tools-version:6.2
import PackageDescription

let package = Package(
    name: "Kofka",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Kofka", targets: ["Kofka"]),
        .library(name: "kofka", type: .dynamic, targets: ["KofkaCABI"]),
        .executable(name: "kofka-cli", targets: ["kofka-cli"]),
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
        .executableTarget(name: "kofka-cli", dependencies: [
            "Kofka", "KofkaLab", "CSQLite", "CRefLog", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "KofkaTests", dependencies: ["Kofka", "KofkaLab"]),
    ]
)
