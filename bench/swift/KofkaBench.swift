import ArgumentParser
import Kofka
import KofkaCommandSupport

/// `kofka-bench`: the benchmarks, a program of their own beside `kofka` (the shipped command
/// carries no benchmark code and links none of the references: raw SQLite, the C log, raw LMDB,
/// raw libpq). BENCHMARKS.md has the figures and how each was measured.
@main
struct KofkaBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kofka-bench",
        abstract: "Kofka's benchmarks, each beside references measured in the same run.",
        discussion: """
            `run` is the default: `kofka-bench --quick` is `kofka-bench run --quick`. Each \
            subcommand has --help. Figures and how each was measured: BENCHMARKS.md.
            """,
        version: "kofka-bench \(Kofka.version)",
        subcommands: [Bench.self, BenchStorage.self, BenchPostgres.self, RetentionBench.self],
        defaultSubcommand: Bench.self)

    static func main() { CommandMain.run(Self.self, name: "kofka-bench") }
}
