import CKofka
import Kofka
import KofkaStorageTesting

// kofka_storage_conformance: the storage conformance suite for backends written outside Kofka
// (include/kofka.h, "Plugins"). It translates: the checks and their verdicts are KofkaStorageTesting's.

@c @implementation
public func kofka_storage_conformance(_ storage: UnsafePointer<CChar>?, _ config: UnsafePointer<UnsafePointer<CChar>?>?,
                                      _ only: UnsafePointer<CChar>?, _ line: kofka_conformance_line_cb?,
                                      _ opaque: UnsafeMutableRawPointer?, _ failed: UnsafeMutablePointer<Int32>?) -> kofka_err {
    run {
        let spec = try string(storage, "storage", "kofka_storage_conformance")
        let pairs = try configPairs(config)
        let filter = only.map { String(cString: $0) }
        let factory: StorageConformance.Factory
        if spec == "memory:" || spec == "memory" {
            factory = StorageConformance.Factory(name: "memory") { MemoryStorage() }
        } else {
            guard let colon = spec.firstIndex(of: ":"), colon != spec.startIndex, spec.index(after: colon) != spec.endIndex else {
                throw KofkaError(.invalidArg, "kofka_storage_conformance: storage '\(Broker.redacted(spec))' is not SCHEME:LOCATION or memory:")
            }
            factory = StorageConformance.Factory.storageString(spec, config: pairs)
            try factory.probe()
        }
        let checks = StorageConformance.checks.filter { filter.map($0.name.contains) ?? true }
        guard !checks.isEmpty else {
            throw KofkaError(.invalidArg, "kofka_storage_conformance: no check's name contains '\(filter ?? "")'")
        }
        func say(_ text: String) { if let line { text.withCString { line(opaque, $0) } } }
        let results = StorageConformance.run(factory, checks: checks) { r in
            let seconds = String(Int(r.seconds * 100)).leftPadded(3)
            let time = "(\(seconds.dropLast(2)).\(seconds.suffix(2)) s)"
            if let why = r.skipped {
                say("SKIP  \(r.check.name): \(why)")
            } else if r.passed {
                say("PASS  \(r.check.name) \(time)")
            } else {
                say("FAIL  \(r.check.name) \(time)")
                for f in r.failures { say("        \(f)") }
            }
        }
        failed?.pointee = Int32(results.filter { !$0.passed && $0.skipped == nil }.count)
    }
}

private extension String {
    /// The string padded with zeros on the left to `width` characters.
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
