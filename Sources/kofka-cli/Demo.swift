import ArgumentParser
struct Demo: ParsableCommand { static let configuration = CommandConfiguration(abstract: "The delivery-semantics demonstration.") ; func run() throws { throw ValidationError("demo: not built yet") } }
