import ArgumentParser
import KofkaCommandSupport
#if canImport(Glibc)
import Glibc
#endif

/// `kofka bench ARGS…`: runs `kofka-bench ARGS…`, the benchmark program found beside this
/// command. The benchmarks and their references are not part of `kofka` (bench/swift).
struct BenchEntry: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Run the benchmarks: the kofka-bench program beside this command, with these arguments.",
        discussion: """
            kofka-bench is built beside kofka-cli (swift build --product kofka-bench); it is not \
            installed with kofka. Examples: kofka bench --quick; kofka bench storage --quick; \
            kofka bench retention --help.
            """)

    @Argument(parsing: .captureForPassthrough, help: "Arguments for kofka-bench (kofka bench --help shows its help).")
    var arguments: [String] = []

    func run() throws {
        let path = besideCommand("kofka-bench")
        guard access(path, X_OK) == 0 else {
            throw CLIError("the benchmarks are a separate program, and \(path) is missing: build it with swift build --product kofka-bench")
        }
        fflush(stdout)
        var argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        execv(path, &argv)
        throw CLIError("cannot run \(path): \(String(cString: strerror(errno)))")
    }
}
