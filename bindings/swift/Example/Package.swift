// swift-tools-version:6.2
// An application that depends on Kofka. By path here; from another repository use
// .package(url: "<Kofka's git URL>", from: "0.1.0").
import PackageDescription

let package = Package(
    name: "Example",
    dependencies: [.package(name: "Kofka", path: "../../..")],
    targets: [
        .executableTarget(name: "Example", dependencies: [.product(name: "Kofka", package: "Kofka")]),
    ]
)
