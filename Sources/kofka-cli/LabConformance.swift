import ArgumentParser
import Kofka
import KofkaCommandSupport
import KofkaStorageTesting
#if canImport(Glibc)
import Glibc
#endif

/// `kofka lab conformance`: the storage conformance suite against any storage string.
struct LabConformance: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conformance",
        abstract: "Run the storage conformance suite against a storage backend: one line per check, then a summary.",
        discussion: """
            How a backend written outside Kofka — a C plugin (kofka_storage_ops), a Python or Swift \
            one registered under a scheme — proves it keeps every promise of Kofka's storage \
            protocol: exact offsets, no key/value vs empty, atomic exclusive writes and their undo, \
            change notification, deletion, persistence across reopen. Each check opens fresh stores \
            at STORAGE plus a suffix (-PID-N-RANDOM) and removes them afterwards: a file with its \
            -wal/-shm/-journal/-lock siblings, or a directory with its files (--keep leaves them). \
            memory: runs the checks that need no reopen. Exits non-zero when a check fails.
            Example:
              kofka lab conformance --storage lmdb:/tmp/conformance
            """)

    @Option(help: "The storage string: SCHEME:LOCATION (lmdb:/tmp/x, sqlite:/tmp/x.db, any plugin's scheme) or memory:.")
    var storage: String

    @Option(name: .customShort("X"), help: ArgumentHelp("A broker config setting KEY=VALUE for every store, repeatable (e.g. -X lmdb.sync=normal).", valueName: "key=value"))
    var settings: [String] = []

    @Option(help: "Run only the checks whose name contains this text.")
    var only: String?

    @Flag(help: "List the checks with what each proves, and exit.")
    var list = false

    @Flag(help: "Keep the stores the checks made.")
    var keep = false

    func run() throws {
        if list {
            for c in StorageConformance.checks {
                print("\(c.name)\(c.requirement == .reopen ? " (reopens)" : "")\n    \(c.summary)")
            }
            return
        }
        var config: [(String, String)] = []
        for s in settings {
            guard let eq = s.firstIndex(of: "="), eq != s.startIndex else { throw CLIError("invalid setting '\(s)': expected KEY=VALUE") }
            config.append((String(s[..<eq]), String(s[s.index(after: eq)...])))
        }
        let factory: StorageConformance.Factory
        if storage == "memory:" || storage == "memory" {
            factory = StorageConformance.Factory(name: "memory") { MemoryStorage() }
        } else {
            guard let colon = storage.firstIndex(of: ":"), colon != storage.startIndex, storage.index(after: colon) != storage.endIndex else {
                throw CLIError("invalid storage '\(storage)': expected SCHEME:LOCATION (e.g. lmdb:/tmp/conformance) or memory:")
            }
            factory = StorageConformance.Factory.storageString(storage, config: config, keep: keep)
            // Opening one store first shows a bad storage string or config as one error, not a
            // failure of every check.
            do { try factory.probe() } catch { throw CLIError("cannot open a store of \(storage): \(error)") }
        }
        let checks = StorageConformance.checks.filter { only.map($0.name.contains) ?? true }
        guard !checks.isEmpty else { throw CLIError("no check's name contains '\(only ?? "")' (kofka lab conformance --list)") }
        print("storage conformance of \(storage): \(checks.count) checks")
        let results = StorageConformance.run(factory, checks: checks) { r in
            if let why = r.skipped {
                print("SKIP  \(r.check.name): \(why)")
            } else if r.passed {
                print("PASS  \(r.check.name) (\(fmt(r.seconds, 2)) s)")
            } else {
                print("FAIL  \(r.check.name) (\(fmt(r.seconds, 2)) s)")
                for f in r.failures.prefix(20) { print("        \(f)") }
                if r.failures.count > 20 { print("        … \(r.failures.count - 20) more") }
            }
            fflush(stdout)
        }
        let failed = results.filter { !$0.passed && $0.skipped == nil }.count
        let skipped = results.filter { $0.skipped != nil }.count
        print("conformance of \(factory.name): \(results.count - failed - skipped) passed, \(failed) failed, \(skipped) skipped")
        if failed > 0 { throw CLIError("\(failed) of \(results.count) conformance checks failed on \(storage)") }
    }
}

